"""Answering the app's dialogs with keys, as a user would."""

from __future__ import annotations

from typing import Any

from textual.command import CommandPalette
from textual.widgets import Button, Input, OptionList

from tests.ui.harness import Ui, text_of
from xsctl.ui.modals.confirm import ConfirmPlan, ConfirmTyped
from xsctl.ui.modals.forms import FieldsForm, PickOne
from xsctl.ui.modals.new_sr import NewSrWizard


async def pick(ui: Ui, label: str) -> PickOne[Any]:
    """Choose the entry whose label is ``label`` in the open PickOne (arrows + enter)."""
    dlg: PickOne[Any] = await ui.modal(PickOne)
    labels = [c.label for c in dlg.choices]
    want = labels.index(label)
    assert dlg.choices[want].reason is None, dlg.choices[want]
    ol = dlg.query_one(OptionList)
    for _ in range(len(labels) * 2):
        if ol.highlighted == want:
            break
        await ui.press("down" if (ol.highlighted or 0) < want else "up")
    assert ol.highlighted == want
    await ui.press("enter")
    await ui.handled()
    return dlg


async def answer_text(ui: Ui, value: str | None = None) -> FieldsForm:
    """Replace the value of the form's first field (None keeps the offered one) and
    press enter."""
    dlg: FieldsForm = await ui.modal(FieldsForm)
    if value is not None:
        await ui.press("end", "ctrl+u")
        assert isinstance(ui.app.focused, Input) and ui.app.focused.value == ""
        await ui.type(value)
    await ui.press("enter")
    await ui.handled()
    return dlg


async def fill(ui: Ui, form: FieldsForm, **values: str) -> None:
    """Type each value into its field of the form (by parameter name)."""
    for name, value in values.items():
        form.query_one(f"#f-{name}", Input).focus()
        await ui.press("end", "ctrl+u")
        await ui.type(value)


def form_error(form: FieldsForm) -> str:
    return str(form.query_one("#error").render())


async def confirm_plan(ui: Ui, mouse: bool = False) -> str:
    """Read the plan the confirm dialog shows, then confirm: y, or a click on its
    button (Pilot's clicks cost ~0.25 s each, so most tests use the key)."""
    dlg: ConfirmPlan = await ui.modal(ConfirmPlan)
    shown = text_of(dlg.query_one(".plan"))
    if mouse:
        await ui.pilot.click("#ok")
    else:
        await ui.press("y")
    await ui.back_to_main()
    return shown


def plan_shown(dlg: ConfirmPlan | ConfirmTyped) -> str:
    return text_of(dlg.query_one(".plan"))


def ok_button(dlg: Any) -> Button:
    button: Button = dlg.query_one("#ok", Button)
    return button


# ---------------------------------------------------------------- the New SR wizard


async def open_wizard(ui: Ui) -> NewSrWizard:
    """The New SR wizard, opened as a user does: the Storage view, then ``n``."""
    await ui.press("4")
    await ui.until(lambda: ui.main.current_view == "storage", what="the Storage view")
    await ui.press("n")
    wiz: NewSrWizard = await ui.modal(NewSrWizard)
    return wiz


async def wizard_pick(ui: Ui, wiz: NewSrWizard, list_id: str, option_id: str) -> None:
    """On the wizard's page, move to ``option_id`` of list ``list_id`` with the arrow
    keys, then enter."""
    ol = await ui.until(lambda: wiz.query(f"#{list_id}").first(OptionList)
                        if wiz.query(f"#{list_id}") else None, what=f"the #{list_id} list")
    await ui.until(lambda: ol.has_focus, what=f"#{list_id} focused")
    ids = [ol.get_option_at_index(i).id for i in range(ol.option_count)]
    assert option_id in ids, (option_id, ids)
    target = ids.index(option_id)
    await ui.press("home")
    while ol.highlighted != target:
        await ui.press("down")
    await ui.press("enter")


async def wizard_fill(ui: Ui, wiz: NewSrWizard, values: dict[str, str]) -> None:
    """Type into the page's fields (what was there is replaced), then enter."""
    first = await ui.until(lambda: wiz.query("#wizard-page Input").first(Input)
                           if wiz.query("#wizard-page Input") else None, what="fields")
    await ui.until(lambda: first.has_focus, what="the first field focused")
    inputs = list(wiz.query("#wizard-page Input").results(Input))
    for inp in inputs:
        name = (inp.id or "").removeprefix("f-")
        if name in values:
            inp.focus()
            inp.value = ""
            await ui.handled()
            await ui.type(values[name])
    inputs[0].focus()
    await ui.handled()
    await ui.press("enter")


async def wizard_page(ui: Ui, wiz: NewSrWizard, page: str) -> None:
    """Wait for the wizard to show ``page`` (its probe, if any, answered)."""
    await ui.until(lambda: wiz.shown == page and not wiz._probe, what=f"the {page} page "
                   f"(on {wiz.page}: {text_of(wiz.query_one('#error'))})")
    await ui.handled()


async def palette(ui: Ui, key: str, query: str, first: str) -> CommandPalette:
    """Open the palette with ``key``, type ``query``, wait until ``first`` is the
    best hit (the palette searches as it is typed, asynchronously)."""
    await ui.press(key)
    cp: CommandPalette = await ui.modal(CommandPalette)
    await ui.type(query)
    await ui.until(lambda: cp.query_one("#--input Input", Input).value == query
                   and hits(cp)[:1] == [first], what=f"{first!r} first for {query!r}")
    return cp


def hits(cp: CommandPalette) -> list[str]:
    ol = cp.query_one("CommandList", OptionList)
    return [str(ol.get_option_at_index(i).prompt).split("\n")[0]
            for i in range(ol.option_count)]
