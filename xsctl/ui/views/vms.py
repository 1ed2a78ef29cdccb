"""Virtual Machines: a live table kept current from cache events, a filter, sorting,
multi-select, a detail pane, and every lifecycle action (offered where
allowed_operations allows it, with the reason otherwise)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Static, TabbedContent, TabPane, Tabs

from xsctl.ui.messages import CacheChanged
from xsctl.ui.modals.confirm import ConfirmPlan, ConfirmTyped
from xsctl.ui.modals.forms import (
    Choice,
    EditResources,
    PickDisks,
    PickOne,
    Resources,
    TextPrompt,
)
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import models
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import NULL, Vm, human_bytes, human_duration
from xsctl.xapi.ops import vm as vmops
from xsctl.xapi.ops.base import Plan

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp
    from xsctl.xapi.cache import Cache

COLUMNS = [
    Column("name", "Name", min_width=12, ratio=3),
    Column("power", "Power", width=11),
    Column("host", "Host", min_width=9, ratio=2, priority=2),
    Column("vcpus", "vCPU", width=4, align="right"),
    Column("memory", "Memory", width=8, align="right"),
    Column("ips", "IP", min_width=13, ratio=2, priority=1),
    Column("os", "OS", min_width=10, ratio=3, priority=3),
    Column("tags", "Tags", min_width=8, ratio=2, priority=4),
]

# what a row is built from (VmRows.row: the VM, its metrics, its host's name)
ROW_CLASSES = ("vm", "vm_metrics", "vm_guest_metrics", "host")

POWER_GLYPH = {"Running": "●", "Halted": "○", "Suspended": "◐", "Paused": "‖"}


@dataclass(frozen=True)
class Action:
    id: str
    label: str
    key: str
    op: str  # the allowed_operations entry that gates it ("" = always)
    bulk: bool = False

    @property
    def verb(self) -> str:
        """The confirm button's word: "Migrate", "Force shut down"."""
        return self.label.rstrip("…").replace(" to host", "").replace(" on host", "").replace(
            "Take a snapshot", "Snapshot").replace(" to a snapshot", "")


