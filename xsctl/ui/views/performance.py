"""Performance: graphs of one host's or one VM's CPU, memory, disk and network, for
the last 10 minutes, 2 hours, week or year, as xapi keeps them.

The history is one /rrd_updates request to the host that holds the RRD. While the
view shows the last 10 minutes it follows the metrics feed (which asks each host
once per interval, and for this object only), appending each new row; the longer
periods are read again once per step of their archive. Hidden, it asks for nothing.

Each graph's scale is written beside it: Textual's Sparkline draws from the lowest
value (bottom) to the highest (top) of what is shown, and those are the two figures
on its left; the title gives the newest. The cores of a host share one fixed scale,
0 to 100 %, so that they can be compared line by line.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import Label, Sparkline, Static

from xsctl.ui.messages import CacheChanged, MetricsUpdated
from xsctl.ui.views.base import View
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.metrics import PERIODS, History, Interest, MetricsUpdate, Period, history
from xsctl.xapi.perf import Figure, figures, sparkline
from xsctl.xapi.text import printable

COLUMNS = [Column("name", "Host or VM", min_width=10, whole=True)]
SHORT = {"10m": "10 min", "2h": "2 hours", "1w": "week", "1y": "year"}
AXIS = 10  # the scale labels' width: "1023 KiB/s"


def _mean(xs: Any) -> float:
    return float(sum(xs) / len(xs))


def plotted(values: list[float]) -> list[float]:
    """What the Sparkline draws: from the first known value, gaps holding the value
    before them (the Sparkline has no notion of a missing point)."""
    out: list[float] = []
    for v in values:
        if math.isnan(v) or math.isinf(v):
            if out:
                out.append(out[-1])
        else:
            out.append(v)
    return out


class Graph(Vertical):
    """One figure: its name and newest value, then the graph with its scale."""

    DEFAULT_CSS = """
    Graph { height: auto; padding: 0 1; }
    Graph .graph-title { width: 100%; }
    Graph Horizontal { height: 2; }
    Graph .graph-axis { width: 12; height: 2; color: $text-muted; }
    Graph Sparkline { height: 2; width: 1fr; }
    """

    def __init__(self, fig: Figure) -> None:
        # no id: a new set is mounted while the old one is still being removed
        super().__init__()
        self.fig = fig
        self.head = Label("", classes="graph-title")
        self.axis = Static("", classes="graph-axis")
        self.graph = Sparkline([], summary_function=_mean)
        self.show(fig)

    def compose(self) -> ComposeResult:
        yield self.head
        with Horizontal():
            yield self.axis
            yield self.graph

    def show(self, fig: Figure) -> None:
        self.fig = fig
        self.head.update(f"[b]{fig.label}[/b]  now {fig.text(fig.now)}")
        self.axis.update(f"{fig.text(fig.high):>{AXIS}} \n{fig.text(fig.low):>{AXIS}} ")
        self.graph.data = plotted(fig.values)


class Cores(Static):
    """A host's cores, a line each on one 0-100 % scale."""

    DEFAULT_CSS = "Cores { height: auto; padding: 0 1; }"

    def __init__(self, cores: list[Figure]) -> None:
        super().__init__("")
        self.cores = cores
        self.lines: list[str] = []

    def on_mount(self) -> None:
        self.show(self.cores)

    def on_resize(self) -> None:
        self.show(self.cores)

    def show(self, cores: list[Figure]) -> None:
        self.cores = cores
        width = max(8, self.size.width - 2 - 8 - 8) if self.size.width else 40
        lines = ["[b]CPU per core[/b]  (each line 0 to 100 %)"]
        for f in cores:
            lines.append(f"{f.label:<7} {f.text(f.now):>6}  {sparkline(f.values, width, 100.0)}")
        self.lines = lines
        self.update("\n".join(lines))


