"""Driving the real app on a real simulator: the app is built by ``create_app`` on a
client connected over HTTPS, and every assertion reads either the simulator's
database or what the app really shows (widget state, rendered lines, toasts)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from textual import events
from textual.geometry import Region
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key
from textual.message import Message
from textual.notifications import Notification, Notify
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, OptionList

from xsctl.sim import Simulator
from xsctl.ui.app import XsctlApp, create_app
from xsctl.ui.screens.main import MainScreen
from xsctl.ui.views.vms import VmsView
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client

T = TypeVar("T")

# A fixed clock for what the app prints (snapshot names, uptimes, the feed's stamps).
FROZEN = datetime(2026, 11, 25, 9, 30, 0, tzinfo=UTC)


def frozen_clock() -> datetime:
    return FROZEN


@dataclass
class Writes:
    """What the simulator's database saw, from its own watcher hook: (class, op, ref,
    name_label) of every write, in order. Tasks are named after the API call
    (``Async.VM.start``), so this also tells which long calls were made."""

    items: list[tuple[str, str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, cls: str, op: str, ref: str, row: Any) -> None:
        with self.lock:
            self.items.append((cls, op, ref, str(row.get("name_label", ""))))

    def mark(self) -> int:
        with self.lock:
            return len(self.items)

    # what the simulator writes by itself now and then (metric drift, the heartbeat)
    BACKGROUND = frozenset({"host_cpu", "host_metrics", "pool"})

    def since(self, mark: int = 0) -> list[tuple[str, str, str, str]]:
        """The writes since ``mark``, without the simulator's own background ones."""
        with self.lock:
            return [w for w in self.items[mark:] if w[0] not in self.BACKGROUND]

    def tasks(self, mark: int = 0) -> list[str]:
        """Names of the tasks created since ``mark`` (one per call xapi ran)."""
        return [name for cls, op, _, name in self.since(mark) if cls == "task" and op == "add"]

    def touched(self, ref: str, mark: int = 0) -> bool:
        return any(r == ref for _, _, r, _ in self.since(mark))


