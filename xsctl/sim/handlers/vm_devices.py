"""A VM's domain and devices: what xenopsd's events write when a domain starts,
reboots, suspends or ends (ocaml/xapi/xapi_xenops.ml: domid, VBD and VIF attachment,
consoles, VM_metrics), Xapi_vm_lifecycle.force_state_reset, and the VBD and VIF marking
of the calls that (re)attach them (message_forwarding.ml with_vbds_marked,
with_vifs_marked).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from xsctl.sim.dispatch import Context
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import network
from xsctl.sim.handlers.storage import refresh
from xsctl.sim.handlers.vbd import assert_vbd_op, device_name, parse_device
from xsctl.sim.handlers.vm_guest import (
    create_guest_metrics,
    delete_guest_metrics,
    schedule_guest_agent,
)
from xsctl.sim.handlers.vm_lifecycle import OTHER_OP_WAIT, PV_DOMAINS, is_true, task_cancelling
from xsctl.sim.handlers.vm_memory import domain_type, refresh_host_memory
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.wire import NULL_REF, Row

# Helpers.Policy.fail_quickly: VM.start and the other calls that mark the VM's VBDs
# retry a VBD (or its VDI) busy with another operation every 2 s, for 2 minutes, then
# fail with the OTHER_OPERATION_IN_PROGRESS they met (message_forwarding.ml
# with_vbds_marked, "CA-26575: paper over transient VBD glitches").
VBD_LOCK_WAIT = 120.0


def _retry_locked(ctx: Context, attempt: Callable[[], None], wait: float) -> None:
    """Helpers.retry_with_global_lock: run ``attempt`` under the lock; while it meets
    OTHER_OPERATION_IN_PROGRESS, wait (woken when anything changes) and try again
    until ``wait`` seconds have passed; a cancelled task stops with TASK_CANCELLED."""
    store = ctx.store
    task = ctx.ensure_task()
    deadline = time.monotonic() + wait
    with store.cond:
        while True:
            if task_cancelling(ctx):
                raise XapiFailure("TASK_CANCELLED", task)
            try:
                attempt()
                return
            except XapiFailure as e:
                if e.code != "OTHER_OPERATION_IN_PROGRESS" or ctx.sim.stopping or \
                        time.monotonic() >= deadline:
                    raise
            store.cond.wait(timeout=min(0.5, max(0.01, deadline - time.monotonic())))


def _unmark_vbds(store: Store, vbds: list[str], task: str) -> None:
    """unmark_vbds (the VDI follows, as the xenopsd VBD events make it follow)."""
    for vbd in vbds:
        row = store.tables["VBD"].get(vbd)
        if row is not None:
            store.del_map_key(vbd, "current_operations", task)
            refresh(store, row["VDI"])


def _mark_vbds(store: Store, vm: str, task: str) -> list[str]:
    """message_forwarding.ml mark_vbds: each of the VM's VBDs in turn is checked for
    ``attach`` (Xapi_vbd_helpers.assert_operation_valid, sharing checks included, so
    a disk another running VM holds read-write is VDI_IN_USE [vdi] and a read-write
    VBD of a read-only VDI is VDI_READONLY [vdi]) and marked; the first failure
    unmarks those already marked and is raised."""
    marked: list[str] = []
    try:
        for vbd in store.get(vm, "VM")["VBDs"]:
            assert_vbd_op(store, vbd, "attach")
            store.set_map_key(vbd, "current_operations", task, "attach")
            marked.append(vbd)
            refresh(store, store.get(vbd, "VBD")["VDI"])
    except XapiFailure:
        _unmark_vbds(store, marked, task)
        raise
    return marked


def _unmark_vifs(store: Store, vifs: list[str], task: str) -> None:
    for vif in vifs:
        if vif in store.tables["VIF"]:
            store.del_map_key(vif, "current_operations", task)


def _mark_vifs(store: Store, vm: str, task: str) -> list[str]:
    """message_forwarding.ml mark_vifs: a VIF that fails its ``attach`` check is
    dropped (map_with_drop), and then not all are marked: OPERATION_NOT_ALLOWED
    ["Failed to lock all VIFs"], which is not retried."""
    vifs = list(store.get(vm, "VM")["VIFs"])
    marked: list[str] = []
    for vif in vifs:
        row = store.tables["VIF"].get(vif)
        if row is None or network.vif_op_errors(store, vif, row).get("attach") is not None:
            continue
        store.set_map_key(vif, "current_operations", task, "attach")
        marked.append(vif)
    if len(marked) != len(vifs):
        _unmark_vifs(store, marked, task)
        raise XapiFailure("OPERATION_NOT_ALLOWED", "Failed to lock all VIFs")
    return marked


@contextmanager
def devices_marked(ctx: Context, vm: str, *, vifs: bool = True) -> Iterator[None]:
    """with_vbds_marked (then with_vifs_marked) ~op:`attach, as VM.start, start_on,
    clean_reboot and hard_reboot nest them (resume and resume_on mark only the VBDs):
    nobody can take a disk away while the devices are (re)attached."""
    store = ctx.store
    task = ctx.ensure_task()
    vbds: list[str] = []
    marked_vifs: list[str] = []

    def mark_vbds() -> None:
        vbds[:] = _mark_vbds(store, vm, task)

    def mark_vifs() -> None:
        marked_vifs[:] = _mark_vifs(store, vm, task)

    _retry_locked(ctx, mark_vbds, VBD_LOCK_WAIT)
    try:
        if vifs:
            _retry_locked(ctx, mark_vifs, OTHER_OP_WAIT)
        try:
            yield
        finally:
            with ctx.lock:
                _unmark_vifs(store, marked_vifs, task)
    finally:
        with ctx.lock:
            _unmark_vbds(store, vbds, task)


def next_domid(store: Store, host: str) -> int:
    """Xen hands out increasing domain ids per host; dom0 is 0."""
    per_host = store.runtime.domids
    if host not in per_host:
        ids = [int(store.tables["VM"][v]["domid"]) for v in store.get(host, "host")["resident_VMs"]
               if v in store.tables["VM"]]
        per_host[host] = max([0, *ids])
    per_host[host] += 1
    return per_host[host]


def assert_devices_valid(store: Store, vm: str) -> None:
    """Xapi_xenops.MD.of_vbd: xenopsd needs a device number for each VBD, from
    Device_number.of_string ~hvm (hvm = the VM's domain_type); a userdevice that
    VBD.create accepted but that is no device (e.g. "-1") is INVALID_DEVICE [it]."""
    row = store.get(vm, "VM")
    hvm = row["domain_type"] == "hvm"
    for vbd in row["VBDs"]:
        vrow = store.tables["VBD"].get(vbd)
        if vrow is not None and parse_device(vrow["userdevice"], hvm) is None:
            raise XapiFailure("INVALID_DEVICE", vrow["userdevice"])


def _set_devices(store: Store, row: Row, attached: bool) -> None:
    """What the xenopsd VBD/VIF events write (xapi_xenops.ml update_vbd, update_vif):
    currently_attached, the VBD's Linux device name once plugged ("3" -> "xvdd",
    "xvdb" stays "xvdb": Device_number.to_linux_device), and the VBD's and its VDI's
    allowed_operations recomputed."""
    hvm = row["domain_type"] == "hvm"
    for vbd in row["VBDs"]:
        vrow = store.tables["VBD"].get(vbd)
        if vrow is None:
            continue
        changes: dict[str, Any] = {"currently_attached": attached}
        if attached:
            changes["device"] = device_name(vrow["userdevice"], hvm)
        store.update(vbd, changes)
        refresh(store, vrow["VDI"])
    for vif in row["VIFs"]:
        if vif in store.tables["VIF"]:
            store.update(vif, {"currently_attached": attached})


def console_location(store: Store, host: str, uuid: str) -> str:
    """xapi_xenops.ml: https://<host address>/console?uuid=<console uuid>."""
    addr = store.get(host, "host")["address"]
    if ":" in addr:
        addr = f"[{addr}]"
    return f"https://{addr}/console?uuid={uuid}"


def _destroy_consoles(store: Store, vm: str) -> None:
    for c in list(store.get(vm, "VM")["consoles"]):
        if c in store.tables["console"]:
            store.destroy(c)


def create_consoles(store: Store, vm: str, host: str) -> None:
    """The consoles xenopsd reports for a domain: RFB (VNC), plus a VT100 text console
    for PV guests."""
    _destroy_consoles(store, vm)
    protocols = ["rfb"]
    if domain_type(store.get(vm, "VM")) in PV_DOMAINS:
        protocols.append("vt100")
    for proto in protocols:
        uuid = store.new_uuid()
        store.create("console", {"uuid": uuid, "protocol": proto, "VM": vm, "other_config": {},
                                 "location": console_location(store, host, uuid)})


def reboot_domain(ctx: Context, vm: str) -> None:
    """A reboot: a new domain on the same host, fresh metrics and guest metrics."""
    store = ctx.store
    row = store.get(vm, "VM")
    host = row["resident_on"]
    domid = next_domid(store, host)
    delete_guest_metrics(store, vm)
    row = store.update(vm, {"power_state": "Running", "domid": domid})
    _metrics_running(store, row)
    create_guest_metrics(store, vm)
    schedule_guest_agent(ctx.sim, vm, domid)


def _metrics_running(store: Store, row: Row) -> None:
    metrics = row["metrics"]
    if metrics not in store.tables["VM_metrics"]:
        return
    vcpus = int(row["VCPUs_at_startup"])
    dt = domain_type(row)
    store.update(metrics, {
        "memory_actual": int(row["memory_dynamic_max"]),
        "VCPUs_number": vcpus,
        "VCPUs_utilisation": {str(i): 0.0 for i in range(vcpus)},
        "VCPUs_CPU": {str(i): i for i in range(vcpus)},
        "VCPUs_params": dict(row["VCPUs_params"]),
        "start_time": now_datetime(), "last_updated": now_datetime(),
        "hvm": dt != "pv", "current_domain_type": dt,
        "nomigrate": is_true(row["platform"].get("nomigrate")),
        "nested_virt": is_true(row["platform"].get("nested-virt")),
        "state": [],
    })


def _metrics_stopped(store: Store, row: Row, keep_type: bool = False) -> None:
    metrics = row["metrics"]
    if metrics not in store.tables["VM_metrics"]:
        return
    changes: dict[str, Any] = {
        "memory_actual": 0, "VCPUs_number": 0, "VCPUs_utilisation": {}, "VCPUs_CPU": {},
        "last_updated": now_datetime(), "state": [],
    }
    if not keep_type:
        changes.update(hvm=False, current_domain_type="unspecified")
    store.update(metrics, changes)


def boot_domain(ctx: Context, vm: str, host: str, paused: bool, *, fresh_boot: bool) -> int:
    """A domain comes up on ``host`` (Xapi_xenops.start/resume and the database updates
    xenopsd's events cause). Call with the lock held; returns the domid."""
    store = ctx.store
    row = store.get(vm, "VM")
    if fresh_boot:
        delete_guest_metrics(store, vm)  # Xapi_vm.start: stale guest metrics go
    domid = next_domid(store, host)
    row = store.update(vm, {
        "power_state": "Paused" if paused else "Running", "resident_on": host,
        "scheduled_to_be_resident_on": NULL_REF, "domid": domid, "domarch": "x64",
    })
    _metrics_running(store, row)
    _set_devices(store, row, True)
    create_consoles(store, vm, host)
    create_guest_metrics(store, vm)
    refresh_host_memory(store, host)
    schedule_guest_agent(ctx.sim, vm, domid)
    return domid


def force_state_reset(store: Store, vm: str, state: str, *, checkpoint: bool = False,
                      keep_guest_metrics: bool = False) -> None:
    """Xapi_vm_lifecycle.force_state_reset_keep_current_operations plus what the end of
    the domain removes (consoles, guest metrics on halt, host memory)."""
    row = store.get(vm, "VM")
    old_host = row["resident_on"]
    changes: dict[str, Any] = {"power_state": state}
    if state == "Halted":
        changes["requires_reboot"] = False
    if state == "Halted" or (state == "Suspended" and not checkpoint):
        changes.update(resident_on=NULL_REF, scheduled_to_be_resident_on=NULL_REF, domid=-1)
    row = store.update(vm, changes)
    if state in ("Halted", "Suspended"):
        _set_devices(store, row, False)
        _destroy_consoles(store, vm)
        _metrics_stopped(store, row, keep_type=state == "Suspended")
    if state == "Halted" and not keep_guest_metrics:
        delete_guest_metrics(store, vm)
    refresh_host_memory(store, old_host)
