"""The block attach rules told in advance (xsctl.xapi.block and the planners of
xsctl.xapi.ops.block), checked against what xapi does: device positions, the disks
a VM can take and why not, the read-only rules, hot-plug, and the inspection tags
that find what an interrupted run left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests import block_support
from tests.block_support import new_disk, vdi_named, vm_named, without_pv_drivers
from tests.sim import storage_support
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi import block
from xsctl.xapi.cache import Cache
from xsctl.xapi.client import Client
from xsctl.xapi.errors import UsageError, XapiError
from xsctl.xapi.models import Vdi, Vm
from xsctl.xapi.ops import block as block_ops
from xsctl.xapi.ops.base import Call, Plan
from xsctl.xapi.ops.catalogue import Refused

new_disks = block_support.new_disks  # autouse: no disk is ever lost
sim = storage_support.sim  # the demo pool, only its master listening
stop_sims_at_module_end = storage_support.stop_sims_at_module_end  # autouse

NULL = "OpaqueRef:NULL"


@pytest.fixture
def client(sim: Simulator) -> Iterator[Client]:
    with connect(sim) as c:
        yield c


def reload(c: Client) -> Cache:
    c.load()
    return c.cache


def vm(cache: Cache, name: str) -> Vm:
    for ref, r in cache.snapshot("vm"):
        if r["name_label"] == name and not r["is_a_template"] and not r["is_a_snapshot"]:
            got = Vm.get(cache, ref)
            assert got is not None
            return got
    raise AssertionError(name)


def vdi(cache: Cache, ref: str) -> Vdi:
    r = cache.get("vdi", ref)
    assert r is not None, ref
    return Vdi.from_record(cache, ref, r)


def made(plan: Plan, step: int = 0) -> dict[str, Any]:
    """The record a plan's create call sends."""
    call = plan.calls[step]
    assert isinstance(call, Call)
    rec: dict[str, Any] = call.args[0]
    return rec


def name_of(cache: Cache, ref: str) -> str:
    r = cache.get("vm", ref)
    assert r is not None
    return str(r["name_label"])


def vbd_record(vm: str, vdi: str, userdevice: str = "autodetect", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False, "mode": "RW",
        "type": "Disk", "unpluggable": True, "empty": vdi == NULL, "other_config": {},
        "qos_algorithm_type": "", "qos_algorithm_params": {}}
    rec.update(extra)
    return rec


# ------------------------------------------------------------------ positions


def test_positions_are_what_xapi_answers_for_every_vm_of_the_demo_pool(
        sim: Simulator, client: Client, xapi: Any) -> None:
    """Xapi_vm_helpers.allowed_VBD_devices, for guests, templates, snapshots and the
    control domains (0-255 for a PV one) alike."""
    cache = client.cache
    seen = 0
    for ref, _ in cache.snapshot("vm"):
        v = Vm.get(cache, ref)
        assert v is not None
        assert block.allowed_positions(cache, v) == xapi.xenapi.VM.get_allowed_VBD_devices(ref), \
            v.name_label
        seen += 1
    assert seen == len(sim.store.all("VM"))
    dom0 = vm(cache, "Control domain on host: xcp-ng-01")
    assert block.allowed_positions(cache, dom0)[-1] == "255"
    assert block.allowed_positions(cache, vm(cache, "web-staging"))[:3] == ["1", "2", "4"]


@pytest.mark.parametrize("guest", ["web-staging", "k8s-node-03"])
def test_a_position_offered_is_one_vbd_create_takes(
        sim: Simulator, client: Client, xapi: Any, new_disks: set[str], guest: str) -> None:
    """Devices named the Linux way take positions as xapi's VBD.create counts them
    (Device_number: a number is read as IDE and as Xen; xvdb is Xen disk 1, hdc IDE
    disk 2, sdg a SCSI disk that takes none): each position offered is accepted, each
    other one is DEVICE_ALREADY_EXISTS. VM.get_allowed_VBD_devices lists 1 on an HVM
    guest with an xvdb, and 2 on a PVH one with an hdc, which VBD.create then refuses:
    the offer follows VBD.create."""
    ref = vm_named(sim, guest)
    x = xapi.xenapi
    disk = new_disk(sim, xapi, "positions")
    new_disks.add(disk)
    for name in ("xvdb", "hdc", "xvde", "sdg", "xvdh"):
        x.VBD.create(vbd_record(ref, disk, name))
    offered = block.allowed_positions(reload(client), vm(client.cache, guest))
    assert offered[:3] == ["5", "6", "8"]
    for n in range(12):
        try:
            made = x.VBD.create(vbd_record(ref, disk, str(n)))
        except Exception as e:
            assert "DEVICE_ALREADY_EXISTS" in str(e), e
            assert str(n) not in offered, n
        else:
            x.VBD.destroy(made)
            assert str(n) in offered, n


