"""Virtual disk (VDI) operations: their gates, parameters and planners.

The gates follow ocaml/xapi/xapi_vdi.ml ``check_operation_error``, told in the words
of the cache (the VM that has the disk attached, not its ref). Sizes follow the SM
drivers: a VHD is at most 2040 GiB and never shrinks (``vhdutil``), a thick SR
(LVHD) allocates a disk's whole size at once (``lvhdutil.calcSizeVHDLV``), a thin one
(ext, nfs, smb, file) only its metadata, and grows as the guest writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XapiError, XsctlError
from xsctl.xapi.models import NULL, Sr, Vdi, human_bytes, srs
from xsctl.xapi.ops.base import Call, Plan, xe
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
from xsctl.xapi.ops.resolve import resolve, resolve_sr
from xsctl.xapi.ops.sr import SR
from xsctl.xapi.ops.sr import check as sr_check
from xsctl.xapi.storage import (
    MAX_VHD,
    VHD_TYPES,
    Use,
    attached,
    is_thick,
    sm_features,
    some,
    thick_size,
    uses,
)


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("vdi")]


def _load(cache: Cache, ref: str) -> Vdi | None:
    r = cache.get("vdi", ref)
    return None if r is None else Vdi.from_record(cache, ref, r)


# Xapi_vdi.check_operation_error: the driver feature each operation needs
VDI_FEATURE = {
    "snapshot": "VDI_SNAPSHOT", "destroy": "VDI_DELETE", "resize": "VDI_RESIZE",
    "update": "VDI_UPDATE", "resize_online": "VDI_RESIZE_ONLINE",
    "generate_config": "VDI_GENERATE_CONFIG", "clone": "VDI_CLONE", "mirror": "VDI_MIRROR",
    "enable_cbt": "VDI_CONFIG_CBT", "disable_cbt": "VDI_CONFIG_CBT",
    "data_destroy": "VDI_CONFIG_CBT", "list_changed_blocks": "VDI_CONFIG_CBT",
    "set_on_boot": "VDI_RESET_ON_BOOT",
}
# operations a disk attached to a running domain still allows
LIVE_OPS = frozenset({"snapshot", "resize_online", "blocked", "clone", "mirror",
                      "enable_cbt", "disable_cbt", "data_destroy"})


def _who(users: list[Use]) -> str:
    names = sorted({u.vm_name for u in users}, key=str.lower)
    states = {u.power_state.lower() for u in users}
    state = states.pop() if len(states) == 1 else "running"
    return f"{some(names)} ({state})"


def check(cache: Cache | None, vdi: Vdi, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the disk's allowed_operations
    (xapi_vdi.ml check_operation_error, in its order), or None."""
    if op in vdi.allowed_operations:
        return None
    busy = [o for o in vdi.current_operations if o != "copy"]
    if busy:
        return XapiError("OTHER_OPERATION_IN_PROGRESS", ["VDI", vdi.ref, busy[0], ""])
    sr = Sr.get(cache, vdi.SR) if cache is not None else None
    if op == "resize" and sr is not None and not sr.hosts:
        return XapiError("SR_HAS_NO_PBDS", [vdi.SR],
                         said=f"its SR ({sr.display_name}) is detached")
    if cache is not None and op not in LIVE_OPS:
        live = attached(cache, vdi)
        if op == "copy":
            live = [u for u in live if u.mode == "RW"]
        if live:
            return XapiError("VDI_IN_USE", [vdi.ref, op],
                             said=f"{_who(live)} has it attached")
    feats = sm_features(cache, sr.type) if cache is not None and sr is not None else None
    need = VDI_FEATURE.get(op)
    if feats is not None and need is not None and need not in feats:
        return XapiError("SR_OPERATION_NOT_SUPPORTED", [vdi.SR])
    if op == "destroy":
        if sr is not None and sr.type == "udev":
            return XapiError("VDI_IS_A_PHYSICAL_DEVICE", [vdi.ref])
        if sr is not None and sr.is_tools_sr:
            return XapiError("SR_OPERATION_NOT_SUPPORTED", [vdi.SR])
        if vdi.type == "rrd":
            return XapiError("VDI_HAS_RRDS", [vdi.ref])
    if op == "snapshot" and vdi.sharable:
        return XapiError("VDI_IS_SHARABLE", [vdi.ref])
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def explain(vdi: Vdi, op: str) -> XsctlError | None:
    return check(None, vdi, op)


def _explain(vdi: Any, op: str) -> XsctlError | None:
    return explain(vdi, op)


def _check(cache: Cache, vdi: Any, op: str) -> XsctlError | None:
    return check(cache, vdi, op)


