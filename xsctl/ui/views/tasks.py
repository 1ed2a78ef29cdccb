"""Tasks & Events: running and recent tasks with progress and cancel; a live feed of
the pool's changes (what changed, from what to what)."""

from __future__ import annotations

import time
from datetime import UTC
from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label, RichLog

from xsctl.ui.messages import CacheChanged
from xsctl.ui.views.base import TableView
from xsctl.ui.widgets.bars import bar_text
from xsctl.ui.widgets.table import Cell, Column, Row, VirtualTable
from xsctl.xapi import models
from xsctl.xapi.cache import CLASSES, Change
from xsctl.xapi.errors import friendly
from xsctl.xapi.models import NULL, human_duration
from xsctl.xapi.text import printable

NOISY = {"host_metrics", "vm_metrics", "vm_guest_metrics", "task"}
SKIP_FIELDS = {"allowed_operations", "current_operations", "last_updated", "other_config"}
MAX_EVENTS = 2000


def _short(v: Any, names: dict[str, str]) -> str:
    if isinstance(v, str):
        if v.startswith("OpaqueRef:"):
            return str(names.get(v, "∅" if v == "OpaqueRef:NULL" else v[10:18]))
        text = printable(v)
        return text if len(text) <= 40 else text[:39] + "…"
    if isinstance(v, list):
        return f"[{len(v)}]"
    if isinstance(v, dict):
        return "{…}"
    return str(v)


def describe(c: Change, names: dict[str, str]) -> Text:
    rec = c.new or c.old or {}
    label = str(rec.get("name_label") or rec.get("name") or rec.get("uuid", c.ref[10:18]))
    t = Text()
    t.append(f"{c.cls:<8} ", style="bold")
    t.append(f"{c.op:<3} ", style={"add": "green", "del": "red"}.get(c.op, "cyan"))
    t.append(printable(label))
    if c.op == "mod":
        diffs = [(k, a, b) for k, (a, b) in c.changed_fields().items() if k not in SKIP_FIELDS]
        for k, a, b in diffs[:4]:
            t.append(f"  {k}: ", style="dim")
            t.append(_short(a, names))
            t.append(" → ", style="dim")
            t.append(_short(b, names))
        if len(diffs) > 4:
            t.append(f"  (+{len(diffs) - 4} more)", style="dim")
    return t


TASK_COLUMNS = [
    Column("task", "Task", min_width=20, ratio=4),
    Column("status", "Status", min_width=10, ratio=2),
    Column("progress", "Progress", width=15),
    Column("started", "Started", width=8, priority=1),
    Column("took", "Took", width=7, align="right", priority=2),
]
BAR = 9  # the progress bar's cells ("█████████ 100%" fits the column)


