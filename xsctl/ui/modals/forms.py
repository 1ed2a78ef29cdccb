"""The dialogs that ask for an operation's parameters: one choice from a list, several
from a list, and a form of fields checked as they are typed. The action runner picks
them from each parameter's kind (ui/runner.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from xsctl.ui.widgets.ticks import TickList
from xsctl.xapi.ops.catalogue import Choice

T = TypeVar("T")


class Dialog(ModalScreen[T], Generic[T]):
    """A dialog: escape cancels; left and right move between its buttons."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="dialog.cancel"),
        Binding("left", "app.focus_previous", "Previous", show=False, id="dialog.left"),
        Binding("right", "app.focus_next", "Next", show=False, id="dialog.right"),
    ]

    def __init__(self, id: str | None = None) -> None:
        super().__init__(classes="dialog-screen", id=id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickOne(Dialog[T | None], Generic[T]):
    """Choose one of several things; those that cannot be chosen say why."""

    def __init__(self, title: str, choices: Sequence[Choice], id: str | None = None,
                 hint: str = "enter chooses · escape cancels") -> None:
        super().__init__(id=id)
        self.title_text = title
        self.choices = list(choices)
        self.hint = hint

    def compose(self) -> ComposeResult:
        options = []
        for i, c in enumerate(self.choices):
            t = Text(c.label)
            if c.detail:
                t.append(f"  {c.detail}", style="dim")
            if c.reason:
                t.append(f"  — {c.reason}", style="italic dim")
            options.append(Option(t, id=str(i), disabled=c.reason is not None))
        with Vertical(classes="dialog", id="pick-one"):
            yield Label(Text(self.title_text), classes="dialog-title")
            # above the list: a long list at 80x24 would push it off the dialog
            yield Label(Text(self.hint), classes="hint")
            yield OptionList(*options, id="choices")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.focus()
        for i, c in enumerate(self.choices):
            if c.reason is None:
                ol.highlighted = i
                break

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.dismiss(self.choices[int(event.option.id)].value)  # type: ignore[arg-type]


class _Marks(TickList[str]):
    """The marks of a PickMany: space marks, enter goes on (as the hint says), where a
    plain selection list would toggle the mark again."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "done", "Next", show=False),
        Binding("a", "mark_all", "Mark all", show=False),
    ]

    def action_done(self) -> None:
        self.screen.query_one("#ok", Button).press()

    def action_mark_all(self) -> None:
        """Every one that can be marked; when they all are, none."""
        can = [o.value for o in (self.get_option_at_index(i) for i in range(self.option_count))
               if not o.disabled]
        if set(can) <= set(self.selected):
            self.deselect_all()
        else:
            for v in can:
                self.select(v)


class PickMany(Dialog[frozenset[str] | None]):
    """Mark several things (space); those that cannot be marked say why."""

    def __init__(self, title: str, note: str, choices: Sequence[Choice],
                 verb: str = "Next") -> None:
        super().__init__()
        self.title_text = title
        self.note = note
        self.choices = list(choices)
        self.verb = verb

    def compose(self) -> ComposeResult:
        items = []
        for c in self.choices:
            t = Text(c.label)
            if c.detail:
                t.append(f"  {c.detail}", style="dim")
            if c.reason:
                t.append(f"  — {c.reason}", style="italic dim")
            items.append(Selection(t, c.value, False, disabled=c.reason is not None))
        with Vertical(classes="dialog", id="pick-many"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Static(Text(self.note), classes="note")
            yield _Marks(*items, id="marked")
            yield Label(Text("space marks · a: all · enter: " + self.verb + " · escape cancels"),
                        classes="hint")
            with Horizontal(classes="buttons"):
                yield Button(self.verb, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.dismiss(frozenset(self.query_one(SelectionList).selected))
        else:
            self.dismiss(None)


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    value: str
    fixed: str | None = None  # why it cannot be changed here (shown, not editable)
    integer: bool = False


Check = Callable[[dict[str, str]], str | None]


class FieldsForm(Dialog[dict[str, str] | None]):
    """Fields checked as they are typed, by the same code that plans the change (the
    error says what is wrong and nothing is sent); enter in any field applies."""

    def __init__(self, title: str, fields: Sequence[Field], check: Check, rules: str = "",
                 verb: str = "Apply", id: str | None = None) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.fields = list(fields)
        self.check = check
        self.rules = rules
        self.verb = verb

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="fields-form"):
            yield Label(Text(self.title_text), classes="dialog-title")
            if self.rules:
                yield Static(Text("Rules: " + self.rules, style="dim"), classes="rules")
            for f in self.fields:
                with Horizontal(classes="field"):
                    yield Label(Text(f.label), classes="field-label")
                    yield Input(f.value, id=f"f-{f.name}", disabled=f.fixed is not None,
                                type="integer" if f.integer else "text",
                                tooltip=f.fixed)
                if f.fixed:
                    yield Static(Text(f"{f.label}: {f.fixed}", style="dim italic"),
                                 classes="field-note")
            yield Static("", id="error", classes="error")
            yield Label(Text("enter applies · tab moves · escape cancels"), classes="hint")
            with Horizontal(classes="buttons"):
                yield Button(self.verb, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        for f in self.fields:
            if f.fixed is None:
                self.query_one(f"#f-{f.name}", Input).focus()
                break

    def values(self) -> dict[str, str]:
        return {f.name: self.query_one(f"#f-{f.name}", Input).value for f in self.fields}

    def _problem(self) -> str | None:
        problem = self.check(self.values())
        self.query_one("#error", Static).update(Text(problem or ""))
        return problem

    def on_input_changed(self) -> None:
        self._problem()

    def _apply(self) -> None:
        if self._problem() is None:
            self.dismiss(self.values())

    def on_input_submitted(self) -> None:
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._apply()
        else:
            self.dismiss(None)
