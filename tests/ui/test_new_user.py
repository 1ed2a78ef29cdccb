"""What a new user met, tried with keys only: each of these once went wrong."""

from __future__ import annotations

from textual.widgets import Input, OptionList, Tab

from tests.conftest import xenapi_session
from tests.ui.dialogs import answer_text, confirm_plan, pick, plan_shown
from tests.ui.harness import in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.forms import PickOne
from xsctl.ui.screens.main import Menu
from xsctl.ui.views.vms import VmDetail
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client


async def test_80x24_page_keys_and_the_folded_menu(sim: Simulator, client: Client) -> None:
    """A fresh start at 80x24: the folded menu does not hold the keys (PageDown, End
    once crashed it, unseen); f9 Down Enter opens the entry below the current one."""
    async with running(sim, client, size=(80, 24)) as ui:
        assert not isinstance(ui.app.focused, Menu)
        await ui.press("pagedown", "end", "pagedown", "pageup", "home")
        assert ui.main.query_one(Menu).highlighted == 0
        await ui.press("f9")
        assert isinstance(ui.app.focused, Menu)
        await ui.press("down", "enter")
        assert ui.main.current_view == "vms"
        assert ui.app.focused is ui.table


async def test_detail_tabs_keep_their_labels_after_an_empty_filter(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(160, 40)) as ui:
        await ui.open_vms()
        def tab_labels() -> str:
            return " ".join(str(t.label) for t in ui.vms_view.query(Tab))

        labels = tab_labels()
        await ui.press("slash")
        await ui.type("zzz")
        assert ui.names() == []
        assert "No VM selected" in text_of(ui.main.query_one("#vm-detail-title"))
        assert tab_labels() == labels  # not blanked
        await ui.press("escape")
        await ui.press("d", "d")
        assert tab_labels() == labels
        assert "General" in labels and "Snapshots" in labels


async def test_tab_stays_in_the_view_and_its_keys_work(sim: Simulator, client: Client) -> None:
    """tab moves among the view's panes (the table, the detail's tabs, the filter), never
    onto the menu unseen; a and d work from each."""
    async with running(sim, client, size=(160, 40)) as ui:
        await ui.open_vms()
        seen = set()
        for _ in range(4):
            await ui.press("tab")
            focused = ui.app.focused
            assert focused is not None and not isinstance(focused, Menu)
            assert ui.vms_view in focused.ancestors_with_self
            seen.add(type(focused).__name__)
        assert {"Tabs", "VirtualTable"} <= seen or {"ContentTabs", "VirtualTable"} <= seen
        ui.table.focus()
        await ui.press("tab")  # into the detail's tabs
        await ui.press("a")
        await ui.modal(PickOne)
        await ui.press("escape")
        await ui.back_to_main()
        await ui.press("d")
        assert not ui.main.query_one(VmDetail).display


async def test_the_actions_menu_shows_all_its_entries(sim: Simulator, client: Client) -> None:
    for size in ((200, 50), (80, 24)):
        async with running(sim, client, size=size) as ui:
            await ui.press("2")
            await ui.go_to("web-01")
            await ui.press("a")
            menu: PickOne[str] = await ui.modal(PickOne)
            ol = menu.query_one(OptionList)
            if size == (200, 50):
                assert ol.max_scroll_y == 0  # every entry in view, Delete too
            for _ in range(len(menu.choices) + 2):
                await ui.press("up")
                # the highlighted entry is always on screen
                assert ol.highlighted is not None
                top = ol.scroll_offset.y
                line = next(i for i, ln in enumerate(ol._lines) if ln[0] == ol.highlighted)
                assert top <= line < top + ol.scrollable_content_region.height, (size, line)
            await ui.press("escape")