class Ui:
    """The running app, its pilot, the simulator behind it and what it has said."""

    def __init__(self, app: XsctlApp, pilot: Pilot[int], sim: Simulator,
                 toasts: list[Notification], messages: list[Message], writes: Writes) -> None:
        self.app = app
        self.pilot = pilot
        self.sim = sim
        self.toasts = toasts
        self.messages = messages
        self.writes = writes

    # ------------------------------------------------------------ waiting

    async def until(self, pred: Callable[[], T | Literal[False] | None], timeout: float = 5.0,
                    what: str = "") -> T:
        """Let the app run until ``pred()`` is truthy (events arrive from other
        threads, so this polls; each turn also lets the app process its messages)."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
            await asyncio.sleep(0.01)  # the app runs meanwhile (its own timers draw)

    async def settle(self) -> None:
        """Let every worker finish (plans, actions) and the app handle its messages."""
        await self.handled()
        await self.app.workers.wait_for_complete()
        await self.handled()

    async def modal(self, cls: type[Screen[Any]], timeout: float = 5.0) -> Any:
        """Wait for a ``cls`` dialog to be on top, mounted and drawn."""
        screen = await self.until(
            lambda: isinstance(self.app.screen, cls) and self.app.screen.is_mounted
            and self.app.screen, timeout, f"a {cls.__name__} dialog")
        await self.handled()
        return screen

    async def until_main(self, timeout: float = 5.0) -> MainScreen:
        """The main screen on top and mounted through and through (its on_mount ran
        after every view's): the app is ready. Leaving earlier makes Textual tear the
        screen down while it mounts, which fails in the views' on_mount."""
        screen: MainScreen = await self.until(
            lambda: isinstance(self.app.screen, MainScreen) and self.app.screen.is_mounted
            and self.app.screen, timeout, "the main screen")
        await self.handled()
        return screen

    async def back_to_main(self) -> MainScreen:
        return await self.until(lambda: isinstance(self.app.screen, MainScreen) and self.app.screen,
                                what="the main screen")

    async def press(self, *keys: str) -> None:
        """Press keys one after the other, each handled (with what it set off on the
        screen) before the next is sent. The same events and the same path as
        Pilot.press, which instead waits for the process to look idle twice per key:
        ~0.1 s a key here, where the simulator's threads share the process."""
        for key in keys:
            self._send_key(key)
            await self.handled()

    def _send_key(self, key: str) -> None:
        """One key event, made as Pilot makes it (App._press_keys)."""
        driver = self.app._driver
        assert driver is not None
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char: str | None = unicodedata.lookup(
                _get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(self.app)
        driver.send_message(event)

    async def handled(self) -> None:
        """Wait until the app and every widget of the screen on top have handled what
        was sent to them, and what that made them send in turn."""
        for _ in range(5):
            await asyncio.sleep(0)
            await self.pilot._wait_for_screen()
            pumps = [self.app, *self.app.screen.walk_children(with_self=True)]
            if not any(p._message_queue.qsize() for p in pumps):
                break  # nothing more was sent meanwhile
        self.app.screen._on_timer_update()  # lay out and draw now, as Pilot.pause ends

    async def type(self, text: str) -> None:
        """Type ``text`` into the focused widget: the same key events Pilot.press sends,
        through the same driver, without its two idle waits per key (~0.1 s a key
        here, as the simulator's threads keep the process from looking idle)."""
        focused = self.app.focused
        before = focused.value if isinstance(focused, Input) else None
        for c in text:
            self._send_key("space" if c == " " else c)
        if isinstance(focused, Input) and before is not None:
            await self.until(lambda: focused.value.endswith(text) and
                             len(focused.value) >= len(before), what=f"{text!r} typed")
        await self.handled()

    # ------------------------------------------------------------ the main screen

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.app.screen_stack if isinstance(s, MainScreen))

    @property
    def vms_view(self) -> VmsView:
        return self.main.query_one(VmsView)

    @property
    def table(self) -> VirtualTable:
        return self.main.query_one("#vm-table", VirtualTable)

    async def open_view(self, vid: str) -> None:
        """Show a view as a user does: its number key, or, for a view without one,
        its entry in the menu."""
        main = self.main
        cls = next(c for c in main.view_classes if vid == c.ID)
        if cls.KEY:
            await self.press(cls.KEY)
        else:
            main.open_menu()
            await self.handled()
            main.query_one("#menu", OptionList).highlighted = [
                c.ID for c in main.view_classes].index(vid)
            await self.press("enter")
        await self.until(lambda: main.current_view == vid, what=f"the {vid} view")

    async def open_vms(self) -> VirtualTable:
        await self.press("2")
        assert self.main.current_view == "vms"
        assert self.app.focused is self.table
        return self.table

    def names(self) -> list[str]:
        """The VM names in the table's order (what the filter and sort left)."""
        return [self.table.rows[k].cells[0][0] for k in self.table.order]

    def cells(self, name: str) -> tuple[str, ...]:
        return tuple(text for text, _ in self.table.rows[self.ref(name)].cells)

    def line(self, name: str) -> str:
        """The row of ``name`` as it is drawn on screen now (it must be in view)."""
        t = self.table
        idx = t.order.index(self.ref(name))
        y = idx - t.scroll_offset.y + 1
        assert 1 <= y < t.scrollable_content_region.height, f"{name} is not in view"
        return t.render_line(y).text

    def header_line(self) -> str:
        return self.table.render_line(0).text

    @property
    def cursor_name(self) -> str | None:
        key = self.table.cursor_key
        return None if key is None else self.table.rows[key].cells[0][0]

    def marked(self) -> set[str]:
        return {self.table.rows[k].cells[0][0] for k in self.table.selected}

    async def go_to(self, name: str) -> None:
        """Put the cursor on ``name`` (the table's own move_to, as the command palette
        does; key-by-key navigation has its own tests and costs ~0.1 s a key)."""
        t = self.table
        t.focus()
        t.move_to(self.ref(name))
        await self.handled()
        assert self.cursor_name == name, (self.cursor_name, name)

    async def act(self, key: str, on: str | None = None) -> None:
        if on is not None:
            await self.go_to(on)
        await self.press(key)

    # ------------------------------------------------------------ the simulator

    def ref(self, name: str) -> str:
        refs = [r for r, row in self.sim.store.all("VM").items()
                if row["name_label"] == name and not row["is_a_template"]
                and not row["is_a_snapshot"]]
        assert len(refs) == 1, (name, refs)
        return refs[0]

    def vm(self, name: str) -> Any:
        return self.sim.store.get(self.ref(name), "VM")

    def vm_names(self) -> set[str]:
        return {row["name_label"] for row in self.sim.store.all("VM").values()
                if not row["is_a_template"] and not row["is_a_snapshot"]
                and not row["is_control_domain"]}

    def host_name(self, ref: str) -> str:
        return str(self.sim.store.get(ref, "host")["name_label"])

    def sr_named(self, name: str) -> str:
        refs = [r for r, row in self.sim.store.all("SR").items() if row["name_label"] == name]
        return refs[0]

    # ------------------------------------------------------------ what was said

    def said(self, fragment: str, severity: str | None = None) -> list[Notification]:
        return [n for n in self.toasts
                if (fragment in n.message or fragment in n.title)
                and (severity is None or n.severity == severity)]

    def errors(self) -> list[Notification]:
        return [n for n in self.toasts if n.severity == "error"]

    async def until_said(self, fragment: str, severity: str | None = None,
                         timeout: float = 5.0) -> Notification:
        found = await self.until(lambda: self.said(fragment, severity), timeout,
                                 f"a toast saying {fragment!r}")
        return found[0]

    def screen_text(self) -> str:
        """Every line of the current screen as the terminal shows it."""
        strips = self.app.screen._compositor.render_strips()
        return "\n".join(s.text for s in strips)


def text_of(widget: Widget) -> str:
    """What a widget draws (all of it, also the part scrolled out of view)."""
    w, h = widget.size
    return "\n".join(s.text.rstrip() for s in widget.render_lines(Region(0, 0, w, h)))


def words_of(widget: Widget) -> str:
    """Every text a dialog or panel shows (its Statics and Labels), whitespace folded."""
    from textual.widgets import Static

    return " ".join(" ".join(text_of(w).split()) for w in widget.query(Static))


@contextlib.asynccontextmanager
async def running(sim: Simulator, client: Client, size: tuple[int, int] = (120, 36),
                  clock: Callable[[], datetime] | None = frozen_clock,
                  **kw: Any) -> AsyncIterator[Ui]:
    """The app on ``client`` (metrics off: nothing polls), with a recorder of toasts
    and messages and of the simulator's writes."""
    app = create_app(client, metrics=False, clock=clock, **kw)
    async with driving(app, sim, size) as ui:
        await ui.until_main()
        yield ui


@contextlib.asynccontextmanager
async def driving(app: XsctlApp, sim: Simulator,
                  size: tuple[int, int] = (120, 36)) -> AsyncIterator[Ui]:
    """Run ``app`` as built (also one that connects by itself); a client the app made
    is logged out at the end, as ``xsctl`` does."""
    toasts: list[Notification] = []
    messages: list[Message] = []

    def hook(msg: Message) -> None:
        messages.append(msg)
        if isinstance(msg, Notify):
            toasts.append(msg.notification)

    writes = Writes()
    sim.store.watchers.append(writes)
    own_client = app.client is None
    try:
        async with app.run_test(size=size, notifications=True, message_hook=hook) as pilot:
            yield Ui(app, pilot, sim, toasts, messages, writes)
    finally:
        with contextlib.suppress(ValueError):
            sim.store.watchers.remove(writes)
        if own_client and app.client is not None:
            app.client.close()


async def in_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call (another xapi client, a simulator fault) off the app's loop."""
    return await asyncio.to_thread(fn)
