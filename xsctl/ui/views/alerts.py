"""Alerts: the pool's xapi messages, live and newest first, as XenCenter's Alerts
list shows them: priority, when, what it is about, what happened. ``/`` filters by
any of that; p, c and w narrow by priority, class and object; enter reads one whole;
x dismisses the marked ones (or the one under the cursor), X every alert of its kind.

A pool keeps up to 10,000 messages (xapi_globs.ml message_limit): the rows are built
once, then only those a change touched, on the virtual table the VM list uses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from rich.console import Group
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Input, Label

from xsctl.ui.messages import ActionRequested, CacheChanged
from xsctl.ui.modals.message import MessageScreen
from xsctl.ui.views.listing import DetailPane, ListingView, kv, listing_keys
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi.models import Message
from xsctl.xapi.ops.alert import ABOUT, ObjectNames
from xsctl.xapi.text import human_age

COLUMNS = [
    Column("when", "When", width=7),
    Column("priority", "Priority", width=14),
    Column("class", "Class", width=5, priority=1),
    Column("object", "On", min_width=10, ratio=2, whole=True),
    Column("alert", "Alert", min_width=14, ratio=3),
    # dropped first: at 80 columns the alert's name says more than a cut first line
    Column("message", "Message", min_width=24, ratio=4, priority=2),
]

# what p steps through: the most severe only, then one more level each time, then all
THRESHOLDS = (1, 2, 3, 4, 5)
CLASSES = tuple(cls for cls, _ in ABOUT)  # what c steps through
AGE_EVERY = 60.0  # seconds between refreshes of the ages while the view is shown
NAMED = frozenset(table for _, table in ABOUT)  # the classes whose names rows show
DISMISS = "alert.dismiss"


class AlertsView(ListingView[DetailPane]):
    """The Alerts view."""

    ID = "alerts"
    LABEL = "Alerts"
    KEY = ""
    ORDER = 30
    HELP = "the pool's alerts, live: filter, read one whole, dismiss"
    FOLLOWS = frozenset({"message", *NAMED})
    ACTS_ON = "message"
    TABLE = "alert-table"
    FILTER = "alert-filter"
    DETAIL = "alert-detail"
    STATUS = "alert-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "alerts", "priority, kind, object or text",
        [Binding("p", "priority", "Priority", id="alerts.priority", show=False,
                 tooltip="Only the most severe alerts; again to take in the next level"),
         Binding("c", "cls", "Class", id="alerts.class", show=False,
                 tooltip="Only the alerts about VMs, then hosts, SRs, the pool, disks"),
         Binding("w", "object", "This object", id="alerts.object", show=False,
                 tooltip="Only the alerts about the object of the one under the cursor"),
         Binding("a", "actions", "Actions", id="alerts.actions",
                 tooltip="Every action for the marked alerts, or the one under the cursor")],
        clears="the priority, class and object, then the marks")

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.names: ObjectNames | None = None  # built when first shown
        self.max_priority = 5  # the least severe priority shown
        self.only_class: str | None = None  # xapi's class name ("VM")
        self.only_object: str | None = None  # a uuid
        self._styles: dict[int, Style | None] = {}
        self._timer: Timer | None = None
        self._stamps: dict[str, float | None] = {}  # ref -> when xapi raised it

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by priority, kind, object or text",
                    id="alert-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="No alerts", id="alert-table")
            yield DetailPane(id="alert-detail")
        yield Label("", id="alert-status", classes="view-status")

    # ------------------------------------------------------------ rows

    def on_show(self) -> None:
        if self.names is None:
            self.rebuild()
        elif self._timer is None:
            self.rebuild()  # the ages moved on while hidden
        if self._timer is None:
            self._timer = self.set_interval(AGE_EVERY, self.tick)

    def on_hide(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def rebuild(self) -> None:
        """Every row from the cache (first shown again, a resync, a renamed
        object)."""
        cache = self.client.cache
        t = self.app.current_theme
        self._styles = {1: Style(color=t.error, bold=True), 2: Style(color=t.error),
                        3: Style(color=t.warning), 4: Style(color=t.success), 5: None}
        self.names = ObjectNames(cache)
        self._stamps = {}
        with cache.long_lived():
            self.table.replace_all({ref: self.row(Message.from_record(ref, r))
                                    for ref, r in cache.snapshot("message")})
        self.table.commit()
        self.update_status()
        self.update_detail()

    def tick(self) -> None:
        """The ages, a minute on: only the rows whose age reads differently now (those
        of the last hours; a 3-day-old alert's changes once an hour), not every row
        again (0.6 s at 10,000 alerts, once a minute)."""
        now = self.now().timestamp()
        table = self.table
        changed = False
        for ref, stamp in self._stamps.items():
            row = table.rows.get(ref)
            if row is None or stamp is None:
                continue
            when = human_age(now - stamp)
            if row.cells[0][0] != when:
                table.upsert(ref, replace(row, cells=((when, None), *row.cells[1:])))
                changed = True
        if changed:
            table.commit()

    def row(self, m: Message) -> Row:
        assert self.names is not None
        now = self.now().timestamp()
        stamp = m.timestamp.timestamp() if m.timestamp else 0.0
        self._stamps[m.ref] = stamp if m.timestamp else None
        on = self.names.name(m)
        prio = m.priority_short
        cells = (
            (human_age(now - stamp if m.timestamp else None), None),
            (prio, self._styles.get(m.priority)),
            (m.cls, None),
            (on, None),
            (m.title, None),
            (m.first_line, None),
        )
        # newest first under the first column, the uuid keeping equal times in order
        sort = ((-stamp, m.uuid), (m.priority, -stamp), (m.cls, -stamp), (on.lower(), -stamp),
                (m.title.lower(), -stamp), (m.first_line.lower(), -stamp))
        search = " ".join((prio, m.priority_name, m.name, m.title, m.cls, on,
                           m.first_line)).lower()
        tags = frozenset({*(f"p<={k}" for k in range(m.priority, 6)),
                          f"class:{m.cls.lower()}", f"object:{m.obj_uuid}"})
        return Row(cells, sort, search, tags=tags)

    def changed(self, msg: CacheChanged) -> None:
        """Keyed row updates for the messages that came and went; a renamed, new or
        removed object renames the rows about it (rebuilt: rare, and a dict each)."""
        if self.names is None:
            return  # not shown yet: built when it is
        if msg.resync:
            self.rebuild()
            return
        if any(c.cls in NAMED and (c.op != "mod" or (c.old or {}).get("name_label")
                                   != (c.new or {}).get("name_label"))
               for c in msg.changes if c.cls in NAMED):
            self.rebuild()
            return
        if "message" not in msg.classes:
            return
        table = self.table
        for c in msg.changes:
            if c.cls != "message":
                continue
            if c.new is None:
                table.remove_row(c.ref)
                self._stamps.pop(c.ref, None)
            else:
                table.upsert(c.ref, self.row(Message.from_record(c.ref, c.new)))
        table.commit()
        self.update_status()
        self.update_detail()

    # ------------------------------------------------------------ narrowing

    def _required(self) -> None:
        tags = set()
        if self.max_priority < 5:
            tags.add(f"p<={self.max_priority}")
        if self.only_class:
            tags.add(f"class:{self.only_class.lower()}")
        if self.only_object:
            tags.add(f"object:{self.only_object}")
        self.table.set_required(frozenset(tags))
        self.update_status()

    def action_priority(self) -> None:
        self.max_priority = 1 if self.max_priority >= 5 else self.max_priority + 1
        self._required()

    def action_cls(self) -> None:
        present = {r.cells[2][0] for r in self.table.rows.values()}
        order = [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))
        if not order:
            return
        if self.only_class in order:
            i = order.index(self.only_class) + 1
            self.only_class = order[i] if i < len(order) else None
        else:
            self.only_class = order[0]
        self._required()

    def action_object(self) -> None:
        if self.only_object is not None:
            self.only_object = None
        else:
            m = self._cursor_message()
            if m is None:
                return
            self.only_object = m.obj_uuid
        self._required()

    def narrowed(self) -> bool:
        return self.max_priority < 5 or self.only_class is not None or self.only_object is not None

    def widen(self) -> None:
        self.max_priority, self.only_class, self.only_object = 5, None, None
        self._required()

    # ------------------------------------------------------------ status and detail

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        only = []
        if self.max_priority < 5:
            only.append(f"priority 1-{self.max_priority}" if self.max_priority > 1
                        else "priority 1")
        if self.only_class:
            only.append(f"about {self.only_class}s" if self.only_class != "Pool"
                        else "about the pool")
        if self.only_object and self.names is not None:
            only.append("about " + self.names.names.get(self.only_object,
                                                        self.only_object[:8]))
        narrowed = f" ({', '.join(only)})" if only else ""
        self.set_status(f"{t.visible_count} of {len(t.rows)} alerts{narrowed}{flt}{sel} · "
                        f"sorted by {col} · enter reads one")

    def _cursor_message(self) -> Message | None:
        key = self.table.cursor_key
        return None if key is None else Message.get(self.client.cache, key)

    def about(self, m: Message) -> str:
        names = self.names or ObjectNames(self.client.cache)
        return f"{m.cls} {names.name(m)}"

    def show_detail(self, pane: DetailPane, key: str | None) -> None:
        m = None if key is None else Message.get(self.client.cache, key)
        if m is None:
            pane.show("No alert selected", Text(""))
            return
        facts = kv([
            ("Priority", f"{m.priority} ({m.priority_name})"),
            ("On", Text(self.about(m))),
            ("When", m.when),
            ("Kind", m.name),
            ("UUID", m.uuid),
        ])
        # the body as Text: never markup, never raw (printable: no escape codes)
        pane.show(Text(m.title), Group(facts, Text(""), Text(m.body or "(no text)")))

    # ------------------------------------------------------------ reading one

    def extra_keys(self) -> list[tuple[str, str]]:
        return [(k, "Read the alert whole" if k == "enter" else d)
                for k, d in super().extra_keys()]

    @on(VirtualTable.Activated, "#alert-table")
    def _activated(self, event: VirtualTable.Activated) -> None:
        m = Message.get(self.client.cache, event.key)
        if m is None:
            return

        def read(dismiss: bool | None) -> None:
            if dismiss:  # read, then dismissed: through its plan, as x in the table
                self.post_message(ActionRequested(DISMISS, [m.ref], self.ID))

        self.app.push_screen(MessageScreen(m, self.about(m), dismissable=True), read)
