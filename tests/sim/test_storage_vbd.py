"""VBD behaviour over real HTTPS, through the official XenAPI client (XML-RPC) and
JSON-RPC. Sources: xapi-project/xen-api ocaml/xapi/xapi_vbd.ml (create, plug, insert,
eject), ocaml/xapi/xapi_vbd_helpers.ml (valid_operations, destroy),
ocaml/xapi/message_forwarding.ml (VBD marking, halted insert/eject),
ocaml/xapi/xapi_xenops.ml (what plug/unplug/insert/eject change)."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.sim import storage_support as support
from tests.sim.storage_support import (
    Api,
    GiB,
    by_name,
    cd_of,
    disk_of,
    sr_named,
    vbd_record,
    vdi_record,
)
from xsctl.sim import Simulator

sim = support.sim  # fixture: the storage tests' pool
apis = support.apis  # fixture: both clients
stop_sims_at_module_end = support.stop_sims_at_module_end  # autouse fixture

NULL = "OpaqueRef:NULL"


def new_disk(api: Api, size: int = GiB) -> str:
    return str(api("VDI.create", vdi_record("scratch", sr_named(api, "NFS storage"), size)))


# ---------------------------------------------------------------- VBD.create


def test_create_checks_in_xapi_order(apis: list[Api]) -> None:
    """xapi_vbd.ml create: VDI type, CD mode, empty non-CD, RW on RO VDI, device."""
    for api in apis:
        vm = by_name(api, "VM", "web-staging")
        disk = new_disk(api)
        iso = api("VDI.get_by_name_label", "alpine-virt-3.20.3-x86_64.iso")[0]
        assert api.fails("VBD.create", vbd_record(vm, disk, type="CD")) == [
            "VBD_CDS_MUST_BE_READONLY"]
        assert api.fails("VBD.create", vbd_record(vm, NULL, empty=True)) == [
            "VBD_NOT_REMOVABLE_MEDIA", "in constructor"]
        assert api.fails("VBD.create", vbd_record(vm, iso)) == ["VDI_READONLY", iso]
        assert api.fails("VBD.create", vbd_record(vm, disk, userdevice="bogus")) == [
            "INVALID_DEVICE", "bogus"]
        assert api.fails("VBD.create", vbd_record(vm, NULL)) == [
            "HANDLE_INVALID", "VDI", NULL]
        assert api.fails("VBD.create", vbd_record("OpaqueRef:nope", disk))[0] == "HANDLE_INVALID"


def test_create_refuses_ha_statefile_vdi(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd.ml create: VDI_INCOMPATIBLE_TYPE [vdi, type] for statefiles,
    redo logs and CBT metadata."""
    for api in apis:
        vm = by_name(api, "VM", "web-staging")
        for typ in ("ha_statefile", "redo_log"):
            vdi = api("VDI.create", vdi_record(typ, sr_named(api, "NFS storage"), GiB, type=typ))
            assert api.fails("VBD.create", vbd_record(vm, vdi)) == [
                "VDI_INCOMPATIBLE_TYPE", vdi, typ]


