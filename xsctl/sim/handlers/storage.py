"""VBD, VDI, SR and PBD behaviour, as xapi and its SM drivers have it.

Sources (xapi-project/xen-api ``ocaml/xapi``): ``xapi_vbd.ml`` and
``xapi_vbd_helpers.ml`` (VBD.create checks, ``valid_operations``), ``xapi_vdi.ml``
(``check_operation_error``, create/destroy/copy/snapshot/clone/introduce/forget),
``xapi_sr.ml`` and ``xapi_sr_operations.ml`` (SR create/introduce/forget/destroy/scan,
SR ``valid_operations``), ``xapi_pbd.ml`` (PBD create/plug/unplug/destroy),
``message_forwarding.ml`` (operation marking, SR_HAS_NO_PBDS forwarding rules),
``xapi_xenops.ml`` (what plug/unplug/insert/eject change), ``sm.ml`` and
``sm_exec.ml`` (SM feature checks and how SM failures are reported). SM drivers
(xapi-project/sm ``libs/sm/drivers``): LVHDSR, EXTSR, NFSSR, ISOSR, LVHDoISCSISR,
SMBSR, udevSR for device_config checks, probe output and size rules.

Operations mark the objects they work on in ``current_operations``; a conflicting
operation waits (xapi retries ``OTHER_OPERATION_IN_PROGRESS`` with back-off,
``Helpers.retry_with_global_lock``) and its task can be cancelled while it waits.

The simulated storage world: NFS server ``10.0.0.5`` exports ``/export/xen``,
``/export/iso`` and ``/export/backup``; any other server answers with one export,
``/export``; servers named ``*.invalid`` or in 203.0.113.0/24 (TEST-NET-3) do not
answer. Every host has local disks ``/dev/sda`` (the system disk), ``/dev/sdb``,
``/dev/sdc`` and ``/dev/nvme0n1``. Every reachable iSCSI target offers the IQN
``iqn.2024-09.com.example:storage`` with two LUNs.
"""

from __future__ import annotations

import ipaddress
import time
import xml.dom.minidom
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from hashlib import sha1
from typing import Any

from xsctl.sim.dispatch import Context, api, is_cancelling
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks
from xsctl.sim.handlers.disks import GiB, MiB, TiB, sm_error
from xsctl.sim.runtime import StoredSr
from xsctl.sim.store import Store, allowed_ops, now_datetime
from xsctl.sim.wire import NULL_REF, DateTime, Row

Failure = tuple[str, list[str]]
Table = dict[str, Failure | None]

# Longest wait for a conflicting operation to finish (Helpers.Policy.standard: 2 h)
MAX_LOCK_WAIT = 7200.0

# ---------------------------------------------------------------- small helpers


def _ref_of(store: Store, cls: str, row: Row) -> str:
    return store.uuids[cls].get(row.get("uuid", ""), "")


def _power(store: Store, vm: str) -> str:
    row = store.find(vm)
    return "Halted" if row is None else str(row["power_state"])


def _sorted_ops(current: dict[str, str], order: list[str]) -> list[tuple[str, str]]:
    """xapi's ``List.sort_uniq`` on (task, op) compared by op: one entry per op,
    in enum order."""
    seen: dict[str, str] = {}
    for task, op in current.items():
        seen.setdefault(op, task)
    rank = {op: i for i, op in enumerate(order)}
    return sorted(((t, o) for o, t in seen.items()), key=lambda x: rank.get(x[1], 99))


def domain_type(store: Store, vm: str) -> str:
    """Helpers.domain_type: the running domain's type, else the configured one."""
    row = store.get(vm, "VM")
    if row["power_state"] != "Halted":
        m = store.find(row["metrics"])
        if m is not None and m["current_domain_type"] != "unspecified":
            return str(m["current_domain_type"])
    dt = str(row["domain_type"])
    if dt == "unspecified":
        return "hvm" if row["HVM_boot_policy"] else "pv"
    return dt


def sm_features(store: Store, typ: str) -> frozenset[str]:
    """Xapi_sr_operations.features_of_sr_internal: the SM record's features."""
    for row in store.all("SM").values():
        if row["type"] == typ:
            names = row["features"] or dict.fromkeys(row["capabilities"], 1)
            return frozenset(k.split("/")[0] for k in names)
    return frozenset()


def refresh(store: Store, *refs: str) -> None:
    """Publish rows again whose allowed_operations would now differ."""
    for ref in refs:
        row = store.find(ref)
        if row is None:
            continue
        fn = store.allowed_ops.get(store.cls_of[ref])
        if fn is not None and fn(store, row) != row["allowed_operations"]:
            store.update(ref, {})


def refresh_vm_storage(store: Store, vm: str) -> None:
    """After a VM changes state: its VBDs' and their VDIs' allowed_operations."""
    row = store.find(vm)
    if row is None:
        return
    for vbd in row["VBDs"]:
        vrow = store.find(vbd)
        if vrow is not None:
            refresh(store, vbd, vrow["VDI"])


def _check(table_fn: Callable[[], Table], op: str) -> None:
    err = table_fn()[op]
    if err is not None:
        raise XapiFailure(err[0], *err[1])


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


def _has_pv_drivers(gm: Row | None) -> bool:
    """Xapi_pv_driver_version: major and minor parse as integers."""
    if gm is None:
        return False
    v = gm["PV_drivers_version"]
    try:
        int(v["major"])
        int(v["minor"])
    except (KeyError, ValueError):
        return False
    return True


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
    current = _sorted_ops(row["current_operations"], VBD_OPS)
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
                      ) and not _has_pv_drivers(gm):
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
    _check(lambda: vbd_table(store, vbd, store.get(vbd, "VBD")), op)


def assert_attachable(store: Store, vbd: str) -> None:
    """VBD.assert_attachable, as VM.start checks each VBD."""
    assert_vbd_op(store, vbd, "attach")


@allowed_ops("VBD")
def _vbd_allowed(store: Store, row: Row) -> list[str]:
    table = vbd_table(store, _ref_of(store, "VBD", row), row, expensive=False)
    return [op for op in VBD_OPS if table[op] is None]


# ---------------------------------------------------------------- VDI operations

# Xapi_globs.pre_ely_vdi_operations without blocked and force_unlock (CA-260245)
VDI_ALLOWED = ["clone", "copy", "resize", "resize_online", "snapshot", "destroy", "forget",
               "update", "generate_config"]
_VDI_FEATURE = {
    "snapshot": "VDI_SNAPSHOT", "destroy": "VDI_DELETE", "resize": "VDI_RESIZE",
    "update": "VDI_UPDATE", "resize_online": "VDI_RESIZE_ONLINE",
    "generate_config": "VDI_GENERATE_CONFIG", "clone": "VDI_CLONE", "mirror": "VDI_MIRROR",
    "enable_cbt": "VDI_CONFIG_CBT", "disable_cbt": "VDI_CONFIG_CBT",
    "data_destroy": "VDI_CONFIG_CBT", "list_changed_blocks": "VDI_CONFIG_CBT",
    "set_on_boot": "VDI_RESET_ON_BOOT",
}
_VDI_LIVE = ("snapshot", "resize_online", "blocked", "clone", "mirror", "enable_cbt",
             "disable_cbt", "data_destroy")


def _plugged_pbds(store: Store, sr: str) -> list[str]:
    srow = store.find(sr)
    if srow is None:
        return []
    return [p for p in srow["PBDs"] if (r := store.find(p)) is not None and r["currently_attached"]]


