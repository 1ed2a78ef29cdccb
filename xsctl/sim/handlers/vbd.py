"""VBD behaviour: device numbers (ocaml/xapi-idl/xen/device_number.ml and
Xapi_vm_helpers.allowed_VBD_devices), Xapi_vbd_helpers.valid_operations (what
allowed_operations lists and every VBD call checks, the VDI sharing checks included),
and the VBD calls of xapi_vbd.ml with what xapi_xenops.ml changes for plug, unplug,
insert and eject.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.storage import (
    Mark,
    Table,
    assert_managed,
    check_table,
    domain_type,
    marked,
    power_state,
    ref_of,
    refresh,
    sorted_ops,
)
from xsctl.sim.handlers.vm_guest import has_pv_drivers
from xsctl.sim.store import Store, allowed_ops
from xsctl.sim.wire import NULL_REF, Row

# ---------------------------------------------------------------- device numbers
# ocaml/xapi-idl/xen/device_number.ml and xapi_vm_helpers.ml

Device = tuple[str, int, int]  # bus (Xen Scsi Floppy Ide), disk, partition
_MAX_DISK = {"Xen": (1 << 20) - 1, "Scsi": 15, "Floppy": 2, "Ide": 19}
_MAX_PART = {"Xen": 15, "Scsi": 15, "Floppy": 0, "Ide": 63}


def _ocaml_int(s: str) -> int | None:
    """int_of_string_opt for the forms userdevice strings use."""
    t = s.replace("_", "")
    body = t.lstrip("+-")
    if not body or not (body.isdigit() or body[:2].lower() == "0x"):
        return None
    try:
        n = int(body, 16) if body[:2].lower() == "0x" else int(body)
    except ValueError:
        return None
    return -n if t.startswith("-") else n


def _make(bus: str, disk: int, part: int) -> Device | None:
    if 0 <= disk <= _MAX_DISK[bus] and 0 <= part <= _MAX_PART[bus]:
        return (bus, disk, part)
    return None


def _of_disk_number(hvm: bool, n: int) -> Device | None:
    return _make("Ide" if hvm and n < 4 else "Xen", n, 0)


def _of_linux_device(x: str) -> Device | None:
    def b26(s: str) -> int:
        acc = 0
        for c in s:
            acc = acc * 26 + (ord(c) - ord("a") + 1)
        return acc - 1

    def b26_int(rest: str) -> tuple[int, int] | None:
        i = 0
        while i < len(rest) and "a" <= rest[i] <= "z":
            i += 1
        pre, tail = b26(rest[:i]), rest[i:]
        if not tail:
            return pre, 0
        return (pre, int(tail)) if tail.isdigit() else None

    for prefix, bus in (("xvd", "Xen"), ("sd", "Scsi"), ("fd", "Floppy"), ("hd", "Ide")):
        if x.startswith(prefix):
            r = b26_int(x[len(prefix):])
            return None if r is None else (bus, r[0], r[1])
    if x.startswith("d"):
        head, sep, tail = x[1:].partition("p")
        if not head.isdigit() or (sep and not tail.isdigit()):
            return None
        return ("Xen", int(head), int(tail) if tail else 0)
    return None


def parse_device(name: str, hvm: bool) -> Device | None:
    """Device_number.of_string."""
    n = _ocaml_int(name)
    d = _of_disk_number(hvm, n) if n is not None else None
    return d if d is not None else _of_linux_device(name)


def linux_device(d: Device) -> str:
    """Device_number.to_linux_device."""
    bus, disk, part = d
    letters = ""
    n = disk + 1
    while n > 0:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    prefix = {"Xen": "xvd", "Scsi": "sd", "Floppy": "fd", "Ide": "xvd"}[bus]
    return prefix + letters + (str(part) if part else "")


def device_name(userdevice: str, hvm: bool = True) -> str:
    """The Linux device name xenopsd reports once a VBD is plugged ("3" -> "xvdd")."""
    d = parse_device(userdevice, hvm)
    return userdevice if d is None else linux_device(d)


def _valid_device(dev: str, typ: str) -> bool:
    """Xapi_vbd_helpers.valid_device (``n >= 0 || n < 16`` accepts any integer)."""
    if dev == "autodetect" or parse_device(dev, False) is not None:
        return True
    return typ != "Floppy" and _ocaml_int(dev) is not None


def _possible(s: str) -> list[Device]:
    return [d for d in (parse_device(s, True), parse_device(s, False)) if d is not None]


def _used_devices(store: Store, vm: str) -> list[Device]:
    out: list[Device] = []
    rows = [store.find(v) for v in store.get(vm, "VM")["VBDs"]]
    for r in rows:
        if r is not None:
            out += _possible(r["device"])
    for r in rows:
        if r is not None:
            out += _possible(r["userdevice"])
    return out


def allowed_vbd_devices(store: Store, vm: str, typ: str = "Disk") -> list[Device]:
    """Xapi_vm_helpers.allowed_VBD_devices (NOT_IMPLEMENTED for a PV floppy)."""
    row = store.get(vm, "VM")
    hvm = row["domain_type"] == "hvm"
    if typ == "Floppy":
        if not hvm:
            raise XapiFailure(
                "NOT_IMPLEMENTED", "VBD of type 'floppy' is not supported on PV domain")
        devices = [d for x in range(2) if (d := _make("Floppy", x, 0)) is not None]
    else:
        top = 255 if row["is_control_domain"] and not hvm else 254
        devices = [d for n in range(top + 1) if (d := _of_disk_number(hvm, n)) is not None]
    used = set(_used_devices(store, vm))
    return [d for d in devices if d not in used]


# ---------------------------------------------------------------- VBD operations

VBD_OPS = ["attach", "eject", "insert", "plug", "unplug", "unplug_force", "pause", "unpause"]
_VBD_PARALLEL = ("pause", "unpause")
_PLUG_OPS = ("plug", "unplug", "unplug_force")
_DISK_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump", "metadata", "rrd",
               "pvs_cache")


def vbd_table(store: Store, ref: str, row: Row, expensive: bool = True) -> Table:
    """Xapi_vbd_helpers.valid_operations: op -> the error it would raise, or None.
    ``expensive``: include the VDI sharing checks (left out of allowed_operations)."""
    table: Table = dict.fromkeys(VBD_OPS)

    def err(code: str, params: list[str], ops: tuple[str, ...] | list[str]) -> None:
        for op in ops:
            if table[op] is None:
                table[op] = (code, params)

    vm = row["VM"]
    vm_row = store.find(vm)
    current = sorted_ops(row["current_operations"], VBD_OPS)
    if current:
        task, op = current[0]
        err("OTHER_OPERATION_IN_PROGRESS", ["VBD", ref, op, task],
            [o for o in VBD_OPS if o not in _VBD_PARALLEL])
    serial = [(t, o) for t, o in current if o not in _VBD_PARALLEL]
    if serial:
        err("OTHER_OPERATION_IN_PROGRESS", ["VBD", ref, serial[0][1], serial[0][0]], ["pause"])
    busy = [(t, o) for t, o in current if o not in ("attach", *_VBD_PARALLEL)]
    if busy:
        err("OTHER_OPERATION_IN_PROGRESS", ["VBD", ref, busy[0][1], busy[0][0]], ["unpause"])
    if not row["unpluggable"]:
        err("VBD_NOT_UNPLUGGABLE", [ref], ["unplug", "unplug_force"])
    if row["type"] != "CD":
        err("VBD_NOT_REMOVABLE_MEDIA", [ref], ["insert", "eject"])
    if row["empty"]:
        err("VBD_IS_EMPTY", [ref], ["eject"])
    else:
        err("VBD_NOT_EMPTY", [ref], ["insert"])
    power = "Halted" if vm_row is None else vm_row["power_state"]
    if power == "Running" and row["currently_attached"]:
        err("DEVICE_ALREADY_ATTACHED", [ref], ["plug"])
    elif power == "Running":
        err("DEVICE_ALREADY_DETACHED", [ref], ["unplug", "unplug_force"])
    else:
        bad = list(_PLUG_OPS) if power == "Paused" else ["pause", "unpause", *_PLUG_OPS]
        err("VM_BAD_POWER_STATE", [vm, "running", power.lower()], bad)
    if vm_row is not None:
        for op in vm_row["current_operations"].values():
            if op in ("clean_shutdown", "hard_shutdown", "suspend", "pause"):
                err("OPERATION_NOT_ALLOWED", [f"Current operation on VM:{vm} is {op}"],
                    ["plug", "unplug"])
        if power == "Running" and domain_type(store, vm) == "hvm":
            gm = store.find(vm_row["guest_metrics"])
            if gm is not None and gm["can_use_hotplug_vbd"] == "no":
                err("OPERATION_NOT_ALLOWED", ["VM states it does not support VBD hotplug."],
                    _PLUG_OPS)
            elif not (gm is not None and (gm["can_use_hotplug_vbd"] == "yes"
                                          or gm["PV_drivers_detected"])
                      ) and not has_pv_drivers(gm):
                err("VM_MISSING_PV_DRIVERS", [vm], _PLUG_OPS)
            if row["type"] == "CD":
                err("OPERATION_NOT_ALLOWED",
                    ["HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"],
                    _PLUG_OPS)
    if row["type"] == "CD" and power == "Suspended":
        err("VM_BAD_POWER_STATE", [vm, "halted, running", "suspended"], ["insert", "eject"])
    vdi_row = None if row["empty"] else store.find(row["VDI"])
    if vdi_row is not None:
        vdi = row["VDI"]
        if not vdi_row["managed"]:
            err("VDI_NOT_MANAGED", [ref], VBD_OPS)
        for task, op in vdi_row["current_operations"].items():
            if op not in ("mirror", "copy"):
                err("OTHER_OPERATION_IN_PROGRESS", ["VDI", vdi, op, task],
                    ["attach", "plug", "insert"])
                break
        if expensive and not row["currently_attached"]:
            _sharing_checks(store, ref, row, vdi, vdi_row, vm_row, err)
    return table


def _sharing_checks(store: Store, ref: str, row: Row, vdi: str, vdi_row: Row,
                    vm_row: Row | None, err: Callable[..., None]) -> None:
    others = []
    for other in vdi_row["VBDs"]:
        orow = store.find(other)
        if other == ref or orow is None:
            continue
        ovm = store.find(orow["VM"])
        if ovm is None or ovm["power_state"] == "Suspended" or ovm["is_control_domain"]:
            continue
        if orow["currently_attached"] or orow["current_operations"]:
            others.append(orow)
    someone_rw = any(o["mode"] == "RW" for o in others)
    need_write = row["mode"] == "RW"
    system = vm_row is not None and vm_row["is_control_domain"]
    if not vdi_row["sharable"] and not system and (someone_rw or (need_write and others)):
        err("VDI_IN_USE", [vdi], ["attach", "insert", "plug"])
    if need_write and vdi_row["read_only"]:
        err("VDI_READONLY", [vdi], ["attach", "insert", "plug"])


def assert_vbd_op(store: Store, vbd: str, op: str) -> None:
    """Xapi_vbd_helpers.assert_operation_valid (with the sharing checks)."""
    check_table(lambda: vbd_table(store, vbd, store.get(vbd, "VBD")), op)


def assert_attachable(store: Store, vbd: str) -> None:
    """VBD.assert_attachable, as VM.start checks each VBD."""
    assert_vbd_op(store, vbd, "attach")


@allowed_ops("VBD")
def _vbd_allowed(store: Store, row: Row) -> list[str]:
    table = vbd_table(store, ref_of(store, "VBD", row), row, expensive=False)
    return [op for op in VBD_OPS if table[op] is None]


def vbd_mark(store: Store, vbd: str, op: str) -> Mark:
    return (vbd, op, lambda: assert_vbd_op(store, vbd, op))


# ================================================================ VBD messages


@api("VBD.create")
def vbd_create(ctx: Context, args: dict[str, Any]) -> str:
    """Xapi_vbd.create."""
    store = ctx.store
    with ctx.lock:
        vm, vdi, typ, mode = args["VM"], args["VDI"], args["type"], args["mode"]
        empty = bool(args["empty"])
        vm_row = store.get(vm, "VM")
        suspended = vm_row["power_state"] == "Suspended"
        if not empty:
            vdi_type = store.get(vdi, "VDI")["type"]
            if vdi_type not in _DISK_TYPES:
                raise XapiFailure("VDI_INCOMPATIBLE_TYPE", vdi, vdi_type)
        if typ == "CD" and mode != "RO":
            raise XapiFailure("VBD_CDS_MUST_BE_READONLY")
        if typ != "CD" and empty:
            raise XapiFailure("VBD_NOT_REMOVABLE_MEDIA", "in constructor")
        if mode == "RW" and store.get(vdi, "VDI")["read_only"]:
            raise XapiFailure("VDI_READONLY", vdi)
        for task, op in sorted_ops(vm_row["current_operations"], []):
            if op in ("migrate_send", "pool_migrate"):
                raise XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm, op, task)
        userdevice = args["userdevice"]
        possibilities = allowed_vbd_devices(store, vm, typ)
        if not _valid_device(userdevice, typ):
            raise XapiFailure("INVALID_DEVICE", userdevice)
        if userdevice == "autodetect":
            if not possibilities:
                raise XapiFailure("INVALID_DEVICE", userdevice)
            first = possibilities[0]
            userdevice = linux_device(first) if first[0] == "Floppy" else str(first[1])
        if set(_possible(userdevice)) & set(_used_devices(store, vm)):
            raise XapiFailure("DEVICE_ALREADY_EXISTS", userdevice)
        other_config = dict(args["other_config"])
        if not empty and store.exists(vdi, "VDI"):
            kind = store.get(vdi, "VDI")["sm_config"].get("backend-kind")
            if kind is not None:
                other_config = {"backend-kind": kind, **other_config}
        ref = store.create("VBD", {
            "VM": vm, "VDI": vdi, "device": args["device"] if suspended else "",
            "userdevice": userdevice, "bootable": args["bootable"], "mode": mode,
            "type": typ, "unpluggable": args["unpluggable"], "empty": empty,
            "other_config": other_config,
            "currently_attached": bool(args["currently_attached"]) if suspended else False,
            "qos_algorithm_type": args["qos_algorithm_type"],
            "qos_algorithm_params": args["qos_algorithm_params"],
            "storage_lock": False, "status_code": 0, "status_detail": "",
        })
        refresh(store, vdi)
        return ref


@api("VBD.destroy")
def vbd_destroy(ctx: Context, self: str) -> None:
    """Xapi_vbd_helpers.destroy: unplug first."""
    store = ctx.store
    with ctx.lock:
        row = store.get(self, "VBD")
        if row["currently_attached"]:
            vm = store.find(row["VM"])
            raise XapiFailure(
                "OPERATION_NOT_ALLOWED",
                f"VBD '{row['uuid']}' still attached to '{vm['uuid'] if vm else ''}'")
        store.destroy(self)
        refresh(store, row["VDI"])


@api("VBD.assert_attachable")
def vbd_assert_attachable(ctx: Context, self: str) -> None:
    with ctx.lock:
        assert_attachable(ctx.store, self)


@api("VBD.set_mode")
def vbd_set_mode(ctx: Context, self: str, value: str) -> None:
    """Xapi_vbd.set_mode: only while the VM is halted."""
    store = ctx.store
    with ctx.lock:
        vm = store.get(self, "VBD")["VM"]
        power = power_state(store, vm)
        if power != "Halted":
            raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted", power.lower())
        store.update(self, {"mode": value})


def _after_vbd(store: Store, vbd: str, *vdis: str) -> None:
    row = store.find(vbd)
    refresh(store, vbd, *vdis, *(() if row is None else (row["VDI"],)))


@api("VBD.plug", cancellable=True)
def vbd_plug(ctx: Context, self: str) -> None:
    """Xapi_vbd.plug -> Xapi_xenops.vbd_plug: attached, with its Linux device name."""
    store = ctx.store
    with ctx.lock:
        store.get(self, "VBD")
    with marked(ctx, vbd_mark(store, self, "plug")):
        with ctx.lock:
            row = store.get(self, "VBD")
            hvm = domain_type(store, row["VM"]) == "hvm"
            if hvm and row["type"] != "CD" and row["mode"] == "RO":
                raise XapiFailure("DISK_VBD_MUST_BE_READWRITE_FOR_HVM", self)
        ctx.work(0.2)
        with ctx.lock:
            store.update(self, {"currently_attached": True,
                                "device": device_name(row["userdevice"], hvm)})
    with ctx.lock:
        _after_vbd(store, self)


def _holds(store: Store, row: Row) -> bool:
    """Whether the guest has the device open, so that it refuses a clean unplug:
    its boot disk is its root file system. (xenopsd asks the guest's blkfront to
    close; one in use answers no, and xapi raises DEVICE_DETACH_REJECTED.)"""
    vm = store.find(row["VM"])
    return (vm is not None and not vm["is_control_domain"] and row["type"] == "Disk"
            and bool(row["bootable"]))


def _unplug(ctx: Context, self: str, op: str) -> None:
    store = ctx.store
    with ctx.lock:
        store.get(self, "VBD")
    with marked(ctx, vbd_mark(store, self, op)):
        ctx.work(0.1 if op == "unplug_force" else 0.2)
        with ctx.lock:
            row = store.get(self, "VBD")
            if op == "unplug" and _holds(store, row):
                raise XapiFailure("DEVICE_DETACH_REJECTED", "VBD", self,
                                  "the device is in use by the guest")
            store.update(self, {"currently_attached": False})
    with ctx.lock:
        _after_vbd(store, self)


@api("VBD.unplug", cancellable=True)
def vbd_unplug(ctx: Context, self: str) -> None:
    _unplug(ctx, self, "unplug")


@api("VBD.unplug_force", cancellable=True)
def vbd_unplug_force(ctx: Context, self: str) -> None:
    _unplug(ctx, self, "unplug_force")


def _assert_not_suspended(store: Store, vm: str) -> None:
    if power_state(store, vm) == "Suspended":
        raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted, running", "suspended")


@api("VBD.insert", cancellable=True)
def vbd_insert(ctx: Context, vbd: str, vdi: str) -> None:
    """message_forwarding.ml VBD.insert: on a halted VM only the database changes;
    otherwise xenopsd inserts the medium (HVM) or plugs the drive (PV)."""
    store = ctx.store
    with ctx.lock:
        store.get(vbd, "VBD")
    with marked(ctx, vbd_mark(store, vbd, "insert")):
        with ctx.lock:
            row = store.get(vbd, "VBD")
            vm = row["VM"]
            _assert_not_suspended(store, vm)  # Xapi_vbd.assert_ok_to_insert
            if row["type"] != "CD":
                raise XapiFailure("VBD_NOT_REMOVABLE_MEDIA", vbd)
            if not row["empty"]:
                raise XapiFailure("VBD_NOT_EMPTY", vbd)
            assert_managed(store, vdi)
            halted = power_state(store, vm) == "Halted"
        if not halted:
            ctx.work(0.2)
        with ctx.lock:
            changes: dict[str, Any] = {"VDI": vdi, "empty": False}
            if not halted and domain_type(store, vm) != "hvm":
                changes.update(currently_attached=True,
                               device=device_name(row["userdevice"], False))
            store.update(vbd, changes)
    with ctx.lock:
        _after_vbd(store, vbd, vdi)


@api("VBD.eject", cancellable=True)
def vbd_eject(ctx: Context, vbd: str) -> None:
    """message_forwarding.ml VBD.eject, Xapi_xenops.vbd_eject."""
    store = ctx.store
    with ctx.lock:
        store.get(vbd, "VBD")
    with marked(ctx, vbd_mark(store, vbd, "eject")):
        with ctx.lock:
            row = store.get(vbd, "VBD")
            vm = row["VM"]
            if row["type"] != "CD":
                raise XapiFailure("VBD_NOT_REMOVABLE_MEDIA", vbd)
            if row["empty"]:
                raise XapiFailure("VBD_IS_EMPTY", vbd)
            _assert_not_suspended(store, vm)
            halted = power_state(store, vm) == "Halted"
            old = row["VDI"]
        if not halted:
            ctx.work(0.2)
        with ctx.lock:
            changes: dict[str, Any] = {"VDI": NULL_REF, "empty": True}
            if not halted and domain_type(store, vm) != "hvm":
                changes["currently_attached"] = False
            store.update(vbd, changes)
    with ctx.lock:
        _after_vbd(store, vbd, old)


def gc_vbds(store: Store, vbds: list[str]) -> None:
    """db_gc_util.ml gc_VBDs: a VBD whose VDI is gone is destroyed; a CD drive is
    kept, emptied."""
    for vbd in vbds:
        row = store.find(vbd)
        if row is None:
            continue
        if row["type"] == "CD" and store.exists(row["VM"], "VM"):
            store.update(vbd, {"VDI": NULL_REF, "empty": True})
        else:
            store.destroy(vbd)