class PerformanceView(View):
    ID = "performance"
    LABEL = "Performance"
    KEY = "9"
    HELP = "graphs of a host's or a VM's CPU, memory, disk and network, 10 minutes to a year"
    FOLLOWS = frozenset({"host", "vm"})

    DEFAULT_CSS = """
    PerformanceView #perf-title { width: 100%; padding: 0 1; text-style: bold; }
    PerformanceView .perf-empty { padding: 1 2; color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("m", "period('10m')", "10 min", id="performance.10m",
                tooltip="The last 10 minutes, a point each 5 s"),
        Binding("h", "period('2h')", "2 hours", id="performance.2h",
                tooltip="The last 2 hours, a point each minute"),
        Binding("w", "period('1w')", "Week", id="performance.1w",
                tooltip="The last week, a point each hour"),
        Binding("y", "period('1y')", "Year", id="performance.1y",
                tooltip="The last year, a point each day"),
        Binding("escape", "back", "Menu", show=False, id="performance.back"),
    ]

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.chosen: tuple[str, str] | None = None  # (kind, ref)
        self.period: Period = PERIODS["10m"]
        self.hist: History | None = None
        self.requests = 0  # history requests made (tests count them)
        self._unsubscribe: Any = None
        self._timer: Timer | None = None
        self._built = False
        self._graphs: dict[str, Graph] = {}
        self._cores: Cores | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="Nothing running", id="perf-objects")
            with VerticalScroll(id="perf-graphs"):
                yield Label("", id="perf-title")
                yield Vertical(id="perf-list")
        yield Label("", id="perf-status", classes="view-status")

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#perf-objects", VirtualTable)

    def focus_target(self) -> Widget:
        return self.table

    def extra_keys(self) -> list[tuple[str, str]]:
        return [("enter", "Show the graphs of the host or VM under the cursor")]

    # ------------------------------------------------------------ the objects

    def _row(self, kind: str, ref: str, r: dict[str, Any]) -> Row | None:
        name = printable(str(r.get("name_label", "")))
        if kind == "host":
            return Row(((name, None),), ((0, name.lower()),), name.lower())
        if r.get("is_control_domain") or r.get("is_a_template") or r.get("is_a_snapshot"):
            return None
        if r.get("power_state") not in ("Running", "Paused"):
            return None
        return Row(((name, None),), ((1, name.lower()),), name.lower())

    def rebuild(self) -> None:
        cache = self.client.cache
        rows: dict[str, Row] = {}
        for kind in ("host", "vm"):
            for ref, r in cache.snapshot(kind):
                row = self._row(kind, ref, r)
                if row is not None:
                    rows[ref] = row
        self.table.replace_all(rows)
        self.table.commit()
        self._built = True

    def changed(self, msg: CacheChanged) -> None:
        if not self._built:
            return
        if msg.resync:
            self.rebuild()
            return
        for c in msg.changes:
            if c.cls not in ("host", "vm"):
                continue
            row = self._row(c.cls, c.ref, c.new) if c.new else None
            if row is None:
                self.table.remove_row(c.ref)
            else:
                self.table.upsert(c.ref, row)
        self.table.commit()

    # ------------------------------------------------------------ showing

    def on_show(self) -> None:
        if not self._built:
            self.rebuild()
        if self.chosen is None:
            pool = next(iter(self.client.cache.all("pool").values()), {})
            master = str(pool.get("master", ""))
            if self.client.cache.get("host", master) is not None:
                self.choose("host", master)
                self.table.move_to(master)
                return
        elif self.hist is None or self.hist.period != self.period:
            self.load()
        self._follow()

    def on_hide(self) -> None:
        self._stop_following()

    def on_unmount(self) -> None:
        self._stop_following()

    def show_related(self, ref: str) -> None:
        """A VM (or host) from another view: its graphs."""
        found = self.client.cache.find(ref)
        if found is None or found[0] not in ("host", "vm"):
            return
        if not self._built:
            self.rebuild()
        self.table.move_to(ref)
        self.choose(found[0], ref)

    def show_object(self, ref: str) -> bool:
        self.show_related(ref)
        return self.chosen is not None and self.chosen[1] == ref

    @on(VirtualTable.Activated, "#perf-objects")
    def _activated(self, event: VirtualTable.Activated) -> None:
        found = self.client.cache.find(event.key)
        if found is not None:
            self.choose(found[0], event.key)

    def choose(self, kind: str, ref: str) -> None:
        if self.chosen == (kind, ref) and self.hist is not None:
            return
        self.chosen = (kind, ref)
        self.hist = None
        self.load()
        self._follow()

    def action_period(self, name: str) -> None:
        period = PERIODS[name]
        if period == self.period:
            return
        self.period = period
        self.hist = None
        self.load()
        self._follow()

    # ------------------------------------------------------------ reading

    def load(self) -> None:
        if self.chosen is None:
            return
        kind, ref = self.chosen
        rec = self.client.cache.get(kind, ref) or {}
        self._title(printable(str(rec.get("name_label", ""))), kind, None)
        self.query_one("#perf-status", Label).update(f"Reading the {self.period.label}…")
        self._fetch(kind, ref, self.period)

    @work(thread=True, exclusive=True, group="performance", exit_on_error=False)
    def _fetch(self, kind: str, ref: str, period: Period) -> None:
        self.requests += 1
        try:
            h = history(self.client.conn, self.client.cache, kind, ref, period)
        except XsctlError as e:
            self.app.call_from_thread(self._failed, kind, ref, period, str(e))
            return
        self.app.call_from_thread(self._loaded, kind, ref, h)

    def _failed(self, kind: str, ref: str, period: Period, why: str) -> None:
        if self.chosen != (kind, ref) or self.period != period:
            return
        self.hist = None
        self._graphs = {}
        self._cores = None
        self.query_one("#perf-list", Vertical).remove_children()
        self.query_one("#perf-status", Label).update(f"No figures: {printable(why)}")

    def _loaded(self, kind: str, ref: str, h: History) -> None:
        if self.chosen != (kind, ref) or self.period != h.period:
            return  # another object or period was chosen meanwhile
        self.hist = h
        self.draw(rebuild=True)

    def _title(self, name: str, kind: str, h: History | None) -> None:
        what = "host" if kind == "host" else "VM"
        span = ""
        if h is not None and h.times:
            fmt = "%H:%M" if self.period.seconds <= 86400 else "%Y-%m-%d"
            a, b = (datetime.fromtimestamp(t, UTC).strftime(fmt) for t in (h.times[0], h.times[-1]))
            span = f": {a} to {b} UTC"
        self.query_one("#perf-title", Label).update(
            f"{name} ({what}), {SHORT[self.period.name]}{span}")

    def draw(self, rebuild: bool = False) -> None:
        h = self.hist
        if h is None or self.chosen is None:
            return
        kind, ref = self.chosen
        rec = self.client.cache.get(kind, ref) or {}
        self._title(printable(str(rec.get("name_label", ""))), kind, h)
        figs = figures(kind, h.series, len(h.times))
        cores = [f for f in figs if f.id.startswith("cpu") and f.id[3:].isdigit()]
        main = [f for f in figs if f not in cores]
        box = self.query_one("#perf-list", Vertical)
        if rebuild or [f.id for f in main] != list(self._graphs) or bool(cores) != bool(
                self._cores):
            box.remove_children()
            self._graphs = {f.id: Graph(f) for f in main}
            self._cores = Cores(cores) if cores else None
            widgets: list[Widget] = list(self._graphs.values())
            if self._cores is not None:
                widgets.append(self._cores)
            if not widgets:
                widgets.append(Label("xapi keeps no figures for it in this period",
                                     classes="perf-empty"))
            box.mount_all(widgets)
        else:
            for f in main:
                self._graphs[f.id].show(f)
            if self._cores is not None:
                self._cores.show(cores)
        step = {5: "a point each 5 s", 60: "a point each minute", 3600: "a point each hour",
                86400: "a point each day"}.get(h.step, f"a point each {h.step} s")
        live = ", following" if self._unsubscribe is not None else ""
        self.query_one("#perf-status", Label).update(
            f"{len(h.times)} points, {step}{live}")

    # ------------------------------------------------------------ following

    def _follow(self) -> None:
        """The last 10 minutes follow the metrics feed; longer periods are read again
        once per step of their archive. Only while shown."""
        self._stop_following()
        if not self.display or self.chosen is None or not self.metrics:
            return
        kind, ref = self.chosen
        if self.period.name == "10m":
            rec = self.client.cache.get(kind, ref) or {}
            uuid = str(rec.get("uuid", ""))
            interest = (Interest(hosts=True, vms=frozenset()) if kind == "host"
                        else Interest(hosts=False, vms=frozenset({uuid})))
            self._unsubscribe = self.client.metrics.subscribe(self._metrics, interest)
        else:
            self._timer = self.set_interval(float(self.period.step), self.load)

    def _stop_following(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _metrics(self, update: MetricsUpdate) -> None:
        """From the feed's thread: posted, handled on the UI thread."""
        self.post_message(MetricsUpdated(update))

    def on_metrics_updated(self, msg: MetricsUpdated) -> None:
        msg.stop()
        h = self.hist
        if h is None or self.chosen is None or self.period.name != "10m":
            return
        kind, ref = self.chosen
        rec = self.client.cache.get(kind, ref) or {}
        host_ref = ref if kind == "host" else str(rec.get("resident_on", ""))
        t = msg.update.times.get(host_ref)
        if t is None or (h.times and t <= h.times[-1]):
            return
        values = msg.update.of(kind, h.uuid)
        if not values:
            return
        h.times.append(t)
        for ds, col in h.series.items():
            col.append(values.get(ds, math.nan))
        keep = self.period.seconds // max(1, h.step)
        if len(h.times) > keep:
            cut = len(h.times) - keep
            del h.times[:cut]
            for col in h.series.values():
                del col[:cut]
        self.draw()
