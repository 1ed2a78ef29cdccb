"""Block attach from the command line, on the simulator: disks into and out of halted
and running VMs (with and without PV drivers), positions, the read-only rules, a
sharable disk, CD drives, the inspection attach to a control domain and what an
interrupted one leaves behind, every refusal, and --dry-run and --json for each
command. After each test the simulator holds every disk it held before."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import block_support
from tests.block_support import (
    calls,
    device,
    device_at,
    devices_of,
    inspection_vbds,
    new_disk,
    state,
    vdi_named,
    vm_named,
    without_pv_drivers,
)
from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.conftest import wait_for
from tests.sim import storage_support
from xsctl.sim import Simulator
from xsctl.xapi import block
from xsctl.xapi.models import Vbd

new_disks = block_support.new_disks  # autouse: no disk is ever lost
# the demo pool with only its master listening (the CLI never talks to members),
# stopped in the background: a fresh pool per test costs little
sim = storage_support.sim
stop_sims_at_module_end = storage_support.stop_sims_at_module_end  # autouse

ISO = "alpine-virt-3.20.3-x86_64.iso"
DOM0 = "Control domain on host: xcp-ng-01"


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> list[str]:
    return conn_args(sim, password_file(sim, tmp_path))


def ok(cli: list[str], *argv: str, stdin: str = "") -> Run:
    r = xsctl(*cli, *argv, stdin=stdin)
    assert r.code == 0, (argv, r.err)
    assert "Traceback" not in r.err
    return r


def refused(cli: list[str], *argv: str) -> Run:
    """A refusal: exit 1 or 2, one line that starts ``xsctl:``, nothing on stdout."""
    r = xsctl(*cli, *argv)
    assert r.code in (1, 2), (argv, r.code, r.out, r.err)
    assert r.out == "", r.out
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xsctl: "), r.err
    return r


def cd_drive(sim: Simulator, vm_name: str) -> dict[str, Any]:
    vm = vm_named(sim, vm_name)
    drives = [d for d in (device(sim, vm, p) for p in ("3", "1", "2")) if d and d["type"] == "CD"]
    assert drives, vm_name
    return drives[0]


def remove_cd_drive(sim: Simulator, x: Any, vm_name: str) -> None:
    x.xenapi.VBD.destroy(cd_drive(sim, vm_name)["ref"])


# ------------------------------------------------------------------ attach and detach


def test_attach_to_a_halted_vm_is_for_its_next_boot(sim: Simulator, cli: list[str]) -> None:
    vm = vm_named(sim, "web-staging")
    scratch = vdi_named(sim, "scratch")
    with calls(sim) as seen:
        r = ok(cli, "block-attach", "web-staging", "scratch", "--bootable")
    assert r.out.strip() == "web-staging: disk attached"
    d = device(sim, vm, "1")  # 0 is its disk, 3 its CD drive
    assert d is not None
    assert (d["VDI"], d["mode"], d["bootable"], d["currently_attached"]) == (
        scratch, "RW", True, False)
    assert seen.done == []  # nothing to plug while it is halted
    listed = ok(cli, "block-list", "web-staging").out.splitlines()
    row = next(ln.split() for ln in listed if " scratch " in ln)
    assert row[:3] == ["1", "-", "scratch"] and "RW" in row and "no" in row and "yes" in row

    r = ok(cli, "block-detach", "web-staging", "1")
    assert r.out.strip() == "web-staging position 1: detached"
    assert device(sim, vm, "1") is None
    assert sim.store.get(scratch, "VDI")["VBDs"] == []  # the disk stays, free


def test_attach_hot_plugs_into_a_running_guest_with_pv_drivers(
        sim: Simulator, cli: list[str]) -> None:
    vm = vm_named(sim, "web-01")  # on xcp-ng-01, where scratch's local SR is
    with calls(sim) as seen:
        r = ok(cli, "block-attach", "web-01", "scratch")
        assert "warning" not in r.err
        d = device(sim, vm, "1")
        assert d is not None and (d["currently_attached"], d["device"], d["mode"]) == (
            True, "xvdb", "RW")
        listed = ok(cli, "block-list", "web-01").out
        assert any(ln.split()[:3] == ["1", "xvdb", "scratch"] and "yes" in ln.split()
                   for ln in listed.splitlines())
        r = ok(cli, "block-detach", "web-01", "xvdb")
        assert r.out.strip() == "web-01 xvdb: detached"
    assert seen.done == [("VBD.plug", "success", ""), ("VBD.unplug", "success", "")]
    assert device(sim, vm, "1") is None


def test_a_guest_without_pv_drivers_gets_the_disk_at_its_next_boot(
        sim: Simulator, cli: list[str], xapi: Any) -> None:
    """An HVM guest without PV drivers cannot hot-plug (xapi_vbd_helpers.ml:
    VM_MISSING_PV_DRIVERS): the VBD is made, for the next boot, with a warning; a plug
    is refused with the reason; once the drivers report, it plugs."""
    vm = without_pv_drivers(sim, "web-02")
    old_web = vdi_named(sim, "old-web 0")
    with calls(sim) as seen:
        r = ok(cli, "block-attach", "web-02", "old-web 0")
    assert r.out.strip() == "web-02: disk attached"
    assert ("warning: web-02 has no PV drivers, which hot-plugging a disk needs: the disk "
            "is attached for its next boot, not now.") in r.err
    assert seen.done == []  # no plug was tried
    d = device(sim, vm, "1")
    assert d is not None and (d["VDI"], d["currently_attached"]) == (old_web, False)

    before = state(sim)
    r = refused(cli, "vbd", "plug", "web-02", "1")
    assert r.code == 1
    assert "web-02 has no PV drivers, which hot-plugging a disk needs" in r.err
    assert "VM_MISSING_PV_DRIVERS" in r.err
    assert state(sim) == before
    # what xapi itself answers, which the explanation stands for
    with pytest.raises(Exception) as e:
        xapi.xenapi.VBD.plug(d["ref"])
    assert "VM_MISSING_PV_DRIVERS" in str(e.value)

    sim.set_guest_metrics(vm, PV_drivers_version={"major": "9", "minor": "3"},
                          PV_drivers_detected=True)
    r = ok(cli, "vbd", "plug", "web-02", "1")
    assert r.out.strip() == "web-02 position 1: plugged"
    d = device(sim, vm, "1")
    assert d is not None and (d["currently_attached"], d["device"]) == (True, "xvdb")
    ok(cli, "block-detach", "web-02", "old-web 0")  # named by its disk
    assert device(sim, vm, "1") is None


def test_a_pvh_guest_hot_plugs_without_pv_drivers(sim: Simulator, cli: list[str],
                                                  new_disks: set[str]) -> None:
    """PVH guests have no emulated devices to fall back on: xapi asks PV drivers of an
    HVM guest only. A new disk (new:SIZE@SR) is made and plugged at once."""
    vm = without_pv_drivers(sim, "k8s-node-01")
    plan = ok(cli, "block-attach", "k8s-node-01", "new:5G@NFS storage", "--dry-run",
              "--json").json()[0]
    assert [c.split("(")[0] for c in plan["calls"]] == ["VDI.create", "VBD.create",
                                                        "Async.VBD.plug"]
    # should the plug fail, the device and the new disk go again, last made first
    assert plan["undo_on_failure"] == ["the new device 1 of k8s-node-01",
                                       "the new disk k8s-node-01 1"]
    r = ok(cli, "block-attach", "k8s-node-01", "new:5G@NFS storage", "--json")
    assert r.json() == [{"vm": "k8s-node-01", "ok": True}]
    assert "warning" not in r.err
    made = vdi_named(sim, "k8s-node-01 1")
    new_disks.add(made)
    rec = sim.store.get(made, "VDI")
    assert (rec["virtual_size"], rec["type"]) == (5 * 1024**3, "user")
    d = device(sim, vm, "1")
    assert d is not None and (d["VDI"], d["currently_attached"], d["device"]) == (
        made, True, "xvdb")
    ok(cli, "block-detach", "k8s-node-01", "k8s-node-01 1")
    assert device(sim, vm, "1") is None and sim.store.get(made, "VDI")["VBDs"] == []


@pytest.mark.parametrize("spec", ["2", "xvdc", "scratch", "disk-uuid", "vbd-uuid"])
def test_detach_names_the_device_by_position_linux_name_or_disk(
        sim: Simulator, cli: list[str], spec: str) -> None:
    vm = vm_named(sim, "web-staging")
    ok(cli, "block-attach", "web-staging", "scratch", "xvdc")
    d = device(sim, vm, "2")
    assert d is not None
    if spec == "disk-uuid":
        spec = sim.store.get(d["VDI"], "VDI")["uuid"]
    elif spec == "vbd-uuid":
        spec = d["uuid"]
    ok(cli, "block-detach", "web-staging", spec)
    assert device(sim, vm, "2") is None


def test_a_clean_detach_the_guest_refuses_changes_nothing(sim: Simulator,
                                                         cli: list[str]) -> None:
    """The guest has its boot disk mounted (xapi: DEVICE_DETACH_REJECTED)."""
    before = state(sim)
    with calls(sim) as seen:
        r = refused(cli, "block-detach", "web-01", "0")
    assert r.code == 1
    assert "The guest refused to release the device" in r.err
    assert "force the detach" in r.err and "DEVICE_DETACH_REJECTED" in r.err
    assert seen.done == [("VBD.unplug", "failure", "DEVICE_DETACH_REJECTED")]
    assert state(sim) == before


def test_force_detach_pulls_the_device_only_after_a_clean_unplug_failed(
        sim: Simulator, cli: list[str]) -> None:
    vm = vm_named(sim, "web-01")
    boot = device(sim, vm, "0")
    assert boot is not None and boot["bootable"]
    plan = ok(cli, "block-detach", "web-01", "0", "--force", "--dry-run", "--json").json()[0]
    assert plan["action"] == "vbd.force_detach" and plan["destructive"]
    assert plan["calls"][0].startswith("Async.VBD.unplug(") and \
        "and if that fails: Async.VBD.unplug_force(" in plan["calls"][0]
    assert plan["calls"][1].startswith("VBD.destroy(")
    assert any("pulled from under it" in w for w in plan["warnings"])

    with calls(sim) as seen:
        r = ok(cli, "block-detach", "web-01", "0", "--force")
    assert r.out.strip() == "web-01 xvda: detached"
    assert "warning: If the guest refuses to let the device go" in r.err
    assert seen.done == [("VBD.unplug", "failure", "DEVICE_DETACH_REJECTED"),
                         ("VBD.unplug_force", "success", "")]
    assert device(sim, vm, "0") is None
    assert sim.store.get(boot["VDI"], "VDI")["VBDs"] == []  # the disk stays

    # a device the guest lets go of is not forced
    ok(cli, "block-attach", "web-01", "scratch")
    with calls(sim) as seen:
        ok(cli, "block-detach", "web-01", "scratch", "--force", "--yes")  # --yes: accepted
    assert seen.done == [("VBD.unplug", "success", "")]


# ------------------------------------------------------------------ positions


def test_the_default_position_is_the_first_free_one_but_not_3_on_hvm(
        sim: Simulator, cli: list[str], xapi: Any) -> None:
    """xapi's "autodetect" takes the first free position; on an HVM guest 3 is where
    the emulated CD drive goes (hdd), so a disk is put past it."""
    vm = vm_named(sim, "web-staging")
    remove_cd_drive(sim, xapi, "web-staging")
    ok(cli, "block-attach", "web-staging", "scratch")
    ok(cli, "block-attach", "web-staging", "old-web 0")
    assert [device(sim, vm, p) is not None for p in ("1", "2", "3")] == [True, True, False]
    plan = ok(cli, "block-attach", "web-staging", "new:1G@NFS storage", "--dry-run",
              "--json").json()[0]
    assert plan["title"] == "Attach a new 1 GiB disk on NFS storage to web-staging at 4 (xvde, RW)"
    xapi.xenapi.VM.set_domain_type(vm, "pvh")
    plan = ok(cli, "block-attach", "web-staging", "new:1G@NFS storage", "--dry-run",
              "--json").json()[0]
    assert plan["title"] == "Attach a new 1 GiB disk on NFS storage to web-staging at 3 (xvdd, RW)"


def test_a_position_is_given_as_a_number_or_a_linux_name(sim: Simulator,
                                                         cli: list[str]) -> None:
    vm = vm_named(sim, "web-staging")
    ok(cli, "block-attach", "web-staging", "scratch", "xvdf")
    ok(cli, "block-attach", "web-staging", "old-web 0", "7")
    assert device_at(sim, vm, "5")["VDI"] == vdi_named(sim, "scratch")
    assert device_at(sim, vm, "7")["VDI"] == vdi_named(sim, "old-web 0")
    before = state(sim)
    for taken in ("5", "xvdh", "3", "0"):
        r = refused(cli, "block-attach", "web-staging", "new:1G@NFS storage", taken)
        n = block.linux_name(taken) if taken.isdigit() else taken
        assert "is taken on web-staging; free: 1, 2, 4, 6, 8, 9, 10, 11…" in r.err and n in r.err
        assert "DEVICE_ALREADY_EXISTS" in r.err and r.code == 1
    assert state(sim) == before


# ------------------------------------------------------------------ read-only rules


def test_a_read_only_disk_is_attached_read_only(sim: Simulator, cli: list[str], xapi: Any,
                                               new_disks: set[str]) -> None:
    ro = new_disk(sim, xapi, "golden image", read_only=True)
    new_disks.add(ro)
    vm = vm_named(sim, "k8s-node-01")
    before = state(sim)
    r = refused(cli, "block-attach", "k8s-node-01", "golden image", "--rw")
    assert r.err.strip() == ("xsctl: golden image can be attached read-only only: the disk "
                             "is read-only")
    assert state(sim) == before
    plan = ok(cli, "block-attach", "k8s-node-01", "golden image", "--dry-run",
              "--json").json()[0]
    assert plan["title"].endswith("(xvdb, RO)")
    assert "Read-only: the disk is read-only." in plan["notes"]
    ok(cli, "block-attach", "k8s-node-01", "golden image")
    d = device(sim, vm, "1")
    assert d is not None and (d["mode"], d["currently_attached"]) == ("RO", True)
    # an HVM guest cannot take it at all
    r = refused(cli, "block-attach", "web-staging", "golden image")
    assert "read-only here (the disk is read-only), and an HVM guest takes disks " \
        "read-write only" in r.err


def test_an_hvm_guest_refuses_a_read_only_disk(sim: Simulator, cli: list[str]) -> None:
    """xapi_vbd.ml plug (CA-83260): DISK_VBD_MUST_BE_READWRITE_FOR_HVM; said before
    anything is made, halted or running."""
    before = state(sim)
    for vm in ("web-01", "web-staging"):
        r = refused(cli, "block-attach", vm, "scratch", "--ro")
        assert r.err.strip() == (
            f"xsctl: {vm} is an HVM guest, which takes disks read-write only (xapi refuses "
            "a read-only one: DISK_VBD_MUST_BE_READWRITE_FOR_HVM)")
    assert state(sim) == before


def test_a_disk_attached_read_only_to_two_pvh_guests(sim: Simulator, cli: list[str]) -> None:
    """A disk another VM has attached is shared read-only (xapi_vbd_helpers.ml: a
    non-sharable disk in use is VDI_IN_USE for a writer); web-staging, halted, is
    configured with it too, and the plan says so."""
    disk = vdi_named(sim, "web-staging 0")
    ok(cli, "block-attach", "k8s-node-01", "web-staging 0", "--ro")
    before = state(sim)
    r = refused(cli, "block-attach", "k8s-node-02", "web-staging 0", "--rw")
    assert r.err.strip() == ("xsctl: web-staging 0 can be attached read-only only: "
                             "k8s-node-01 has it attached")
    assert state(sim) == before
    plan = ok(cli, "block-attach", "k8s-node-02", "web-staging 0", "--dry-run",
              "--json").json()[0]
    assert plan["title"].endswith("(xvdb, RO)")
    assert "Read-only: k8s-node-01 has it attached." in plan["notes"]
    assert any(n.startswith("web-staging also has it (not attached now)")
               for n in plan["notes"])
    ok(cli, "block-attach", "k8s-node-02", "web-staging 0")
    live = {d["vm"]: (d["mode"], d["currently_attached"]) for d in devices_of(sim, disk)}
    assert live == {"web-staging": ("RW", False), "k8s-node-01": ("RO", True),
                    "k8s-node-02": ("RO", True)}


def test_a_disk_in_use_read_write_is_refused_for_another_vm(sim: Simulator,
                                                            cli: list[str]) -> None:
    before = state(sim)
    for argv in (["web-01", "web-02 0"], ["k8s-node-01", "web-02 0", "--ro"],
                 ["web-staging", "k8s-node-01 0"]):
        r = refused(cli, "block-attach", *argv)
        owner = argv[1].split()[0]
        assert r.err.strip() == (f"xsctl: Disk {argv[1]}: in use: {owner} has it "
                                 "attached read-write")
    assert state(sim) == before


def test_a_sharable_disk_on_two_vms_read_write(sim: Simulator, cli: list[str], xapi: Any,
                                               new_disks: set[str]) -> None:
    shared = new_disk(sim, xapi, "cluster quorum", sharable=True)
    new_disks.add(shared)
    ok(cli, "block-attach", "web-01", "cluster quorum")
    plan = ok(cli, "block-attach", "web-03", "cluster quorum", "--dry-run", "--json").json()[0]
    assert plan["title"].endswith("(xvdb, RW)") and not any(
        "Read-only" in n for n in plan["notes"])
    ok(cli, "block-attach", "web-03", "cluster quorum", "--rw")
    live = {d["vm"]: (d["mode"], d["currently_attached"]) for d in devices_of(sim, shared)}
    assert live == {"web-01": ("RW", True), "web-03": ("RW", True)}
    ok(cli, "block-detach", "web-01", "cluster quorum")
    ok(cli, "block-detach", "web-03", "cluster quorum")
    assert devices_of(sim, shared) == []


# ------------------------------------------------------------------ CD drives


def test_cd_insert_and_eject_on_a_running_vm(sim: Simulator, cli: list[str]) -> None:
    iso = vdi_named(sim, ISO)
    assert cd_drive(sim, "monitor-01")["empty"]
    with calls(sim) as seen:
        r = ok(cli, "cd-insert", "monitor-01", ISO)
        assert r.out.strip() == "monitor-01: ISO inserted"
        d = cd_drive(sim, "monitor-01")
        assert (d["VDI"], d["empty"], d["currently_attached"]) == (iso, False, True)
        listed = ok(cli, "block-list", "monitor-01").out
        assert f"{ISO} (CD)" in listed
        r = ok(cli, "cd-eject", "monitor-01")
        assert r.out.strip() == "monitor-01: ejected"
    assert seen.done == [("VBD.insert", "success", ""), ("VBD.eject", "success", "")]
    assert cd_drive(sim, "monitor-01")["empty"]


def test_cd_insert_and_eject_on_a_halted_vm_in_json(sim: Simulator, cli: list[str]) -> None:
    iso = vdi_named(sim, ISO)
    assert ok(cli, "cd-insert", "web-staging", ISO, "--json").json() == [
        {"vm": "web-staging", "ok": True}]
    assert cd_drive(sim, "web-staging")["VDI"] == iso
    assert ok(cli, "cd-eject", "web-staging", "--json").json() == [
        {"vm": "web-staging", "ok": True}]
    assert cd_drive(sim, "web-staging")["empty"]


def test_a_drive_by_its_own_verbs(sim: Simulator, cli: list[str]) -> None:
    """xsctl vbd insert|eject VM DEVICE, in xe's words."""
    iso = vdi_named(sim, ISO)
    r = ok(cli, "vbd", "eject", "web-01", "3")
    assert cd_drive(sim, "web-01")["empty"]
    assert "web-01" in r.out
    r = ok(cli, "vbd", "insert", "web-01", "xvdd", ISO)
    assert "web-01" in r.out
    assert cd_drive(sim, "web-01")["VDI"] == iso


