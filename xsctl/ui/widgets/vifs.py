"""Network interfaces (VIFs) as table rows, and a table of them whose keys are the
VIF operations of the catalogue (remove, plug, unplug, static IPv4 and IPv6): a VM's
Network tab and the Network Interfaces view are both one."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.style import Style
from textual.binding import Binding, BindingType

from xsctl.ui.messages import ActionRequested
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi.cache import Cache
from xsctl.xapi.models import Vif, as_int
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

VM_COLUMN = Column("vm", "VM", min_width=12, ratio=2, whole=True)
COLUMNS = [
    Column("device", "Dev", width=5, align="right"),
    Column("network", "Network", min_width=18, ratio=3),
    Column("mac", "MAC", width=17, priority=3),
    Column("state", "Plugged", width=11),
    Column("locking", "Locking", width=9, priority=4),
    Column("ips", "Guest IPs", min_width=12, ratio=2, priority=1),
    Column("static", "Static IP", min_width=10, ratio=2, priority=2),
]
LOCKING = {"network_default": "default", "unlocked": "unlocked", "locked": "locked",
           "disabled": "disabled"}


def vif_row(cache: Cache, vif: Vif, styles: dict[str, Style], vm_name: str | None = None
            ) -> Row:
    """A VIF's row; ``vm_name`` adds the VM's column first (the Network Interfaces
    view)."""
    power = str((cache.get("vm", vif.VM) or {}).get("power_state", ""))
    if power in ("Running", "Paused"):
        state, st = (("● plugged", styles.get("ok")) if vif.currently_attached
                     else ("○ unplugged", styles.get("warn")))
    elif power == "Suspended":
        state, st = ("◐ suspended", styles.get("dim"))
    else:
        state, st = ("– next boot", styles.get("dim"))
    if vif.current_operations:
        state, st = (f"⟳ {vif.current_operations[0]}", styles.get("busy"))
    # IPv4 first; the link-local IPv6 every interface has says nothing
    ips = [ip for ip in vif.ips if not ip.lower().startswith("fe80:")]
    static = "; ".join(s for s in (vif.static("ipv4"), vif.static("ipv6")) if s)
    locking = LOCKING.get(vif.locking_mode, vif.locking_mode)
    cells: list[tuple[str, Style | None]] = [
        (vif.device, None), (vif.network_name or "(no network)", styles.get("bold")),
        (vif.MAC, None), (state, st),
        (locking, styles.get("warn") if vif.locking_mode in ("locked", "disabled") else None),
        (", ".join(ips) or "–", None if ips else styles.get("dim")),
        (static or "–", None if static else styles.get("dim"))]
    dev = as_int(vif.device, 999)
    sort: list[Any] = [dev, vif.network_name.lower(), vif.MAC.lower(), state, locking,
                       ", ".join(ips), static]
    search = " ".join([vif.device, vif.network_name, vif.MAC, state, locking, *vif.ips,
                       static]).lower()
    if vm_name is not None:
        cells.insert(0, (vm_name, styles.get("bold")))
        sort = [(vm_name.lower(), dev), *sort]
        search = f"{vm_name.lower()} {search}"
    return Row(tuple((printable(t), s) for t, s in cells), tuple(sort), search,
               dim=power not in ("Running", "Paused"))


def _op_bindings() -> list[BindingType]:
    """A key per VIF operation, and ``a`` for the actions menu (of a VIF)."""
    out: list[BindingType] = [Binding("a", "actions", "Actions", id="vifs.actions",
                                      tooltip="Every action on the VIF, with why some "
                                              "are not possible")]
    for op in catalogue.operations("vif"):
        out.append(Binding(op.key, f"act('{op.id}')", op.label, show=op.footer,
                           id=f"vifs.{op.id}", tooltip=op.help))
    return out


class VifTable(VirtualTable):
    """A table of VIFs whose own keys act on them. ``view`` is the id of the view it
    sits in (its actions are reported to it)."""

    BINDINGS: ClassVar[list[BindingType]] = _op_bindings()

    def __init__(self, columns: list[Column], *, view: str, **kw: Any) -> None:
        super().__init__(columns, **kw)
        self.view_id = view

    def _vifs(self) -> list[str]:
        return [r for r in self.targets() if r in self.rows and not r.startswith("vm:")]

    def action_act(self, op_id: str) -> None:
        refs = self._vifs()
        if refs:
            self.post_message(ActionRequested(op_id, refs, self.view_id, kind="vif"))

    def action_actions(self) -> None:
        refs = self._vifs()
        if refs:
            self.post_message(ActionRequested("", refs, self.view_id, kind="vif"))
