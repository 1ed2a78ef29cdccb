"""Block Attach: every VM with its block devices, live (position, disk, SR, mode,
plugged, bootable). A device's own keys detach, plug, unplug, insert and eject, gated
on the VBD's allowed_operations; ``A`` attaches a disk to the row's VM (the attach
dialog), and a control domain's inspection attaches are listed with their path."""

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
from xsctl.ui.widgets.devices import COLUMNS, VM_COLUMN, DeviceTable, device_row, row_styles
from xsctl.ui.widgets.table import Row, VirtualTable
from xsctl.xapi import block, storage
from xsctl.xapi.models import NULL, Vbd, Vdi, Vm, is_guest
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

_ATTACH = catalogue.get("vm.block-attach")
PLACEHOLDER = "vm:"  # the row of a VM with no devices: "vm:" + its ref


class BlockView(ListingView[DetailPane]):
    """The Block Attach view."""

    ID = "block"
    LABEL = "Block Attach"
    KEY = "8"
    HELP = "every VM's disks and drives: attach, detach, plug, unplug, insert, eject"
    FOLLOWS = frozenset({"vm", "vbd", "vdi", "sr", "pbd", "vm_guest_metrics", "vm_metrics"})
    ACTS_ON = "vbd"
    TABLE = "block-table"
    FILTER = "block-filter"
    DETAIL = "block-detail"
    STATUS = "block-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "block", "VM, disk, SR, mode or state",
        [Binding("A", "attach", _ATTACH.label, id="block.attach",
                 tooltip="Attach a disk (existing or new) to the row's VM")])

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.built = False
        self.rows_of: dict[str, set[str]] = {}  # VM ref -> its row keys

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by VM, disk, SR, mode or state",
                    id="block-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield DeviceTable([VM_COLUMN, *COLUMNS], view=self.ID, empty_text="No VMs",
                              id="block-table")
            yield DetailPane(id="block-detail")
        yield Label("", id="block-status", classes="view-status")

    def on_show(self) -> None:
        if not self.built:
            self.rebuild()

    # ------------------------------------------------------------ rows

    def _shown(self, r: dict[str, Any]) -> bool:
        return is_guest(r) or bool(r.get("is_control_domain"))

    def _vm_rows(self, ref: str, r: dict[str, Any], st: dict[str, Any]) -> dict[str, Row]:
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

    def rebuild(self) -> None:
        cache = self.client.cache
        st = row_styles(self.app)
        rows: dict[str, Row] = {}
        self.rows_of.clear()
        with cache.long_lived():  # see VmsView.rebuild
            for ref, r in cache.snapshot("vm"):
                if self._shown(r):
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
            elif c.cls == "vbd":
                for rec in (c.old, c.new):
                    if rec:
                        vms.add(str(rec.get("VM")))
            elif c.cls == "vdi":
                for rec in (c.old, c.new):
                    for vbd in (rec or {}).get("VBDs") or ():
                        vr = cache.get("vbd", vbd)
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
            new = self._vm_rows(vm, r, st) if r is not None and self._shown(r) else {}
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
        devices = sum(1 for k in t.rows if not k.startswith(PLACEHOLDER))
        self.set_status(f"{devices} devices of {len(self.rows_of)} VMs{flt}{sel} · "
                        f"sorted by {col}")

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

    def targets(self) -> list[str]:
        return [k for k in self.table.targets() if not k.startswith(PLACEHOLDER)]

    def _vm_of_row(self) -> str | None:
        key = self.table.cursor_key
        if key is None:
            return None
        if key.startswith(PLACEHOLDER):
            return key[len(PLACEHOLDER):]
        r = self.client.cache.get("vbd", key)
        return str(r.get("VM")) if r else None

    def action_attach(self) -> None:
        vm = self._vm_of_row()
        if vm and vm != NULL:
            self.post_message(ActionRequested(_ATTACH.id, [vm], self.ID, kind="vm"))

    @on(VirtualTable.Activated, "#block-table")
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand("block: attach a disk to the VM under the cursor",
                               _ATTACH.help, self.action_attach)]

    def show_object(self, ref: str) -> bool:
        """A VM (its first device) or a device."""
        rows = sorted(self.rows_of.get(ref, ()))
        return super().show_object(rows[0] if rows else ref)
