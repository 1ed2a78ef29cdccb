"""The live VM table: kept current from the simulator's events (also changes another
client makes), the cursor and the marks staying on their VMs while rows change and
move, filter as you type, sorting, and multi-select with a bulk action."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, Label

from tests.conftest import xenapi_session
from tests.ui.dialogs import confirm_plan, plan_shown
from tests.ui.harness import Ui, in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.forms import PickOne
from xsctl.xapi.client import Client


def status_line(ui: Ui) -> str:
    return str(ui.vms_view.query_one("#vm-status", Label).render())


def sorted_by(ui: Ui, column: int, reverse: bool = False) -> bool:
    keys = [ui.table.rows[k].sort[column] for k in ui.table.order]
    return keys == sorted(keys, reverse=reverse)


async def test_keys_move_the_cursor(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        table = await ui.open_vms()
        names = ui.names()
        assert names == sorted(names, key=str.lower)
        assert ui.cursor_name == names[0]
        await ui.press("down", "down", "j")
        assert ui.cursor_name == names[3]
        await ui.press("k")
        assert ui.cursor_name == names[2]
        await ui.press("end")
        assert ui.cursor_name == names[-1]
        assert ui.line(names[-1])  # scrolled into view
        await ui.press("home")
        assert ui.cursor_name == names[0]
        await ui.press("pagedown")  # 25 rows fit on a page of this terminal: the last one
        assert ui.cursor_name == names[-1]
        await ui.press("pageup")
        assert table.cursor_key == table.order[0]
        # below 140 columns the detail pane opens on demand (d), and follows the cursor
        assert not ui.main.query_one("#vm-detail").display
        await ui.press("d")
        assert text_of(ui.main.query_one("#vm-detail-title")).strip().startswith(ui.cursor_name or "?")
        await ui.press("down")
        assert text_of(ui.main.query_one("#vm-detail-title")).strip().startswith(ui.cursor_name or "?")
        await ui.press("d")
        assert not ui.main.query_one("#vm-detail").display
        # a click on a row puts the cursor there
        await ui.pilot.click("#vm-table", offset=(3, 5))  # the fifth row
        assert ui.cursor_name == names[4]


async def test_changes_from_another_client_appear_and_the_cursor_and_marks_stay(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.go_to("db-01")
        await ui.press("space")  # mark db-01 (the cursor moves down to db-02)
        await ui.go_to("web-02")
        await ui.press("space")  # mark web-02
        await ui.go_to("mail-01")
        assert ui.marked() == {"db-01", "web-02"}
        index_before = ui.table.order.index(ui.ref("mail-01"))
        other = await in_thread(lambda: xenapi_session(sim))
        x = other.xenapi
        try:
            staging, sandbox, cache = (ui.ref(n) for n in ("web-staging", "dev-sandbox", "cache-01"))
            await in_thread(lambda: x.VM.set_name_label(cache, "zz-cache"))  # re-sorted to the end
            await in_thread(lambda: x.VM.clone(staging, "0-first"))  # a new row on top
            await in_thread(lambda: x.VM.destroy(sandbox))  # a row above goes away
            await in_thread(lambda: x.VM.start(staging, False, False))
        finally:
            await in_thread(lambda: other.xenapi.session.logout())
        await ui.until(lambda: "0-first" in ui.names() and "dev-sandbox" not in ui.names()
                       and ui.names()[-1] == "zz-cache", what="the other client's changes")
        await ui.until(lambda: " Running" in ui.line("web-staging"), what="web-staging running")
        assert ui.cursor_name == "mail-01"
        assert ui.table.order.index(ui.ref("mail-01")) != index_before  # it moved, the cursor with it
        assert ui.marked() == {"db-01", "web-02"}
        assert ui.names()[0] == "0-first"
        assert "25 of 25 VMs" in status_line(ui) and "2 marked" in status_line(ui)


async def test_filter_as_you_type(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.press("slash")
        flt = ui.vms_view.query_one("#vm-filter", Input)
        assert ui.app.focused is flt and flt.display
        cases: list[tuple[str, set[str]]] = [
            ("web", {"web-01", "web-02", "web-03", "web-staging"}),  # name
            ("windows", {"win-ad-01", "win-rds-01", "win-build-01"}),  # tag
            ("suspended", {"k8s-node-03", "legacy-erp"}),  # power state
            ("10.0.1.22", {"web-01"}),  # IP
            ("prod db", {"db-01", "db-02"}),  # every word must match
        ]
        for text, expected in cases:
            await ui.press("end", "ctrl+u")
            await ui.type(text)
            assert set(ui.names()) == expected, text
            assert f"{len(expected)} of 25 VMs matching {text!r}" in status_line(ui)
        # by host: what the simulator has on xcp-ng-03
        host3 = next(r for r, h in sim.store.all("host").items() if h["name_label"] == "xcp-ng-03")
        on3 = {row["name_label"] for row in sim.store.all("VM").values()
               if row["resident_on"] == host3 and not row["is_control_domain"]}
        await ui.press("end", "ctrl+u")
        await ui.type("xcp-ng-03")
        assert set(ui.names()) == on3 and len(on3) >= 3
        await ui.press("end", "ctrl+u")
        await ui.type("nothing-like-it")
        assert ui.names() == []
        assert "No row matches 'nothing-like-it'" in ui.table.render_line(1).text
        # enter goes back to the table with the filter kept; escape clears it
        await ui.press("end", "ctrl+u")
        await ui.type("halted")
        halted = set(ui.names())
        assert "web-staging" in halted
        await ui.press("enter")
        focused: object = ui.app.focused  # the filter Input had it; now the table
        assert focused is ui.table and set(ui.names()) == halted
        # a VM that starts no longer matches: it leaves the filtered view by itself
        other = await in_thread(lambda: xenapi_session(sim))
        staging = ui.ref("web-staging")
        await in_thread(lambda: other.xenapi.VM.start(staging, False, False))
        await in_thread(lambda: other.xenapi.session.logout())
        await ui.until(lambda: "web-staging" not in ui.names(), what="web-staging filtered out")
        await ui.press("escape")
        back: object = ui.app.focused  # the filter bar stays, empty; the table has the keys
        assert flt.value == "" and back is ui.table
        assert len(ui.names()) == 25 and ui.app.focused is ui.table


async def test_sort_by_keys_and_by_header_click(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(160, 40)) as ui:
        await ui.open_vms()
        await ui.go_to("mail-01")
        assert "Name ▲" in ui.header_line()
        await ui.press("o")  # the next column: power state
        assert "Power ▲" in ui.header_line() and sorted_by(ui, 1)
        assert "sorted by Power ▲" in status_line(ui)
        assert ui.names()[0] != "[lab] test-vm"
        await ui.press("O")  # reversed
        assert "Power ▼" in ui.header_line() and sorted_by(ui, 1, reverse=True)
        assert ui.cursor_name == "mail-01"  # the cursor stayed on its VM
        assert ui.line("mail-01")  # and in view
        # a click on the Memory header sorts by memory; a second click reverses
        header = ui.header_line()
        x = header.index("Memory")
        await ui.pilot.click("#vm-table", offset=(x + 1, 0))
        assert "Memory ▲" in ui.header_line() and sorted_by(ui, 4)
        await ui.pilot.click("#vm-table", offset=(x + 1, 0))
        assert "Memory ▼" in ui.header_line() and sorted_by(ui, 4, reverse=True)
        assert ui.cursor_name == "mail-01"
        # a live change re-sorts: db-01 grows to be the biggest
        other = await in_thread(lambda: xenapi_session(sim))
        db = ui.ref("dev-sandbox")
        big = str(64 * 1024**3)
        await in_thread(lambda: other.xenapi.VM.set_memory_limits(db, big, big, big, big))
        await in_thread(lambda: other.xenapi.session.logout())
        await ui.until(lambda: ui.names()[0] == "dev-sandbox", what="the re-sorted row")
        assert ui.cursor_name == "mail-01"


async def test_bulk_action_lists_refusals(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        for name in ("web-01", "web-staging", "k8s-node-03", "web-02"):
            await ui.go_to(name)
            await ui.press("space")
        assert ui.marked() == {"web-01", "web-staging", "k8s-node-03", "web-02"}
        mark = ui.writes.mark()
        await ui.press("t")  # shut down the marked VMs
        dlg: ConfirmPlan = await ui.modal(ConfirmPlan)
        shown = plan_shown(dlg)
        assert text_of(dlg.query_one(".dialog-title")).strip() == "Shut down: 2 VMs"
        assert "Async.VM.clean_shutdown(web-01)" in shown
        assert "Async.VM.clean_shutdown(web-02)" in shown
        assert "Not possible:" in shown
        assert "web-staging is halted (needs running)" in shown
        assert "k8s-node-03 is suspended (needs running)" in shown
        await confirm_plan(ui)
        await ui.until(lambda: ui.vm("web-01")["power_state"] == "Halted"
                       and ui.vm("web-02")["power_state"] == "Halted", what="both halted")
        await ui.until(lambda: " Halted" in ui.line("web-01") and " Halted" in ui.line("web-02"),
                       what="both shown halted")
        assert sorted(ui.writes.tasks(mark)) == ["Async.VM.clean_shutdown"] * 2
        assert ui.vm("k8s-node-03")["power_state"] == "Suspended"
        assert ui.marked() == set()  # done: the marks are cleared
        # an action for one VM at a time refuses several; escape clears the marks
        for name in ("web-01", "web-02"):
            await ui.go_to(name)
            await ui.press("space")
        await ui.press("m")
        await ui.until_said("Migrate to host works on one VM at a time", "error")
        assert ui.app.screen is ui.main and ui.marked() == {"web-01", "web-02"}
        await ui.press("escape")
        assert ui.marked() == set()
        # when none of the marked VMs can, it says so and asks nothing
        for name in ("web-staging", "dev-sandbox"):
            await ui.go_to(name)
            await ui.press("space")
        mark = ui.writes.mark()
        await ui.press("p")  # pause two halted VMs
        await ui.until_said("None of the 2 VMs can pause", "error")
        assert ui.app.screen is ui.main
        assert ui.writes.since(mark) == []


async def test_bulk_start_of_several(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.press("slash")
        await ui.type("halted ci")
        await ui.press("enter")
        assert set(ui.names()) == {"ci-runner-03", "win-build-01"}
        await ui.press("ctrl+a")  # mark every row shown
        assert ui.marked() == {"ci-runner-03", "win-build-01"}
        await ui.press("s")
        dlg: ConfirmPlan = await ui.modal(ConfirmPlan)
        assert text_of(dlg.query_one(".dialog-title")).strip() == "Start: 2 VMs"
        assert "Not possible" not in plan_shown(dlg)
        await ui.press("y")
        await ui.until(lambda: all(ui.vm(n)["power_state"] == "Running"
                                   for n in ("ci-runner-03", "win-build-01")), what="started")
        await ui.press("escape")  # clear the filter: both show running
        await ui.until(lambda: " Running" in ui.line("ci-runner-03"), what="on screen")


async def test_actions_menu_shows_reasons(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.go_to("web-01")
        await ui.press("a")
        menu: PickOne[str] = await ui.modal(PickOne)
        by_id: dict[str, Any] = {c.value.split(".")[1]: c for c in menu.choices}
        assert by_id["start"].reason == "it is running (needs halted)"
        assert by_id["resume"].reason == "it is running (needs suspended)"
        assert by_id["shutdown"].reason is None
        assert by_id["delete"].reason is not None
        assert by_id["revert"].reason is None  # web-01 has a snapshot
        drawn = text_of(menu.query_one("#choices"))
        assert "Start  [s]  — it is running (needs halted)" in drawn
        await ui.press("escape")
        await ui.back_to_main()
        # enter on a row opens the same menu; choosing an entry runs the action
        await ui.go_to("dev-sandbox")
        await ui.press("enter")
        menu = await ui.modal(PickOne)
        assert menu.choices[0].value == "vm.start" and menu.choices[0].reason is None
        await ui.press("enter")  # Start is highlighted first
        await ui.until(lambda: ui.vm("dev-sandbox")["power_state"] == "Running",
                       what="dev-sandbox started from the menu")
