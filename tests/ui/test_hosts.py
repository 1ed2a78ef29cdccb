"""The Hosts view on the simulator: every host with its role, state, CPUs, memory,
VMs, NICs and management interface, kept live; maintenance mode with VMs that can
move and one that cannot (refused, naming it, until it is marked to shut down);
a reboot refused while VMs run, then allowed by evacuating first; power on; and the
Status view's host row opening the host here."""

from __future__ import annotations

from typing import Any

from textual.widgets import SelectionList

from tests.conftest import wait_for, xenapi_session
from tests.ui.dialogs import confirm_plan
from tests.ui.harness import Ui, in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.forms import PickMany
from xsctl.ui.views.hosts import HostsView
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client


def hosts_view(ui: Ui) -> HostsView:
    return ui.main.query_one(HostsView)


def host_ref(sim: Simulator, name: str) -> str:
    return next(r for r, h in sim.store.all("host").items() if h["name_label"] == name)


def cells(table: VirtualTable, ref: str) -> dict[str, str]:
    return {c.key: text for c, (text, _) in zip(table.columns, table.rows[ref].cells,
                                                strict=True)}


def pane(view: HostsView) -> str:
    """What the detail pane shows, its lines joined as one text (it wraps)."""
    return " ".join(" ".join(text_of(w).split()) for w in
                    view.detail.query(".side-detail-title, .side-detail-body"))


def guests_on(sim: Simulator, host: str) -> set[str]:
    return {sim.store.get(v, "VM")["name_label"] for v in sim.store.get(host, "host")[
        "resident_VMs"] if not sim.store.get(v, "VM")["is_control_domain"]}


async def open_hosts(ui: Ui, on: str | None = None) -> VirtualTable:
    """The Hosts view from the menu (it has no number key), the cursor on ``on``."""
    ui.main.action_show_view("hosts")
    await ui.handled()
    view = hosts_view(ui)
    table = view.table
    await ui.until(lambda: table.rows, what="the host rows")
    assert ui.app.focused is table
    if on is not None:
        table.move_to(host_ref(ui.sim, on))
        await ui.handled()
    return table


async def test_every_host_with_its_facts_live(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(200, 60)) as ui:
        table = await open_hosts(ui, on="xcp-ng-01")
        assert len(table.rows) == 3
        first = host_ref(sim, "xcp-ng-01")
        row = cells(table, first)
        assert (row["name"], row["role"], row["state"]) == ("xcp-ng-01", "master", "enabled")
        assert row["vms"] == str(len(guests_on(sim, first))) and row["cpus"] == "16"
        assert cells(table, host_ref(sim, "xcp-ng-02"))["role"] == "member"
        detail = pane(hosts_view(ui))
        assert "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz: 1 socket, 16 CPUs" in detail
        assert "Control domain" in detail and "256.0 GiB" in detail
        assert all(v in detail for v in guests_on(sim, first))
        # NICs from PIF_metrics, the management interface from its PIF
        assert "up, 10 Gbit/s full duplex" in detail and "Intel Corporation" in detail
        assert "10.0.0.11" in detail and "255.255.255.0" in detail and "Static" in detail
        # another admin disables a host, then marks it in maintenance mode as
        # XenCenter does: its row and detail follow
        x = await in_thread(lambda: xenapi_session(sim))
        try:
            await in_thread(lambda: x.xenapi.host.disable(first))
            await ui.until(lambda: cells(table, first)["state"] == "disabled",
                           what="the host disabled")
            await ui.until(lambda: "Exit maintenance mode" in pane(hosts_view(ui)),
                           what="exit maintenance offered")
            await in_thread(lambda: x.xenapi.host.add_to_other_config(
                first, "MAINTENANCE_MODE", "true"))
            await ui.until(lambda: cells(table, first)["state"] == "maintenance",
                           what="the host in maintenance")
        finally:
            await in_thread(x.xenapi.session.logout)


