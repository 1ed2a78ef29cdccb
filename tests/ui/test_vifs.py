"""A VM's network interfaces in the app, keys only, on the simulator: the Network tab
is a table of VIFs (device, network, MAC, plugged, locking, the guest's addresses,
the static setting), live; w adds a VIF (network, locking mode, MAC, a static address
where the guest takes one), p and u plug and unplug, x removes, i sets a static IPv4
address; each refusal says why in one toast and sends nothing. The Network
Interfaces view lists every VM's VIFs and acts on them with the same keys."""

from __future__ import annotations

from typing import Any

from tests.ui.dialogs import confirm_plan, fill, pick
from tests.ui.harness import Ui, running
from xsctl.sim import Simulator
from xsctl.ui.modals.forms import FieldsForm, PickOne
from xsctl.ui.views.vifs import VifsView
from xsctl.ui.widgets.table import VirtualTable
from xsctl.ui.widgets.vifs import VifTable
from xsctl.xapi.client import Client

ETH1 = "Pool-wide network associated with eth1"


def vifs_of(sim: Simulator, vm_name: str) -> dict[str, dict[str, Any]]:
    """The VM's VIFs by device, as the simulator holds them."""
    vm = next(ref for ref, r in sim.store.all("VM").items()
              if r["name_label"] == vm_name and not r["is_a_template"])
    return {r["device"]: {"ref": ref, **r} for ref, r in sim.store.all("VIF").items()
            if r["VM"] == vm}


def cell(table: VirtualTable, key: str, column: str) -> str:
    i = [c.key for c in table.columns].index(column)
    return table.rows[key].cells[i][0]


async def network_tab(ui: Ui, vm: str, rows: int) -> VifTable:
    """The VM's Network tab, its table focused."""
    await ui.open_vms()
    await ui.go_to(vm)
    table = ui.main.query_one("#vm-vif-table", VifTable)
    await ui.until(lambda: len(table.rows) == rows, what=f"{vm}'s {rows} VIFs")
    table.focus()
    await ui.handled()
    return table


async def test_the_network_tab_plugs_unplugs_and_explains(sim: Simulator,
                                                          client: Client) -> None:
    async with running(sim, client, size=(150, 36)) as ui:
        table = await network_tab(ui, "monitor-01", 2)
        probe = vifs_of(sim, "monitor-01")["1"]["ref"]
        assert cell(table, probe, "state") == "○ unplugged"
        assert cell(table, probe, "network") == ETH1
        assert cell(table, probe, "ips") == "–"
        first = vifs_of(sim, "monitor-01")["0"]["ref"]
        assert cell(table, first, "ips").startswith("10.0.")
        table.move_to(probe)
        await ui.press("p")  # plug needs no confirmation
        await ui.until(lambda: cell(table, probe, "state") == "● plugged", what="plugged")
        assert sim.store.get(probe, "VIF")["currently_attached"]
        # the guest reports an address on it, and the row shows it
        await ui.until(lambda: cell(table, probe, "ips").startswith("192.168.11."),
                       what="the guest's address on the new interface")
        # the actions menu of a VIF: its operations, with reasons
        await ui.press("a")
        menu: PickOne[str] = await ui.modal(PickOne)
        entries = {c.value: c.reason for c in menu.choices}
        assert entries["vif.plug"] is not None  # plugged already
        assert entries["vif.unplug"] is None
        assert "does not take static addresses" in str(entries["vif.configure-ipv4"])
        await ui.press("escape")
        await ui.back_to_main()
        table.focus()
        # unplug interrupts the guest: confirmed with its plan
        await ui.press("u")
        shown = await confirm_plan(ui)
        assert "Async.VIF.unplug(monitor-01 VIF 1)" in shown and "xe vif-unplug uuid=" in shown
        await ui.until(lambda: cell(table, probe, "state") == "○ unplugged", what="unplugged")


async def test_refusals_say_why_and_send_nothing(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(150, 36)) as ui:
        table = await network_tab(ui, "web-01", 1)
        vif = vifs_of(sim, "web-01")["0"]["ref"]
        table.move_to(vif)
        mark = ui.writes.mark()
        await ui.press("p")
        toast = await ui.until_said("Cannot plug (activate) web-01 VIF 0", "error")
        assert "already attached" in toast.message and "DEVICE_ALREADY_ATTACHED" in toast.message
        await ui.press("i")
        toast = await ui.until_said("Cannot static ipv4 web-01 VIF 0", "error")
        assert "does not take static addresses" in toast.message
        assert ui.app.screen is ui.main  # no dialog was opened
        await ui.settle()
        assert ui.writes.since(mark) == [] and ui.writes.tasks(mark) == []


