"""The Networks view on the demo pool, driven by keys: what it lists (kinds, NICs,
VLAN tags, bonds, the management network, VMs attached) kept live from changes made
through xapi, and every network action through its dialogs to the simulator's
database, each refusal saying why with nothing sent."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console
from textual import events
from textual.widgets import Label, SelectionList

from tests.conftest import xenapi_session
from tests.ui.dialogs import answer_text, confirm_plan, fill, pick
from tests.ui.harness import Ui, in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.commands import XsctlCommands
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.forms import FieldsForm, PickMany, PickOne
from xsctl.ui.views.networks import NetworksView
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client

ETH1 = "Pool-wide network associated with eth1"
ETH0 = "Pool-wide network associated with eth0"
DMZ = "DMZ (VLAN 100)"


def view(ui: Ui) -> NetworksView:
    return ui.main.query_one(NetworksView)


def net_ref(sim: Simulator, name: str) -> str:
    refs = [r for r, row in sim.store.all("network").items() if row["name_label"] == name]
    assert len(refs) == 1, (name, refs)
    return refs[0]


def cells(table: VirtualTable, ref: str) -> dict[str, str]:
    return {c.key: text for c, (text, _) in zip(table.columns, table.rows[ref].cells,
                                                strict=True)}


def state(sim: Simulator) -> dict[str, Any]:
    """Everything a network action may change."""
    st = sim.store
    return {cls: {r: dict(row) for r, row in st.all(cls).items()}
            for cls in ("network", "PIF", "VLAN", "Bond", "VIF")}


def without_allowed(s: dict[str, Any]) -> dict[str, Any]:
    return {cls: {r: {k: v for k, v in row.items() if k != "allowed_operations"}
                  for r, row in rows.items()} for cls, rows in s.items()}


def pane_text(v: NetworksView) -> str:
    """All the detail pane holds, laid out 100 wide (the pane scrolls; a test must
    not depend on how much of it is in view)."""
    console = Console(width=100, record=True, file=io.StringIO())
    for label in v.detail.query(".side-detail-title, .side-detail-body").results(Label):
        console.print(label.content)
    return console.export_text()


async def open_networks(ui: Ui) -> VirtualTable:
    ui.main.action_show_view("networks")
    await ui.handled()
    table = view(ui).table
    await ui.until(lambda: table.rows, what="the network rows")
    assert ui.app.focused is table
    return table


async def go(ui: Ui, name: str) -> None:
    table = view(ui).table
    table.focus()
    table.move_to(net_ref(ui.sim, name))
    await ui.handled()
    assert table.cursor_key == net_ref(ui.sim, name)


async def test_lists_kinds_tags_management_and_vms_live(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        table = await open_networks(ui)
        eth0 = cells(table, net_ref(sim, ETH0))
        assert eth0["name"] == f"{ETH0} (mgmt)" and eth0["kind"] == "NIC"
        assert eth0["nics"] == "eth0" and eth0["plugged"] == "3/3"
        dmz = cells(table, net_ref(sim, DMZ))
        assert (dmz["kind"], dmz["nics"], dmz["vlan"]) == ("VLAN", "eth0.100", "100")
        assert dmz["vms"] == "1"
        internal = cells(table, net_ref(sim, "Host internal management network"))
        assert internal["kind"] == "xapi's" and internal["nics"] == "none"
        # made and renamed through xapi: the row follows
        x = xenapi_session(sim)
        try:
            lab = await in_thread(lambda: x.xenapi.network.create({
                "name_label": "lab", "name_description": "", "MTU": "9000", "other_config": {}}))
            await ui.until(lambda: lab in table.rows, what="the new network's row")
            assert cells(table, lab)["kind"] == "internal"
            assert cells(table, lab)["mtu"] == "9000"
            await in_thread(lambda: x.xenapi.network.set_name_label(lab, "lab-2"))
            await ui.until(lambda: cells(table, lab)["name"] == "lab-2", what="the new name")
        finally:
            x.xenapi.session.logout()
        # the detail: each host's PIF and the VIFs
        view(ui).detail_open = True
        view(ui).apply_detail()
        await go(ui, DMZ)
        body = pane_text(view(ui))
        assert "eth0.100" in body and "proxy-01" in body and "xcp-ng-02" in body


async def test_create_internal_network(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await open_networks(ui)
        await ui.press("n")
        form = await ui.modal(FieldsForm)
        await fill(ui, form, name="backplane", description="cluster heartbeat", mtu="9000")
        await ui.press("enter")
        await ui.until_said("done")
        ref = net_ref(sim, "backplane")
        row = sim.store.get(ref, "network")
        assert row["MTU"] == 9000 and row["PIFs"] == []
        assert row["name_description"] == "cluster heartbeat"
        await ui.until(lambda: ref in view(ui).table.rows, what="its row")


async def test_vlan_on_a_nic_then_delete_it(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await open_networks(ui)
        await go(ui, ETH1)
        await ui.press("v")
        form = await ui.modal(FieldsForm)
        await fill(ui, form, tag="200", name="storage")
        await ui.press("enter")
        await ui.until_said("done")
        net = net_ref(sim, "storage")
        vlans = [v for v in sim.store.all("VLAN").values() if v["tag"] == 200]
        assert len(vlans) == 3
        assert all(sim.store.get(v["untagged_PIF"], "PIF")["network"] == net for v in vlans)
        # deleting it takes the VLANs down first
        await ui.until(lambda: net in view(ui).table.rows
                       and view(ui).table.rows[net].cells[1][0] == "VLAN", what="its row")
        await go(ui, "storage")
        await ui.press("delete")
        shown = await confirm_plan(ui)
        assert shown.index("VLAN.destroy") < shown.index("network.destroy")
        await ui.until(lambda: not sim.store.exists(net), what="the network gone")
        assert not [v for v in sim.store.all("VLAN").values() if v["tag"] == 200]


async def test_bond_then_take_it_apart(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await open_networks(ui)
        eth0_pifs = set(sim.store.get(net_ref(sim, ETH0), "network")["PIFs"])
        await ui.press("b")
        dlg = await ui.modal(PickMany)
        sl = dlg.query_one(SelectionList)
        for value in (net_ref(sim, ETH0), net_ref(sim, ETH1)):
            sl.select(value)
        await ui.handled()
        await ui.press("tab", "enter")
        await pick(ui, "lacp")
        await answer_text(ui, "bond-a")
        plan = await ui.modal(ConfirmPlan)
        shown = text_of(plan.query_one(".plan"))
        assert "Bond.create" in shown and "management interface" in shown
        await ui.press("y")
        await ui.until_said("done", timeout=10)
        net = net_ref(sim, "bond-a")
        bonds = list(sim.store.all("Bond").values())
        assert len(bonds) == 3 and {b["mode"] for b in bonds} == {"lacp"}
        masters = [sim.store.get(b["master"], "PIF") for b in bonds]
        assert all(m["network"] == net and m["management"] for m in masters)
        assert all(not sim.store.get(p, "PIF")["management"] for p in eth0_pifs)
        await ui.until(lambda: view(ui).table.rows.get(net) is not None
                       and cells(view(ui).table, net)["bond"] == "lacp", what="the bond row")
        await go(ui, "bond-a")
        # its mode changed: the current one cannot be picked, the plan names each host
        await ui.press("M")
        modes = await ui.modal(PickOne)
        assert next(c.reason for c in modes.choices if c.value == "lacp") == "its mode now"
        await pick(ui, "balance-slb")
        shown = " ".join((await confirm_plan(ui)).split())
        assert shown.count("Bond.set_mode(the bond on xcp-ng-0") == 3
        await ui.until(lambda: cells(view(ui).table, net)["bond"] == "balance-slb",
                       what="the new mode in its row")
        assert {b["mode"] for b in sim.store.all("Bond").values()} == {"balance-slb"}
        await ui.press("B")
        await confirm_plan(ui)
        await ui.until(lambda: not sim.store.all("Bond"), what="the bonds gone", timeout=10)
        assert all(sim.store.get(p, "PIF")["management"] for p in eth0_pifs)
        assert sim.store.exists(net)  # the network stays


async def test_rename_and_describe(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await open_networks(ui)
        await go(ui, ETH1)
        await ui.press("r")
        await answer_text(ui, "storage-net")
        # the rename runs off the UI thread: wait for the simulator to have it
        await ui.until(lambda: any(r["name_label"] == "storage-net"
                                   for r in sim.store.all("network").values()),
                       what="the network renamed")
        ref = net_ref(sim, "storage-net")
        await ui.until(lambda: cells(view(ui).table, ref)["name"] == "storage-net",
                       what="the new name")
        await ui.press("e")
        await answer_text(ui, "iSCSI only")
        await ui.until(lambda: sim.store.get(ref, "network")["name_description"] == "iSCSI only",
                       what="the description")


REFUSED = [
    ("delete", DMZ, "Cannot delete", "it has VIFs of proxy-01"),
    ("delete", ETH0, "Cannot delete", "the management interface of xcp-ng-01"),
    ("delete", ETH1, "Cannot delete", "it is a NIC's own network"),
    ("delete", "Host internal management network", "Cannot delete",
     "xapi's host-internal management network"),
    ("v", DMZ, "Cannot add a vlan", "it is a VLAN itself"),
    ("v", "Host internal management network", "Cannot add a vlan",
     "host-internal management network"),
    ("V", ETH1, "Cannot remove the vlan", "it is not a VLAN"),
    ("B", ETH1, "Cannot take the bond apart", "it is not a bond"),
]


async def test_refusals_say_why_and_change_nothing(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await open_networks(ui)
        before = without_allowed(state(sim))
        mark = ui.writes.mark()
        for key, name, title, why in REFUSED:
            ui.toasts.clear()
            await go(ui, name)
            await ui.press(key)
            toast = await ui.until_said(title, "error")
            assert why in toast.message, (key, name, toast.message)
            assert ui.app.screen is ui.main
        # a tag already used on the NIC: said in the form, nothing sent
        await go(ui, ETH0)
        await ui.press("v")
        form = await ui.modal(FieldsForm)
        await fill(ui, form, tag="100", name="again")
        await ui.press("enter")
        await ui.until(lambda: "VLAN 100 is on eth0 already" in str(
            form.query_one("#error").render()), what="the form's error")
        await ui.press("escape")
        await ui.back_to_main()
        await ui.settle()
        assert ui.writes.tasks(mark) == []
        assert without_allowed(state(sim)) == before


async def test_readable_at_80x24(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        await open_networks(ui)
        screen = ui.screen_text()
        assert "DMZ (VLAN 100)" in screen and "VLAN" in screen
        assert "Pool-wide network associated with eth0 (mgmt)" in screen


async def test_actions_menu_and_palette_offer_the_new_network(sim: Simulator,
                                                             client: Client) -> None:
    """The pool's operations act on no row: the actions menu offers them first, with
    their keys, and runs them on the pool; the palette has them too."""
    async with running(sim, client) as ui:
        await open_networks(ui)
        await go(ui, ETH1)
        await ui.press("a")
        menu: PickOne[str] = await ui.modal(PickOne)
        firsts = [(c.value, c.detail) for c in menu.choices[:2]]
        assert firsts == [("network.create", "[n]"), ("bond.create", "[b]")]
        offered = {c.value: c.reason for c in menu.choices}
        assert offered["vlan.create"] is None and offered["network.rename"] is None
        assert offered["network.destroy"] == "it is a NIC's own network: it goes when the NIC does"
        await pick(ui, "New internal network…")
        form = await ui.modal(FieldsForm)
        await fill(ui, form, name="from-the-menu")
        await ui.press("enter")
        await ui.until_said("done")
        net_ref(sim, "from-the-menu")
        # the palette finds the new bond and opens its NIC picker
        provider = XsctlCommands(ui.main)
        hits = [h async for h in provider.search("network: new bond")]
        assert hits[0].text == "network: new bond…"
        hits[0].command()
        picker = await ui.modal(PickMany)
        assert {c.label for c in picker.choices} == {"eth0", "eth1"}
        await ui.press("escape")
        await ui.back_to_main()


async def test_keys_typed_in_one_burst_follow_tab_into_the_next_field(
        sim: Simulator, client: Client) -> None:
    """Keys that arrive together (a paste, a fast typist over ssh) after a tab go to
    the field the tab moves to: the app hands keys to the focused widget's own queue,
    so a tab handled there moved the focus only after the next keys had gone to the
    old field (the letters were lost in the tag's digits-only field)."""
    async with running(sim, client) as ui:
        await open_networks(ui)
        await go(ui, ETH1)
        await ui.press("v")
        form = await ui.modal(FieldsForm)
        for ch in "200\tlab":
            key = "tab" if ch == "\t" else ch
            ui.app.post_message(events.Key(key, None if ch == "\t" else ch))
        await ui.handled()
        assert form.values()["tag"] == "200"
        assert form.values()["name"] == "lab"
