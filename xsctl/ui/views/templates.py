"""Templates: built-in and custom told apart, each with its OS family, recommended
memory and vCPUs, the disks a new VM gets from it, its install methods and how many
VMs were made from it; copy, rename, delete a custom one, and a new VM from it."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Label, Static

from xsctl.ui.messages import CacheChanged
from xsctl.ui.views.base import PaletteCommand, RebuiltTableView
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi.models import Vm, human_bytes, is_guest, is_template
from xsctl.xapi.ops import install
from xsctl.xapi.ops.template import (
    describe_disks,
    install_methods,
    is_builtin,
    made_from,
    made_from_counts,
    os_family,
    recommended,
    template_disks,
)

COLUMNS = [
    Column("name", "Name", min_width=14, ratio=4),
    Column("kind", "Kind", width=8),
    Column("os", "OS", min_width=9, ratio=2, priority=2),
    Column("memory", "Memory", width=7, align="right"),
    Column("vcpus", "vCPU", width=4, align="right"),
    Column("disks", "Disks", min_width=8, ratio=2, priority=1),
    Column("install", "Install", min_width=7, ratio=2, priority=3),
    Column("vms", "VMs", width=4, align="right", priority=4),
]


def template_row(cache: Any, t: Vm, styles: dict[str, Style],
                 counts: dict[str, int] | None = None) -> Row:
    builtin = is_builtin(t)
    disks = describe_disks(template_disks(cache, t))
    methods = ", ".join(install_methods(t)) or "–"
    n = made_from(cache, t, counts)
    cells = (
        (t.name_label, styles.get("custom") if not builtin else None),
        ("built-in" if builtin else "custom", styles.get("dim") if builtin else styles.get("custom")),
        (os_family(t), None),
        (human_bytes(t.memory_static_max), None),
        (str(t.VCPUs_at_startup), None),
        (disks, None),
        (methods, None),
        (str(n), None),
    )
    sort = (t.name_label.lower(), builtin, os_family(t), t.memory_static_max,
            t.VCPUs_at_startup, disks, methods, n)
    return Row(cells, sort, " ".join([t.name_label, os_family(t),
                                      "built-in" if builtin else "custom"]).lower())


def template_summary(cache: Any, t: Vm) -> Text:
    """What a new VM gets from the template (the view's detail, the wizard's first
    page)."""
    rec = recommended(cache, t)
    lines = Text()
    lines.append(t.name_label, style="bold")
    lines.append("  built-in (cannot be deleted)" if is_builtin(t) else "  custom")
    lines.append("\n" + (t.name_description or "–"))
    limit = (f", at most {human_bytes(rec['memory-static-max'])}"
             if "memory-static-max" in rec else "")
    vlimit = f", at most {rec['vcpus-max']}" if "vcpus-max" in rec else ""
    lines.append(f"\nMemory {human_bytes(t.memory_static_max)} (least "
                 f"{human_bytes(t.memory_static_min)}{limit}) · vCPUs "
                 f"{t.VCPUs_at_startup}{vlimit}")
    disks = template_disks(cache, t)
    lines.append("\nDisks: " + ("; ".join(
        f"{human_bytes(d.size)} " + ("provisioned on the SR chosen" if d.provisioned
                                     else f"copied from {d.sr_name}") for d in disks)
        or "none"))
    methods = install_methods(t)
    lines.append("\nInstall from: " + (", ".join(methods) if methods
                                       else "its own disks (no install media)"))
    lines.append(f" · VMs made from it: {made_from(cache, t)}")
    return lines


class TemplatesView(RebuiltTableView):
    ID = "templates"
    LABEL = "Templates"
    KEY = "6"
    HELP = "built-in and custom templates: what a new VM gets from each; new VM, copy, delete"
    FOLLOWS = frozenset({"vm", "vbd", "vdi", "sr"})
    ACTS_ON = "template"
    TABLE = "template-table"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "new_vm", "New VM", id="templates.new_vm",
                tooltip="Install a new VM from this template (the New VM wizard)"),
        Binding("escape", "back", "Back", show=False, id="templates.back",
                tooltip="Back to the menu"),
    ]

    def compose(self) -> ComposeResult:
        yield VirtualTable(COLUMNS, empty_text="No templates", id="template-table")
        yield Static("", id="template-detail")
        yield Label("", id="template-status")

    def _styles(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {"custom": Style(color=t.accent, bold=True), "dim": Style(dim=True)}

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.guests: frozenset[str] = frozenset()  # the VMs counted at the last build

    def rebuild(self) -> None:
        super().rebuild()
        cache = self.client.cache
        styles = self._styles()
        counts = made_from_counts(cache)
        self.guests = frozenset(ref for ref, r in cache.snapshot("vm") if is_guest(r))
        rows = {t.ref: template_row(cache, t, styles, counts)
                for t in install.templates(cache)}
        # custom ones first (sorted by kind, then name)
        self.table.replace_all(rows)
        self.table.sort_by(1, reverse=False)
        self.table.commit()
        self.update_detail()

    def concerns(self, msg: CacheChanged) -> bool:
        """A change to a template, to a template's disks, or to which VMs there are
        (the counts); a running VM's metrics or power state is none of these."""
        if msg.resync or msg.refs("sr") or msg.refs("vdi"):
            return True
        cache = self.client.cache
        for ref in msg.refs("vm"):
            r = cache.get("vm", ref)
            if ref in self.table.rows or r is None or is_template(r) or \
                    (is_guest(r) and ref not in self.guests):
                return True
        for ref in msg.refs("vbd"):
            r = cache.get("vbd", ref)
            if r is None or r.get("VM") in self.table.rows:
                return True
        return False

    def current(self) -> Vm | None:
        key = self.table.cursor_key
        return None if key is None else Vm.get(self.client.cache, key)

    def update_detail(self) -> None:
        cache = self.client.cache
        t = self.current()
        status = self.query_one("#template-status", Label)
        n = len(self.table.rows)
        custom = sum(1 for r in self.table.rows.values() if r.sort[1] is False)
        status.update(Text(f"{n} templates: {custom} custom, {n - custom} built-in · "
                           "i: new VM from the template · a: actions"))
        detail = self.query_one("#template-detail", Static)
        if t is None:
            detail.update("")
            return
        detail.update(template_summary(cache, t))

    @on(VirtualTable.CursorMoved)
    def _cursor(self, event: VirtualTable.CursorMoved) -> None:
        self.update_detail()

    @on(VirtualTable.Activated)
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    def action_new_vm(self) -> None:
        t = self.current()
        if t is None:
            return
        from xsctl.ui.wizard import open_wizard

        open_wizard(self, t.ref)

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand("template: new VM", "Install a new VM from the template under "
                               "the cursor", self.action_new_vm)]
