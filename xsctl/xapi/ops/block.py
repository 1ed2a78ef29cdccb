"""Block attach: disks and ISOs into and out of VMs (VBD create, plug, unplug,
destroy; CD insert and eject), and a disk attached to a control domain to look
inside it, as ``xm block-attach`` did.

Nothing here deletes a disk: a detach destroys the VBD (the connection) only. The
gates follow ocaml/xapi/xapi_vbd_helpers.ml ``valid_operations`` (the VBD's own
allowed_operations) and the checks of xapi_vbd.ml ``create`` and ``plug``; the rules
that need the whole pool (who else has the disk, which host sees its SR) are in
:mod:`xsctl.xapi.block`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from xsctl.xapi import block, storage
from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XapiError, XsctlError
from xsctl.xapi.models import NULL, Sr, Vbd, Vdi, Vm, human_bytes, parse_size
from xsctl.xapi.ops.base import Call, Plan, Result, Undo, Var, xe
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Impact,
    Kind,
    Operation,
    Param,
    ParamKind,
    Refused,
    declare,
)
from xsctl.xapi.ops.resolve import resolve, resolve_host, resolve_sr
from xsctl.xapi.ops.vdi import VDI
from xsctl.xapi.ops.vm import VM
from xsctl.xapi.storage import MAX_VHD, VHD_TYPES, is_thick, some, thick_size
from xsctl.xapi.text import printable

NEW = "new:"  # a disk made on the spot: new:SIZE@SR


# ------------------------------------------------------------------ the VM, or dom0


def resolve_vm_or_dom0(cache: Cache, spec: str) -> str:
    """A guest, or a control domain: ``dom0`` (the pool master's), ``dom0:HOST``, or
    its own name (``Control domain on host: xcp-ng-02``)."""
    text = spec.strip()
    low = text.lower()
    if low == "dom0" or low.startswith("dom0:"):
        host = text[5:].strip() if ":" in text else ""
        if host:
            href = resolve_host(cache, host)
        else:
            pool = next(iter(cache.all("pool").values()), {})
            href = str(pool.get("master", NULL))
        dom0 = block.control_domain(cache, href)
        if dom0 is None:
            raise UsageError(f"no control domain on host {host or 'master'}")
        return dom0.ref
    try:
        return resolve(cache, "vm", text, kind="VM",
                       accept=lambda r: not r.get("is_a_template") and not r.get("is_a_snapshot"))
    except UsageError:
        raise


def _load_vm(cache: Cache, ref: str) -> Vm | None:
    vm = Vm.get(cache, ref)
    return vm if vm is not None and not vm.is_a_template and not vm.is_a_snapshot else None


# block-attach also takes a control domain: the inspection attach
VM_OR_DOM0 = replace(VM, resolve=resolve_vm_or_dom0, load=_load_vm)


# ------------------------------------------------------------------ the VBD kind


def _vbd_name(vbd: Vbd) -> str:
    """``web-01 xvdb``: its VM and where it sits there."""
    where = vbd.device or f"position {vbd.userdevice}"
    return f"{vbd.vm_name} {where}" if vbd.vm_name else where


def _vbd_members(cache: Cache) -> Iterable[tuple[str, str]]:
    out = []
    for ref, r in cache.snapshot("vbd"):
        vbd = _load_vbd(cache, ref, r)
        if vbd is not None:
            out.append((ref, _vbd_name(vbd)))
    return out


def _load_vbd(cache: Cache, ref: str, r: Any = None) -> Vbd | None:
    r = r if r is not None else cache.get("vbd", ref)
    if r is None:
        return None
    vm = cache.get("vm", str(r.get("VM"))) or {}
    if vm.get("is_a_template") or vm.get("is_a_snapshot"):
        return None  # a template's or snapshot's devices are not a VM's to act on
    return replace(Vbd.from_record(ref, r), vm_name=printable(str(vm.get("name_label", ""))))


def resolve_device(cache: Cache, vm: str, spec: str) -> str:
    """One of the VM's devices: its position (1), its Linux name (xvdb), or the
    name or UUID of the disk in it."""
    text = spec.strip()
    vr = cache.get("vm", vm) or {}
    rows = [(ref, r) for ref in vr.get("VBDs") or () if (r := cache.get("vbd", ref))]
    for ref, r in rows:
        if text in (r.get("userdevice"), r.get("device"), r.get("uuid")):
            return str(ref)
    # a Linux name for a device that is not plugged (xapi fills in ``device`` only
    # once it is): xvdc is position 2
    n = block._disk_number(text)
    for ref, r in rows:
        if n is not None and not text.isdigit() and r.get("userdevice") == str(n):
            return str(ref)
    hits = []
    for ref, r in rows:
        d = cache.get("vdi", str(r.get("VDI")))
        if d is not None and text in (d.get("name_label"), d.get("uuid")):
            hits.append(ref)
    if len(hits) == 1:
        return str(hits[0])
    name = vr.get("name_label", "the VM")
    if len(hits) > 1:
        raise UsageError(f"{name} has {len(hits)} devices with the disk {text!r}: name "
                         "one by position")
    have = ", ".join(f"{r.get('userdevice')}" + (f" ({r.get('device')})" if r.get("device")
                                                  else "") for _, r in rows) or "none"
    raise UsageError(f"{name} has no device {text!r} (its devices: {have})")


def _vm_of(cache: Cache, vbd: Vbd) -> Vm:
    vm = Vm.get(cache, vbd.VM)
    if vm is None:
        raise XapiError("HANDLE_INVALID", ["VM", vbd.VM])
    return vm


def device_name(cache: Cache, vbd: Vbd) -> str:
    """``web-01 xvdb (web-01 1)``: the VM, the position, what is in it."""
    vm = cache.get("vm", vbd.VM) or {}
    what = "(empty)" if vbd.empty else str((cache.get("vdi", vbd.VDI) or {}).get(
        "name_label", "?"))
    where = vbd.device or f"position {vbd.userdevice}"
    return f"{vm.get('name_label', '?')} {where} ({what})"


def check_vbd(cache: Cache, vbd: Any, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the VBD's allowed_operations
    (Xapi_vbd_helpers.valid_operations, in its order), or None."""
    if op in vbd.allowed_operations:
        return None
    if vbd.current_operations:
        return XapiError("OTHER_OPERATION_IN_PROGRESS",
                         ["VBD", vbd.ref, vbd.current_operations[0], ""])
    vm = Vm.get(cache, vbd.VM)
    if op in ("unplug", "unplug_force") and not vbd.unpluggable:
        return XapiError("VBD_NOT_UNPLUGGABLE", [vbd.ref])
    if op in ("insert", "eject") and vbd.type != "CD":
        return XapiError("VBD_NOT_REMOVABLE_MEDIA", [vbd.ref])
    if op == "eject" and vbd.empty:
        return XapiError("VBD_IS_EMPTY", [vbd.ref])
    if op == "insert" and not vbd.empty:
        return XapiError("VBD_NOT_EMPTY", [vbd.ref])
    power = vm.power_state if vm is not None else "Halted"
    if op in ("plug", "unplug", "unplug_force"):
        if power == "Running" and vbd.currently_attached and op == "plug":
            return XapiError("DEVICE_ALREADY_ATTACHED", [vbd.ref])
        if power == "Running" and not vbd.currently_attached and op != "plug":
            return XapiError("DEVICE_ALREADY_DETACHED", [vbd.ref])
        if power != "Running":
            return XapiError("VM_BAD_POWER_STATE", [vbd.VM, "running", power.lower()])
        if vm is not None:
            why = block.hotplug_refusal(cache, vm)
            if why is not None and block.says_no_hotplug(cache, vm):
                return XapiError("OPERATION_NOT_ALLOWED",
                                 ["VM states it does not support VBD hotplug."], said=why)
            if why is not None:
                return XapiError("VM_MISSING_PV_DRIVERS", [vbd.VM], said=why)
            if vbd.type == "CD" and block.runs_hvm(cache, vm):
                return XapiError("OPERATION_NOT_ALLOWED", [
                    "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"])
    if op in ("insert", "eject") and power == "Suspended":
        return XapiError("VM_BAD_POWER_STATE", [vbd.VM, "halted, running", "suspended"])
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def _explain_vbd(vbd: Any, op: str) -> XsctlError | None:
    """Without the pool at hand: only what the VBD itself says."""
    if op in vbd.allowed_operations:
        return None
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


VBD = Kind(
    cls="vbd", noun="device", nouns="devices",
    resolve=lambda cache, spec: resolve(cache, "vbd", spec, kind="device"),
    load=_load_vbd, name=_vbd_name,
    members=_vbd_members, explain=lambda v, op: _explain_vbd(v, op),
    classes=VM.classes, check=check_vbd, parent=VM_OR_DOM0, resolve_in=resolve_device,
    spec_help="the device: its position (1), its name (xvdb), or the disk in it",
)




# ------------------------------------------------------------------ attach


def _vm_when(cache: Cache, vm: Any) -> str | None:
    """Block devices change on a running, paused or halted VM, not while it is
    suspended (its saved memory expects the devices it had) or busy."""
    if vm.power_state == "Suspended":
        return "it is suspended: resume it or shut it down first"
    if vm.busy:
        return f"it is {vm.doing}"
    return None


def parse_new(cache: Cache, text: str) -> tuple[int, Sr]:
    """``new:10G@NFS storage`` -> (size, SR)."""
    body = text[len(NEW):]
    size_text, sep, sr_text = body.partition("@")
    if not sep or not sr_text.strip():
        raise UsageError(f"{text!r}: a new disk is written new:SIZE@SR (new:10G@'NFS storage')")
    size = parse_size(size_text)
    sr = Sr.get(cache, resolve_sr(cache, sr_text))
    assert sr is not None
    return size, sr


def new_disk_reason(cache: Cache, vm: Vm, sr: Sr, size: int) -> str | None:
    """Why a new disk of ``size`` cannot be made on ``sr`` for ``vm``."""
    if sr.is_iso or sr.type == "udev":
        return f"{sr.display_name} holds ISOs or drives, not disks"
    why = block.sr_reachable(cache, vm, sr)
    if why is not None:
        return why
    if "vdi_create" not in sr.allowed_operations:
        return f"{sr.display_name} cannot make disks now"
    if size <= 0:
        return "a disk's size must be more than 0"
    if sr.type in VHD_TYPES and size > MAX_VHD:
        return f"a disk on {sr.display_name} is at most {MAX_VHD // 1024**3} GiB (a VHD's limit)"
    if is_thick(cache, sr) and sr.physical_size > 0 and thick_size(size) > sr.free:
        return (f"{sr.display_name} is too full: {human_bytes(size)} needs "
                f"{human_bytes(thick_size(size))}, {human_bytes(sr.free)} is free")
    return None


def _disk_choices(ctx: Context, vm: Vm) -> list[Choice]:
    out = []
    for c in block.candidates(ctx.cache, vm):
        where = c.sr.display_name if c.sr is not None else "?"
        detail = f"{human_bytes(c.vdi.virtual_size)} on {where}"
        if c.read_only and c.reason is None:
            detail += f"; read-only only: {c.read_only}"
        out.append(Choice(c.vdi.ref, c.vdi.name_label, detail, c.reason))
    return out


def _judge_disk(ctx: Context, vm: Vm, value: str) -> Choice | None:
    """One disk as _disk_choices would list it (None: a new one, or not a disk)."""
    r = ctx.cache.get("vdi", value)
    if r is None or not block.listed(ctx.cache, r):
        return None
    c = block.candidate(ctx.cache, vm, Vdi.from_record(ctx.cache, value, r))
    return Choice(value, c.vdi.name_label, "", c.reason)


def _resolve_disk(ctx: Context, vm: Any, text: str) -> str:
    if text.strip().lower().startswith(NEW):
        parse_new(ctx.cache, text.strip())  # checked now: a bad size is a usage error
        return text.strip()
    return resolve(ctx.cache, "vdi", text, kind="disk")


def _position_choices(ctx: Context, vm: Vm) -> list[Choice]:
    free = block.allowed_positions(ctx.cache, vm)
    return [Choice(p, f"{p} ({block.linux_name(p)})") for p in free[:16]]


def _resolve_position(ctx: Context, vm: Any, text: str) -> str:
    t = text.strip().lower()
    if t.isdigit():
        return str(int(t))
    n = block._disk_number(t)
    if n is None:
        raise UsageError(f"{text!r} is not a device position (a number, 1, or a name, xvdb)")
    return str(n)


def _resolve_mode(ctx: Context, vm: Any, text: str) -> str:
    t = text.strip().upper()
    if t in ("RO", "READ-ONLY", "R"):
        return "RO"
    if t in ("RW", "READ-WRITE", "W"):
        return "RW"
    raise UsageError(f"mode {text!r}: RO or RW")


def _mode_choices(ctx: Context, vm: Vm) -> list[Choice]:
    return [Choice("RW", "read-write"), Choice("RO", "read-only")]


def _vbd_record(vm: Vm, vdi: Any, position: str, mode: str, bootable: bool,
                typ: str = "Disk", tag: str | None = None) -> dict[str, Any]:
    return {"VM": vm.ref, "VDI": vdi, "userdevice": position, "bootable": bootable,
            "mode": mode, "type": typ, "unpluggable": True, "empty": vdi == NULL,
            "other_config": {block.TAG: tag} if tag else {}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}}