def test_create_device_numbers(apis: list[Api]) -> None:
    """xapi_vbd.ml create: "autodetect" takes the first free device; a device that
    clashes under any spelling ("1", "xvdb", "hdb") is DEVICE_ALREADY_EXISTS."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-staging")  # disk at 0, CD at 3
    a = xml("VBD.create", vbd_record(vm, new_disk(xml)))
    assert xml("VBD.get_userdevice", a) == "1"
    b = js("VBD.create", vbd_record(vm, new_disk(js)))
    assert js("VBD.get_userdevice", b) == "2"
    c = js("VBD.create", vbd_record(vm, new_disk(js)))
    assert js("VBD.get_userdevice", c) == "4"  # 3 is the CD drive
    for api, dev in ((xml, "1"), (js, "xvdb"), (xml, "hdb"), (js, "xvdd")):
        assert api.fails("VBD.create", vbd_record(vm, new_disk(api), userdevice=dev)) == [
            "DEVICE_ALREADY_EXISTS", dev]
    d = xml("VBD.create", vbd_record(vm, new_disk(xml), userdevice="xvdz"))
    assert xml("VBD.get_record", d)["userdevice"] == "xvdz"


def test_create_on_halted_vm_is_detached(apis: list[Api]) -> None:
    """xapi_vbd.ml create: device and currently_attached are kept only for a
    suspended VM; VM.VBDs and VDI.VBDs gain the new VBD."""
    for api in apis:
        vm = by_name(api, "VM", "web-staging")
        disk = new_disk(api)
        vbd = api("VBD.create", vbd_record(vm, disk, device="xvdq", currently_attached=True))
        rec = api("VBD.get_record", vbd)
        assert (rec["device"], rec["currently_attached"], rec["empty"]) == ("", False, False)
        assert rec["unpluggable"] is True  # the datamodel default
        assert vbd in api("VM.get_VBDs", vm)
        assert api("VDI.get_VBDs", disk) == [vbd]
        assert rec["allowed_operations"] == ["attach"]


def test_create_empty_cd(apis: list[Api]) -> None:
    """protocol: an empty CD is VDI OpaqueRef:NULL, empty=true, mode RO."""
    for api in apis:
        vm = by_name(api, "VM", "dev-sandbox")
        vbd = api("VBD.create", vbd_record(vm, NULL, type="CD", mode="RO", empty=True))
        rec = api("VBD.get_record", vbd)
        assert (rec["VDI"], rec["empty"], rec["type"]) == (NULL, True, "CD")
        assert sorted(rec["allowed_operations"]) == ["attach", "insert"]
        api("VBD.destroy", vbd)


def test_create_refused_during_migration(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd.ml create (CA-75697): OTHER_OPERATION_IN_PROGRESS ["VM", vm, op, task]
    while the VM migrates."""
    vm = by_name(apis[0], "VM", "web-01")
    sim.store.set_map_key(vm, "current_operations", "OpaqueRef:migrating", "pool_migrate")
    for api in apis:
        assert api.fails("VBD.create", vbd_record(vm, new_disk(api))) == [
            "OTHER_OPERATION_IN_PROGRESS", "VM", vm, "pool_migrate", "OpaqueRef:migrating"]


