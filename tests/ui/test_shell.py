"""The shell around the views: the command palette (``:`` and ctrl+p), ``?`` help
with the current view's keys, the menu, and the 80x24 layout (the menu folds away,
f9 or escape opens it, the detail pane toggles with ``d``)."""

from __future__ import annotations

from textual.command import CommandPalette
from textual.widgets import Input, OptionList

from tests.ui.dialogs import confirm_plan
from tests.ui.harness import Ui, running, text_of, words_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.help import HelpScreen
from xsctl.ui.views.vms import VmDetail
from xsctl.xapi.client import Client


async def palette(ui: Ui, key: str, query: str) -> CommandPalette:
    await ui.press(key)
    cp: CommandPalette = await ui.modal(CommandPalette)
    await ui.type(query)
    await ui.until(lambda: cp.query_one("#--input Input", Input).value == query
                   and cp.query("CommandList Option") is not None
                   and cp.query_one("CommandList", OptionList).option_count > 0,
                   what=f"hits for {query!r}")
    return cp


def hits(cp: CommandPalette) -> list[str]:
    ol = cp.query_one("CommandList", OptionList)
    return [str(ol.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(ol.option_count)]


async def test_palette_starts_a_vm_by_name(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        cp = await palette(ui, "colon", "vm: start web-sta")
        await ui.until(lambda: hits(cp) and hits(cp)[0] == "vm: start web-staging",
                       what="the best hit first")
        assert all("web-staging" in h for h in hits(cp))
        assert "vm: start web-01" not in hits(cp)  # running: start is not offered
        mark = ui.writes.mark()
        await ui.press("enter")
        await ui.back_to_main()
        assert ui.main.current_view == "vms"  # it went to the VM, as a user would
        assert ui.cursor_name == "web-staging"
        await ui.until(lambda: ui.vm("web-staging")["power_state"] == "Running",
                       what="web-staging started")
        assert "Async.VM.start" in ui.writes.tasks(mark)
        await ui.until(lambda: " Running" in ui.line("web-staging"), what="on screen")


async def test_palette_disruptive_action_still_confirms(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await palette(ui, "ctrl+p", "vm: shut down db-02")
        await ui.press("enter")
        dlg: ConfirmPlan = await ui.modal(ConfirmPlan)
        assert "Async.VM.clean_shutdown(db-02)" in text_of(dlg.query_one(".plan"))
        await confirm_plan(ui)
        await ui.until(lambda: ui.vm("db-02")["power_state"] == "Halted", what="halted")


async def test_palette_switches_views(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        cp = await palette(ui, "colon", "view: tasks")
        assert hits(cp)[0] == "view: tasks & events"
        await ui.press("enter")
        await ui.back_to_main()
        assert ui.main.current_view == "tasks"
        assert ui.app.focused is ui.main.query_one("#task-table")


async def test_help_lists_the_keys_of_the_view(sim: Simulator, client: Client) -> None:
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


async def test_menu_with_keys_and_mouse(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        menu = ui.main.query_one("#menu", OptionList)
        assert ui.app.focused is menu and menu.display
        await ui.press("down")  # the view follows the highlight at this width
        assert ui.main.current_view == "vms"
        await ui.press("down", "enter")
        assert ui.main.current_view == "tasks"
        assert ui.app.focused is ui.main.query_one("#task-table")
        await ui.press("escape")  # back to the menu
        assert ui.app.focused is menu
        await ui.pilot.click("#menu", offset=(4, 2))  # "2  Virtual Machines" (below the padding)
        await ui.pilot.pause()
        assert ui.main.current_view == "vms"


async def test_80x24_layout(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        main = ui.main
        menu = main.query_one("#menu", OptionList)
        assert main.has_class("narrow")
        assert not menu.display  # folded away: the view has the whole width
        assert main.query_one("#views").region.width == 80
        header = text_of(main.query_one("#conn-header"))
        assert "● live" in header  # the health is never the part cut off
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
        assert ui.app.focused is not None and detail in ui.app.focused.ancestors
        await ui.press("d")
        assert not detail.display and table.display
        assert ui.app.focused is table
        # escape, too, goes back from the detail to the table
        await ui.press("d")
        assert detail.display
        await ui.press("escape")
        assert not detail.display and ui.app.focused is table and not menu.display
        # the cursor's row stays in sight when a sort moves it (only ~18 rows fit)
        await ui.go_to("[lab] test-vm")
        await ui.press("O")
        assert ui.names()[-1] == "[lab] test-vm"
        assert ui.cursor_name == "[lab] test-vm"
        assert ui.line("[lab] test-vm").strip().startswith("[lab] test-vm")
        # escape in a view opens the menu too
        await ui.press("escape")
        assert menu.display and ui.app.focused is menu
        await ui.press("escape")