def vdi_error(store: Store, ref: str, row: Row, op: str) -> Failure | None:
    """Xapi_vdi.check_operation_error for one operation."""
    sr = row["SR"]
    srow = store.find(sr)
    current = row["current_operations"]
    mirroring = op == "destroy" and "mirror" in current.values()
    if not mirroring:
        for task, cop in current.items():
            if cop != "copy":
                return ("OTHER_OPERATION_IN_PROGRESS", ["VDI", ref, cop, task])
    if op == "resize" and not _plugged_pbds(store, sr):
        return ("SR_HAS_NO_PBDS", [sr])
    active = [r for v in row["VBDs"] if (r := store.find(v)) is not None and r["currently_attached"]]
    if op in _VDI_LIVE:
        blocked = False
    elif op == "copy":
        blocked = any(r["mode"] == "RW" for r in active)
    else:
        blocked = bool(active)
    if blocked:
        return ("VDI_IN_USE", [ref, op])
    if op != "data_destroy":
        for v in row["VBDs"]:
            r = store.find(v)
            if r is not None and r["current_operations"]:
                task, vop = next(iter(r["current_operations"].items()))
                return ("OTHER_OPERATION_IN_PROGRESS", ["VDI", ref, vop, task])
    feature = _VDI_FEATURE.get(op)
    typ = "" if srow is None else srow["type"]
    if feature is not None and feature not in sm_features(store, typ):
        return ("SR_OPERATION_NOT_SUPPORTED", [sr])
    if row["type"] == "cbt_metadata" and op in (
            "clone", "copy", "disable_cbt", "enable_cbt", "mirror", "resize", "resize_online",
            "snapshot", "set_on_boot"):
        return ("VDI_INCOMPATIBLE_TYPE", [ref, "cbt_metadata"])
    if row["cbt_enabled"] and op in ("mirror", "set_on_boot"):
        return ("VDI_CBT_ENABLED", [ref])
    if op == "forget":
        return ("VDI_HAS_RRDS", [ref]) if row["type"] == "rrd" else None
    if op == "destroy":
        if typ == "udev":
            return ("VDI_IS_A_PHYSICAL_DEVICE", [ref])
        if srow is not None and srow["is_tools_sr"]:
            return ("SR_OPERATION_NOT_SUPPORTED", [sr])
        if row["type"] == "rrd":
            return ("VDI_HAS_RRDS", [ref])
        return None
    if op == "snapshot" and row["sharable"]:
        return ("VDI_IS_SHARABLE", [ref])
    if op in ("snapshot", "copy") and row["on_boot"] == "reset":
        return ("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    if op == "snapshot" and "copy" in current.values():
        return ("OPERATION_NOT_ALLOWED", ["Snapshot operation not allowed during copy."])
    if op == "copy" and row["type"] in ("ha_statefile", "redo_log"):
        return ("OPERATION_NOT_ALLOWED", [
            "VDI containing HA statefile or redo log cannot be copied (check the VDI's "
            "allowed operations)."])
    return None


def assert_vdi_op(store: Store, vdi: str, op: str) -> None:
    err = vdi_error(store, vdi, store.get(vdi, "VDI"), op)
    if err is not None:
        raise XapiFailure(err[0], *err[1])


@allowed_ops("VDI")
def _vdi_allowed(store: Store, row: Row) -> list[str]:
    ref = _ref_of(store, "VDI", row)
    return [op for op in VDI_ALLOWED if vdi_error(store, ref, row, op) is None]


# ---------------------------------------------------------------- SR operations

# Xapi_sr_operations.all_ops, as far as this datamodel's storage_operations has them
SR_OPS = ["scan", "destroy", "forget", "plug", "unplug", "vdi_create", "vdi_destroy",
          "vdi_resize", "vdi_clone", "vdi_snapshot", "vdi_mirror", "vdi_enable_cbt",
          "vdi_disable_cbt", "vdi_data_destroy", "vdi_list_changed_blocks", "vdi_set_on_boot",
          "vdi_introduce", "update", "pbd_create", "pbd_destroy"]
_SR_ENUM = ["scan", "destroy", "forget", "plug", "unplug", "update", "vdi_create",
            "vdi_introduce", "vdi_destroy", "vdi_resize", "vdi_clone", "vdi_snapshot",
            "vdi_mirror", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy",
            "vdi_list_changed_blocks", "vdi_set_on_boot", "pbd_create", "pbd_destroy"]
_SR_FEATURE = {
    "vdi_create": "VDI_CREATE", "vdi_destroy": "VDI_DELETE", "vdi_resize": "VDI_RESIZE",
    "vdi_introduce": "VDI_INTRODUCE", "vdi_mirror": "VDI_MIRROR",
    "vdi_enable_cbt": "VDI_CONFIG_CBT", "vdi_disable_cbt": "VDI_CONFIG_CBT",
    "vdi_data_destroy": "VDI_CONFIG_CBT", "vdi_list_changed_blocks": "VDI_CONFIG_CBT",
    "vdi_set_on_boot": "VDI_RESET_ON_BOOT", "update": "SR_UPDATE",
    "vdi_snapshot": "VDI_SNAPSHOT",
}


def sr_table(store: Store, ref: str, row: Row) -> Table:
    """Xapi_sr_operations.valid_operations."""
    table: Table = dict.fromkeys(SR_OPS)

    def err(code: str, params: list[str], ops: list[str]) -> None:
        for op in ops:
            if table[op] is None:
                table[op] = (code, params)

    feats = sm_features(store, row["type"])
    if row["is_tools_sr"]:
        feats = feats - {"VDI_CREATE", "VDI_DELETE"}
    err("SR_OPERATION_NOT_SUPPORTED", [ref],
        [op for op, f in _SR_FEATURE.items() if f not in feats])
    pbds = [r for p in row["PBDs"] if (r := store.find(p)) is not None]
    if any(p["currently_attached"] for p in pbds):
        err("SR_HAS_PBD", [ref], ["destroy", "forget"])
    if not row["PBDs"]:
        err("SR_HAS_NO_PBDS", [ref], ["destroy"])
    for v in row["VDIs"]:
        vrow = store.find(v)
        if vrow is not None and vrow["managed"] and vrow["type"] != "rrd":
            err("SR_NOT_EMPTY", [], ["destroy"])
            break
    current = _sorted_ops(row["current_operations"], _SR_ENUM)
    if current:
        task, op = current[0]
        err("OTHER_OPERATION_IN_PROGRESS", ["SR", ref, op, task],
            [o for o in SR_OPS if o != "plug"])
        serial = [(t, o) for t, o in current if o != "plug"]
        if serial:
            err("OTHER_OPERATION_IN_PROGRESS", ["SR", ref, serial[0][1], serial[0][0]], ["plug"])
    return table


def assert_sr_op(store: Store, sr: str, op: str) -> None:
    _check(lambda: sr_table(store, sr, store.get(sr, "SR")), op)


@allowed_ops("SR")
def _sr_allowed(store: Store, row: Row) -> list[str]:
    table = sr_table(store, _ref_of(store, "SR", row), row)
    return [op for op in SR_OPS if table[op] is None]


# ---------------------------------------------------------------- marking


Mark = tuple[str, str, Callable[[], None]]  # (ref, op, check)


@contextmanager
def marked(ctx: Context, *marks: Mark) -> Iterator[str]:
    """with_*_marked (message_forwarding.ml): run the checks and put each op in its
    object's current_operations under the task, atomically; while another operation
    is in the way, wait (cancellably) and try again."""
    store = ctx.store
    task = ctx.ensure_task()
    deadline = time.monotonic() + MAX_LOCK_WAIT
    while True:
        with store.cond:
            try:
                for _, _, check in marks:
                    check()
            except XapiFailure as f:
                if f.code != "OTHER_OPERATION_IN_PROGRESS" or time.monotonic() > deadline:
                    raise
                trow = store.find(task)
                if trow is not None:
                    if is_cancelling(trow):
                        raise XapiFailure("TASK_CANCELLED", task) from None
                    if "cancel" not in trow["allowed_operations"] and trow["status"] == "pending":
                        store.update(task, {"allowed_operations": ["cancel"]})
                store.cond.wait(0.05)
                continue
            for ref, op, _ in marks:
                store.set_map_key(ref, "current_operations", task, op)
                _refresh_related(store, ref)
            break
    try:
        yield task
    finally:
        with ctx.lock:
            for ref, _, _ in marks:
                if store.exists(ref):
                    store.del_map_key(ref, "current_operations", task)
                    _refresh_related(store, ref)


def _refresh_related(store: Store, ref: str) -> None:
    """A VBD's operations show in its VDI's allowed_operations and the other way round."""
    row = store.find(ref)
    cls = store.cls_of.get(ref)
    if row is None:
        return
    if cls == "VBD":
        refresh(store, row["VDI"])
    elif cls == "VDI":
        refresh(store, *row["VBDs"])


def _vbd_mark(store: Store, vbd: str, op: str) -> Mark:
    return (vbd, op, lambda: assert_vbd_op(store, vbd, op))


def _vdi_mark(store: Store, vdi: str, op: str) -> Mark:
    return (vdi, op, lambda: assert_vdi_op(store, vdi, op))


def _sr_mark(store: Store, sr: str, op: str) -> Mark:
    return (sr, op, lambda: assert_sr_op(store, sr, op))


def _forward_sr(store: Store, sr: str) -> str:
    """message_forwarding.ml choose_pbd_for_sr: a plugged PBD (the master's first
    for a shared SR), else SR_HAS_NO_PBDS [sr]. Returns the host it runs on."""
    row = store.get(sr, "SR")
    plugged = [store.get(p, "PBD") for p in _plugged_pbds(store, sr)]
    if row["shared"]:
        pool = next(iter(store.all("pool").values()))
        master = [p for p in plugged if p["host"] == pool["master"]]
        if not master:
            raise XapiFailure("SR_HAS_NO_PBDS", sr)
        return str(master[0]["host"])
    if not plugged:
        raise XapiFailure("SR_HAS_NO_PBDS", sr)
    return str(plugged[0]["host"])


def _assert_managed(store: Store, vdi: str) -> None:
    if not store.get(vdi, "VDI")["managed"]:
        raise XapiFailure("VDI_NOT_MANAGED", vdi)


def _internal_only() -> XapiFailure:
    """Sm.assert_session_has_internal_sr_access: only an SM plugin's session may."""
    return XapiFailure("PERMISSION_DENIED", "")


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
        for task, op in _sorted_ops(vm_row["current_operations"], []):
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
        power = _power(store, vm)
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
    with marked(ctx, _vbd_mark(store, self, "plug")):
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


def _unplug(ctx: Context, self: str, op: str) -> None:
    store = ctx.store
    with ctx.lock:
        store.get(self, "VBD")
    with marked(ctx, _vbd_mark(store, self, op)):
        ctx.work(0.1 if op == "unplug_force" else 0.2)
        with ctx.lock:
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
    if _power(store, vm) == "Suspended":
        raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted, running", "suspended")


@api("VBD.insert", cancellable=True)
def vbd_insert(ctx: Context, vbd: str, vdi: str) -> None:
    """message_forwarding.ml VBD.insert: on a halted VM only the database changes;
    otherwise xenopsd inserts the medium (HVM) or plugs the drive (PV)."""
    store = ctx.store
    with ctx.lock:
        store.get(vbd, "VBD")
    with marked(ctx, _vbd_mark(store, vbd, "insert")):
        with ctx.lock:
            row = store.get(vbd, "VBD")
            vm = row["VM"]
            _assert_not_suspended(store, vm)  # Xapi_vbd.assert_ok_to_insert
            if row["type"] != "CD":
                raise XapiFailure("VBD_NOT_REMOVABLE_MEDIA", vbd)
            if not row["empty"]:
                raise XapiFailure("VBD_NOT_EMPTY", vbd)
            _assert_managed(store, vdi)
            halted = _power(store, vm) == "Halted"
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
    with marked(ctx, _vbd_mark(store, vbd, "eject")):
        with ctx.lock:
            row = store.get(vbd, "VBD")
            vm = row["VM"]
            if row["type"] != "CD":
                raise XapiFailure("VBD_NOT_REMOVABLE_MEDIA", vbd)
            if row["empty"]:
                raise XapiFailure("VBD_IS_EMPTY", vbd)
            _assert_not_suspended(store, vm)
            halted = _power(store, vm) == "Halted"
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


# ================================================================ VDI messages


def _sm_create(ctx: Context, sr: str, name_label: str, virtual_size: int,
               fields: dict[str, Any]) -> str:
    """The SR's driver creating a disk (LVHDVDI/FileVDI/ISOVDI.create)."""
    store = ctx.store
    typ = disks.sr_type(store, sr)
    sm_config = dict(fields.pop("sm_config", {}))
    if typ == "iso":
        path = sm_config.get("path")
        uuid = store.new_uuid()
        location = path if path else f"{uuid}.img"
        srow = store.get(sr, "SR")
        if any(store.get(v, "VDI")["location"] == location for v in srow["VDIs"]):
            raise sm_error("VDIExists")
        sm_config["created"] = now_datetime()
        return disks.new_vdi(store, sr, name_label, virtual_size, sm=True, uuid=uuid,
                             location=location, sm_config=sm_config, physical_utilisation=0,
                             **fields)
    return disks.new_vdi(store, sr, name_label, virtual_size, sm=True,
                         sm_config={**sm_config, "vdi_type": "vhd"}, **fields)


@api("VDI.create")
def vdi_create(ctx: Context, args: dict[str, Any]) -> str:
    """message_forwarding.ml VDI.create -> Xapi_vdi.create."""
    store = ctx.store
    sr = args["SR"]
    with ctx.lock:
        store.get(sr, "SR")
    with marked(ctx, _sr_mark(store, sr, "vdi_create")):
        with ctx.lock:
            _forward_sr(store, sr)
            if args["type"] == "cbt_metadata":
                raise XapiFailure("VDI_INCOMPATIBLE_TYPE", "", "cbt_metadata")
            disks.round_size(store, sr, int(args["virtual_size"]))
        ctx.work(0.3)
        with ctx.lock:
            fields = {k: args[k] for k in (
                "name_description", "type", "sharable", "read_only", "other_config",
                "xenstore_data", "sm_config", "tags")}
            ref = _sm_create(ctx, sr, args["name_label"], int(args["virtual_size"]), fields)
    with ctx.lock:
        refresh(store, sr)
    return ref


def _gc_vbds(store: Store, vbds: list[str]) -> None:
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


@api("VDI.destroy", cancellable=True)
def vdi_destroy(ctx: Context, self: str) -> None:
    """Xapi_vdi.destroy: refused while attached (VDI_IN_USE [vdi, "destroy"]); the
    VDI's other VBDs (halted VMs) go with it and suspend_VDI references are cleared."""
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "VDI")["SR"]
    with marked(ctx, _sr_mark(store, sr, "vdi_destroy"), _vdi_mark(store, self, "destroy")):
        with ctx.lock:
            _forward_sr(store, sr)
            _assert_managed(store, self)
            row = store.get(self, "VDI")
            if any((r := store.find(v)) is not None and r["currently_attached"]
                   for v in row["VBDs"]):
                raise XapiFailure("VDI_IN_USE", self, "destroy")
        ctx.work(0.2)
        with ctx.lock:
            row = store.get(self, "VDI")
            vbds = list(row["VBDs"])
            disks.destroy_vdi(store, self)
            for vbd in vbds:
                if store.exists(vbd):
                    store.destroy(vbd)
            for vm, vrow in store.all("VM").items():
                if vrow["suspend_VDI"] == self:
                    store.update(vm, {"suspend_VDI": NULL_REF})
    with ctx.lock:
        refresh(store, sr)


