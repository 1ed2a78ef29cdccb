"""Where the VM behaviour meets the storage behaviour, over both wire protocols
(the official XenAPI client over XML-RPC, and JSON-RPC 2.0 from tests/jsonrpc.py).

Sources (xapi-project/xen-api):
* ocaml/xapi/message_forwarding.ml, module VM: ``with_vbds_marked`` / ``mark_vbds``
  (each VBD checked for ``attach`` with Xapi_vbd_helpers.assert_operation_valid and
  marked, retried under Helpers.Policy.fail_quickly), ``with_vifs_marked`` /
  ``mark_vifs`` ("Failed to lock all VIFs"), which calls mark which devices (start,
  start_on, clean_reboot, hard_reboot: VBDs and VIFs; resume, resume_on: VBDs), and
  ``update_vbd_operations`` after every power operation.
* ocaml/xapi/xapi_vbd_helpers.ml ``valid_operations``: the sharing checks (VDI_IN_USE,
  VDI_READONLY) that assert_operation_valid runs and update_allowed_operations leaves
  out; ocaml/xapi/xapi_vdi.ml ``check_operation_error`` for the VDIs.
* ocaml/xapi/xapi_xenops.ml: ``MD.of_vbd`` (Device_number.of_string ~hvm, else
  INVALID_DEVICE), ``update_vbd`` (device name, currently_attached, VBD and VDI
  allowed_operations), ``suspend`` (VDI.create of the image, SR_BACKEND_FAILURE_44 ->
  SR_SUSPEND_SPACE_INSUFFICIENT); ocaml/xapi-idl/xen/device_number.ml.
* ocaml/xapi/xapi_vm.ml ``provision`` and ocaml/xapi/xapi_templates.ml ``create_disk``
  (SR.get_by_uuid, VDI.create, VBD.create, VDI.set_name_label; only failures after
  pre_install are cleaned up); ocaml/xapi/xapi_vm_clone.ml ``clone_single_vdi``
  (VDI.clone/copy/snapshot go to the SM driver).
* ocaml/xapi/xapi_vm_helpers.ml ``allowed_VBD_devices`` / ``all_used_VBD_devices``.
* xapi-project/sm: vhdutil.validate_and_round_vhd_size (2 MiB blocks),
  LVHDSR._ensureSpaceAvailable (SRNoSpace, code 44).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.sim import test_vm_support as S
from tests.sim.test_vm_support import Api, GiB, MiB, num
from xsctl.sim import Simulator
from xsctl.sim.handlers import vm_devices as vmh
from xsctl.sim.handlers.vbd import vbd_table
from xsctl.sim.handlers.vdi import VDI_ALLOWED, vdi_error

sim_fixture = S.sim_fixture
api_fixture = S.api_fixture

NULL = "OpaqueRef:NULL"
NO_SPACE = ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]


# ---------------------------------------------------------------- helpers


def vbd_record(vm: str, vdi: str, userdevice: str = "autodetect", **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False, "mode": "RW",
        "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    rec.update(over)
    return rec


def vdi_record(sr: str, size: int, label: str = "extra") -> dict[str, Any]:
    return {"name_label": label, "name_description": "", "SR": sr, "virtual_size": size,
            "type": "user", "sharable": False, "read_only": False, "other_config": {}}


def disk_of(api: Api, vm: str) -> tuple[str, str]:
    """(VBD, VDI) of the VM's disk on userdevice 0."""
    for vbd in api("VM.get_VBDs", vm):
        if api("VBD.get_userdevice", vbd) == "0":
            return str(vbd), str(api("VBD.get_VDI", vbd))
    raise AssertionError(vm)


def local_lvm(api: Api) -> str:
    return str(next(s for s in api("SR.get_by_name_label", "Local storage")
                    if api("SR.get_type", s) == "lvm"))


