"""Storage repository operations: their gates, parameters and planners."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Sr
from xsctl.xapi.ops.catalogue import Kind
from xsctl.xapi.ops.resolve import resolve_sr


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(s.ref, s.display_name) for s in (Sr.from_record(cache, ref, r)
                                               for ref, r in cache.snapshot("sr"))]


def _load(cache: Cache, ref: str) -> Sr | None:
    return Sr.get(cache, ref)


def explain(sr: Sr, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the SR's allowed_operations
    (xapi_sr_operations.ml), or None."""
    if op in sr.allowed_operations:
        return None
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def _explain(sr: Any, op: str) -> XsctlError | None:
    return explain(sr, op)


SR = Kind(
    cls="sr", noun="SR", nouns="SRs", resolve=resolve_sr, load=_load,
    name=lambda s: s.display_name, members=_members, explain=_explain,
    classes=("pool", "host", "SR", "PBD", "SM", "VDI", "VBD", "VM"),
)
