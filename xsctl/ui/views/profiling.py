"""Profiling: host tools run in a host's dom0 (here in dom0, else through the user's
ssh; the demo's are the simulator's), offered only where the profile allows it.

A tab per tool the host has (``command -v``): a live xentop whose rows are the VMs
(their actions a key away, as in the VMs view), perf, OProfile, xenpm, and a
command typed by hand, shown as it will run before it runs. Every result is a table,
and what the tools printed is one key away (R). The work is headless
(xsctl.profiling): this view only starts sessions in thread workers and shows what
they post back.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, ContentSwitcher, Input, Label, Select, Static, Tab, Tabs

from xsctl.profiling import oprofile, sessions, tools, xentop, xl
from xsctl.profiling.hosts import shell_for
from xsctl.profiling.pool import perf_target, vms_on_host
from xsctl.profiling.shell import Shell
from xsctl.profiling.tables import Parsed, Table
from xsctl.ui.messages import (
    CacheChanged,
    DomainsListed,
    JobEnded,
    JobProgressed,
    ToolsProbed,
    XentopRefreshed,
    XentopStopped,
)
from xsctl.ui.modals.confirm import ConfirmText
from xsctl.ui.modals.forms import PickOne
from xsctl.ui.notify import say
from xsctl.ui.views.base import PaletteCommand, TableView, key_label
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi.client import Client
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import Host, human_bytes
from xsctl.xapi.ops.catalogue import Choice
from xsctl.xapi.text import printable

XENTOP_DELAY = 2  # seconds between xentop's refreshes
XENTOP_ITERATIONS = 900  # one xentop runs half an hour, then the next starts
XL_AGAIN = 5.0  # at most this often is xl list asked again for a domain not known

COLUMNS = [
    Column("name", "Name", min_width=12, ratio=3, whole=True),
    Column("domid", "ID", width=4, align="right", priority=3),
    Column("state", "State", width=7, priority=2),
    Column("cpu", "CPU%", width=6, align="right"),
    Column("memory", "Memory", width=8, align="right"),
    Column("vcpus", "vCPU", width=4, align="right", priority=4),
    Column("net", "Net/s", width=9, align="right"),
    Column("disk", "Disk/s", width=8, align="right", priority=1),
    Column("cputime", "CPU time", width=9, align="right", priority=5),
]
CPU, MEMORY, NET, DISK, NAME = 3, 4, 6, 7, 0
SORT_CYCLE = (CPU, MEMORY, NET, DISK, NAME)  # what o steps through, the busiest first

PANES = ("xentop", "perf", "oprofile", "xenpm", "run")
LABELS = {"xentop": "xentop", "perf": "perf", "oprofile": "OProfile", "xenpm": "xenpm",
          "run": "Run a command"}
MODES = [("Status (opcontrol --status)", "status"),
         ("operf: dom0 alone", "operf"),
         ("Xenoprof: passive domains", "passive"),
         ("Xenoprof: active domains", "active")]
MODE_HELP = {
    "status": "What OProfile's daemon is doing.",
    "operf": "dom0's own processes, system-wide (operf knows nothing of Xen; it needs a PMU).",
    "passive": "dom0 writes the guests' samples: their kernels' symbols, their user space "
               "as one lump each. One kernel image per domain, in order.",
    "active": "Each guest runs OProfile itself: you start it in them when asked, between "
              "dom0's daemon and dom0's start.",
}


def _rate(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "KiB":
        return human_bytes(v * 1024).replace("iB", "") + "/s" if v >= 1 else "0/s"
    return f"{v:.0f}/s" if v < 10000 else f"{v / 1000:.0f}k/s"


def _number(v: object, unit: str = "") -> str:
    if v is None:
        return "–"
    if unit == "%" and isinstance(v, (int, float)):
        return f"{v:.2f}%" if v >= 0.01 or v == 0 else f"{v:.1e}%"
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"
    return str(v)


class XentopTable(VirtualTable):
    """xentop's domains: ``o`` sorts by CPU, memory, network, disk, then name, each of
    the numbers biggest first (xentop's own ``s`` steps through its columns)."""

    def action_next_sort(self) -> None:
        try:
            i = SORT_CYCLE.index(self.sort_column)
        except ValueError:
            i = -1
        col = SORT_CYCLE[(i + 1) % len(SORT_CYCLE)]
        self.sort_by(col, reverse=col != NAME)


class ResultTable(VirtualTable):
    """A result's rows, first in the order the tool printed them; ``o`` then sorts by
    the first column, and on."""

    def action_next_sort(self) -> None:
        if self.sort_column >= len(self.columns):
            self.sort_by(0, reverse=False)
        else:
            super().action_next_sort()


class ResultPane(Vertical):
    """A session's result: one of its tables at a time (``}`` the next one) or what
    the tools printed (R)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("R", "toggle_raw", "Raw text", id="profiling.raw",
                tooltip="What the tools printed, as they printed it (again: the table)"),
        Binding("right_curly_bracket", "next_table", "Next table", id="profiling.next-table",
                key_display="}", tooltip="The session's next table"),
    ]

    def __init__(self, tool: str) -> None:
        super().__init__(id=f"result-{tool}", classes="result-pane")
        self.tool = tool
        self.tables: list[Table] = []
        self.parsed: list[Parsed] = []
        self.index = 0
        self.raw = False
        self.raw_text = ""

    def compose(self) -> ComposeResult:
        yield Label(Text("Nothing run yet", style="dim"), classes="result-title")
        table = ResultTable([Column("none", "")], empty_text="", id=f"result-table-{self.tool}")
        table.display = False
        yield table
        with VerticalScroll(classes="result-raw hidden", can_focus=True):
            yield Static("", classes="result-raw-text")

    @property
    def table(self) -> ResultTable:
        return self.query_one(ResultTable)

    def show(self, outcome: sessions.Outcome) -> None:
        self.parsed = outcome.parsed
        self.tables = [t for p in outcome.parsed for t in p.tables]
        self.index = 0
        self.raw_text = outcome.raw()
        self.refresh_bindings()
        self.query_one(".result-raw-text", Static).update(Text(printable(self.raw_text,
                                                                          multiline=True)))
        self._draw()

    def _draw(self) -> None:
        title = self.query_one(".result-title", Label)
        table = self.table
        table.display = not self.raw
        if not self.tables:
            why = next((p.error for p in self.parsed if p.error), None)
            table.set_columns([Column("none", "")])
            table.replace_all({})
            table.empty_text = f"No table: {why}" if why else "No table"
            table.commit()
            title.update(Text("R: what the tools printed"))
            return
        t = self.tables[self.index]
        last = len(t.columns) - 1
        cols = [Column(c.key, c.label + (f" ({c.unit})" if c.unit and c.unit != "%" else ""),
                       min_width=max(4, min(10, len(c.label))),
                       ratio=1 if c.numeric else 4 if i == last else 2,
                       align="right" if c.numeric else "left", whole=i == last,
                       priority=0 if i < 2 or i == last else 1 + i)
                for i, c in enumerate(t.columns)]
        units = [c.unit for c in t.columns]
        rows = {}
        for n, r in enumerate(t.rows):
            cells = tuple((printable(_number(v, u)), None) for v, u in zip(r, units, strict=True))
            sort = tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v or "").lower())
                         for v in r)
            # one more sort value past the columns: the tool's own order, shown first
            rows[str(n)] = Row(cells, (*sort, n), " ".join(c for c, _ in cells).lower())
        table.set_columns(cols)
        table.replace_all(rows)
        table.sort_by(len(cols), reverse=False)
        more = f" · {self.index + 1} of {len(self.tables)}, }} next" if len(self.tables) > 1 else ""
        problems = sum(len(p.problems) for p in self.parsed)
        odd = f" · {problems} line(s) not understood" if problems else ""
        title.update(Text(f"{t.title} ({len(t.rows)} rows){more}{odd} · R raw"))

    def action_toggle_raw(self) -> None:
        if not self.raw_text:
            return
        self.raw = not self.raw
        scroll = self.query_one(".result-raw", VerticalScroll)
        scroll.set_class(not self.raw, "hidden")
        self.table.display = not self.raw
        (scroll if self.raw else self.table).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_table":
            return len(self.tables) > 1
        if action == "toggle_raw":
            return bool(self.raw_text)
        return True

    def action_next_table(self) -> None:
        if len(self.tables) > 1:
            self.index = (self.index + 1) % len(self.tables)
            self._draw()


class ProfilingView(TableView):
    """The Profiling view."""

    ID = "profiling"
    LABEL = "Profiling"
    KEY = "0"
    HELP = "xentop, perf, OProfile and xenpm in a host's dom0"
    FOLLOWS = frozenset({"vm", "host"})
    ACTS_ON = "vm"
    TABLE = "xentop-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "pick_host", "Host", id="profiling.host",
                tooltip="Profile another host of the pool"),
        Binding("right_square_bracket", "tool(1)", "Next tool", key_display="]",
                id="profiling.next-tool", tooltip="The next tool ([ the one before)"),
        Binding("left_square_bracket", "tool(-1)", "Previous tool", key_display="[",
                show=False, id="profiling.previous-tool"),
        Binding("R", "raw", "Raw text", id="profiling.xentop-raw",
                tooltip="What the tool printed last, as printed (again: the table)"),
        Binding("escape", "stop_or_back", "Back", show=False, id="profiling.escape",
                tooltip="Stop what runs; else back to the menu"),
        Binding("ctrl+c", "stop", "Stop", show=False, id="profiling.stop",
                tooltip="Stop the command that runs on the host"),
    ]

    @classmethod
    def offered(cls, client: Client) -> bool:
        return client.target is not None and client.target.profiling

    def __init__(self, client: Client, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.host: str | None = None  # the host's ref
        self.probe: tools.Probe | None = None
        self.probe_error: str | None = None
        self.pane = "xentop"
        self.stop_xentop = threading.Event()
        self.stop_job = threading.Event()
        self.job: str | None = None  # the tool whose session runs
        self.domains: list[xl.XlDomain] | None = None  # xl list, for the join
        self.xl_asked = 0.0
        self.block: xentop.Block | None = None
        self.block_index = 0
        self.xentop_raw = ""
        self.rows: dict[str, xentop.Row] = {}
        self.rates = xentop.Rates()
        self.raw_shown = False

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Label("", id="profiling-host")
        yield Tabs(id="profiling-tools")
        with ContentSwitcher(initial="pane-xentop", id="profiling-panes"):
            with Vertical(id="pane-xentop", classes="tool-pane"):
                yield XentopTable(COLUMNS, empty_text="Starting xentop…", id="xentop-table")
                with VerticalScroll(id="xentop-raw", classes="hidden", can_focus=True):
                    yield Static("", id="xentop-raw-text")
            with Vertical(id="pane-perf", classes="tool-pane"):
                with Horizontal(classes="tool-form"):
                    yield Select[str]([("The whole host", "host")], value="host",
                                      allow_blank=False, id="perf-target", compact=True)
                    yield Label(" for ")
                    yield Input("10", id="perf-seconds", classes="seconds", type="integer",
                                max_length=4, compact=True)
                    yield Label(" s ")
                    yield Button("Record", id="perf-go", variant="primary", compact=True)
                yield ResultPane("perf")
            with Vertical(id="pane-oprofile", classes="tool-pane"):
                with Horizontal(classes="tool-form"):
                    yield Select[str](MODES, value="status", allow_blank=False, id="op-mode",
                                      compact=True)
                    yield Label(" for ")
                    yield Input("10", id="op-seconds", classes="seconds", type="integer",
                                max_length=4, compact=True)
                    yield Label(" s ")
                    yield Button("Start", id="op-go", variant="primary", compact=True)
                yield Label(Text(MODE_HELP["status"]), id="op-help", classes="tool-help")
                with Horizontal(classes="tool-form xen-only hidden", id="op-xen-row"):
                    yield Input(placeholder="domains: IDs or VM names", id="op-domains",
                                compact=True)
                    yield Input(placeholder="/boot/xen-syms-…", id="op-xen", compact=True)
                with Horizontal(classes="tool-form xen-only hidden", id="op-image-row"):
                    yield Input(placeholder="dom0 vmlinux (none: --no-vmlinux)", id="op-vmlinux",
                                compact=True)
                    yield Input(placeholder="passive: each domain's kernel, in order",
                                id="op-images", compact=True)
                yield ResultPane("oprofile")
            with Vertical(id="pane-xenpm", classes="tool-pane"):
                with Horizontal(classes="tool-form"):
                    yield Select[str]([("P-states: CPU frequency", "cpufreq"),
                                       ("C-states: CPU idle", "cpuidle")], value="cpufreq",
                                      allow_blank=False, id="xenpm-what", compact=True)
                    yield Button("Read", id="xenpm-go", variant="primary", compact=True)
                yield ResultPane("xenpm")
            with Vertical(id="pane-run", classes="tool-pane"):
                yield Input(placeholder="a command, as you would type it (enter: shown "
                            "first, then run)", id="run-line", compact=True)
                yield Label(Text("Runs as typed, word by word, with no shell (sh -c '…' "
                                 "for a pipeline); 60 s at most."), classes="tool-help")
                yield ResultPane("run")
        yield Label("", id="profiling-status", classes="view-status")

    def on_mount(self) -> None:
        t = self.table
        t.sort_column, t.sort_reverse = CPU, True

    def on_show(self) -> None:
        if self.host is None:
            self.host = self._default_host()
        self._show_host()
        if self.probe is None and self.probe_error is None and self.host:
            self._probe(self.host)
        elif self.pane == "xentop":
            self._start_xentop()

    def on_hide(self) -> None:
        # another view shown (not a dialog over this one: xentop goes on under it, and
        # shows the pause that dialog confirmed)
        if not self.display:
            self.stop_xentop.set()

    def on_unmount(self) -> None:
        self.stop_xentop.set()
        self.stop_job.set()

    def focus_target(self) -> Widget:
        if self.pane == "xentop":
            return self.table
        pane = self.query_one(f"#pane-{self.pane}")
        return next((w for w in pane.query("Input, Select, Button") if w.can_focus), pane)

    # ------------------------------------------------------------ the host

    def _default_host(self) -> str | None:
        """The host xsctl runs in, else the pool master."""
        hosts = [Host.from_record(self.client.cache, r, rec)
                 for r, rec in self.client.cache.snapshot("host")]
        from xsctl.profiling.hosts import this_host_uuid

        here = this_host_uuid()
        for h in hosts:
            if here and h.uuid == here:
                return h.ref
        return next((h.ref for h in hosts if h.is_master), hosts[0].ref if hosts else None)

    def _host(self) -> Host | None:
        return Host.get(self.client.cache, self.host) if self.host else None

    def _shell(self) -> Shell:
        host = self._host()
        if host is None:
            raise XsctlError("the host is gone from the pool")
        return shell_for(self.client.target, host)

    def _show_host(self) -> None:
        host = self._host()
        label = self.query_one("#profiling-host", Label)
        if host is None:
            label.update(Text("No host", style="bold"))
            return
        try:
            where = self._shell().how
        except XsctlError as e:
            where = str(e)
        found = ""
        if self.probe is not None:
            missing = [t.label for t in self.probe.missing]
            found = f" · not on this host: {', '.join(missing)}" if missing else ""
        elif self.probe_error:
            found = f" · {self.probe_error}"
        label.update(Text.assemble((printable(host.name_label), "bold"),
                                   f" · {printable(where)}{found} · h: another host"))

    def action_pick_host(self) -> None:
        hosts = sorted((Host.from_record(self.client.cache, r, rec)
                        for r, rec in self.client.cache.snapshot("host")),
                       key=lambda h: h.name_label.lower())
        choices = [Choice(h.ref, printable(h.name_label),
                          f"{h.address}{' · master' if h.is_master else ''}") for h in hosts]
        self.app.push_screen(PickOne[str]("Profile which host?", choices), self._host_picked)

    def _host_picked(self, ref: str | None) -> None:
        if not ref or ref == self.host:
            return
        self.stop_xentop.set()
        self.stop_job.set()
        self.host = ref
        self.probe = None
        self.probe_error = None
        self.domains = None
        self.block = None
        self.rows.clear()
        self.rates = xentop.Rates()
        self.table.replace_all({})
        self.table.empty_text = "Starting xentop…"
        self.table.commit()
        self._show_host()
        self._probe(ref)

    # ------------------------------------------------------------ the probe and the tabs

    @work(thread=True, exclusive=True, group="profiling-probe", exit_on_error=False)
    def _probe(self, host: str) -> None:
        try:
            probe = tools.probe(self._shell())
        except XsctlError as e:
            self.post_message(ToolsProbed(host, None, str(e)))
            return
        self.post_message(ToolsProbed(host, probe))

    async def on_tools_probed(self, msg: ToolsProbed) -> None:
        if msg.host != self.host:
            return
        self.probe, self.probe_error = msg.probe, msg.error
        self._show_host()
        tabs = self.query_one("#profiling-tools", Tabs)
        await tabs.clear()
        offered = [t.id for t in self.probe.offered] if self.probe else []
        for pane in [*offered, "run"]:
            await tabs.add_tab(Tab(LABELS[pane], id=f"tab-{pane}"))
        first = offered[0] if offered else "run"
        if self.pane not in offered and self.pane != "run":
            self.pane = first
        tabs.active = f"tab-{self.pane}"
        self._switch(self.pane)
        if msg.error:
            self._status(f"Could not ask {printable(self._label())} for its tools: {msg.error}")
        self._perf_targets()

    def _label(self) -> str:
        host = self._host()
        return host.name_label if host else "the host"

    @on(Tabs.TabActivated, "#profiling-tools")
    def _tab(self, event: Tabs.TabActivated) -> None:
        if event.tab is not None and event.tab.id:
            self._switch(event.tab.id.removeprefix("tab-"))

    def _switch(self, pane: str) -> None:
        self.pane = pane
        self.query_one("#profiling-panes", ContentSwitcher).current = f"pane-{pane}"
        if pane == "xentop":
            self._start_xentop()
        else:
            self.stop_xentop.set()
            self._status(self._pane_status(pane))
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # the VM actions and xentop's keys act on xentop's rows: in another tool's tab
        # they would act on a row out of sight
        if action in ("act", "actions", "raw"):
            return self.pane == "xentop"
        return True

    def _pane_status(self, pane: str) -> str:
        return {"perf": "perf: choose what to record and for how long, then Record",
                "oprofile": "OProfile: a mode, then Start",
                "xenpm": "xenpm: the P-states or the C-states of every CPU",
                "run": "Type a command and enter: it is shown as it will run first"}.get(pane, "")

    def action_tool(self, step: int) -> None:
        tabs = self.query_one("#profiling-tools", Tabs)
        if tabs.tab_count:
            if step > 0:
                tabs.action_next_tab()
            else:
                tabs.action_previous_tab()
            self.call_after_refresh(lambda: self.focus_target().focus())

    def palette(self) -> list[PaletteCommand]:
        out = []
        offered = [t.id for t in self.probe.offered] if self.probe else []
        for pane in [*offered, "run"]:
            out.append(PaletteCommand(f"profiling: {LABELS[pane].lower()}",
                                      tools.BY_ID[pane].help if pane in tools.BY_ID
                                      else "run a command in the host's dom0",
                                      partial(self._open, pane)))
        return out

    def _open(self, pane: str) -> None:
        from xsctl.ui.screens.main import MainScreen

        if isinstance(self.screen, MainScreen):
            self.screen.action_show_view(self.ID)
        tabs = self.query_one("#profiling-tools", Tabs)
        if tabs.query(f"#tab-{pane}"):
            tabs.active = f"tab-{pane}"

    def _status(self, text: str) -> None:
        self.query_one("#profiling-status", Label).update(Text(printable(text)))

    # ------------------------------------------------------------ xentop

    def _start_xentop(self) -> None:
        if not self.display or self.host is None or self.probe is None \
                or not self.probe.has("xentop") or self.pane != "xentop":
            return
        if not self.stop_xentop.is_set() and any(
                w.group == "profiling-xentop" and w.is_running for w in self.app.workers):
            return
        self.stop_xentop = threading.Event()
        self._xentop(self.host, self.stop_xentop, "xl" in self.probe.found)

    @work(thread=True, group="profiling-xentop", exit_on_error=False)
    def _xentop(self, host: str, stop: threading.Event, has_xl: bool) -> None:
        shell = self._shell()
        if has_xl:
            self._list_domains(shell, host)
        count = 0

        def iteration(raw: str) -> None:
            nonlocal count
            self.post_message(XentopRefreshed(host, xentop.parse(raw), count, raw))
            count += 1

        while not stop.is_set():
            stream = xentop.Stream(iteration)
            r = shell.run(sessions.xentop_stream_command(XENTOP_DELAY, XENTOP_ITERATIONS),
                          cancel=stop, on_line=stream.feed)
            if stop.is_set():
                return
            if not r.ok:
                self.post_message(XentopStopped(host, r.problem()))
                return
            stream.flush()  # it ended by itself (its iterations): on with the next

    def _list_domains(self, shell: Shell, host: str) -> None:
        r = shell.run(sessions.XL_LIST)
        if r.ok:
            doms, _, _ = xl.xl_domains(r.stdout)
            self.post_message(DomainsListed(host, doms))
        else:
            self.post_message(DomainsListed(host, None, r.problem()))

    @work(thread=True, exclusive=True, group="profiling-xl", exit_on_error=False)
    def _relist(self, host: str) -> None:
        self._list_domains(self._shell(), host)

    def on_domains_listed(self, msg: DomainsListed) -> None:
        if msg.host != self.host:
            return
        if msg.domains is not None:
            self.domains = msg.domains
        if self.block is not None:
            self._draw_xentop()

    def on_xentop_stopped(self, msg: XentopStopped) -> None:
        if msg.host == self.host:
            self.table.empty_text = f"xentop stopped: {msg.error}"
            self.table.commit()
            self._status(f"xentop stopped: {msg.error}")

    def on_xentop_refreshed(self, msg: XentopRefreshed) -> None:
        if msg.host != self.host:
            return
        self.xentop_raw = msg.raw
        if msg.top.last is None:
            self._status(f"xentop: {msg.top.error or 'no domain'} (R shows its output)")
            return
        self.block = msg.top.last
        self.block_index = msg.index
        rates = self.rates.update(msg.index * XENTOP_DELAY,
                                  self._join(self.block))
        self._draw_xentop(rates)
        if self.raw_shown:
            self.query_one("#xentop-raw-text", Static).update(Text(printable(msg.raw,
                                                                              multiline=True)))

    def _join(self, block: xentop.Block) -> list[xentop.Row]:
        assert self.host is not None
        by_id, by_name = vms_on_host(self.client.cache, self.host)
        rows = xentop.join(block, self.domains, by_id, by_name)
        # a domain xl did not list yet (a VM just started): ask xl again, not too often
        if self.domains is not None and any(r.how == "unknown" for r in rows) \
                and time.monotonic() - self.xl_asked > XL_AGAIN:
            self.xl_asked = time.monotonic()
            self._relist(self.host)
        return rows

    def _draw_xentop(self, rates: dict[str, tuple[float | None, float | None]] | None = None
                     ) -> None:
        if self.block is None:
            return
        rows = self._join(self.block)
        if rates is None:
            rates = {r.key: (None, None) for r in rows}
        first = self.block_index == 0
        table = self.table
        new: dict[str, Row] = {}
        for r in rows:
            d = r.domain
            net, disk = rates.get(r.key, (None, None))
            cpu = None if first else d.cpu_pct
            name = "Domain-0" if r.vm is not None and r.vm.control else r.label
            style = None if r.vm is not None else "dim"
            cells = (
                (printable(name), None), (_number(r.domid), None), (d.state_word, None),
                ("…" if cpu is None else f"{cpu:.1f}", None),
                (human_bytes((d.mem_k or 0) * 1024) if d.mem_k is not None else "–", None),
                (_number(d.vcpus), None), (_rate(net, "KiB"), None), (_rate(disk, "io"), None),
                (_number(d.cpu_sec) + ("s" if d.cpu_sec is not None else ""), None),
            )
            sort = (name.lower(), r.domid if r.domid is not None else -1, d.state_word,
                    cpu if cpu is not None else -1.0, d.mem_k or 0, d.vcpus or 0,
                    net if net is not None else -1.0, disk if disk is not None else -1.0,
                    d.cpu_sec or 0)
            new[r.key] = Row(cells, sort, f"{name} {d.name} {d.state_word}".lower(),
                             dim=style is not None)
        self.rows = {r.key: r for r in rows}
        for key in [k for k in table.rows if k not in new]:
            table.remove_row(key)
        for key, row in new.items():
            table.upsert(key, row)
        table.commit()
        self._xentop_status(rows, first)

    def _xentop_status(self, rows: list[xentop.Row], first: bool) -> None:
        t = self.table
        col = COLUMNS[t.sort_column].label + (" ▼" if t.sort_reverse else " ▲")
        odd = [r for r in rows if r.vm is None]
        unknown = f" · {len(odd)} not matched to a VM" if odd else ""
        wait = " · CPU% from the next refresh" if first else ""
        self._status(f"{len(rows)} domains · {col} (o sorts) · every {XENTOP_DELAY} s"
                     f"{unknown}{wait} · enter: actions · R raw")

    @on(VirtualTable.Sorted, "#xentop-table")
    def _sorted(self, event: VirtualTable.Sorted) -> None:
        self._xentop_status(list(self.rows.values()), self.block_index == 0)

    @on(VirtualTable.Activated, "#xentop-table")
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    def action_raw(self) -> None:
        if self.pane != "xentop":
            raise SkipAction()
        self.raw_shown = not self.raw_shown
        scroll = self.query_one("#xentop-raw", VerticalScroll)
        scroll.set_class(not self.raw_shown, "hidden")
        self.table.display = not self.raw_shown
        if self.raw_shown:
            self.query_one("#xentop-raw-text", Static).update(
                Text(printable(self.xentop_raw, multiline=True)))
        (scroll if self.raw_shown else self.table).focus()

    # ------------------------------------------------------------ the VM under the row

    def targets(self) -> list[str]:
        refs = []
        for key in self.table.targets():
            r = self.rows.get(key)
            if r is not None and r.vm is not None and not r.vm.control:
                refs.append(r.vm.ref)
        return refs

    def action_act(self, op_id: str) -> None:
        if self.pane == "xentop" and not self.targets():
            self._no_vm()
            return
        super().action_act(op_id)

    def action_actions(self) -> None:
        if self.pane == "xentop" and not self.targets():
            self._no_vm()
            return
        super().action_actions()

    def _no_vm(self) -> None:
        key = self.table.cursor_key
        r = self.rows.get(key) if key else None
        if r is None:
            return
        if r.vm is not None and r.vm.control:
            say(self.app, "Domain-0 is the host's control domain: it has no VM actions")
        else:
            say(self.app, f"{printable(r.domain.name)}: no VM matched ({r.how}), so no "
                "action", error=True)

    def show_object(self, ref: str) -> bool:
        key = next((k for k, r in self.rows.items() if r.vm is not None and r.vm.ref == ref),
                   None)
        if key is None:
            return False
        self.table.move_to(key)
        return self.table.cursor_key == key

    def extra_keys(self) -> list[tuple[str, str]]:
        keys = super().extra_keys()
        keys.append(("o", "xentop: sort by CPU, memory, network, disk, name"))
        keys += [(key_label(b.key_display or b.key), b.description)
                 for b in ResultPane.BINDINGS if isinstance(b, Binding)]
        return keys

    def changed(self, msg: CacheChanged) -> None:
        if "host" in msg.classes or msg.resync:
            self._show_host()
        if self.block is not None and ("vm" in msg.classes or msg.resync):
            self._draw_xentop()

    # ------------------------------------------------------------ sessions

    def action_stop(self) -> None:
        if self.job is None:
            raise SkipAction()  # ctrl+c does what it does elsewhere
        self.stop_job.set()
        self._status(f"{LABELS[self.job]}: stopping…")

    def action_stop_or_back(self) -> None:
        if self.job is not None:
            self.action_stop()
        elif self.raw_shown and self.pane == "xentop":
            self.action_raw()
        else:
            self.action_back()

    def _busy(self) -> bool:
        if self.job is not None:
            say(self.app, f"{LABELS[self.job]} still runs: escape or ctrl+c stops it",
                error=True)
            return True
        return False

    def _seconds(self, input_id: str) -> int | None:
        text = self.query_one(input_id, Input).value.strip()
        if not text.isdigit() or not 1 <= int(text) <= 3600:
            say(self.app, "Seconds: a whole number from 1 to 3600", error=True)
            return None
        return int(text)

    def _perf_targets(self) -> None:
        select = self.query_one("#perf-target", Select)
        options: list[tuple[str, str]] = [("The whole host", "host")]
        if self.host:
            by_id, _ = vms_on_host(self.client.cache, self.host)
            for vm in sorted(by_id.values(), key=lambda v: v.name.lower()):
                if vm.control:
                    continue
                options.append((f"{printable(vm.name)}: its qemu", f"qemu:{vm.ref}"))
                options.append((f"{printable(vm.name)}: its tapdisks", f"tapdisk:{vm.ref}"))
        value = select.value
        select.set_options(options)
        if any(v == value for _, v in options):
            select.value = value

    @on(Input.Submitted, "#perf-seconds")
    @on(Button.Pressed, "#perf-go")
    def _perf_go(self) -> None:
        seconds = self._seconds("#perf-seconds")
        if seconds is None or self._busy():
            return
        value = str(self.query_one("#perf-target", Select).value)
        kind, _, ref = value.partition(":")
        try:
            target = perf_target(self.client.cache, self.host or "", ref or None, kind)
        except XsctlError as e:
            say(self.app, str(e), error=True)
            return
        self._run_job("perf", lambda shell, stop, progress: sessions.perf_session(
            shell, target, seconds, cancel=stop, progress=progress))

    @on(Select.Changed, "#op-mode")
    def _op_mode(self, event: Select.Changed) -> None:
        mode = str(event.value)
        self.query_one("#op-help", Label).update(Text(MODE_HELP.get(mode, "")))
        for row in self.query(".xen-only"):
            row.set_class(mode not in ("passive", "active"), "hidden")
        self.query_one("#op-images", Input).disabled = mode != "passive"

    @on(Input.Submitted, "#op-seconds")
    @on(Button.Pressed, "#op-go")
    def _op_go(self) -> None:
        seconds = self._seconds("#op-seconds")
        if seconds is None or self._busy():
            return
        mode = str(self.query_one("#op-mode", Select).value)
        value = {k: self.query_one(f"#op-{k}", Input).value for k in
                 ("domains", "xen", "vmlinux", "images")}
        try:
            domains = self._domids(value["domains"]) if mode in ("passive", "active") else ()
            session = oprofile.Session(
                mode, seconds, domains, value["xen"].strip(), value["vmlinux"].strip(),
                oprofile.split_list(value["images"]) if mode == "passive" else ())
        except XsctlError as e:
            say(self.app, str(e), error=True)
            return
        self._run_job("oprofile", lambda shell, stop, progress: sessions.oprofile_session(
            shell, session, cancel=stop, progress=progress, guests_ready=self._guests_ready))

    def _domids(self, text: str) -> tuple[int, ...]:
        """Domain IDs, or the names of VMs with a domain on this host."""
        by_id, _ = vms_on_host(self.client.cache, self.host or "")
        out: list[int] = []
        for word in oprofile.split_list(text):
            if word.isdigit():
                out.append(int(word))
                continue
            hits = [d for d, vm in by_id.items() if vm.name == word]
            if len(hits) != 1:
                raise XsctlError(f"{word!r}: no VM of that name has a domain here"
                                 if not hits else f"{word!r}: several VMs have that name")
            out.append(hits[0])
        return tuple(out)

    def _guests_ready(self, steps: str) -> bool:
        """Asked from the session's thread: the user starts OProfile in the guests."""
        done = threading.Event()
        answer: list[bool] = []

        def ask() -> None:
            def got(ok: bool | None) -> None:
                answer.append(bool(ok))
                done.set()

            self.app.push_screen(ConfirmText("Start OProfile in the active domains",
                                             Text(steps), verb="Go on"), got)

        self.app.call_from_thread(ask)
        while not done.wait(0.2):
            if self.stop_job.is_set():
                return False
        return bool(answer and answer[0])

    @on(Button.Pressed, "#xenpm-go")
    def _xenpm_go(self) -> None:
        if self._busy():
            return
        what = str(self.query_one("#xenpm-what", Select).value)
        self._run_job("xenpm", lambda shell, stop, progress: sessions.xenpm_session(
            shell, (what,), cancel=stop, progress=progress))

    @on(Input.Submitted, "#run-line")
    def _run_line(self, event: Input.Submitted) -> None:
        if self._busy():
            return
        try:
            cmd = tools.freeform(event.value)
            shell = self._shell()
        except XsctlError as e:
            say(self.app, str(e), error=True)
            return
        body = Text.assemble(("It runs ", "dim"), printable(shell.where), (", as:\n\n", "dim"),
                             (printable(shell.shown(cmd)), "bold"),
                             ("\n\nword by word, with no shell; stopped after "
                              f"{cmd.timeout:g} s, or by escape or ctrl+c.", "dim"))

        def answered(ok: bool | None) -> None:
            if ok:
                self._run_job("run", lambda sh, stop, progress: sessions.run_command(
                    sh, cmd, cancel=stop, progress=progress))

        self.app.push_screen(ConfirmText("Run this command?", body), answered)

    def _run_job(self, tool: str, start: Any) -> None:
        self.job = tool
        self.stop_job = threading.Event()
        self._status(f"{LABELS[tool]}: starting… (escape or ctrl+c stops)")
        self._job(tool, start, self.stop_job)

    @work(thread=True, exclusive=True, group="profiling-job", exit_on_error=False)
    def _job(self, tool: str, start: Any, stop: threading.Event) -> None:
        try:
            shell = self._shell()
            outcome = start(shell, stop, lambda text: self.post_message(JobProgressed(tool, text)))
        except XsctlError as e:
            outcome = sessions.Outcome(LABELS[tool], "", error=str(e))
        self.post_message(JobEnded(tool, outcome))

    def on_job_progressed(self, msg: JobProgressed) -> None:
        if msg.tool == self.job:
            self._status(f"{LABELS[msg.tool]}: {msg.text} · escape or ctrl+c stops")

    def on_job_ended(self, msg: JobEnded) -> None:
        self.job = None
        o = msg.outcome
        pane = self.query_one(f"#result-{msg.tool}", ResultPane)
        pane.show(o)
        if o.cancelled:
            self._status(f"{o.title}: stopped")
        elif o.error:
            self._status(f"{o.title}: {o.error}")
            say(self.app, f"{o.title}: {o.error}", error=True)
        else:
            self._status(f"{o.title}: done · R: what the tools printed")
        for note in o.notes:
            say(self.app, note)
        if self.pane == msg.tool:
            pane.table.focus()
