"""Small forms: a name, a choice from a list, disks to keep, memory and vCPUs."""

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

from xsctl.xapi.errors import XsctlError

T = TypeVar("T")


class TextPrompt(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, label: str, value: str = "",
                 validate: Callable[[str], str | None] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.label = label
        self.value = value
        self.check = validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="text-prompt"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Label(Text(self.label))
            yield Input(value=self.value, id="value")
            yield Label("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _submit(self) -> None:
        value = self.query_one(Input).value.strip()
        problem = "a value is needed" if not value else (self.check(value) if self.check else None)
        if problem:
            self.query_one("#error", Label).update(Text(problem))
            return
        self.dismiss(value)

    def on_input_submitted(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class Choice(Generic[T]):
    value: T
    label: str
    detail: str = ""
    disabled_reason: str | None = None


class PickOne(ModalScreen[T | None], Generic[T]):
    """Choose one of several things; unavailable ones say why."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]

    def __init__(self, title: str, choices: Sequence[Choice[T]], id: str | None = None) -> None:
        super().__init__(classes="dialog-screen", id=id)
        self.title_text = title
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        options = []
        for i, c in enumerate(self.choices):
            t = Text(c.label)
            if c.detail:
                t.append(f"  {c.detail}", style="dim")
            if c.disabled_reason:
                t.append(f"  — {c.disabled_reason}", style="italic dim")
            options.append(Option(t, id=str(i), disabled=c.disabled_reason is not None))
        with Vertical(classes="dialog", id="pick-one"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield OptionList(*options, id="choices")
            yield Label(Text("enter chooses, escape cancels"), classes="hint")

    def on_mount(self) -> None:
        ol = self.query_one(OptionList)
        ol.focus()
        for i, c in enumerate(self.choices):
            if c.disabled_reason is None:
                ol.highlighted = i
                break

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        assert event.option.id is not None
        self.dismiss(self.choices[int(event.option.id)].value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickDisks(ModalScreen[set[str] | None]):
    """Which of a VM's disks to keep when it is deleted."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="disks.cancel")]

    def __init__(self, title: str, disks: Sequence[tuple[str, str]]) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.disks = list(disks)  # (vdi ref, label)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="pick-disks"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Label(Text("Marked disks are KEPT; the others are destroyed with the VM."))
            yield SelectionList[str](*[(Text(label), ref, False) for ref, label in self.disks],
                                     id="keep")
            with Horizontal(classes="buttons"):
                yield Button("Next", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(SelectionList).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.dismiss(set(self.query_one(SelectionList).selected))
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class Resources:
    static_max: str
    dynamic_min: str
    dynamic_max: str
    vcpus: int
    vcpus_max: int


class EditResources(ModalScreen[Resources | None]):
    """Memory and vCPUs, validated by the same ops code that plans the change."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="res.cancel")]

    RULES = (
        "Rules: static min ≤ dynamic min ≤ dynamic max ≤ static max; a running VM keeps its "
        "static max and only changes the dynamic range; vCPUs: 1 ≤ at startup ≤ max, and a "
        "running VM can only change the live count up to its max."
    )

    def __init__(self, title: str, current: Resources, running: bool,
                 validate: Callable[[Resources], None]) -> None:
        super().__init__(classes="dialog-screen")
        self.title_text = title
        self.current = current
        self.running = running
        self.validate = validate

    def compose(self) -> ComposeResult:
        c = self.current
        with VerticalScroll(classes="dialog", id="edit-resources"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Static(Text(self.RULES, style="dim"))
            with Horizontal(classes="field"):
                yield Label("Static max", classes="field-label")
                yield Input(c.static_max, id="static_max", disabled=self.running)
            with Horizontal(classes="field"):
                yield Label("Dynamic min", classes="field-label")
                yield Input(c.dynamic_min, id="dynamic_min")
            with Horizontal(classes="field"):
                yield Label("Dynamic max", classes="field-label")
                yield Input(c.dynamic_max, id="dynamic_max")
            with Horizontal(classes="field"):
                yield Label("vCPUs", classes="field-label")
                yield Input(str(c.vcpus), id="vcpus", type="integer")
            with Horizontal(classes="field"):
                yield Label("vCPUs max", classes="field-label")
                yield Input(str(c.vcpus_max), id="vcpus_max", type="integer",
                            disabled=self.running)
            yield Label("", id="error", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Apply", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def _value(self) -> Resources | None:
        def get(id_: str) -> str:
            return self.query_one(f"#{id_}", Input).value.strip()

        try:
            r = Resources(get("static_max"), get("dynamic_min"), get("dynamic_max"),
                          int(get("vcpus") or 0), int(get("vcpus_max") or 0))
        except ValueError:
            self.query_one("#error", Label).update("vCPUs must be whole numbers")
            return None
        try:
            self.validate(r)
        except XsctlError as e:
            self.query_one("#error", Label).update(Text(str(e)))
            return None
        self.query_one("#error", Label).update("")
        return r

    def on_input_changed(self) -> None:
        self._value()

    def _apply(self) -> None:
        r = self._value()
        if r is not None:
            self.dismiss(r)

    def on_input_submitted(self) -> None:
        self._apply()  # enter applies, as in the other forms

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._apply()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