async def test_maintenance_mode_with_vms_that_can_and_cannot_move(
        sim: Simulator, client: Client) -> None:
    """dns-02 has its disk on xcp-ng-01's local storage: the plan is refused, naming
    it and why, until it is marked to shut down; the others move where the plan
    said, and the host comes back with exit maintenance mode."""
    host = host_ref(sim, "xcp-ng-01")
    async with running(sim, client) as ui:
        await open_hosts(ui, on="xcp-ng-01")
        before = {v: sim.store.get(ui.ref(v), "VM")["resident_on"] for v in guests_on(sim, host)}
        mark = ui.writes.mark()
        await ui.press("m")
        chooser: PickMany = await ui.modal(PickMany)
        assert [c.label for c in chooser.choices] == ["dns-02"]
        assert "Local storage on xcp-ng-01" in chooser.choices[0].detail
        await ui.pilot.click("#ok")  # nothing marked
        toast = await ui.until_said("Cannot enter maintenance mode xcp-ng-01", "error")
        assert "dns-02 (its disk is on Local storage on xcp-ng-01" in toast.message
        await ui.back_to_main()
        await ui.settle()
        assert ui.writes.since(mark) == []  # nothing changed
        assert sim.store.get(host, "host")["enabled"]
        # again, marking dns-02
        await ui.press("m")
        chooser = await ui.modal(PickMany)
        await ui.press("space")
        assert chooser.query_one(SelectionList).selected == [ui.ref("dns-02")]
        await ui.press("enter")  # as the hint says: enter goes on, the mark stays
        shown = " ".join((await confirm_plan(ui)).split())
        assert "host.disable(xcp-ng-01)" in shown and "VM.clean_shutdown(dns-02)" in shown
        assert "host.assert_can_evacuate(xcp-ng-01)" in shown
        assert "Async.host.evacuate(xcp-ng-01)" in shown
        moves = {v: t for v, t in (m.split(" → ") for m in shown.split(
            "now): ")[1].split(".")[0].split("; "))}
        assert set(moves) == set(before) - {"dns-02"}
        await ui.until(lambda: not guests_on(sim, host) and not sim.store.get(
            host, "host")["enabled"], timeout=10, what="the host emptied and disabled")
        assert sim.store.get(ui.ref("dns-02"), "VM")["power_state"] == "Halted"
        for vm, target in moves.items():  # where the plan said
            assert ui.host_name(sim.store.get(ui.ref(vm), "VM")["resident_on"]) == target
        table = hosts_view(ui).table
        await ui.until(lambda: cells(table, host)["state"] == "maintenance",
                       what="the row in maintenance")
        # marked as XenCenter marks it, with the VMs that left (by UUID)
        oc = sim.store.get(host, "host")["other_config"]
        uuid = {v: sim.store.get(ui.ref(v), "VM")["uuid"] for v in before}
        assert oc["MAINTENANCE_MODE"] == "true"
        assert sorted(oc["MAINTENANCE_MODE_EVACUATED_VMS_MIGRATED"].split(",")) == sorted(
            uuid[v] for v in moves)
        assert oc["MAINTENANCE_MODE_EVACUATED_VMS_HALTED"] == uuid["dns-02"]
        await ui.press("d")  # the detail pane, folded away at 80x24
        await ui.until(lambda: f"Moved off in maintenance mode ({len(before)})" in pane(
            hosts_view(ui)), what="the VMs that left, in the detail pane")
        assert "dns-02 (started here)" in pane(hosts_view(ui))
        await ui.press("d")
        # exit maintenance mode: the VMs that left are offered back; two are marked
        await ui.press("e")
        chooser = await ui.modal(PickMany)
        assert {c.label for c in chooser.choices} == set(before)
        halted = next(c for c in chooser.choices if c.label == "dns-02")
        assert halted.detail == "started here" and halted.reason is None
        migrated = sorted(moves)[0]
        assert next(c.detail for c in chooser.choices if c.label == migrated) == (
            f"migrated back from {moves[migrated]}")
        marks = chooser.query_one(SelectionList)
        await ui.press("a")  # every one marked; again, none
        assert set(marks.selected) == {c.value for c in chooser.choices}
        await ui.press("a")
        assert marks.selected == []
        for c in chooser.choices:
            if c.label in ("dns-02", migrated):
                marks.select(c.value)
        await ui.press("enter")  # goes on, the marks kept
        shown = " ".join((await confirm_plan(ui)).split())
        assert f"Async.VM.pool_migrate({migrated}, xcp-ng-01" in shown
        assert "Async.VM.start_on(dns-02, xcp-ng-01" in shown
        assert f"{len(before) - 2} VM(s) that were moved off it stay where they are" in shown
        await ui.until(lambda: guests_on(sim, host) == {"dns-02", migrated}, timeout=10,
                       what="the two brought back")
        assert sim.store.get(host, "host")["enabled"]
        await ui.until(lambda: not {k for k in sim.store.get(host, "host")["other_config"]
                                    if k.startswith("MAINTENANCE_MODE")},
                       what="the marks cleared")
        await ui.until(lambda: cells(table, host)["state"] == "enabled", what="its row")


