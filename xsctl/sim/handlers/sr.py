"""SR behaviour: Xapi_sr_operations.valid_operations, and the SR calls of xapi_sr.ml
(create, introduce, forget, destroy, scan, update, probe and the setters) as the SM
drivers answer them (sm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import TICKS, disks
from xsctl.sim.handlers.disks import sm_error
from xsctl.sim.handlers.sm import assert_no_srmaster, driver, reachable, srlist
from xsctl.sim.handlers.storage import (
    Mark,
    Table,
    check_table,
    forward_sr,
    internal_only,
    marked,
    plugged_pbds,
    ref_of,
    refresh,
    sm_features,
    sorted_ops,
)
from xsctl.sim.handlers.vbd import gc_vbds
from xsctl.sim.runtime import StoredSr
from xsctl.sim.store import Store, allowed_ops
from xsctl.sim.wire import Row

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

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
    current = sorted_ops(row["current_operations"], _SR_ENUM)
    if current:
        task, op = current[0]
        err("OTHER_OPERATION_IN_PROGRESS", ["SR", ref, op, task],
            [o for o in SR_OPS if o != "plug"])
        serial = [(t, o) for t, o in current if o != "plug"]
        if serial:
            err("OTHER_OPERATION_IN_PROGRESS", ["SR", ref, serial[0][1], serial[0][0]], ["plug"])
    return table


def assert_sr_op(store: Store, sr: str, op: str) -> None:
    check_table(lambda: sr_table(store, sr, store.get(sr, "SR")), op)


@allowed_ops("SR")
def _sr_allowed(store: Store, row: Row) -> list[str]:
    table = sr_table(store, ref_of(store, "SR", row), row)
    return [op for op in SR_OPS if table[op] is None]


def sr_mark(store: Store, sr: str, op: str) -> Mark:
    return (sr, op, lambda: assert_sr_op(store, sr, op))


# ================================================================ SR messages


def scan_sr(store: Store, sr: str) -> None:
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
    disks.read_written(store, sr)
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
        assert_no_srmaster(device_config)
        drv = driver(store, typ, host, device_config)
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
        scan_sr(store, sr)
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
        gc_vbds(store, vbds)
    store.destroy(sr)


def _assert_all_unplugged(store: Store, sr: str) -> None:
    if plugged_pbds(store, sr):
        raise XapiFailure("SR_HAS_PBD", sr)


@api("SR.forget", cancellable=True)
def sr_forget(ctx: Context, sr: str) -> None:
    """Xapi_sr.forget: only with every PBD unplugged; storage keeps the SR."""
    store = ctx.store
    with ctx.lock:
        store.get(sr, "SR")
    with marked(ctx, sr_mark(store, sr, "forget")):
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
    with marked(ctx, sr_mark(store, sr, "destroy")):
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
                driver(store, row["type"], pbd["host"], pbd["device_config"]).load()
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
    with marked(ctx, sr_mark(store, sr, "scan")):
        with ctx.lock:
            forward_sr(store, sr)
        ctx.work(0.3)
        with ctx.lock:
            scan_sr(store, sr)


@api("SR.update", cancellable=True)
def sr_update(ctx: Context, sr: str) -> None:
    """Xapi_sr.update: sizes from the driver (not locked, CA-27630)."""
    store = ctx.store
    with ctx.lock:
        store.get(sr, "SR")
        forward_sr(store, sr)
    ctx.work(0.1)
    with ctx.lock:
        disks.read_written(store, sr)


def _probe(store: Store, host: str, device_config: dict[str, str], type: str) -> str:
    """Xapi_sr.probe via Sm.sr_probe and the drivers' probe()."""
    typ = type.lower()
    store.get(host, "host")
    drv = driver(store, typ, host, device_config)
    if "SR_PROBE" not in sm_features(store, typ):
        raise XapiFailure("SR_BACKEND_FAILURE",
                          "Operation 'sr_probe' not supported by this SR type", "", "")
    dc = device_config
    if typ == "nfs":
        drv.load()
        drv._nfs_target(scan=True)
    elif typ == "smb":
        drv.load()
        if not reachable(dc["server"]):
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
        return srlist([(u, {}) for u, _ in entries])
    return srlist(entries)


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
            forward_sr(store, sr)
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
    raise internal_only()


# ---------------------------------------------------------------- guests writing


def fill_tick(sim: Simulator, seconds: float = 5.0) -> None:
    """Between two ticks running guests fill their thin-provisioned disks."""
    with sim.store.lock:
        disks.fill(sim.store, seconds)


TICKS.append(fill_tick)