def test_linux_names_and_positions() -> None:
    assert [block.linux_name(n) for n in (0, 1, 3, 25, 26, 27, 254)] == [
        "xvda", "xvdb", "xvdd", "xvdz", "xvdaa", "xvdab", "xvdiu"]
    for n in range(300):
        assert block._disk_number(block.linux_name(n)) == n
    assert block._disk_number("hdb") == 1
    for odd in ("sdb", "xvd", "xvdB", "xvd1", "nvme0n1", "", "d1"):
        assert block._disk_number(odd) is None, odd


# ------------------------------------------------------------------ hot-plug


def test_hot_plug_needs_pv_drivers_on_hvm_guests_only_as_xapi_says(
        sim: Simulator, client: Client, xapi: Any, new_disks: set[str]) -> None:
    """hotplug_refusal is None exactly when xapi lists ``plug`` in a new VBD's
    allowed_operations (Xapi_vbd_helpers.valid_operations), for the guests as the
    demo pool has them and as they report otherwise."""
    x = xapi.xenapi
    disk = new_disk(sim, xapi, "hot-plug probe")
    new_disks.add(disk)
    sim.set_guest_metrics(vm_named(sim, "web-03"), can_use_hotplug_vbd="no")
    sim.set_guest_metrics(vm_named(sim, "db-01"), can_use_hotplug_vbd="yes",
                          PV_drivers_version={}, PV_drivers_detected=False)
    sim.set_guest_metrics(vm_named(sim, "db-02"), can_use_hotplug_vbd="unspecified",
                          PV_drivers_version={"major": "8", "minor": "2"},
                          PV_drivers_detected=False)
    without_pv_drivers(sim, "web-02")
    without_pv_drivers(sim, "k8s-node-01")
    probes = {}
    for name, r in sim.store.all("VM").items():
        if r["power_state"] == "Running" and not r["is_control_domain"]:
            probes[r["name_label"]] = x.VBD.create(vbd_record(name, disk, mode="RO"))
    cache = reload(client)
    said = {}
    for name, probe in probes.items():
        why = block.hotplug_refusal(cache, vm(cache, name))
        assert (why is None) == ("plug" in x.VBD.get_allowed_operations(probe)), name
        said[name] = why
    assert said["web-01"] is None and said["db-01"] is None and said["db-02"] is None
    assert said["web-02"] == "web-02 has no PV drivers, which hot-plugging a disk needs"
    assert said["web-03"] == "web-03's guest says it cannot hot-plug disks"
    assert said["k8s-node-01"] is None  # PVH
    dom0 = vm(cache, "Control domain on host: xcp-ng-01")
    assert block.hotplug_refusal(cache, dom0) is None
    for probe in probes.values():
        x.VBD.destroy(probe)


def test_an_attach_plans_the_plug_where_the_guest_can_take_it(
        sim: Simulator, client: Client) -> None:
    scratch = vdi_named(sim, "scratch")
    cache = client.cache
    plan = block_ops.attach(cache, vm(cache, "web-01"), scratch, None, None, False, False)
    assert [c.method for c in plan.calls] == ["VBD.create", "VBD.plug"]
    assert plan.notes == ("Hot-plugged: the guest sees it as xvdb at once.",)
    assert not plan.warnings

    without_pv_drivers(sim, "web-01")
    cache = reload(client)
    plan = block_ops.attach(cache, vm(cache, "web-01"), scratch, None, None, False, False)
    assert [c.method for c in plan.calls] == ["VBD.create"]
    assert plan.warnings == ("web-01 has no PV drivers, which hot-plugging a disk needs: "
                             "the disk is attached for its next boot, not now.",)

    plan = block_ops.attach(cache, vm(cache, "web-staging"), scratch, "5", None, True, False)
    assert [c.method for c in plan.calls] == ["VBD.create"]
    rec = made(plan)
    assert (rec["userdevice"], rec["mode"], rec["bootable"], rec["other_config"]) == (
        "5", "RW", True, {})
    assert plan.notes == ("web-staging is halted: the disk is attached at its next boot "
                          "(as xvdf).",)

    plan = block_ops.attach(cache, vm(cache, "ci-runner-02"), vdi_named(sim, "web-staging 0"),
                            None, None, False, False)
    assert [c.method for c in plan.calls] == ["VBD.create"]
    assert plan.notes[-1].startswith("The VM is paused: plug the device once it is unpaused")

    with pytest.raises(Refused, match="it is suspended"):
        block_ops.attach(cache, vm(cache, "legacy-erp"), scratch, None, None, False, False)
    with pytest.raises(UsageError, match="--keep is for a disk attached to a control domain"):
        block_ops.attach(cache, vm(cache, "web-staging"), scratch, None, None, False, True)


