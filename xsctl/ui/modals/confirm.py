"""Confirming a plan: what will be called, the xe equivalent, what is refused, and
the keys that answer (enter or y confirms, escape cancels, left and right move)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from xsctl.ui.modals.forms import Dialog
from xsctl.xapi.ops.base import Plan


def plan_text(plans: list[Plan], refused: list[str] | None = None,
              titled: bool = True) -> Text:
    t = Text()
    for n, plan in enumerate(plans):
        if n:
            t.append("\n")
        if titled:
            t.append(plan.title + "\n", style="bold")
        for w in plan.warnings:
            t.append(f"  ! {w}\n", style="bold")
        t.append("  API calls:\n", style="dim")
        for i, step in enumerate(plan.steps()):
            t.append(f"    {i + 1}. {step}\n")
        t.append("  xe:\n", style="dim")
        for line in plan.xe:
            t.append(f"    {line}\n")
        for note in plan.notes:
            t.append(f"  ! {note}\n", style="bold")
    if refused:
        t.append("\nNot possible:\n", style="bold")
        for line in refused:
            t.append(f"  {line}\n")
    return t


class ConfirmPlan(Dialog[bool]):
    """Yes or no on one or more plans; shows every call and its xe command. The
    confirming button has the focus: the plan is on screen, read before enter."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm", id="confirm.yes",
                tooltip="Run the plan shown (enter on its button does the same)"),
        Binding("n", "cancel", "Cancel", show=False, id="confirm.no"),
    ]

    def __init__(self, title: str, plans: list[Plan], refused: list[str] | None = None,
                 verb: str = "Run") -> None:
        super().__init__()
        self.title_text = title
        self.plans = plans
        self.refused = refused or []
        self.verb = verb

    def compose(self) -> ComposeResult:
        danger = any(p.destructive for p in self.plans)
        with VerticalScroll(classes="dialog" + (" danger" if danger else ""), id="confirm-plan"):
            yield Label(Text(self.title_text), classes="dialog-title")
            single = len(self.plans) == 1 and self.plans[0].title == self.title_text
            yield Static(plan_text(self.plans, self.refused, titled=not single), classes="plan")
            yield Label(Text(f"enter or y: {self.verb.lower()} · escape or n: cancel · "
                             "←→ move"), classes="hint")
            with Horizontal(classes="buttons"):
                yield Button(self.verb, variant="error" if danger else "primary", id="ok",
                             disabled=not self.plans)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#ok" if self.plans else "#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        if self.plans:
            self.dismiss(True)


class ConfirmTyped(Dialog[bool]):
    """A plan that destroys data, confirmed by typing a name (delete)."""

    def __init__(self, plan: Plan, expected: str, verb: str = "Delete") -> None:
        super().__init__()
        self.plan = plan
        self.expected = expected
        self.verb = verb

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog danger", id="confirm-typed"):
            yield Label(Text(self.plan.title), classes="dialog-title")
            yield Static(plan_text([self.plan], titled=False), classes="plan")
            yield Label(Text.assemble("Type ", (self.expected, "bold"), " and enter to confirm "
                                      "· escape cancels"))
            yield Input(placeholder=self.expected, id="typed")
            with Horizontal(classes="buttons"):
                yield Button(self.verb, variant="error", id="ok", disabled=True)
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#typed", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#ok", Button).disabled = event.value != self.expected

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value == self.expected:
            self.dismiss(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")

    def action_cancel(self) -> None:
        self.dismiss(False)


class ConfirmText(Dialog[bool]):
    """Yes or no on something shown verbatim (a host command, exactly as it will run),
    with the same keys as ConfirmPlan."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Confirm", id="confirm-text.yes",
                tooltip="Go on (enter on its button does the same)"),
        Binding("n", "cancel", "Cancel", show=False, id="confirm-text.no"),
    ]

    def __init__(self, title: str, body: Text, verb: str = "Run") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.verb = verb

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="confirm-text"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Static(self.body, classes="plan")
            yield Label(Text(f"enter or y: {self.verb.lower()} · escape or n: cancel · "
                             "←→ move"), classes="hint")
            with Horizontal(classes="buttons"):
                yield Button(self.verb, variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#ok", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        self.dismiss(True)