async def test_reboot_refused_while_vms_run_then_allowed_by_evacuating(
        sim: Simulator, client: Client) -> None:
    host = host_ref(sim, "xcp-ng-03")
    metrics = sim.store.get(host, "host")["metrics"]
    async with running(sim, client) as ui:
        await open_hosts(ui, on="xcp-ng-03")
        mark = ui.writes.mark()
        await ui.press("b")
        toast = await ui.until_said("Cannot reboot xcp-ng-03", "error")
        assert toast.message.startswith("it runs 7 VMs (ci-runner-02, db-02, dns-01 and "
                                        "4 more): evacuate it first")
        assert "\n" not in toast.message
        assert ui.app.screen is ui.main
        await ui.settle()
        assert ui.writes.since(mark) == []
        # evacuate first: the two that cannot move are marked to shut down
        await ui.press("B")
        chooser: PickMany = await ui.modal(PickMany)
        assert {c.label for c in chooser.choices} == {"ci-runner-02", "dns-01"}
        assert any("paused" in c.detail for c in chooser.choices)
        await ui.press("space", "down", "space")
        await ui.pilot.click("#ok")
        shown = " ".join((await confirm_plan(ui)).split())
        assert "VM.hard_shutdown(ci-runner-02)" in shown  # paused: no clean shutdown
        assert shown.index("host.evacuate(xcp-ng-03)") < shown.index("host.reboot(xcp-ng-03)")
        await ui.until(lambda: not sim.store.get(metrics, "host_metrics")["live"], timeout=10,
                       what="the host down")
        table = hosts_view(ui).table
        await ui.until(lambda: sim.store.get(metrics, "host_metrics")["live"]
                       and sim.store.get(host, "host")["enabled"], timeout=10,
                       what="the host back")
        await ui.until(lambda: cells(table, host)["state"] == "enabled", what="its row")
        assert guests_on(sim, host) == set()


async def test_power_on_where_the_power_on_mode_allows(sim: Simulator, client: Client) -> None:
    host = host_ref(sim, "xcp-ng-02")
    metrics = sim.store.get(host, "host")["metrics"]
    x: Any = await in_thread(lambda: xenapi_session(sim))
    try:
        async with running(sim, client) as ui:
            table = await open_hosts(ui, on="xcp-ng-02")
            await ui.press("s")  # it runs
            toast = await ui.until_said("Cannot power on xcp-ng-02", "error")
            assert toast.message == "it is running"

            def down() -> None:
                x.xenapi.host.disable(host)
                for vm in x.xenapi.host.get_vms_which_prevent_evacuation(host):
                    x.xenapi.VM.hard_shutdown(vm)
                x.xenapi.host.shutdown(host)
                wait_for(lambda: not x.xenapi.host_metrics.get_live(metrics)
                         and not x.xenapi.host.get_current_operations(host))

            await in_thread(down)
            await ui.until(lambda: cells(table, host)["state"] == "off", what="its row off")
            await ui.press("s")
            said = await ui.until(lambda: len(ui.said("Cannot power on", "error")) == 2
                                  and ui.said("Cannot power on", "error"), what="a refusal")
            assert "it has no power-on mode set" in said[-1].message
            await in_thread(lambda: x.xenapi.host.set_power_on_mode(host, "wake-on-lan", {}))
            await ui.until(lambda: (client.cache.get("host", host) or {}).get("power_on_mode"),
                           what="the power-on mode in the cache")
            await ui.press("s")
            await ui.until(lambda: sim.store.get(metrics, "host_metrics")["live"],
                           what="the host powered on")
            await ui.until(lambda: cells(table, host)["state"] == "enabled", what="its row")
    finally:
        await in_thread(x.xenapi.session.logout)


async def test_enter_on_a_status_host_row_opens_it_in_the_hosts_view(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        assert ui.main.current_view == "status"
        hosts = ui.main.query_one("#status-hosts", VirtualTable)
        second = host_ref(sim, "xcp-ng-02")
        hosts.focus()
        hosts.move_to(second)
        await ui.press("enter")
        await ui.until(lambda: ui.main.current_view == "hosts", what="the Hosts view")
        assert hosts_view(ui).table.cursor_key == second