@api("VDI.resize", cancellable=True)
def vdi_resize(ctx: Context, vdi: str, size: int) -> None:
    """Xapi_vdi.resize: the SM driver rounds up and never shrinks."""
    store = ctx.store
    with ctx.lock:
        sr = store.get(vdi, "VDI")["SR"]
    with marked(ctx, _sr_mark(store, sr, "vdi_resize"), _vdi_mark(store, vdi, "resize")):
        with ctx.lock:
            _forward_sr(store, sr)
            _assert_managed(store, vdi)
        ctx.work(0.3)
        with ctx.lock:
            disks.resize_vdi(store, vdi, size)


def _snapshot_or_clone(ctx: Context, vdi: str, kind: str) -> str:
    store = ctx.store
    with ctx.lock:
        sr = store.get(vdi, "VDI")["SR"]
    with marked(ctx, _sr_mark(store, sr, f"vdi_{kind}"), _vdi_mark(store, vdi, kind)):
        with ctx.lock:
            _forward_sr(store, sr)
            _assert_managed(store, vdi)
        ctx.work(0.4)
        with ctx.lock:
            if kind == "snapshot":
                new = disks.snapshot_vdi(store, vdi, sm=True)
            else:
                new = disks.clone_vdi(store, vdi, sm=True)
    with ctx.lock:
        refresh(store, vdi, sr)
    return new