def fill(sim: Simulator, sr: str, room: int = GiB) -> None:
    """Leave only ``room`` bytes free on ``sr`` (the storage under it is full)."""
    with sim.store.lock:
        row = sim.store.get(sr, "SR")
        sim.store.update(sr, {"physical_size": int(row["physical_utilisation"]) + room})


def storage_rules(sim: Simulator, cls: str, ref: str) -> set[str]:
    """What the storage rules allow now: Xapi_vbd_helpers.valid_operations without the
    sharing checks (update_allowed_operations), Xapi_vdi.check_operation_error per op."""
    store = sim.store
    with store.lock:
        row = store.get(ref, cls)
        if cls == "VBD":
            table = vbd_table(store, ref, row, expensive=False)
            return {op for op, err in table.items() if err is None}
        return {op for op in VDI_ALLOWED
                if vdi_error(store, ref, row, op) is None}


def assert_consistent(api: Api, sim: Simulator) -> None:
    """Every VBD and VDI in the pool, read over the wire: no operation left marked, and
    allowed_operations what the storage rules compute from the records as they are."""
    for cls in ("VBD", "VDI"):
        for ref, rec in api(f"{cls}.get_all_records").items():
            assert rec["current_operations"] == {}, (cls, ref, rec["current_operations"])
            assert set(rec["allowed_operations"]) == storage_rules(sim, cls, ref), (
                cls, rec.get("name_label", rec.get("userdevice")), rec["allowed_operations"])


def disk_ops(api: Api, vm: str) -> tuple[set[str], set[str]]:
    vbd, vdi = disk_of(api, vm)
    return set(api("VBD.get_allowed_operations", vbd)), set(api("VDI.get_allowed_operations", vdi))


# Written out from xapi_vbd_helpers.ml valid_operations for a read-write Disk VBD:
# not Running -> plug/unplug/unplug_force (and pause/unpause unless Paused) are
# VM_BAD_POWER_STATE; Running and attached -> plug is DEVICE_ALREADY_ATTACHED; a disk
# is no removable medium -> insert/eject are VBD_NOT_REMOVABLE_MEDIA.
VBD_HALTED = {"attach"}
VBD_PAUSED = {"attach", "pause", "unpause"}
VBD_RUNNING = {"attach", "unplug", "unplug_force", "pause", "unpause"}
# xapi_vdi.ml check_operation_error on an NFS VDI (its SM has no VDI_RESIZE_ONLINE):
# attached read-write, only the live operations (clone, snapshot) remain.
VDI_DETACHED = {"clone", "copy", "resize", "snapshot", "destroy", "forget", "update",
                "generate_config"}
VDI_ATTACHED = {"clone", "snapshot"}


def host_other_than(api: Api, host: str) -> str:
    return str(next(h for h in sorted(api("host.get_all")) if h != host))


# ---------------------------------------------------------------- consistency


