"""Disks: the virtual disks (VDIs) of one SR or of all, live: their size and use on
disk, type and flags, which VMs use each (through VBDs) and whether it is attached
now, snapshots under their parents, and the disks no VM uses easy to find."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.messages import CacheChanged, ViewRequested
from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import DetailPane, ListingView, kv, listing_keys
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import storage
from xsctl.xapi.models import NULL, Vdi, human_bytes, sr_display_name
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

# In reading order; the priority says which go first when narrow: the name, its size
# and who uses it stay at 80 columns.
COLUMNS = [
    Column("name", "Disk", min_width=16, ratio=3, whole=True),
    Column("size", "Size", width=9, align="right"),
    Column("phys", "On disk", width=9, align="right", priority=5),
    Column("type", "Type", width=8, priority=6),
    Column("flags", "Flags", min_width=8, ratio=1, priority=7),
    Column("sr", "SR", min_width=12, ratio=2, priority=2),
    Column("users", "Used by", min_width=14, ratio=2),
    Column("attached", "Attached", width=8, priority=1),
    Column("snapshots", "Snapshots", min_width=11, ratio=2, priority=3),
]
ORPHAN = "orphan"  # the tag of a disk no VM uses


def sr_tag(sr: str) -> str:
    return f"sr:{sr}"


class DisksView(ListingView[DetailPane]):
    """The Disks view."""

    ID = "disks"
    LABEL = "Disks"
    KEY = "5"
    HELP = "the disks of one SR or of all: who uses them, snapshots, orphans"
    FOLLOWS = frozenset({"vdi", "vbd", "vm", "sr", "pbd", "host"})
    ACTS_ON = "vdi"
    TABLE = "disk-table"
    FILTER = "disk-filter"
    DETAIL = "disk-detail"
    STATUS = "disk-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "disks", "name, SR, VM, type",
        [Binding("exclamation_mark", "orphans", "Orphans", id="disks.orphans", key_display="!",
                 tooltip="Only the disks no VM uses (again: every disk)")],
        clears="the orphans and SR filters, then the marks")

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.index: storage.DiskIndex | None = None  # built when first shown
        self.sr: str | None = None  # the SR whose disks are shown (None: every SR)
        self.orphans_only = False

    def compose(self) -> ComposeResult:
        with Horizontal(classes="view-top"):
            yield Label("", id="disk-scope", classes="view-scope")
            yield Input(placeholder="/ to filter by name, SR, VM or type", id="disk-filter",
                        classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="No disks", id="disk-table")
            yield DetailPane(id="disk-detail")
        yield Label("", id="disk-status", classes="view-status")

    def _styles(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {"warn": Style(color=t.warning, bold=True), "bold": Style(bold=True),
                "dim": Style(dim=True), "ok": Style(color=t.success)}

    def on_mount(self) -> None:
        # ListingView.on_mount runs after this one: Textual calls each class's handler
        self.show_scope()

    def on_show(self) -> None:
        if self.index is None:
            self.rebuild()

    def rebuild(self) -> None:
        cache = self.client.cache
        self.index = storage.DiskIndex(cache)
        self.index.load()
        st = self._styles()
        with cache.long_lived():  # see VmsView.rebuild
            rows = {}
            for ref in self.index.sr_of:
                r = cache.get("vdi", ref)
                if r is not None:
                    rows[ref] = self.row(Vdi.from_record(cache, ref, r), st)
            self.table.replace_all(rows)
            self.table.commit()
        self.update_status()
        self.update_detail()

    def row(self, vdi: Vdi, st: dict[str, Style]) -> Row:
        assert self.index is not None
        cache = self.client.cache
        orphan = vdi.ref in self.index.orphans
        users = storage.uses(cache, vdi)
        parent = cache.get("vdi", vdi.snapshot_of) if vdi.snapshot_of != NULL else None
        if orphan:
            used: tuple[str, Style | None] = ("none: orphaned", st["warn"])
        elif users:
            used = (", ".join(u.vm_name + (" (snapshot)" if u.is_snapshot else
                                           " (template)" if u.is_template else "")
                              for u in users), None)
        elif vdi.ref in self.index.suspend:
            vm = cache.get("vm", self.index.suspend[vdi.ref]) or {}
            used = (f"memory of suspended {printable(str(vm.get('name_label', '')))}",
                    st["dim"])
        else:
            used = ("–", st["dim"])
        on = any(u.attached for u in users)
        flags = ", ".join(f for f, on_ in (("sharable", vdi.sharable),
                                           ("read-only", vdi.read_only)) if on_)
        name = vdi.name_label
        if vdi.is_a_snapshot:
            # when it was taken is in the detail pane: the column is narrow
            pname = printable(str(parent.get("name_label", ""))) if parent else "a deleted disk"
            snaps = f"snapshot of {pname}"
            name = "└ " + name
        else:
            n = len(vdi.snapshots)
            snaps = f"{n} snapshot{'s' if n != 1 else ''}" if n else ""
        # the tree order: a snapshot right after its parent, oldest first
        root, root_ref = (printable(str(parent.get("name_label", ""))), vdi.snapshot_of) \
            if parent else (vdi.name_label, vdi.ref)
        when_ts = vdi.snapshot_time.timestamp() if vdi.snapshot_time else 0.0
        cells = (
            (name, st["dim"] if vdi.is_a_snapshot else None),
            (human_bytes(vdi.virtual_size), None),
            (human_bytes(vdi.physical_utilisation), None),
            (vdi.type, None),
            (flags, None),
            (vdi.sr_name, None),
            used,
            ("yes" if on else "no" if users else "–", st["ok"] if on else st["dim"]),
            (snaps, None),
        )
        sort = ((root.lower(), root_ref, vdi.is_a_snapshot, when_ts), vdi.virtual_size,
                vdi.physical_utilisation, vdi.type, flags, vdi.sr_name.lower(),
                used[0].lower(), on, snaps)
        search = " ".join([vdi.name_label, vdi.sr_name, used[0], vdi.type, flags,
                           "orphan orphaned" if orphan else "",
                           "snapshot" if vdi.is_a_snapshot else ""]).lower()
        tags = frozenset({sr_tag(vdi.SR), ORPHAN} if orphan else {sr_tag(vdi.SR)})
        return Row(cells, sort, search, dim=vdi.is_a_snapshot, tags=tags)

    def changed(self, msg: CacheChanged) -> None:
        """Keyed row updates: only the disks a change touched."""
        if self.index is None:
            return  # not shown yet: built when it is
        if msg.resync:
            self.rebuild()
            return
        disks, srs = self.index.apply(msg.changes)
        cache = self.client.cache
        table = self.table
        st = self._styles()
        for ref in disks:
            r = cache.get("vdi", ref)
            if r is None or ref not in self.index.sr_of:
                table.remove_row(ref)
            else:
                table.upsert(ref, self.row(Vdi.from_record(cache, ref, r), st))
        if disks:
            table.commit()
            self.update_status()
            if table.cursor_key in disks:
                self.update_detail()
        if self.sr in srs:
            self.show_scope()

    @on(VirtualTable.Activated, "#disk-table")
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()  # as in the VM view: enter opens the actions menu

    # ------------------------------------------------------------ scope

    def show_related(self, ref: str) -> None:
        """An SR's disks (enter in the Storage view); "" every SR's."""
        self.set_scope(ref or None, self.orphans_only)
        self.table.focus()

    def set_scope(self, sr: str | None, orphans_only: bool) -> None:
        self.sr, self.orphans_only = sr, orphans_only
        tags = ({sr_tag(sr)} if sr else set()) | ({ORPHAN} if orphans_only else set())
        self.table.empty_text = "No disks used by no VM" if orphans_only else "No disks"
        self.table.set_required(frozenset(tags))
        self.show_scope()
        self.update_status()

    def show_scope(self) -> None:
        t = Text()
        if self.sr:
            t.append("SR ", style="dim")
            t.append(sr_display_name(self.client.cache, self.sr) or "(gone)", style="bold")
        else:
            t.append("Every SR", style="dim")
        if self.orphans_only:
            t.append(" · orphans only", style="bold")
        self.query_one("#disk-scope", Label).update(t)

    def narrowed(self) -> bool:
        return self.orphans_only or self.sr is not None

    def widen(self) -> None:
        """Escape: the orphans filter goes first, then the SR's."""
        if self.orphans_only:
            self.set_scope(self.sr, False)
        else:
            self.set_scope(None, False)

    def action_orphans(self) -> None:
        self.set_scope(self.sr, not self.orphans_only)
        self.table.focus()

    def palette(self) -> list[PaletteCommand]:
        def orphans() -> None:
            self.set_scope(None, True)
            self.post_message(ViewRequested(self.ID, ""))

        return [PaletteCommand("disks: orphaned", "The disks no VM uses, on every SR",
                               orphans)]

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        orphans = 0
        if self.index is not None:
            orphans = (self.index.orphans_on(self.sr) if self.sr else len(self.index.orphans))
        total = sum(1 for r in t.rows.values()
                    if not self.sr or sr_tag(self.sr) in r.tags)
        self.set_status(
            f"{t.visible_count} of {total} disks{flt}{sel} · {orphans} orphaned (! shows them) "
            f"· sorted by {col}")

    # ------------------------------------------------------------ detail

    def show_detail(self, pane: DetailPane, key: str | None) -> None:
        cache = self.client.cache
        r = None if key is None else cache.get("vdi", key)
        if r is None or key is None or self.index is None:
            pane.show("No disk selected", Text(""))
            return
        vdi = Vdi.from_record(cache, key, r)
        facts: list[tuple[str, str | Text]] = [
            ("Description", vdi.name_description or "–"),
            ("UUID", vdi.uuid),
            ("SR", vdi.sr_name),
            ("Size", human_bytes(vdi.virtual_size, precise=True)),
            ("On disk", human_bytes(vdi.physical_utilisation, precise=True)),
            ("Type", vdi.type),
            ("Sharable", "yes" if vdi.sharable else "no"),
            ("Read-only", "yes" if vdi.read_only else "no"),
        ]
        if vdi.is_a_snapshot:
            parent = cache.get("vdi", vdi.snapshot_of) if vdi.snapshot_of != NULL else None
            when = vdi.snapshot_time.strftime("%Y-%m-%d %H:%M") if vdi.snapshot_time else "?"
            facts.append(("Snapshot of", (printable(str(parent.get("name_label", "")))
                                          if parent else "a deleted disk") + f", taken {when}"))
        if key in self.index.orphans:
            facts.append(("Orphaned", Text("yes: no VM, snapshot or template uses it",
                                           style="bold")))
        if vdi.missing:
            facts.append(("Missing", Text("the SR's last scan did not find it", style="bold")))
        if vdi.current_operations:
            facts.append(("Doing now", ", ".join(vdi.current_operations)))
        vbds = Table(box=None, padding=(0, 1), expand=True, title="Used by (VBDs)",
                     title_justify="left", title_style="bold")
        for col, short in (("VM", False), ("Position", True), ("Mode", True),
                           ("Attached", True)):
            vbds.add_column(col, no_wrap=short, overflow="fold", ratio=None if short else 1)
        users = storage.uses(cache, vdi)
        for u in users:
            who = u.vm_name + (" (snapshot)" if u.is_snapshot else
                               " (template)" if u.is_template else f" ({u.power_state})")
            vbds.add_row(Text(who), u.device, u.mode, "yes" if u.attached else "no")
        parts: list[Any] = [kv(facts), Text("")]
        parts.append(vbds if users else Text("Used by no VM.", style="dim"))
        if vdi.snapshots:
            snaps = Table(box=None, padding=(0, 1), expand=True, title="Snapshots",
                          title_justify="left", title_style="bold")
            snaps.add_column("Taken", no_wrap=True)
            snaps.add_column("By", ratio=1)
            for s in sorted(vdi.snapshots):
                sr_ = cache.get("vdi", s)
                if sr_ is None:
                    continue
                sv = Vdi.from_record(cache, s, sr_)
                by = ", ".join(u.vm_name for u in storage.uses(cache, sv)) or "–"
                snaps.add_row(sv.snapshot_time.strftime("%Y-%m-%d %H:%M")
                              if sv.snapshot_time else "?", Text(by))
            parts += [Text(""), snaps]
        can = [op.label for op in catalogue.operations("vdi")
               if catalogue.why_not(op, cache, vdi) is None]
        if can:
            parts += [Text(""), Text("Can now", style="bold"), Text(", ".join(can))]
        parts += [Text(""), Text("Allowed operations (xapi)", style="bold"),
                  Text(", ".join(sorted(printable(o) for o in vdi.allowed_operations))
                       or "none")]
        pane.show(Text(vdi.name_label + (" (snapshot)" if vdi.is_a_snapshot else "")),
                  Group(*parts))
