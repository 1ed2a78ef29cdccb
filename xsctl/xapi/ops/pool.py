"""The pool as the object of operations that belong to no other one (a new SR, its
name): the one object of its class, so the CLI names none."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Pool
from xsctl.xapi.ops.base import Call, Plan, xe
from xsctl.xapi.ops.catalogue import Kind, Operation, Param, ParamKind, declare


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


def rename(cache: Cache, pool: Pool, name: str, description: str | None) -> Plan:
    r = cache.get("pool", pool.ref) or {}
    calls = [Call("pool.set_name_label", (pool.ref, name))]
    fields: dict[str, str] = {"name_label": name}
    if description is not None and description != r.get("name_description", ""):
        calls.append(Call("pool.set_name_description", (pool.ref, description)))
        fields["name_description"] = description
    return Plan(title=f"Rename the pool {pool.name_label or 'pool'} to {name}",
                action="pool.rename", targets=(pool.ref,), calls=tuple(calls),
                xe=(xe("pool-param-set", uuid=pool.uuid, **fields),),
                names={pool.ref: pool.name_label or "pool"})


declare(
    # R: a key of the host kind's space kept for it (the Status view has both)
    Operation("pool.rename", POOL, "Rename the pool", "R", "set", "pool-param-set",
              "renamed", "Set the pool's name (and description)", rename,
              params=(Param("name", ParamKind.TEXT, "Name", ("--name", "--name-label"),
                            "the pool's new name", default=lambda c, p: p.name_label,
                            metavar="NAME"),
                      Param("description", ParamKind.TEXT, "Description",
                            ("--description", "--name-description"),
                            "the pool's description", required=False,
                            default=lambda c, p: str((c.cache.get("pool", p.ref) or {})
                                                     .get("name_description", "")),
                            metavar="TEXT"))),
)
