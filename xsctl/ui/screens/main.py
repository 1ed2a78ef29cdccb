"""The main screen: xsconsole's layout, a menu on the left and the selected view on
the right. Below 100 columns the menu folds away and opens over the view (f9 or
escape). The menu, the number keys and the views come from the views' declarations;
the screen holds the live client, hands the cache's changes to the views that follow
them, and runs what the views ask for through the one action runner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, Footer, Label, OptionList
from textual.widgets.option_list import Option

from xsctl.ui.bridge import Bridge
from xsctl.ui.messages import (
    ActionRequested,
    CacheChanged,
    HealthChanged,
    MenuRequested,
    PlanFinished,
    TaskStarted,
    TransferMoved,
    ViewRequested,
)
from xsctl.ui.modals.trust import TrustCertificate
from xsctl.ui.notify import say
from xsctl.ui.runner import Runner
from xsctl.ui.views.base import View, all_views
from xsctl.ui.widgets.header import ConnectionHeader
from xsctl.xapi import block
from xsctl.xapi.client import Client
from xsctl.xapi.errors import ChangedCertificate, XapiError
from xsctl.xapi.models import Pool
from xsctl.xapi.ops import catalogue

NARROW = 100


class Menu(OptionList):
    """The views, xsconsole's left column. It takes the focus only when opened (f9,
    escape, or at start on a wide screen): tab moves among the panes of the view, it
    never lands unseen on the menu; a click still picks a view."""

    def on_mount(self) -> None:
        self.can_focus = False

    def on_blur(self) -> None:
        self.can_focus = False

    def take_focus(self) -> None:
        self.can_focus = True
        self.focus()


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f9", "toggle_menu", "Menu", id="menu.toggle",
                tooltip="Open the menu (escape in a view does the same); again to close it"),
        Binding("escape", "close_menu", "Back", show=False, id="menu.close",
                tooltip="From the menu back to the view"),
    ]

    def __init__(self, client: Client, now: Callable[[], datetime], *,
                 metrics: bool = True, view: str | None = None) -> None:
        super().__init__()
        self.client = client
        self.now = now
        self.metrics = metrics
        self.view_classes = [c for c in all_views() if c.offered(client)]
        self.first = self._first_view(view)
        self.runner = Runner(self, client, now)
        self._swept = False  # the inspection attaches an interrupted run left
        self.health_since: datetime | None = None
        # subscribed before the views read the cache: a change applied between their
        # first read and the screen's mount is queued for them, not lost
        self.bridge: Bridge | None = Bridge(self, client)
        self._plan_tasks: dict[int, list[str]] = {}  # id(plan) -> the tasks it made
        self.changed: ChangedCertificate | None = None  # set once: the session stopped
        for cls in self.view_classes:
            if cls.KEY:
                self._bindings.bind(cls.KEY, f"show_view('{cls.ID}')", cls.LABEL, show=False)

    def compose(self) -> ComposeResult:
        yield ConnectionHeader(id="conn-header")
        yield Label("", id="stale-banner", classes="hidden")
        with Horizontal(id="main-body"):
            yield Menu(*[Option(Text(f"{c.KEY or ' '}  {c.LABEL}"), id=c.ID)
                         for c in self.view_classes], id="menu")
            with ContentSwitcher(initial=self.first, id="views"):
                for cls in self.view_classes:
                    yield cls(self.client, now=self.now, metrics=self.metrics)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Menu).highlighted = 0
        self._fold(self.size.width)
        asked = self.first != self.view_classes[0].ID
        self.action_show_view(self.first, focus=self.has_class("narrow") or asked)
        if not self.has_class("narrow") and not asked:
            self.query_one(Menu).take_focus()
        self.call_after_refresh(self.update_header)
        if self.client.cache.loaded_at:  # read before the app started (else: the resync)
            self._swept = True
            self.call_after_refresh(self.runner.sweep_inspections)

    def on_unmount(self) -> None:
        self.runner.release_inspections()
        self.runner.stop()
        if self.bridge is not None:
            self.bridge.close()

    # ------------------------------------------------------------ views

    def _first_view(self, view: str | None) -> str:
        """``--view``: a view's id, label or menu number; the first view otherwise."""
        if not view:
            return self.view_classes[0].ID
        want = view.strip().lower()
        for c in self.view_classes:
            if want in (c.ID, c.LABEL.lower()) or (c.KEY and want == c.KEY) or c.LABEL.lower().startswith(want):
                return c.ID
        say(self.app, f"No view {view!r}: " + ", ".join(c.ID for c in self.view_classes),
            error=True)
        return self.view_classes[0].ID

    @property
    def views(self) -> list[View]:
        return list(self.query_one("#views", ContentSwitcher).query_children(View))

    @property
    def current_view(self) -> str:
        return self.query_one("#views", ContentSwitcher).current or self.view_classes[0].ID

    def view(self, vid: str) -> View:
        return self.query_one(f"#{vid}", View)

    def on_resize(self, event: events.Resize) -> None:
        self._fold(event.size.width)

    def _fold(self, width: int) -> None:
        narrow = width < NARROW
        self.set_class(narrow, "narrow")
        menu = self.query_one(Menu)
        if narrow and menu.has_focus and not self.has_class("menu-open"):
            # folded away, the menu must not keep the keys (Down would move it unseen)
            self.view(self.current_view).focus_target().focus()

    def action_show_view(self, vid: str, focus: bool = True) -> None:
        self.query_one("#views", ContentSwitcher).current = vid
        menu = self.query_one(Menu)
        idx = [c.ID for c in self.view_classes].index(vid)
        if menu.highlighted != idx:
            menu.highlighted = idx
        self.remove_class("menu-open")
        if focus:
            self.view(vid).focus_target().focus()

    def open_menu(self) -> None:
        self.add_class("menu-open")
        self.query_one(Menu).take_focus()

    def _menu_shown(self) -> bool:
        """The menu is on screen and has the keys."""
        menu = self.query_one(Menu)
        return menu.has_focus and (not self.has_class("narrow") or self.has_class("menu-open"))

    def action_toggle_menu(self) -> None:
        if self._menu_shown():
            self.action_close_menu()
        else:
            self.open_menu()

    def action_close_menu(self) -> None:
        """Back from the menu to the view shown (at 80 columns the menu covers it)."""
        if self._menu_shown():
            self.remove_class("menu-open")
            self.view(self.current_view).focus_target().focus()

    @on(OptionList.OptionHighlighted, "#menu")
    def _menu_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if not self.has_class("narrow") and event.option.id:
            self.query_one("#views", ContentSwitcher).current = event.option.id

    @on(OptionList.OptionSelected, "#menu")
    def _menu_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.action_show_view(event.option.id)

    # ------------------------------------------------------------ the cache

    def on_cache_changed(self, event: CacheChanged) -> None:
        if self.bridge is None or not self.is_mounted:
            return
        msg = self.bridge.take()
        if not msg.changes and not msg.resync:
            return
        for view in self.views:
            if msg.resync or msg.classes & view.FOLLOWS:
                view.changed(msg)
        if msg.resync or "pool" in msg.classes:
            self.update_header()
        if msg.resync and not self._swept:
            self._swept = True  # once the pool is read: what an interrupted run left
            self.runner.sweep_inspections()
        elif self._swept and any(c.cls == "vbd" and c.op == "add" and block.TAG in (
                (c.new or {}).get("other_config") or {}) for c in msg.changes):
            # one read before the app started, that came in by its events since
            self.runner.sweep_inspections()

    def on_health_changed(self, msg: HealthChanged) -> None:
        if msg.changed is not None or self.changed is not None:
            if self.changed is None:
                # a certificate that changed mid-session: the connection stopped (nothing
                # is sent any more); both fingerprints, as at connect time
                self.changed = msg.changed
                assert msg.changed is not None
                self.health_since = self.health_since or self.now()
                self.app.push_screen(TrustCertificate(msg.changed.host, msg.changed.seen,
                                                      msg.changed.pinned))
            self.update_header()
            return
        if msg.connected and msg.fresh:
            if self.health_since is not None:  # it was down: say that it is back
                say(self.app, "Reconnected: live again (lost at "
                    f"{self.health_since.astimezone().strftime('%H:%M:%S')})")
            self.health_since = None
        elif self.health_since is None:
            self.health_since = self.now()
        self.update_header(msg.text)

    def update_header(self, note: str = "") -> None:
        client = self.client
        conn = client.conn
        pool = Pool.of(client.cache)
        connected = client.connected
        fresh = client.cache.fresh
        who = conn.endpoint.url if conn.endpoint.scheme == "unix" else f"{conn.user}@{conn.endpoint.url}"
        how = conn.protocol + (" · TLS " + ("CA" if conn.trust.ca_file else "pinned")
                               if conn.endpoint.scheme == "https" else "")
        self.query_one("#conn-header", ConnectionHeader).show(
            pool=pool.name_label if pool else "?", who=who, how=how,
            read_only=conn.read_only, connected=connected, fresh=fresh,
            unencrypted=conn.endpoint.scheme == "http",
            note="" if connected and fresh else (note or client.cache.last_error),
            since=self.health_since, stopped="certificate changed" if self.changed else "",
        )
        banner = self.query_one("#stale-banner", Label)
        if self.changed is not None:
            banner.update(Text(
                f" Stopped: {self.changed.host}'s certificate changed; nothing more is "
                f"sent. Replaced on purpose? xsctl trust forget {self.changed.host}"))
            banner.remove_class("hidden")
        elif connected and fresh:
            banner.add_class("hidden")
        else:  # not connected: no event can arrive, so nothing shown is live
            since = (self.health_since.astimezone().strftime("%H:%M:%S")
                     if self.health_since else "now")
            banner.update(Text(
                f" Not live since {since}: what you see may be out of date. "
                "Reconnecting by itself…"))
            banner.remove_class("hidden")

    # ------------------------------------------------------------ actions

    def on_menu_requested(self, msg: MenuRequested) -> None:
        self.open_menu()

    def on_view_requested(self, msg: ViewRequested) -> None:
        self.action_show_view(msg.view)
        self.view(msg.view).show_related(msg.ref)

    def on_action_requested(self, msg: ActionRequested) -> None:
        self.request(msg.op_id, msg.refs, msg.view, msg.kind)

    def request(self, op_id: str, refs: list[str], view: str, kind: str = "") -> None:
        """Run an operation (or open the actions menu, op_id "") on objects of a view
        (of ``kind``, where they are not what the view acts on: a VM's devices)."""
        self._perform(op_id, refs, view, kind)

    @work(exclusive=True, group="action", exit_on_error=False)
    async def _perform(self, op_id: str, refs: list[str], vid: str, kind: str = "") -> None:
        view = self.view(vid)
        if not op_id:
            cls = kind or view.ACTS_ON
            if cls is None:
                return
            extras = [] if kind else view.menu_extras()
            chosen = await self.runner.menu(cls, refs, extras)
            if chosen is None:
                return
            op_id = chosen
            also = dict(extras)
            if op_id in also:  # on its own object, not on the rows
                refs = [also[op_id]]
            elif not kind:
                refs = view.targets() or refs
        if await self.runner.perform(catalogue.get(op_id), refs):
            view.acted()

    def on_plan_finished(self, msg: PlanFinished) -> None:
        self.runner.finished(msg)
        tasks = self._plan_tasks.pop(id(msg.plan), [])
        if tasks:
            e = msg.error
            last = ("success" if e is None else "cancelled"
                    if isinstance(e, XapiError) and e.code == "TASK_CANCELLED"
                    else f"failed: {catalogue.reason(e)}")
            for view in self.views:
                view.plan_ended(tasks[:-1], "success")
                view.plan_ended(tasks[-1:], last)

    def on_transfer_moved(self, msg: TransferMoved) -> None:
        for view in self.views:
            view.transfer_moved(msg.task, msg.text)

    def on_task_started(self, msg: TaskStarted) -> None:
        self._plan_tasks.setdefault(id(msg.plan), []).append(msg.task)
        for view in self.views:
            view.task_started(msg.task, msg.plan.title)

    def help_sections(self) -> tuple[str, list[tuple[str, list[tuple[str, str]]]]]:
        """The ? help of the view shown: its keys, its operations', the views'."""
        view = self.view(self.current_view)
        own = [(key_text(b.key_display or b.key), b.description + (f": {b.tooltip}"
                if b.tooltip else "")) for b in view.BINDINGS if isinstance(b, Binding)]
        sections = [(view.LABEL, own + view.extra_keys())]
        sections.append(("Views", [(c.KEY or "menu", c.LABEL + (f": {c.HELP}" if c.HELP else ""))
                                   for c in self.view_classes]
                         + [("f9 / escape", "menu")]))
        return view.LABEL, sections


def key_text(key: str) -> str:
    from xsctl.ui.views.base import key_label

    return ", ".join(key_label(k) for k in key.split(","))