def test_cd_add_on_a_halted_vm(sim: Simulator, cli: list[str], xapi: Any) -> None:
    remove_cd_drive(sim, xapi, "web-staging")
    before = state(sim)
    for verb in (["cd-insert", "web-staging", ISO], ["cd-eject", "web-staging"]):
        r = refused(cli, *verb)
        assert r.err.strip() == "xsctl: web-staging: it has no CD drive"
    assert state(sim) == before
    r = ok(cli, "cd-add", "web-staging")
    assert r.out.strip() == "web-staging: CD drive added"
    d = cd_drive(sim, "web-staging")
    assert (d["userdevice"], d["type"], d["mode"], d["empty"]) == ("3", "CD", "RO", True)
    ok(cli, "cd-insert", "web-staging", ISO)
    assert cd_drive(sim, "web-staging")["VDI"] == vdi_named(sim, ISO)


def test_cd_add_with_an_iso_to_a_running_pvh_guest(sim: Simulator, cli: list[str]) -> None:
    """A PVH guest's drives are PV ones, hot-plugged; an HVM guest's CD drive is
    emulated and added while it is halted."""
    vm = vm_named(sim, "k8s-node-01")
    ok(cli, "cd-add", "k8s-node-01", "--iso", ISO, "--device", "5")
    d = device(sim, vm, "5")
    assert d is not None
    assert (d["type"], d["VDI"], d["currently_attached"], d["device"]) == (
        "CD", vdi_named(sim, ISO), True, "xvdf")


