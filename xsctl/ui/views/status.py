"""Status: xsconsole's first screen, for the whole pool. Hosts with their load, VM
counts by power state, storage with usage bars, the latest alerts (enter reads one
whole), and how we are connected. At 80 columns the tables drop their least needed
columns rather than cut the ones that tell rows apart."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Label, Static

from xsctl.ui.messages import ActionRequested, CacheChanged, MetricsUpdated, ViewRequested
from xsctl.ui.modals.message import MessageScreen
from xsctl.ui.views.base import View
from xsctl.ui.widgets.bars import bar_text, usage_style
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import models
from xsctl.xapi.host_settings import pool_settings
from xsctl.xapi.hosts import state as host_state
from xsctl.xapi.metrics import HostLoad, Interest, MetricsUpdate
from xsctl.xapi.models import Pool, human_bytes, human_duration, is_guest, is_template
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.alert import ObjectNames
from xsctl.xapi.perf import TRAIL_CELLS, TRAIL_SPAN, CpuTrail
from xsctl.xapi.text import human_age


def used_of(used: int, total: int) -> str:
    """``12.3/256 GiB``: one unit where both share it, as a narrow column reads."""
    a, b = human_bytes(used), human_bytes(total)
    unit = b.rsplit(" ", 1)[-1]
    return f"{a.rsplit(' ', 1)[0]}/{b}" if a.endswith(" " + unit) else f"{a}/{b}"


HOST_COLUMNS = [
    Column("name", "Host", min_width=9, ratio=2),
    Column("role", "Role", width=6),
    Column("state", "State", width=11),
    Column("cpu", "CPU", width=4, align="right"),
    # the last 5 minutes of CPU, 0 to 100 % (perf.CpuTrail); at 80 columns the
    # uptime makes room for it; it gives way to the hosts' names
    Column("trail", "Last 5 min", width=TRAIL_CELLS, priority=1, sortable=False,
           yields=True),
    Column("memory", "Memory", min_width=23, ratio=2),
    Column("vms", "VMs", width=4, align="right"),
    Column("uptime", "Uptime", width=7, priority=2),
    Column("address", "Address", min_width=11, ratio=1, priority=3),
    Column("version", "Version", min_width=10, ratio=1, priority=4),
]
SR_COLUMNS = [
    Column("name", "Storage", min_width=14, ratio=3),
    Column("type", "Type", width=6),
    Column("usage", "Used", min_width=14, ratio=1),
    Column("size", "Used / size", min_width=12, ratio=1, align="right"),
    Column("shared", "Shared", width=6, priority=1),
]
ALERT_COLUMNS = [
    Column("when", "When", width=8),
    Column("priority", "Priority", width=14),
    Column("name", "Alert", min_width=12, ratio=2),
    Column("message", "Message", min_width=12, ratio=4, priority=1),
    Column("on", "On", min_width=10, ratio=2, priority=2),
]
MAX_ALERTS = 50
# xsconsole's "Resource Pool": the pool's name here; a new master, and every other
# host operation, from the hosts table
_RENAME = catalogue.get("pool.rename")


class StatusView(View):
    ID = "status"
    LABEL = "Status"
    KEY = "1"
    HELP = "the pool at a glance: hosts, VMs, storage, alerts, the connection"
    FOLLOWS = frozenset({"pool", "host", "host_metrics", "vm", "sr", "pbd", "message"})
    ACTS_ON = "host"  # the hosts table: a at the host under its cursor, and each key
    HOME = False  # the Hosts view lists them

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Menu", show=False, id="status.back"),
        Binding(_RENAME.key, "rename_pool", _RENAME.label, id="status.rename-pool",
                tooltip=_RENAME.help),
    ]

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.load: dict[str, HostLoad] = {}  # host uuid -> its latest figures
        self.counts: Counter[str] = Counter()  # guests by power state, and templates
        self._stale = False  # the cache changed while another view was shown
        self._unsubscribe: Any = None
        self.trail = CpuTrail("host")
        self.trails: dict[str, str] = {}  # host uuid -> its CPU sparkline

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="status-scroll"):
            yield Static(id="status-pool")
            yield Label("Hosts (enter opens one in the Hosts view)", classes="section")
            yield VirtualTable(HOST_COLUMNS, empty_text="No hosts", id="status-hosts")
            yield Label("Virtual machines", classes="section")
            yield Static(id="status-vms")
            yield Label("Storage", classes="section")
            yield VirtualTable(SR_COLUMNS, empty_text="No storage", id="status-srs")
            yield Label("Latest alerts (enter reads one)", classes="section")
            yield VirtualTable(ALERT_COLUMNS, empty_text="No alerts", id="status-alerts")

    def focus_target(self) -> Widget:
        # the page itself: arrows and page keys scroll it; tab goes into its tables
        return self.query_one("#status-scroll", VerticalScroll)

    def on_mount(self) -> None:
        self.refresh_all()

    def on_show(self) -> None:
        if self._stale:
            self.refresh_all()
        if self.metrics and self._unsubscribe is None:
            # the hosts' own series only: not the figures of every VM
            self._unsubscribe = self.client.metrics.subscribe(
                self._metrics, Interest(hosts=True, history=TRAIL_SPAN))

    def _metrics(self, update: MetricsUpdate) -> None:
        """From the feed's thread: posted, handled on the UI thread."""
        self.post_message(MetricsUpdated(update))

    def on_hide(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        # shown again, the feed brings the last minutes back: no old line meanwhile
        self.trail = CpuTrail("host")
        self.trails = {}

    def on_unmount(self) -> None:
        self.on_hide()

    def changed(self, msg: CacheChanged) -> None:
        """Only the parts the changed classes show: the metric drift of a 10,000-VM pool
        (host_metrics every few seconds) redraws three host rows, not the page."""
        if not self.display or msg.resync:
            # hidden, it catches up when shown: a full refresh walks every VM
            if self.display:
                self.refresh_all()
            else:
                self._stale = True
            return
        classes = msg.classes
        if classes & {"pool", "host"}:
            # the master's name and address are the host's
            self.refresh_pool()
        if classes & {"pool", "host", "host_metrics"}:
            self.refresh_hosts()
        if "vm" in classes:
            for c in msg.changes:
                if c.cls == "vm":
                    self._count(c.old, -1)
                    self._count(c.new, 1)
            self.show_counts()
        if classes & {"sr", "pbd", "pool"}:
            self.refresh_srs()
        if "message" in classes:
            self.refresh_alerts()

    def on_metrics_updated(self, msg: MetricsUpdated) -> None:
        update: MetricsUpdate = msg.update
        for (kind, uuid) in update.values:
            if kind == "host":
                load = update.host_load(uuid)
                if load is not None:
                    self.load[uuid] = load
        hosts = frozenset(str(r.get("uuid", "")) for r in self.client.cache.all("host").values())
        self.trails = self.trail.take(update, hosts)
        self.refresh_hosts()

    @on(VirtualTable.Activated, "#status-hosts")
    def _open_host(self, event: VirtualTable.Activated) -> None:
        self.post_message(ViewRequested("hosts", event.key))

    def action_rename_pool(self) -> None:
        pool = Pool.of(self.client.cache)
        if pool is not None:
            self.post_message(ActionRequested(_RENAME.id, [pool.ref], self.ID))

    def targets(self) -> list[str]:
        """The host under the hosts table's cursor (or the marked ones): what the host
        operations' keys and the actions menu act on."""
        return self.query_one("#status-hosts", VirtualTable).targets()

    def show_object(self, ref: str) -> bool:
        table = self.query_one("#status-hosts", VirtualTable)
        if ref not in table.rows:
            return False
        table.move_to(ref)
        return True

    @on(VirtualTable.Activated, "#status-alerts")
    def _read_alert(self, event: VirtualTable.Activated) -> None:
        m = models.Message.get(self.client.cache, event.key)
        if m is not None:
            self.app.push_screen(MessageScreen(m, f"{m.cls} "
                                               f"{ObjectNames(self.client.cache).name(m)}"))

    # ------------------------------------------------------------ rendering

    def refresh_all(self) -> None:
        self._stale = False
        self.refresh_pool()
        self.refresh_hosts()
        self.counts.clear()
        for r in self.client.cache.all("vm").values():
            self._count(r, 1)
        self.show_counts()
        self.refresh_srs()
        self.refresh_alerts()

    def _count(self, r: dict[str, Any] | None, n: int) -> None:
        """Counted from the records, and kept by the changes: a Vm view of each of
        10,000 VMs costs ~0.3 s, a walk of their records ~5 ms per event."""
        if r is None:
            return
        if is_guest(r):
            self.counts[str(r.get("power_state", ""))] += n
        elif is_template(r):
            self.counts["template"] += n

    def show_counts(self) -> None:
        line = Text()
        for state in ("Running", "Paused", "Suspended", "Halted"):
            line.append(f"{state} ", style="bold")
            line.append(f"{self.counts.get(state, 0)}   ")
        guests = sum(v for k, v in self.counts.items() if k != "template")
        line.append(f"· {guests} VMs, {self.counts.get('template', 0)} templates", style="dim")
        self.query_one("#status-vms", Static).update(line)

    def refresh_pool(self) -> None:
        cache = self.client.cache
        pool = Pool.of(cache)
        master = models.Host.get(cache, pool.master) if pool else None
        conn = self.client.conn
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        facts = {f.key: f.value for f in pool_settings(cache)}
        t.add_row("Pool", Text(facts.get("name_label", "–")))
        t.add_row("Master", Text(f"{master.name_label} ({master.address})" if master else "–"))
        t.add_row("HA", Text(facts.get("ha_enabled", "–")))
        ep = conn.endpoint
        how = ("xapi's Unix socket" if ep.scheme == "unix" else
               "TLS, CA-verified" if conn.trust.ca_file else
               "TLS, certificate pinned" if ep.scheme == "https" else "plain HTTP, unencrypted")
        ro = ", read-only" if conn.read_only else ""
        t.add_row("Connection", Text(f"{conn.protocol} to {ep.url} ({how}{ro})"))
        fp = conn.fingerprint
        # folded, never cut: the admin compares every byte with the host's own
        t.add_row("Certificate", Text(fp or ("CA-verified" if conn.trust.ca_file else "–"),
                                      overflow="fold"))
        self.query_one("#status-pool", Static).update(t)

    def _styles(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {"ok": Style(color=t.success), "warn": Style(color=t.warning),
                "bad": Style(color=t.error, bold=True), "bold": Style(bold=True),
                "dim": Style(dim=True), "trail": Style(color=t.primary)}

    def refresh_hosts(self) -> None:
        cache = self.client.cache
        table = self.query_one("#status-hosts", VirtualTable)
        st = self._styles()
        now = self.now()
        rows: dict[str, Row] = {}
        for h in models.hosts(cache):
            # its guests: the VMs resident there but its control domain (xapi's
            # host.control_domain), without a look at each of 3,000 VM records
            dom0 = str((cache.get("host", h.ref) or {}).get("control_domain", ""))
            guests = len(h.resident_VMs) - (dom0 in h.resident_VMs)
            load = self.load.get(h.uuid)
            total = load.memory_total if load and load.memory_total else h.memory_total
            used = load.memory_used if load and load.memory_total else h.memory_used
            frac = used / total if total else 0.0
            uptime = human_duration((now - h.boot_time).total_seconds()) if h.boot_time else "–"
            state = host_state(h)
            cells = (
                (h.name_label, st["bold"]),
                ("master" if h.is_master else "member", None),
                ("offline" if state == "off" else state,
                 None if state == "enabled" else st["bad"]),
                (f"{load.cpu * 100:.0f}%" if load else "–", None if load else st["dim"]),
                (self.trails.get(h.uuid, "") if h.live else "", st["trail"]),
                (f"{bar_text(frac, 5)} {frac * 100:3.0f}% {used_of(used, total)}",
                 st[usage_style(frac)]),
                (str(guests), None),
                (uptime, None),
                (h.address, None),
                (h.product, None),
            )
            rows[h.ref] = Row(cells, (h.name_label.lower(), h.is_master, state,
                                      load.cpu if load else -1.0, 0, frac, guests,
                                      h.boot_time.timestamp() if h.boot_time else 0,
                                      h.address, h.product), h.name_label.lower())
        table.replace_all(rows)
        table.commit()

    def refresh_srs(self) -> None:
        table = self.query_one("#status-srs", VirtualTable)
        st = self._styles()
        rows: dict[str, Row] = {}
        for sr in models.srs(self.client.cache):
            if sr.physical_size <= 0 or sr.is_tools_sr:
                continue
            name = sr.display_name + (" (default)" if sr.is_default else "")
            unplugged = len(sr.hosts) < len(sr.PBDs)
            cells = (
                (name, st["bold"] if sr.is_default else None),
                (sr.type, None),
                (f"{bar_text(sr.usage, 8)} {sr.usage * 100:3.0f}%", st[usage_style(sr.usage)]),
                (used_of(sr.physical_utilisation, sr.physical_size), None),
                ("yes" if sr.shared else "no", st["warn"] if unplugged else None),
            )
            rows[sr.ref] = Row(cells, (name.lower(), sr.type, sr.usage, sr.physical_size,
                                       sr.shared), name.lower())
        table.replace_all(rows)
        table.commit()

    def refresh_alerts(self) -> None:
        cache = self.client.cache
        names = ObjectNames(cache)
        table = self.query_one("#status-alerts", VirtualTable)
        st = self._styles()
        now = self.now()
        rows: dict[str, Row] = {}
        for m in models.messages(cache)[:MAX_ALERTS]:
            when = human_age((now - m.timestamp).total_seconds() if m.timestamp else None)
            first = m.first_line
            cells = (
                (when, None),
                (m.priority_short, st["bad"] if m.priority <= 2 else None),
                (m.title, None),
                (first, None),
                (f"{m.cls} {names.name(m)}", None),
            )
            stamp = -(m.timestamp.timestamp() if m.timestamp else 0)
            rows[m.ref] = Row(cells, (stamp, m.priority, m.title, first, m.cls),
                              f"{m.name} {m.title} {first}".lower())
        table.replace_all(rows)
        table.commit()