@api("VDI.snapshot", cancellable=True)
def vdi_snapshot(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    """Xapi_vdi.snapshot: a new VDI with is_a_snapshot and snapshot_of set."""
    return _snapshot_or_clone(ctx, vdi, "snapshot")


@api("VDI.clone", cancellable=True)
def vdi_clone(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    """Xapi_vdi.clone."""
    return _snapshot_or_clone(ctx, vdi, "clone")


def _written(store: Store, vdi: str) -> int:
    """How much data a VDI holds (what a copy writes)."""
    row = store.get(vdi, "VDI")
    if disks.is_thick(store, row["SR"]):
        return int(int(row["virtual_size"]) * 0.5)
    return int(row["physical_utilisation"])


@api("VDI.copy", cancellable=True)
def vdi_copy(ctx: Context, vdi: str, sr: str, base_vdi: str, into_vdi: str) -> str:
    """Xapi_vdi.copy: into ``into_vdi`` when it is a VDI, else into a new VDI on
    ``sr`` (destroyed again if the copy fails or is cancelled)."""
    store = ctx.store
    with ctx.lock:
        store.get(vdi, "VDI")
    with marked(ctx, _vdi_mark(store, vdi, "copy")):
        with ctx.lock:
            _assert_managed(store, vdi)
            src = store.get(vdi, "VDI")
            into = store.exists(into_vdi, "VDI")
        created: str | None = None
        if into:
            dst = into_vdi
        else:
            with ctx.lock:
                store.get(sr, "SR")
            with marked(ctx, _sr_mark(store, sr, "vdi_create")), ctx.lock:
                _forward_sr(store, sr)
                fields = {
                    "name_description": src["name_description"], "type": src["type"],
                    "sharable": src["sharable"], "read_only": False,
                    "other_config": dict(src["other_config"]),
                    "xenstore_data": dict(src["xenstore_data"]), "sm_config": {},
                    "tags": list(src["tags"]), "allow_caching": src["allow_caching"],
                }
                if src["on_boot"] == "reset":
                    fields["on_boot"] = "reset"
                created = dst = _sm_create(
                    ctx, sr, src["name_label"], int(src["virtual_size"]), fields)
        try:
            with ctx.lock:
                drow = store.get(dst, "VDI")
                if drow["read_only"]:
                    raise XapiFailure("VDI_READONLY", dst)
                if int(drow["virtual_size"]) < int(src["virtual_size"]):
                    raise XapiFailure("VDI_TOO_SMALL", dst, int(src["virtual_size"]))
            ctx.work(1.0, steps=8)
            with ctx.lock:
                drow = store.get(dst, "VDI")
                dsr = drow["SR"]
                if not disks.is_thick(store, dsr) and disks.sr_type(store, dsr) != "iso":
                    grow = max(0, _written(store, vdi) - int(drow["physical_utilisation"]))
                    disks.check_space(store, dsr, grow, sm=True)
                    store.update(dst, {"physical_utilisation":
                                       int(drow["physical_utilisation"]) + grow})
                    disks.account(store, dsr, grow, 0)
        except XapiFailure:
            if created is not None:
                with ctx.lock:
                    if store.exists(created):
                        disks.destroy_vdi(store, created)
            raise
    with ctx.lock:
        refresh(store, vdi, dst)
    return dst


@api("VDI.introduce", cancellable=True)
def vdi_introduce(
    ctx: Context, uuid: str, name_label: str, name_description: str, SR: str, type: str,
    sharable: bool, read_only: bool, other_config: dict[str, str], location: str,
    xenstore_data: dict[str, str], sm_config: dict[str, str], managed: bool,
    virtual_size: int, physical_utilisation: int, metadata_of_pool: str,
    is_a_snapshot: bool, snapshot_time: DateTime, snapshot_of: str,
) -> str:
    """Xapi_vdi.introduce: only SRs whose driver can (VDI_INTRODUCE, e.g. udev)."""
    store = ctx.store
    sr = SR
    with ctx.lock:
        store.get(sr, "SR")
    with marked(ctx, _sr_mark(store, sr, "vdi_introduce")), ctx.lock:
        _forward_sr(store, sr)
        for v in store.get(sr, "SR")["VDIs"]:
            vrow = store.get(v, "VDI")
            if vrow["location"] == location and vrow["uuid"] != uuid:
                raise XapiFailure("LOCATION_NOT_UNIQUE", sr, location)
        srow = store.get(sr, "SR")
        ghost = disks.world(store).ghost_vdis.get(srow["uuid"], {}).pop(location, None)
        image: dict[str, Any] = dict(ghost or {})
        image.pop("snapshot_of_uuid", None)
        new_uuid = uuid or image.get("uuid") or store.new_uuid()
        if new_uuid in store.uuids["VDI"]:
            raise XapiFailure(
                "INTERNAL_ERROR",
                f'Db_exn.Uniqueness_constraint_violation("VDI", "uuid", "{new_uuid}")')
        image.update(
            uuid=new_uuid, type=type, sharable=sharable, other_config=other_config,
            xenstore_data=xenstore_data, location=location,
            sm_config={**image.get("sm_config", {}), **sm_config},
        )
        image.setdefault("virtual_size", virtual_size)
        image.setdefault("physical_utilisation", physical_utilisation)
        if name_label:
            image["name_label"] = name_label
        if name_description:
            image["name_description"] = name_description
        label = image.pop("name_label", location.rsplit("/", 1)[-1])
        size = int(image.pop("virtual_size"))
        ref = disks.new_vdi(store, sr, label, size, **image)
    with ctx.lock:
        refresh(store, sr)
    return ref


@api("VDI.forget", cancellable=True)
def vdi_forget(ctx: Context, vdi: str) -> None:
    """Xapi_vdi.forget: the record goes, the disk stays (a scan finds it again)."""
    store = ctx.store
    with ctx.lock:
        store.get(vdi, "VDI")
    with marked(ctx, _vdi_mark(store, vdi, "forget")), ctx.lock:
        row = store.get(vdi, "VDI")
        disks.forget_to_storage(store, vdi)
        vbds = list(row["VBDs"])
        disks.destroy_vdi(store, vdi)
        _gc_vbds(store, vbds)
    with ctx.lock:
        refresh(store, row["SR"])


@api("VDI.update", cancellable=True)
def vdi_update(ctx: Context, vdi: str) -> None:
    """Xapi_vdi.update: the driver re-reads the disk; nothing changed underneath."""
    store = ctx.store
    with ctx.lock:
        sr = store.get(vdi, "VDI")["SR"]
    with marked(ctx, _vdi_mark(store, vdi, "update")):
        with ctx.lock:
            _forward_sr(store, sr)
        ctx.work(0.1)


def _vdi_forwarded_set(field: str) -> Callable[[Context, str, str], None]:
    def fn(ctx: Context, self: str, value: str) -> None:
        store = ctx.store
        with ctx.lock:
            _forward_sr(store, store.get(self, "VDI")["SR"])
            store.update(self, {field: value})

    return fn


api("VDI.set_name_label")(_vdi_forwarded_set("name_label"))
api("VDI.set_name_description")(_vdi_forwarded_set("name_description"))


@api("VDI.set_read_only")
def vdi_set_read_only(ctx: Context, self: str, value: bool) -> None:
    """Only the SM backend may (message_forwarding.ml: PERMISSION_DENIED [""])."""
    with ctx.lock:
        ctx.store.get(self, "VDI")
    raise _internal_only()


@api("VDI.set_sharable")
def vdi_set_sharable(ctx: Context, self: str, value: bool) -> None:
    with ctx.lock:
        ctx.store.get(self, "VDI")
    raise _internal_only()


def _not_on_running_vm(store: Store, vdi: str) -> None:
    """message_forwarding.ml ensure_vdi_not_on_running_vm."""
    for vbd in store.get(vdi, "VDI")["VBDs"]:
        row = store.find(vbd)
        if row is None:
            continue
        power = _power(store, row["VM"])
        if power != "Halted":
            raise XapiFailure("VM_BAD_POWER_STATE", row["VM"], "halted", power.lower())


@api("VDI.set_on_boot", cancellable=True)
def vdi_set_on_boot(ctx: Context, self: str, value: str) -> None:
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "VDI")["SR"]
        _not_on_running_vm(store, self)
    with marked(ctx, _sr_mark(store, sr, "vdi_set_on_boot"),
                _vdi_mark(store, self, "set_on_boot")), ctx.lock:
        _forward_sr(store, sr)
        store.update(self, {"on_boot": value})


@api("VDI.set_allow_caching")
def vdi_set_allow_caching(ctx: Context, self: str, value: bool) -> None:
    store = ctx.store
    with ctx.lock:
        _not_on_running_vm(store, self)
        store.update(self, {"allow_caching": value})


# ================================================================ SM drivers


def _host_of(server: str) -> str:
    """The host part of "nas", "nas:/path", "//nas/share" or "\\\\nas\\share"."""
    s = server.replace("\\", "/").lstrip("/").split(",")[0]
    s = s.split("/")[0]
    if s.startswith("["):
        return s[1:].split("]")[0]
    return s.split(":")[0] if s.count(":") == 1 else s


def _reachable(server: str) -> bool:
    host = _host_of(server)
    if host.endswith(".invalid") or not host:
        return False
    try:
        return ipaddress.ip_address(host) not in ipaddress.ip_network("203.0.113.0/24")
    except ValueError:
        return True


NFS_EXPORTS = {"10.0.0.5": {"/export/xen": 4 * TiB, "/export/iso": 500 * GiB,
                            "/export/backup": 8 * TiB}}
ISCSI_IQN = "iqn.2024-09.com.example:storage"
HOST_DISKS = {"/dev/sda": 1 * TiB, "/dev/sdb": 2 * TiB, "/dev/sdc": 4 * TiB,
              "/dev/nvme0n1": 1 * TiB}
SMB_CAPACITY = 2 * TiB
ISO_CAPACITY = 500 * GiB


def _exports(server: str) -> dict[str, int]:
    return NFS_EXPORTS.get(server, {"/export": 2 * TiB})


def _luns(target: str) -> list[tuple[int, str, int]]:
    """(LUN id, SCSIid, size) offered by an iSCSI target."""
    out = []
    for lun, size in ((0, 1 * TiB), (1, 2 * TiB)):
        digest = sha1(f"{target}/{lun}".encode()).hexdigest()[:24]
        out.append((lun, "36001405" + digest, size))
    return out


def _pretty(root: str, build: Callable[[xml.dom.minidom.Document, Any], None]) -> str:
    """minidom's toprettyxml, as the SM drivers print their XML."""
    dom = xml.dom.minidom.Document()
    element = dom.createElement(root)
    dom.appendChild(element)
    build(dom, element)
    return dom.toprettyxml()


def _add(dom: xml.dom.minidom.Document, parent: Any, name: str, text: str) -> None:
    e = dom.createElement(name)
    parent.appendChild(e)
    e.appendChild(dom.createTextNode(text))


def _srlist(entries: list[tuple[str, dict[str, str]]]) -> str:
    def build(dom: xml.dom.minidom.Document, el: Any) -> None:
        for uuid, extra in entries:
            sr = dom.createElement("SR")
            el.appendChild(sr)
            _add(dom, sr, "UUID", uuid)
            for k, v in extra.items():
                _add(dom, sr, k, v)

    return _pretty("SRlist", build)


def _host_disks(store: Store, host: str) -> dict[str, int]:
    disks_ = dict(HOST_DISKS)
    hrow = store.find(host)
    if hrow is not None:
        for pbd in hrow["PBDs"]:
            dev = store.get(pbd, "PBD")["device_config"].get("device")
            if dev:
                for d in dev.split(","):
                    disks_.setdefault(d, 1 * TiB)
    return disks_


def _devices_in_use(store: Store, host: str, exclude_sr: str = "") -> set[str]:
    """util.test_hostPBD_devs: devices named by other SRs' PBDs on this host."""
    out: set[str] = set()
    hrow = store.find(host)
    if hrow is None:
        return out
    for pbd in hrow["PBDs"]:
        prow = store.get(pbd, "PBD")
        if prow["SR"] != exclude_sr and "device" in prow["device_config"]:
            out.update(prow["device_config"]["device"].split(","))
    return out


class Driver:
    """What the SM driver of an SR type checks and answers (the SMAPIv1 plugins)."""

    def __init__(self, store: Store, typ: str, host: str, dc: dict[str, str]) -> None:
        self.store, self.typ, self.host, self.dc = store, typ, host, dc

    # --- load(): the device_config keys every command needs

    def load(self) -> None:
        dc, t = self.dc, self.typ
        if t in ("lvm", "ext") and "device" not in dc:
            raise sm_error("ConfigDeviceMissing")
        if t in ("nfs", "smb") and "server" not in dc:
            raise sm_error("ConfigServerMissing")
        if t in ("iso", "file", "udev") and "location" not in dc:
            raise sm_error("ConfigLocationMissing")
        if t == "iso" and "legacy_mode" not in dc:
            self._iso_location()
        if t == "lvmoiscsi":
            self._iscsi_load()
        if t == "lvmohba" and "SCSIid" not in dc:
            raise sm_error("ConfigSCSIid")

    def _iso_location(self) -> None:
        loc, kind = self.dc["location"], self.dc.get("type")
        if kind is None:
            return
        if kind == "cifs":
            ok = loc.startswith("//") or loc.startswith("\\")
            if not ok or not loc.replace("\\", "/").strip("/"):
                raise sm_error("ISOLocationStringError")
        elif ":" not in loc:
            raise sm_error("ISOLocationStringError")

    def _iscsi_load(self) -> None:
        dc = self.dc
        if not dc.get("target"):
            raise sm_error("ConfigTargetMissing")
        hrow = self.store.find(self.host)
        iqn = dc.get("localIQN") or (hrow["other_config"].get("iscsi_iqn") if hrow else None)
        if not iqn:
            raise sm_error("ConfigISCSIIQNMissing")
        target = dc["target"].split(",")[0]
        if not dc.get("targetIQN"):
            if not _reachable(target):
                raise sm_error("ISCSITarget")

            def build(dom: xml.dom.minidom.Document, el: Any) -> None:
                for i, (addr, q) in enumerate(((target, ISCSI_IQN), (target, "*"))):
                    tgt = dom.createElement("TGT")
                    el.appendChild(tgt)
                    _add(dom, tgt, "Index", str(i))
                    _add(dom, tgt, "IPAddress", addr)
                    _add(dom, tgt, "TargetIQN", q)

            raise sm_error("ConfigTargetIQNMissing", stderr=_pretty("iscsi-target-iqns", build))
        if not _reachable(target):
            raise sm_error("ISCSITarget")
        if dc["targetIQN"] not in (ISCSI_IQN, "*"):
            raise XapiFailure(
                "SR_BACKEND_FAILURE_68", "",
                "ISCSI login failed - check access settings for the initiator on the "
                "storage, if CHAP is used verify CHAP credentials", "")
        if "SCSIid" not in dc:
            def build(dom: xml.dom.minidom.Document, el: Any) -> None:
                for lun, scsi, size in _luns(target):
                    e = dom.createElement("LUN")
                    el.appendChild(e)
                    _add(dom, e, "vendor", "LIO-ORG")
                    _add(dom, e, "serial", scsi[-12:])
                    _add(dom, e, "LUNid", str(lun))
                    _add(dom, e, "size", str(size))
                    _add(dom, e, "SCSIid", scsi)

            raise sm_error("ConfigSCSIid", stderr=_pretty("iscsi-target", build))
        if dc["SCSIid"] not in {s for _, s, _ in _luns(target)}:
            raise sm_error("ConfigSCSIid")

    # --- reachability and capacity

    def _nfs_target(self, scan: bool) -> tuple[str, str]:
        server = self.dc["server"]
        if not _reachable(server):
            raise sm_error("NFSTarget")
        if "serverpath" not in self.dc:
            stderr = ""
            if scan:
                def build(dom: xml.dom.minidom.Document, el: Any) -> None:
                    for path in _exports(server):
                        e = dom.createElement("Export")
                        el.appendChild(e)
                        _add(dom, e, "Target", server)
                        _add(dom, e, "Path", path)
                        _add(dom, e, "Accesslist", "*")

                stderr = _pretty("nfs-exports", build)
            raise sm_error("ConfigServerPathMissing", stderr=stderr)
        path = self.dc["serverpath"].rstrip("/") or "/"
        if server in NFS_EXPORTS and path not in NFS_EXPORTS[server]:
            raise sm_error("NFSMount", "mount failed with return code 32")
        return server, path

    def capacity(self) -> int:
        """Check the storage is there and return its size (SR.create, PBD.plug)."""
        t, dc = self.typ, self.dc
        if t == "nfs":
            server, path = self._nfs_target(scan=True)
            return _exports(server).get(path, 2 * TiB)
        if t == "smb":
            if not _reachable(dc["server"]):
                raise sm_error("SMBMount", "mount failed with return code 113")
            return SMB_CAPACITY
        if t == "iso":
            if "legacy_mode" in dc:
                return 0
            loc = dc["location"]
            if not _reachable(loc):
                kind = dc.get("type", "nfs_iso" if ":/" in loc else "cifs")
                raise sm_error("NFSTarget" if kind == "nfs_iso" else "ISOMountFailure")
            return ISO_CAPACITY
        if t in ("lvm", "ext"):
            have = _host_disks(self.store, self.host)
            total = 0
            for dev in dc["device"].split(","):
                if dev not in have:
                    raise sm_error("InvalidDev", f"Device {dev} does not exist")
                total += have[dev]
            return total - 12 * MiB if t == "lvm" else int(total * 0.98)
        if t == "lvmoiscsi":
            target = dc["target"].split(",")[0]
            return next(size for _, s, size in _luns(target) if s == dc["SCSIid"]) - 12 * MiB
        if t == "lvmohba":
            return 1 * TiB
        return 0

    def create_checks(self, sr_uuid: str) -> None:
        """sr_create beyond load(): devices not in use, not the system disk."""
        if self.typ in ("lvm", "ext"):
            used = _devices_in_use(self.store, self.host)
            for dev in self.dc["device"].split(","):
                if dev in used:
                    raise sm_error("SRInUse")
            for dev in self.dc["device"].split(","):
                if dev in ("/dev/sda", "/dev/sda1", "/dev/sda2"):
                    raise sm_error("Rootdev", f"Device {dev} contains core system files, "
                                              "please use another device")

    def where(self) -> tuple[str, ...]:
        return disks.where_of(self.typ, self.host, self.dc)


def _driver(store: Store, typ: str, host: str, dc: dict[str, str]) -> Driver:
    """Storage_access.bind: SR_UNKNOWN_DRIVER [type] when no SM plugin has it."""
    if not any(r["type"] == typ for r in store.all("SM").values()):
        raise XapiFailure("SR_UNKNOWN_DRIVER", typ)
    return Driver(store, typ, host, dc)


def _no_srmaster(dc: dict[str, str]) -> None:
    """Xapi_pbd.assert_no_srmaster_key."""
    if "SRmaster" in dc:
        raise XapiFailure("VALUE_NOT_SUPPORTED", "SRmaster", dc["SRmaster"],
                          "This key is for internal use only")


# ================================================================ SR messages


def _scan(store: Store, sr: str) -> None:
    """SR.scan as the drivers do it: disks found on storage without a record get one
    (ISO images on the share, forgotten VDIs); usage is the sum of the VDIs."""
    row = store.get(sr, "SR")
    w = disks.world(store)
    found = dict(w.ghost_vdis.pop(row["uuid"], {}))
    if row["type"] == "iso" and row["PBDs"]:
        loc = store.get(row["PBDs"][0], "PBD")["device_config"].get("location", "")
        found = {**disks.share_files(store, loc), **found}
    known = {store.get(v, "VDI")["location"] for v in row["VDIs"]}
    links: list[tuple[str, str]] = []
    for location, image in sorted(found.items()):
        if location in known:
            continue
        image = dict(image)
        snap_of = image.pop("snapshot_of_uuid", "")
        if image.get("uuid") in store.uuids["VDI"]:
            image.pop("uuid")
        label = image.pop("name_label", location)
        size = int(image.pop("virtual_size", 0))
        ref = disks.new_vdi(store, sr, label, size, **image)
        if snap_of:
            links.append((ref, snap_of))
    for ref, parent_uuid in links:
        parent = store.uuids["VDI"].get(parent_uuid)
        if parent is not None:
            store.update(ref, {"snapshot_of": parent})
    disks.recompute_usage(store, sr)
    changes: dict[str, Any] = {}
    stored = w.srs.get(row["uuid"])
    if stored is not None and stored.capacity and int(row["physical_size"]) <= 0:
        changes["physical_size"] = stored.capacity
    if int(row["physical_size"]) < 0 and "physical_size" not in changes:
        changes["physical_size"] = 0
    if "dirty" in row["other_config"]:
        oc = dict(row["other_config"])
        del oc["dirty"]
        changes["other_config"] = oc
    if changes:
        store.update(sr, changes)
    physical = store.get(sr, "SR")["physical_utilisation"]
    if int(store.get(sr, "SR")["physical_size"]) < int(physical) and row["type"] == "iso":
        store.update(sr, {"physical_size": int(physical)})


@api("SR.create", cancellable=True)
def sr_create(
    ctx: Context, host: str, device_config: dict[str, str], physical_size: int,
    name_label: str, name_description: str, type: str, content_type: str, shared: bool,
    sm_config: dict[str, str],
) -> str:
    """Xapi_sr.create: the record, a PBD for ``host`` (for every host when shared),
    the driver's sr_create, then every PBD plugged."""
    store = ctx.store
    typ = type.lower()
    with ctx.lock:
        pool = next(iter(store.all("pool").values()))
        if shared:
            host = pool["master"]
        store.get(host, "host")
        _no_srmaster(device_config)
        drv = _driver(store, typ, host, device_config)
        drv.load()
        capacity = drv.capacity()
        uuid = store.new_uuid()
        drv.create_checks(uuid)
    ctx.work(1.0)
    with ctx.lock:
        extra: dict[str, str] = {}
        if typ in ("lvm", "lvmoiscsi", "lvmohba"):
            extra = {"allocation": "thick", "use_vhd": "true"}
        if typ == "iso" and "type" in device_config:
            extra = {"iso_type": device_config["type"]}
        sr = store.create("SR", {
            "uuid": uuid, "name_label": name_label, "name_description": name_description,
            "type": typ, "content_type": content_type, "shared": shared,
            "physical_size": capacity, "physical_utilisation": 0, "virtual_allocation": 0,
            "sm_config": {**sm_config, **extra}, "other_config": {},
        })
        hosts = [host] if not shared else [
            pool["master"], *(h for h in store.all("host") if h != pool["master"])]
        for h in hosts:
            store.create("PBD", {"host": h, "SR": sr, "device_config": dict(device_config),
                                 "currently_attached": True, "other_config": {}})
        w = disks.world(store)
        # creating on a disk wipes what was there
        where = drv.where()
        for old in [u for u, s in w.srs.items() if s.where == where and s.type == typ
                    and typ in ("lvm", "ext", "lvmoiscsi", "lvmohba")
                    and u not in store.uuids["SR"]]:
            del w.srs[old]
            w.ghost_vdis.pop(old, None)
        w.srs[uuid] = StoredSr(
            uuid=uuid, type=typ, where=where, name_label=name_label,
            name_description=name_description, content_type=content_type, capacity=capacity)
        _scan(store, sr)
        refresh(store, sr)
        return sr


@api("SR.introduce", cancellable=True)
def sr_introduce(
    ctx: Context, uuid: str, name_label: str, name_description: str, type: str,
    content_type: str, shared: bool, sm_config: dict[str, str],
) -> str:
    """Xapi_sr.introduce: a record only (sizes -1 until a PBD is plugged and the
    SR scanned); SR_UUID_EXISTS [uuid]."""
    store = ctx.store
    with ctx.lock:
        uuid = uuid or store.new_uuid()
        if uuid in store.uuids["SR"]:
            raise XapiFailure("SR_UUID_EXISTS", uuid)
        return store.create("SR", {
            "uuid": uuid, "name_label": name_label, "name_description": name_description,
            "type": type.lower(), "content_type": content_type, "shared": shared,
            "physical_size": -1, "physical_utilisation": -1, "virtual_allocation": 0,
            "sm_config": sm_config, "other_config": {},
        })


@api("SR.make")
def sr_make(ctx: Context, *args: Any) -> str:
    raise XapiFailure("MESSAGE_DEPRECATED")


def _really_forget(store: Store, sr: str, keep_on_storage: bool) -> None:
    """Xapi_sr.really_forget: PBDs, VDIs and the SR record go."""
    row = store.get(sr, "SR")
    disks.stored_sr(store, sr)
    for pbd in list(row["PBDs"]):
        if store.exists(pbd):
            store.destroy(pbd)
    vdis = [v for v in row["VDIs"] if store.exists(v, "VDI")]
    if keep_on_storage:
        for vdi in vdis:  # all first: a snapshot keeps naming its parent
            disks.forget_to_storage(store, vdi)
    for vdi in vdis:
        vbds = list(store.get(vdi, "VDI")["VBDs"])
        store.destroy(vdi)
        _gc_vbds(store, vbds)
    store.destroy(sr)


def _assert_all_unplugged(store: Store, sr: str) -> None:
    if _plugged_pbds(store, sr):
        raise XapiFailure("SR_HAS_PBD", sr)


@api("SR.forget", cancellable=True)
def sr_forget(ctx: Context, sr: str) -> None:
    """Xapi_sr.forget: only with every PBD unplugged; storage keeps the SR."""
    store = ctx.store
    with ctx.lock:
        store.get(sr, "SR")
    with marked(ctx, _sr_mark(store, sr, "forget")):
        with ctx.lock:
            _assert_all_unplugged(store, sr)
        ctx.work(0.2)
        with ctx.lock:
            _really_forget(store, sr, keep_on_storage=True)


@api("SR.destroy", cancellable=True)
def sr_destroy(ctx: Context, sr: str) -> None:
    """message_forwarding.ml SR.destroy: SR_HAS_PBD, SR_HAS_NO_PBDS, SR_NOT_EMPTY
    (managed VDIs) from the operation check, SR_INDESTRUCTIBLE; the driver's
    sr_delete (SR_NOT_EMPTY while forgotten disks remain), then the records."""
    store = ctx.store
    with ctx.lock:
        store.get(sr, "SR")
    with marked(ctx, _sr_mark(store, sr, "destroy")):
        with ctx.lock:
            _assert_all_unplugged(store, sr)
            row = store.get(sr, "SR")
            if row["other_config"].get("indestructible") == "true":
                raise XapiFailure("SR_INDESTRUCTIBLE", sr)
            w = disks.world(store)
            if row["type"] in disks.VHD_TYPES and w.ghost_vdis.get(row["uuid"]):
                raise sm_error("SRNotEmpty", "VDIs still exist in SR")
            if row["type"] not in ("iso", "udev"):
                pbd = store.get(row["PBDs"][0], "PBD")
                _driver(store, row["type"], pbd["host"], pbd["device_config"]).load()
        ctx.work(0.5)
        with ctx.lock:
            uuid = store.get(sr, "SR")["uuid"]
            _really_forget(store, sr, keep_on_storage=False)
            w.srs.pop(uuid, None)
            w.ghost_vdis.pop(uuid, None)


@api("SR.scan", cancellable=True)
def sr_scan(ctx: Context, sr: str) -> None:
    store = ctx.store
    with ctx.lock:
        store.get(sr, "SR")
    with marked(ctx, _sr_mark(store, sr, "scan")):
        with ctx.lock:
            _forward_sr(store, sr)
        ctx.work(0.3)
        with ctx.lock:
            _scan(store, sr)


@api("SR.update", cancellable=True)
def sr_update(ctx: Context, sr: str) -> None:
    """Xapi_sr.update: sizes from the driver (not locked, CA-27630)."""
    store = ctx.store
    with ctx.lock:
        store.get(sr, "SR")
        _forward_sr(store, sr)
    ctx.work(0.1)
    with ctx.lock:
        disks.recompute_usage(store, sr)


def _probe(store: Store, host: str, device_config: dict[str, str], type: str) -> str:
    """Xapi_sr.probe via Sm.sr_probe and the drivers' probe()."""
    typ = type.lower()
    store.get(host, "host")
    drv = _driver(store, typ, host, device_config)
    if "SR_PROBE" not in sm_features(store, typ):
        raise XapiFailure("SR_BACKEND_FAILURE",
                          "Operation 'sr_probe' not supported by this SR type", "", "")
    dc = device_config
    if typ == "nfs":
        drv.load()
        drv._nfs_target(scan=True)
    elif typ == "smb":
        drv.load()
        if not _reachable(dc["server"]):
            raise sm_error("SMBMount", "mount failed with return code 113")
    else:
        drv.load()
    where = drv.where()
    w = disks.world(store)
    for sr in list(store.all("SR")):
        if store.get(sr, "SR")["PBDs"]:
            disks.stored_sr(store, sr)
    entries: list[tuple[str, dict[str, str]]] = []
    for s in w.srs.values():
        if s.type != typ:
            continue
        if typ in ("lvm", "ext"):
            devs = set(dc.get("device", "").split(","))
            if s.where[1] != host or not devs & set(s.where[2].split(",")):
                continue
            entries.append((s.uuid, {"Devlist": s.where[2], "size": str(s.capacity)}))
        elif s.where == where:
            entries.append((s.uuid, {"size": str(s.capacity)} if typ != "nfs" else {}))
    if typ == "smb":
        return _srlist([(u, {}) for u, _ in entries])
    return _srlist(entries)


@api("SR.probe", cancellable=True)
def sr_probe(ctx: Context, host: str, device_config: dict[str, str], type: str,
             sm_config: dict[str, str]) -> str:
    """The driver's answer, an XML document: the SRs it finds there."""
    with ctx.lock:
        ctx.store.get(host, "host")
    ctx.work(0.2)
    with ctx.lock:
        return _probe(ctx.store, host, device_config, type)


@api("SR.probe_ext", cancellable=True)
def sr_probe_ext(ctx: Context, host: str, device_config: dict[str, str], type: str,
                 sm_config: dict[str, str]) -> list[Any]:
    """Xapi_sr.probe_ext: SMAPIv1 drivers answer Raw, which probe_ext refuses."""
    with ctx.lock:
        _probe(ctx.store, host, device_config, type)
    raise XapiFailure("SR_OPERATION_NOT_SUPPORTED")


@api("SR.get_supported_types")
def sr_get_supported_types(ctx: Context) -> list[str]:
    return sorted({str(r["type"]) for r in ctx.store.all("SM").values()})


@api("SR.set_shared")
def sr_set_shared(ctx: Context, sr: str, value: bool) -> None:
    """Xapi_sr.set_shared: unsharing needs at most one PBD."""
    store = ctx.store
    with ctx.lock:
        row = store.get(sr, "SR")
        if not value and len(row["PBDs"]) > 1:
            raise XapiFailure("SR_HAS_MULTIPLE_PBDS", *row["PBDs"])
        store.update(sr, {"shared": value})


def _sr_forwarded_set(field: str) -> Callable[[Context, str, str], None]:
    def fn(ctx: Context, sr: str, value: str) -> None:
        store = ctx.store
        with ctx.lock:
            store.get(sr, "SR")
            _forward_sr(store, sr)
            store.update(sr, {field: value})
            stored = disks.world(store).srs.get(store.get(sr, "SR")["uuid"])
            if stored is not None:
                setattr(stored, field, value)

    return fn


api("SR.set_name_label")(_sr_forwarded_set("name_label"))
api("SR.set_name_description")(_sr_forwarded_set("name_description"))


@api("SR.set_physical_size")
def sr_set_physical_size(ctx: Context, self: str, value: int) -> None:
    with ctx.lock:
        ctx.store.get(self, "SR")
    raise _internal_only()


# ================================================================ PBD messages


@api("PBD.create")
def pbd_create(ctx: Context, args: dict[str, Any]) -> str:
    """Xapi_pbd.create: one PBD per (SR, host); other_config is not kept."""
    store = ctx.store
    sr, host, dc = args["SR"], args["host"], dict(args["device_config"])
    with ctx.lock:
        store.get(sr, "SR")
        store.get(host, "host")
    with marked(ctx, _sr_mark(store, sr, "pbd_create")), ctx.lock:
        for pbd in store.get(sr, "SR")["PBDs"]:
            if store.get(pbd, "PBD")["host"] == host:
                raise XapiFailure("PBD_EXISTS", sr, host, pbd)
        _no_srmaster(dc)
        return store.create("PBD", {"host": host, "SR": sr, "device_config": dc,
                                    "currently_attached": False, "other_config": {}})


@api("PBD.destroy")
def pbd_destroy(ctx: Context, self: str) -> None:
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "PBD")["SR"]
    with marked(ctx, _sr_mark(store, sr, "pbd_destroy")), ctx.lock:
        if store.get(self, "PBD")["currently_attached"]:
            raise XapiFailure("OPERATION_NOT_ALLOWED", "PBD is currently attached")
        store.destroy(self)


