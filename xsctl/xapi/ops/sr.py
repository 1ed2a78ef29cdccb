"""Storage repository operations: their gates, parameters and planners.

The gates read like xapi's own refusals (ocaml/xapi/xapi_sr_operations.ml
``valid_operations``; xapi_pbd.ml for plugging and unplugging). Detaching, forgetting
and destroying do what XenCenter does: every PBD is unplugged first (xapi refuses
SR.forget and SR.destroy while one is plugged), and they are refused before any call
while a running VM has a disk of the SR attached.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import NULL, Pool, Sr, Vdi, hosts
from xsctl.xapi.ops.base import Call, Plan, Result, xe
from xsctl.xapi.ops.catalogue import Impact, Kind, Operation, Refused, declare
from xsctl.xapi.ops.resolve import resolve_sr
from xsctl.xapi.storage import live_holders, running_on, sm_features, some, uses


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(s.ref, s.display_name) for s in (Sr.from_record(cache, ref, r)
                                               for ref, r in cache.snapshot("sr"))]


def _load(cache: Cache, ref: str) -> Sr | None:
    return Sr.get(cache, ref)


# Xapi_sr_operations.sm_cap_table: the driver feature each operation needs
SR_FEATURE = {
    "vdi_create": "VDI_CREATE", "vdi_destroy": "VDI_DELETE", "vdi_resize": "VDI_RESIZE",
    "vdi_introduce": "VDI_INTRODUCE", "vdi_mirror": "VDI_MIRROR",
    "vdi_enable_cbt": "VDI_CONFIG_CBT", "vdi_disable_cbt": "VDI_CONFIG_CBT",
    "vdi_data_destroy": "VDI_CONFIG_CBT", "vdi_list_changed_blocks": "VDI_CONFIG_CBT",
    "vdi_set_on_boot": "VDI_RESET_ON_BOOT", "update": "SR_UPDATE",
    "vdi_snapshot": "VDI_SNAPSHOT",
}


def errors(cache: Cache | None, sr: Sr, op: str) -> list[XapiError]:
    """Every error Xapi_sr_operations.valid_operations finds for ``op``, in its
    order (xapi reports the first). Without a cache, what the SR's record alone says."""
    out: list[XapiError] = []
    feats = sm_features(cache, sr.type) if cache is not None else None
    if feats is not None:
        if sr.is_tools_sr:
            feats = feats - {"VDI_CREATE", "VDI_DELETE"}
        need = SR_FEATURE.get(op)
        if need is not None and need not in feats:
            out.append(XapiError("SR_OPERATION_NOT_SUPPORTED", [sr.ref]))
    if op in ("destroy", "forget") and sr.hosts:
        out.append(XapiError("SR_HAS_PBD", [sr.ref]))
    if op == "destroy" and not sr.PBDs:
        out.append(XapiError("SR_HAS_NO_PBDS", [sr.ref]))
    if op == "destroy" and cache is not None and _to_delete(cache, sr):
        out.append(XapiError("SR_NOT_EMPTY", []))
    if sr.current_operations:
        busy = [o for o in sr.current_operations if o != "plug"]
        if op != "plug" or busy:
            out.append(XapiError("OTHER_OPERATION_IN_PROGRESS",
                                 ["SR", sr.ref, (busy or list(sr.current_operations))[0], ""]))
    return out


