"""Block attach in the app, keys only, on the simulator: the Block Attach view lists
every VM's devices live; the attach dialog makes a new disk and hot-plugs it into a
running guest; a device is detached (the disk stays) and plugged from a VM's Disks
tab; a disk inspected from dom0 is detached when the app exits, and one an
interrupted run left behind is detached when the next run starts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import Input, OptionList, Select

from tests.conftest import wait_for, xenapi_session
from tests.ui.dialogs import confirm_plan, pick
from tests.ui.harness import Ui, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.attach import AttachDialog
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.forms import PickOne
from xsctl.ui.views.block import BlockView
from xsctl.ui.views.disks import DisksView
from xsctl.ui.widgets.devices import DeviceTable
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi import block
from xsctl.xapi.client import Client


@pytest.fixture(autouse=True)
def keeps_every_disk(sim: Simulator) -> Iterator[None]:
    """Nothing here deletes a disk: every VDI the pool held is still there."""
    before = set(sim.store.all("VDI"))
    yield
    assert before <= set(sim.store.all("VDI"))


def vbds_of(sim: Simulator, vm_name: str) -> dict[str, dict[str, Any]]:
    vm = next(ref for ref, r in sim.store.all("VM").items() if r["name_label"] == vm_name)
    return {ref: r for ref, r in sim.store.all("VBD").items() if r["VM"] == vm}


def cell(table: VirtualTable, key: str, column: str) -> str:
    i = [c.key for c in table.columns].index(column)
    return table.rows[key].cells[i][0]


async def open_block(ui: Ui) -> DeviceTable:
    await ui.press("8")
    view = ui.main.query_one(BlockView)
    await ui.until(lambda: view.built and view.table.rows, what="the Block Attach rows")
    return view.query_one(DeviceTable)


async def filter_to(ui: Ui, text: str) -> None:
    await ui.press("slash")
    await ui.type(text)
    await ui.press("enter")


async def test_attach_a_new_disk_to_a_running_vm_then_detach_it(sim: Simulator,
                                                               client: Client) -> None:
    async with running(sim, client, size=(120, 36)) as ui:
        table = await open_block(ui)
        await filter_to(ui, "web-01")
        assert {cell(table, k, "vm") for k in table.order} == {"web-01"}
        before = set(vbds_of(sim, "web-01"))
        await ui.press("A")
        dlg: AttachDialog = await ui.modal(AttachDialog)
        assert "running, hot-plug: yes" in text_of(dlg.query_one(".dialog-title"))
        disks = dlg.query_one("#attach-disks", OptionList)
        # the disks it cannot take say why: web-02's is attached read-write to web-02
        listing = "\n".join(str(disks.get_option_at_index(i).prompt)
                            for i in range(disks.option_count))
        assert "web-02 0" in listing and "in use: web-02 has it attached read-write" in listing
        assert disks.highlighted == 0  # "+ A new disk"
        size = dlg.query_one("#attach-size", Input)
        size.focus()
        await ui.press("end", "ctrl+u")
        await ui.type("5G")
        await ui.until(lambda: "Attach a new 5 GiB disk" in text_of(dlg.query_one("#attach-plan")))
        plan = text_of(dlg.query_one("#attach-plan"))
        assert "VDI.create → VBD.create → Async.VBD.plug" in plan
        assert "xe vbd-plug" in plan and "Hot-plugged" in plan
        await ui.press("ctrl+s")
        await ui.back_to_main()
        new = await ui.until(lambda: set(vbds_of(sim, "web-01")) - before, what="the new VBD")
        (vbd,) = new
        await ui.until(lambda: vbd in table.rows and "● plugged" in cell(table, vbd, "state"),
                       what="the new device plugged")
        assert cell(table, vbd, "position") == "1 xvdb"
        assert "web-01 1" in cell(table, vbd, "disk")
        vdi = sim.store.all("VBD")[vbd]["VDI"]
        # detach it: the confirmation says the disk stays
        table.move_to(vbd)
        await ui.press("x")
        shown = await confirm_plan(ui)
        assert "Async.VBD.unplug" in shown and "VBD.destroy" in shown
        assert "itself stays, with its data" in shown
        await ui.until(lambda: vbd not in table.rows, what="the device gone")
        assert vdi in sim.store.all("VDI")  # the disk itself is still there


async def test_a_boot_disk_the_guest_holds_refuses_a_clean_detach(sim: Simulator,
                                                                  client: Client) -> None:
    async with running(sim, client) as ui:
        table = await open_block(ui)
        await filter_to(ui, "web-03")
        boot = next(k for k in table.order if cell(table, k, "position") == "0 xvda")
        table.move_to(boot)
        await ui.press("x")
        await confirm_plan(ui)
        await ui.until_said("refused to release the device", "error")
        assert sim.store.all("VBD")[boot]["currently_attached"]  # nothing changed
        # the forced variant unplugs it after the clean refusal, with a warning first
        await ui.press("X")
        dlg = await ui.modal(ConfirmPlan)
        shown = text_of(dlg.query_one(".plan"))
        assert "if that fails: Async.VBD.unplug_force" in shown.replace("\n", " ")
        assert "pulled from under it" in shown
        await ui.press("escape")  # not this time
        await ui.back_to_main()
        assert boot in sim.store.all("VBD")


async def test_the_disks_tab_is_a_table_whose_rows_act(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(150, 36)) as ui:
        await ui.open_vms()
        await ui.go_to("monitor-01")
        disks = ui.main.query_one("#vm-disk-table", DeviceTable)
        await ui.until(lambda: len(disks.rows) == 3, what="monitor-01's three devices")
        deactivated = next(k for k in disks.rows if cell(disks, k, "position").startswith("1"))
        assert "○ unplugged" in cell(disks, deactivated, "state")
        disks.focus()
        disks.move_to(deactivated)
        await ui.press("p")  # plug (activate) needs no confirmation
        await ui.until(lambda: "● plugged" in cell(disks, deactivated, "state"),
                       what="the disk plugged")
        assert sim.store.all("VBD")[deactivated]["currently_attached"]
        # the actions menu of a device lists the device's operations, with reasons
        await ui.press("a")
        menu: PickOne[str] = await ui.modal(PickOne)
        entries = {c.value: c.reason for c in menu.choices}
        assert entries["vbd.plug"] is not None  # plugged already
        assert entries["vbd.unplug"] is None
        assert entries["vbd.eject"]  # not a CD drive
        await ui.press("escape")


async def test_a_read_only_disk_goes_to_two_pvh_guests(sim: Simulator, client: Client) -> None:
    """The same (not sharable) disk, read-only in two running PVH guests: the second
    attach can only be read-only, and the dialog says so."""
    x = xenapi_session(sim)
    try:
        nfs = x.xenapi.SR.get_by_name_label("NFS storage")[0]
        vdi = x.xenapi.VDI.create({
            "name_label": "shared-data", "name_description": "", "SR": nfs,
            "virtual_size": str(2 * 1024**3), "type": "user", "sharable": False,
            "read_only": False, "other_config": {}, "xenstore_data": {}, "sm_config": {},
            "tags": []})
    finally:
        x.xenapi.session.logout()
    async with running(sim, client) as ui:
        table = await open_block(ui)
        for vm, mode in (("k8s-node-01", "RO"), ("k8s-node-02", "RO")):
            await filter_to(ui, vm)
            await ui.press("A")
            dlg: AttachDialog = await ui.modal(AttachDialog)
            ol = dlg.query_one("#attach-disks", OptionList)
            i = next(i for i in range(ol.option_count)
                     if str(ol.get_option_at_index(i).prompt).startswith("shared-data"))
            ol.highlighted = i
            if vm == "k8s-node-01":
                dlg.query_one("#attach-mode", Select).value = "RO"
            else:
                assert "read-only" in str(ol.get_option_at_index(i).prompt)
            await ui.until(lambda d=dlg: "shared-data to" in text_of(d.query_one("#attach-plan")))
            assert f", {mode})" in text_of(dlg.query_one("#attach-plan"))
            await ui.press("ctrl+s")
            await ui.back_to_main()
            await ui.until(lambda v=vm: any(r["VDI"] == vdi and r["currently_attached"]
                                            for r in vbds_of(sim, v).values()),
                           what=f"shared-data plugged in {vm}")
            await ui.press("escape")  # clear the filter
        both = [r for r in sim.store.all("VBD").values() if r["VDI"] == vdi]
        assert sorted(r["mode"] for r in both) == ["RO", "RO"]
        assert table.rows


async def test_an_inspection_is_detached_when_the_app_exits(sim: Simulator,
                                                            client: Client) -> None:
    disk = next(ref for ref, r in sim.store.all("VDI").items()
                if r["name_label"] == "web-staging 0")
    async with running(sim, client, size=(120, 36)) as ui:
        await ui.press("5")
        view = ui.main.query_one(DisksView)
        await ui.until(lambda: view.table.rows, what="the disks")
        await ui.until(lambda: view.show_object(disk), what="web-staging 0")
        # a busy xapi: each event.from answer comes late, so the app may leave before
        # its cache has seen the device it made
        sim.faults.event_delay = 1.5
        await ui.press("I")
        await pick(ui, "xcp-ng-01")  # whose control domain
        await pick(ui, "read-only")
        await ui.until_said("appears as /dev/xvd", timeout=10)
        made = await ui.until(lambda: [r for r in sim.store.all("VBD").values()
                                       if r["VDI"] == disk and r["currently_attached"]
                                       and block.TAG in r["other_config"]],
                              what="the tagged VBD in dom0")
        assert made[0]["mode"] == "RO"
        assert made[0]["other_config"][block.TAG] == block.owner_tag()
    sim.faults.event_delay = 0.0
    # the app has exited: the inspection is gone, the disk is not
    assert not [r for r in sim.store.all("VBD").values() if r["VDI"] == disk
                and block.TAG in r["other_config"]]
    assert disk in sim.store.all("VDI")


async def test_a_run_that_died_leaves_nothing_attached_after_the_next(sim: Simulator,
                                                                      client: Client) -> None:
    """A process of this machine tagged a dom0 attach and died without detaching it
    (killed): the next run of the app detaches it as the pool is read."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    tag = block.owner_tag(int(dead.stdout))  # its start time is gone with it
    x = xenapi_session(sim)
    try:
        master = x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0])
        dom0 = next(v for v in x.xenapi.host.get_resident_VMs(master)
                    if x.xenapi.VM.get_is_control_domain(v))
        disk = x.xenapi.VDI.get_by_name_label("web-staging 0")[0]
        vbd = x.xenapi.VBD.create({
            "VM": dom0, "VDI": disk, "userdevice": "0", "bootable": False, "mode": "RO",
            "type": "Disk", "unpluggable": True, "empty": False,
            "other_config": {block.TAG: tag}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}})
        x.xenapi.VBD.plug(vbd)
    finally:
        x.xenapi.session.logout()
    # this client read the pool before the leftover was made: it comes in by its events
    # once the app follows them, and is detached then
    async with running(sim, client) as ui:
        await ui.until_said("interrupted run left attached")
        await ui.until(lambda: vbd not in sim.store.all("VBD"), what="the leftover detached")
    wait_for(lambda: disk in sim.store.all("VDI"))