VDI = Kind(
    cls="vdi", noun="disk", nouns="disks",
    resolve=lambda cache, spec: resolve(cache, "vdi", spec, kind="disk"),
    load=_load, name=lambda v: v.name_label, members=_members, explain=_explain,
    classes=("pool", "host", "SR", "PBD", "SM", "VDI", "VBD", "VM"), check=_check,
)


# ------------------------------------------------------------------ helpers


def _sr_of(cache: Cache, vdi: Vdi) -> Sr:
    sr = Sr.get(cache, vdi.SR)
    if sr is None:
        raise XapiError("HANDLE_INVALID", ["SR", vdi.SR])
    return sr


def _name(text: str) -> str:
    if not text.strip():
        raise UsageError("a disk's name cannot be empty")
    return text


def _plan(vdi: Vdi, title: str, action: str, calls: list[Call], lines: list[str],
          names: dict[str, str] | None = None, **kw: Any) -> Plan:
    return Plan(title=title, action=action, targets=(vdi.ref,), calls=tuple(calls),
                xe=tuple(lines), names={vdi.ref: vdi.name_label, **(names or {})}, **kw)


def _size_rules(sr: Sr, size: int) -> None:
    """The driver's own limits, before any call (vhdutil.validate_and_round_vhd_size
    answers SR_BACKEND_FAILURE_79 "VDI Invalid size")."""
    if size <= 0:
        raise UsageError("a disk's size must be more than 0")
    if sr.type in VHD_TYPES and size > MAX_VHD:
        raise Refused(f"a disk on {sr.display_name} is at most {MAX_VHD // 1024**3} GiB "
                      f"(a VHD's limit); {human_bytes(size)} is too big")


def _room(cache: Cache, sr: Sr, need: int, what: str) -> None:
    if sr.physical_size > 0 and need > sr.free:
        raise Refused(f"{sr.display_name} is too full: {what} needs {human_bytes(need)}, "
                      f"{human_bytes(sr.free)} is free (xapi would answer SR_FULL, or "
                      "the driver's \"There is insufficient space\")")


