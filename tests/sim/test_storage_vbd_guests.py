"""VBD behaviour that depends on the guest, over real HTTPS through both clients: a
guest that holds its boot disk and refuses a clean unplug, PVH guests (read-only
disks and hot-plug with no PV drivers), what a guest agent's report changes for
hot-plug, disks shared between guests, and the control domain's exemptions.
Sources: xapi-project/xen-api ocaml/xapi/xapi_vbd_helpers.ml (valid_operations and
its sharing checks), ocaml/xapi/xapi_vbd.ml (plug, CA-83260), ocaml/xapi/
xapi_xenops.ml (vbd_unplug: DEVICE_DETACH_REJECTED when the guest will not let go)."""

from __future__ import annotations

from typing import Any

from tests import block_support
from tests.jsonrpc import JsonRpcClient
from tests.sim import storage_support as support
from tests.sim.storage_support import Api, GiB, by_name, disk_of, sr_named, vbd_record, vdi_record
from xsctl.sim import Simulator

sim = support.sim  # fixture: the storage tests' pool
apis = support.apis  # fixture: both clients
stop_sims_at_module_end = support.stop_sims_at_module_end  # autouse fixture
new_disks = block_support.new_disks  # autouse: every VDI is still there after

NULL = "OpaqueRef:NULL"


def new_disk(api: Api, made: set[str], label: str = "scratch disk", **extra: Any) -> str:
    ref = str(api("VDI.create", vdi_record(label, sr_named(api, "NFS storage"), GiB, **extra)))
    made.add(ref)
    return ref


def at(api: Api, vm: str, position: str) -> str:
    (vbd,) = [v for v in api("VM.get_VBDs", vm) if api("VBD.get_userdevice", v) == position]
    return str(vbd)


# ---------------------------------------------------------------- the guest holds a device


def test_a_guest_refuses_a_clean_unplug_of_its_boot_disk(apis: list[Api]) -> None:
    """xapi_xenops.ml vbd_unplug: the guest's blkfront will not close a device it has
    mounted, and xapi raises DEVICE_DETACH_REJECTED ["VBD", vbd, reason]; nothing
    changes. unplug_force pulls it anyway."""
    xml, js = apis
    for api in apis:
        _vm, vbd, _ = disk_of(api, "web-01")
        assert api("VBD.get_bootable", vbd) is True
        assert api.fails("VBD.unplug", vbd) == [
            "DEVICE_DETACH_REJECTED", "VBD", vbd, "the device is in use by the guest"]
        rec = api("VBD.get_record", vbd)
        assert (rec["currently_attached"], rec["device"], rec["current_operations"]) == (
            True, "xvda", {})
        assert "unplug" in rec["allowed_operations"]  # the guest's answer is not known ahead
    _vm, vbd, _ = disk_of(xml, "web-02")
    rec = js.run_async("VBD.unplug", vbd)
    assert (rec["status"], rec["error_info"][:1]) == ("failure", ["DEVICE_DETACH_REJECTED"])
    assert js("VBD.get_currently_attached", vbd) is True
    xml("VBD.unplug_force", vbd)
    assert js("VBD.get_currently_attached", vbd) is False
    js("VBD.destroy", vbd)  # the disk itself stays
    assert xml("VM.get_power_state", by_name(xml, "VM", "web-02")) == "Running"


def test_devices_the_guest_does_not_hold_unplug_cleanly(apis: list[Api], sim: Simulator,
                                                       new_disks: set[str]) -> None:
    """A data disk, a disk marked bootable in a control domain (dom0 is not a guest
    that mounts it), and a PV guest's CD drive let go at once."""
    xml, js = apis
    vm = by_name(xml, "VM", "monitor-01")
    boot, other = at(xml, vm, "0"), at(xml, vm, "1")
    js("VBD.plug", other)
    js("VBD.unplug", other)
    assert xml("VBD.get_currently_attached", other) is False
    assert js.fails("VBD.unplug", boot)[0] == "DEVICE_DETACH_REJECTED"  # that one is held
    dom0 = by_name(xml, "VM", "Control domain on host: xcp-ng-01")
    marked = xml("VBD.create", vbd_record(dom0, new_disk(xml, new_disks), bootable=True,
                                          mode="RO"))
    js("VBD.plug", marked)
    xml("VBD.unplug", marked)
    assert js("VBD.get_currently_attached", marked) is False
    pvh = by_name(js, "VM", "k8s-node-01")
    cd = js("VBD.create", vbd_record(pvh, NULL, "5", type="CD", mode="RO", empty=True,
                                     unpluggable=True, bootable=True))
    xml("VBD.plug", cd)
    js("VBD.unplug", cd)
    assert xml("VBD.get_currently_attached", cd) is False


