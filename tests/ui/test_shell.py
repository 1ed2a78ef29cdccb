"""The shell around the views: the command palette (``:`` and ctrl+p), ``?`` help
with the current view's keys, the menu, and the 80x24 layout (the menu folds away,
f9 or escape opens it, the detail pane toggles with ``d``)."""

from __future__ import annotations

from textual.widgets import OptionList

from tests.ui.dialogs import confirm_plan, hits, palette
from tests.ui.harness import running, text_of, words_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.help import HelpScreen
from xsctl.ui.views.vms import VmDetail
from xsctl.xapi.client import Client


async def test_palette_runs_vm_actions_and_switches_views(sim: Simulator,
                                                           client: Client) -> None:
    async with running(sim, client) as ui:
        # a filter hides the VM named, and the cursor is on another halted VM: the
        # action must fall on the VM named, never on the row under the cursor
        await ui.open_vms()
        await ui.press("slash")
        await ui.type("web")
        await ui.press("enter")
        await ui.go_to("web-staging")
        cp = await palette(ui, "colon", "vm: start dev-sand", "vm: start dev-sandbox")
        assert all("dev-sandbox" in h for h in hits(cp))
        assert not [h for h in hits(cp) if "web-01" in h]
        mark = ui.writes.mark()
        await ui.press("enter")
        await ui.back_to_main()
        await ui.until(lambda: ui.vm("dev-sandbox")["power_state"] == "Running",
                       what="dev-sandbox started")
        assert ui.writes.tasks(mark) == ["Async.VM.start"]
        assert ui.vm("web-staging")["power_state"] == "Halted"
        assert ui.main.current_view == "vms" and ui.cursor_name == "dev-sandbox"
        assert ui.table.filter_text == ""  # the filter was cleared to show it
        await ui.until(lambda: " Running" in ui.line("dev-sandbox"), what="on screen")

        # ctrl+p too; a disruptive action from the palette still shows its plan
        await palette(ui, "ctrl+p", "vm: shut down db-02", "vm: shut down db-02")
        await ui.press("enter")
        dlg: ConfirmPlan = await ui.modal(ConfirmPlan)
        assert "Async.VM.clean_shutdown(db-02)" in text_of(dlg.query_one(".plan"))
        await confirm_plan(ui)
        await ui.until(lambda: ui.vm("db-02")["power_state"] == "Halted", what="halted")

        await palette(ui, "colon", "view: tasks", "view: tasks & events")
        await ui.press("enter")
        await ui.back_to_main()
        await ui.until(lambda: ui.main.current_view == "tasks", what="the tasks view")
        assert ui.app.focused is ui.main.query_one("#task-table")


async def test_help_and_the_menu(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.press("question_mark")
        help_: HelpScreen = await ui.modal(HelpScreen)
        text = words_of(help_)
        assert "Keys: Virtual Machines" in text
        for key, what in (("s", "Start"), ("t", "Shut down"), ("m", "Migrate to host"),
                          ("delete", "Delete"), ("/", "Filter"), ("a", "Actions"),
                          ("space", "Select"), ("o", "Sort"), ("d", "Details")):
            assert f" {key} {what}" in f" {text}", (key, what)
        assert "f9 / escape menu" in text
        assert ": / ctrl+p command palette" in text
        await ui.press("escape")
        await ui.back_to_main()
        # another view, other keys
        await ui.press("3", "question_mark")
        help_ = await ui.modal(HelpScreen)
        text = words_of(help_)
        assert "Keys: Tasks & Events" in text and "x Cancel task" in text
        assert " s Start" not in text
        await ui.press("question_mark")  # ? closes it too
        await ui.back_to_main()

        # the menu, with keys and with the mouse
        menu = ui.main.query_one("#menu", OptionList)
        await ui.press("escape")  # from the tasks view back to the menu
        assert ui.app.focused is menu and menu.display
        await ui.press("home")  # the view follows the highlight at this width
        assert ui.main.current_view == "status"
        await ui.press("down")
        assert ui.main.current_view == "vms"
        await ui.press("down", "enter")
        assert ui.main.current_view == "tasks"
        assert ui.app.focused is ui.main.query_one("#task-table")
        await ui.pilot.click("#menu", offset=(4, 2))  # "2  Virtual Machines" (below the padding)
        assert ui.main.current_view == "vms"


async def test_80x24_layout(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        main = ui.main
        menu = main.query_one("#menu", OptionList)
        assert main.has_class("narrow")
        assert not menu.display  # folded away: the view has the whole width
        assert main.query_one("#views").region.width == 80
        # the health is never the part cut off
        await ui.until(lambda: "● live" in text_of(main.query_one("#conn-header")),
                       what="the header")
        # f9 opens the menu over the view; a choice closes it
        await ui.press("f9")
        assert menu.display and ui.app.focused is menu
        assert not main.query_one("#views").display
        await ui.press("down", "enter")
        assert not menu.display and main.current_view == "vms"
        table = ui.table
        assert ui.app.focused is table
        assert table.region.width == 80
        head = ui.header_line()
        assert "Name" in head and "Power" in head and "Tags" not in head  # columns dropped
        detail = ui.vms_view.query_one(VmDetail)
        assert not detail.display
        # d shows the detail of the VM under the cursor, over the table; d again hides it
        await ui.go_to("web-01")
        await ui.press("d")
        assert detail.display and not table.display
        assert "web-01" in text_of(detail.query_one("#vm-detail-title"))
        await ui.until(lambda: ui.app.focused is not None and detail in ui.app.focused.ancestors,
                       what="the focus in the detail")
        await ui.press("d")
        assert not detail.display and table.display
        await ui.until(lambda: ui.app.focused is table, what="the focus back on the table")
        # escape, too, goes back from the detail to the table
        await ui.press("d")
        assert detail.display
        await ui.until(lambda: ui.app.focused is not None and detail in ui.app.focused.ancestors,
                       what="the focus in the detail")
        await ui.press("escape")
        assert not detail.display and not menu.display
        await ui.until(lambda: ui.app.focused is table, what="the focus back on the table")
        # the cursor's row stays in sight when a sort moves it (only ~18 rows fit)
        await ui.go_to("[lab] test-vm")
        await ui.press("O")
        assert ui.names()[-1] == "[lab] test-vm"
        assert ui.cursor_name == "[lab] test-vm"
        assert ui.line("[lab] test-vm").strip().startswith("[lab] test-vm")
        # escape in a view opens the menu too; escape or f9 there goes back to the view
        await ui.press("escape")
        assert menu.display and ui.app.focused is menu
        await ui.press("escape")
        assert not menu.display and main.query_one("#views").display
        await ui.until(lambda: ui.app.focused is table, what="the focus back on the table")
        await ui.press("f9")
        assert menu.display and ui.app.focused is menu
        await ui.press("f9")
        assert not menu.display
        await ui.until(lambda: ui.app.focused is table, what="the focus back on the table")
