"""An alert (an xapi message) read whole: its body may run to many lines."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Label, Static

from xsctl.ui.modals.forms import Dialog
from xsctl.xapi.models import Message


class MessageScreen(Dialog[bool | None]):
    """Read whole; where ``dismissable``, x closes it asking to dismiss it (True)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,q", "cancel", "Close", id="message.close"),
        Binding("x", "dismiss_alert", "Dismiss", id="message.dismiss",
                tooltip="Dismiss this alert (its plan is shown first)"),
    ]

    def __init__(self, message: Message, about: str, dismissable: bool = False) -> None:
        super().__init__(id="message")
        self.message = message
        self.about = about
        self.dismissable = dismissable

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.dismissable if action == "dismiss_alert" else True

    def action_dismiss_alert(self) -> None:
        self.dismiss(True)

    def compose(self) -> ComposeResult:
        m = self.message
        with VerticalScroll(classes="dialog", id="message-box"):
            yield Label(Text(m.title), classes="dialog-title")
            facts = Table.grid(padding=(0, 2))
            facts.add_column(style="bold", no_wrap=True)
            facts.add_column()
            facts.add_row("Priority", f"{m.priority} ({m.priority_name})")
            facts.add_row("On", Text(self.about))
            facts.add_row("When", m.when)
            facts.add_row("Kind", Text(m.name))
            facts.add_row("UUID", m.uuid)
            yield Static(facts)
            yield Static(Text(m.body or "(no text)"), classes="message-body")
            yield Label(Text("escape, enter or q closes"
                             + (" · x dismisses it" if self.dismissable else "")),
                        classes="hint")