# ------------------------------------------------------------------ inspection in dom0


def test_the_inspection_attach_is_read_only_and_says_where(sim: Simulator,
                                                          cli: list[str]) -> None:
    """In-process, standard input is empty: the disk is detached as soon as the
    path is printed."""
    with calls(sim) as seen:
        r = ok(cli, "block-attach", "dom0", "old-web 0")
    assert r.out.splitlines() == [f"{DOM0}: disk attached",
                                  f"/dev/xvda in {DOM0} (read-only)"]
    assert r.err.strip() == "Detached."
    assert seen.done == [("VBD.plug", "success", ""), ("VBD.unplug", "success", "")]
    assert inspection_vbds(sim) == []


def test_the_inspection_attach_in_json_says_what_was_attached(sim: Simulator,
                                                             cli: list[str]) -> None:
    r = ok(cli, "vdi", "inspect", "scratch", "--json")
    got = r.json()
    vbd_uuids = {row["uuid"] for row in sim.store.all("VBD").values()}
    assert got["uuid"] not in vbd_uuids  # it was detached, its VBD destroyed
    assert got["uuid"] and len(got["uuid"]) == 36
    assert {k: got[k] for k in ("position", "device", "disk", "sr", "mode", "plugged",
                                "path")} == {
        "position": "0", "device": "xvda", "disk": "scratch",
        "sr": "Local storage", "mode": "RO", "plugged": True,  # xapi's name_label
        "path": "/dev/xvda"}
    assert got["inspection"] == block.owner_tag()
    assert inspection_vbds(sim) == []