# ------------------------------------------------------------------ the disks a VM can take


def test_the_disks_a_vm_can_take_and_why_not(sim: Simulator, client: Client,
                                             xapi: Any, new_disks: set[str]) -> None:
    ro = new_disk(sim, xapi, "golden image", read_only=True)
    shared = new_disk(sim, xapi, "cluster quorum", sharable=True)
    new_disks.update({ro, shared})
    xapi.xenapi.VBD.create(vbd_record(vm_named(sim, "web-02"), shared))
    cache = reload(client)

    def offered(name: str) -> dict[str, tuple[str | None, str | None]]:
        out: dict[str, tuple[str | None, str | None]] = {}
        for c in block.candidates(cache, vm(cache, name)):
            out.setdefault(c.label, (c.reason, c.read_only))
        return out

    web01 = offered("web-01")
    assert web01["scratch"] == (None, None)
    assert web01["web-02 0"] == ("in use: web-02 has it attached read-write",
                                 "web-02 has it attached")
    assert web01["web-01 0"] == ("attached to it already, at position 0 (xvda)", None)
    assert web01["golden image"] == (
        "read-only here (the disk is read-only), and an HVM guest takes disks read-write "
        "only", "the disk is read-only")
    assert web01["cluster quorum"] == (None, None)  # sharable: web-02's VBD is no bar
    # a suspended VM's VBDs do not count for xapi's sharing check, but its disk is
    # read-only elsewhere (it would resume onto a changed disk): none for an HVM guest
    ro = "legacy-erp is suspended with it, and would resume onto a changed disk"
    assert web01["legacy-erp 0"] == (
        f"read-only here ({ro}), and an HVM guest takes disks read-write only", ro)
    assert web01["k8s-node-template 0"][0] == (
        "the disk of template k8s-node-template: make a VM of it instead")
    names = [c.label for c in block.candidates(cache, vm(cache, "web-01"))]
    assert not any(n.endswith(".iso") for n in names)  # a CD drive's business
    assert not any(n.startswith("Suspend image") for n in names)  # xapi's own
    takes = [c.reason is None for c in block.candidates(cache, vm(cache, "web-01"))]
    assert takes == sorted(takes, reverse=True)  # those it can take first

    pvh = offered("k8s-node-01")  # on xcp-ng-02
    assert pvh["golden image"] == (None, "the disk is read-only")
    assert pvh["scratch"][0] == "Local storage on xcp-ng-01 is not plugged on xcp-ng-02"
    assert offered("k8s-node-02")["old-web 0"][0] == "Archive is not plugged on xcp-ng-03"
    # a halted VM goes where its local disks are: it cannot have two hosts' local ones
    assert offered("dev-sandbox")["scratch"][0] == (
        "local to xcp-ng-01, while its disk dev-sandbox 0 is local to xcp-ng-03")

    snap = [r for r, row in sim.store.all("VDI").items()
            if row["is_a_snapshot"] and row["name_label"] == "web-01 0"]
    assert snap
    assert block.candidate(cache, vm(cache, "web-03"), vdi(cache, snap[0])).reason == (
        "a snapshot: revert to it, or make a VM of it")
    dom0 = vm(cache, "Control domain on host: xcp-ng-01")
    assert block.candidate(cache, dom0, vdi(cache, snap[0])).reason is None
    assert block.candidate(cache, dom0, vdi(cache, vdi_named(sim, "web-02 0"))).reason == (
        "web-02 has it attached read-write and running: look inside a snapshot of it "
        "instead")