def test_create_floppy_on_pv_vm(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd.ml create via Xapi_vm_helpers.allowed_VBD_devices: no floppy on PV."""
    vm = by_name(apis[0], "VM", "dev-sandbox")
    sim.store.update(vm, {"domain_type": "pv"})
    for api in apis:
        assert api.fails("VBD.create", vbd_record(vm, new_disk(api), type="Floppy")) == [
            "NOT_IMPLEMENTED", "VBD of type 'floppy' is not supported on PV domain"]


# ---------------------------------------------------------------- plug / unplug


def test_plug_and_unplug_a_new_disk(apis: list[Api]) -> None:
    """xapi_xenops.ml vbd_plug/vbd_unplug: currently_attached and the device name."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-02")
    vbd = xml("VBD.create", vbd_record(vm, new_disk(xml)))
    assert sorted(xml("VBD.get_allowed_operations", vbd)) == ["attach", "pause", "plug",
                                                             "unpause"]
    xml("VBD.plug", vbd)
    rec = js("VBD.get_record", vbd)
    assert (rec["currently_attached"], rec["device"]) == (True, "xvdb")
    assert sorted(rec["allowed_operations"]) == ["attach", "pause", "unpause", "unplug",
                                                 "unplug_force"]
    assert js.fails("VBD.plug", vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    js("VBD.unplug", vbd)
    assert xml("VBD.get_currently_attached", vbd) is False
    assert xml.fails("VBD.unplug", vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    assert js.fails("VBD.unplug_force", vbd) == ["DEVICE_ALREADY_DETACHED", vbd]
    js("VBD.plug", vbd)
    xml("VBD.unplug_force", vbd)
    assert js("VBD.get_currently_attached", vbd) is False


def test_plug_needs_a_running_vm(apis: list[Api]) -> None:
    """xapi_vbd_helpers.ml valid_operations: VM_BAD_POWER_STATE [vm, "running", actual]."""
    for api in apis:
        for name, state in (("web-staging", "halted"), ("legacy-erp", "suspended"),
                            ("ci-runner-02", "paused")):
            vm, vbd, _ = disk_of(api, name)
            for op in ("plug", "unplug", "unplug_force"):
                assert api.fails(f"VBD.{op}", vbd) == [
                    "VM_BAD_POWER_STATE", vm, "running", state]


def test_unpluggable_false(apis: list[Api]) -> None:
    """xapi_vbd_helpers.ml: VBD_NOT_UNPLUGGABLE [vbd] for unplug and unplug_force."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-03")
    vbd = xml("VBD.create", vbd_record(vm, new_disk(xml), unpluggable=False))
    xml("VBD.plug", vbd)
    assert "unplug" not in js("VBD.get_allowed_operations", vbd)
    for api in apis:
        assert api.fails("VBD.unplug", vbd) == ["VBD_NOT_UNPLUGGABLE", vbd]
        assert api.fails("VBD.unplug_force", vbd) == ["VBD_NOT_UNPLUGGABLE", vbd]


def test_hvm_cd_cannot_be_hotplugged(apis: list[Api]) -> None:
    """xapi_vbd_helpers.ml: on a running HVM guest CDs are inserted or ejected only."""
    vm = by_name(apis[0], "VM", "web-02")
    vbd = apis[0]("VBD.create", vbd_record(vm, NULL, type="CD", mode="RO", empty=True))
    for api in apis:
        assert api.fails("VBD.plug", vbd) == [
            "OPERATION_NOT_ALLOWED",
            "HVM CDROMs cannot be hotplugged/unplugged, only inserted or ejected"]


def test_hvm_guest_without_hotplug_support(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd_helpers.ml: can_use_hotplug_vbd=no refuses, no guest metrics means
    VM_MISSING_PV_DRIVERS [vm]."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-02")
    vbd = xml("VBD.create", vbd_record(vm, new_disk(xml)))
    gm = xml("VM.get_guest_metrics", vm)
    sim.store.update(gm, {"can_use_hotplug_vbd": "no"})
    assert js.fails("VBD.plug", vbd) == [
        "OPERATION_NOT_ALLOWED", "VM states it does not support VBD hotplug."]
    sim.store.update(vm, {"guest_metrics": NULL})
    assert xml.fails("VBD.plug", vbd) == ["VM_MISSING_PV_DRIVERS", vm]


def test_read_only_disk_on_hvm(apis: list[Api]) -> None:
    """xapi_vbd.ml plug (CA-83260): DISK_VBD_MUST_BE_READWRITE_FOR_HVM [vbd]."""
    vm = by_name(apis[0], "VM", "web-02")
    vbd = apis[0]("VBD.create", vbd_record(vm, new_disk(apis[0]), mode="RO"))
    for api in apis:
        assert api.fails("VBD.plug", vbd) == ["DISK_VBD_MUST_BE_READWRITE_FOR_HVM", vbd]
    assert apis[1]("VBD.get_current_operations", vbd) == {}


def test_plug_shared_disk_is_vdi_in_use(apis: list[Api]) -> None:
    """xapi_vbd_helpers.ml sharing checks: a non-sharable VDI attached RW elsewhere is
    VDI_IN_USE [vdi] for plug and attach; VBD.create itself does not check."""
    xml, js = apis
    _, _, vdi = disk_of(xml, "web-01")
    other = by_name(xml, "VM", "web-02")
    vbd = xml("VBD.create", vbd_record(other, vdi))
    assert "plug" in js("VBD.get_allowed_operations", vbd)  # not checked there (CA-20808)
    for api in apis:
        assert api.fails("VBD.plug", vbd) == ["VDI_IN_USE", vdi]
        assert api.fails("VBD.assert_attachable", vbd) == ["VDI_IN_USE", vdi]
    halted = by_name(xml, "VM", "web-staging")
    vbd2 = js("VBD.create", vbd_record(halted, vdi, mode="RO"))
    assert xml.fails("VBD.assert_attachable", vbd2) == ["VDI_IN_USE", vdi]


def test_assert_attachable_ok_and_read_only(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd_helpers.ml assert_attachable: fine for a free disk; RW on a read-only
    VDI is VDI_READONLY [vdi]."""
    xml, js = apis
    _vm, vbd, vdi = disk_of(xml, "web-staging")
    assert xml("VBD.assert_attachable", vbd) == ""
    assert js("VBD.assert_attachable", vbd) is not None
    sim.store.update(vdi, {"read_only": True})
    for api in apis:
        assert api.fails("VBD.assert_attachable", vbd) == ["VDI_READONLY", vdi]


# ---------------------------------------------------------------- insert / eject


def test_insert_and_eject_on_halted_vm(apis: list[Api]) -> None:
    """message_forwarding.ml VBD.insert/eject: a halted VM's drive changes in the
    database only."""
    xml, js = apis
    _, cd = cd_of(xml, "web-staging")
    iso = xml("VDI.get_by_name_label", "alpine-virt-3.20.3-x86_64.iso")[0]
    assert xml.fails("VBD.eject", cd) == ["VBD_IS_EMPTY", cd]
    xml("VBD.insert", cd, iso)
    rec = js("VBD.get_record", cd)
    assert (rec["VDI"], rec["empty"], rec["currently_attached"]) == (iso, False, False)
    assert cd in js("VDI.get_VBDs", iso)
    assert js.fails("VBD.insert", cd, iso) == ["VBD_NOT_EMPTY", cd]
    js("VBD.eject", cd)
    rec = xml("VBD.get_record", cd)
    assert (rec["VDI"], rec["empty"]) == (NULL, True)
    assert cd not in xml("VDI.get_VBDs", iso)


def test_insert_and_eject_on_running_hvm_vm(apis: list[Api]) -> None:
    """xapi_xenops.ml vbd_insert/vbd_eject (HVM): the medium changes, the drive stays
    attached."""
    xml, js = apis
    _, cd = cd_of(xml, "web-02")
    iso = xml("VDI.get_by_name_label", "systemrescue-11.02-amd64.iso")[0]
    assert xml("VBD.get_currently_attached", cd) is True
    js("VBD.insert", cd, iso)
    rec = xml("VBD.get_record", cd)
    assert (rec["VDI"], rec["empty"], rec["currently_attached"]) == (iso, False, True)
    assert sorted(rec["allowed_operations"]) == ["attach", "eject", "pause", "unpause"]
    xml("VBD.eject", cd)
    rec = js("VBD.get_record", cd)
    assert (rec["VDI"], rec["empty"], rec["currently_attached"]) == (NULL, True, True)


def test_insert_eject_errors(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd_helpers.ml: VBD_NOT_REMOVABLE_MEDIA [vbd] on disks; a suspended VM's CD
    is VM_BAD_POWER_STATE [vm, "halted, running", "suspended"]; xapi_vbd.ml
    assert_ok_to_insert: VDI_NOT_MANAGED [vdi]."""
    iso = apis[0]("VDI.get_by_name_label", "alpine-virt-3.20.3-x86_64.iso")[0]
    for api in apis:
        _, disk, _ = disk_of(api, "web-01")
        assert api.fails("VBD.insert", disk, iso) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
        assert api.fails("VBD.eject", disk) == ["VBD_NOT_REMOVABLE_MEDIA", disk]
        vm, cd = cd_of(api, "k8s-node-03")
        assert api.fails("VBD.insert", cd, iso) == [
            "VM_BAD_POWER_STATE", vm, "halted, running", "suspended"]
        _, cd = cd_of(api, "web-staging")
        assert api.fails("VBD.insert", cd, "OpaqueRef:gone") == [
            "HANDLE_INVALID", "VDI", "OpaqueRef:gone"]
    sim.store.update(iso, {"managed": False})
    for api in apis:
        assert api.fails("VBD.insert", cd, iso) == ["VDI_NOT_MANAGED", iso]


def test_async_insert_runs_as_a_task(apis: list[Api]) -> None:
    """Async.VBD.insert: a task whose result is an empty XML-RPC value."""
    for api in apis:
        _, cd = cd_of(api, "web-03")
        iso = api("VDI.get_by_name_label", "AlmaLinux-9.4-x86_64-boot.iso")[0]
        rec = api.run_async("VBD.insert", cd, iso)
        assert (rec["status"], rec["result"]) == ("success", "<value></value>")
        rec = api.run_async("VBD.eject", cd)
        assert rec["status"] == "success"
        rec = api.run_async("VBD.eject", cd)
        assert rec["status"] == "failure"
        assert rec["error_info"] == ["VBD_IS_EMPTY", cd]


# ---------------------------------------------------------------- destroy, set_mode


def test_destroy_attached_is_refused(apis: list[Api]) -> None:
    """xapi_vbd_helpers.ml destroy: OPERATION_NOT_ALLOWED ["VBD '<uuid>' still attached
    to '<vm uuid>'"]; once unplugged it goes, and leaves VM.VBDs and VDI.VBDs."""
    xml, js = apis
    vm, vbd, _vdi = disk_of(xml, "web-01")
    text = (f"VBD '{xml('VBD.get_uuid', vbd)}' still attached to "
            f"'{xml('VM.get_uuid', vm)}'")
    for api in apis:
        assert api.fails("VBD.destroy", vbd) == ["OPERATION_NOT_ALLOWED", text]
    new = js("VBD.create", vbd_record(vm, new_disk(js)))
    xml("VBD.destroy", new)
    assert new not in js("VM.get_VBDs", vm)
    assert js.fails("VBD.get_record", new) == ["HANDLE_INVALID", "VBD", new]
    _halted_vm, halted_vbd, halted_vdi = disk_of(js, "backup-01")
    js("VBD.destroy", halted_vbd)
    assert halted_vbd not in xml("VDI.get_VBDs", halted_vdi)


def test_set_mode_needs_halted_vm(apis: list[Api]) -> None:
    """xapi_vbd.ml set_mode: assert_initial_power_state_is Halted."""
    for api in apis:
        vm, vbd, _ = disk_of(api, "web-01")
        assert api.fails("VBD.set_mode", vbd, "RO") == [
            "VM_BAD_POWER_STATE", vm, "halted", "running"]
        _, vbd, _ = disk_of(api, "web-staging")
        api("VBD.set_mode", vbd, "RO")
        assert api("VBD.get_mode", vbd) == "RO"
        api("VBD.set_mode", vbd, "RW")


# ---------------------------------------------------------------- concurrency


def test_conflicting_operations_wait_and_can_be_cancelled(apis: list[Api],
                                                          sim: Simulator) -> None:
    """message_forwarding.ml with_vbd_marked / Helpers.retry_with_global_lock: while a
    VBD operation runs, its current_operations holds it, allowed_operations shrinks
    (OTHER_OPERATION_IN_PROGRESS) and a second operation waits, cancellably."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-02")
    vdi = new_disk(xml)
    vbd = xml("VBD.create", vbd_record(vm, vdi))
    assert "destroy" in js("VDI.get_allowed_operations", vdi)
    sim.op_time = 2.0
    t1 = xml("Async.VBD.plug", vbd)
    wait_for(lambda: js("VBD.get_current_operations", vbd))
    assert list(js("VBD.get_current_operations", vbd).values()) == ["plug"]
    assert xml("VBD.get_allowed_operations", vbd) == []
    assert js("VDI.get_allowed_operations", vdi) == []  # xapi_vdi.ml: a VBD is busy
    t2 = js("Async.VBD.unplug", vbd)
    wait_for(lambda: "cancel" in xml("task.get_allowed_operations", t2))
    assert xml("task.get_status", t2) == "pending"
    js("task.cancel", t2)
    rec = xml.wait(t2)
    assert (rec["status"], rec["error_info"]) == ("cancelled", ["TASK_CANCELLED", t2])
    sim.op_time = 0.01
    assert js.wait(t1)["status"] == "success"
    assert js("VBD.get_current_operations", vbd) == {}
    assert xml("VBD.get_currently_attached", vbd) is True
    assert sorted(js("VDI.get_allowed_operations", vdi)) == ["clone", "snapshot"]


def test_vdi_operation_blocks_plug(apis: list[Api], sim: Simulator) -> None:
    """xapi_vbd_helpers.ml: a VDI operation other than copy/mirror blocks attach, plug
    and insert (OTHER_OPERATION_IN_PROGRESS ["VDI", vdi, op, task])."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-02")
    vdi = new_disk(xml)
    vbd = xml("VBD.create", vbd_record(vm, vdi))
    sim.store.set_map_key(vdi, "current_operations", "OpaqueRef:t", "resize")
    sim.store.republish(vbd)
    assert "plug" not in js("VBD.get_allowed_operations", vbd)
    assert js.fails("VBD.assert_attachable", vbd) == [
        "OTHER_OPERATION_IN_PROGRESS", "VDI", vdi, "resize", "OpaqueRef:t"]


@pytest.mark.parametrize("name", ["web-01", "db-01"])
def test_seeded_attached_vbds_have_devices(apis: list[Api], name: str) -> None:
    """xapi_xenops.ml update_vbd: an attached VBD reports its Linux device."""
    for api in apis:
        vm = by_name(api, "VM", name)
        for vbd in api("VM.get_VBDs", vm):
            rec = api("VBD.get_record", vbd)
            assert rec["currently_attached"] is True
            assert rec["device"] == "xvd" + "abcdefghijklmnop"[int(rec["userdevice"])]
