"""Hosts as the object of operations: the kind every host operation acts on.

The gates read like xapi's own refusals (ocaml/xapi/xapi_host_helpers.ml
``valid_operations``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Host
from xsctl.xapi.ops.catalogue import Kind
from xsctl.xapi.ops.resolve import resolve_host


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("host")]


def _load(cache: Cache, ref: str) -> Host | None:
    return Host.get(cache, ref)


def explain(host: Host, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the host's allowed_operations, or
    None."""
    if op in host.allowed_operations:
        return None
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def _explain(host: Any, op: str) -> XsctlError | None:
    return explain(host, op)


HOST = Kind(
    cls="host", noun="host", nouns="hosts", resolve=resolve_host, load=_load,
    name=lambda h: h.name_label or h.hostname or h.address, members=_members,
    explain=_explain,
    classes=("pool", "host", "host_metrics", "VM", "VM_metrics", "PIF", "PIF_metrics",
             "network", "SR", "PBD", "console"),
)
