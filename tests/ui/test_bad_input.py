"""Bad input in the app's forms gets a clear line in the form, never a crash."""

from __future__ import annotations

from textual import events
from textual.widgets import Input

from tests.ui.harness import running
from xsctl.sim import Simulator
from xsctl.ui.modals.forms import EditResources
from xsctl.xapi.client import Client


async def test_the_memory_form_takes_any_paste(sim: Simulator, client: Client) -> None:
    """A 400-digit size pasted into static max (past what a float holds: it used to
    end the app with an OverflowError and a traceback full of VM records), and a
    size in Arabic-Indic digits (which Python's int() would read as 3)."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        mark = ui.writes.mark()
        await ui.act("e", on="web-staging")
        form: EditResources = await ui.modal(EditResources)
        box = form.query_one("#static_max", Input)
        for pasted, says in (("9" * 400, "is too large: xapi counts at most 8 EiB"),
                             ("٣G", "not a size: '٣G'")):
            box.focus()
            await ui.press("end", "ctrl+u")
            ui.app.post_message(events.Paste(pasted))
            await ui.until(lambda p=pasted: box.value == p, what="the paste")  # type: ignore[misc]
            await ui.handled()
            assert says in str(form.query_one("#error").render())
            await ui.press("enter")  # Apply is refused; the form stays
            assert ui.app.screen is form and ui.app.is_running
        await ui.press("escape")
        await ui.back_to_main()
        await ui.settle()
        assert ui.writes.tasks(mark) == []
        assert not ui.writes.touched(ui.ref("web-staging"), mark)
