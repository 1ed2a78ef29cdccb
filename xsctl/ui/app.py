"""The app: built by :func:`create_app` from a client (or a connection target), in
the CLI, the demo, the screenshot script and the tests alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.theme import Theme
from textual.worker import Worker, WorkerState

from xsctl.ui.commands import XsctlCommands
from xsctl.ui.modals.help import HelpScreen
from xsctl.ui.notify import error
from xsctl.ui.screens.main import MainScreen, key_text
from xsctl.xapi.client import Client, Target
from xsctl.xapi.errors import XsctlError

THEMES = [
    Theme(
        name="xsctl-dark",
        primary="#3B82C4",
        secondary="#5B9BD5",
        accent="#E8A33D",
        warning="#E8A33D",
        error="#D0505C",
        success="#4EBF71",
        foreground="#E2E6EA",
        background="#12161C",
        surface="#1A2029",
        panel="#232B36",
        dark=True,
    ),
    Theme(
        name="xsctl-light",
        primary="#1F5F9E",
        secondary="#3A78B5",
        accent="#B86E00",
        warning="#B86E00",
        error="#B3261E",
        success="#2E7D32",
        foreground="#1D232A",
        background="#F4F6F8",
        surface="#FFFFFF",
        panel="#E3E8EE",
        dark=False,
    ),
]

Clock = Callable[[], datetime]


class XsctlApp(App[int]):
    CSS_PATH = "xsctl.tcss"
    TITLE = "xsctl"
    COMMANDS = App.COMMANDS | {XsctlCommands}
    COMMAND_PALETTE_BINDING = "ctrl+p"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark", "help", "Keys", id="app.help",
                tooltip="The keys of the current view"),
        Binding("colon", "command_palette", "Commands", show=False, id="app.palette",
                tooltip="Every action in context (also ctrl+p)"),
        # Textual adds its ctrl+p only when no binding opens the palette: the colon
        # one above took it away, so it is bound here (priority: also from an Input)
        Binding("ctrl+p", "command_palette", "Commands", show=False, priority=True,
                id="app.palette-ctrl", tooltip="Every action in context (also :)"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Log out and leave"),
        # priority: the focus moves as the key arrives. Keys go to the focused widget's
        # own queue, so a tab handled there moved it only after the keys typed right
        # behind it had gone to the old field (a paste, a fast typist over ssh: a user
        # name, tab, the password)
        Binding("tab", "focus_next", "Next", show=False, priority=True, id="app.tab"),
        Binding("shift+tab", "focus_previous", "Previous", show=False, priority=True,
                id="app.backtab"),
    ]

    def __init__(
        self,
        client: Client | None = None,
        *,
        target: Target | None = None,
        password: str | None = None,
        clock: Clock | None = None,
        metrics: bool = True,
        theme: str | None = None,
        view: str | None = None,
    ) -> None:
        super().__init__()
        self.first_view = view
        # the client the app was given or the connect screen made: the launcher logs
        # it out at the end; the screens and views hold it typed, never None
        self.client = client
        self.target = target
        self.initial_password = password
        self.clock = clock
        self.metrics_enabled = metrics
        for t in THEMES:
            self.register_theme(t)
        self.theme = theme or "xsctl-dark"

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    @property
    def main_screen(self) -> MainScreen | None:
        """The main screen, wherever it is in the stack (dialogs may sit on it)."""
        return next((s for s in self.screen_stack if isinstance(s, MainScreen)), None)

    # ------------------------------------------------------------ start-up

    def on_mount(self) -> None:
        if self.client is not None:
            self.attach(self.client)
        else:
            from xsctl.ui.screens.connect import ConnectScreen

            self.push_screen(ConnectScreen(self.target, self.initial_password))

    def attach(self, client: Client) -> None:
        """Show the pool behind ``client``; its cache is loaded off the UI thread (by
        the connect screen, or by the launcher before the app runs)."""
        self.client = client
        self.push_screen(MainScreen(client, self.now, metrics=self.metrics_enabled,
                                    view=self.first_view))
        if not client.cache.running:
            # read the pool (if not yet) and follow its events, never on this thread:
            # the views fill in from the resync the load reports
            self.run_worker(client.watch, thread=True, group="load", exit_on_error=False,
                            name="load the pool")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place where an unexpected worker failure becomes a message."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            if isinstance(err, XsctlError):
                error(self, "Failed", err)
            else:
                error(self, "Unexpected error", f"{type(err).__name__}: {err}")

    # ------------------------------------------------------------ global actions

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        sections: list[tuple[str, list[tuple[str, str]]]] = []
        title = "xsctl"
        if isinstance(screen, MainScreen):
            title, sections = screen.help_sections()
        elif isinstance(screen, ModalScreen):
            # a dialog: the keys that answer it
            title = "this dialog"
            sections.append(("Dialog", [
                (key_text(b.key), b.description + (f": {b.tooltip}" if b.tooltip else ""))
                for b in screen.BINDINGS if isinstance(b, Binding)]
                + [("enter", "the focused button"), ("tab", "next field or button")]))
        sections.append(("Everywhere", [
            ("?", "these keys"), (": / ctrl+p", "command palette (every action in context)"),
            ("tab", "next pane"), ("q", "quit (logs out)"),
        ]))
        self.push_screen(HelpScreen(f"Keys: {title}", sections))

    async def action_quit(self) -> None:
        self.exit(0)


def create_app(client: Client | None = None, **kw: Any) -> XsctlApp:
    """The one way to build the app."""
    return XsctlApp(client, **kw)
