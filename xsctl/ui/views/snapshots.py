"""Snapshots: each VM's snapshot tree (parent and children as xapi links them, the
VM's current position, the dates, which hold memory), with revert, delete (with or
without the disks), and a new VM or template from a snapshot."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label

from xsctl.ui.messages import CacheChanged
from xsctl.ui.views.base import RebuiltTableView
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import models
from xsctl.xapi.ops.snapshot import TreeNode, snapshot_tree, tree_prefix

COLUMNS = [
    Column("snapshot", "Snapshot", min_width=16, ratio=4),
    Column("vm", "VM", min_width=10, ratio=2),
    Column("taken", "Taken", width=16),
    Column("holds", "Holds", width=12, priority=1),
]


def tree_rows(cache: Any, styles: dict[str, Style]) -> dict[str, Row]:
    """A row per snapshot, grouped by VM, in tree order (every column sorts the same
    way: a tree sorted by another column is no longer a tree)."""
    out: dict[str, Row] = {}
    # only the VMs that have snapshots are read as models (a few of 10,000)
    having = [models.Vm.from_record(cache, ref, r) for ref, r in cache.snapshot("vm")
              if r.get("snapshots") and models.is_guest(r)]
    having.sort(key=lambda v: v.name_label.lower())
    for vi, vm in enumerate(having):
        for i, node in enumerate(snapshot_tree(cache, vm)):
            s = node.snap
            if s is None:
                continue
            order = (vm.name_label.lower(), vi, i)
            name = tree_prefix(node) + s.name_label + ("  ◀ now" if node.current else "")
            when = s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else "–"
            out[s.ref] = Row(
                ((name, styles.get("current") if node.current else None),
                 (vm.name_label, None), (when, None),
                 ("disks+memory" if node.checkpoint else "disks",
                  styles.get("memory") if node.checkpoint else None)),
                (order,) * len(COLUMNS), f"{s.name_label} {vm.name_label}".lower())
    return out


def tree_text(cache: Any, vm: models.Vm) -> Text:
    """The tree as lines, with "Now" where the VM is (the VM detail's Snapshots)."""
    out = Text()
    nodes: list[TreeNode] = snapshot_tree(cache, vm)
    for node in nodes:
        out.append(tree_prefix(node), style="dim")
        if node.snap is None:
            out.append("▶ Now", style="bold")
            out.append(f"  ({vm.power_state.lower()})\n", style="dim")
            continue
        s = node.snap
        out.append(s.name_label, style="bold" if node.current else "")
        when = s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else ""
        out.append(f"  {when}", style="dim")
        if node.checkpoint:
            out.append("  with memory", style="italic")
        out.append("\n")
    return out


class SnapshotsView(RebuiltTableView):
    ID = "snapshots"
    LABEL = "Snapshots"
    KEY = "7"
    HELP = "every VM's snapshot tree: revert, delete, a new VM or template from one"
    FOLLOWS = frozenset({"vm"})
    ACTS_ON = "snapshot"
    TABLE = "snapshot-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", show=False, id="snapshots.back",
                tooltip="Back to the menu"),
    ]

    def compose(self) -> ComposeResult:
        yield VirtualTable(COLUMNS, empty_text="No snapshots", id="snapshot-table")
        yield Label("", id="snapshot-status", classes="view-status")

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.owners: frozenset[str] = frozenset()  # the VMs with snapshots at the last build

    def rebuild(self) -> None:
        super().rebuild()
        self.owners = frozenset(ref for ref, r in self.client.cache.snapshot("vm")
                                if r.get("snapshots"))
        t = self.app.current_theme
        styles = {"current": Style(bold=True, color=t.accent),
                  "memory": Style(color=t.warning)}
        self.table.replace_all(tree_rows(self.client.cache, styles))
        self.table.commit()
        n = len(self.table.rows)
        self.query_one("#snapshot-status", Label).update(Text(
            f"{n} snapshots · ◀ now: where the VM is · v revert · delete · i new VM · "
            "a: actions"))

    def concerns(self, msg: CacheChanged) -> bool:
        """A snapshot, or a VM that has snapshots or has just lost them (its "now"
        moves, its name is shown): a VM without any changes nothing here."""
        if msg.resync:
            return True
        cache = self.client.cache
        for ref in msg.refs("vm"):
            r = cache.get("vm", ref)
            if r is None or r.get("is_a_snapshot") or r.get("snapshots") or \
                    ref in self.table.rows or ref in self.owners:
                return True
        return False

    def on_virtual_table_activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()
