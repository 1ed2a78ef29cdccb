"""Naming things the way an xe user does: by name, UUID, or a unique UUID prefix.
Ambiguity is an error that lists the candidates."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import is_guest, is_template, sr_display_name

MIN_PREFIX = 4


def _describe(cache: Cache, cls: str, ref: str, r: Record) -> str:
    if cls == "sr":
        return f"  {sr_display_name(cache, ref):<32} {r.get('uuid', '')}  {r.get('type', '')}"
    extra = r.get("power_state") or r.get("type") or r.get("address") or ""
    return f"  {r.get('name_label', '')!s:<32} {r.get('uuid', '')}  {extra}"


def resolve(
    cache: Cache,
    cls: str,
    spec: str,
    *,
    kind: str,
    accept: Callable[[Record], bool] = lambda r: True,
) -> str:
    """The ref of the one ``cls`` object that ``spec`` names."""
    spec = spec.strip()
    if not spec:
        raise UsageError(f"no {kind} given")
    rows = [(ref, r) for ref, r in cache.snapshot(cls) if accept(r)]
    if spec.startswith("OpaqueRef:"):
        for ref, _ in rows:
            if ref == spec:
                return ref
        raise UsageError(f"no {kind} with reference {spec}")
    for ref, r in rows:
        if r.get("uuid") == spec:
            return ref
    by_name = [(ref, r) for ref, r in rows if r.get("name_label") == spec]
    if len(by_name) == 1:
        return by_name[0][0]
    if len(by_name) > 1:
        lines = "\n".join(_describe(cache, cls, ref, r) for ref, r in by_name)
        raise UsageError(
            f"{len(by_name)} {kind}s are named {spec!r}; name one by UUID:\n{lines}"
        )
    if len(spec) >= MIN_PREFIX and all(c in "0123456789abcdef-" for c in spec.lower()):
        by_prefix = [(ref, r) for ref, r in rows if str(r.get("uuid", "")).startswith(spec.lower())]
        if len(by_prefix) == 1:
            return by_prefix[0][0]
        if len(by_prefix) > 1:
            lines = "\n".join(_describe(cache, cls, ref, r) for ref, r in by_prefix)
            raise UsageError(f"UUID prefix {spec!r} matches {len(by_prefix)} {kind}s:\n{lines}")
    names = [str(r.get("name_label", "")) for _, r in rows]
    close = difflib.get_close_matches(spec, names, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise UsageError(f"no {kind} named {spec!r}{hint}")


def resolve_vm(cache: Cache, spec: str) -> str:
    return resolve(cache, "vm", spec, kind="VM", accept=is_guest)


def resolve_template(cache: Cache, spec: str) -> str:
    return resolve(
        cache, "vm", spec, kind="template",
        accept=is_template,
    )


def resolve_snapshot(cache: Cache, spec: str, of_vm: str | None = None) -> str:
    return resolve(
        cache, "vm", spec, kind="snapshot",
        accept=lambda r: bool(r.get("is_a_snapshot")) and (of_vm is None or r.get("snapshot_of") == of_vm),
    )


def resolve_host(cache: Cache, spec: str) -> str:
    ref = _by_field(cache, "host", spec, ("address", "hostname"))
    return ref or resolve(cache, "host", spec, kind="host")


def resolve_sr(cache: Cache, spec: str) -> str:
    """Also by the name people tell local SRs apart by: every host has a "Local
    storage", and ``Local storage on xcp-ng-02`` names one of them."""
    text = spec.strip()
    shown = [ref for ref, r in cache.snapshot("sr")
             if r.get("name_label") != text and sr_display_name(cache, ref) == text]
    if len(shown) == 1 and not any(r.get("name_label") == text for _, r in cache.snapshot("sr")):
        return shown[0]
    return resolve(cache, "sr", spec, kind="SR")


def _by_field(cache: Cache, cls: str, spec: str, fields: tuple[str, ...]) -> str | None:
    hits = [ref for ref, r in cache.snapshot(cls) if any(r.get(f) == spec for f in fields)]
    return hits[0] if len(hits) == 1 else None
