"""Tasks & Events: running and recent tasks with progress and cancel; a live feed of
the pool's changes (what changed, from what to what)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Label, RichLog

from xsctl.ui.messages import CacheChanged
from xsctl.ui.widgets.bars import progress_bar
from xsctl.ui.widgets.keyed import drop_rows_except, upsert_row
from xsctl.xapi import models
from xsctl.xapi.cache import Change
from xsctl.xapi.errors import XsctlError, friendly
from xsctl.xapi.models import human_duration
from xsctl.xapi.ops import task as taskops

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp

NOISY = {"host_metrics", "vm_metrics", "vm_guest_metrics", "task"}
SKIP_FIELDS = {"allowed_operations", "current_operations", "last_updated", "other_config"}
MAX_EVENTS = 2000


def _short(v: Any, names: dict[str, str]) -> str:
    if isinstance(v, str):
        if v.startswith("OpaqueRef:"):
            return names.get(v, "∅" if v == "OpaqueRef:NULL" else v[10:18])
        return v if len(v) <= 40 else v[:39] + "…"
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
    t.append(label)
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


class TasksView(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "cancel_task", "Cancel task", id="tasks.cancel",
                tooltip="Cancel the selected running task"),
        Binding("M", "toggle_noise", "Metrics events", id="tasks.noise",
                tooltip="Also show metrics and task updates in the feed"),
        Binding("ctrl+l", "clear_events", "Clear feed", id="tasks.clear"),
        Binding("escape", "back", "Menu", show=False, id="tasks.back"),
    ]

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.show_noise = False
        # tasks seen this session, kept after xapi destroys them (finished tasks of
        # our own operations are destroyed at once; their outcome stays listed here)
        self.history: dict[str, dict[str, Any]] = {}
        self._loaded = False

    @property
    def xapp(self) -> XsctlApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Label("Tasks", classes="section")
        t = DataTable[Text](id="task-table", cursor_type="row")
        for label, width in (("Task", 48), ("Status", 24), ("Progress", 22), ("Started", 8),
                             ("Took", 7)):
            t.add_column(label, width=width, key=label.lower())
        yield t
        yield Label("Events", classes="section", id="events-title")
        yield RichLog(id="event-log", max_lines=MAX_EVENTS, wrap=False, markup=False,
                      auto_scroll=True)

    def on_mount(self) -> None:
        self.refresh_tasks()
        self._title()

    def _title(self) -> None:
        extra = "all classes" if self.show_noise else "metrics and task updates hidden (M shows them)"
        self.query_one("#events-title", Label).update(Text(f"Events · {extra}"))

    def action_back(self) -> None:
        self.xapp.action_focus_menu()

    def action_toggle_noise(self) -> None:
        self.show_noise = not self.show_noise
        self._title()

    def action_clear_events(self) -> None:
        self.query_one("#event-log", RichLog).clear()

    def on_cache_changed(self, msg: CacheChanged) -> None:
        for c in msg.changes:
            if c.cls == "task" and c.new is not None:
                self.history[c.ref] = c.new
        if "task" in msg.classes or msg.resync:
            self.refresh_tasks()
        if msg.resync:
            if self._loaded:  # not the first read at start-up
                self.query_one("#event-log", RichLog).write(Text(
                    f"{self.xapp.now().astimezone().strftime('%H:%M:%S')} — connection "
                    "restored; everything was read afresh", style="bold"))
            self._loaded = True
            return
        log = self.query_one("#event-log", RichLog)
        names = self._names(msg.changes)
        stamp = self.xapp.now().astimezone().strftime("%H:%M:%S")
        for c in msg.changes:
            if not self.show_noise and c.cls in NOISY:
                continue
            if c.op == "mod" and not [k for k in c.changed_fields() if k not in SKIP_FIELDS]:
                continue
            log.write(Text.assemble((stamp + " ", "dim"), describe(c, names)))

    def _names(self, changes: list[Change]) -> dict[str, str]:
        """The names of the objects the changed fields refer to (only those: a dict of
        every VM, VDI, ... cost ~6 ms per event at 10,000 VMs)."""
        client = self.xapp.client
        if client is None:
            return {}
        refs = {v for c in changes if c.op == "mod" for pair in c.changed_fields().values()
                for v in pair if isinstance(v, str) and v.startswith("OpaqueRef:")}
        out: dict[str, str] = {}
        for ref in refs:
            found = client.cache.find(ref)
            if found is not None and found[0] in ("vm", "host", "sr", "vdi", "network"):
                out[ref] = str(found[1].get("name_label", ""))
        return out

    def refresh_tasks(self) -> None:
        client = self.xapp.client
        if client is None:
            return
        table = self.query_one("#task-table", DataTable)
        now = self.xapp.now()
        for ref, rec in client.cache.snapshot("task"):
            self.history[ref] = rec
        live = client.cache.all("task")
        tasks = [models.Task.from_record(ref, rec) for ref, rec in self.history.items()]
        # running first, then the most recent
        tasks.sort(key=lambda t: (not t.pending, -(t.created.timestamp() if t.created else 0)))
        tasks = tasks[:200]
        keep = set()
        for t in tasks:
            keep.add(t.ref)
            if t.pending:
                status = Text(t.status, style="bold cyan")
            elif t.status == "success":
                status = Text("done", style="green")
            else:
                err = friendly(t.error_info[0], t.error_info[1:]) if t.error_info else t.status
                status = Text(f"{t.status}: {err}", style="red")
            took = (t.finished or now) - t.created if t.created else None
            if t.pending and t.ref not in live:
                status = Text("gone", style="dim")  # destroyed before it finished
            title = self.xapp.task_titles.get(t.ref)
            cells = [
                Text(f"{title} ({t.name_label})" if title else t.name_label,
                     style="" if t.ref in live else "dim"),
                status,
                progress_bar(t.progress, 16),
                Text(t.created.astimezone().strftime("%H:%M:%S") if t.created else "–"),
                Text(human_duration(took.total_seconds()) if took else "–"),
            ]
            upsert_row(table, t.ref, cells)
        drop_rows_except(table, keep)

    def action_cancel_task(self) -> None:
        client = self.xapp.client
        table = self.query_one("#task-table", DataTable)
        if client is None or table.row_count == 0:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key is None:
            return
        try:
            plan = taskops.cancel(client.cache, key)
        except XsctlError as e:
            self.xapp.error("Cannot cancel", e)
            return
        self.xapp.run_plan(plan)
