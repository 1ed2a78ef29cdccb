"""The pool as the object of operations that belong to no other one (a new SR): the
one object of its class, so the CLI names none."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Pool
from xsctl.xapi.ops.catalogue import Kind


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("pool")]


def _resolve(cache: Cache, spec: str) -> str:
    pool = Pool.of(cache)
    if pool is None:
        raise XapiError("HANDLE_INVALID", ["pool", spec])
    return pool.ref


def _load(cache: Cache, ref: str) -> Pool | None:
    pool = Pool.of(cache)
    return pool if pool is not None and pool.ref == ref else None


def _explain(pool: Any, op: str) -> XsctlError | None:
    return None


POOL = Kind(
    cls="pool", noun="pool", nouns="pools", resolve=_resolve, load=_load,
    name=lambda p: p.name_label or "pool", members=_members, explain=_explain,
    classes=("pool", "host", "host_metrics", "SR", "PBD", "SM", "VDI", "VBD", "VM"),
    implicit=True,
)