# ---------------------------------------------------------------- PVH guests


def test_the_demo_pool_has_pvh_guests(apis: list[Api]) -> None:
    for api in apis:
        for name in ("k8s-node-01", "k8s-node-02", "k8s-node-03"):
            vm = by_name(api, "VM", name)
            assert api("VM.get_domain_type", vm) == "pvh"
            if api("VM.get_power_state", vm) == "Running":
                metrics = api("VM.get_metrics", vm)
                assert api("VM_metrics.get_current_domain_type", metrics) == "pvh"
        assert api("VM.get_domain_type", by_name(api, "VM", "web-01")) == "hvm"


def test_a_pvh_guest_takes_a_read_only_disk_and_hot_plugs_without_pv_drivers(
        apis: list[Api], sim: Simulator, new_disks: set[str]) -> None:
    """CA-83260 and the PV-driver check of valid_operations are for HVM guests only:
    a PVH guest has no emulated devices, its disks are PV ones from the start."""
    xml, js = apis
    vm = by_name(xml, "VM", "k8s-node-01")
    sim.set_guest_metrics(vm, PV_drivers_version={}, PV_drivers_detected=False,
                          can_use_hotplug_vbd="unspecified")
    vbd = xml("VBD.create", vbd_record(vm, new_disk(xml, new_disks), mode="RO"))
    assert "plug" in js("VBD.get_allowed_operations", vbd)
    js("VBD.plug", vbd)
    rec = xml("VBD.get_record", vbd)
    assert (rec["currently_attached"], rec["device"], rec["mode"]) == (True, "xvdb", "RO")
    xml("VBD.unplug", vbd)
    # the same on an HVM guest: refused at plug
    hvm = by_name(js, "VM", "web-03")
    ro = js("VBD.create", vbd_record(hvm, new_disk(js, new_disks), mode="RO"))
    assert xml.fails("VBD.plug", ro) == ["DISK_VBD_MUST_BE_READWRITE_FOR_HVM", ro]


# ---------------------------------------------------------------- the guest agent


def test_hot_plug_follows_what_the_guest_agent_reports(
        apis: list[Api], sim: Simulator, jrpc: JsonRpcClient, new_disks: set[str]) -> None:
    """An HVM guest without PV drivers (no version, none detected, no word on
    hot-plug) cannot hot-plug: plug leaves the VBD's allowed_operations (clients see
    the event) and VBD.plug is VM_MISSING_PV_DRIVERS [vm]; once the drivers report
    (or the guest says it can), plug is back."""
    xml, js = apis
    vm = by_name(xml, "VM", "web-02")
    vbd = xml("VBD.create", vbd_record(vm, new_disk(xml, new_disks)))
    assert "plug" in js("VBD.get_allowed_operations", vbd)
    token = jrpc("event.from", ["vbd"], "", 0.0)["token"]
    sim.set_guest_metrics(vm, PV_drivers_version={}, PV_drivers_detected=False,
                          can_use_hotplug_vbd="unspecified")
    events = jrpc("event.from", ["vbd"], token, 5.0)["events"]
    snap = next(e["snapshot"] for e in events if e["ref"] == vbd)
    assert "plug" not in snap["allowed_operations"]
    for api in apis:
        assert api.fails("VBD.plug", vbd) == ["VM_MISSING_PV_DRIVERS", vm]
    sim.set_guest_metrics(vm, can_use_hotplug_vbd="yes")
    assert "plug" in xml("VBD.get_allowed_operations", vbd)
    sim.set_guest_metrics(vm, can_use_hotplug_vbd="unspecified",
                          PV_drivers_version={"major": "9", "minor": "3"})
    js("VBD.plug", vbd)
    assert xml("VBD.get_currently_attached", vbd) is True