async def test_tasks_say_how_they_ended(sim: Simulator, client: Client) -> None:
    """Pause and unpause that succeeded: done 100%. Revert's internal step is no row
    of its own. Home, End, g and G move in the task list."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("p", on="web-02")
        await confirm_plan(ui)
        await ui.until_said("Pause web-02: done")
        await ui.until(lambda: "unpause" in (client.cache.get("vm", ui.ref("web-02")) or {})
                       .get("allowed_operations", []), what="unpause allowed")
        await ui.act("P", on="web-02")
        await ui.until_said("Unpause web-02: done")
        await ui.act("v", on="web-01")
        await pick(ui, "pre-deploy")
        await confirm_plan(ui)
        await ui.until_said("to snapshot 'pre-deploy': done", timeout=10)
        await ui.press("3")
        table = ui.main.query_one("#task-table", VirtualTable)

        def rows() -> list[list[str]]:
            return [[text for text, _ in table.rows[k].cells] for k in table.order]

        await ui.until(lambda: len(rows()) >= 3, what="three task rows")
        for name in ("Pause web-02", "Unpause web-02", "Revert web-01"):
            row = next(r for r in rows() if r[0].startswith(name))
            assert row[1] == "done" and "100%" in row[2], row
            assert row[4].endswith("s"), row  # to the second: "0s", "2s", not a dash or "0m"
        assert not [r for r in rows() if "reverting" in r[0]]
        table.focus()
        await ui.handled()
        await ui.press("G")
        assert table.cursor_key == table.order[-1]
        await ui.press("g")
        assert table.cursor_key == table.order[0]
        await ui.press("end")
        assert table.cursor_key == table.order[-1]
        await ui.press("home")
        assert table.cursor_key == table.order[0]


async def test_revert_of_a_running_vm_says_it_powers_it_off(sim: Simulator,
                                                            client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("v", on="web-01")
        await pick(ui, "pre-deploy")
        dlg = await ui.modal(ConfirmPlan)
        assert "web-01 is running: it is powered off now and stays halted" in " ".join(
            plan_shown(dlg).split())
        await ui.press("escape")


async def test_renaming_to_a_name_in_use_warns(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        mark = ui.writes.mark()
        await ui.act("r", on="web-02")
        await answer_text(ui, "web-01")
        dlg = await ui.modal(ConfirmPlan)
        assert "Another VM is already named 'web-01'" in plan_shown(dlg)
        await ui.press("escape")
        await ui.back_to_main()
        await ui.settle()
        assert ui.writes.since(mark) == []


async def test_vm_table_details(sim: Simulator, client: Client) -> None:
    """What is in progress, in words; long names whole on a wide screen; the filter
    puts the cursor on a match; marked rows carry a mark, not only a shade; a halted
    VM shows no address of its last run."""
    async with running(sim, client, size=(200, 40)) as ui:
        await ui.open_vms()
        assert ui.line("[lab] test-vm").startswith(" [lab] test-vm ")
        sim.store.update(ui.ref("ci-runner-01"), {"name_label": "ci-runner-01-with-a-long-name"})
        await ui.until(lambda: "ci-runner-01-with-a-long-name" in ui.names(), what="renamed")
        assert "ci-runner-01-with-a-long-name " in ui.line("ci-runner-01-with-a-long-name")
        # the filter hides the cursor's VM: the cursor goes to the first match
        await ui.go_to("web-03")
        await ui.press("slash")
        await ui.type("db-")
        assert ui.cursor_name == "db-01"
        await ui.press("enter", "escape")
        # a mark you can see without colour
        await ui.go_to("dns-01")
        await ui.press("space")
        assert ui.line("dns-01").startswith("*dns-01")
        assert ui.line("dns-02").startswith(" dns-02")
        await ui.press("escape")
        # an operation in progress reads as words
        ref = ui.ref("web-03")
        sim.store.update(ref, {"current_operations": {"OpaqueRef:t": "clean_shutdown"}})
        await ui.until(lambda: "⟳ shutting down" in ui.line("web-03"), what="in words")
        sim.store.update(ref, {"current_operations": {}})
        # halted (its guest metrics stay, as xapi keeps them): no address
        x = await in_thread(lambda: xenapi_session(sim))
        try:
            await in_thread(lambda: x.xenapi.VM.hard_shutdown(ui.ref("web-02")))
        finally:
            await in_thread(lambda: x.xenapi.session.logout())
        await ui.until(lambda: " Halted" in ui.line("web-02"), what="web-02 halted")
        assert "10.0." not in ui.line("web-02")
        ips = next(i for i, c in enumerate(ui.table.columns) if c.key == "ips")
        assert ui.cells("web-02")[ips] == "–"


async def test_filter_box_keeps_what_is_typed(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        await ui.press("2", "slash")
        await ui.type("web")
        assert ui.main.query_one("#vm-filter", Input).value == "web"
        assert all("web" in n for n in ui.names())


async def test_status_at_80x24_is_readable(sim: Simulator, client: Client) -> None:
    """At a dom0 console's size: each local SR is told apart by its host, the type
    and usage columns stay, the hosts show their load and VM count, and an alert is
    read whole with enter; the page scrolls with the page keys."""
    from xsctl.ui.modals.message import MessageScreen
    from xsctl.ui.views.status import StatusView

    async with running(sim, client, size=(80, 24)) as ui:
        status = ui.main.query_one(StatusView)
        srs = text_of(status.query_one("#status-srs"))
        for h in ("xcp-ng-01", "xcp-ng-02", "xcp-ng-03"):
            line = next(x for x in srs.splitlines() if f"Local storage on {h}" in x)
            assert " lvm " in line and "%" in line and "/900 GiB" in line
        hosts = text_of(status.query_one("#status-hosts")).splitlines()
        assert hosts[0].split()[:9] == ["Host", "▲", "Role", "State", "CPU", "Last", "5", "min",
                                        "Memory"]
        assert hosts[0].split()[9] == "VMs"
        assert "%" in hosts[1] and "GiB" in hosts[1]
        scroller = status.query_one("#status-scroll")
        assert ui.app.focused is scroller
        await ui.press("end")
        await ui.until(lambda: scroller.scroll_offset.y > 0, what="scrolled to the alerts")
        alerts = status.query_one("#status-alerts")
        alerts.focus()
        crashed = next(k for k, r in alerts.rows.items() if r.cells[2][0] == "VM crashed")
        alerts.move_to(crashed)
        await ui.press("enter")
        box = await ui.modal(MessageScreen)
        body = sim.store.get(crashed, "message")["body"]
        assert " ".join(body.split()) in " ".join(ui.screen_text().split()) or body[:30] in \
            ui.screen_text()
        assert box.message.body == body
        await ui.press("escape")


async def test_the_app_opens_on_the_view_asked_for(sim: Simulator, client: Client) -> None:
    """xsctl --view vms (or 2, or "virtual"): straight into that view, its table
    focused; an unknown name says which exist and opens the first."""
    for view, expect in (("vms", "vms"), ("2", "vms"), ("tasks", "tasks"),
                         ("virtual", "vms"), ("nope", "status")):
        async with running(sim, client, view=view) as ui:
            assert ui.main.current_view == expect, view
            if view == "nope":
                await ui.until_said("No view 'nope': status, vms, tasks", "error")
            elif expect == "vms":
                assert ui.app.focused is ui.table