def check(cache: Cache | None, sr: Sr, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the SR's allowed_operations, or
    None."""
    if op in sr.allowed_operations:
        return None
    found = errors(cache, sr, op)
    if found:
        return found[0]
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def explain(sr: Sr, op: str) -> XsctlError | None:
    return check(None, sr, op)


def _explain(sr: Any, op: str) -> XsctlError | None:
    return explain(sr, op)


def _check(cache: Cache, sr: Any, op: str) -> XsctlError | None:
    return check(cache, sr, op)


SR = Kind(
    cls="sr", noun="SR", nouns="SRs", resolve=resolve_sr, load=_load,
    name=lambda s: s.display_name, members=_members, explain=_explain,
    classes=("pool", "host", "SR", "PBD", "SM", "VDI", "VBD", "VM"), check=_check,
)


# ------------------------------------------------------------------ facts


def _pbds(cache: Cache, sr: Sr) -> list[tuple[str, dict[str, Any]]]:
    """The SR's PBDs, the master's first (xapi plugs a shared SR on the master
    first, and XenCenter's repair and detach keep that order, reversed to detach)."""
    pool = Pool.of(cache)
    master = pool.master if pool is not None else NULL
    out = [(p, dict(r)) for p in sr.PBDs if (r := cache.get("pbd", p)) is not None]
    out.sort(key=lambda pr: pr[1].get("host") != master)
    return out


def _host_name(cache: Cache, ref: str) -> str:
    return str((cache.get("host", ref) or {}).get("name_label", ""))


def _uuid(cache: Cache, cls: str, ref: str) -> str:
    return str((cache.get(cls, ref) or {}).get("uuid", ""))


def _to_delete(cache: Cache, sr: Sr) -> list[Vdi]:
    """The disks SR.destroy needs gone first: every managed one but xapi's RRD
    archives (check_any_managed_vdis), snapshots before the disks they came from."""
    out = []
    for ref in sr.VDIs:
        r = cache.get("vdi", ref)
        if r is None or not r.get("managed", True) or r.get("type") == "rrd":
            continue
        out.append(Vdi.from_record(cache, ref, r))
    out.sort(key=lambda v: (not v.is_a_snapshot, v.name_label.lower()))
    return out


def _running_words(cache: Cache, sr: Sr) -> str | None:
    """Who stops the SR being unplugged, in plain words, or None."""
    users = running_on(cache, sr)
    if not users:
        return None
    names = sorted({u.vm_name for u in users}, key=str.lower)
    if len(names) == 1:
        return f"{names[0]} is running with a disk on it: shut it down first"
    return f"{some(names)} are running with disks on it: shut them down first"


def _missing_hosts(cache: Cache, sr: Sr) -> list[str]:
    """Hosts with no PBD for a shared SR (a host that joined after it was made)."""
    if not sr.shared:
        return []
    return [h.ref for h in hosts(cache) if h.ref not in sr.pbd_hosts]


def _names(cache: Cache, sr: Sr) -> dict[str, str]:
    n = {sr.ref: sr.display_name}
    for p, r in _pbds(cache, sr):
        n[p] = f"PBD on {_host_name(cache, str(r.get('host')))}"
    pool = Pool.of(cache)
    if pool is not None:
        n[pool.ref] = pool.name_label or "pool"
    return n


def _not_storage(cache: Cache, sr: Any) -> str | None:
    if sr.is_tools_sr:
        return "it is xapi's tools ISO library"
    if sr.type == "udev":
        return "it is a host's removable drives"
    return None


# ------------------------------------------------------------------ planners


def scan(cache: Cache, sr: Sr) -> Plan:
    err = check(cache, sr, "scan")
    if err is not None:
        raise err
    return Plan(title=f"Rescan {sr.display_name}", action="sr.scan", targets=(sr.ref,),
                calls=(Call("SR.scan", (sr.ref,), True),),
                xe=(xe("sr-scan", uuid=sr.uuid),), names=_names(cache, sr))


def _scan_when(cache: Cache, sr: Any) -> str | None:
    return None if sr.hosts else "it is detached: reattach it first"


def _default_when(cache: Cache, sr: Any) -> str | None:
    pool = Pool.of(cache)
    r = (cache.get("pool", pool.ref) or {}) if pool is not None else {}
    if pool is None:
        return "no pool in the cache"
    if all(r.get(f) == sr.ref for f in ("default_SR", "suspend_image_SR", "crash_dump_SR")):
        return "it is the pool's default already"
    why = _not_storage(cache, sr)
    if why is not None:
        return why
    if sr.is_iso:
        return "it is an ISO library: it holds no VM disks"
    if not sr.hosts:
        return "it is detached: reattach it first"
    err = check(cache, sr, "vdi_create")
    if err is not None and isinstance(err, XapiError) and err.code == "SR_OPERATION_NOT_SUPPORTED":
        return "its storage type cannot create disks"
    return None


def set_default(cache: Cache, sr: Sr) -> Plan:
    why = _default_when(cache, sr)
    if why is not None:
        raise Refused(why)
    pool = Pool.of(cache)
    assert pool is not None
    warnings: tuple[str, ...] = ()
    every = hosts(cache)
    if not sr.shared and len(every) > 1:
        warnings = (f"It is local to {sr.host_name or 'one host'}: new VMs on it run only "
                    "there, and cannot migrate.",)
    # as XenCenter's "Set as Default": new disks, suspend images and crash dumps
    calls = tuple(Call(f"pool.set_{f}", (pool.ref, sr.ref))
                  for f in ("default_SR", "suspend_image_SR", "crash_dump_SR"))
    line = " ".join([xe("pool-param-set", uuid=pool.uuid)] + [
        f"{k}={sr.uuid}" for k in ("default-SR", "suspend-image-SR", "crash-dump-SR")])
    return Plan(title=f"Make {sr.display_name} the pool's default SR",
                action="sr.set_default", targets=(sr.ref,), calls=calls, xe=(line,),
                names=_names(cache, sr), warnings=warnings,
                notes=("New VM disks, suspend images and crash dumps go there.",))


def _plug_when(cache: Cache, sr: Any) -> str | None:
    unplugged = [p for p, r in _pbds(cache, sr) if not r.get("currently_attached")]
    if not sr.PBDs:
        return "it has no PBD to copy a device config from: introduce it again"
    if not unplugged and not _missing_hosts(cache, sr):
        return "it is plugged on every host"
    return None


def plug(cache: Cache, sr: Sr) -> Plan:
    """Repair or reattach: plug each PBD that is not plugged, and give a shared SR a
    PBD on each host that has none, with the device config of one it has (as
    XenCenter's RepairSRAction does)."""
    why = _plug_when(cache, sr)
    if why is not None:
        raise Refused(why)
    err = check(cache, sr, "plug")
    if err is not None:
        raise err
    pbds = _pbds(cache, sr)
    calls: list[Call] = []
    lines: list[str] = []
    names = _names(cache, sr)
    config = dict(pbds[0][1].get("device_config") or {})
    for p, r in pbds:
        if not r.get("currently_attached"):
            calls.append(Call("PBD.plug", (p,), True))
            lines.append(xe("pbd-plug", uuid=r.get("uuid", "")))
    for h in _missing_hosts(cache, sr):
        calls.append(Call("PBD.create", ({"host": h, "SR": sr.ref, "device_config": config,
                                          "other_config": {}},)))
        calls.append(Call("PBD.plug", (Result(len(calls) - 1),), True))
        names[h] = _host_name(cache, h)
        # xe pbd-create prints the new PBD's uuid
        var = f"pbd{len(calls) // 2}"
        lines.append(f"{var}=$(" + xe("pbd-create", host_uuid=_uuid(cache, "host", h),
                                      sr_uuid=sr.uuid)
                     + "".join(" " + shlex.quote(f"device-config:{k}={v}")
                               for k, v in config.items()) + ")")
        lines.append(f'xe pbd-plug uuid="${var}"')
    detached = not sr.hosts
    title = ("Reattach " if detached else "Repair ") + sr.display_name
    notes: tuple[str, ...] = ()
    if _missing_hosts(cache, sr):
        notes = ("Hosts without a PBD get one with the same device config as "
                 f"{names.get(pbds[0][0], 'the first PBD')}.",)
    return Plan(title=title, action="sr.plug", targets=(sr.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names, notes=notes)


def _unplug_when(cache: Cache, sr: Any) -> str | None:
    if not sr.hosts:
        return "it is detached"
    return _running_words(cache, sr)


def _unplug_calls(cache: Cache, sr: Sr) -> tuple[list[Call], list[str]]:
    """PBD.unplug of each plugged PBD, the master's last."""
    plugged = [(p, r) for p, r in _pbds(cache, sr) if r.get("currently_attached")]
    plugged.reverse()
    return ([Call("PBD.unplug", (p,), True) for p, _ in plugged],
            [xe("pbd-unplug", uuid=r.get("uuid", "")) for _, r in plugged])


def _halted_users(cache: Cache, sr: Sr) -> list[str]:
    names: set[str] = set()
    for ref in sr.VDIs:
        r = cache.get("vdi", ref)
        if r is None:
            continue
        for u in uses(cache, Vdi.from_record(cache, ref, r)):
            if not u.is_control_domain:
                names.add(u.vm_name)
    return sorted(names, key=str.lower)


def unplug(cache: Cache, sr: Sr) -> Plan:
    why = _unplug_when(cache, sr)
    if why is not None:
        raise Refused(why)
    err = check(cache, sr, "unplug")
    if err is not None:
        raise err
    calls, lines = _unplug_calls(cache, sr)
    notes = ["Its data stays; plug it again with Repair (xsctl sr plug)."]
    users = _halted_users(cache, sr)
    if users:
        notes.append(f"VMs with disks on it cannot start until then: {some(users, 5)}.")
    return Plan(title=f"Detach {sr.display_name}", action="sr.unplug", targets=(sr.ref,),
                calls=tuple(calls), xe=tuple(lines), names=_names(cache, sr),
                disruptive=True, notes=tuple(notes))


def _gone_when(op: str) -> Any:
    """Forget and destroy: what xapi's check says once every PBD is unplugged (which
    the plan does first) and, for destroy, once its disks are deleted."""

    def when(cache: Cache, sr: Any) -> str | None:
        why = _not_storage(cache, sr)
        if why is not None:
            return why
        if op == "destroy" and sr.is_iso:
            return "an ISO library's images belong to its share: forget it instead"
        live = live_holders(cache, sr)
        if live:
            verb = "is" if len(live) == 1 else "are"
            return f"{some(live)} {verb} not halted and use{'s' if verb == 'is' else ''} it"
        later = {"SR_HAS_PBD", "SR_NOT_EMPTY"}
        for e in errors(cache, sr, op):
            if e.code in later:
                continue
            if e.code == "SR_HAS_NO_PBDS":
                return "it has no PBD, so xapi cannot reach it to delete it: forget it"
            return e.friendly
        return None

    return when


def forget(cache: Cache, sr: Sr) -> Plan:
    why = _gone_when("forget")(cache, sr)
    if why is not None:
        raise Refused(why)
    calls, lines = _unplug_calls(cache, sr)
    calls.append(Call("SR.forget", (sr.ref,), True))
    lines.append(xe("sr-forget", uuid=sr.uuid))
    disks = _to_delete(cache, sr)
    notes = ["The data stays on the storage: nothing is deleted. The SR can be attached "
             "again later (New SR: attach the existing SR, or xsctl sr introduce)."]
    if disks:
        notes.append(f"xapi forgets its {len(disks)} disk record(s): names, descriptions "
                     "and which VM used which disk are lost.")
    users = _halted_users(cache, sr)
    if users:
        notes.append(f"These VMs lose their disks on it: {some(users, 5)}.")
    return Plan(title=f"Forget {sr.display_name}", action="sr.forget", targets=(sr.ref,),
                calls=tuple(calls), xe=tuple(lines), names=_names(cache, sr),
                destructive=True, notes=tuple(notes))


def destroy(cache: Cache, sr: Sr) -> Plan:
    """Delete every disk (SR.destroy refuses SR_NOT_EMPTY while managed VDIs
    remain), unplug every PBD (SR_HAS_PBD), then SR.destroy. VDI.destroy runs
    through a plugged PBD, so a detached SR is plugged first."""
    why = _gone_when("destroy")(cache, sr)
    if why is not None:
        raise Refused(why)
    disks = _to_delete(cache, sr)
    calls: list[Call] = []
    lines: list[str] = []
    names = _names(cache, sr)
    pbds = _pbds(cache, sr)
    plugged_now = [p for p, r in pbds if r.get("currently_attached")]
    if disks and not plugged_now:
        p, r = pbds[0]
        calls.append(Call("PBD.plug", (p,), True))
        lines.append(xe("pbd-plug", uuid=r.get("uuid", "")))
        plugged_now = [p]
    for v in disks:
        err = _vdi_blocker(cache, v)
        if err is not None:
            raise Refused(f"{v.name_label}: {err}")
        calls.append(Call("VDI.destroy", (v.ref,), True))
        lines.append(xe("vdi-destroy", uuid=v.uuid))
        names[v.ref] = v.name_label
    for p in reversed([p for p, _ in pbds if p in plugged_now]):
        calls.append(Call("PBD.unplug", (p,), True))
        lines.append(xe("pbd-unplug", uuid=_uuid(cache, "pbd", p)))
    calls.append(Call("SR.destroy", (sr.ref,), True))
    lines.append(xe("sr-destroy", uuid=sr.uuid))
    shown = [v.name_label for v in disks]
    notes = [f"Everything on it is deleted for good: {len(disks)} disk(s)"
             + (f" ({some(shown, 4)})" if shown else "") + ", and the SR itself."]
    users = _halted_users(cache, sr)
    if users:
        notes.append(f"These VMs and snapshots lose their disks on it: {some(users, 5)}.")
    return Plan(title=f"Destroy {sr.display_name}", action="sr.destroy", targets=(sr.ref,),
                calls=tuple(calls), xe=tuple(lines), names=names, destructive=True,
                confirm_text=sr.display_name, notes=tuple(notes))


def _vdi_blocker(cache: Cache, vdi: Vdi) -> str | None:
    from xsctl.xapi.ops.vdi import check as vdi_check

    err = vdi_check(cache, vdi, "destroy")
    if err is None:
        return None
    if isinstance(err, XapiError) and err.code == "SR_HAS_NO_PBDS":
        return None  # the plan plugs it first
    return err.friendly if isinstance(err, XapiError) else str(err)


declare(
    Operation("sr.scan", SR, "Rescan", "s", "scan", "sr-scan", "scanned",
              "Look for disks on the storage that xapi does not know, and update the "
              "sizes", scan, allowed="scan", when=_scan_when, footer=True),
    Operation("sr.set_default", SR, "Make it the pool default", "D", "set-default",
              "pool-param-set", "made the pool default",
              "Make it the pool's default SR, for new disks, suspend images and crash "
              "dumps", set_default, when=_default_when, also=("pool set-default-sr",)),
    Operation("sr.plug", SR, "Reattach / repair", "p", "plug", "pbd-plug", "plugged",
              "Plug it on every host that should see it: reattaches a detached SR, "
              "repairs one plugged on some hosts only", plug, when=_plug_when),
    Operation("sr.unplug", SR, "Detach", "u", "unplug", "pbd-unplug", "detached",
              "Unplug it from every host; its data stays", unplug, when=_unplug_when,
              impact=Impact.DISRUPTIVE),
    Operation("sr.forget", SR, "Forget", "F", "forget", "sr-forget", "forgotten",
              "Detach it and remove it from the pool; the data stays on the storage",
              forget, when=_gone_when("forget"), impact=Impact.DESTRUCTIVE),
    Operation("sr.destroy", SR, "Destroy", "delete", "destroy", "sr-destroy", "destroyed",
              "Delete every disk on it and the SR itself", destroy,
              when=_gone_when("destroy"), impact=Impact.DESTRUCTIVE),
)
