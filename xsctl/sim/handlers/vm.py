"""VM calls: the power operations (start, shutdown, reboot, suspend, resume, pause,
power_state_reset, pool_migrate), create, and the plain setters and queries.

Written from xapi's own code (xapi-project/xen-api), never copied:

* ``ocaml/xapi/message_forwarding.ml`` (module VM): which operation each call marks,
  host choice and memory reservation, the alerts (message bodies) after each call.
* ``ocaml/xapi/xapi_vm.ml``, ``xapi_vm_helpers.ml``: start, shutdown, suspend, reboot,
  power_state_reset, create, the setters.

The rules live beside them: allowed operations in vm_lifecycle, memory in vm_memory,
host choice in vm_placement, the domain and its devices in vm_devices, guest metrics
in vm_guest, clone, snapshot, revert and templates in vm_clone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from xsctl.sim.datamodel import EPOCH
from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks, message
from xsctl.sim.handlers.network import allowed_vif_devices
from xsctl.sim.handlers.storage import refresh_vm_devices
from xsctl.sim.handlers.vbd import allowed_vbd_devices
from xsctl.sim.handlers.vm_devices import (
    assert_devices_valid,
    boot_domain,
    create_consoles,
    devices_marked,
    force_state_reset,
    next_domid,
    reboot_domain,
)
from xsctl.sim.handlers.vm_lifecycle import (
    feature_error,
    get_host,
    get_vm,
    is_true,
    pool_row,
    set_cancellable,
    vm_facts,
    vm_operation,
)
from xsctl.sim.handlers.vm_memory import (
    Constraints,
    host_free_memory,
    memory_overhead,
    refresh_host_memory,
    start_memory,
)
from xsctl.sim.handlers.vm_placement import (
    assert_can_boot_here,
    choose_host_for_vm,
    choose_host_seeing,
    host_live,
    required_srs,
    srs_seen_by,
)
from xsctl.sim.store import Store
from xsctl.sim.wire import NULL_REF, Row


@contextmanager
def _marked(ctx: Context, refs: list[str], field: str, op: str) -> Iterator[None]:
    """The host's vm_start / vm_resume / vm_migrate: an entry in current_operations
    while the VM operation runs."""
    task = ctx.ensure_task()
    store = ctx.store
    with ctx.lock:
        marked = [r for r in refs if store.exists(r)]
        for r in marked:
            store.set_map_key(r, field, task, op)
    try:
        yield
    finally:
        with ctx.lock:
            for r in marked:
                if store.exists(r):
                    store.del_map_key(r, field, task)


def vm_alert(ctx: Context, name: str, vm: str, body: str) -> None:
    """message_forwarding.ml create_vm_message (failures to create it are ignored)."""
    uuid = ctx.store.get(vm, "VM")["uuid"]
    message.emit(ctx.sim, name, "VM", uuid, body)


def vm_text(store: Store, vm: str) -> str:
    row = store.get(vm, "VM")
    return f"VM '{row['name_label']}' (uuid: {row['uuid']})"


def host_text(store: Store, host: str) -> str:
    h = store.get(host, "host")
    return f"{h['name_label']} (uuid: {h['uuid']})"


# ============================================================================ power

def _pause(seconds: float) -> None:
    """start_delay / shutdown_delay (Xapi_vm_helpers): xapi simply sleeps."""
    if seconds > 0:
        time.sleep(seconds)


def _cancel_ops(ctx: Context, vm: str, ops: frozenset[str], timeout: float = 60.0) -> None:
    """message_forwarding.ml cancel: task.cancel every listed operation in progress on
    the VM, then wait for those tasks (hard_shutdown and hard_reboot do this)."""
    store = ctx.store
    with store.cond:
        row = store.get(vm, "VM")
        tasks = [t for t, o in row["current_operations"].items() if o in ops and t != ctx.task]
        for t in tasks:  # Client.Task.cancel, as task.cancel does it
            trow = store.tables["task"].get(t)
            if trow is not None and trow["status"] == "pending":
                key = f"DummyRef:|{store.new_uuid()}|task.cancel"
                store.update(t, {"current_operations": {**trow["current_operations"],
                                                        key: "cancel"}})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = store.tables["VM"].get(vm)
            if cur is None or not any(t in cur["current_operations"] for t in tasks):
                break
            store.cond.wait(timeout=0.2)


def ensure_domain_type(store: Store, vm: str) -> Row:
    """Xapi_vm_helpers.ensure_domain_type_is_specified."""
    row = store.get(vm, "VM")
    if row["domain_type"] == "unspecified":
        row = store.update(vm, {"domain_type": "hvm" if row["HVM_boot_policy"] else "pv"})
    return row


def _check_start_memory(store: Store, vm: str, host: str) -> None:
    """xenopsd's own check when it builds the domain (Not_enough_memory becomes
    HOST_NOT_ENOUGH_FREE_MEMORY [needed, available] in xapi_xenops.ml)."""
    row = store.get(vm, "VM")
    needed = start_memory(row)
    avail = host_free_memory(store, host, ignore_scheduled=vm)
    if avail < needed:
        raise XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, avail)


def _clear_scheduled(store: Store, vm: str) -> None:
    row = store.tables["VM"].get(vm)
    if row is not None and row["scheduled_to_be_resident_on"] != NULL_REF:
        store.update(vm, {"scheduled_to_be_resident_on": NULL_REF})


def _start(ctx: Context, vm: str, host: str | None, paused: bool, force: bool) -> str:
    """message_forwarding.ml VM.start / start_on, then Xapi_vm.start."""
    store = ctx.store
    op = "start" if host is None else "start_on"
    with vm_operation(ctx, vm, op), devices_marked(ctx, vm):
        with ctx.lock:
            row = ensure_domain_type(store, vm)
            row = store.update(vm, {"memory_overhead": memory_overhead(row)})
            if host is None:
                target = row["scheduled_to_be_resident_on"]
                if target not in store.tables["host"]:
                    target = choose_host_for_vm(store, vm, row)
            else:
                assert_can_boot_here(store, vm, row, host)
                target = host
            store.update(vm, {"scheduled_to_be_resident_on": target})
        try:
            with _marked(ctx, [target], "current_operations", "vm_start"):
                with ctx.lock:
                    row = store.get(vm, "VM")
                    if row["ha_restart_priority"] == "restart":
                        store.update(vm, {"ha_always_run": True})
                    if not force and is_true(row["platform"].get("nested-virt")) and \
                            not Constraints.of(row).pinned_at_static_max():
                        raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "nested virt")
                    assert_devices_valid(store, vm)  # Xapi_xenops.start builds the devices
                    _check_start_memory(store, vm, target)
                ctx.work(1.0)
                with ctx.lock:
                    boot_domain(ctx, vm, target, paused, fresh_boot=True)
        finally:
            with ctx.lock:
                _clear_scheduled(store, vm)
        _pause(int(store.get(vm, "VM")["start_delay"]))
    with ctx.lock:
        refresh_vm_devices(store, vm)
    vm_alert(ctx, "VM_STARTED", vm,
           f"{vm_text(store, vm)} started on host: {host_text(store, target)}")
    return str(target)


@api("VM.start")
def start(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    get_vm(ctx, vm)
    _start(ctx, vm, None, start_paused, force)


@api("VM.start_on")
def start_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    row = get_vm(ctx, vm)
    hrow = get_host(ctx, host)
    if row["is_control_domain"] and row["affinity"] not in (NULL_REF, host):
        raise XapiFailure("OPERATION_NOT_ALLOWED",
                          "Cannot boot a control domain on a host different from its affinity")
    if "evacuate" in hrow["current_operations"].values():
        raise XapiFailure("HOST_EVACUATE_IN_PROGRESS", host)
    _start(ctx, vm, host, start_paused, force)


@api("VM.clean_shutdown")
def clean_shutdown(ctx: Context, vm: str) -> None:
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "clean_shutdown"):
        store.update(vm, {"ha_always_run": False})
        ctx.work(0.6)
        with ctx.lock:
            force_state_reset(store, vm, "Halted")
        _pause(int(store.get(vm, "VM")["shutdown_delay"]))
    vm_alert(ctx, "VM_SHUTDOWN", vm, f"{vm_text(store, vm)} shutdown")
    with ctx.lock:
        refresh_vm_devices(store, vm)


def _discard_suspended(ctx: Context, vm: str) -> None:
    """Xapi_vm.hard_shutdown of a Suspended VM: on a host that sees its disks, destroy
    the suspend image, forget it, and reset to Halted."""
    store = ctx.store
    with ctx.lock:
        row = store.get(vm, "VM")
        choose_host_seeing(store, required_srs(store, row, with_suspend=False))
        vdi = row["suspend_VDI"]
        if vdi in store.tables["VDI"]:
            disks.destroy_vdi(store, vdi)
        store.update(vm, {"suspend_VDI": NULL_REF, "current_operations": {}})
        force_state_reset(store, vm, "Halted")


def _hard_shutdown_local(ctx: Context, vm: str) -> None:
    store = ctx.store
    store.update(vm, {"ha_always_run": False})
    ps = store.get(vm, "VM")["power_state"]
    if ps == "Suspended":
        _discard_suspended(ctx, vm)
    elif ps in ("Running", "Paused"):
        ctx.work(0.3)
        with ctx.lock:
            force_state_reset(store, vm, "Halted")
        _pause(int(store.get(vm, "VM")["shutdown_delay"]))


@api("VM.hard_shutdown")
def hard_shutdown(ctx: Context, vm: str) -> None:
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "hard_shutdown"):
        _cancel_ops(ctx, vm, frozenset({"clean_shutdown", "clean_reboot", "hard_reboot",
                                        "pool_migrate", "call_plugin", "shutdown", "suspend"}))
        _hard_shutdown_local(ctx, vm)
    vm_alert(ctx, "VM_SHUTDOWN", vm, f"{vm_text(store, vm)} shutdown forcibly")
    with ctx.lock:
        refresh_vm_devices(store, vm)


@api("VM.shutdown")
def shutdown(ctx: Context, vm: str) -> None:
    """Clean shutdown, falling back to a hard one when the guest cannot do it; a
    suspended VM just loses its suspend image (message_forwarding.ml, Xapi_vm.shutdown)."""
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "shutdown"):
        if store.get(vm, "VM")["power_state"] == "Suspended":
            _discard_suspended(ctx, vm)
        else:
            store.update(vm, {"ha_always_run": False})
            ctx.work(0.6)
            with ctx.lock:
                row = store.get(vm, "VM")
                clean_ok = row["power_state"] == "Running" and feature_error(
                    vm_facts(store, vm, row), "clean_shutdown", vm, True) is None
                if clean_ok:
                    force_state_reset(store, vm, "Halted")
            if not clean_ok:
                _hard_shutdown_local(ctx, vm)
            else:
                _pause(int(store.get(vm, "VM")["shutdown_delay"]))
    with ctx.lock:
        refresh_vm_devices(store, vm)
    vm_alert(ctx, "VM_SHUTDOWN", vm, f"{vm_text(store, vm)} shutdown")


@api("VM.clean_reboot")
def clean_reboot(ctx: Context, vm: str) -> None:
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "clean_reboot"), devices_marked(ctx, vm):
        ctx.work(0.8)
        with ctx.lock:
            reboot_domain(ctx, vm)
    vm_alert(ctx, "VM_REBOOTED", vm, f"{vm_text(store, vm)} rebooted cleanly")
    with ctx.lock:
        refresh_vm_devices(store, vm)


@api("VM.hard_reboot")
def hard_reboot(ctx: Context, vm: str) -> None:
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "hard_reboot"):
        _cancel_ops(ctx, vm, frozenset({"clean_shutdown", "clean_reboot", "pool_migrate",
                                        "call_plugin", "suspend"}))
        with devices_marked(ctx, vm):
            ps = store.get(vm, "VM")["power_state"]
            if ps == "Suspended":
                raise XapiFailure("VM_BAD_POWER_STATE", vm, "running", "suspended")
            if ps == "Halted":
                # Xapi_vm.hard_reboot of a VM that halted meanwhile: start it
                with ctx.lock:
                    row = ensure_domain_type(store, vm)
                    target = choose_host_for_vm(store, vm, row)
                    assert_devices_valid(store, vm)
                    _check_start_memory(store, vm, target)
                ctx.work(1.0)
                with ctx.lock:
                    boot_domain(ctx, vm, target, False, fresh_boot=True)
            else:
                ctx.work(0.5)
                with ctx.lock:
                    reboot_domain(ctx, vm)
    vm_alert(ctx, "VM_REBOOTED", vm, f"{vm_text(store, vm)} rebooted forcibly")
    with ctx.lock:
        refresh_vm_devices(store, vm)


def choose_suspend_sr(store: Store, vm: str, row: Row) -> str:
    """Helpers.choose_suspend_sr: the VM's suspend_SR, else the pool's, else the
    host's, whichever exists and is plugged on the VM's host."""
    host = row["resident_on"]
    seen = srs_seen_by(store, host) if host in store.tables["host"] else set()
    hrow = store.tables["host"].get(host)
    host_sr = hrow["suspend_image_sr"] if hrow is not None else NULL_REF
    for sr in (row["suspend_SR"], pool_row(store)["suspend_image_SR"], host_sr):
        if sr in store.tables["SR"] and sr in seen:
            return str(sr)
    raise XapiFailure("VM_NO_SUSPEND_SR", vm)


def create_suspend_image(ctx: Context, vm: str) -> str:
    """Xapi_xenops.suspend: VDI.create of a "Suspend image" of 1.26 x static_max plus
    100 MiB, fully inflated (sm-config initial_allocation), on the suspend SR; the SM
    driver rounds the size and, when it does not fit, fails with SR_BACKEND_FAILURE_44,
    which xapi turns into SR_SUSPEND_SPACE_INSUFFICIENT [sr]."""
    store = ctx.store
    row = store.get(vm, "VM")
    sr = choose_suspend_sr(store, vm, row)
    space = int(int(row["memory_static_max"]) * 1.2 * 1.05) + 104857600
    try:
        vdi = disks.new_vdi(
            store, sr, "Suspend image", space, sm=True, name_description="Suspend image",
            type="suspend", fill=1.0,
            sm_config={"vmhint": row["uuid"], "initial_allocation": str(space),
                       **({"vdi_type": "vhd"} if disks.sr_type(store, sr) in disks.VHD_TYPES
                          else {})},
        )
    except XapiFailure as e:
        if e.code == "SR_BACKEND_FAILURE_44":
            raise XapiFailure("SR_SUSPEND_SPACE_INSUFFICIENT", sr) from e
        raise
    store.update(vm, {"suspend_VDI": vdi})
    return vdi


@api("VM.suspend")
def suspend(ctx: Context, vm: str) -> None:
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "suspend"):
        set_cancellable(ctx, False)
        with ctx.lock:
            store.update(vm, {"ha_always_run": False})
            vdi = create_suspend_image(ctx, vm)
        try:
            ctx.work(1.0)
        except XapiFailure:
            with ctx.lock:
                if vdi in store.tables["VDI"]:
                    disks.destroy_vdi(store, vdi)
                store.update(vm, {"suspend_VDI": NULL_REF})
            raise
        with ctx.lock:
            force_state_reset(store, vm, "Suspended")
    vm_alert(ctx, "VM_SUSPENDED", vm, f"{vm_text(store, vm)} suspended")
    with ctx.lock:
        refresh_vm_devices(store, vm)


def _resume(ctx: Context, vm: str, host: str | None, paused: bool) -> str:
    store = ctx.store
    op = "resume" if host is None else "resume_on"
    with vm_operation(ctx, vm, op), devices_marked(ctx, vm, vifs=False):
        set_cancellable(ctx, False)
        with ctx.lock:
            row = ensure_domain_type(store, vm)
            if host is None:
                target = row["scheduled_to_be_resident_on"]
                if target not in store.tables["host"]:
                    target = choose_host_for_vm(store, vm, row)
            else:
                assert_can_boot_here(store, vm, row, host)
                target = host
            store.update(vm, {"scheduled_to_be_resident_on": target})
        try:
            with _marked(ctx, [target], "current_operations", "vm_resume"):
                with ctx.lock:
                    _check_start_memory(store, vm, target)
                ctx.work(1.0)
                with ctx.lock:
                    row = store.get(vm, "VM")
                    vdi = row["suspend_VDI"]
                    if vdi not in store.tables["VDI"]:
                        force_state_reset(store, vm, "Halted")
                        raise XapiFailure("VM_HAS_NO_SUSPEND_VDI", "VM", vm)
                    if row["ha_restart_priority"] == "restart":
                        store.update(vm, {"ha_always_run": True})
                    boot_domain(ctx, vm, target, paused, fresh_boot=False)
                    store.update(vm, {"suspend_VDI": NULL_REF})
                    disks.destroy_vdi(store, vdi)
        finally:
            with ctx.lock:
                _clear_scheduled(store, vm)
    with ctx.lock:
        refresh_vm_devices(store, vm)
    vm_alert(ctx, "VM_RESUMED", vm,
           f"{vm_text(store, vm)} resumed on host: {host_text(store, target)}")
    return str(target)


@api("VM.resume")
def resume(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    get_vm(ctx, vm)
    _resume(ctx, vm, None, start_paused)


@api("VM.resume_on")
def resume_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    get_vm(ctx, vm)
    get_host(ctx, host)
    _resume(ctx, vm, host, start_paused)


def _pause_op(ctx: Context, vm: str, op: str, state: str, alert: str, word: str) -> None:
    store = ctx.store
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, op):
        ctx.work(0.2)
        with ctx.lock:
            store.update(vm, {"power_state": state})
    vm_alert(ctx, alert, vm, f"{vm_text(store, vm)} {word}")
    with ctx.lock:
        refresh_vm_devices(store, vm)


@api("VM.pause")
def pause(ctx: Context, vm: str) -> None:
    _pause_op(ctx, vm, "pause", "Paused", "VM_PAUSED", "paused")


@api("VM.unpause")
def unpause(ctx: Context, vm: str) -> None:
    _pause_op(ctx, vm, "unpause", "Running", "VM_UNPAUSED", "unpaused")


@api("VM.power_state_reset")
def power_state_reset(ctx: Context, vm: str) -> None:
    """Xapi_vm.power_state_reset: for VMs whose host died. Refused for control
    domains, for a live domain on this (the master) host, and when the VM's host is
    still alive."""
    store = ctx.store
    with ctx.lock:
        row = get_vm(ctx, vm)
        if row["is_control_domain"]:
            raise XapiFailure("CANNOT_RESET_CONTROL_DOMAIN", vm)
        if row["power_state"] in ("Running", "Paused"):
            resident = row["resident_on"]
            if resident == ctx.sim.master_ref():
                raise XapiFailure("DOMAIN_EXISTS", vm)
            if host_live(store, resident):
                raise XapiFailure("HOST_IS_LIVE", resident)
        store.update(vm, {"current_operations": {}})
        force_state_reset(store, vm, "Halted")


@api("VM.pool_migrate")
def pool_migrate(ctx: Context, vm: str, host: str, options: dict[str, str]) -> None:
    """message_forwarding.ml VM.pool_migrate: reserve memory on the destination
    (assert_can_boot_here, so local disks give VM_REQUIRES_SR and a disabled host
    HOST_DISABLED), move the domain, and alert VM_MIGRATED."""
    store = ctx.store
    get_vm(ctx, vm)
    get_host(ctx, host)
    force = options.get("force") == "true"
    source = store.get(vm, "VM")["resident_on"]
    with vm_operation(ctx, vm, "pool_migrate", strict=not force):
        with ctx.lock:
            row = store.get(vm, "VM")
            source = row["resident_on"]
            assert_can_boot_here(store, vm, row, host)
            store.update(vm, {"scheduled_to_be_resident_on": host})
        try:
            with _marked(ctx, [host], "current_operations", "vm_migrate"):
                ctx.work(1.5)
                with ctx.lock:
                    domid = next_domid(store, host)
                    store.update(vm, {"resident_on": host, "domid": domid,
                                      "scheduled_to_be_resident_on": NULL_REF})
                    create_consoles(store, vm, host)
                    refresh_host_memory(store, source)
                    refresh_host_memory(store, host)
        finally:
            with ctx.lock:
                _clear_scheduled(store, vm)
    vm_alert(ctx, "VM_MIGRATED", vm,
           f"{vm_text(store, vm)} migrated from host '{store.get(source, 'host')['name_label']}' "
           f"(uuid: {store.get(source, 'host')['uuid']}) to host "
           f"'{store.get(host, 'host')['name_label']}' (uuid: {store.get(host, 'host')['uuid']})")
    with ctx.lock:
        refresh_vm_devices(store, vm)


# ============================================================================ settings

def _non_negative(ctx: Context, vm: str, field: str, value: int) -> None:
    get_vm(ctx, vm)
    if value < 0:
        raise XapiFailure("INVALID_VALUE", f"{field} must be non-negative", value)
    ctx.store.update(vm, {field: value})


@api("VM.set_start_delay")
def set_start_delay(ctx: Context, self: str, value: int) -> None:
    _non_negative(ctx, self, "start_delay", value)


@api("VM.set_shutdown_delay")
def set_shutdown_delay(ctx: Context, self: str, value: int) -> None:
    _non_negative(ctx, self, "shutdown_delay", value)


@api("VM.set_order")
def set_order(ctx: Context, self: str, value: int) -> None:
    _non_negative(ctx, self, "order", value)


@api("VM.set_domain_type")
def set_domain_type(ctx: Context, self: str, value: str) -> None:
    get_vm(ctx, self)
    if value == "unspecified":
        raise XapiFailure("INVALID_VALUE", "domain_type", value)
    ctx.store.update(self, {"domain_type": value,
                            "HVM_boot_policy": "BIOS order" if value == "hvm" else ""})


@api("VM.set_HVM_boot_policy")
def set_HVM_boot_policy(ctx: Context, self: str, value: str) -> None:
    get_vm(ctx, self)
    ctx.store.update(self, {"domain_type": "hvm" if value else "pv", "HVM_boot_policy": value})


@api("VM.set_has_vendor_device")
def set_has_vendor_device(ctx: Context, self: str, value: bool) -> None:
    store = ctx.store
    with ctx.lock:
        row = get_vm(ctx, self)
        if row["power_state"] != "Halted":
            raise XapiFailure("VM_BAD_POWER_STATE", self, "halted", row["power_state"].lower())
        changes: dict[str, Any] = {"has_vendor_device": value}
        if value and int(row["hardware_platform_version"]) < 1:
            changes["hardware_platform_version"] = 1
        store.update(self, changes)


@api("VM.set_actions_after_crash")
def set_actions_after_crash(ctx: Context, self: str, value: str) -> None:
    get_vm(ctx, self)
    ctx.store.update(self, {"actions_after_crash": value})


@api("VM.set_suspend_VDI")
def set_suspend_VDI(ctx: Context, self: str, value: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = get_vm(ctx, self)
        if row["power_state"] != "Suspended":
            raise XapiFailure("VM_BAD_POWER_STATE", self, "suspended", row["power_state"].lower())
        vdi = store.get(value, "VDI")
        if vdi["type"] == "cbt_metadata":
            raise XapiFailure("VDI_INCOMPATIBLE_TYPE", self, "CBT metadata")
        store.update(self, {"suspend_VDI": value})


# ============================================================================ create

@api("VM.create")
def create(ctx: Context, args: dict[str, Any]) -> str:
    """Xapi_vm.create: a Halted VM (or Suspended, when given a suspend image, boot record
    and CPU flags) with fresh metrics, a mac_seed, and the computed memory overhead."""
    store = ctx.store
    for fname, value in args.items():
        f = ctx.dm.classes["VM"].fields[fname]
        if f.type.kind == "ref" and value != NULL_REF and not store.exists(value):
            raise XapiFailure("HANDLE_INVALID", f.type.name, value)
    oc = dict(args.get("other_config", {}))
    if "mac_seed" not in oc:
        oc = {"mac_seed": store.new_uuid(), **oc}
    requested = args.get("power_state", "Halted")
    suspended = requested == "Suspended"
    with ctx.lock:
        ref = store.new_ref()
        if suspended and (not args.get("last_boot_CPU_flags") or not args.get("last_booted_record")
                          or args.get("suspend_VDI", NULL_REF) == NULL_REF):
            raise XapiFailure("VM_BAD_POWER_STATE", ref, "halted", requested.lower())
        dt = args.get("domain_type", "unspecified")
        metrics = store.create("VM_metrics", {
            "VCPUs_utilisation": {"0": 0.0}, "current_domain_type": dt if suspended else "unspecified",
        })
        rec = {k: v for k, v in args.items() if k in store.field_names["VM"]}
        rec.update(
            power_state="Suspended" if suspended else "Halted",
            allowed_operations=[], current_operations={}, blocked_operations={},
            is_default_template=False, is_a_snapshot=False, snapshot_time=EPOCH,
            snapshot_of=NULL_REF, parent=NULL_REF, snapshot_info={}, snapshot_metadata="",
            transportable_snapshot_id="", resident_on=NULL_REF,
            scheduled_to_be_resident_on=NULL_REF, memory_overhead=0,
            suspend_VDI=args.get("suspend_VDI", NULL_REF) if suspended else NULL_REF,
            other_config=oc, domid=-1, domarch="", is_control_domain=False,
            metrics=metrics, guest_metrics=NULL_REF,
            last_booted_record=args.get("last_booted_record", "") if suspended else "",
            last_boot_CPU_flags=args.get("last_boot_CPU_flags", {}) if suspended else {},
            blobs={}, bios_strings={}, protection_policy=NULL_REF,
            is_snapshot_from_vmpp=False, snapshot_schedule=NULL_REF, is_vmss_snapshot=False,
            requires_reboot=False, uuid="",
            domain_type=dt if dt != "unspecified" else
            ("hvm" if args.get("HVM_boot_policy", "") else "pv"),
        )
        rec = {k: v for k, v in rec.items() if k in store.field_names["VM"]}
        store.create("VM", rec, ref=ref)
        row = store.get(ref, "VM")
        changes: dict[str, Any] = {"memory_overhead": memory_overhead(row)}
        if row["has_vendor_device"] and int(row["hardware_platform_version"]) < 1:
            changes["hardware_platform_version"] = 1
        store.update(ref, changes)
    return ref


# ============================================================================ queries

@api("VM.get_allowed_VBD_devices")
def get_allowed_VBD_devices(ctx: Context, vm: str) -> list[str]:
    """Xapi_vm.get_allowed_VBD_devices: the disk numbers of
    Xapi_vm_helpers.allowed_VBD_devices ~_type:`Disk (0..254, 0..255 for a PV control
    domain) less every device any VBD's device or userdevice names, read both as HVM
    and as PV (Device_number.of_string: "3", "xvdd" and "hdd" all take 3; "sdd" is a
    SCSI device, none of these)."""
    with ctx.lock:
        get_vm(ctx, vm)
        return [str(d[1]) for d in allowed_vbd_devices(ctx.store, vm, "Disk")]


@api("VM.get_allowed_VIF_devices")
def get_allowed_VIF_devices(ctx: Context, vm: str) -> list[str]:
    with ctx.lock:
        return allowed_vif_devices(ctx.store, get_vm(ctx, vm))


@api("VM.get_boot_record")
def get_boot_record(ctx: Context, self: str) -> Row:
    get_vm(ctx, self)
    with vm_operation(ctx, self, "get_boot_record"):
        return ctx.store.get(self, "VM")


@api("VM.get_cooperative")
def get_cooperative(ctx: Context, self: str) -> bool:
    get_vm(ctx, self)
    return True


@api("VM.send_sysrq")
def send_sysrq(ctx: Context, vm: str, key: str) -> None:
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "send_sysrq"):
        raise XapiFailure("NOT_IMPLEMENTED", "send_sysrq")


@api("VM.send_trigger")
def send_trigger(ctx: Context, vm: str, trigger: str) -> None:
    get_vm(ctx, vm)
    with vm_operation(ctx, vm, "send_trigger"):
        raise XapiFailure("NOT_IMPLEMENTED", "send_trigger")