def test_a_disk_attached_elsewhere_is_read_only_here(sim: Simulator, client: Client,
                                                     xapi: Any) -> None:
    """read_only_reason: a disk another running VM has plugged, even read-only, is
    not for writing (xapi: VDI_IN_USE for a writer)."""
    disk = vdi_named(sim, "web-staging 0")
    x = xapi.xenapi
    probe = x.VBD.create(vbd_record(vm_named(sim, "k8s-node-01"), disk, mode="RO"))
    cache = reload(client)
    c = block.candidate(cache, vm(cache, "k8s-node-02"), vdi(cache, disk))
    assert (c.reason, c.read_only) == (None, None)  # plugged nowhere yet
    x.VBD.plug(probe)
    cache = reload(client)
    c = block.candidate(cache, vm(cache, "k8s-node-02"), vdi(cache, disk))
    assert (c.reason, c.read_only) == (None, "k8s-node-01 has it attached")
    with pytest.raises(Refused, match="can be attached read-only only: k8s-node-01 has it"):
        block_ops.attach(cache, vm(cache, "k8s-node-02"), disk, None, "RW", False, False)
    plan = block_ops.attach(cache, vm(cache, "k8s-node-02"), disk, None, None, False, False)
    assert made(plan)["mode"] == "RO"
    # and xapi agrees: a writer is refused, a second reader is not
    writer = x.VBD.create(vbd_record(vm_named(sim, "k8s-node-02"), disk, mode="RW"))
    with pytest.raises(Exception, match="VDI_IN_USE"):
        x.VBD.plug(writer)
    x.VBD.destroy(writer)
    reader = x.VBD.create(vbd_record(vm_named(sim, "k8s-node-02"), disk, mode="RO"))
    x.VBD.plug(reader)
    assert x.VBD.get_currently_attached(reader) is True


def test_a_suspended_vms_disk_is_read_only_elsewhere(sim: Simulator, client: Client,
                                                     xapi: Any) -> None:
    """xapi's sharing check passes a suspended VM over, so it would let another VM
    write its disk; xsctl offers it read-only only: legacy-erp would resume onto a
    disk changed under its saved memory."""
    disk = next(r for r, row in sim.store.all("VDI").items()
                if row["name_label"] == "legacy-erp 1" and not row["is_a_snapshot"])
    cache = reload(client)
    c = block.candidate(cache, vm(cache, "k8s-node-01"), vdi(cache, disk))
    assert c.reason is None
    assert c.read_only == "legacy-erp is suspended with it, and would resume onto a changed disk"
    with pytest.raises(Refused, match="read-only only: legacy-erp is suspended"):
        block_ops.attach(cache, vm(cache, "k8s-node-01"), disk, None, "RW", False, False)
    assert made(block_ops.attach(cache, vm(cache, "k8s-node-01"), disk, None, None, False,
                                 False))["mode"] == "RO"
    # an HVM guest, which takes no read-only disk, cannot have it at all
    c = block.candidate(cache, vm(cache, "web-staging"), vdi(cache, disk))
    assert c.reason is not None and "HVM guest takes disks read-write only" in c.reason
    # xapi itself would have allowed the writer (what the rule is for)
    writer = xapi.xenapi.VBD.create(vbd_record(vm_named(sim, "k8s-node-01"), disk, mode="RW"))
    xapi.xenapi.VBD.plug(writer)
    xapi.xenapi.VBD.unplug(writer)
    xapi.xenapi.VBD.destroy(writer)


# ------------------------------------------------------------------ VBD refusals


def test_each_vbd_refusal_is_the_one_xapi_raises(sim: Simulator, client: Client) -> None:
    """check_vbd explains an operation missing from a VBD's allowed_operations with
    the error xapi raises when it is tried anyway: the same code and parameters, for
    every device of the demo pool, and for guests without PV drivers or that say they
    cannot hot-plug."""
    without_pv_drivers(sim, "web-02")
    sim.set_guest_metrics(vm_named(sim, "web-03"), can_use_hotplug_vbd="no")
    x = client.conn
    cache = reload(client)
    iso = vdi_named(sim, "alpine-virt-3.20.3-x86_64.iso")
    tried = 0
    codes = set()
    for ref, _ in cache.snapshot("vbd"):
        vbd = block_ops._load_vbd(cache, ref)
        if vbd is None:
            continue
        for op in ("plug", "unplug", "unplug_force", "insert", "eject"):
            if op in vbd.allowed_operations:
                continue
            said = block_ops.check_vbd(cache, vbd, op)
            assert isinstance(said, XapiError), (vbd, op)
            with pytest.raises(XapiError) as e:
                x.call(f"VBD.{op}", *((ref, iso) if op == "insert" else (ref,)))
            assert (said.code, list(said.params)) == (e.value.code, list(e.value.params)), (
                vbd.vm_name, vbd.userdevice, op)
            tried += 1
            codes.add(said.code)
    assert tried > 100
    assert {"VM_MISSING_PV_DRIVERS", "OPERATION_NOT_ALLOWED", "VM_BAD_POWER_STATE",
            "DEVICE_ALREADY_ATTACHED", "DEVICE_ALREADY_DETACHED", "VBD_NOT_UNPLUGGABLE",
            "VBD_NOT_REMOVABLE_MEDIA", "VBD_IS_EMPTY", "VBD_NOT_EMPTY"} <= codes