def test_power_transitions_keep_vbd_and_vdi_operations_consistent(api: Api, sim: Simulator) -> None:
    """message_forwarding.ml update_vbd_operations after start, start_on, clean/hard
    reboot, suspend, resume, resume_on, pause, unpause, pool_migrate and every shutdown,
    and xapi_xenops.ml update_vbd as devices come and go (all a checkpoint has): at the
    end of each transition
    no VBD or VDI keeps an operation, and every allowed_operations in the pool is what
    the storage rules compute (and, for the VM's own disk, what xapi_vbd_helpers.ml and
    xapi_vdi.ml give in that power state)."""
    vm = api.vm("web-staging")  # HVM, a disk on NFS, an empty CD drive

    def step(state: str, vbd_ops: set[str], vdi_ops: set[str], agent: bool = False) -> None:
        if agent:  # the guest agent's report (hotplug support) changes the VBD rules
            api.wait_agent(vm)
        assert api("VM.get_power_state", vm) == state
        assert api("VM.get_current_operations", vm) == {}
        assert disk_ops(api, vm) == (vbd_ops, vdi_ops)
        assert_consistent(api, sim)

    step("Halted", VBD_HALTED, VDI_DETACHED)
    api("VM.start", vm, False, False)
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    api("VM.clean_reboot", vm)
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    api("VM.hard_reboot", vm)
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    api("VM.pause", vm)
    step("Paused", VBD_PAUSED, VDI_ATTACHED)
    api("VM.unpause", vm)
    step("Running", VBD_RUNNING, VDI_ATTACHED)
    api("VM.suspend", vm)
    step("Suspended", VBD_HALTED, VDI_DETACHED)
    api("VM.resume", vm, False, False)
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    here = api("VM.get_resident_on", vm)
    there = host_other_than(api, here)
    api("VM.pool_migrate", vm, there, {"live": "true"})
    assert api("VM.get_resident_on", vm) == there
    step("Running", VBD_RUNNING, VDI_ATTACHED)
    api("VM.suspend", vm)
    api("VM.resume_on", vm, here, False, False)
    assert api("VM.get_resident_on", vm) == here
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    api("VM.checkpoint", vm, "before-shutdown")  # suspend and resume in place
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    api("VM.clean_shutdown", vm)
    step("Halted", VBD_HALTED, VDI_DETACHED)
    api("VM.start_on", vm, there, False, False)
    step("Running", VBD_RUNNING, VDI_ATTACHED, agent=True)
    api("VM.hard_shutdown", vm)
    step("Halted", VBD_HALTED, VDI_DETACHED)
    api("VM.start", vm, True, False)  # start paused
    step("Paused", VBD_PAUSED, VDI_ATTACHED)
    api("VM.shutdown", vm)
    step("Halted", VBD_HALTED, VDI_DETACHED)
    api("VM.start", vm, False, False)
    api.wait_agent(vm)  # an HVM guest suspends once its drivers are up
    api("VM.suspend", vm)
    api("VM.hard_shutdown", vm)  # a suspended VM: the image goes
    step("Halted", VBD_HALTED, VDI_DETACHED)


def wait_marked(api: Api, refs: list[str], cls: str) -> dict[str, Any]:
    def marked() -> dict[str, Any] | None:
        ops = {r: api(f"{cls}.get_current_operations", r) for r in refs}
        return ops if all(ops.values()) else None

    found: dict[str, Any] = wait_for(marked, timeout=5.0, interval=0.01)
    return found


@pytest.mark.parametrize("call", ["start", "clean_reboot", "resume"])
def test_devices_are_marked_attach_while_the_vm_operation_runs(
        api: Api, sim: Simulator, call: str) -> None:
    """with_vbds_marked ~op:`attach (and with_vifs_marked for start and the reboots,
    not for resume): every VBD has {task: attach} in current_operations while the
    operation runs, so their VDIs allow nothing (xapi_vdi.ml: another operation in
    progress on a VBD); afterwards all is released and consistent again."""
    vm = api.vm({"start": "web-staging", "clean_reboot": "web-01",
                 "resume": "k8s-node-03"}[call])
    args: tuple[Any, ...] = (False, False) if call != "clean_reboot" else ()
    vbds = list(api("VM.get_VBDs", vm))
    vifs = list(api("VM.get_VIFs", vm))
    _, vdi = disk_of(api, vm)
    sim.op_time = 0.25  # long enough to look at the marks
    task = api(f"Async.VM.{call}", vm, *args)
    marks = wait_marked(api, vbds, "VBD")
    assert all(m == {task: "attach"} for m in marks.values())
    assert api("VM.get_current_operations", vm) == {task: call}
    assert api("VDI.get_allowed_operations", vdi) == []
    for vbd in vbds:
        assert set(api("VBD.get_allowed_operations", vbd)) == storage_rules(sim, "VBD", vbd)
    vif_marks = [api("VIF.get_current_operations", v) for v in vifs]
    if call == "resume":
        assert vif_marks == [{} for _ in vifs]
    else:
        assert vif_marks == [{task: "attach"} for _ in vifs]
    assert api.wait_task(task)["status"] == "success"
    assert api("VM.get_power_state", vm) == "Running"
    sim.op_time = 0.05
    api.wait_agent(vm)
    for v in vifs:
        assert api("VIF.get_current_operations", v) == {}
    assert_consistent(api, sim)


