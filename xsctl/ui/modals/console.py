"""The graphical console's tunnel, shown while it runs: its address on loopback, the
VNC viewer started on it (or how to start one), and how many connections it has
carried. Closing the dialog ends the tunnel."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Label, Static

from xsctl.ui.modals.forms import Dialog
from xsctl.xapi import console
from xsctl.xapi.errors import XsctlError


class TunnelDialog(Dialog[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,q", "cancel", "Close", id="tunnel.close"),
    ]

    def __init__(self, title: str, tunnel: console.Tunnel, viewer: str) -> None:
        super().__init__(id="console-tunnel")
        self.title_text = title
        self.tunnel = tunnel
        self.viewer = viewer

    def compose(self) -> ComposeResult:
        t = self.tunnel
        with Vertical(classes="dialog", id="tunnel-box"):
            yield Label(Text(self.title_text), classes="dialog-title")
            yield Static(Text.assemble(("VNC at ", ""), (t.address, "bold"),
                                       (" (127.0.0.1 only)", "")), id="tunnel-address")
            yield Static(Text(self.viewer), id="tunnel-viewer")
            yield Static(Text(self._state()), id="tunnel-state")
            yield Label(Text("escape, enter or q ends the tunnel"), classes="hint")

    def on_mount(self) -> None:
        self.set_interval(0.5, self._refresh_state)

    def _state(self) -> str:
        t = self.tunnel
        n = t.connections
        text = f"{n} connection{'s' if n != 1 else ''} so far"
        if t.errors:
            last: XsctlError = t.errors[-1]
            text += f"; the last that failed: {last}"
        return text

    def _refresh_state(self) -> None:
        self.query_one("#tunnel-state", Static).update(Text(self._state()))
