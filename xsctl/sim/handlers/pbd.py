"""PBD behaviour (ocaml/xapi/xapi_pbd.ml): create, destroy, plug (the driver attaches
the SR; the first PBD plugged scans it) and unplug (refused while VMs on its host use
the SR's disks).
"""

from __future__ import annotations

from typing import Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks
from xsctl.sim.handlers.disks import sm_error
from xsctl.sim.handlers.sm import Driver, assert_no_srmaster, driver
from xsctl.sim.handlers.sr import assert_sr_op, scan_sr, sr_mark
from xsctl.sim.handlers.storage import internal_only, marked, plugged_pbds, refresh
from xsctl.sim.runtime import StoredSr
from xsctl.sim.store import Store
from xsctl.sim.wire import Row

# ================================================================ PBD messages


@api("PBD.create")
def pbd_create(ctx: Context, args: dict[str, Any]) -> str:
    """Xapi_pbd.create: one PBD per (SR, host); other_config is not kept."""
    store = ctx.store
    sr, host, dc = args["SR"], args["host"], dict(args["device_config"])
    with ctx.lock:
        store.get(sr, "SR")
        store.get(host, "host")
    with marked(ctx, sr_mark(store, sr, "pbd_create")), ctx.lock:
        for pbd in store.get(sr, "SR")["PBDs"]:
            if store.get(pbd, "PBD")["host"] == host:
                raise XapiFailure("PBD_EXISTS", sr, host, pbd)
        assert_no_srmaster(dc)
        return store.create("PBD", {"host": host, "SR": sr, "device_config": dc,
                                    "currently_attached": False, "other_config": {}})


@api("PBD.destroy")
def pbd_destroy(ctx: Context, self: str) -> None:
    store = ctx.store
    with ctx.lock:
        sr = store.get(self, "PBD")["SR"]
    with marked(ctx, sr_mark(store, sr, "pbd_destroy")), ctx.lock:
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
    with marked(ctx, sr_mark(store, sr, "plug")):
        with ctx.lock:
            row = store.get(self, "PBD")
            srow = store.get(sr, "SR")
            drv = driver(store, srow["type"], row["host"], row["device_config"])
            if row["currently_attached"]:
                return
            if not srow["shared"]:
                for p in plugged_pbds(store, sr):
                    other = store.get(p, "PBD")["host"]
                    if other != row["host"]:
                        raise XapiFailure("SR_NOT_SHARABLE", sr, other)
            drv.load()
            capacity = drv.capacity()
            _assert_on_storage(store, srow, drv)
        ctx.work(0.3)
        with ctx.lock:
            first = not plugged_pbds(store, sr)
            store.update(self, {"currently_attached": True})
            w = disks.world(store)
            stored = w.srs.get(srow["uuid"])
            if stored is None:
                w.srs[srow["uuid"]] = StoredSr(
                    uuid=srow["uuid"], type=srow["type"], where=drv.where(),
                    name_label=srow["name_label"], name_description=srow["name_description"],
                    content_type=srow["content_type"], capacity=capacity)
            if first:
                scan_sr(store, sr)
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
    raise internal_only()