def attach(cache: Cache, vm: Vm, disk: str, position: str | None, mode: str | None,
           bootable: bool, keep: bool) -> Plan:
    """VDI.create (a new disk), VBD.create, and VBD.plug where the VM runs: each step
    undone should a later one fail, the new disk included (it holds nothing yet)."""
    why = _vm_when(cache, vm)
    if why is not None:
        raise Refused(why)
    dom0 = vm.is_control_domain
    if keep and not dom0:
        raise UsageError("--keep is for a disk attached to a control domain")
    free = block.allowed_positions(cache, vm)
    if position is None:
        if not free:
            raise Refused(f"{vm.name_label} has no free device position")
        # the first free one, as xapi's "autodetect" picks; but not the CD's 3 on HVM
        hvm_cd = block.runs_hvm(cache, vm) and "3" in free and len(free) > 1
        position = next(p for p in free if not (hvm_cd and p == "3"))
    elif position not in free:
        raise XapiError("DEVICE_ALREADY_EXISTS", [position],
                        said=f"position {position} ({block.linux_name(position)}) is taken on "
                             f"{vm.name_label}; free: {', '.join(free[:8])}…")
    names: dict[str, str] = {vm.ref: vm.name_label}
    calls: list[Call] = []
    lines: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    new = disk.lower().startswith(NEW)
    if new:
        size, sr = parse_new(cache, disk)
        reason = new_disk_reason(cache, vm, sr, size)
        if reason is not None:
            raise Refused(reason)
        label = f"{vm.name_label} {position}"
        names[sr.ref] = sr.display_name
        calls.append(Call("VDI.create", ({
            "name_label": label, "name_description": "", "SR": sr.ref,
            "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
            "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []},),
            undo=Undo(f"the new disk {label}", (Call("VDI.destroy", (Result(0),)),))))
        lines.append("vdi=$(" + xe("vdi-create", sr_uuid=sr.uuid, name_label=label,
                                   virtual_size=size, type="user") + ")")
        vdi_arg: Any = Result(0)
        vdi_uuid: Any = Var("vdi")
        ro_reason = None
        what = f"a new {human_bytes(size)} disk on {sr.display_name}"
        if not is_thick(cache, sr) and size > sr.free:
            warnings.append(f"{human_bytes(size)} is more than the {human_bytes(sr.free)} "
                            f"free on {sr.display_name}: it fills up if the guest writes it all")
    else:
        vdi = Vdi.from_record(cache, disk, cache.get("vdi", disk) or {})
        if not vdi.uuid:
            raise XapiError("HANDLE_INVALID", ["VDI", disk])
        c = block.candidate(cache, vm, vdi)
        if c.reason is not None:
            raise Refused(f"{vdi.name_label}: {c.reason}")
        ro_reason = c.read_only
        names[vdi.ref] = vdi.name_label
        vdi_arg = vdi.ref
        vdi_uuid = vdi.uuid
        what = vdi.name_label
        configured = [u for u in c.users if u.vm != vm.ref and not u.attached
                      and not u.is_snapshot]
        if configured and not vdi.sharable:
            notes.append(f"{some(sorted({u.vm_name for u in configured}))} also has it "
                         "(not attached now): the two cannot run with it read-write at once.")
    if mode is None:
        mode = "RO" if ro_reason or dom0 else "RW"
    if mode == "RW" and ro_reason:
        raise Refused(f"{what} can be attached read-only only: {ro_reason}")
    if mode == "RO" and block.runs_hvm(cache, vm) and not dom0:
        raise Refused(f"{vm.name_label} is an HVM guest, which takes disks read-write only "
                      "(xapi refuses a read-only one: DISK_VBD_MUST_BE_READWRITE_FOR_HVM)")
    if ro_reason and mode == "RO":
        notes.append(f"Read-only: {ro_reason}.")
    tag = None
    if dom0:
        tag = block.kept_tag() if keep else block.owner_tag()
        if mode == "RW":
            warnings.append("Read-write in the control domain: whatever is written there "
                            "changes the guest's disk.")
    vbd_step = len(calls)
    calls.append(Call("VBD.create", (_vbd_record(vm, vdi_arg, position, mode, bootable,
                                                 tag=tag),),
                      undo=Undo(f"the new device {position} of {vm.name_label}",
                                (Call("VBD.destroy", (Result(vbd_step),)),))))
    lines.append("vbd=$(" + xe("vbd-create", vm_uuid=vm.uuid, vdi_uuid=vdi_uuid,
                               device=position, mode=mode, bootable=bootable,
                               type="Disk") + ")")
    if tag:
        lines.append(xe("vbd-param-set", uuid=Var("vbd"),
                        **{f"other-config:{block.TAG}": tag}))
    device = block.linux_name(position)
    if vm.power_state == "Running":
        why = block.hotplug_refusal(cache, vm)
        if why is None:
            calls.append(Call("VBD.plug", (Result(vbd_step),), True))
            lines.append(xe("vbd-plug", uuid=Var("vbd")))
            if dom0:
                notes.append(f"In {vm.name_label} it appears as /dev/{device} (read "
                             f"{'only' if mode == 'RO' else 'and write'}): mount it there "
                             f"to look inside. It is detached when xsctl exits"
                             + (" (--keep: until block-detach)." if keep else "."))
            else:
                notes.append(f"Hot-plugged: the guest sees it as {device} at once.")
        else:
            warnings.append(f"{why}: the disk is attached for its next boot, not now.")
    elif vm.power_state == "Paused":
        notes.append("The VM is paused: plug the device once it is unpaused, or it is "
                     "attached at its next boot.")
    else:
        notes.append(f"{vm.name_label} is halted: the disk is attached at its next boot "
                     f"(as {device}).")
    title = f"Attach {what} to {vm.name_label} at {position} ({device}, {mode})"
    return Plan(title=title, action="vm.block-attach", targets=(vm.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names, notes=tuple(notes), warnings=tuple(warnings))


# ------------------------------------------------------------------ detach, plug, unplug


def _device_when(cache: Cache, vbd: Any) -> str | None:
    vm = Vm.get(cache, vbd.VM)
    if vm is None:
        return "its VM is gone"
    why = _vm_when(cache, vm)
    if why is not None:
        return why
    if vbd.currently_attached and vm.power_state == "Running":
        err = check_vbd(cache, vbd, "unplug")
        if err is not None:
            return err.friendly if isinstance(err, XapiError) else str(err)
    if vbd.currently_attached and vm.power_state == "Paused":
        return "the VM is paused: unpause it first"
    return None


def _what(cache: Cache, vbd: Vbd) -> str:
    if vbd.empty:
        return "the empty drive"
    return str((cache.get("vdi", vbd.VDI) or {}).get("name_label", "the disk"))


def _detach(cache: Cache, vbd: Vbd, force: bool) -> Plan:
    why = _device_when(cache, vbd)
    if why is not None:
        raise Refused(why)
    vm = _vm_of(cache, vbd)
    what = _what(cache, vbd)
    where = vbd.device or f"position {vbd.userdevice}"
    calls: list[Call] = []
    lines: list[str] = []
    warnings: list[str] = []
    plugged = vbd.currently_attached and vm.power_state == "Running"
    if plugged:
        clean = Call("VBD.unplug", (vbd.ref,), True)
        if force:
            clean = replace(clean, otherwise=Call("VBD.unplug_force", (vbd.ref,), True))
            warnings.append("If the guest refuses to let the device go, it is pulled "
                            "from under it: what the guest has not written yet is lost, "
                            "and a file system on it may be damaged.")
        calls.append(clean)
        line = xe("vbd-unplug", uuid=vbd_uuid(cache, vbd))
        if force:
            line += " || " + xe("vbd-unplug", uuid=vbd_uuid(cache, vbd), force=True)
        lines.append(line)
    calls.append(Call("VBD.destroy", (vbd.ref,)))
    lines.append(xe("vbd-destroy", uuid=vbd_uuid(cache, vbd)))
    kept = ("The drive's disc stays in its ISO library." if vbd.type == "CD" and not vbd.empty
            else "" if vbd.empty else
            f"The disk {what} itself stays, with its data: only its connection to "
            f"{vm.name_label} goes.")
    notes = [n for n in (kept, "The guest loses the device now." if plugged else "") if n]
    return Plan(title=f"{'Force-detach' if force else 'Detach'} {what} from {vm.name_label} "
                      f"({where})", action="vbd.force_detach" if force else "vbd.detach",
                targets=(vbd.ref,), calls=tuple(calls), xe=tuple(lines),
                names={vbd.ref: f"{vm.name_label} {where}", vm.ref: vm.name_label},
                disruptive=plugged, destructive=force and plugged,
                notes=tuple(notes), warnings=tuple(warnings))


def vbd_uuid(cache: Cache, vbd: Vbd) -> str:
    return str((cache.get("vbd", vbd.ref) or {}).get("uuid", vbd.ref))


def detach(cache: Cache, vbd: Vbd) -> Plan:
    return _detach(cache, vbd, False)


def force_detach(cache: Cache, vbd: Vbd) -> Plan:
    return _detach(cache, vbd, True)


def _simple(cache: Cache, vbd: Vbd, op: str, verb: str, method: str, xe_cmd: str,
            note: str, disruptive: bool = False) -> Plan:
    err = check_vbd(cache, vbd, op)
    if err is not None:
        raise err
    vm = _vm_of(cache, vbd)
    where = vbd.device or f"position {vbd.userdevice}"
    return Plan(title=f"{verb} {_what(cache, vbd)} in {vm.name_label} ({where})",
                action=f"vbd.{op}", targets=(vbd.ref,),
                calls=(Call(method, (vbd.ref,), True),),
                xe=(xe(xe_cmd, uuid=vbd_uuid(cache, vbd)),),
                names={vbd.ref: f"{vm.name_label} {where}", vm.ref: vm.name_label},
                disruptive=disruptive,
                notes=(note,))


def plug(cache: Cache, vbd: Vbd) -> Plan:
    return _simple(cache, vbd, "plug", "Plug", "VBD.plug", "vbd-plug",
                   "The guest sees the device at once (activate).")


def unplug(cache: Cache, vbd: Vbd) -> Plan:
    return _simple(cache, vbd, "unplug", "Unplug", "VBD.unplug", "vbd-unplug",
                   "The guest loses the device until it is plugged again or the VM "
                   "restarts (deactivate); the device stays configured.", True)


# ------------------------------------------------------------------ CD drives


def _iso_choices(ctx: Context, vm: Vm) -> list[Choice]:
    out = []
    for v in block.isos(ctx.cache):
        sr = Sr.get(ctx.cache, v.SR)
        out.append(Choice(v.ref, v.name_label, sr.display_name if sr else "",
                          block.iso_reason(ctx.cache, vm, v)))
    return out


def _resolve_iso(ctx: Context, vm: Any, text: str) -> str:
    cache = ctx.cache
    return resolve(cache, "vdi", text, kind="ISO",
                   accept=lambda r: storage.is_iso_sr(cache, str(r.get("SR"))))


def _drive_choices(ctx: Context, vm: Vm) -> list[Choice]:
    return [Choice(d.userdevice, f"{d.userdevice} ({d.device or block.linux_name(d.userdevice)})",
                   "empty" if d.empty else _what(ctx.cache, d))
            for d in block.cd_drives(ctx.cache, vm)]


def _drive(cache: Cache, vm: Vm, drive: str | None, want_empty: bool) -> Vbd:
    drives = block.cd_drives(cache, vm)
    if not drives:
        raise Refused(f"{vm.name_label} has no CD drive: add one first (xsctl cd-add, or "
                      "Add CD drive)")
    if drive is not None:
        for d in drives:
            if drive in (d.userdevice, d.device):
                return d
        raise UsageError(f"{vm.name_label} has no CD drive at {drive}")
    fitting = [d for d in drives if d.empty == want_empty]
    return (fitting or drives)[0]


def _cd_when(cache: Cache, vm: Any) -> str | None:
    why = _vm_when(cache, vm)
    if why is not None:
        return why
    if not block.cd_drives(cache, vm):
        return "it has no CD drive"
    return None


def cd_insert(cache: Cache, vm: Vm, iso: str, drive: str | None) -> Plan:
    d = _drive(cache, vm, drive, want_empty=True)
    if not d.empty:
        raise XapiError("VBD_NOT_EMPTY", [d.ref],
                        said=f"the drive holds {_what(cache, d)}: eject it first")
    err = check_vbd(cache, d, "insert")
    if err is not None:
        raise err
    v = Vdi.from_record(cache, iso, cache.get("vdi", iso) or {})
    why = block.iso_reason(cache, vm, v)
    if why is not None:
        raise Refused(f"{v.name_label}: {why}")
    where = d.device or f"position {d.userdevice}"
    return Plan(title=f"Insert {v.name_label} into {vm.name_label}'s CD drive ({where})",
                action="vm.cd-insert", targets=(vm.ref,),
                calls=(Call("VBD.insert", (d.ref, v.ref), True),),
                xe=(xe("vm-cd-insert", uuid=vm.uuid, cd_name=v.name_label),),
                names={vm.ref: vm.name_label, v.ref: v.name_label,
                       d.ref: f"{vm.name_label} {where}"})


def cd_eject(cache: Cache, vm: Vm, drive: str | None) -> Plan:
    d = _drive(cache, vm, drive, want_empty=False)
    err = check_vbd(cache, d, "eject")
    if err is not None:
        raise err
    where = d.device or f"position {d.userdevice}"
    what = _what(cache, d)
    return Plan(title=f"Eject {what} from {vm.name_label} ({where})", action="vm.cd-eject",
                targets=(vm.ref,), calls=(Call("VBD.eject", (d.ref,), True),),
                xe=(xe("vm-cd-eject", uuid=vm.uuid),),
                names={vm.ref: vm.name_label, d.ref: f"{vm.name_label} {where}"},
                notes=("The ISO stays in its library; the drive stays, empty.",))


def cd_add(cache: Cache, vm: Vm, iso: str | None, position: str | None) -> Plan:
    """VBD.create of type CD (xe vm-cd-add): read-only, empty unless an ISO is given.
    An HVM guest's drive is an emulated one: added while the VM is halted."""
    why = _vm_when(cache, vm)
    if why is not None:
        raise Refused(why)
    if vm.power_state != "Halted" and block.runs_hvm(cache, vm):
        raise Refused(f"{vm.name_label} is an HVM guest: a CD drive is added while it is "
                      "halted (xapi: HVM CDROMs cannot be hotplugged)")
    free = block.allowed_positions(cache, vm)
    if position is None:
        position = "3" if "3" in free else (free[0] if free else None)
        if position is None:
            raise Refused(f"{vm.name_label} has no free device position")
    elif position not in free:
        raise XapiError("DEVICE_ALREADY_EXISTS", [position])
    names = {vm.ref: vm.name_label}
    vdi: str = NULL
    if iso is not None:
        v = Vdi.from_record(cache, iso, cache.get("vdi", iso) or {})
        why = block.iso_reason(cache, vm, v)
        if why is not None:
            raise Refused(f"{v.name_label}: {why}")
        vdi = v.ref
        names[v.ref] = v.name_label
    calls = [Call("VBD.create", (_vbd_record(vm, vdi, position, "RO", False, "CD"),),
                  undo=Undo(f"the new CD drive of {vm.name_label}",
                            (Call("VBD.destroy", (Result(0),)),)))]
    lines = [("vbd=$(" if vm.power_state == "Running" else "")
             + xe("vm-cd-add", uuid=vm.uuid, cd_name=names.get(vdi), device=position)
             + (")" if vm.power_state == "Running" else "")]
    if vm.power_state == "Running":
        calls.append(Call("VBD.plug", (Result(0),), True))
        lines.append(xe("vbd-plug", uuid=Var("vbd")))
    title = (f"Add a CD drive to {vm.name_label} at {position}"
             + (f" with {names[vdi]}" if vdi != NULL else " (empty)"))
    return Plan(title=title, action="vm.cd-add", targets=(vm.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names)


def _add_when(cache: Cache, vm: Any) -> str | None:
    why = _vm_when(cache, vm)
    if why is not None:
        return why
    if vm.power_state != "Halted" and block.runs_hvm(cache, vm):
        return "an HVM guest's CD drive is added while it is halted"
    return None


def insert(cache: Cache, vbd: Vbd, iso: str) -> Plan:
    plan = cd_insert(cache, _vm_of(cache, vbd), iso, vbd.userdevice)
    return replace(plan, action="vbd.insert", targets=(vbd.ref,),
                   xe=(xe("vbd-insert", uuid=vbd_uuid(cache, vbd),
                          vdi_uuid=(cache.get("vdi", iso) or {}).get("uuid", iso)),))


def eject(cache: Cache, vbd: Vbd) -> Plan:
    plan = cd_eject(cache, _vm_of(cache, vbd), vbd.userdevice)
    return replace(plan, action="vbd.eject", targets=(vbd.ref,),
                   xe=(xe("vbd-eject", uuid=vbd_uuid(cache, vbd)),))


def _vbd_iso_choices(ctx: Context, vbd: Vbd) -> list[Choice]:
    return _iso_choices(ctx, _vm_of(ctx.cache, vbd))


# ------------------------------------------------------------------ inspect (dom0)


def _inspect_hosts(cache: Cache, vdi: Vdi) -> list[str]:
    sr = Sr.get(cache, vdi.SR)
    if sr is None:
        return []
    pool = next(iter(cache.all("pool").values()), {})
    master = str(pool.get("master", NULL))
    return sorted(sr.hosts, key=lambda h: h != master)


def _host_choices(ctx: Context, vdi: Vdi) -> list[Choice]:
    cache = ctx.cache
    ok = set(_inspect_hosts(cache, vdi))
    out = []
    for d in block.control_domains(cache):
        out.append(Choice(d.resident_on, d.host_name, d.name_label,
                          None if d.resident_on in ok else "its SR is not plugged there"))
    return out


def _resolve_host(ctx: Context, vdi: Any, text: str) -> str:
    return resolve_host(ctx.cache, text)


def inspect_when(cache: Cache, vdi: Any) -> str | None:
    live_rw = [u for u in storage.uses(cache, vdi)
               if u.attached and u.mode == "RW" and not u.is_control_domain]
    if live_rw:
        return (f"{some(sorted({u.vm_name for u in live_rw}))} has it attached read-write "
                "and running: snapshot it and look at the snapshot instead")
    if not _inspect_hosts(cache, vdi):
        return "its SR is not plugged on any host"
    if any(u.is_control_domain for u in storage.uses(cache, vdi)):
        return "a control domain has it already"
    return None


def inspect(cache: Cache, vdi: Vdi, host: str | None, mode: str | None, keep: bool) -> Plan:
    """Attach the disk to a control domain (read-only unless asked), tagged, for a
    look inside; refused while a running VM has it read-write (both would write)."""
    why = inspect_when(cache, vdi)
    if why is not None:
        raise Refused(why)
    hosts = _inspect_hosts(cache, vdi)
    href = host if host is not None else hosts[0]
    if href not in hosts:
        raise Refused(f"{vdi.sr_name} is not plugged on that host")
    dom0 = block.control_domain(cache, href)
    if dom0 is None:
        raise Refused("that host has no control domain running")
    plan = attach(cache, dom0, vdi.ref, None, mode, False, keep)
    return replace(plan, action="vdi.inspect", targets=(vdi.ref,),
                   title=f"Inspect {vdi.name_label} in {dom0.name_label} "
                         + plan.title.rsplit(f" to {dom0.name_label} ", 1)[-1])


def is_inspection(plan: Plan) -> bool:
    """A plan that attaches a disk to a control domain for this run only (detached
    when the run ends; not one kept with --keep)."""
    for call in plan.calls:
        if isinstance(call, Call) and call.method == "VBD.create":
            tag = str(call.args[0].get("other_config", {}).get(block.TAG, ""))
            return bool(tag) and not tag.startswith(block.KEPT + "/")
    return False


def made_vbds(plan: Plan, results: list[Any]) -> list[str]:
    """The VBDs a plan's VBD.create calls made, from the results of its calls."""
    return [str(r) for call, r in zip(plan.calls, results, strict=False)
            if isinstance(call, Call) and call.method == "VBD.create"
            and str(r).startswith("OpaqueRef:")]


def release(cache: Cache, vbd: Vbd) -> Plan:
    """Detach an inspection attach (its unplug forced if refused: dom0 held it
    read-only, or the run that made it is gone)."""
    return _detach(cache, vbd, True)


# ------------------------------------------------------------------ the declarations

_MODE = Param("mode", ParamKind.PICK, "Mode", ("--mode",),
              "RO or RW (default: read-write unless the disk can only be read-only; "
              "read-only in a control domain)", required=False, choices=_mode_choices,
              resolve=_resolve_mode, metavar="MODE",
              switches=(("--ro", "RO"), ("--rw", "RW")))
_KEEP = Param("keep", ParamKind.FLAG, "Keep attached", ("--keep",),
              "a control domain's disk: leave it attached when xsctl exits (until "
              "block-detach)")

declare(
    Operation("vm.block-attach", VM_OR_DOM0, "Attach disk", "A", "block-attach", "vbd-create",
              "disk attached",
              "Attach a disk (existing or new) to the VM, hot-plugged where it runs", attach,
              when=_vm_when, also=("block-attach",),
              rules="DISK is a disk's name or UUID, or new:SIZE@SR for a new one. VM may be "
                    "dom0 (or dom0:HOST) to look inside a disk from the control domain: "
                    "read-only, and detached when xsctl exits unless --keep.",
              params=(Param("disk", ParamKind.PICK, "Disk", (), "the disk: name, UUID, or "
                            "new:SIZE@SR", choices=_disk_choices, resolve=_resolve_disk,
                            metavar="DISK", open=True, judge=_judge_disk),
                      Param("position", ParamKind.PICK, "Position", (),
                            "the device position (1 or xvdb; default: the first free one)",
                            required=False, choices=_position_choices,
                            resolve=_resolve_position, metavar="DEVICE", open=True),
                      _MODE,
                      Param("bootable", ParamKind.FLAG, "Bootable", ("--bootable",),
                            "the VM may boot from it"),
                      _KEEP)),
    Operation("vm.cd-insert", VM, "Insert ISO", "i", "cd-insert", "vm-cd-insert", "ISO inserted",
              "Insert an ISO into the VM's CD drive", cd_insert, when=_cd_when,
              also=("cd-insert",),
              params=(Param("iso", ParamKind.PICK, "ISO", (), "the ISO's name or UUID",
                            choices=_iso_choices, resolve=_resolve_iso, metavar="ISO"),
                      Param("drive", ParamKind.PICK, "Drive", ("--device",),
                            "the CD drive, where the VM has several", required=False,
                            choices=_drive_choices, resolve=_resolve_position,
                            metavar="DEVICE", open=True))),
    Operation("vm.cd-eject", VM, "Eject ISO", "J", "cd-eject", "vm-cd-eject", "ejected",
              "Eject the ISO from the VM's CD drive", cd_eject, when=_cd_when,
              also=("cd-eject",),
              params=(Param("drive", ParamKind.PICK, "Drive", ("--device",),
                            "the CD drive, where the VM has several", required=False,
                            choices=_drive_choices, resolve=_resolve_position,
                            metavar="DEVICE", open=True),)),
    Operation("vm.cd-add", VM, "Add CD drive", "D", "cd-add", "vm-cd-add", "CD drive added",
              "Add a CD drive to the VM (empty, or with an ISO)", cd_add, when=_add_when,
              also=("cd-add",),
              params=(Param("iso", ParamKind.PICK, "ISO", ("--iso",), "an ISO to insert",
                            required=False, choices=_iso_choices, resolve=_resolve_iso,
                            metavar="ISO"),
                      Param("position", ParamKind.PICK, "Position", ("--device",),
                            "its position (default 3, as xapi's templates put it)",
                            required=False, choices=_position_choices,
                            resolve=_resolve_position, metavar="DEVICE", open=True))),
    Operation("vbd.detach", VBD, "Detach", "x", "detach", "vbd-destroy", "detached",
              "Unplug the device if plugged, then remove it; the disk itself stays",
              detach, when=_device_when, impact=Impact.DISRUPTIVE, also=("block-detach",),
              footer=True),
    Operation("vbd.force_detach", VBD, "Force detach", "X", "detach", "vbd-destroy",
              "detached", "Detach, forcing the unplug if the guest refuses a clean one",
              force_detach, when=_device_when, impact=Impact.DESTRUCTIVE, flag="--force",
              also=("block-detach",)),
    Operation("vbd.plug", VBD, "Plug (activate)", "p", "plug", "vbd-plug", "plugged",
              "Plug the device into the running guest", plug, allowed="plug"),
    Operation("vbd.unplug", VBD, "Unplug (deactivate)", "u", "unplug", "vbd-unplug",
              "unplugged", "Unplug the device from the running guest; it stays configured",
              unplug, allowed="unplug", impact=Impact.DISRUPTIVE),
    Operation("vbd.insert", VBD, "Insert ISO", "i", "insert", "vbd-insert", "ISO inserted",
              "Insert an ISO into this CD drive", insert, allowed="insert",
              params=(Param("iso", ParamKind.PICK, "ISO", (), "the ISO's name or UUID",
                            choices=_vbd_iso_choices, resolve=_resolve_iso, metavar="ISO"),)),
    Operation("vbd.eject", VBD, "Eject", "J", "eject", "vbd-eject", "ejected",
              "Eject the ISO from this CD drive", eject, allowed="eject"),
    Operation("vdi.inspect", VDI, "Inspect in dom0", "I", "inspect", "vbd-create",
              "attached to the control domain",
              "Attach the disk to a control domain, read-only, to look inside it",
              inspect, when=inspect_when,
              rules="Read-only unless --rw; refused while a running VM has the disk "
                    "read-write. Detached when xsctl exits, unless --keep.",
              params=(Param("host", ParamKind.PICK, "Host", ("--host",),
                            "whose control domain (default: the master, where the SR is "
                            "plugged)", required=False, choices=_host_choices,
                            resolve=_resolve_host, metavar="HOST"),
                      _MODE, _KEEP)),
)
