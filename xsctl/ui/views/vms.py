"""Virtual Machines: a live table kept current from cache events, a filter, sorting,
multi-select, a detail pane, and every lifecycle action (offered where
allowed_operations allows it, with the reason otherwise)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static, TabbedContent, TabPane

from xsctl.ui.messages import ActionRequested, CacheChanged, MetricsUpdated, ViewRequested
from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import ListingView, listing_keys
from xsctl.ui.widgets.devices import COLUMNS as COLUMNS_OF_DEVICES
from xsctl.ui.widgets.devices import DeviceTable, device_row, row_styles
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.ui.widgets.vifs import COLUMNS as COLUMNS_OF_VIFS
from xsctl.ui.widgets.vifs import VifTable, vif_row
from xsctl.xapi import models
from xsctl.xapi.metrics import Interest, MetricsUpdate, Subscription
from xsctl.xapi.models import NULL, Vm, human_bytes, human_duration, is_guest
from xsctl.xapi.ops import catalogue
from xsctl.xapi.perf import TRAIL_CELLS, TRAIL_SPAN, CpuTrail

if TYPE_CHECKING:
    from xsctl.xapi.cache import Cache

COLUMNS = [
    Column("name", "Name", min_width=12, ratio=3),
    Column("power", "Power", min_width=11, ratio=1),
    Column("host", "Host", min_width=9, ratio=2, priority=2),
    Column("vcpus", "vCPU", width=4, align="right"),
    Column("memory", "Memory", width=8, align="right"),
    # the last 5 minutes of CPU, 0 to 100 %, of the running VMs on screen (perf.CpuTrail):
    # dropped after the IP (a tie goes to the later column), and whenever the names
    # would be cut for it; at 80 columns it takes the OS column's place
    Column("cpu", "CPU 5 min", width=TRAIL_CELLS, priority=1, sortable=False, yields=True),
    Column("ips", "IP", min_width=13, ratio=2, priority=1),
    Column("os", "OS", min_width=10, ratio=3, priority=3),
    Column("tags", "Tags", min_width=8, ratio=2, priority=4),
]
TRAIL = next(i for i, c in enumerate(COLUMNS) if c.key == "cpu")
LIVE = ("Running", "Paused")  # a domain, so an RRD on its host (xcp-rrdd)

# what a row is built from (VmRows.row: the VM, its metrics, its host's name)
ROW_CLASSES = ("vm", "vm_metrics", "vm_guest_metrics", "host")

POWER_GLYPH = {"Running": "●", "Halted": "○", "Suspended": "◐", "Paused": "‖"}


def vm_search_text(vm: Vm) -> str:
    # no UUID and no link-local IPv6 (fe80::, every VM has one): their hex digits made
    # short words match at random ("db" found dns-02)
    ips = [ip for ip in vm.ips if not ip.lower().startswith("fe80:")]
    return " ".join([vm.name_label, vm.power_state, vm.host_name, *ips, *vm.tags,
                     vm.os_version]).lower()


class VmRows:
    """Turns cache records into table rows (and knows which VM a metrics record is for)."""

    def __init__(self, cache: Cache, styles: dict[str, Style]) -> None:
        self.cache = cache
        self.styles = styles
        self.owner: dict[str, str] = {}  # metrics / guest_metrics ref -> VM ref
        self.trails: dict[str, str] = {}  # VM uuid -> its CPU sparkline

    def row(self, vm: Vm) -> Row:
        st = self.styles
        state = vm.power_state
        busy = vm.busy
        power = f"{POWER_GLYPH.get(state, '?')} {state}"
        pstyle = st.get(state.lower())
        if busy:
            power = f"⟳ {vm.doing}"
            pstyle = st.get("busy")
        v4 = [ip for ip in vm.ips if ":" not in ip]
        cells = (
            (vm.name_label, st.get("name")),
            (power, pstyle),
            (vm.host_name or "–", None if vm.host_name else st.get("dim")),
            (str(vm.vcpus), None),
            (human_bytes(vm.memory), None),
            (self.trails.get(vm.uuid, "") if state in LIVE else "", st.get("trail")),
            (", ".join(v4 or vm.ips[:1]) or "–", None),
            (vm.os_version or "–", None),
            (" ".join(vm.tags), st.get("tags")),
        )
        sort = (vm.name_label.lower(), state, vm.host_name, vm.vcpus, vm.memory, 0,
                tuple(int(p) if p.isdigit() else 0 for p in (v4[0].split(".") if v4 else [])),
                vm.os_version.lower(), " ".join(vm.tags))
        return Row(cells, sort, vm_search_text(vm), dim=state == "Halted")

    def index(self) -> None:
        self.owner.clear()
        for ref, r in self.cache.snapshot("vm"):
            self._own(ref, r)

    def _own(self, ref: str, r: dict[str, Any]) -> None:
        for f in ("metrics", "guest_metrics"):
            m = r.get(f)
            if m and m != NULL:
                self.owner[m] = ref

    def affected(self, msg: CacheChanged) -> set[str]:
        """VM refs whose row may have changed."""
        refs: set[str] = set()
        for c in msg.changes:
            if c.cls == "vm":
                refs.add(c.ref)
                if c.new is not None:
                    self._own(c.ref, c.new)
            elif c.cls in ("vm_metrics", "vm_guest_metrics"):
                owner = self.owner.get(c.ref)
                if owner is None and c.new is not None:
                    self.index()
                    owner = self.owner.get(c.ref)
                if owner:
                    refs.add(owner)
            elif c.cls == "host" and c.op == "mod":
                old = (c.old or {}).get("name_label")
                new = (c.new or {}).get("name_label")
                if old != new:
                    refs |= set((c.new or {}).get("resident_VMs") or ())
        return refs


def _kv(pairs: list[tuple[str, str]]) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for k, v in pairs:
        t.add_row(Text(k), Text(v))
    return t


_ADD_VIF = catalogue.get("vm.vif-add")


class VmDetail(Vertical):
    """General, Memory and vCPUs, Disks, Network, Snapshots of one VM."""

    def compose(self) -> ComposeResult:
        yield Label("", id="vm-detail-title")
        with TabbedContent(id="vm-detail-tabs"):
            with TabPane("General", id="tab-general"):
                yield Static(id="detail-general", classes="detail-pane")
            with TabPane("Memory & vCPUs", id="tab-resources"):
                yield Static(id="detail-resources", classes="detail-pane")
            with TabPane("Disks", id="tab-disks"):
                # a table of its own: a device is selected and acted on here (x
                # detaches, p plugs, ...), A attaches another
                yield DeviceTable(COLUMNS_OF_DEVICES, view="vms", id="vm-disk-table",
                                  empty_text="No disks or drives. A attaches one.")
            with TabPane("Network", id="tab-network"):
                # a table too: a VIF is selected and acted on here (p plugs, x
                # removes, i sets a static IPv4 address, ...), w adds another
                yield VifTable(COLUMNS_OF_VIFS, view="vms", id="vm-vif-table",
                               empty_text=f"No network interfaces. {_ADD_VIF.key} adds one.")
            with TabPane("Snapshots", id="tab-snapshots"):
                yield Static(id="detail-snapshots", classes="detail-pane")

    def show(self, cache: Cache, vm: Vm | None, now: datetime) -> None:
        title = self.query_one("#vm-detail-title", Label)
        if vm is None:
            title.update("No VM selected")
            # the panes only: the tabs' labels are Statics too, and must stay
            for pane in self.query(".detail-pane").results(Static):
                pane.update("")
            self.query_one("#vm-disk-table", DeviceTable).replace_all({})
            self.query_one("#vm-vif-table", VifTable).replace_all({})
            return
        title.update(Text(f"{vm.name_label}  ({vm.power_state})"))
        uptime = human_duration((now - vm.start_time).total_seconds()) if vm.start_time else "–"
        allowed = [op.label for op in catalogue.operations("vm")
                   if catalogue.why_not(op, cache, vm) is None]
        self.query_one("#detail-general", Static).update(_kv([
            ("Name", vm.name_label),
            ("Description", vm.name_description or "–"),
            ("UUID", vm.uuid),
            ("Power state", vm.power_state + (f" ({vm.doing})" if vm.busy else "")),
            ("Host", vm.host_name or "–"),
            ("Uptime", uptime),
            ("OS", vm.os_version or "–"),
            ("PV drivers", vm.pv_drivers or "not detected"),
            ("Domain", f"{vm.domain_type} (domid {vm.domid})" if vm.domid >= 0 else vm.domain_type),
            ("IP addresses", ", ".join(vm.ips) or "–"),
            ("Tags", ", ".join(vm.tags) or "–"),
            ("Can now", ", ".join(allowed) or "nothing"),
        ]))
        self.query_one("#detail-resources", Static).update(_kv([
            ("Memory (static)", f"{human_bytes(vm.memory_static_min)} – {human_bytes(vm.memory_static_max)}"),
            ("Memory (dynamic)", f"{human_bytes(vm.memory_dynamic_min)} – {human_bytes(vm.memory_dynamic_max)}"),
            ("Memory in use", human_bytes(vm.memory_actual) if vm.memory_actual else "–"),
            ("vCPUs at startup", str(vm.VCPUs_at_startup)),
            ("vCPUs max", str(vm.VCPUs_max)),
            ("vCPUs live", str(vm.VCPUs_number) if vm.VCPUs_number else "–"),
        ]))
        table = self.query_one("#vm-disk-table", DeviceTable)
        st = row_styles(self.app)
        table.replace_all({d.vbd.ref: device_row(cache, d.vbd, st)
                           for d in models.vm_disks(cache, vm)})
        table.commit()
        vifs = self.query_one("#vm-vif-table", VifTable)
        vifs.replace_all({v.ref: vif_row(cache, v, st) for v in models.vm_vifs(cache, vm)})
        vifs.commit()
        from xsctl.ui.views.snapshots import tree_text

        self.query_one("#detail-snapshots", Static).update(
            tree_text(cache, vm) if vm.snapshots
            else Text("No snapshots. n takes one, N one with memory.", style="dim"))


_IMPORT = catalogue.get("vm.import")


class VmsView(ListingView[VmDetail]):
    """The Virtual Machines view."""

    ID = "vms"
    LABEL = "Virtual Machines"
    KEY = "2"
    HELP = "every VM, live: filter, sort, mark several, act"
    FOLLOWS = frozenset({"vm", "vm_metrics", "vm_guest_metrics", "host", "vbd", "vdi",
                         "vif", "network", "sr", "pbd"})
    ACTS_ON = "vm"
    TABLE = "vm-table"
    FILTER = "vm-filter"
    DETAIL = "vm-detail"
    STATUS = "vm-status"

    BINDINGS: ClassVar[list[BindingType]] = [
        *listing_keys("vms", "name, tag, host, power state, IP or OS",
                      [Binding("a", "actions", "Actions", id="vms.actions",
                               tooltip="Every action for the selected VMs, with why some "
                                       "are not possible")]),
        # off the footer, which is full already: in ? and the palette
        Binding("f", "performance", "Graphs", id="vms.performance", show=False,
                tooltip="The VM's performance graphs: CPU, memory, disk and network"),
        # importing makes a VM from a file: no row to act on, the pool is its object
        Binding(_IMPORT.key, "import_vm", _IMPORT.label, id="vms.import", show=False,
                tooltip=_IMPORT.help),
    ]

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.rows: VmRows | None = None
        self._built = False
        self._built_version = -1  # the cache's version the last rebuild read
        self.trail = CpuTrail("vm")
        self._subscription: Subscription | None = None
        self._on_screen: dict[str, str] = {}  # uuid -> ref of the running VMs on screen
        self._trail_refs: dict[str, str] = {}  # uuid -> ref of the rows showing a line

    def compose(self) -> ComposeResult:
        # always on screen: "/" focuses it at once, so nothing typed right after is lost
        yield Input(placeholder="/ to filter by name, tag, host, power state, IP or OS",
                    id="vm-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="No VMs", id="vm-table")
            yield VmDetail(id="vm-detail")
        yield Label("", id="vm-status", classes="view-status")

    def styles_from_theme(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {
            "running": Style(color=t.success),
            "halted": Style(dim=True),
            "suspended": Style(color=t.warning),
            "paused": Style(color=t.accent),
            "busy": Style(color=t.primary, bold=True),
            "dim": Style(dim=True),
            "tags": Style(color=t.secondary, italic=True),
            "name": Style(bold=True),
            "trail": Style(color=t.primary),
        }

    def on_mount(self) -> None:
        # before ListingView.on_mount (Textual calls each class's handler, this one
        # first): the rows are there when the detail is first filled
        self.rebuild()

    def rebuild(self) -> None:
        """Every row from the cache (start-up, resync, theme change)."""
        cache = self.client.cache
        # read first: a change meanwhile rebuilds again
        self._built_version = cache.version(*ROW_CLASSES)
        # Long-lived and without cycles, like the cache's records: built with no
        # cyclic collection and kept out of the collector's full passes afterwards
        # (they walked ~100,000 objects of rows, 40 ms, every few keystrokes); a
        # replaced row is freed by its refcount. See xapi/heap.py.
        with cache.long_lived():
            self.rows = VmRows(cache, self.styles_from_theme())
            self.rows.index()
            new = {
                ref: self.rows.row(Vm.from_record(cache, ref, r))
                for ref, r in cache.snapshot("vm") if is_guest(r)
            }
            self.table.replace_all(new)
            self.table.commit()
        self._built = True
        self.update_status()
        self.update_detail()

    def changed(self, msg: CacheChanged) -> None:
        """Keyed row updates: only the VMs an event touched are rebuilt."""
        if self.rows is None or not self._built:
            return
        if msg.resync:
            # at start-up the resync that loaded the cache arrives after on_mount's
            # rebuild, which already read that very cache: 10,000 rows need not be
            # built twice
            if self.client.cache.version(*ROW_CLASSES) != self._built_version:
                self.rebuild()
            return
        cache = self.client.cache
        table = self.table
        changed = False
        for ref in self.rows.affected(msg):
            r = cache.get("vm", ref)
            if r is None or not is_guest(r):
                if ref in table.rows:
                    table.remove_row(ref)
                    changed = True
                continue
            table.upsert(ref, self.rows.row(Vm.from_record(cache, ref, r)))
            changed = True
        if changed:
            table.commit()
            self.update_status()
            self._watch_window()  # a VM on screen started or stopped
        if msg.classes & {"vm", "vbd", "vdi", "vif", "vm_guest_metrics", "vm_metrics", "network"}:
            self.update_detail()

    # ------------------------------------------------------------ the CPU column

    def on_show(self) -> None:
        if self.metrics and self._subscription is None:
            self._subscription = self.client.metrics.subscribe(self._metrics, self._interest())

    def on_hide(self) -> None:
        if self._subscription is not None:
            self._subscription()
            self._subscription = None
        self.trail = CpuTrail("vm")
        self._set_trails({})

    def on_unmount(self) -> None:
        if self._subscription is not None:
            self._subscription()
            self._subscription = None

    def apply_detail(self) -> None:
        super().apply_detail()
        self._watch_window()  # narrow, the detail hides the table and its rows

    def _interest(self) -> Interest:
        """The running VMs on screen: the feed asks their hosts for them alone."""
        cache = self.client.cache
        on_screen: dict[str, str] = {}
        for ref in self.table.window():
            r = cache.get("vm", ref)
            if r is not None and r.get("power_state") in LIVE:
                on_screen[str(r.get("uuid", ""))] = ref
        self._on_screen = on_screen
        return Interest(hosts=False, vms=frozenset(on_screen), history=TRAIL_SPAN)

    def _watch_window(self) -> None:
        if self._subscription is None:
            return
        before = set(self._on_screen)
        interest = self._interest()
        if set(self._on_screen) != before:
            self._subscription.want(interest)
            # a row gone off screen keeps no line: back on screen, it would show an
            # old one until the next round
            self._set_trails({u: t for u, t in self._trails().items()
                              if u in self._on_screen})

    @on(VirtualTable.WindowChanged, "#vm-table")
    def _window_changed(self, event: VirtualTable.WindowChanged) -> None:
        self._watch_window()

    def _trails(self) -> dict[str, str]:
        return dict(self.rows.trails) if self.rows is not None else {}

    def _metrics(self, update: MetricsUpdate) -> None:
        """From the feed's thread: posted, handled on the UI thread."""
        self.post_message(MetricsUpdated(update))

    def on_metrics_updated(self, msg: MetricsUpdated) -> None:
        msg.stop()
        if self._subscription is None:
            return
        self._set_trails(self.trail.take(msg.update, frozenset(self._on_screen)))

    def _set_trails(self, trails: dict[str, str]) -> None:
        """Each VM's line in its row's cell; only the rows whose line changed are
        replaced (and so drawn again)."""
        rows = self.rows
        if rows is None:
            return
        old, rows.trails = rows.trails, trails
        refs = self._trail_refs
        table = self.table
        changed = False
        for uuid in old.keys() | trails.keys():
            text = trails.get(uuid, "")
            ref = self._on_screen.get(uuid) or refs.get(uuid)
            row = table.rows.get(ref) if ref else None
            if ref is None or row is None or row.cells[TRAIL][0] == text:
                continue
            cells = list(row.cells)
            cells[TRAIL] = (text, cells[TRAIL][1])
            table.upsert(ref, replace(row, cells=tuple(cells)))
            changed = True
        self._trail_refs = {u: r for u in trails
                            if (r := self._on_screen.get(u) or refs.get(u)) is not None}
        if changed:
            table.commit()

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        self.set_status(f"{t.visible_count} of {len(t.rows)} VMs{flt}{sel} · sorted by {col}")

    def show_detail(self, detail: VmDetail, key: str | None) -> None:
        cache = self.client.cache
        detail.show(cache, None if key is None else Vm.get(cache, key), self.now())

    @on(VirtualTable.Activated)
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    def action_performance(self) -> None:
        """The graphs of the VM under the cursor (not of the marked ones: one VM's)."""
        key = self.table.cursor_key
        if key is not None:
            self.post_message(ViewRequested("performance", key))

    # ------------------------------------------------------------ import

    def action_import_vm(self) -> None:
        pool = models.Pool.of(self.client.cache)
        if pool is not None:
            self.post_message(ActionRequested(_IMPORT.id, [pool.ref], self.ID))

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand(f"vm: {_IMPORT.label.lower()}", _IMPORT.help,
                               self.action_import_vm)]