# ------------------------------------------------------------------ inspection


def test_inspection_goes_to_a_control_domain_that_sees_the_disk(
        sim: Simulator, client: Client, xapi: Any, new_disks: set[str]) -> None:
    local2 = next(r for r, row in sim.store.all("SR").items()
                  if row["type"] == "lvm" and sim.store.get(
                      sim.store.get(row["PBDs"][0], "PBD")["host"], "host")["name_label"]
                  == "xcp-ng-02")
    disk = str(xapi.xenapi.VDI.create({
        "name_label": "on xcp-ng-02", "name_description": "", "SR": local2,
        "virtual_size": str(1024**3), "type": "user", "sharable": False, "read_only": False,
        "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []}))
    new_disks.add(disk)
    cache = reload(client)
    plan = block_ops.inspect(cache, vdi(cache, disk), None, None, False)
    rec = made(plan)
    assert name_of(cache, rec["VM"]) == "Control domain on host: xcp-ng-02"
    assert rec["mode"] == "RO" and rec["other_config"] == {block.TAG: block.owner_tag()}
    assert plan.title == ("Inspect on xcp-ng-02 in Control domain on host: xcp-ng-02 at 0 "
                          "(xvda, RO)")
    master = next(r for r, row in sim.store.all("host").items()
                  if row["name_label"] == "xcp-ng-01")
    with pytest.raises(Refused, match="is not plugged on that host"):
        block_ops.inspect(cache, vdi(cache, disk), master, None, False)
    # the master's, where the SR is shared; --keep tags it as the CLI's to leave
    plan = block_ops.inspect(cache, vdi(cache, vdi_named(sim, "old-web 0")), None, None, True)
    rec = made(plan)
    assert name_of(cache, rec["VM"]) == "Control domain on host: xcp-ng-01"
    assert rec["other_config"] == {block.TAG: block.kept_tag()}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_inspection_devices_are_told_from_live_ones(
        sim: Simulator, client: Client, xapi: Any) -> None:
    """A tag names the machine, the process and its start time: a device is left
    behind when its process is gone (or its pid is now another process's), or when
    one the CLI keeps was never plugged. Another machine's are never touched."""
    x = xapi.xenapi
    dom0 = vm_named(sim, "Control domain on host: xcp-ng-01")
    machine = block.owner_tag().rsplit("/", 2)[0]
    dead = _dead_pid()
    tags = {
        "this run": block.owner_tag(),
        "a finished run": f"{machine}/{dead}/{block._start_time(os.getpid())}",
        "a reused pid": f"{machine}/{os.getpid()}/1",
        "another machine's run": f"elsewhere:0123456789ab/{dead}/5",
        "kept, plugged": block.kept_tag(),
        "kept, never plugged": block.kept_tag(),
        "another machine's kept": "cli/elsewhere:0123456789ab",
        "not ours": "something else",
    }
    disks = ["scratch", "old-web 0", "web-staging 0", "backup-01 0", "backup-01 1",
             "ci-runner-03 0", "win-build-01 0", "dev-sandbox 0"]
    refs = {}
    for (what, tag), disk in zip(tags.items(), disks, strict=True):
        refs[what] = x.VBD.create(vbd_record(dom0, vdi_named(sim, disk), mode="RO",
                                             other_config={block.TAG: tag}))
        if what != "kept, never plugged":
            x.VBD.plug(refs[what])
    cache = reload(client)
    assert {v.ref for v in block.tagged(cache)} == set(refs.values())
    stale = {v.ref for v in block.stale(cache)}
    assert stale == {refs["a finished run"], refs["a reused pid"],
                     refs["kept, never plugged"]}
    assert [v.ref for v in block.mine(cache, block.owner_tag())] == [refs["this run"]]
    (mine,) = block.mine(cache, block.owner_tag())
    assert block.dom0_path(mine) == "/dev/xvda"