# ---------------------------------------------------------------- sharing checks at start


def test_start_refuses_a_disk_another_running_vm_writes(api: Api, sim: Simulator) -> None:
    """mark_vbds runs the full VBD check (assert_operation_valid, with the sharing
    checks): a VDI attached read-write to a running VM is VDI_IN_USE [vdi] for any
    other VBD, read-only or not, and a read-write VBD cannot attach a VDI a running VM
    reads. The VM stays Halted and nothing stays marked. VBD.assert_attachable is the
    same check. Once the writer stops, the start goes through."""
    writer = api.vm("web-01")
    _, vdi = disk_of(api, writer)
    vm = api.vm("web-staging")
    extra = api("VBD.create", vbd_record(vm, vdi, mode="RO"))  # no sharing check at create
    assert api.fail("VBD.assert_attachable", extra) == ["VDI_IN_USE", vdi]
    assert api.fail("VM.start", vm, False, False) == ["VDI_IN_USE", vdi]
    assert api("VM.get_power_state", vm) == "Halted"
    assert api("VM.get_current_operations", vm) == {}
    for vif in api("VM.get_VIFs", vm):
        assert api("VIF.get_current_operations", vif) == {}
    assert_consistent(api, sim)
    api("VM.hard_shutdown", writer)
    api("VM.start", vm, False, False)
    assert api("VBD.get_currently_attached", extra) is True
    # now web-staging reads it: web-01 wants to write it
    assert api.fail("VM.start", writer, False, False) == ["VDI_IN_USE", vdi]
    assert api("VM.get_power_state", writer) == "Halted"
    api("VM.hard_shutdown", vm)
    api("VM.start", writer, False, False)
    assert_consistent(api, sim)


def test_start_refuses_a_read_write_vbd_of_a_read_only_vdi(api: Api, sim: Simulator) -> None:
    """A Disk VBD made read-only on an ISO (read_only) VDI and switched to RW while
    halted (Xapi_vbd.set_mode only checks the power state): the attach check gives
    VDI_READONLY [vdi] at start."""
    vm = api.vm("web-staging")
    iso_sr = api("SR.get_by_name_label", "ISO library")[0]
    vdi = next(v for v in api("SR.get_VDIs", iso_sr) if not api("VDI.get_VBDs", v))
    assert api("VDI.get_read_only", vdi) is True
    vbd = api("VBD.create", vbd_record(vm, vdi, mode="RO"))
    api("VBD.set_mode", vbd, "RW")
    assert api.fail("VM.start", vm, False, False) == ["VDI_READONLY", vdi]
    assert api("VM.get_power_state", vm) == "Halted"
    assert_consistent(api, sim)
    api("VBD.set_mode", vbd, "RO")
    # read-only disks of an HVM guest are refused only by VBD.plug, not at start
    api("VM.start", vm, False, False)
    assert api("VBD.get_currently_attached", vbd) is True