def test_inspection_read_write_is_asked_for_and_warned_about(sim: Simulator,
                                                            cli: list[str]) -> None:
    plan = ok(cli, "vdi", "inspect", "scratch", "--rw", "--dry-run", "--json").json()[0]
    assert plan["action"] == "vdi.inspect" and plan["title"].endswith("(xvda, RW)")
    assert plan["warnings"] == ["Read-write in the control domain: whatever is written "
                                "there changes the guest's disk."]
    r = ok(cli, "vdi", "inspect", "scratch", "--rw", "--json")
    assert r.json()["mode"] == "RW"
    assert "warning: Read-write in the control domain" in r.err


def test_inspection_is_refused_while_a_running_vm_writes_the_disk(sim: Simulator,
                                                                  cli: list[str]) -> None:
    before = state(sim)
    r = refused(cli, "vdi", "inspect", "web-02 0")
    assert r.err.strip() == ("xsctl: web-02 has it attached read-write and running: "
                             "snapshot it and look at the snapshot instead")
    r = refused(cli, "block-attach", "dom0", "web-02 0")
    assert r.err.strip() == ("xsctl: Disk web-02 0: web-02 has it attached read-write and "
                             "running: look inside a snapshot of it instead")
    assert state(sim) == before


def test_keep_leaves_the_disk_attached_until_block_detach(sim: Simulator,
                                                         cli: list[str]) -> None:
    r = ok(cli, "block-attach", "dom0", "old-web 0", "--keep")
    assert r.out.strip() == f"{DOM0}: disk attached" and "Detached" not in r.err
    (kept,) = inspection_vbds(sim)
    assert kept["currently_attached"] and kept["mode"] == "RO"
    assert kept["other_config"][block.TAG] == block.kept_tag()
    listed = ok(cli, "block-list", "dom0").out.splitlines()
    assert listed[1].split() == ["0", "xvda", "old-web", "0", "16", "GiB", "Archive", "RO",
                                 "yes", "inspection"]
    (row,) = ok(cli, "block-list", "dom0", "--json").json()
    assert (row["disk"], row["inspection"], row["plugged"]) == (
        "old-web 0", block.kept_tag(), True)
    # a later inspection run leaves a kept one alone
    ok(cli, "vdi", "inspect", "scratch")
    assert [v["ref"] for v in inspection_vbds(sim)] == [kept["ref"]]
    ok(cli, "block-detach", "dom0", "old-web 0")
    assert inspection_vbds(sim) == []