# ---------------------------------------------------------------- shared disks


def test_a_sharable_disk_is_read_write_on_two_running_guests(
        apis: list[Api], new_disks: set[str]) -> None:
    xml, js = apis
    shared = new_disk(xml, new_disks, "quorum", sharable=True)
    plugged = []
    for api, name in ((xml, "web-01"), (js, "web-03")):
        vbd = api("VBD.create", vbd_record(by_name(api, "VM", name), shared))
        api("VBD.plug", vbd)
        plugged.append(vbd)
    assert [xml("VBD.get_currently_attached", v) for v in plugged] == [True, True]
    assert sorted(js("VDI.get_VBDs", shared)) == sorted(plugged)
    # the same disk, not sharable: the second writer is refused
    single = new_disk(js, new_disks, "single")
    first = js("VBD.create", vbd_record(by_name(js, "VM", "web-01"), single))
    js("VBD.plug", first)
    second = xml("VBD.create", vbd_record(by_name(xml, "VM", "web-03"), single))
    for api in apis:
        assert api.fails("VBD.plug", second) == ["VDI_IN_USE", single]


def test_a_disk_read_only_on_two_pvh_guests(apis: list[Api], new_disks: set[str]) -> None:
    """No one writes: two readers share a non-sharable disk; a writer joining them is
    VDI_IN_USE, and so is a reader joining a writer."""
    xml, js = apis
    disk = new_disk(xml, new_disks, "image")
    readers = []
    for api, name in ((xml, "k8s-node-01"), (js, "k8s-node-02")):
        vbd = api("VBD.create", vbd_record(by_name(api, "VM", name), disk, mode="RO"))
        api("VBD.plug", vbd)
        readers.append(vbd)
    assert [js("VBD.get_currently_attached", v) for v in readers] == [True, True]
    writer = js("VBD.create", vbd_record(by_name(js, "VM", "web-01"), disk))
    assert xml.fails("VBD.plug", writer) == ["VDI_IN_USE", disk]
    _vm, _vbd, written = disk_of(js, "web-02")
    reader = xml("VBD.create", vbd_record(by_name(xml, "VM", "k8s-node-01"), written,
                                          mode="RO"))
    assert js.fails("VBD.plug", reader) == ["VDI_IN_USE", written]


def test_a_control_domain_is_exempt_from_the_sharing_checks(apis: list[Api]) -> None:
    """valid_operations skips the sharing checks for a system domain: xapi lets dom0
    attach a disk a running guest writes (xsctl refuses it: both would write, or
    dom0 would read a disk changing under it)."""
    xml, js = apis
    _vm, _vbd, written = disk_of(xml, "web-02")
    dom0 = by_name(js, "VM", "Control domain on host: xcp-ng-01")
    vbd = js("VBD.create", vbd_record(dom0, written, mode="RO"))
    xml("VBD.plug", vbd)
    assert js("VBD.get_currently_attached", vbd) is True
    xml("VBD.unplug", vbd)
    xml("VBD.destroy", vbd)


# ---------------------------------------------------------------- the demo pool's disks


def test_the_demo_pool_has_a_deactivated_disk_and_free_ones(apis: list[Api]) -> None:
    for api in apis:
        vm = by_name(api, "VM", "monitor-01")
        rec = api("VBD.get_record", at(api, vm, "1"))
        assert (rec["currently_attached"], rec["device"]) == (False, "")
        assert "plug" in rec["allowed_operations"]
        for name in ("old-web 0", "scratch"):
            (vdi,) = api("VDI.get_by_name_label", name)
            assert api("VDI.get_VBDs", vdi) == []
        (archive,) = api("SR.get_by_name_label", "Archive")
        plugged = {api("host.get_name_label", api("PBD.get_host", p)): api(
            "PBD.get_currently_attached", p) for p in api("SR.get_PBDs", archive)}
        assert plugged == {"xcp-ng-01": True, "xcp-ng-02": True, "xcp-ng-03": False}
