"""Status: xsconsole's first screen, for the whole pool. Hosts with their load, VM
counts by power state, storage with usage bars, the latest alerts, and how we are
connected."""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Label, Static
from textual.worker import get_current_worker

from xsctl.ui.messages import CacheChanged, MetricsUpdated
from xsctl.ui.widgets.bars import usage_bar
from xsctl.ui.widgets.keyed import drop_rows_except, upsert_row
from xsctl.xapi import metrics, models
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import Pool, human_bytes, human_duration

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp

PRIORITY = {1: "critical", 2: "major", 3: "warning", 4: "minor", 5: "info"}
STATUS_CLASSES = {"pool", "host", "host_metrics", "vm", "sr", "pbd", "message"}
METRICS_INTERVAL = 5.0


class StatusView(VerticalScroll):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Menu", show=False, id="status.back"),
    ]

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.load: dict[str, tuple[float, int, int]] = {}
        self._stale = False  # the cache changed while another view was shown

    @property
    def xapp(self) -> XsctlApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="status-pool")
        yield Label("Hosts", classes="section")
        hosts = DataTable[Text](id="status-hosts", cursor_type="row", zebra_stripes=True)
        for label, width in (("Host", 12), ("Address", 15), ("Role", 6), ("State", 11),
                             ("CPU", 5), ("Memory", 30), ("VMs", 4), ("Uptime", 8),
                             ("Version", 14)):
            hosts.add_column(label, width=width, key=label.lower())
        yield hosts
        yield Label("Virtual machines", classes="section")
        yield Static(id="status-vms")
        yield Label("Storage", classes="section")
        yield Static(id="status-srs")
        yield Label("Latest alerts", classes="section")
        alerts = DataTable[Text](id="status-alerts", cursor_type="row")
        alerts.add_columns("When", "Priority", "Alert", "On", "Message")
        yield alerts

    def on_mount(self) -> None:
        self.refresh_all()

    def on_show(self) -> None:
        if self._stale:
            self.refresh_all()
        if self.xapp.metrics_enabled:
            self.poll_metrics()

    def on_hide(self) -> None:
        self.workers.cancel_group(self, "metrics")

    def action_back(self) -> None:
        self.xapp.action_focus_menu()

    def on_cache_changed(self, msg: CacheChanged) -> None:
        if msg.resync or msg.classes & STATUS_CLASSES:
            # hidden, it catches up when shown: at 10,000 VMs a refresh walks every VM
            # record four times (~20 ms), on every VM change seen in another view
            if self.display:
                self.refresh_all()
            else:
                self._stale = True

    def on_metrics_updated(self, msg: MetricsUpdated) -> None:
        self.load.update(msg.load)
        self.refresh_hosts()

    # ------------------------------------------------------------ rendering

    def refresh_all(self) -> None:
        client = self.xapp.client
        if client is None:
            return
        self._stale = False
        cache = client.cache
        pool = Pool.of(cache)
        master = cache.get("host", pool.master) if pool else None
        conn = client.conn
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        t.add_row("Pool", Text(pool.name_label if pool else "–"))
        t.add_row("Master", Text(f"{master['name_label']} ({master['address']})" if master else "–"))
        t.add_row("Connection", Text(conn.describe))
        fp = conn.fingerprint
        # folded, never cut: the admin compares every byte with the host's own
        t.add_row("Certificate", Text(fp or ("CA-verified" if conn.trust.ca_file else "–"),
                                      overflow="fold"))
        self.query_one("#status-pool", Static).update(t)
        self.refresh_hosts()
        # counted from the records: a Vm view of each of 10,000 VMs costs ~0.3 s per event
        vms = [r for _, r in cache.snapshot("vm") if not (
            r.get("is_control_domain") or r.get("is_a_snapshot") or r.get("is_a_template"))]
        counts = Counter(str(r.get("power_state", "")) for r in vms)
        templates = sum(1 for r in cache.all("vm").values()
                        if r.get("is_a_template") and not r.get("is_a_snapshot"))
        line = Text()
        for state in ("Running", "Paused", "Suspended", "Halted"):
            line.append(f"{state} ", style="bold")
            line.append(f"{counts.get(state, 0)}   ")
        line.append(f"· {len(vms)} VMs, {templates} templates", style="dim")
        self.query_one("#status-vms", Static).update(line)
        srs = Table.grid(padding=(0, 2))
        srs.add_column(no_wrap=True)
        srs.add_column(no_wrap=True)
        srs.add_column(no_wrap=True)
        srs.add_column(no_wrap=True, justify="right")
        hosts = {r: str(h.get("name_label", "")) for r, h in cache.all("host").items()}
        for sr in models.srs(cache):
            if sr.physical_size <= 0 or sr.is_tools_sr:
                continue
            label = sr.name_label
            if not sr.shared and len(sr.hosts) == 1:
                label += f" on {hosts.get(sr.hosts[0], '?')}"
            name = Text(label + (" (default)" if sr.is_default else ""))
            srs.add_row(name, Text(sr.type), usage_bar(sr.usage, 24),
                        Text(f"{human_bytes(sr.physical_utilisation)} / {human_bytes(sr.physical_size)}"))
        self.query_one("#status-srs", Static).update(srs)
        self.refresh_alerts()

    def refresh_hosts(self) -> None:
        client = self.xapp.client
        if client is None:
            return
        cache = client.cache
        table = self.query_one("#status-hosts", DataTable)
        now = self.xapp.now()
        seen = set()
        for h in models.hosts(cache):
            seen.add(h.ref)
            guests = sum(1 for r in h.resident_VMs
                         if not (cache.get("vm", r) or {}).get("is_control_domain"))
            load = self.load.get(h.ref)
            cpu = Text(f"{load[0] * 100:4.0f}%") if load else Text("–", style="dim")
            mem_used = h.memory_used
            cells = [
                Text(h.name_label, style="bold"),
                Text(h.address),
                Text("master" if h.is_master else "member"),
                Text("enabled") if h.enabled else Text("maintenance", style="bold"),
                cpu,
                Text.assemble(usage_bar(mem_used / h.memory_total if h.memory_total else 0, 8), " ",
                              f"{human_bytes(mem_used)}/{human_bytes(h.memory_total)}"),
                Text(str(guests)),
                Text(human_duration((now - h.boot_time).total_seconds()) if h.boot_time else "–"),
                Text(h.product),
            ]
            upsert_row(table, h.ref, cells)
        drop_rows_except(table, seen)

    def refresh_alerts(self) -> None:
        client = self.xapp.client
        if client is None:
            return
        cache = client.cache
        by_uuid: dict[str, str] = {}
        for cls in ("vm", "host", "sr", "pool"):
            for r in cache.all(cls).values():
                by_uuid[str(r.get("uuid", ""))] = str(r.get("name_label", ""))
        table = self.query_one("#status-alerts", DataTable)
        table.clear()
        now = self.xapp.now()
        for m in models.messages(cache)[:20]:
            ago = (now - m.timestamp).total_seconds() if m.timestamp else None
            # a host clock a little ahead of ours gives a negative age: not "- ago"
            when = "–" if ago is None else "just now" if ago < 60 else human_duration(ago) + " ago"
            prio = PRIORITY.get(m.priority, str(m.priority))
            style = "bold" if m.priority <= 2 else ""
            body = m.body.strip().splitlines()[0] if m.body.strip() else ""
            table.add_row(Text(when), Text(prio, style=style), Text(m.name),
                          Text(f"{m.cls} {by_uuid.get(m.obj_uuid, m.obj_uuid[:8])}"),
                          Text(body[:80]), key=m.ref)

    # ------------------------------------------------------------ metrics

    @work(thread=True, exclusive=True, group="metrics", exit_on_error=False)
    def poll_metrics(self) -> None:
        """One /rrd_updates per host per interval, only while this view shows."""
        client = self.xapp.client
        if client is None:
            return
        worker = get_current_worker()
        while not worker.is_cancelled:
            load: dict[str, tuple[float, int, int]] = {}
            start = int(time.time()) - 30
            for ref, h in list(client.cache.all("host").items()):
                if worker.is_cancelled:
                    return
                try:
                    upd = metrics.fetch(client.conn, ref, str(h.get("address", "")), start)
                except XsctlError:
                    continue
                hl = metrics.host_load(upd, str(h.get("uuid", "")))
                if hl is not None:
                    load[ref] = (hl.cpu, hl.memory_total - hl.memory_free, hl.memory_total)
            if load:
                self.post_message(MetricsUpdated(load))
            for _ in range(int(METRICS_INTERVAL * 10)):
                if worker.is_cancelled:
                    return
                time.sleep(0.1)