def _lines(stream: Any) -> queue.Queue[str]:
    """The lines a subprocess writes, as they come (a reader that never blocks the
    test: it waits on the queue, with a timeout)."""
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)
        q.put("")

    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.fixture
def holder(sim: Simulator, cli: list[str]) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    """``xsctl block-attach dom0 DISK`` in its own process, its standard input a pipe
    kept open: it holds the disk until the pipe closes."""
    started: list[subprocess.Popen[str]] = []

    def start(disk: str) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-m", "xsctl", *cli, "block-attach", "dom0", disk],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for s in (p.stdin, p.stdout, p.stderr):
            if s is not None:
                s.close()


def test_the_cli_holds_the_disk_until_its_input_ends(
        sim: Simulator, holder: Callable[[str], subprocess.Popen[str]]) -> None:
    p = holder("old-web 0")
    out = _lines(p.stdout)
    assert out.get(timeout=30) == f"{DOM0}: disk attached\n"
    assert out.get(timeout=30) == f"/dev/xvda in {DOM0} (read-only)\n"
    (held,) = inspection_vbds(sim)
    assert held["currently_attached"] and held["mode"] == "RO"
    assert held["other_config"][block.TAG] == block.owner_tag(p.pid)
    assert p.poll() is None  # still holding it
    assert p.stdin is not None
    p.stdin.close()
    assert p.wait(timeout=30) == 0
    assert p.stderr is not None and p.stderr.read().strip() == "Detached."
    assert inspection_vbds(sim) == []