ACTIONS: list[Action] = [
    Action("start", "Start", "s", "start", True),
    Action("start_on", "Start on host…", "S", "start_on"),
    Action("shutdown", "Shut down", "t", "clean_shutdown", True),
    Action("force_shutdown", "Force shut down", "T", "hard_shutdown", True),
    Action("reboot", "Reboot", "b", "clean_reboot", True),
    Action("force_reboot", "Force reboot", "B", "hard_reboot", True),
    Action("suspend", "Suspend", "z", "suspend", True),
    Action("resume", "Resume", "u", "resume", True),
    Action("pause", "Pause", "p", "pause", True),
    Action("unpause", "Unpause", "P", "unpause", True),
    Action("migrate", "Migrate to host…", "m", "pool_migrate"),
    Action("snapshot", "Take a snapshot…", "n", "snapshot"),
    Action("revert", "Revert to a snapshot…", "v", ""),
    Action("clone", "Clone…", "c", "clone"),
    Action("copy", "Copy…", "C", "copy"),
    Action("rename", "Rename…", "r", ""),
    Action("resources", "Memory and vCPUs…", "e", ""),
    Action("delete", "Delete…", "delete", "destroy"),
]
BY_ID = {a.id: a for a in ACTIONS}


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

    def is_shown(self, r: dict[str, Any]) -> bool:
        return not (r.get("is_a_template") or r.get("is_control_domain") or r.get("is_a_snapshot"))

    def row(self, vm: Vm) -> Row:
        st = self.styles
        state = vm.power_state
        busy = vm.busy
        power = f"{POWER_GLYPH.get(state, '?')} {state}"
        pstyle = st.get(state.lower())
        if busy:
            power = f"⟳ {busy.replace('_', ' ')}"
            pstyle = st.get("busy")
        v4 = [ip for ip in vm.ips if ":" not in ip]
        cells = (
            (vm.name_label, st.get("name")),
            (power, pstyle),
            (vm.host_name or "–", None if vm.host_name else st.get("dim")),
            (str(vm.vcpus), None),
            (human_bytes(vm.memory), None),
            (", ".join(v4 or vm.ips[:1]) or "–", None),
            (vm.os_version or "–", None),
            (" ".join(vm.tags), st.get("tags")),
        )
        sort = (vm.name_label.lower(), state, vm.host_name, vm.vcpus, vm.memory,
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


class VmDetail(Vertical):
    """General, Memory and vCPUs, Disks, Network, Snapshots of one VM."""

    def compose(self) -> ComposeResult:
        yield Label("", id="vm-detail-title")
        with TabbedContent(id="vm-detail-tabs"):
            with TabPane("General", id="tab-general"):
                yield Static(id="detail-general")
            with TabPane("Memory & vCPUs", id="tab-resources"):
                yield Static(id="detail-resources")
            with TabPane("Disks", id="tab-disks"):
                yield Static(id="detail-disks")
            with TabPane("Network", id="tab-network"):
                yield Static(id="detail-network")
            with TabPane("Snapshots", id="tab-snapshots"):
                yield Static(id="detail-snapshots")

    def show(self, cache: Cache, vm: Vm | None, now: datetime) -> None:
        title = self.query_one("#vm-detail-title", Label)
        if vm is None:
            title.update("No VM selected")
            for pane in self.query(Static):
                pane.update("")
            return
        title.update(Text(f"{vm.name_label}  ({vm.power_state})"))
        uptime = human_duration((now - vm.start_time).total_seconds()) if vm.start_time else "–"
        allowed = [a.label.rstrip("…") for a in ACTIONS if a.op and a.op in vm.allowed_operations]
        self.query_one("#detail-general", Static).update(_kv([
            ("Name", vm.name_label),
            ("Description", vm.name_description or "–"),
            ("UUID", vm.uuid),
            ("Power state", vm.power_state + (f" ({vm.busy.replace('_', ' ')} in progress)" if vm.busy else "")),
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
        disks = Table(box=None, padding=(0, 1), expand=True)
        for col in ("Pos", "Device", "Type", "Disk", "Size", "SR", "Mode", "Attached"):
            disks.add_column(col, no_wrap=col != "Disk")
        for d in models.vm_disks(cache, vm):
            disks.add_row(d.vbd.userdevice, d.vbd.device or "–", d.vbd.type, Text(d.label),
                          human_bytes(d.vdi.virtual_size) if d.vdi else "",
                          Text(d.vdi.sr_name) if d.vdi else "", d.vbd.mode,
                          "yes" if d.vbd.currently_attached else "no")
        self.query_one("#detail-disks", Static).update(disks)
        nets = Table(box=None, padding=(0, 1), expand=True)
        for col in ("Device", "MAC", "Network", "Attached"):
            nets.add_column(col)
        for v in models.vm_vifs(cache, vm):
            nets.add_row(v.device, v.MAC, Text(v.network_name), "yes" if v.currently_attached else "no")
        ips = Text("IP addresses: " + (", ".join(vm.ips) or "none reported (no guest agent?)"))
        self.query_one("#detail-network", Static).update(Group(nets, Text(""), ips))
        snaps = Table(box=None, padding=(0, 1), expand=True)
        snaps.add_column("Snapshot")
        snaps.add_column("Taken")
        snaps.add_column("UUID")
        rows = [s for s in (Vm.get(cache, r) for r in vm.snapshots) if s]
        rows.sort(key=lambda s: s.snapshot_time or datetime.min.replace(tzinfo=UTC), reverse=True)
        for s in rows:
            when = s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else ""
            snaps.add_row(Text(s.name_label), when, s.uuid)
        self.query_one("#detail-snapshots", Static).update(
            snaps if rows else Text("No snapshots. n takes one.", style="dim"))


class VmsView(Vertical):
    """The Virtual Machines view."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: handled as the key arrives, so the focus is on the filter before the
        # keys typed right after "/" are handed to a widget
        Binding("slash", "filter", "Filter", id="vms.filter", priority=True,
                tooltip="Filter by name, tag, host, power state, IP or OS"),
        Binding("a", "actions", "Actions", id="vms.actions",
                tooltip="Every action for the selected VMs, with why some are not possible"),
        Binding("d", "toggle_detail", "Details", id="vms.detail",
                tooltip="Show or hide the detail pane"),
        Binding("escape", "clear", "Clear", show=False, id="vms.clear"),
        *[
            Binding(a.key, f"act('{a.id}')", a.label.rstrip("…"), show=a.id in (
                "start", "shutdown", "reboot", "migrate", "snapshot", "delete"), id=f"vms.{a.id}")
            for a in ACTIONS
        ],
    ]

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: VmRows | None = None
        self._built = False
        self._built_version = -1  # the cache's version the last rebuild read

    @property
    def xapp(self) -> XsctlApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        # always on screen: "/" focuses it at once, so nothing typed right after is lost
        yield Input(placeholder="/ to filter by name, tag, host, power state, IP or OS",
                    id="vm-filter")
        with Horizontal(id="vm-body"):
            yield VirtualTable(COLUMNS, empty_text="No VMs", id="vm-table")
            yield VmDetail(id="vm-detail")
        yield Label("", id="vm-status", classes="view-status")

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#vm-table", VirtualTable)

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
        }

    def on_mount(self) -> None:
        self.rebuild()
        # The filter is applied from within the Input's own key handling, so the table
        # repaints in the same frame as the Input; through Input.Changed it came a frame
        # later (Textual paces frames: 17 to 33 ms more per keystroke).
        self.watch(self.query_one("#vm-filter", Input), "value", self._filter_changed,
                   init=False)

    def rebuild(self) -> None:
        """Every row from the cache (start-up, resync, theme change)."""
        client = self.xapp.client
        if client is None:
            return
        cache = client.cache
        # read first: a change meanwhile rebuilds again
        self._built_version = cache.version(*ROW_CLASSES)
        self.rows = VmRows(cache, self.styles_from_theme())
        self.rows.index()
        new = {
            ref: self.rows.row(Vm.from_record(cache, ref, r))
            for ref, r in cache.snapshot("vm") if self.rows.is_shown(r)
        }
        self.table.replace_all(new)
        self.table.commit()
        # Long-lived and without cycles, like the cache's records (see xapi/cache.py):
        # kept out of the collector's full passes, which walked ~100,000 objects of
        # rows (40 ms) every few keystrokes. A replaced row is freed by its refcount.
        # Garbage with cycles is collected first, or it would stay frozen for good.
        gc.collect()
        gc.freeze()
        self._built = True
        self.update_status()
        self.update_detail()

    def on_cache_changed(self, msg: CacheChanged) -> None:
        """Keyed row updates: only the VMs an event touched are rebuilt."""
        if self.rows is None or not self._built:
            return
        if msg.resync:
            # at start-up the resync that loaded the cache arrives after on_mount's
            # rebuild, which already read that very cache: 10,000 rows need not be
            # built twice
            client = self.xapp.client
            if client is None or client.cache.version(*ROW_CLASSES) != self._built_version:
                self.rebuild()
            return
        cache = self.xapp.client.cache  # type: ignore[union-attr]
        table = self.table
        changed = False
        for ref in self.rows.affected(msg):
            r = cache.get("vm", ref)
            if r is None or not self.rows.is_shown(r):
                if ref in table.rows:
                    table.remove_row(ref)
                    changed = True
                continue
            table.upsert(ref, self.rows.row(Vm.from_record(cache, ref, r)))
            changed = True
        if changed:
            table.commit()
            self.update_status()
        if msg.classes & {"vm", "vbd", "vdi", "vif", "vm_guest_metrics", "vm_metrics", "network"}:
            self.update_detail()

    def update_status(self) -> None:
        t = self.table
        sel = f", {len(t.selected)} marked" if t.selected else ""
        flt = f" matching {t.filter_text!r}" if t.filter_text else ""
        col = COLUMNS[t.sort_column].label + (" ▼" if t.sort_reverse else " ▲")
        self.query_one("#vm-status", Label).update(
            Text(f"{t.visible_count} of {len(t.rows)} VMs{flt}{sel} · sorted by {col}"))

    def current(self) -> Vm | None:
        client = self.xapp.client
        key = self.table.cursor_key
        if client is None or key is None:
            return None
        return Vm.get(client.cache, key)

    def update_detail(self) -> None:
        detail = self.query_one(VmDetail)
        if not detail.display or self.xapp.client is None:
            return
        detail.show(self.xapp.client.cache, self.current(), self.xapp.now())

    @on(VirtualTable.CursorMoved)
    def _cursor(self, event: VirtualTable.CursorMoved) -> None:
        self.update_detail()

    @on(VirtualTable.SelectionChanged)
    def _selection(self, event: VirtualTable.SelectionChanged) -> None:
        self.update_status()

    @on(VirtualTable.Sorted)
    def _sorted(self, event: VirtualTable.Sorted) -> None:
        self.update_status()

    @on(VirtualTable.Activated)
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    # ------------------------------------------------------------ filter

    def action_filter(self) -> None:
        # focus now, not at the next idle (Widget.focus): the keys typed right after
        # "/" are already queued and must reach the filter, not the table's bindings
        self.screen.set_focus(self.query_one("#vm-filter", Input))

    def _filter_changed(self, value: str) -> None:
        self.table.set_filter(value)
        self.update_status()

    @on(Input.Submitted, "#vm-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.table.focus()

    def action_clear(self) -> None:
        f = self.query_one("#vm-filter", Input)
        if self.has_class("detail-open") and self.screen.has_class("narrow"):
            self.action_toggle_detail()  # escape goes back from the detail to the table
        elif f.has_focus or f.value:
            f.value = ""
            self.table.focus()
        elif self.table.selected:
            self.table.clear_selection()
        else:
            self.xapp.action_focus_menu()

    def show_vm(self, ref: str) -> bool:
        """Put the cursor on ``ref``, clearing a filter that hides it: an action chosen
        by the VM's name (the palette) must not fall on the row the cursor was on."""
        t = self.table
        if ref in t.rows and ref not in t.order:
            f = self.query_one("#vm-filter", Input)
            f.value = ""
            t.set_filter("")
            self.update_status()
        t.move_to(ref)
        return t.cursor_key == ref

    def action_toggle_detail(self) -> None:
        detail = self.query_one(VmDetail)
        detail.display = not detail.display
        self.set_class(detail.display, "detail-open")
        self.update_detail()
        # narrow, the detail replaces the table: the focus goes with it, or it would be
        # left on the hidden table and d and escape would no longer reach this view
        if self.screen.has_class("narrow") and detail.display:
            self.call_after_refresh(detail.query_one(Tabs).focus)
        else:
            self.call_after_refresh(self.table.focus)

    # ------------------------------------------------------------ actions

    def targets(self) -> list[Vm]:
        client = self.xapp.client
        if client is None:
            return []
        return [v for v in (Vm.get(client.cache, k) for k in self.table.targets()) if v]

    def action_actions(self) -> None:
        vms = self.targets()
        if not vms:
            return
        choices: list[Choice[str]] = []
        for a in ACTIONS:
            if len(vms) > 1 and not a.bulk:
                continue
            reasons = [r for r in (self._why_not(v, a) for v in vms) if r]
            reason = reasons[0] if len(reasons) == len(vms) else None
            choices.append(Choice(a.id, a.label, f"[{a.key}]", reason))
        title = vms[0].name_label if len(vms) == 1 else f"{len(vms)} VMs"

        def chosen(action_id: str | None) -> None:
            if action_id:
                self.action_act(action_id)

        self.app.push_screen(PickOne(f"Actions: {title}", choices, id="vm-actions"), chosen)

    def _why_not(self, vm: Vm, a: Action) -> str | None:
        if a.id == "revert":
            return None if vm.snapshots else "the VM has no snapshots"
        if a.id == "resources":
            return None
        if not a.op:
            return None
        return vmops.why_not(vm, a.op)

    def action_act(self, action_id: str) -> None:
        self.perform(action_id)

    @work(exclusive=True, group="vm-action", exit_on_error=False)
    async def perform(self, action_id: str) -> None:
        client = self.xapp.client
        if client is None:
            return
        a = BY_ID[action_id]
        vms = self.targets()
        if not vms:
            return
        if len(vms) > 1 and not a.bulk:
            self.xapp.say(f"{a.label.rstrip('…')} works on one VM at a time", error=True)
            return
        if a.bulk:
            await self._bulk(a, vms)
            return
        vm = vms[0]
        try:
            plan = await self._single(a, vm)
        except XsctlError as e:
            self.xapp.error(f"Cannot {a.label.rstrip('…').lower()} {vm.name_label}", e)
            return
        if plan is None:
            return
        if plan.confirm_text is not None:
            if not await self.app.push_screen_wait(ConfirmTyped(plan, plan.confirm_text)):
                return
        elif plan.needs_confirmation and not await self.app.push_screen_wait(
                ConfirmPlan(plan.title, [plan], verb=a.verb)):
            return
        self.xapp.run_plan(plan)

    async def _bulk(self, a: Action, vms: list[Vm]) -> None:
        make: dict[str, Callable[[Cache, str], Plan]] = {
            "start": lambda c, r: vmops.start(c, r),
            "shutdown": lambda c, r: vmops.shutdown(c, r),
            "force_shutdown": lambda c, r: vmops.shutdown(c, r, force=True),
            "reboot": lambda c, r: vmops.reboot(c, r),
            "force_reboot": lambda c, r: vmops.reboot(c, r, force=True),
            "suspend": vmops.suspend,
            "resume": lambda c, r: vmops.resume(c, r),
            "pause": vmops.pause,
            "unpause": vmops.unpause,
        }
        cache = self.xapp.client.cache  # type: ignore[union-attr]
        plans: list[Plan] = []
        refused: list[tuple[str, str]] = []
        for vm in vms:
            try:
                plans.append(make[a.id](cache, vm.ref))
            except XsctlError as e:
                refused.append((vm.name_label, str(e)))
        if len(vms) == 1 and refused:
            self.xapp.error(f"Cannot {a.label.lower()} {vms[0].name_label}", refused[0][1])
            return
        if not plans:
            self.xapp.say(f"None of the {len(vms)} VMs can {a.label.lower()}: " + refused[0][1],
                          error=True)
            return
        needs = any(p.needs_confirmation for p in plans) or len(plans) > 1 or refused
        if needs:
            title = plans[0].title if len(plans) == 1 else f"{a.label}: {len(plans)} VMs"
            if not await self.app.push_screen_wait(
                    ConfirmPlan(title, plans, refused, verb=a.verb)):
                return
        for p in plans:
            self.xapp.run_plan(p)
        self.table.clear_selection()

    async def _single(self, a: Action, vm: Vm) -> Plan | None:
        client = self.xapp.client
        assert client is not None
        cache = client.cache
        if a.id in ("start_on", "migrate"):
            op = "start_on" if a.id == "start_on" else "pool_migrate"
            vmops.check_allowed(vm, op)
            hosts = models.hosts(cache)
            def reason(h: models.Host) -> str | None:
                if a.id == "migrate" and h.ref == vm.resident_on:
                    return "this is where it runs"
                if not h.enabled:
                    return "in maintenance"
                sr = vmops.unreachable_sr(cache, vm, h.ref)
                if sr is not None:
                    name = (cache.get("sr", sr) or {}).get("name_label", "its storage")
                    return f"cannot reach {name}"
                return None

            choices = [Choice(h.ref, h.name_label, f"{human_bytes(h.memory_free)} free",
                              reason(h)) for h in hosts]
            host = await self.app.push_screen_wait(PickOne(f"{a.label.rstrip('…')}: {vm.name_label}", choices))
            if host is None:
                return None
            return vmops.start(cache, vm.ref, host) if a.id == "start_on" else vmops.migrate(cache, vm.ref, host)
        if a.id == "snapshot":
            vmops.check_allowed(vm, "snapshot")
            default = f"{vm.name_label} {self.xapp.now().astimezone().strftime('%Y-%m-%d %H:%M')}"
            name = await self.app.push_screen_wait(TextPrompt(f"Snapshot {vm.name_label}", "Snapshot name", default))
            return None if name is None else vmops.snapshot(cache, vm.ref, name)
        if a.id == "revert":
            snaps = [s for s in (Vm.get(cache, r) for r in vm.snapshots) if s]
            if not snaps:
                self.xapp.say(f"{vm.name_label} has no snapshots", error=True)
                return None
            snaps.sort(key=lambda s: s.snapshot_time or datetime.min.replace(tzinfo=UTC), reverse=True)
            choices = [Choice(s.ref, s.name_label,
                              s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else "",
                              vmops.why_not(s, "revert")) for s in snaps]
            snap = await self.app.push_screen_wait(PickOne(f"Revert {vm.name_label} to", choices))
            return None if snap is None else vmops.revert(cache, vm.ref, snap)
        if a.id in ("clone", "copy"):
            vmops.check_allowed(vm, a.id)
            name = await self.app.push_screen_wait(TextPrompt(f"{a.label.rstrip('…')} {vm.name_label}", "Name of the new VM", f"{vm.name_label}-{a.id}"))
            if name is None:
                return None
            if a.id == "clone":
                return vmops.clone(cache, vm.ref, name)
            srs = [s for s in models.srs(cache) if s.content_type != "iso" and s.type != "udev"]
            choices = [Choice(s.ref, s.name_label, f"{human_bytes(s.free)} free") for s in srs]
            choices.insert(0, Choice("", "Same storage as the original", ""))
            sr = await self.app.push_screen_wait(PickOne(f"Copy {vm.name_label} to", choices))
            if sr is None:
                return None
            return vmops.copy(cache, vm.ref, name, sr or None)
        if a.id == "rename":
            name = await self.app.push_screen_wait(TextPrompt(f"Rename {vm.name_label}", "New name", vm.name_label))
            return None if name is None or name == vm.name_label else vmops.rename(cache, vm.ref, name)
        if a.id == "resources":
            return await self._resources(vm)
        if a.id == "delete":
            vmops.check_allowed(vm, "destroy")
            disks = [(d.vdi.ref, f"{d.vdi.name_label} ({human_bytes(d.vdi.virtual_size)} on {d.vdi.sr_name})")
                     for d in models.vm_disks(cache, vm) if d.vdi and d.vbd.type == "Disk"]
            keep: set[str] | None = set()
            if disks:
                keep = await self.app.push_screen_wait(PickDisks(f"Delete {vm.name_label}", disks))
                if keep is None:
                    return None
            return vmops.delete(cache, vm.ref, keep)
        raise AssertionError(f"{a.id} is a bulk action: _bulk plans it")

    async def _resources(self, vm: Vm) -> Plan | None:
        from xsctl.xapi.ops.base import Plan as P

        cache = self.xapp.client.cache  # type: ignore[union-attr]
        running = vm.power_state != "Halted"

        def plans(r: Resources) -> list[P]:
            out = []
            if (r.static_max, r.dynamic_min, r.dynamic_max) != (
                    human_size(vm.memory_static_max), human_size(vm.memory_dynamic_min),
                    human_size(vm.memory_dynamic_max)):
                out.append(vmops.set_memory(cache, vm.ref, r.static_max, r.dynamic_min, r.dynamic_max))
            if (r.vcpus, r.vcpus_max) != (vm.VCPUs_at_startup, vm.VCPUs_max):
                out.append(vmops.set_vcpus(cache, vm.ref, r.vcpus, None if running else r.vcpus_max))
            return out

        current = Resources(human_size(vm.memory_static_max), human_size(vm.memory_dynamic_min),
                            human_size(vm.memory_dynamic_max), vm.VCPUs_at_startup, vm.VCPUs_max)
        def validate(r: Resources) -> None:
            plans(r)  # raises the error the plan would raise, nothing is sent

        r = await self.app.push_screen_wait(EditResources(
            f"Memory and vCPUs: {vm.name_label}", current, running, validate))
        if r is None:
            return None
        todo = plans(r)
        if not todo:
            self.xapp.say("Nothing changed")
            return None
        for p in todo[:-1]:
            self.xapp.run_plan(p)
        return todo[-1]


def human_size(n: int) -> str:
    """Sizes as the memory form shows them: whole MiB or GiB (2G, 1536M)."""
    if n % (1024**3) == 0:
        return f"{n // 1024**3}G"
    return f"{n // 1024**2}M"