def _thin_note(sr: Sr, size: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(notes, warnings) about space on a thin SR, where xapi checks only that the
    disk's metadata fits."""
    note = (f"{sr.display_name} is thin-provisioned: the disk takes space only as the "
            "guest writes; xapi checks only that its metadata fits.",)
    if size > sr.free:
        return note, (f"{human_bytes(size)} is more than the {human_bytes(sr.free)} free on "
                      f"{sr.display_name}: it fills up if the guest writes it all.",)
    return note, ()


# ------------------------------------------------------------------ create (on an SR)


def _create_when(cache: Cache, sr: Any) -> str | None:
    if sr.is_iso or sr.type == "udev":
        return "it holds ISOs or drives, not disks"
    if not sr.hosts:
        return "it is detached: reattach it first"
    return None


def create(cache: Cache, sr: Sr, name: str, size: int) -> Plan:
    _name(name)
    why = _create_when(cache, sr)
    if why is not None:
        raise Refused(why)
    err = sr_check(cache, sr, "vdi_create")
    if err is not None:
        raise err
    _size_rules(sr, size)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    if is_thick(cache, sr):
        _room(cache, sr, thick_size(size), f"a {human_bytes(size)} disk")
    else:
        notes, warnings = _thin_note(sr, size)
    record = {"name_label": name, "name_description": "", "SR": sr.ref,
              "virtual_size": str(size), "type": "user", "sharable": False,
              "read_only": False, "other_config": {}, "xenstore_data": {},
              "sm_config": {}, "tags": []}
    return Plan(title=f"Create a {human_bytes(size)} disk {name!r} on {sr.display_name}",
                action="vdi.create", targets=(sr.ref,),
                calls=(Call("VDI.create", (record,)),),
                xe=(xe("vdi-create", sr_uuid=sr.uuid, name_label=name, virtual_size=size,
                       type="user"),),
                names={sr.ref: sr.display_name}, notes=notes, warnings=warnings)


# ------------------------------------------------------------------ rename


def _detached_sr(cache: Cache, vdi: Any) -> str | None:
    # the name is kept in the SR's metadata too: xapi forwards the call to a host
    # with the SR plugged (SR_HAS_NO_PBDS otherwise)
    sr = Sr.get(cache, vdi.SR)
    if sr is not None and not sr.hosts:
        return f"its SR ({sr.display_name}) is detached"
    return None


def rename(cache: Cache, vdi: Vdi, name: str) -> Plan:
    _name(name)
    why = _detached_sr(cache, vdi)
    if why is not None:
        raise Refused(why)
    return _plan(vdi, f"Rename {vdi.name_label} to {name!r}", "vdi.rename",
                 [Call("VDI.set_name_label", (vdi.ref, name))],
                 [xe("vdi-param-set", uuid=vdi.uuid, name_label=name)])


# ------------------------------------------------------------------ resize


def _resize_op(cache: Cache, vdi: Vdi) -> tuple[str, list[Use]]:
    live = attached(cache, vdi)
    return ("resize_online" if live else "resize"), live


def _resize_when(cache: Cache, vdi: Any) -> str | None:
    op, live = _resize_op(cache, vdi)
    err = check(cache, vdi, op)
    if err is None:
        return None
    if live and isinstance(err, XapiError) and err.code == "SR_OPERATION_NOT_SUPPORTED":
        return f"{_who(live)} has it attached, and its SR cannot resize it live"
    return err.friendly if isinstance(err, XapiError) else str(err)


def resize(cache: Cache, vdi: Vdi, size: int) -> Plan:
    """VDI.resize, or VDI.resize_online for an attached disk: xapi lists
    resize_online only where the SR's driver has VDI_RESIZE_ONLINE (the call was
    removed in Inverness and came back for such drivers), so elsewhere an attached
    disk is refused, as xapi would (VDI_IN_USE)."""
    sr = _sr_of(cache, vdi)
    if size < vdi.virtual_size:
        # sm's vhdutil: "VDI Invalid size [opterr=shrinking not allowed]"
        raise Refused(f"{vdi.name_label} is {human_bytes(vdi.virtual_size, precise=True)}: "
                      "shrinking not allowed (a disk can only grow)")
    if size == vdi.virtual_size:
        raise Refused(f"{vdi.name_label} is {human_bytes(size, precise=True)} already")
    why = _resize_when(cache, vdi)
    if why is not None:
        raise Refused(why)
    _size_rules(sr, size)
    op, live = _resize_op(cache, vdi)
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    if is_thick(cache, sr):
        _room(cache, sr, thick_size(size) - thick_size(vdi.virtual_size),
              f"growing it by {human_bytes(size - vdi.virtual_size)}")
    else:
        notes, warnings = _thin_note(sr, size - vdi.virtual_size)
    if live:
        notes += (f"Online: {_who(live)} keeps running; the guest must extend its "
                  "partition and file system itself.",)
    else:
        notes += ("The guest must extend its partition and file system at its next boot.",)
    return _plan(vdi, f"Resize {vdi.name_label} to {human_bytes(size, precise=True)}"
                 + (" (online)" if live else ""), "vdi.resize",
                 [Call(f"VDI.{op}", (vdi.ref, str(size)), True)],
                 [xe("vdi-resize", uuid=vdi.uuid, disk_size=size, online=bool(live))],
                 {sr.ref: sr.display_name}, notes=notes, warnings=warnings)


def _size_default(ctx: Context, vdi: Any) -> str:
    return human_bytes(vdi.virtual_size, exact=True)


# ------------------------------------------------------------------ copy


def _copy_need(cache: Cache, vdi: Vdi, dest: Sr) -> int | None:
    """What a copy surely takes on ``dest``, or None where it depends on the data
    (a thick disk's data copied to a thin SR)."""
    if is_thick(cache, dest):
        return thick_size(vdi.virtual_size)
    src = Sr.get(cache, vdi.SR)
    if src is not None and is_thick(cache, src):
        return None
    return vdi.physical_utilisation


def dest_reason(cache: Cache, vdi: Vdi, dest: Sr) -> str | None:
    """Why ``dest`` cannot take a copy of the disk, or None."""
    if dest.ref == vdi.SR:
        return "the disk is on it already"
    if dest.is_tools_sr:
        return "xapi's tools ISO library (read-only)"
    if dest.is_iso:
        return "an ISO library"
    if dest.type == "udev":
        return "a host's removable drives"
    if not dest.hosts:
        return "detached: no host sees it"
    err = sr_check(cache, dest, "vdi_create")
    if err is not None:
        return err.friendly if isinstance(err, XapiError) else str(err)
    need = _copy_need(cache, vdi, dest)
    if need is not None and dest.physical_size > 0 and need > dest.free:
        return f"too little free ({human_bytes(dest.free)}, needs {human_bytes(need)})"
    return None


def _sr_choices(ctx: Context, vdi: Vdi) -> list[Choice]:
    return [Choice(s.ref, s.display_name,
                   f"{human_bytes(s.free)} free" + (", thin" if not is_thick(ctx.cache, s)
                                                     and not s.is_iso else ""),
                   dest_reason(ctx.cache, vdi, s))
            for s in srs(ctx.cache)]


def _resolve_sr(ctx: Context, vdi: Any, text: str) -> str:
    return resolve_sr(ctx.cache, text)


def copy(cache: Cache, vdi: Vdi, sr: str) -> Plan:
    dest = Sr.get(cache, sr)
    if dest is None:
        raise XapiError("HANDLE_INVALID", ["SR", sr])
    err = check(cache, vdi, "copy")
    if err is not None:
        raise err
    why = dest_reason(cache, vdi, dest)
    if why is not None:
        raise Refused(f"{dest.display_name}: {why}")
    warnings: tuple[str, ...] = ()
    if _copy_need(cache, vdi, dest) is None and vdi.virtual_size > dest.free:
        warnings = (f"{dest.display_name} has {human_bytes(dest.free)} free: enough only if "
                    f"less than that of {vdi.name_label}'s {human_bytes(vdi.virtual_size)} "
                    "holds data.",)
    return _plan(vdi, f"Copy {vdi.name_label} to {dest.display_name}", "vdi.copy",
                 [Call("VDI.copy", (vdi.ref, dest.ref, NULL, NULL), True)],
                 [xe("vdi-copy", uuid=vdi.uuid, sr_uuid=dest.uuid)],
                 {dest.ref: dest.display_name}, warnings=warnings,
                 notes=("The copy is a new disk with the same name, used by no VM.",))


# ------------------------------------------------------------------ destroy


def _last_users(cache: Cache, vdi: Vdi) -> str:
    """Who used the disk: the VMs, snapshots and templates whose VBDs refer to it."""
    found = [u for u in uses(cache, vdi) if not u.is_control_domain]
    if not found:
        return "No VM uses it."
    parts = []
    for u in found:
        what = ("snapshot" if u.is_snapshot else "template" if u.is_template
                else u.power_state.lower())
        parts.append(f"{u.vm_name} ({what}, disk {u.device})")
    return f"Used by {some(parts, 4)}: it loses this disk."


def destroy(cache: Cache, vdi: Vdi) -> Plan:
    err = check(cache, vdi, "destroy")
    if err is not None:
        raise err
    notes = [_last_users(cache, vdi), "Its data is deleted for good."]
    if vdi.snapshots:
        notes.append(f"Its {len(vdi.snapshots)} snapshot(s) stay.")
    return _plan(vdi, f"Delete disk {vdi.name_label}", "vdi.destroy",
                 [Call("VDI.destroy", (vdi.ref,), True)],
                 [xe("vdi-destroy", uuid=vdi.uuid)],
                 {vdi.SR: vdi.sr_name}, destructive=True, confirm_text=vdi.name_label,
                 notes=tuple(notes))


# ------------------------------------------------------------------ the declarations

_NAME = ("--name", "--name-label")

declare(
    Operation("vdi.create", SR, "New disk", "c", "create", "vdi-create", "disk created",
              "Create a disk on the SR", create, allowed="vdi_create", when=_create_when,
              group="vdi",
              rules="A size with its unit: 10G, 512M, 1.5T (binary units). A VHD disk is "
                    "at most 2040 GiB.",
              params=(Param("name", ParamKind.TEXT, "Name", _NAME, "the new disk's name",
                            default=lambda c, sr: "New disk", metavar="NAME"),
                      Param("size", ParamKind.SIZE, "Size", ("--size", "--virtual-size"),
                            "its size, e.g. 10GiB, 512M", default=lambda c, sr: "10G",
                            metavar="SIZE"))),
    Operation("vdi.rename", VDI, "Rename", "r", "rename", "vdi-param-set", "renamed",
              "Change the disk's name", rename, when=_detached_sr,
              params=(Param("name", ParamKind.TEXT, "New name", _NAME, "the new name",
                            default=lambda c, v: v.name_label, metavar="NAME"),)),
    Operation("vdi.resize", VDI, "Resize", "R", "resize", "vdi-resize", "resized",
              "Grow the disk (online where its SR allows it)", resize, when=_resize_when,
              rules="A disk only grows. Attached to a running VM, it grows online only "
                    "where its SR's driver can.",
              params=(Param("size", ParamKind.SIZE, "New size", ("--size", "--disk-size"),
                            "the new size, e.g. 20GiB", default=_size_default,
                            metavar="SIZE"),)),
    Operation("vdi.copy", VDI, "Copy to an SR", "c", "copy", "vdi-copy", "copied",
              "Copy the disk to another SR (a new disk; the original stays)", copy,
              allowed="copy",
              params=(Param("sr", ParamKind.PICK, "Destination SR", ("--sr", "--sr-uuid"),
                            "the SR to copy it to", choices=_sr_choices,
                            resolve=_resolve_sr, metavar="SR"),)),
    Operation("vdi.destroy", VDI, "Delete", "delete", "destroy", "vdi-destroy", "deleted",
              "Delete the disk and its data", destroy, allowed="destroy",
              impact=Impact.DESTRUCTIVE),
)