def test_start_waits_for_a_disk_busy_with_another_operation(
        api: Api, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A VDI in another operation (here VDI.resize) makes the attach check fail with
    OTHER_OPERATION_IN_PROGRESS, which with_vbds_marked retries (fail_quickly: every
    2 s for 2 minutes): the start waits, cancellable, and goes on when the disk is
    free. Past the wait the error itself is returned; task.cancel ends the wait with
    TASK_CANCELLED."""
    vm = api.vm("web-staging")
    _, vdi = disk_of(api, vm)
    size = num(api("VDI.get_virtual_size", vdi))
    sim.op_time = 1.0  # the resize takes 0.3 s
    resize = api("Async.VDI.resize", vdi, size + 2 * MiB)
    wait_for(lambda: api("VDI.get_current_operations", vdi), interval=0.01)
    start = api("Async.VM.start", vm, False, False)
    # the start has marked the VM and waits for the disk
    wait_for(lambda: api("VM.get_current_operations", vm) == {start: "start"})
    assert api("task.get_status", start) == "pending"
    assert api("task.get_allowed_operations", start) == ["cancel"]
    assert api("VM.get_power_state", vm) == "Halted"
    assert all(api("VBD.get_current_operations", v) == {} for v in api("VM.get_VBDs", vm))
    assert api.wait_task(resize)["status"] == "success"
    sim.op_time = 0.05
    assert api.wait_task(start)["status"] == "success"
    assert api("VM.get_power_state", vm) == "Running"
    api("VM.hard_shutdown", vm)

    monkeypatch.setattr(vmh, "VBD_LOCK_WAIT", 0.2)
    sim.op_time = 2.0  # the resize takes 0.6 s
    resize = api("Async.VDI.resize", vdi, size + 4 * MiB)
    wait_for(lambda: api("VDI.get_current_operations", vdi), interval=0.01)
    assert api.fail("VM.start", vm, False, False) == [
        "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, "resize", resize]
    monkeypatch.setattr(vmh, "VBD_LOCK_WAIT", 120.0)
    start = api("Async.VM.start", vm, False, False)
    wait_for(lambda: api("VM.get_current_operations", vm) == {start: "start"})
    api("task.cancel", start)
    rec = api.wait_task(start)
    assert (rec["status"], rec["error_info"]) == ("cancelled", ["TASK_CANCELLED", start])
    api.wait_task(resize)
    sim.op_time = 0.05
    assert api("VM.get_power_state", vm) == "Halted"
    assert_consistent(api, sim)


def test_start_with_a_busy_vif_fails_at_once(api: Api, sim: Simulator) -> None:
    """mark_vifs drops a VIF whose attach check fails (map_with_drop) and then raises
    OPERATION_NOT_ALLOWED ["Failed to lock all VIFs"], which is no
    OTHER_OPERATION_IN_PROGRESS, so nothing waits; the VBDs marked before are released."""
    vm = api.vm("web-staging")
    [vif] = api("VM.get_VIFs", vm)
    with sim.store.lock:  # another task is working on the VIF
        sim.store.set_map_key(vif, "current_operations", "OpaqueRef:other", "plug")
    t0 = time.monotonic()
    assert api.fail("VM.start", vm, False, False) == [
        "OPERATION_NOT_ALLOWED", "Failed to lock all VIFs"]
    assert time.monotonic() - t0 < 1.0
    assert api("VM.get_power_state", vm) == "Halted"
    assert_consistent(api, sim)


# ---------------------------------------------------------------- device names


def test_device_names_after_start_follow_device_number(api: Api, sim: Simulator) -> None:
    """xapi_xenops.ml MD.of_vbd reads each userdevice with Device_number.of_string
    ~hvm (the VM's domain_type) and update_vbd writes to_linux_device back as the VBD's
    device: "0" -> xvda, "xvdc" stays, "hdb" (IDE) -> xvdb on an HVM guest; "1" ->
    xvdb on a PV guest. A userdevice VBD.create accepted but no device number ("-1")
    is INVALID_DEVICE ["-1"] at start."""
    vm = api.vm("web-staging")
    nfs = api("SR.get_by_name_label", "NFS storage")[0]
    for dev in ("xvdc", "hdb"):
        vdi = api("VDI.create", vdi_record(nfs, GiB, dev))
        api("VBD.create", vbd_record(vm, vdi, dev))
    api("VM.start", vm, False, False)
    devices = {api("VBD.get_userdevice", v): api("VBD.get_device", v)
               for v in api("VM.get_VBDs", vm)}
    assert devices == {"0": "xvda", "3": "xvdd", "xvdc": "xvdc", "hdb": "xvdb"}
    api("VM.hard_shutdown", vm)

    pv = api.vm("dev-sandbox")
    api("VM.set_HVM_boot_policy", pv, "")  # domain_type pv
    vdi = api("VDI.create", vdi_record(nfs, GiB, "pv"))
    api("VBD.create", vbd_record(pv, vdi, "1"))
    api("VM.start", pv, False, False)
    devices = {api("VBD.get_userdevice", v): api("VBD.get_device", v)
               for v in api("VM.get_VBDs", pv)}
    assert devices["1"] == "xvdb" and devices["0"] == "xvda"
    api("VM.hard_shutdown", pv)

    vdi = api("VDI.create", vdi_record(nfs, GiB, "odd"))
    odd = api("VBD.create", vbd_record(vm, vdi, "-1"))  # valid_device: any integer
    assert api.fail("VM.start", vm, False, False) == ["INVALID_DEVICE", "-1"]
    assert api("VM.get_power_state", vm) == "Halted"
    api("VBD.destroy", odd)
    assert_consistent(api, sim)


def test_allowed_vbd_devices_compare_device_numbers(api: Api) -> None:
    """allowed_VBD_devices: an HVM guest's disks 0-3 are IDE (Device_number
    .of_disk_number), 4-254 Xen; all_used_VBD_devices parses each device and userdevice
    as HVM and as PV and the two are compared as device numbers. So "hdb" takes 1 and
    "xvde" takes 4, while "xvdb" (Xen disk 1, not IDE disk 1) and "sdc" (SCSI) take
    none; VBD.create expands a number to both readings, so "1" then clashes with
    "xvdb"."""
    vm = api.vm("web-staging")
    nfs = api("SR.get_by_name_label", "NFS storage")[0]
    for dev in ("hdb", "xvde", "sdc"):
        api("VBD.create", vbd_record(vm, api("VDI.create", vdi_record(nfs, GiB, dev)), dev))
    allowed = api("VM.get_allowed_VBD_devices", vm)
    assert allowed[:3] == ["2", "5", "6"]  # 0 (disk) and 3 (CD) are taken too
    other = api.vm("dev-sandbox")  # a disk on 0, a CD drive on 3
    api("VBD.create", vbd_record(other, api("VDI.create", vdi_record(nfs, GiB, "b")), "xvdb"))
    assert "1" in api("VM.get_allowed_VBD_devices", other)
    vdi = api("VDI.create", vdi_record(nfs, GiB, "one"))
    assert api.fail("VBD.create", vbd_record(other, vdi, "1")) == ["DEVICE_ALREADY_EXISTS", "1"]


# ---------------------------------------------------------------- disks by the SM driver


def template_with(api: Api, name: str, xml: str) -> str:
    """A clone of a default template whose other_config:disks is ``xml``."""
    new = str(api("VM.clone", api.vm("Debian Bookworm 12"), name))
    api("VM.remove_from_other_config", new, "disks")
    api("VM.add_to_other_config", new, "disks", xml)
    return new


def test_provision_makes_disks_through_vdi_create_and_vbd_create(api: Api) -> None:
    """create_disk: VDI.create on the SR the XML names, so the VHD driver rounds the
    size up to 2 MiB blocks and records vdi_type; VBD.create on the XML's device, so
    "autodetect" becomes the first free number; each VDI is named after its VBD's
    userdevice and hinted with the VM's uuid."""
    nfs = api("SR.get_by_name_label", "NFS storage")[0]
    uuid = api("SR.get_uuid", nfs)
    new = template_with(api, "rounded", (
        f'<provision><disk device="0" size="1000000001" sr="{uuid}" bootable="true" '
        f'type="system"/><disk device="autodetect" size="{GiB}" sr="{uuid}" '
        f'bootable="false" type="user"/></provision>'))
    api("VM.provision", new)
    rec = api.record("VM", new)
    assert not rec["is_a_template"] and "disks" not in rec["other_config"]
    disks = {}
    for vbd in rec["VBDs"]:
        vrec = api.record("VBD", vbd)
        if vrec["type"] == "Disk":
            disks[vrec["userdevice"]] = (vrec, api.record("VDI", vrec["VDI"]))
    assert set(disks) == {"0", "1"}
    vbd0, vdi0 = disks["0"]
    assert num(vdi0["virtual_size"]) == 477 * 2 * MiB  # 1000000001 rounded up
    assert vdi0["sm_config"] == {"vmhint": rec["uuid"], "vdi_type": "vhd"}
    assert (vdi0["name_label"], vdi0["type"], vbd0["unpluggable"]) == ("0", "system", False)
    vbd1, vdi1 = disks["1"]
    assert (vdi1["name_label"], vdi1["type"], vbd1["unpluggable"]) == ("1", "user", True)
    assert num(vdi1["virtual_size"]) == GiB


def test_provision_leaves_what_it_made_before_a_failure(api: Api, sim: Simulator) -> None:
    """Xapi_vm.provision cleans up only after pre_install: when a disk's VDI.create
    fails (a full thick SR: the driver's SR_BACKEND_FAILURE_44), the disks made before
    it stay with their VBDs, the VM stays converted and other_config:disks stays; when
    VBD.create fails (DEVICE_ALREADY_EXISTS), its new VDI, still unnamed, stays too."""
    nfs_uuid = api("SR.get_uuid", api("SR.get_by_name_label", "NFS storage")[0])
    lvm = local_lvm(api)
    fill(sim, lvm)
    new = template_with(api, "half", (
        f'<provision><disk device="0" size="{GiB}" sr="{nfs_uuid}" bootable="true" '
        f'type="system"/><disk device="1" size="{4 * GiB}" sr="{api("SR.get_uuid", lvm)}" '
        f'bootable="false" type="user"/></provision>'))
    vdis = set(api("VDI.get_all"))
    assert api.fail("VM.provision", new) == NO_SPACE
    rec = api.record("VM", new)
    assert rec["is_a_template"] is False and "disks" in rec["other_config"]
    [left] = set(api("VDI.get_all")) - vdis
    assert api("VDI.get_name_label", left) == "0"
    assert [api("VBD.get_VDI", v) for v in rec["VBDs"]
            if api("VBD.get_type", v) == "Disk"] == [left]

    clash = template_with(api, "clash", (
        f'<provision><disk device="0" size="{GiB}" sr="{nfs_uuid}" bootable="true"/>'
        f'<disk device="0" size="{GiB}" sr="{nfs_uuid}" bootable="false"/></provision>'))
    vdis = set(api("VDI.get_all"))
    assert api.fail("VM.provision", clash) == ["DEVICE_ALREADY_EXISTS", "0"]
    made = set(api("VDI.get_all")) - vdis
    assert sorted(api("VDI.get_name_label", v) for v in made) == ["", "0"]
    assert len([v for v in api("VM.get_VBDs", clash) if api("VBD.get_type", v) == "Disk"]) == 1


def test_snapshot_and_clone_on_a_full_sr_fail_as_the_driver(api: Api, sim: Simulator) -> None:
    """clone_single_vdi calls VDI.snapshot / VDI.clone, so a full SR fails as its SM
    driver does (SR_BACKEND_FAILURE_44), and safe_clone_disks leaves nothing behind."""
    vm = api.vm("dns-01")  # running, its disk on the thick local LVM SR
    _, vdi = disk_of(api, vm)
    sr = api("VDI.get_SR", vdi)
    fill(sim, sr, room=MiB)
    vms, vdis = set(api("VM.get_all")), set(api("VDI.get_all"))
    assert api.fail("VM.snapshot", vm, "snap", []) == NO_SPACE
    api("VM.hard_shutdown", vm)
    assert api.fail("VM.clone", vm, "twin") == NO_SPACE
    assert (set(api("VM.get_all")), set(api("VDI.get_all"))) == (vms, vdis)
    assert_consistent(api, sim)
