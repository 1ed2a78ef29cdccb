"""First use of a host: its certificate fingerprint; the password."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from xsctl.ui.widgets.ticks import Tick


class TrustCertificate(ModalScreen[bool]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="trust.cancel")]

    def __init__(self, host: str, fingerprint: str, changed_from: str | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.host = host
        self.fingerprint = fingerprint
        self.changed_from = changed_from

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog" + (" danger" if self.changed_from else ""), id="trust"):
            if self.changed_from:
                yield Label(Text(f"The certificate of {self.host} has CHANGED"), classes="dialog-title")
                yield Static(Text.assemble("trusted:   ", (self.changed_from, "bold"), "\n",
                                           "presented: ", (self.fingerprint, "bold"), "\n\n",
                                           "Connecting is refused. If the certificate was "
                                           "replaced on purpose, run: xsctl trust forget " + self.host))
                with Horizontal(classes="buttons"):
                    yield Button("Close", id="cancel")
                return
            yield Label(Text(f"First connection to {self.host}"), classes="dialog-title")
            yield Static(Text.assemble(
                "Its certificate's SHA-256 fingerprint is\n\n  ", (self.fingerprint, "bold"),
                "\n\nCompare it with the host's own (in dom0: openssl x509 -noout -fingerprint "
                "-sha256 -in /etc/xensource/xapi-ssl.pem). Trust it and connect?"))
            with Horizontal(classes="buttons"):
                yield Button("Trust and connect", variant="warning", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "ok")

    def action_cancel(self) -> None:
        self.dismiss(False)


class SaveBox(Tick, inherit_bindings=False):
    """A checkbox that space ticks and enter leaves to the dialog (which logs in):
    after ticking "save" a user presses enter to go on, not to untick it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_button", "Toggle", show=False, id="savebox.toggle"),
    ]


@dataclass(frozen=True)
class Credentials:
    password: str
    save: bool


class AskPassword(ModalScreen[Credentials | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="pw.cancel"),
        Binding("enter", "submit", "Log in", show=False, id="pw.submit"),
    ]

    def __init__(self, who: str, can_save: bool, problem: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.who = who
        self.can_save = can_save
        self.problem = problem

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="ask-password"):
            yield Label(Text(f"Password for {self.who}"), classes="dialog-title")
            if self.problem:
                yield Label(Text(self.problem), classes="error")
            yield Input(password=True, id="password")
            if self.can_save:
                yield SaveBox("Save in the keyring", value=False, id="save")
            else:  # nothing to save it in: say so rather than offer it
                yield Static(Text("No keyring on this system: the password is asked each "
                                  "time.", style="dim"), id="no-keyring")
            with Horizontal(classes="buttons"):
                yield Button("Log in", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def _submit(self) -> None:
        save = self.can_save and self.query_one(Checkbox).value
        self.dismiss(Credentials(self.query_one(Input).value, save))

    def on_input_submitted(self) -> None:
        self._submit()

    def action_submit(self) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
