"""The app: built by :func:`create_app` from a client (or a connection target), in
the CLI, the demo, the screenshot script and the tests alike."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.theme import Theme
from textual.widgets import Label
from textual.worker import Worker, WorkerState

from xsctl.ui.bridge import Bridge
from xsctl.ui.commands import XsctlCommands
from xsctl.ui.messages import CacheChanged, HealthChanged, PlanFinished, PlanProgress
from xsctl.ui.modals.help import HelpScreen
from xsctl.ui.screens.main import VIEWS, MainScreen
from xsctl.ui.widgets.header import ConnectionHeader
from xsctl.xapi.client import Client, Target
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Pool
from xsctl.xapi.ops.base import Plan
from xsctl.xapi.session import Health
from xsctl.xapi.transport import is_read

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
    ) -> None:
        super().__init__()
        self.client = client
        self.target = target
        self.initial_password = password
        self.clock = clock
        self.metrics_enabled = metrics
        self.bridge: Bridge | None = None
        self.health_since: datetime | None = None
        for t in THEMES:
            self.register_theme(t)
        self.theme = theme or "xsctl-dark"
        self.plans_running = 0
        self.task_titles: dict[str, str] = {}  # task ref -> the plan that made it

    # ------------------------------------------------------------ time and words

    def now(self) -> datetime:
        return self.clock() if self.clock else datetime.now(UTC)

    def say(self, text: str, *, error: bool = False, timeout: float | None = None) -> None:
        # notify() takes a str; markup=False keeps "[prod] web01" intact
        self.notify(text, severity="error" if error else "information",
                    timeout=timeout or (10 if error else 4), markup=False)

    def error(self, title: str, e: BaseException | str) -> None:
        body = f"{e.friendly}\n{' '.join(e.details)}" if isinstance(e, XapiError) else str(e)
        self.notify(body, title=title, severity="error", timeout=12, markup=False)

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
        """Show the pool behind ``client`` (its cache loaded); follow its events."""
        self.client = client
        self.bridge = Bridge(self, client)
        if not client.cache.loaded_at:
            client.cache.load()
        if not client.cache.running:
            client.cache.start()
        self.push_screen(MainScreen())
        self.call_after_refresh(self.update_header)

    def on_unmount(self) -> None:
        if self.bridge is not None:
            self.bridge.close()

    # ------------------------------------------------------------ cache -> views

    def on_cache_changed(self, event: CacheChanged) -> None:
        if self.bridge is None or not self.is_running:
            return  # shutting down: the views are being taken apart
        msg = self.bridge.take()
        if not msg.changes and not msg.resync:
            return
        screen = self.main_screen
        if screen is not None:
            for vid, _, _ in VIEWS:
                for view in screen.query(f"#{vid}"):  # none yet while the screen composes
                    handler = getattr(view, "on_cache_changed", None)
                    if handler is not None:
                        handler(msg)
        if msg.resync or "pool" in msg.classes:
            self.update_header()

    def on_health_changed(self, msg: HealthChanged) -> None:
        if msg.connected and msg.fresh:
            if self.health_since is not None:  # it was down: say that it is back
                self.say(f"Reconnected: live again (lost at "
                         f"{self.health_since.astimezone().strftime('%H:%M:%S')})")
            self.health_since = None
        elif self.health_since is None:
            self.health_since = self.now()
        self.update_header(msg.text)

    def update_header(self, note: str = "") -> None:
        client = self.client
        if client is None:
            return
        s = self.main_screen
        if s is None:
            return
        conn = client.conn
        pool = Pool.of(client.cache)
        connected = conn.health is Health.CONNECTED
        fresh = client.cache.fresh
        who = conn.endpoint.url if conn.endpoint.scheme == "unix" else f"{conn.user}@{conn.endpoint.url}"
        how = conn.protocol + (" · TLS " + ("CA" if conn.trust.ca_file else "pinned")
                               if conn.endpoint.scheme == "https" else "")
        s.query_one("#conn-header", ConnectionHeader).show(
            pool=pool.name_label if pool else "?", who=who, how=how,
            read_only=conn.read_only, connected=connected, fresh=fresh,
            note="" if connected and fresh else (note or client.cache.last_error)[:80],
            since=self.health_since,
        )
        banner = s.query_one("#stale-banner", Label)
        if connected and fresh:
            banner.add_class("hidden")
        else:  # not connected: no event can arrive, so nothing shown is live
            since = (self.health_since.astimezone().strftime("%H:%M:%S")
                     if self.health_since else "now")
            banner.update(Text(
                f" Not live since {since}: what you see may be out of date. "
                "Reconnecting by itself…"))
            banner.remove_class("hidden")

    # ------------------------------------------------------------ plans

    def run_plan(self, plan: Plan) -> None:
        client = self.client
        if client is not None and client.conn.read_only and any(
            not is_read(c.method) for c in plan.calls
        ):
            self.error(f"{plan.title}: refused", "this connection is read-only (--read-only)")
            return
        self.plans_running += 1
        self.say(f"{plan.title}…", timeout=3)
        self._run_plan(plan)

    @work(thread=True, group="plans", exit_on_error=False)
    def _run_plan(self, plan: Plan) -> None:
        client = self.client
        assert client is not None
        n = len(plan.calls)

        def progress(step: int, fraction: float) -> None:
            self.post_message(PlanProgress(plan, (step + fraction) / max(1, n)))

        try:
            result = client.run(plan, progress,
                                on_task=lambda t: self.task_titles.__setitem__(t, plan.title))
        except Exception as e:  # reported as a toast by on_plan_finished
            self.post_message(PlanFinished(plan, e))
            return
        self.post_message(PlanFinished(plan, None, result))

    def on_plan_finished(self, msg: PlanFinished) -> None:
        self.plans_running = max(0, self.plans_running - 1)
        if msg.error is not None:
            self.error(f"{msg.plan.title} failed", msg.error)
        else:
            self.say(f"{msg.plan.title}: done")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """One place where an unexpected worker failure becomes a message."""
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            err = event.worker.error
            if isinstance(err, XsctlError):
                self.error("Failed", err)
            else:
                self.error("Unexpected error", f"{type(err).__name__}: {err}")

    # ------------------------------------------------------------ global actions

    def action_focus_menu(self) -> None:
        if isinstance(self.screen, MainScreen):
            self.screen.open_menu()

    def action_help(self) -> None:
        screen = self.screen
        sections: list[tuple[str, list[tuple[str, str]]]] = []
        view_name = "xsctl"
        if isinstance(screen, MainScreen):
            vid = screen.current_view
            view_name = next(label for v, label, _ in VIEWS if v == vid)
            view = screen.view(vid)
            keys = [(b.key_display or _key(b.key), b.description + (f": {b.tooltip}" if b.tooltip else ""))
                    for b in view.BINDINGS if isinstance(b, Binding)]
            if vid == "vms":
                from xsctl.ui.widgets.table import VirtualTable

                keys += [(_key(b.key), b.description + (f": {b.tooltip}" if b.tooltip else ""))
                         for b in VirtualTable.BINDINGS if isinstance(b, Binding)]
            sections.append((view_name, keys))
            sections.append(("Views", [(k, label) for _, label, k in VIEWS] + [("f9 / escape", "menu")]))
        sections.append(("Everywhere", [
            ("?", "these keys"), (": / ctrl+p", "command palette (every action in context)"),
            ("tab", "next pane"), ("q", "quit (logs out)"),
        ]))
        self.push_screen(HelpScreen(f"Keys: {view_name}", sections))

    async def action_quit(self) -> None:
        self.exit(0)


def _key(k: str) -> str:
    return k.replace("question_mark", "?").replace("slash", "/").replace("colon", ":").split(",")[0]


def create_app(client: Client | None = None, **kw: Any) -> XsctlApp:
    """The one way to build the app."""
    return XsctlApp(client, **kw)