@pytest.mark.parametrize("again", ["old-web 0", "scratch"])
def test_a_killed_run_leaves_its_device_for_the_next_run_to_remove(
        sim: Simulator, cli: list[str], holder: Callable[[str], subprocess.Popen[str]],
        again: str) -> None:
    """The run is killed (-9) while it holds the disk: nothing of it could detach it.
    The next inspection run from this machine, of the same disk or another, finds the
    tagged device, sees its process gone, and detaches it first."""
    p = holder("old-web 0")
    wait_for(lambda: [v for v in inspection_vbds(sim) if v["currently_attached"]],
             timeout=30)
    p.send_signal(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL
    (left,) = inspection_vbds(sim)
    assert left["currently_attached"]
    assert block.is_stale(Vbd.from_record(left["ref"], left))
    r = ok(cli, "block-attach", "dom0", again)
    assert (f"xsctl: detached {DOM0} xvda (old-web 0), left attached by an interrupted run"
            in r.err)
    assert f"/dev/xvda in {DOM0} (read-only)" in r.out
    assert inspection_vbds(sim) == []


def test_a_live_run_s_device_is_not_taken_for_a_stale_one(
        sim: Simulator, cli: list[str], holder: Callable[[str], subprocess.Popen[str]]) -> None:
    p = holder("old-web 0")
    out = _lines(p.stdout)
    assert out.get(timeout=30).endswith("disk attached\n")
    (held,) = inspection_vbds(sim)
    r = ok(cli, "block-attach", "dom0", "scratch")
    assert "interrupted" not in r.err
    assert [v["ref"] for v in inspection_vbds(sim)] == [held["ref"]]
    assert p.stdin is not None
    p.stdin.close()
    assert p.wait(timeout=30) == 0
    assert inspection_vbds(sim) == []


# ------------------------------------------------------------------ refusals


def _setup_none(sim: Simulator, x: Any) -> None:
    return None


def _no_cd_drive(sim: Simulator, x: Any) -> None:
    remove_cd_drive(sim, x, "web-staging")


def _no_pv_drivers(sim: Simulator, x: Any) -> None:
    without_pv_drivers(sim, "web-02")
    x.xenapi.VBD.create({
        "VM": vm_named(sim, "web-02"), "VDI": vdi_named(sim, "old-web 0"), "userdevice": "1",
        "bootable": False, "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})


REFUSALS: list[tuple[str, Callable[[Simulator, Any], None], list[str], int, str]] = [
    # block-attach
    ("hvm read-only", _setup_none, ["block-attach", "web-01", "scratch", "--ro"], 1,
     "DISK_VBD_MUST_BE_READWRITE_FOR_HVM"),
    ("in use", _setup_none, ["block-attach", "web-01", "web-02 0"], 2,
     "in use: web-02 has it attached read-write"),
    ("taken position", _setup_none, ["block-attach", "web-staging", "scratch", "3"], 1,
     "position 3 (xvdd) is taken on web-staging"),
    ("not a position", _setup_none, ["block-attach", "web-staging", "scratch", "bogus"], 2,
     "'bogus' is not a device position"),
    ("suspended", _setup_none, ["block-attach", "k8s-node-03", "scratch"], 1,
     "it is suspended: resume it or shut it down first"),
    ("an ISO", _setup_none, ["block-attach", "web-staging", ISO], 1,
     "an ISO: insert it into a CD drive"),
    ("SR not on its host", _setup_none, ["block-attach", "k8s-node-01", "scratch"], 2,
     "Local storage on xcp-ng-01 is not plugged on xcp-ng-02"),
    ("no such disk", _setup_none, ["block-attach", "web-staging", "nosuchdisk"], 2,
     "no disk named 'nosuchdisk'"),
    ("no such VM", _setup_none, ["block-attach", "no such vm", "scratch"], 2,
     "no VM named 'no such vm'"),
    ("already attached", _setup_none, ["block-attach", "web-02", "web-02 0"], 2,
     "attached to it already, at position 0"),
    ("new: without SR", _setup_none, ["block-attach", "web-staging", "new:10G"], 2,
     "a new disk is written new:SIZE@SR"),
    ("new: of no size", _setup_none, ["block-attach", "web-staging", "new:0@NFS storage"], 1,
     "a disk's size must be more than 0"),
    ("new: on an ISO SR", _setup_none, ["block-attach", "web-01", "new:1G@ISO library"], 1,
     "ISO library holds ISOs or drives, not disks"),
    ("new: past a VHD's limit", _setup_none, ["block-attach", "web-01", "new:3T@NFS storage"],
     1, "at most 2040 GiB (a VHD's limit)"),
    ("new: SR elsewhere", _setup_none,
     ["block-attach", "web-01", "new:1G@Local storage on xcp-ng-02"], 1,
     "Local storage on xcp-ng-02 is not plugged on xcp-ng-01"),
    ("keep on a guest", _setup_none, ["block-attach", "web-staging", "scratch", "--keep"], 2,
     "--keep is for a disk attached to a control domain"),
    ("read-only connection", _setup_none,
     ["--read-only", "block-attach", "web-staging", "scratch"], 1,
     "Refused VBD.create: this connection is read-only"),
    # detach, plug, unplug
    ("guest holds it", _setup_none, ["block-detach", "web-01", "0"], 1,
     "DEVICE_DETACH_REJECTED"),
    ("no such device", _setup_none, ["block-detach", "web-01", "xvdz"], 2,
     "web-01 has no device 'xvdz' (its devices: 0 (xvda), 3 (xvdd))"),
    ("detach suspended", _setup_none, ["block-detach", "k8s-node-03", "0"], 1,
     "it is suspended"),
    ("detach paused", _setup_none, ["block-detach", "ci-runner-02", "0"], 1,
     "the VM is paused: unpause it first"),
    ("detach a drive the guest cannot lose", _setup_none, ["block-detach", "web-01", "3"], 1,
     "The disk is marked not unpluggable"),
    ("plug plugged", _setup_none, ["vbd", "plug", "web-01", "0"], 1,
     "DEVICE_ALREADY_ATTACHED"),
    ("plug without PV drivers", _no_pv_drivers, ["vbd", "plug", "web-02", "1"], 1,
     "VM_MISSING_PV_DRIVERS"),
    ("unplug halted", _setup_none, ["vbd", "unplug", "web-staging", "0"], 1,
     "The VM must be running for this, but it is halted"),
    ("unplug unplugged", _setup_none, ["vbd", "unplug", "monitor-01", "1"], 1,
     "DEVICE_ALREADY_DETACHED"),
    ("eject a disk", _setup_none, ["vbd", "eject", "web-01", "0"], 1,
     "VBD_NOT_REMOVABLE_MEDIA"),
    # CD drives
    ("drive not empty", _setup_none, ["cd-insert", "web-01", ISO], 1,
     "the drive holds debian-12.7.0-amd64-netinst.iso: eject it first"),
    ("vbd insert not empty", _setup_none, ["vbd", "insert", "web-01", "3", ISO], 1,
     "VBD_NOT_EMPTY"),
    ("drive empty", _setup_none, ["cd-eject", "monitor-01"], 1, "VBD_IS_EMPTY"),
    ("no drive (insert)", _no_cd_drive, ["cd-insert", "web-staging", ISO], 1,
     "it has no CD drive"),
    ("no drive (eject)", _no_cd_drive, ["cd-eject", "web-staging"], 1, "it has no CD drive"),
    ("insert suspended", _setup_none, ["cd-insert", "k8s-node-03", ISO], 1, "it is suspended"),
    ("eject suspended", _setup_none, ["cd-eject", "legacy-erp"], 1, "it is suspended"),
    ("not an ISO", _setup_none, ["cd-insert", "monitor-01", "scratch"], 2, "scratch"),
    ("cd-add running hvm", _setup_none, ["cd-add", "web-01"], 1,
     "an HVM guest's CD drive is added while it is halted"),
    ("cd-add taken position", _setup_none, ["cd-add", "web-staging", "--device", "0"], 1,
     "DEVICE_ALREADY_EXISTS"),
    # inspection
    ("inspect a disk in use", _setup_none, ["vdi", "inspect", "web-02 0"], 1,
     "snapshot it and look at the snapshot instead"),
    ("dom0 and a disk in use", _setup_none, ["block-attach", "dom0", "web-02 0"], 2,
     "look inside a snapshot of it instead"),
    ("inspect an ISO", _setup_none, ["vdi", "inspect", ISO], 1, "an ISO"),
    ("dom0 of no host", _setup_none, ["block-attach", "dom0:xcp-ng-09", "scratch"], 2,
     "xcp-ng-09"),
    ("block-list of no VM", _setup_none, ["block-list", "no such vm"], 2,
     "no VM named 'no such vm'"),
]


@pytest.mark.parametrize(("setup", "argv", "code", "says"),
                         [pytest.param(*c[1:], id=c[0]) for c in REFUSALS])
def test_each_refusal_is_one_clear_line_and_changes_nothing(
        sim: Simulator, cli: list[str], xapi: Any,
        setup: Callable[[Simulator, Any], None], argv: list[str], code: int,
        says: str) -> None:
    setup(sim, xapi)
    before = state(sim)
    with calls(sim) as seen:
        r = refused(cli, *argv)
    assert r.code == code, r.err
    assert says in r.err
    assert state(sim) == before
    # xapi refused or nothing was sent that changes anything
    assert all(status == "failure" for _, status, _ in seen.done), seen.done


# ------------------------------------------------------------------ dry runs and JSON


DRY_RUNS: list[tuple[list[str], str, list[str]]] = [
    (["block-attach", "web-01", "scratch"], "vm.block-attach", ["VBD.create", "Async.VBD.plug"]),
    (["block-attach", "web-staging", "new:2G@NFS storage", "--bootable"], "vm.block-attach",
     ["VDI.create", "VBD.create"]),
    (["block-attach", "dom0", "scratch"], "vm.block-attach", ["VBD.create", "Async.VBD.plug"]),
    (["block-detach", "monitor-01", "1"], "vbd.detach", ["VBD.destroy"]),
    (["block-detach", "web-01", "0", "--force"], "vbd.force_detach",
     ["Async.VBD.unplug", "VBD.destroy"]),
    (["block-detach", "web-01", "0"], "vbd.detach", ["Async.VBD.unplug", "VBD.destroy"]),
    (["cd-insert", "monitor-01", ISO], "vm.cd-insert", ["Async.VBD.insert"]),
    (["cd-eject", "web-01"], "vm.cd-eject", ["Async.VBD.eject"]),
    (["cd-add", "backup-01", "--device", "5"], "vm.cd-add", ["VBD.create"]),
    (["vbd", "plug", "monitor-01", "1"], "vbd.plug", ["Async.VBD.plug"]),
    (["vbd", "unplug", "web-01", "0"], "vbd.unplug", ["Async.VBD.unplug"]),
    (["vbd", "detach", "monitor-01", "xvdb"], "vbd.detach", ["VBD.destroy"]),
    (["vbd", "insert", "monitor-01", "3", ISO], "vbd.insert", ["Async.VBD.insert"]),
    (["vbd", "eject", "web-01", "xvdd"], "vbd.eject", ["Async.VBD.eject"]),
    (["vdi", "inspect", "scratch"], "vdi.inspect", ["VBD.create", "Async.VBD.plug"]),
]


@pytest.mark.parametrize(("argv", "action", "methods"), DRY_RUNS,
                         ids=[" ".join(a[:2]) + (" " + a[2] if a[0] == "vbd" else "")
                              + ("".join(f" {x}" for x in a[3:] if x.startswith("-")))
                              for a, _, _ in DRY_RUNS])
def test_every_command_has_a_dry_run_in_text_and_json(
        sim: Simulator, cli: list[str], argv: list[str], action: str,
        methods: list[str]) -> None:
    before = state(sim)
    with calls(sim) as seen:
        (plan,) = ok(cli, *argv, "--dry-run", "--json").json()
        text = ok(cli, *argv, "--dry-run").out
    assert plan["action"] == action
    assert [c.split("(")[0] for c in plan["calls"]] == methods
    assert plan["xe"] and all(line.count("xe ") >= 1 for line in plan["xe"])
    assert text.startswith(plan["title"] + "\n")
    assert "API calls:" in text and "xe equivalent:" in text
    for line in plan["xe"]:
        assert line in text
    assert seen.done == [] and state(sim) == before


def test_run_results_in_json(sim: Simulator, cli: list[str]) -> None:
    """Each command's --json answer: what it acted on, and that it went well."""
    runs = [
        (["block-attach", "web-staging", "scratch"], {"vm": "web-staging", "ok": True}),
        (["vbd", "plug", "monitor-01", "1"], {"vbd": "monitor-01 position 1", "ok": True}),
        (["vbd", "unplug", "monitor-01", "xvdb"], {"vbd": "monitor-01 xvdb", "ok": True}),
        (["vbd", "detach", "monitor-01", "1"], {"vbd": "monitor-01 xvdb", "ok": True}),
        (["block-detach", "web-staging", "scratch"],
         {"vbd": "web-staging position 1", "ok": True}),
        (["cd-add", "backup-01", "--device", "5"], {"vm": "backup-01", "ok": True}),
        (["vbd", "eject", "web-01", "3"], {"vbd": "web-01 xvdd", "ok": True}),
        (["vbd", "insert", "web-01", "3", ISO], {"vbd": "web-01 xvdd", "ok": True}),
    ]
    for argv, want in runs:
        assert ok(cli, *argv, "--json").json() == [want], argv
    assert device(sim, vm_named(sim, "monitor-01"), "1") is None
    assert device_at(sim, vm_named(sim, "backup-01"), "5")["type"] == "CD"


# ------------------------------------------------------------------ block-list


def test_block_list_shows_each_device(sim: Simulator, cli: list[str]) -> None:
    lines = ok(cli, "block-list", "monitor-01").out.splitlines()
    assert lines[0].split() == ["POSITION", "DEVICE", "DISK", "SIZE", "SR", "MODE",
                                "PLUGGED", "BOOT"]
    rows = [ln.split() for ln in lines[1:]]
    assert rows == [
        ["0", "xvda", "monitor-01", "0", "20", "GiB", "NFS", "storage", "RW", "yes", "yes"],
        ["1", "-", "monitor-01", "1", "50", "GiB", "NFS", "storage", "RW", "no"],
        ["3", "xvdd", "(empty)", "(CD)", "RO", "yes"],
    ]
    r = ok(cli, "block-list", "dom0")
    assert r.out.strip() == f"{DOM0} has no block devices"


def test_block_list_in_json(sim: Simulator, cli: list[str]) -> None:
    vm = vm_named(sim, "monitor-01")
    got = ok(cli, "block-list", "monitor-01", "--json").json()
    store = sim.store
    disk1 = store.get(device_at(sim, vm, "1")["VDI"], "VDI")
    assert [d["position"] for d in got] == ["0", "1", "3"]
    assert got[1] == {
        "uuid": device_at(sim, vm, "1")["uuid"],
        "position": "1", "device": None, "type": "Disk", "disk": "monitor-01 1",
        "disk_uuid": disk1["uuid"], "size": 50 * 1024**3, "sr": "NFS storage", "mode": "RW",
        "bootable": False, "plugged": False, "empty": False, "inspection": None}
    assert (got[0]["bootable"], got[0]["plugged"], got[0]["device"]) == (True, True, "xvda")
    assert {k: got[2][k] for k in ("type", "disk", "disk_uuid", "size", "sr", "empty")} == {
        "type": "CD", "disk": None, "disk_uuid": None, "size": None, "sr": None,
        "empty": True}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_holding_run_detaches_the_disk(
        sim: Simulator, holder: Callable[[str], subprocess.Popen[str]], sig: int) -> None:
    """Ctrl-C lets go of the disk (exit 0); kill, or a closed terminal, ends the run
    (128 + the signal) once the disk is detached. The signal comes as soon as the
    path is read: the hold is armed by then."""
    p = holder("old-web 0")
    out = _lines(p.stdout)
    assert out.get(timeout=30).endswith("disk attached\n")
    assert out.get(timeout=30).startswith("/dev/xvda")
    p.send_signal(sig)
    code = p.wait(timeout=30)
    assert p.stderr is not None
    err = p.stderr.read()
    assert "Traceback" not in err, err
    assert code == (0 if sig == signal.SIGINT else 128 + sig), err
    assert "Detached." in err
    assert inspection_vbds(sim) == []