class TasksView(TableView):
    """Running and recent tasks, and the live feed of the pool's changes."""

    ID = "tasks"
    LABEL = "Tasks & Events"
    KEY = "3"
    HELP = "tasks with progress and cancel; every change in the pool, live"
    FOLLOWS = frozenset(c.lower() for c in CLASSES)  # the feed shows every change
    ACTS_ON = "task"
    TABLE = "task-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("M", "toggle_noise", "Metrics events", id="tasks.noise",
                tooltip="Also show metrics and task updates in the feed"),
        Binding("ctrl+l", "clear_events", "Clear feed", id="tasks.clear"),
        Binding("escape", "back", "Menu", show=False, id="tasks.back"),
    ]

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.show_noise = False
        # tasks seen this session, kept after xapi destroys them (finished tasks of
        # our own operations are destroyed at once; their outcome stays listed here)
        self.history: dict[str, dict[str, Any]] = {}
        self.titles: dict[str, str] = {}  # task ref -> the plan that made it
        self.outcome: dict[str, str] = {}  # task ref -> how its plan ended, once known
        self.rates: dict[str, str] = {}  # task ref -> a transfer's rate and time left
        # when this session first saw each task, and learnt that it ended (monotonic
        # seconds): a task xapi destroys at once has no "finished" to read
        self.seen_at: dict[str, float] = {}
        self.ended_at: dict[str, float] = {}
        self._loaded = False

    def compose(self) -> ComposeResult:
        yield Label("Tasks", classes="section")
        yield VirtualTable(TASK_COLUMNS, empty_text="No tasks yet this session",
                           id="task-table")
        yield Label("Events", classes="section", id="events-title")
        yield RichLog(id="event-log", max_lines=MAX_EVENTS, wrap=False, markup=False,
                      auto_scroll=True)

    def on_mount(self) -> None:
        self.refresh_tasks()
        self._title()

    def _title(self) -> None:
        extra = "all classes" if self.show_noise else "metrics and task updates hidden (M shows them)"
        self.query_one("#events-title", Label).update(Text(f"Events · {extra}"))

    def task_started(self, task: str, title: str) -> None:
        self.titles[task] = title
        # a task of ours that starts and ends between two event.from answers is never
        # seen in the cache (xapi coalesces its add and del): listed all the same
        self.history.setdefault(task, {
            "name_label": "", "status": "pending", "progress": 0.0,
            "created": self.now().astimezone(UTC).strftime("%Y%m%dT%H:%M:%SZ"),
            "allowed_operations": [], "subtask_of": NULL})
        self.refresh_tasks()

    def transfer_moved(self, task: str, text: str) -> None:
        self.rates[task] = text
        self.refresh_tasks()

    def plan_ended(self, tasks: list[str], outcome: str) -> None:
        for t in tasks:
            self.outcome[t] = outcome
            self.ended_at.setdefault(t, time.monotonic())
        self.refresh_tasks()

    def action_toggle_noise(self) -> None:
        self.show_noise = not self.show_noise
        self._title()

    def action_clear_events(self) -> None:
        self.query_one("#event-log", RichLog).clear()

    def changed(self, msg: CacheChanged) -> None:
        for c in msg.changes:
            if c.cls == "task" and c.new is not None:
                self.history[c.ref] = c.new
        if "task" in msg.classes or msg.resync:
            self.refresh_tasks()
        if msg.resync:
            if self._loaded:  # not the first read at start-up
                self.query_one("#event-log", RichLog).write(Text(
                    f"{self.now().astimezone().strftime('%H:%M:%S')} — connection "
                    "restored; everything was read afresh", style="bold"))
            self._loaded = True
            return
        log = self.query_one("#event-log", RichLog)
        names = self._names(msg.changes)
        stamp = self.now().astimezone().strftime("%H:%M:%S")
        for c in msg.changes:
            if not self.show_noise and c.cls in NOISY:
                continue
            if c.op == "mod" and not [k for k in c.changed_fields() if k not in SKIP_FIELDS]:
                continue
            log.write(Text.assemble((stamp + " ", "dim"), describe(c, names)))

    def _names(self, changes: list[Change]) -> dict[str, str]:
        """The names of the objects the changed fields refer to (only those: a dict of
        every VM, VDI, ... cost ~6 ms per event at 10,000 VMs)."""
        client = self.client
        refs = {v for c in changes if c.op == "mod" for pair in c.changed_fields().values()
                for v in pair if isinstance(v, str) and v.startswith("OpaqueRef:")}
        out: dict[str, str] = {}
        for ref in refs:
            found = client.cache.find(ref)
            if found is not None and found[0] in ("vm", "host", "sr", "vdi", "network"):
                out[ref] = str(found[1].get("name_label", ""))
        return out

    def refresh_tasks(self) -> None:
        cache = self.client.cache
        table = self.table
        for ref, rec in cache.snapshot("task"):
            self.history[ref] = rec
        for ref in self.history:
            self.seen_at.setdefault(ref, time.monotonic())
        live = cache.all("task")
        tasks = [models.Task.from_record(ref, rec) for ref, rec in self.history.items()
                 # xapi's internal steps of another task (exec_with_subtask) are part
                 # of their parent's row, not rows of their own
                 if rec.get("subtask_of", NULL) in ("", NULL)]
        # running first, then the most recent (the Task column's sort key)
        tasks.sort(key=lambda t: (not self._is_running(t, live),
                                  -(t.created.timestamp() if t.created else 0)))
        dim = Style(dim=True)
        rows: dict[str, Row] = {}
        for t in tasks[:200]:
            (status, status_style), bar = self._status(t, live)
            took = self._took(t)
            title = self.titles.get(t.ref)
            name = printable(t.name_label)
            started = t.created.timestamp() if t.created else 0.0
            cells = (
                (f"{title} ({name})" if title and name else title or name,
                 None if t.ref in live else dim),
                (status, status_style),
                bar,
                (t.created.astimezone().strftime("%H:%M:%S") if t.created else "–", None),
                (human_duration(took, seconds_shown=True) if took is not None else "–", None),
            )
            rows[t.ref] = Row(cells, ((not self._is_running(t, live), -started), status,
                                      t.progress, started, took or 0.0),
                              f"{title or ''} {name} {status}".lower())
        table.replace_all(rows)
        table.commit()

    def _took(self, t: models.Task) -> float | None:
        """How long it ran (or has run): xapi's own times where it gave both, else this
        session's clock from when the task was first seen."""
        if t.created and t.finished:
            return (t.finished - t.created).total_seconds()
        seen = self.seen_at.get(t.ref)
        if seen is None:
            return None
        return self.ended_at.get(t.ref, time.monotonic()) - seen

    def _is_running(self, t: models.Task, live: dict[str, Any]) -> bool:
        return t.pending and t.ref in live and t.ref not in self.outcome

    def _status(self, t: models.Task, live: dict[str, Any]) -> tuple[Cell, Cell]:
        """What happened to it, and its progress bar (only while it runs or once it
        succeeded: a cancelled or failed task's 100% would be a lie)."""
        th = self.app.current_theme
        ok, bad, run = Style(color=th.success), Style(color=th.error), Style(color=th.primary,
                                                                               bold=True)
        none: Cell = ("–", Style(dim=True))
        ended = self.outcome.get(t.ref)
        if t.pending and t.ref in live and ended is None:
            rate = self.rates.get(t.ref)
            return (f"{t.status} · {rate}" if rate else t.status, run), (bar_cell(t.progress), run)
        if t.status == "success" or ended == "success":
            return ("done", ok), (bar_cell(1.0), ok)
        if ended is not None and ended != "success":
            return (ended, bad), none
        if t.status in ("failure", "cancelled"):
            err = friendly(t.error_info[0], t.error_info[1:]) if t.error_info else t.status
            label = "cancelled" if t.status == "cancelled" or (
                t.error_info and t.error_info[0] == "TASK_CANCELLED") else f"failed: {err}"
            return (label, bad), none
        # destroyed by another client before we saw how it ended
        return ("ended (outcome not seen)", Style(dim=True)), none


def bar_cell(fraction: float) -> str:
    f = max(0.0, min(1.0, fraction))
    return f"{bar_text(f, BAR)} {f * 100:3.0f}%"
