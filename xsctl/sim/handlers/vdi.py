"""VDI behaviour: Xapi_vdi.check_operation_error (allowed_operations and every VDI
call's check), and the VDI calls of xapi_vdi.ml (create, destroy, resize, snapshot,
clone, copy, introduce, forget, update and the setters) with their
message_forwarding.ml marking and forwarding rules. Sizes and SR accounting follow
the SM drivers (disks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks
from xsctl.sim.handlers.disks import sm_error
from xsctl.sim.handlers.sr import sr_mark
from xsctl.sim.handlers.storage import (
    Failure,
    Mark,
    assert_managed,
    forward_sr,
    internal_only,
    marked,
    plugged_pbds,
    power_state,
    ref_of,
    refresh,
    sm_features,
)
from xsctl.sim.handlers.vbd import gc_vbds
from xsctl.sim.store import Store, allowed_ops, now_datetime
from xsctl.sim.wire import NULL_REF, DateTime, Row

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
    if op == "resize" and not plugged_pbds(store, sr):
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
    ref = ref_of(store, "VDI", row)
    return [op for op in VDI_ALLOWED if vdi_error(store, ref, row, op) is None]


def vdi_mark(store: Store, vdi: str, op: str) -> Mark:
    return (vdi, op, lambda: assert_vdi_op(store, vdi, op))


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
    with marked(ctx, sr_mark(store, sr, "vdi_create")):
        with ctx.lock:
            forward_sr(store, sr)
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


@api("VDI.destroy", cancellable=True)
def vdi_destroy(ctx: Context, self: str) -> None:
    """Xapi_vdi.destroy: refused while attached (VDI_IN_USE [vdi, "destroy"]); the
    VDI's other VBDs (halted VMs) go with it and suspend_VDI references are cleared."""
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "VDI")["SR"]
    with marked(ctx, sr_mark(store, sr, "vdi_destroy"), vdi_mark(store, self, "destroy")):
        with ctx.lock:
            forward_sr(store, sr)
            assert_managed(store, self)
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
    with marked(ctx, sr_mark(store, sr, "vdi_resize"), vdi_mark(store, vdi, "resize")):
        with ctx.lock:
            forward_sr(store, sr)
            assert_managed(store, vdi)
        ctx.work(0.3)
        with ctx.lock:
            disks.resize_vdi(store, vdi, size)


def _snapshot_or_clone(ctx: Context, vdi: str, kind: str) -> str:
    store = ctx.store
    with ctx.lock:
        sr = store.get(vdi, "VDI")["SR"]
    with marked(ctx, sr_mark(store, sr, f"vdi_{kind}"), vdi_mark(store, vdi, kind)):
        with ctx.lock:
            forward_sr(store, sr)
            assert_managed(store, vdi)
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
    with marked(ctx, vdi_mark(store, vdi, "copy")):
        with ctx.lock:
            assert_managed(store, vdi)
            src = store.get(vdi, "VDI")
            into = store.exists(into_vdi, "VDI")
        created: str | None = None
        if into:
            dst = into_vdi
        else:
            with ctx.lock:
                store.get(sr, "SR")
            with marked(ctx, sr_mark(store, sr, "vdi_create")), ctx.lock:
                forward_sr(store, sr)
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
                disks.copy_contents(store, vdi, dst)
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
    with marked(ctx, sr_mark(store, sr, "vdi_introduce")), ctx.lock:
        forward_sr(store, sr)
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
    with marked(ctx, vdi_mark(store, vdi, "forget")), ctx.lock:
        row = store.get(vdi, "VDI")
        disks.forget_to_storage(store, vdi)
        vbds = list(row["VBDs"])
        disks.destroy_vdi(store, vdi)
        gc_vbds(store, vbds)
    with ctx.lock:
        refresh(store, row["SR"])


@api("VDI.update", cancellable=True)
def vdi_update(ctx: Context, vdi: str) -> None:
    """Xapi_vdi.update: the driver re-reads the disk; nothing changed underneath."""
    store = ctx.store
    with ctx.lock:
        sr = store.get(vdi, "VDI")["SR"]
    with marked(ctx, vdi_mark(store, vdi, "update")):
        with ctx.lock:
            forward_sr(store, sr)
        ctx.work(0.1)


def _vdi_forwarded_set(field: str) -> Callable[[Context, str, str], None]:
    def fn(ctx: Context, self: str, value: str) -> None:
        store = ctx.store
        with ctx.lock:
            forward_sr(store, store.get(self, "VDI")["SR"])
            store.update(self, {field: value})

    return fn


api("VDI.set_name_label")(_vdi_forwarded_set("name_label"))
api("VDI.set_name_description")(_vdi_forwarded_set("name_description"))


@api("VDI.set_read_only")
def vdi_set_read_only(ctx: Context, self: str, value: bool) -> None:
    """Only the SM backend may (message_forwarding.ml: PERMISSION_DENIED [""])."""
    with ctx.lock:
        ctx.store.get(self, "VDI")
    raise internal_only()


@api("VDI.set_sharable")
def vdi_set_sharable(ctx: Context, self: str, value: bool) -> None:
    with ctx.lock:
        ctx.store.get(self, "VDI")
    raise internal_only()


def _not_on_running_vm(store: Store, vdi: str) -> None:
    """message_forwarding.ml ensure_vdi_not_on_running_vm."""
    for vbd in store.get(vdi, "VDI")["VBDs"]:
        row = store.find(vbd)
        if row is None:
            continue
        power = power_state(store, row["VM"])
        if power != "Halted":
            raise XapiFailure("VM_BAD_POWER_STATE", row["VM"], "halted", power.lower())


@api("VDI.set_on_boot", cancellable=True)
def vdi_set_on_boot(ctx: Context, self: str, value: str) -> None:
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "VDI")["SR"]
        _not_on_running_vm(store, self)
    with marked(ctx, sr_mark(store, sr, "vdi_set_on_boot"),
                vdi_mark(store, self, "set_on_boot")), ctx.lock:
        forward_sr(store, sr)
        store.update(self, {"on_boot": value})


@api("VDI.set_allow_caching")
def vdi_set_allow_caching(ctx: Context, self: str, value: bool) -> None:
    store = ctx.store
    with ctx.lock:
        _not_on_running_vm(store, self)
        store.update(self, {"allow_caching": value})
