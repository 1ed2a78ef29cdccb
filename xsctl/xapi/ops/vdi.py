"""Virtual disk (VDI) operations: their gates, parameters and planners."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Vdi
from xsctl.xapi.ops.catalogue import Kind
from xsctl.xapi.ops.resolve import resolve


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("vdi")]


def _load(cache: Cache, ref: str) -> Vdi | None:
    r = cache.get("vdi", ref)
    return None if r is None else Vdi.from_record(cache, ref, r)


def explain(vdi: Vdi, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the VDI's allowed_operations
    (xapi_vdi.ml check_operation_error), or None."""
    if op in vdi.allowed_operations:
        return None
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def _explain(vdi: Any, op: str) -> XsctlError | None:
    return explain(vdi, op)


VDI = Kind(
    cls="vdi", noun="disk", nouns="disks",
    resolve=lambda cache, spec: resolve(cache, "vdi", spec, kind="disk"),
    load=_load, name=lambda v: v.name_label, members=_members, explain=_explain,
    classes=("pool", "host", "SR", "PBD", "SM", "VDI", "VBD", "VM"),
)
