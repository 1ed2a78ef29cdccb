"""New storage repositories: create one (SR.create makes the SR and a PBD per host,
plugged) or attach one a probe found (SR.introduce, then PBD.create and PBD.plug for
each host, as XenCenter's "reattach" does). Both act on the pool (``xsctl sr create``
names no object); the TUI starts them from the New SR wizard (ui/modals/new_sr.py),
which finds the device-config through probes (xapi/probe.py)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XapiError
from xsctl.xapi.models import Host, Pool, Sr, hosts
from xsctl.xapi.ops.base import Call, Plan, Result
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Impact,
    Operation,
    Param,
    ParamKind,
    Refused,
    declare,
)
from xsctl.xapi.ops.pool import POOL
from xsctl.xapi.ops.resolve import resolve_host
from xsctl.xapi.probe import SR_KINDS, SrKind, check_device_config, kind_of, masked

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TYPES = tuple(dict.fromkeys(k.type for k in SR_KINDS))


def _xe(command: str, params: list[tuple[str, Any]], dc: Mapping[str, str]) -> str:
    """An xe line with device-config:KEY=VALUE pairs (keys as the driver spells them:
    xe() would turn legacy_mode into legacy-mode); passwords masked."""
    parts = ["xe", command]
    for k, v in params:
        if v is None or v == "":
            continue
        parts.append(shlex.quote(f"{k}={'true' if v is True else 'false' if v is False else v}"))
    for k, v in masked(dc).items():
        parts.append(shlex.quote(f"device-config:{k}={v}"))
    return " ".join(parts)


def _kind(sr_type: str, dc: Mapping[str, str]) -> SrKind:
    if sr_type not in TYPES:
        raise UsageError(f"xsctl makes SRs of these types: {', '.join(TYPES)} "
                         f"(not {sr_type!r})")
    kind = kind_of(sr_type, dc)
    assert kind is not None
    return kind


def _device_config(kind: SrKind, dc: Mapping[str, str]) -> dict[str, str]:
    # empty optional keys are left out: the driver would take "" for a value
    out = {k: v for k, v in {**kind.fixed, **dc}.items() if v.strip()}
    check_device_config(kind, out, for_probe=False)
    return out


def _host(cache: Cache, host: str | None) -> Host:
    pool = Pool.of(cache)
    ref = host or (pool.master if pool else "")
    h = Host.get(cache, ref)
    if h is None:
        raise UsageError("no host to create it from (the pool has no master in view)")
    return h


def _in_use(cache: Cache, kind: SrKind, dc: Mapping[str, str], host: str) -> None:
    """What xapi's driver would refuse as SR_DEVICE_IN_USE, said before any call and
    naming the SR that uses it (util.test_hostPBD_devs, util.test_SCSIid)."""
    for _, p in cache.snapshot("pbd"):
        pdc = p.get("device_config") or {}
        sr = Sr.get(cache, str(p.get("SR")))
        name = sr.display_name if sr else "another SR"
        if kind.local and p.get("host") == host and "device" in pdc:
            common = set(str(pdc["device"]).split(",")) & set(dc["device"].split(","))
            if common:
                raise Refused(f"{', '.join(sorted(common))} is in use by {name}")
        if "SCSIid" in dc and pdc.get("SCSIid") == dc["SCSIid"]:
            raise Refused(f"that LUN ({dc['SCSIid']}) is in use by {name}")


def _name(name: str) -> str:
    if not name.strip():
        raise UsageError("the SR needs a name")
    return name.strip()


def _content(kind: SrKind, content_type: str | None) -> str:
    return content_type.strip() if content_type and content_type.strip() else kind.content_type


def _where(kind: SrKind, dc: Mapping[str, str], h: Host) -> str:
    d = masked(dc)
    if kind.local:
        return f"{d['device']} on {h.name_label}"
    if "SCSIid" in d:  # a LUN: of an iSCSI target, or seen through the HBAs
        at = f" of {d['target']}" if "target" in d else ""
        return f"LUN {d['SCSIid']}{at}"
    for k in ("location", "server", "target"):
        if k in d:
            extra = d.get("serverpath") or d.get("targetIQN") or ""
            return f"{d[k]}{':' if extra.startswith('/') else ' ' if extra else ''}{extra}"
    return str(d.get("SCSIid", kind.label))


def create(cache: Cache, pool: Pool, type: str, device_config: dict[str, str], name: str,
           description: str | None = None, host: str | None = None, shared: bool = False,
           content_type: str | None = None) -> Plan:
    kind = _kind(type, device_config)
    dc = _device_config(kind, device_config)
    label = _name(name)
    h = _host(cache, host)
    if shared and kind.local:
        raise UsageError(f"a {kind.label} SR is on one host's own disk: it cannot be shared")
    _in_use(cache, kind, dc, h.ref)
    content = _content(kind, content_type)
    where = _where(kind, dc, h)
    notes = []
    if kind.formats:
        notes.append(f"Everything on {where} is erased: it is formatted for the new SR.")
    notes.append(f"A PBD is made and plugged on {'every host' if shared else h.name_label}.")
    return Plan(
        title=f"Create SR {label!r} ({kind.label}) on {where}", action="sr.create",
        targets=(pool.ref,),
        calls=(Call("SR.create", (h.ref, dc, "0", label, description or "", type, content,
                                  shared, {}), True),),
        xe=(_xe("sr-create", [("host-uuid", h.uuid), ("name-label", label),
                              ("name-description", description), ("type", type),
                              ("content-type", content), ("shared", shared)], dc),),
        names={h.ref: h.name_label, pool.ref: label},
        destructive=kind.formats, confirm_text=label if kind.formats else None,
        notes=tuple(notes))


def introduce(cache: Cache, pool: Pool, uuid: str, type: str, device_config: dict[str, str],
              name: str, description: str | None = None, host: str | None = None,
              shared: bool = False, content_type: str | None = None) -> Plan:
    """Attach an SR that is on storage but not in the pool (forgotten, or another
    pool's): its record, then a PBD per host, each plugged (the first plug scans)."""
    u = uuid.strip().lower()
    if not UUID.match(u):
        raise UsageError(f"{uuid!r} is not an SR's UUID (the probe lists them)")
    for ref, r in cache.snapshot("sr"):
        if r.get("uuid") == u:
            s = Sr.get(cache, ref)
            raise Refused(f"that SR is already in the pool, as {s.display_name if s else u}")
    kind = _kind(type, device_config)
    dc = _device_config(kind, device_config)
    label = _name(name)
    h = _host(cache, host)
    if shared and kind.local:
        raise UsageError(f"a {kind.label} SR is on one host's own disk: it cannot be shared")
    content = _content(kind, content_type)
    targets: list[Host] = [h] if not shared else sorted(
        hosts(cache), key=lambda x: (not x.is_master, x.name_label.lower()))
    calls = [Call("SR.introduce", (u, label, description or "", type, content, shared, {}))]
    lines = [_xe("sr-introduce", [("uuid", u), ("name-label", label),
                                  ("name-description", description), ("type", type),
                                  ("content-type", content), ("shared", shared)], {})]
    for i, t in enumerate(targets):
        calls.append(Call("PBD.create", ({"host": t.ref, "SR": Result(0), "device_config": dc,
                                          "other_config": {}},)))
        # xe pbd-create prints the new PBD's uuid, which pbd-plug takes
        lines.append(f"pbd{i + 1}=$(" + _xe("pbd-create", [("host-uuid", t.uuid),
                                                           ("sr-uuid", u)], dc) + ")")
    for i, _t in enumerate(targets):
        calls.append(Call("PBD.plug", (Result(1 + i),), True))
        lines.append(f'xe pbd-plug uuid="$pbd{i + 1}"')
    names = {t.ref: t.name_label for t in targets}
    return Plan(
        title=f"Attach SR {label!r} ({kind.label}) from {_where(kind, dc, h)}",
        action="sr.introduce", targets=(pool.ref,), calls=tuple(calls), xe=tuple(lines),
        names={**names, pool.ref: label},
        notes=("Its disks are kept: the first plug scans them into the pool.",))


# ------------------------------------------------------------------ parameters


def _type_choices(ctx: Context, pool: Any) -> list[Choice]:
    have = {str(r.get("type")) for r in ctx.cache.all("sm").values()}
    out = []
    for t in TYPES:
        labels = " / ".join(k.label for k in SR_KINDS if k.type == t)
        out.append(Choice(t, t, labels, None if not have or t in have
                          else "the hosts have no driver for it"))
    return out


def _resolve_type(ctx: Context, pool: Any, text: str) -> str:
    t = text.strip().lower()
    if t not in TYPES:
        raise UsageError(f"--type: one of {', '.join(TYPES)} (not {text!r})")
    return t


def _host_choices(ctx: Context, pool: Any) -> list[Choice]:
    return [Choice(h.ref, h.name_label, "master" if h.is_master else "",
                   None if h.live else "not responding") for h in hosts(ctx.cache)]


def _resolve_host(ctx: Context, pool: Any, text: str) -> str:
    return resolve_host(ctx.cache, text)


_TYPE = Param("type", ParamKind.PICK, "Type", ("--type",), "the SR type: " + ", ".join(TYPES),
              choices=_type_choices, resolve=_resolve_type, metavar="TYPE")
_DC = Param("device_config", ParamKind.PAIRS, "device-config", ("--device-config",),
            "KEY=VALUE of the driver's device-config (repeat for each key)",
            metavar="KEY=VALUE")
_NAME = Param("name", ParamKind.TEXT, "Name", ("--name", "--name-label"), "the SR's name",
              metavar="NAME")
_DESC = Param("description", ParamKind.TEXT, "Description",
              ("--description", "--name-description"), "the SR's description",
              required=False, default=lambda c, p: "", metavar="TEXT")
_HOST = Param("host", ParamKind.PICK, "Host", ("--host", "--host-uuid"),
              "the host it is made from, and a local SR's host (default: the master)",
              required=False, choices=_host_choices, resolve=_resolve_host, metavar="HOST")
_SHARED = Param("shared", ParamKind.FLAG, "Shared", ("--shared",),
                "on every host of the pool (network storage)", required=False)
_CONTENT = Param("content_type", ParamKind.TEXT, "Content type", ("--content-type",),
                 "user (disks) or iso (default: iso for an ISO library, else user)",
                 required=False, default=lambda c, p: "", metavar="TYPE")

declare(
    Operation("sr.create", POOL, "New SR", "n", "create", "sr-create", "created",
              "Create a storage repository (formats a local disk or a LUN)", create,
              impact=Impact.DESTRUCTIVE, group="sr",
              params=(_TYPE, _DC, _NAME, _DESC, _HOST, _SHARED, _CONTENT)),
    Operation("sr.introduce", POOL, "Attach an existing SR", "n", "introduce", "sr-introduce",
              "attached", "Attach an SR a probe found (its disks are kept)", introduce,
              group="sr",
              params=(Param("uuid", ParamKind.TEXT, "SR UUID", ("--uuid",),
                            "the UUID of the SR (sr probe lists them)", metavar="UUID"),
                      _TYPE, _DC, _NAME, _DESC, _HOST, _SHARED, _CONTENT)),
)


def error_text(e: XapiError, sr_type: str, dc: Mapping[str, str]) -> str:
    """A failed create or attach, in the words of a probe failure."""
    from xsctl.xapi.probe import explain

    return explain(e, sr_type, dc)