@api("PBD.plug", cancellable=True)
def pbd_plug(ctx: Context, self: str) -> None:
    """Xapi_pbd.plug: the driver attaches the SR; the first PBD plugged scans it."""
    store = ctx.store
    with ctx.lock:
        row = store.get(self, "PBD")
        sr = row["SR"]
    with marked(ctx, _sr_mark(store, sr, "plug")):
        with ctx.lock:
            row = store.get(self, "PBD")
            srow = store.get(sr, "SR")
            drv = _driver(store, srow["type"], row["host"], row["device_config"])
            if row["currently_attached"]:
                return
            if not srow["shared"]:
                for p in _plugged_pbds(store, sr):
                    other = store.get(p, "PBD")["host"]
                    if other != row["host"]:
                        raise XapiFailure("SR_NOT_SHARABLE", sr, other)
            drv.load()
            capacity = drv.capacity()
            _assert_on_storage(store, srow, drv)
        ctx.work(0.3)
        with ctx.lock:
            first = not _plugged_pbds(store, sr)
            store.update(self, {"currently_attached": True})
            w = disks.world(store)
            stored = w.srs.get(srow["uuid"])
            if stored is None:
                w.srs[srow["uuid"]] = StoredSr(
                    uuid=srow["uuid"], type=srow["type"], where=drv.where(),
                    name_label=srow["name_label"], name_description=srow["name_description"],
                    content_type=srow["content_type"], capacity=capacity)
            if first:
                _scan(store, sr)
    with ctx.lock:
        _refresh_sr_and_vdis(store, sr)


