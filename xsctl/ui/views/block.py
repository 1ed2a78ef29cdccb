"""Block Attach: every VM with its block devices, live (position, disk, SR, mode,
plugged, bootable). A device's own keys detach, plug, unplug, insert and eject, gated
on the VBD's allowed_operations; ``A`` attaches a disk to the row's VM (the attach
dialog), and a control domain's inspection attaches are listed with their path."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import PLACEHOLDER, DetailPane, VmChildrenView, kv, listing_keys
from xsctl.ui.widgets.devices import COLUMNS, VM_COLUMN, DeviceTable, device_row
from xsctl.ui.widgets.table import Row
from xsctl.xapi import block, storage
from xsctl.xapi.cache import Change
from xsctl.xapi.models import Vbd, Vdi, Vm, is_guest
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

_ATTACH = catalogue.get("vm.block-attach")


class BlockView(VmChildrenView):
    """The Block Attach view."""

    ID = "block"
    LABEL = "Block Attach"
    KEY = "8"
    HELP = "every VM's disks and drives: attach, detach, plug, unplug, insert, eject"
    FOLLOWS = frozenset({"vm", "vbd", "vdi", "sr", "pbd", "vm_guest_metrics", "vm_metrics"})
    ACTS_ON = "vbd"
    CHILD = "vbd"
    CHILD_NOUNS = "devices"
    ADD = _ATTACH.id
    TABLE = "block-table"
    FILTER = "block-filter"
    DETAIL = "block-detail"
    STATUS = "block-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "block", "VM, disk, SR, mode or state",
        [Binding("A", "attach", _ATTACH.label, id="block.attach",
                 tooltip="Attach a disk (existing or new) to the row's VM")])

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by VM, disk, SR, mode or state",
                    id="block-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield DeviceTable([VM_COLUMN, *COLUMNS], view=self.ID, empty_text="No VMs",
                              id="block-table")
            yield DetailPane(id="block-detail")
        yield Label("", id="block-status", classes="view-status")

    # ------------------------------------------------------------ rows

    def shown(self, r: dict[str, Any]) -> bool:
        return is_guest(r) or bool(r.get("is_control_domain"))

    def vm_rows(self, ref: str, r: dict[str, Any], st: dict[str, Any]) -> dict[str, Row]:
        cache = self.client.cache
        name = printable(str(r.get("name_label", "")))
        out = {}
        for vbd_ref in r.get("VBDs") or ():
            vr = cache.get("vbd", vbd_ref)
            if vr is not None:
                out[vbd_ref] = device_row(cache, Vbd.from_record(vbd_ref, vr), st, name)
        if not out and not r.get("is_control_domain"):
            cells = ((name, st.get("bold")), ("", None), ("no devices", st.get("dim")),
                     ("", None), ("", None), ("", None), ("", None), ("", None))
            out[PLACEHOLDER + ref] = Row(cells, ((name.lower(), -1), -1, "", 0, "", "", "", False),
                                         name.lower(), dim=True)
        return out

    def affected(self, change: Change) -> set[str]:
        """Also a disk's change: the VMs it is attached to (its name, its SR)."""
        if change.cls != "vdi":
            return super().affected(change)
        cache = self.client.cache
        vms: set[str] = set()
        for rec in (change.old, change.new):
            for vbd in (rec or {}).get("VBDs") or ():
                vr = cache.get("vbd", vbd)
                if vr:
                    vms.add(str(vr.get("VM")))
        return vms

    # ------------------------------------------------------------ status and detail

    def show_detail(self, detail: DetailPane, key: str | None) -> None:
        cache = self.client.cache
        if key is None:
            detail.show("No device selected", "")
            return
        if key.startswith(PLACEHOLDER):
            vm = Vm.get(cache, key[len(PLACEHOLDER):])
            detail.show(Text(vm.name_label if vm else ""),
                        Text(f"No disks or drives. {_ATTACH.key} attaches one."))
            return
        r = cache.get("vbd", key)
        if r is None:
            detail.show("", "")
            return
        vbd = Vbd.from_record(key, r)
        vm = Vm.get(cache, vbd.VM)
        vdi = None if vbd.empty else Vdi.from_record(cache, vbd.VDI, cache.get("vdi", vbd.VDI) or {})
        pairs: list[tuple[str, str | Text]] = [
            ("VM", Text(vm.name_label if vm else "?")),
            ("Position", f"{vbd.userdevice} ({vbd.device or block.linux_name(vbd.userdevice)})"),
            ("Type", vbd.type),
            ("Disk", Text(vdi.name_label if vdi else "(empty)")),
        ]
        if vdi is not None:
            pairs += [("SR", Text(vdi.sr_name)),
                      ("Flags", ", ".join(f for f, on_ in (("sharable", vdi.sharable),
                                                           ("read-only", vdi.read_only))
                                          if on_) or "–")]
            others = [u for u in storage.uses(cache, vdi) if u.vbd != key]
            pairs.append(("Also used by", Text(", ".join(
                f"{u.vm_name} ({u.mode}{', attached' if u.attached else ''})"
                for u in others) or "no other VM")))
        pairs += [("Mode", vbd.mode), ("Bootable", "yes" if vbd.bootable else "no"),
                  ("Plugged", "yes" if vbd.currently_attached else "no")]
        tag = vbd.other_config.get(block.TAG)
        if tag:
            pairs += [("Inspection", Text(f"{tag}")),
                      ("In dom0 at", block.dom0_path(vbd))]
        if vm is not None and vm.power_state == "Running":
            why = block.hotplug_refusal(cache, vm)
            pairs.append(("Hot-plug", Text(why or "possible (PV drivers present)"
                                           if not vm.is_control_domain else "possible")))
        can = [op.label for op in catalogue.operations("vbd")
               if catalogue.why_not(op, cache, vbd) is None]
        pairs.append(("Can now", ", ".join(can) or "nothing"))
        title = Text(f"{vm.name_label if vm else ''} · "
                     f"{vbd.device or 'position ' + vbd.userdevice}")
        detail.show(title, kv(pairs))

    # ------------------------------------------------------------ actions

    def action_attach(self) -> None:
        self.add_to_row_vm()

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand("block: attach a disk to the VM under the cursor",
                               _ATTACH.help, self.action_attach)]
