"""Network Interfaces: every VM with its VIFs, live (device, network, MAC, plugged,
locking mode, the addresses the guest reports, the static setting), as ``xe
vif-list`` shows them. A VIF's own keys remove, plug and unplug it and set a static
address, gated on the VIF's allowed_operations; ``w`` adds a VIF to the row's VM."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import PLACEHOLDER, DetailPane, VmChildrenView, kv, listing_keys
from xsctl.ui.widgets.table import Row
from xsctl.ui.widgets.vifs import COLUMNS, LOCKING, VM_COLUMN, VifTable, vif_row
from xsctl.xapi.cache import Change
from xsctl.xapi.models import NULL, Vm
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops import vif as vif_ops
from xsctl.xapi.text import printable

_ADD = catalogue.get("vm.vif-add")


class VifsView(VmChildrenView):
    """The Network Interfaces view."""

    ID = "vifs"
    LABEL = "Network Interfaces"
    KEY = ""
    ORDER = 25
    HELP = "every VM's network interfaces: add, remove, plug, unplug, static IP"
    FOLLOWS = frozenset({"vm", "vif", "network", "vm_guest_metrics", "vm_metrics", "pif"})
    ACTS_ON = "vif"
    CHILD = "vif"
    CHILD_NOUNS = "VIFs"
    ADD = _ADD.id
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
        self.vm_of_gm: dict[str, str] = {}  # guest metrics ref -> VM ref

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by VM, network, MAC, state or address",
                    id="vifs-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VifTable([VM_COLUMN, *COLUMNS], view=self.ID, empty_text="No VMs",
                           id="vifs-table")
            yield DetailPane(id="vifs-detail")
        yield Label("", id="vifs-status", classes="view-status")

    # ------------------------------------------------------------ rows

    def vm_rows(self, ref: str, r: dict[str, Any], st: dict[str, Any]) -> dict[str, Row]:
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

    def forget(self) -> None:
        self.vm_of_gm.clear()

    def affected(self, change: Change) -> set[str]:
        """Also what the guest reports (its addresses) and a network's name."""
        if change.cls == "vm_guest_metrics":
            vm = self.vm_of_gm.get(change.ref)
            return {vm} if vm else set()
        if change.cls == "network" and change.op == "mod":
            cache = self.client.cache
            vms: set[str] = set()
            for vif in (change.new or {}).get("VIFs") or ():
                vr = cache.get("vif", vif)
                if vr:
                    vms.add(str(vr.get("VM")))
            return vms
        return super().affected(change)

    # ------------------------------------------------------------ status and detail

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

    def action_add(self) -> None:
        self.add_to_row_vm()

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand("vifs: add a VIF to the VM under the cursor", _ADD.help,
                               self.action_add)]