def _assert_on_storage(store: Store, srow: Row, drv: Driver) -> None:
    """sr_attach finds the SR where the PBD says it is (a reattach after
    SR.introduce must name the place the SR was created)."""
    typ = srow["type"]
    if typ in ("iso", "udev", "file"):
        return
    stored = disks.world(store).srs.get(srow["uuid"])
    if stored is not None and stored.where == drv.where():
        return
    if stored is None and int(srow["physical_size"]) >= 0:
        return  # a seeded SR, never recorded: it is where its PBDs say
    uuid = srow["uuid"]
    if typ == "nfs":
        raise sm_error("NFSMount", f"mount failed with return code 32 ({uuid} not found)")
    if typ == "smb":
        raise sm_error("SMBMount", "mount failed with return code 2")
    raise sm_error("SRUnavailable", f"no such volume group: VG_XenStorage-{uuid}")


def _refresh_sr_and_vdis(store: Store, sr: str) -> None:
    row = store.find(sr)
    if row is None:
        return
    refresh(store, sr, *row["VDIs"])


@api("PBD.unplug", cancellable=True)
def pbd_unplug(ctx: Context, self: str) -> None:
    """Xapi_pbd.unplug: refused (VDI_IN_USE [vdis...]) while VMs resident on the
    PBD's host have disks of the SR attached."""
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "PBD")["SR"]

    def no_vdi_ops() -> None:
        for vdi in store.get(sr, "SR")["VDIs"]:
            vrow = store.find(vdi)
            if vrow is not None and vrow["current_operations"]:
                task, op = next(iter(vrow["current_operations"].items()))
                raise XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, op, task)

    def check() -> None:
        no_vdi_ops()
        assert_sr_op(store, sr, "unplug")

    with marked(ctx, (sr, "unplug", check)):
        with ctx.lock:
            row = store.get(self, "PBD")
            if not row["currently_attached"]:
                return
            in_use = _active_vdis(store, row["host"], sr)
            if in_use:
                raise XapiFailure("VDI_IN_USE", *in_use)
        ctx.work(0.2)
        with ctx.lock:
            store.update(self, {"currently_attached": False})
    with ctx.lock:
        _refresh_sr_and_vdis(store, sr)


