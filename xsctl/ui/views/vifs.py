"""Network Interfaces: every VM with its VIFs, live (device, network, MAC, plugged,
locking mode, the addresses the guest reports, the static setting), as ``xe
vif-list`` shows them. A VIF's own keys remove, plug and unplug it and set a static
address, gated on the VIF's allowed_operations; ``w`` adds a VIF to the row's VM."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.messages import ActionRequested, CacheChanged
from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import DetailPane, ListingView, kv, listing_keys
from xsctl.ui.widgets.devices import row_styles
from xsctl.ui.widgets.table import Row, VirtualTable
from xsctl.ui.widgets.vifs import COLUMNS, LOCKING, VM_COLUMN, VifTable, vif_row
from xsctl.xapi.models import NULL, Vm, is_guest
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops import vif as vif_ops
from xsctl.xapi.text import printable

_ADD = catalogue.get("vm.vif-add")
PLACEHOLDER = "vm:"  # the row of a VM with no VIFs: "vm:" + its ref


class VifsView(ListingView[DetailPane]):
    """The Network Interfaces view."""

    ID = "vifs"
    LABEL = "Network Interfaces"
    KEY = ""
    ORDER = 25
    HELP = "every VM's network interfaces: add, remove, plug, unplug, static IP"
    FOLLOWS = frozenset({"vm", "vif", "network", "vm_guest_metrics", "vm_metrics", "pif"})
    ACTS_ON = "vif"
    TABLE = "vifs-table"
    FILTER = "vifs-filter"
    DETAIL = "vifs-detail"
    STATUS = "vifs-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "vifs", "VM, network, MAC, state or address",
        [Binding(_ADD.key, "add", _ADD.label, id="vifs.add",
                 tooltip="Add a network interface to the row's VM")])

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.built = False
        self.rows_of: dict[str, set[str]] = {}  # VM ref -> its row keys
        self.vm_of_gm: dict[str, str] = {}  # guest metrics ref -> VM ref

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by VM, network, MAC, state or address",
                    id="vifs-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VifTable([VM_COLUMN, *COLUMNS], view=self.ID, empty_text="No VMs",
                           id="vifs-table")
            yield DetailPane(id="vifs-detail")
        yield Label("", id="vifs-status", classes="view-status")

    def on_show(self) -> None:
        if not self.built:
            self.rebuild()

    # ------------------------------------------------------------ rows

    def _vm_rows(self, ref: str, r: dict[str, Any], st: dict[str, Any]) -> dict[str, Row]:
        cache = self.client.cache
        name = printable(str(r.get("name_label", "")))
        gm = str(r.get("guest_metrics", NULL))
        if gm != NULL:
            self.vm_of_gm[gm] = ref
        out = {}
        for vif_ref in r.get("VIFs") or ():
            vif = vif_ops.load_vif(cache, vif_ref)
            if vif is not None:
                out[vif_ref] = vif_row(cache, vif, st, name)
        if not out:
            cells = ((name, st.get("bold")), ("", None), ("no interfaces", st.get("dim")),
                     *(("", None) for _ in COLUMNS[2:]))
            out[PLACEHOLDER + ref] = Row(tuple(cells), ((name.lower(), -1), -1, "", "", "",
                                                        "", "", ""),
                                         name.lower(), dim=True)
        return out

    def rebuild(self) -> None:
        cache = self.client.cache
        st = row_styles(self.app)
        rows: dict[str, Row] = {}
        self.rows_of.clear()
        self.vm_of_gm.clear()
        with cache.long_lived():  # see VmsView.rebuild
            for ref, r in cache.snapshot("vm"):
                if is_guest(r):
                    mine = self._vm_rows(ref, r, st)
                    rows.update(mine)
                    self.rows_of[ref] = set(mine)
            self.table.replace_all(rows)
            self.table.commit()
        self.built = True
        self.update_status()
        self.update_detail()

    def _affected(self, msg: CacheChanged) -> set[str]:
        cache = self.client.cache
        vms: set[str] = set()
        for c in msg.changes:
            if c.cls == "vm":
                vms.add(c.ref)
            elif c.cls == "vif":
                for rec in (c.old, c.new):
                    if rec:
                        vms.add(str(rec.get("VM")))
            elif c.cls == "vm_guest_metrics" and c.ref in self.vm_of_gm:
                vms.add(self.vm_of_gm[c.ref])
            elif c.cls == "network" and c.op == "mod":
                for vif in (c.new or {}).get("VIFs") or ():
                    vr = cache.get("vif", vif)
                    if vr:
                        vms.add(str(vr.get("VM")))
        return vms

    def changed(self, msg: CacheChanged) -> None:
        """Keyed updates: the rows of the VMs a change touched."""
        if not self.built:
            return
        if msg.resync:
            self.rebuild()
            return
        cache = self.client.cache
        table = self.table
        st = row_styles(self.app)
        touched = False
        for vm in self._affected(msg):
            r = cache.get("vm", vm)
            new = self._vm_rows(vm, r, st) if r is not None and is_guest(r) else {}
            for key in self.rows_of.get(vm, set()) - set(new):
                table.remove_row(key)
            for key, row in new.items():
                table.upsert(key, row)
            self.rows_of[vm] = set(new)
            if not new:
                self.rows_of.pop(vm, None)
            touched = True
        if touched:
            table.commit()
            self.update_status()
            self.update_detail()

    # ------------------------------------------------------------ status and detail

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        vifs = sum(1 for k in t.rows if not k.startswith(PLACEHOLDER))
        self.set_status(f"{vifs} VIFs of {len(self.rows_of)} VMs{flt}{sel} · sorted by {col}")

    def show_detail(self, detail: DetailPane, key: str | None) -> None:
        cache = self.client.cache
        if key is None:
            detail.show("No VIF selected", "")
            return
        if key.startswith(PLACEHOLDER):
            vm = Vm.get(cache, key[len(PLACEHOLDER):])
            detail.show(Text(vm.name_label if vm else ""),
                        Text(f"No network interfaces. {_ADD.key} adds one."))
            return
        vif = vif_ops.load_vif(cache, key)
        if vif is None:
            detail.show("", "")
            return
        vm = Vm.get(cache, vif.VM)
        pairs: list[tuple[str, str | Text]] = [
            ("VM", Text(vif.vm_name)),
            ("Device", vif.device),
            ("Network", Text(vif.network_name or "(none)")),
            ("MAC", vif.MAC + (" (made by xapi)" if vif.MAC_autogenerated else "")),
            ("MTU", str(vif.MTU)),
            ("Plugged", "yes" if vif.currently_attached else "no"),
            ("Locking", LOCKING.get(vif.locking_mode, vif.locking_mode)),
            ("Guest IPs", Text(", ".join(vif.ips) or "none reported")),
            ("Static IPv4", Text(vif.static("ipv4") or "none")),
            ("Static IPv6", Text(vif.static("ipv6") or "none")),
        ]
        if vm is not None:
            pairs.append(("Static IP setting", Text(vif_ops.static_ip_reason(vm)
                                                    or "the guest agent takes it")))
        can = [op.label for op in catalogue.operations("vif")
               if catalogue.why_not(op, cache, vif) is None]
        pairs.append(("Can now", ", ".join(can) or "nothing"))
        detail.show(Text(vif_ops.vif_name(vif)), kv(pairs))

    # ------------------------------------------------------------ actions

    def targets(self) -> list[str]:
        return [k for k in self.table.targets() if not k.startswith(PLACEHOLDER)]

    def _vm_of_row(self) -> str | None:
        key = self.table.cursor_key
        if key is None:
            return None
        if key.startswith(PLACEHOLDER):
            return key[len(PLACEHOLDER):]
        r = self.client.cache.get("vif", key)
        return str(r.get("VM")) if r else None

    def action_add(self) -> None:
        vm = self._vm_of_row()
        if vm and vm != NULL:
            self.post_message(ActionRequested(_ADD.id, [vm], self.ID, kind="vm"))

    @on(VirtualTable.Activated, "#vifs-table")
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand("vifs: add a VIF to the VM under the cursor", _ADD.help,
                               self.action_add)]

    def show_object(self, ref: str) -> bool:
        """A VM (its first VIF) or a VIF."""
        rows = sorted(self.rows_of.get(ref, ()))
        return super().show_object(rows[0] if rows else ref)
