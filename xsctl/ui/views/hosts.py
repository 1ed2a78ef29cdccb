"""Hosts: every host of the pool, live, with its role, whether it is enabled or in
maintenance, its uptime, version, CPUs and memory; the detail shows where its memory
goes, the VMs resident there, its NICs with their link state and speed, and its
management interface. Maintenance mode, evacuation and power are its actions."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.messages import CacheChanged
from xsctl.ui.views.listing import DetailPane, ListingView, kv, listing_keys
from xsctl.ui.widgets.bars import bar_text, usage_style
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import hosts as facts
from xsctl.xapi.host_settings import settings
from xsctl.xapi.models import Host, human_bytes, human_duration
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.host import returning
from xsctl.xapi.text import printable

# the name, its state and its memory stay at 80 columns
COLUMNS = [
    Column("name", "Host", min_width=10, ratio=2, whole=True),
    Column("role", "Role", width=6),
    Column("state", "State", width=11),
    Column("cpus", "CPUs", width=4, align="right", priority=4),
    Column("memory", "Memory", min_width=22, ratio=2),
    Column("vms", "VMs", width=4, align="right"),
    Column("uptime", "Uptime", width=7, priority=2),
    Column("address", "Address", min_width=11, ratio=1, priority=3),
    Column("version", "Version", min_width=12, ratio=1, priority=1),
]


class HostsView(ListingView[DetailPane]):
    """The Hosts view."""

    ID = "hosts"
    LABEL = "Hosts"
    KEY = ""
    ORDER = 10
    HELP = "every host: role, maintenance, CPUs, memory, VMs, NICs, management interface"
    FOLLOWS = frozenset({"pool", "host", "host_metrics", "vm", "vm_metrics", "pif",
                         "pif_metrics", "network"})
    ACTS_ON = "host"
    TABLE = "host-table"
    FILTER = "host-filter"
    DETAIL = "host-detail"
    STATUS = "host-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys("hosts", "name, address or state")

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.built = False

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by name, address or state", id="host-filter",
                    classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="No hosts", id="host-table")
            yield DetailPane(id="host-detail")
        yield Label("", id="host-status", classes="view-status")

    def _styles(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {"ok": Style(color=t.success), "warn": Style(color=t.warning),
                "bad": Style(color=t.error, bold=True), "bold": Style(bold=True),
                "dim": Style(dim=True)}

    def on_show(self) -> None:
        if not self.built:
            self.rebuild()

    def rebuild(self) -> None:
        """Every row from the cache: a pool has a few hosts, so a change redraws all."""
        self.built = True
        cache = self.client.cache
        self.table.replace_all({ref: self.row(Host.from_record(cache, ref, r))
                                for ref, r in cache.snapshot("host")})
        self.table.commit()
        self.update_status()
        self.update_detail()

    def row(self, h: Host) -> Row:
        st = self._styles()
        cache = self.client.cache
        state = facts.state(h)
        guests = sum(1 for ref in h.resident_VMs
                     if not (cache.get("vm", ref) or {}).get("is_control_domain"))
        frac = h.memory_used / h.memory_total if h.memory_total else 0.0
        uptime = (human_duration((self.now() - h.boot_time).total_seconds())
                  if h.boot_time and h.live else "–")
        memory = (f"{bar_text(frac, 5)} {frac * 100:3.0f}% {human_bytes(h.memory_total)}"
                  if h.live else "–")
        name = printable(h.name_label)
        cells = (
            (name, st["bold"]),
            ("master" if h.is_master else "member", None),
            (state, None if state == "enabled" else st["warn"] if state in ("maintenance", "disabled")
             else st["bad"]),
            (str(h.cpu_count), None),
            (memory, st[usage_style(frac)] if h.live else st["dim"]),
            (str(guests), None),
            (uptime, None),
            (printable(h.address), None),
            (printable(h.product), None),
        )
        sort = (name.lower(), not h.is_master, state, h.cpu_count, frac, guests,
                h.boot_time.timestamp() if h.boot_time else 0.0, h.address, h.product)
        search = " ".join([name, h.address, h.hostname, state,
                           "master" if h.is_master else "member"]).lower()
        return Row(cells, sort, search, dim=not h.live)

    def changed(self, msg: CacheChanged) -> None:
        """A pool has a few hosts: every row again, but only while shown (hidden, it
        is rebuilt when next shown), so that a 10,000-VM pool's drift costs nothing
        here."""
        if not self.built:
            return
        if self.display:
            self.rebuild()
        else:
            self.built = False

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        away = sum(1 for r in t.rows.values() if r.cells[2][0] != "enabled")
        note = f", {away} not enabled" if away else ""
        self.set_status(f"{t.visible_count} of {len(t.rows)} hosts{flt}{note}{sel} · "
                        f"sorted by {col} · m: maintenance · a: actions")

    def show_related(self, ref: str) -> None:
        """The Status view's host row: this host under the cursor (the rows are
        built first when the view was never shown)."""
        if not self.built:
            self.rebuild()
        self.show_object(ref)

    # ------------------------------------------------------------ detail

    def show_detail(self, pane: DetailPane, key: str | None) -> None:
        cache = self.client.cache
        h = None if key is None else Host.get(cache, key)
        if h is None:
            pane.show("No host selected", Text(""))
            return
        cpu = facts.cpus(cache, h)
        mem = facts.memory(cache, h)
        uptime = (human_duration((self.now() - h.boot_time).total_seconds())
                  if h.boot_time and h.live else "–")
        facts_: list[tuple[str, str | Text]] = [
            ("Role", "pool master" if h.is_master else "pool member"),
            ("State", facts.state(h) + ("" if h.enabled or not h.live
                                       else " (no new VM starts there)")),
            ("Address", printable(h.address)),
            ("Uptime", uptime),
            ("Version", f"{printable(h.product)} (xapi {printable(h.version)})"),
            ("UUID", h.uuid),
            ("Power on", h.power_on_mode or "not set (xapi cannot wake it)"),
            ("CPUs", cpu.text()),
        ]
        parts: list[Any] = [kv(facts_), Text("")]
        if h.memory_total:
            parts += [Text("Memory", style="bold"), kv([
                ("Total", human_bytes(mem.total, precise=True)),
                ("Free", human_bytes(mem.free, precise=True)),
                ("VMs", human_bytes(mem.vms, precise=True)),
                ("Control domain", human_bytes(mem.dom0, precise=True)),
                ("Xen and xapi", human_bytes(mem.xen, precise=True)),
            ]), Text("")]
        vms = sorted((printable(str(r.get("name_label", ""))), str(r.get("power_state", "")))
                     for r in (cache.get("vm", ref) for ref in h.resident_VMs)
                     if r is not None and not r.get("is_control_domain"))
        parts += [Text(f"VMs here ({len(vms)})", style="bold"),
                  Text(", ".join(n + ("" if s == "Running" else f" ({s.lower()})")
                                 for n, s in vms) or "none"), Text("")]
        back = returning(cache, h)
        if back:  # the VMs that left when it entered maintenance mode
            parts += [Text(f"Moved off in maintenance mode ({len(back)})", style="bold"),
                      Text(", ".join(f"{b.name} ({b.how})" for b in back)),
                      Text("Exit maintenance mode offers to bring them back.", style="dim"),
                      Text("")]
        nics = Table(box=None, padding=(0, 1), expand=True, title="NICs",
                     title_justify="left", title_style="bold")
        nics.add_column("NIC", no_wrap=True)
        nics.add_column("Link", no_wrap=True)
        nics.add_column("MAC", no_wrap=True)
        nics.add_column("Vendor", ratio=1)
        for n in facts.nics(cache, h, physical_only=True):
            link = n.link()
            nics.add_row(Text(n.device + (" *" if n.management else "")),
                         Text(link, style="bold" if link == "down" else ""), Text(n.MAC),
                         Text(n.vendor or "–"))
        parts += [nics, Text("* the management interface", style="dim"), Text("")]
        mgmt = facts.management(cache, h)
        parts.append(Text("Management interface", style="bold"))
        if mgmt is None:
            parts.append(Text("none (xapi listens on no interface of this host)"))
        else:
            parts.append(kv([
                ("Interface", f"{mgmt.device} on {mgmt.network or '–'}"),
                ("IP mode", mgmt.mode or "–"),
                ("Address", mgmt.IP or "–"),
                ("Netmask", mgmt.netmask or "–"),
                ("Gateway", mgmt.gateway or "–"),
                ("DNS", ", ".join(mgmt.DNS) or "–"),
            ]))
        parts.append(Text(""))
        # what xsconsole sets beside the interface: the hostname, NTP and timezone
        shown = {"hostname", "ntp", "timezone"}
        parts += [Text("Settings", style="bold"),
                  kv([(st.label, st.value) for st in settings(cache, h.ref) if st.key in shown]),
                  Text("")]
        can = [op.label for op in catalogue.operations("host")
               if catalogue.why_not(op, cache, h) is None]
        parts += [Text("Can now", style="bold"), Text(", ".join(can) or "nothing")]
        pane.show(Text(printable(h.name_label)
                       + (" (master)" if h.is_master else "")), Group(*parts))

    def extra_keys(self) -> list[tuple[str, str]]:
        return [(k, d) for k, d in super().extra_keys() if k != "enter"]