def _active_vdis(store: Store, host: str, sr: str) -> list[str]:
    """Xapi_pbd.get_active_vdis_by_pbd, metadata VDIs left out."""
    out: list[str] = []
    for vm in store.get(host, "host")["resident_VMs"]:
        vmrow = store.find(vm)
        if vmrow is None:
            continue
        for vbd in vmrow["VBDs"]:
            r = store.find(vbd)
            if r is None or not r["currently_attached"] or r["empty"]:
                continue
            vrow = store.find(r["VDI"])
            if vrow is not None and vrow["SR"] == sr and vrow["type"] != "metadata":
                out.append(r["VDI"])
    return out


@api("PBD.set_device_config")
def pbd_set_device_config(ctx: Context, self: str, value: dict[str, str]) -> None:
    """Only the SM backend may (message_forwarding.ml: PERMISSION_DENIED [""])."""
    with ctx.lock:
        ctx.store.get(self, "PBD")
    raise _internal_only()


__all__ = [
    "VBD_OPS",
    "VDI_ALLOWED",
    "allowed_vbd_devices",
    "assert_attachable",
    "assert_sr_op",
    "assert_vbd_op",
    "assert_vdi_op",
    "device_name",
    "domain_type",
    "parse_device",
    "refresh",
    "refresh_vm_storage",
    "sm_features",
]
