"""Block devices as table rows, and a table of them whose keys are the device
operations of the catalogue (detach, plug, unplug, insert, eject): the Block Attach
view's table and a VM's Disks tab are both one."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from textual.binding import Binding, BindingType

from xsctl.ui.messages import ActionRequested
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import block
from xsctl.xapi.cache import Cache
from xsctl.xapi.models import NULL, Vbd, Vdi, human_bytes
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

VM_COLUMN = Column("vm", "VM", min_width=12, ratio=2, whole=True)
COLUMNS = [
    Column("position", "Pos", width=9),
    Column("disk", "Disk", min_width=14, ratio=3),
    Column("size", "Size", width=9, align="right", priority=3),
    Column("sr", "SR", min_width=12, ratio=2, priority=2),
    Column("mode", "Mode", width=4),
    Column("state", "Plugged", width=11),
    Column("boot", "Boot", width=4, priority=4),
]


def device_row(cache: Cache, vbd: Vbd, styles: dict[str, Style], vm_name: str | None = None
               ) -> Row:
    """A device's row; ``vm_name`` adds the VM's column first (the Block Attach view)."""
    vr = cache.get("vm", vbd.VM) or {}
    power = str(vr.get("power_state", ""))
    vdi = None
    if not vbd.empty and vbd.VDI != NULL:
        r = cache.get("vdi", vbd.VDI)
        vdi = Vdi.from_record(cache, vbd.VDI, r) if r else None
    position = vbd.userdevice + f" {vbd.device or block.linux_name(vbd.userdevice)}"
    disk = "(empty)" if vbd.empty else vdi.name_label if vdi else "(missing)"
    if vbd.type != "Disk":
        disk += f" ({vbd.type})"
    tag = vbd.other_config.get(block.TAG)
    if tag:
        disk += " [inspect]"
    if power in ("Running", "Paused"):
        state, st = (("● plugged", styles.get("ok")) if vbd.currently_attached
                     else ("○ unplugged", styles.get("warn")))
    elif power == "Suspended":
        state, st = ("◐ suspended", styles.get("dim"))
    else:
        state, st = ("– next boot", styles.get("dim"))
    busy = vbd.current_operations
    if busy:
        state, st = (f"⟳ {busy[0].replace('_', ' ')}", styles.get("busy"))
    sr = vdi.sr_name if vdi else ""
    cells: list[tuple[str, Style | None]] = [
        (position, None), (disk, styles.get("bold") if vbd.type == "Disk" else None),
        (human_bytes(vdi.virtual_size) if vdi else "", None), (sr, None),
        (vbd.mode, styles.get("warn") if vbd.mode == "RO" and vbd.type == "Disk" else None),
        (state, st), ("yes" if vbd.bootable else "", None)]
    try:
        pos = int(vbd.userdevice)
    except ValueError:
        pos = 999
    sort: list[Any] = [pos, disk.lower(), vdi.virtual_size if vdi else 0, sr.lower(),
                       vbd.mode, state, vbd.bootable]
    search = " ".join([position, disk, sr, vbd.mode, state]).lower()
    if vm_name is not None:
        cells.insert(0, (vm_name, styles.get("bold")))
        sort = [(vm_name.lower(), pos), *sort]
        search = f"{vm_name.lower()} {search}"
    return Row(tuple((printable(t), s) for t, s in cells), tuple(sort), search,
               dim=power not in ("Running", "Paused"))


def row_styles(app: Any) -> dict[str, Style]:
    t = app.current_theme
    return {"ok": Style(color=t.success), "warn": Style(color=t.warning),
            "dim": Style(dim=True), "bold": Style(bold=True),
            "busy": Style(color=t.primary, bold=True)}


def _op_bindings() -> list[BindingType]:
    """A key per device operation, and ``a`` for the actions menu (of a device)."""
    out: list[BindingType] = [Binding("a", "actions", "Actions", id="devices.actions",
                                      tooltip="Every action on the device, with why some "
                                              "are not possible")]
    for op in catalogue.operations("vbd"):
        out.append(Binding(op.key, f"act('{op.id}')", op.label, show=op.footer,
                           id=f"devices.{op.id}", tooltip=op.help))
    return out


class DeviceTable(VirtualTable):
    """A table of devices whose own keys act on them. ``view`` is the id of the view
    it sits in (its actions are reported to it)."""

    BINDINGS: ClassVar[list[BindingType]] = _op_bindings()

    def __init__(self, columns: list[Column], *, view: str, **kw: Any) -> None:
        super().__init__(columns, **kw)
        self.view_id = view

    def action_act(self, op_id: str) -> None:
        refs = [r for r in self.targets() if self._is_vbd(r)]
        if refs:
            self.post_message(ActionRequested(op_id, refs, self.view_id, kind="vbd"))

    def action_actions(self) -> None:
        refs = [r for r in self.targets() if self._is_vbd(r)]
        if refs:
            self.post_message(ActionRequested("", refs, self.view_id, kind="vbd"))

    def _is_vbd(self, key: str) -> bool:
        return key in self.rows and not key.startswith("vm:")
