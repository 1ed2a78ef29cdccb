"""The attach dialog: a disk for a VM (one of the pool's, or a new one made on the
spot), its position, read-write or read-only, bootable, with the plan beside it as
the choices change. The disks the VM cannot take are listed, each with its reason;
so are the modes and SRs that are not possible. The catalogue's planner decides
every rule (xsctl/xapi/ops/block.py); this only asks."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option

from xsctl.ui.modals.forms import Dialog
from xsctl.ui.widgets.ticks import Tick
from xsctl.xapi import block
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import Vm, human_bytes, srs
from xsctl.xapi.ops import block as block_ops
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.base import Plan
from xsctl.xapi.ops.catalogue import Context

NEW = "new"  # the option id of "a new disk"
SHOWN = 100  # disks listed at once; the find field narrows the rest
OP = "vm.block-attach"


class AttachDialog(Dialog[dict[str, Any] | None]):
    """Returns the operation's values (as its CLI would give them), or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "attach", "Attach", id="attach.ok", show=False),
        Binding("ctrl+f", "find", "Find a disk", id="attach.find", show=False),
    ]

    def __init__(self, ctx: Context, vm: Vm) -> None:
        super().__init__(id="attach-dialog")
        self.ctx = ctx
        self.vm = vm
        self.candidates = block.candidates(ctx.cache, vm)
        self.plan: Plan | None = None

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        cache = self.ctx.cache
        vm = self.vm
        state = vm.power_state.lower()
        if vm.power_state == "Running" and not vm.is_control_domain:
            why = block.hotplug_refusal(cache, vm)
            state += ", hot-plug: " + ("no (" + why.split(", which")[0].split(" has ")[-1]
                                       + ")" if why else "yes")
        with VerticalScroll(classes="dialog", id="attach"):
            yield Label(Text(f"Attach a disk to {vm.name_label} ({state})"),
                        classes="dialog-title")
            yield Input(placeholder="type to find a disk by name or SR; ↓ to the list",
                        id="attach-find")
            yield OptionList(*self._options(""), id="attach-disks")
            with Horizontal(classes="field", id="attach-new"):
                yield Label("Size", classes="field-label")
                yield Input("10G", id="attach-size")
                yield Select(self._sr_options(), id="attach-sr", allow_blank=False,
                             value=self._default_sr())
            with Horizontal(classes="field"):
                yield Label("Position", classes="field-label")
                positions = block.allowed_positions(cache, vm)[:16]
                yield Select([(f"{p} ({block.linux_name(p)})", p) for p in positions],
                             id="attach-position", allow_blank=True, prompt="first free")
                yield Select([("read-write", "RW"), ("read-only", "RO")], id="attach-mode",
                             allow_blank=True, prompt="mode")
                yield Tick("Bootable", id="attach-bootable")
            yield Static("", id="attach-plan", classes="plan")
            yield Static("", id="attach-error", classes="error")
            yield Label(Text("enter on a disk or ctrl+s attaches · ctrl+f finds · tab moves · "
                             "escape cancels"), classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Attach", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def _options(self, find: str) -> list[Option]:
        """"+ A new disk", then the disks whose name or SR has ``find``: those the VM
        can take first, at most SHOWN (a pool of 10,000 disks is found by typing)."""
        words = find.lower().split()
        options = [Option(Text("+ A new disk (size and SR below)", style="bold"), id=NEW)]
        hidden = 0
        for i, c in enumerate(self.candidates):
            where = c.sr.display_name if c.sr is not None else "?"
            text = f"{c.label} {where}".lower()
            if words and not all(w in text for w in words):
                continue
            if len(options) > SHOWN:
                hidden += 1
                continue
            t = Text(c.label)
            t.append(f"  {human_bytes(c.vdi.virtual_size)} on {where}", style="dim")
            if c.reason:
                t.append(f"  — {c.reason}", style="italic dim")
            elif c.read_only:
                t.append("  read-only", style="italic")
            options.append(Option(t, id=str(i), disabled=c.reason is not None))
        if hidden:
            options.append(Option(Text(f"… and {hidden:,} more: type to narrow",
                                       style="dim italic"), id="more", disabled=True))
        return options

    def _sr_options(self) -> list[tuple[str, str]]:
        out = []
        for s in srs(self.ctx.cache):
            if s.is_iso or s.type == "udev":
                continue
            why = block_ops.new_disk_reason(self.ctx.cache, self.vm, s, 1)
            label = f"{s.display_name} ({human_bytes(s.free)} free)"
            out.append((label + (f" — {why}" if why else ""), s.ref))
        return out

    def _default_sr(self) -> str:
        cache = self.ctx.cache
        pool = next(iter(cache.all("pool").values()), {})
        default = str(pool.get("default_SR", ""))
        ok = [s.ref for s in srs(cache) if not s.is_iso and s.type != "udev"
              and block_ops.new_disk_reason(cache, self.vm, s, 1) is None]
        return default if default in ok else (ok[0] if ok else self._sr_options()[0][1])

    def on_mount(self) -> None:
        self.query_one("#attach-disks", OptionList).focus()
        self.refresh_plan()

    def on_key(self, event: events.Key) -> None:
        """A letter typed on the list starts finding (as in a file manager)."""
        ol = self.query_one("#attach-disks", OptionList)
        if self.focused is ol and event.is_printable and event.character \
                and event.character not in " ":
            find = self.query_one("#attach-find", Input)
            self.set_focus(find)
            find.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    def action_find(self) -> None:
        self.set_focus(self.query_one("#attach-find", Input))

    def action_to_list(self) -> None:
        self.set_focus(self.query_one("#attach-disks", OptionList))

    # ------------------------------------------------------------ values and plan

    def _disk(self) -> str | None:
        ol = self.query_one("#attach-disks", OptionList)
        i = ol.highlighted
        if i is None:
            return None
        oid = ol.get_option_at_index(i).id
        if oid == NEW:
            size = self.query_one("#attach-size", Input).value.strip()
            sr = self.query_one("#attach-sr", Select).value
            return f"{block_ops.NEW}{size}@{sr}"
        if oid is None or not oid.isdigit():
            return None
        return self.candidates[int(oid)].vdi.ref

    def values(self) -> dict[str, Any]:
        pos = self.query_one("#attach-position", Select).value
        mode = self.query_one("#attach-mode", Select).value
        return {"disk": self._disk(), "position": pos if isinstance(pos, str) else None,
                "mode": mode if isinstance(mode, str) else None,
                "bootable": self.query_one("#attach-bootable", Tick).value, "keep": False}

    def refresh_plan(self) -> None:
        new = self._disk() is not None and str(self._disk()).startswith(block_ops.NEW)
        self.query_one("#attach-new").display = new
        err = self.query_one("#attach-error", Static)
        shown = self.query_one("#attach-plan", Static)
        values = self.values()
        if values["disk"] is None:
            self.plan = None
            shown.update(Text("Pick a disk.", style="dim"))
            err.update("")
            return
        try:
            self.plan = catalogue.prepare(catalogue.get(OP), self.ctx, self.vm, values)
        except XsctlError as e:
            self.plan = None
            shown.update("")
            err.update(Text(catalogue.reason(e)))
            return
        err.update("")
        p = self.plan
        t = Text(p.title + "\n", style="bold")
        t.append("API calls: " + " → ".join(
            ("Async." if getattr(c, "use_async", False) else "") + c.method
            for c in p.calls) + "\n", style="dim")
        for line in p.xe:
            t.append(f"  {line}\n", style="dim")
        for w in p.warnings:
            t.append(f"Warning: {w}\n", style="bold")
        for n in p.notes:
            t.append(f"{n}\n")
        shown.update(t)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.refresh_plan()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id == NEW:
            # at once, not at the next idle (Widget.focus): the size typed right after
            # enter must reach the field
            self.set_focus(self.query_one("#attach-size", Input))
            return
        self.action_attach()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "attach-find":
            ol = self.query_one("#attach-disks", OptionList)
            ol.clear_options()
            ol.add_options(self._options(event.value))
            # the first disk that matches (else "+ A new disk")
            ol.highlighted = 1 if ol.option_count > 1 and event.value.strip() and not \
                ol.get_option_at_index(1).disabled else 0
        self.refresh_plan()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "attach-find":
            self.action_to_list()
            return
        self.action_attach()

    def on_select_changed(self, event: Select.Changed) -> None:
        self.refresh_plan()

    def on_checkbox_changed(self, event: Any) -> None:
        self.refresh_plan()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.action_attach()
        else:
            self.dismiss(None)

    def action_attach(self) -> None:
        self.refresh_plan()
        if self.plan is not None:
            self.dismiss(self.values())