async def test_add_a_vif_and_remove_it(sim: Simulator, client: Client) -> None:
    """w on the VM: the network, then the locking mode, then a form with the first
    free device and the static address shown as not settable (a Linux guest)."""
    async with running(sim, client, size=(150, 36)) as ui:
        table = await network_tab(ui, "web-01", 1)
        await ui.press("w")
        dlg: PickOne[str] = await ui.modal(PickOne)
        reasons = {c.label: c.reason for c in dlg.choices}
        assert "not for guests" in str(reasons["Host internal management network"])
        await pick(ui, ETH1)
        await pick(ui, "unlocked")
        form: FieldsForm = await ui.modal(FieldsForm)
        assert form.query_one("#f-device").value == "1"  # type: ignore[attr-defined]
        assert form.query_one("#f-ipv4").disabled
        await fill(ui, form, mac="02:aa:bb:cc:dd:02")
        await ui.press("enter")
        await ui.back_to_main()
        await ui.until(lambda: "1" in vifs_of(sim, "web-01")
                       and vifs_of(sim, "web-01")["1"]["currently_attached"],
                       what="the new VIF, hot-plugged")
        new = vifs_of(sim, "web-01")["1"]
        assert (new["MAC"], new["locking_mode"], new["network"]) == (
            "02:aa:bb:cc:dd:02", "unlocked", next(
                r for r, n in sim.store.all("network").items() if n["name_label"] == ETH1))
        await ui.until(lambda: new["ref"] in table.rows, what="its row")
        assert cell(table, new["ref"], "locking") == "unlocked"
        # l changes its locking mode: disabled stops the guest's traffic, so the plan
        # says so and is confirmed; the mode it has is not offered
        table.focus()
        table.move_to(new["ref"])
        await ui.press("l")
        modes: PickOne[str] = await ui.modal(PickOne)
        assert next(c.reason for c in modes.choices if c.value == "unlocked") == "its mode now"
        await pick(ui, "disabled")
        shown = " ".join((await confirm_plan(ui)).split())
        assert "VIF.set_locking_mode(web-01 VIF 1, 'disabled')" in shown
        assert "web-01 loses its traffic on this interface now" in shown
        await ui.until(lambda: cell(table, new["ref"], "locking") == "disabled",
                       what="the new mode in its row")
        assert sim.store.get(new["ref"], "VIF")["locking_mode"] == "disabled"
        # x removes it: unplugged first, confirmed with the plan
        table.focus()
        table.move_to(new["ref"])
        await ui.press("x")
        shown = await confirm_plan(ui)
        assert "Async.VIF.unplug(web-01 VIF 1)" in shown and "VIF.destroy(web-01 VIF 1)" in shown
        await ui.until(lambda: "1" not in vifs_of(sim, "web-01"), what="the VIF gone")
        await ui.until(lambda: new["ref"] not in table.rows, what="its row gone")


async def test_a_static_address_for_a_windows_guest(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(150, 36)) as ui:
        table = await network_tab(ui, "win-ad-01", 1)
        vif = vifs_of(sim, "win-ad-01")["0"]["ref"]
        table.move_to(vif)
        await ui.press("i")
        await pick(ui, "static")
        form: FieldsForm = await ui.modal(FieldsForm)
        await fill(ui, form, address="10.0.9.7", gateway="10.0.9.1")
        await ui.handled()
        assert "no prefix length" in str(form.query_one("#error").render())
        await fill(ui, form, address="10.0.9.7/24")
        await ui.press("enter")
        await ui.back_to_main()
        await ui.until(lambda: sim.store.get(vif, "VIF")["ipv4_configuration_mode"] == "Static",
                       what="the static setting")
        assert sim.store.get(vif, "VIF")["ipv4_addresses"] == ["10.0.9.7/24"]
        await ui.until(lambda: cell(table, vif, "static") == "10.0.9.7/24 via 10.0.9.1",
                       what="the setting in the row")
        await ui.until(lambda: cell(table, vif, "ips") == "10.0.9.7", what="the guest's report")


async def test_the_network_interfaces_view(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(150, 36)) as ui:
        view = ui.main.query_one(VifsView)
        ui.main.action_show_view(view.ID)
        await ui.until(lambda: view.built and view.table.rows, what="the rows")
        probe = vifs_of(sim, "monitor-01")["1"]["ref"]
        assert view.show_object(probe)
        await ui.handled()
        assert view.table.cursor_key == probe
        assert cell(view.table, probe, "vm") == "monitor-01"
        await ui.press("p")
        await ui.until(lambda: cell(view.table, probe, "state") == "● plugged", what="plugged")
        # w adds a VIF to the row's VM; a VM left with none has a row that says so
        await ui.press("x")
        await confirm_plan(ui)
        await ui.until(lambda: probe not in view.table.rows, what="removed")
        text = ui.screen_text()
        assert "VIFs of 25 VMs" in text
