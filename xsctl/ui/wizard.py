"""The New VM wizard: XenCenter's eight steps (template, name, install media, home
server, vCPUs and memory, disks, networks, start), each checked by the same code
that plans ``xsctl vm install`` (ops/install.py), then the review page with the plan
(every API call and the xe lines), then the plan running with its progress. If a
step fails, what was made is removed, unless the user ticked "keep"; the page says
what is left."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import (
    Button,
    Checkbox,
    ContentSwitcher,
    Input,
    Label,
    OptionList,
    ProgressBar,
    SelectionList,
    Static,
)
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from xsctl.ui.messages import InstallEnded, InstallProgress
from xsctl.ui.widgets.ticks import Tick, TickList
from xsctl.xapi.client import Client
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.models import Vm, human_bytes, parse_size, vm_disks
from xsctl.xapi.ops import install
from xsctl.xapi.ops.base import Plan, PlanFailed
from xsctl.xapi.ops.catalogue import Choice, reason
from xsctl.xapi.ops.install import DiskChoice, InstallSpec
from xsctl.xapi.ops.template import install_methods, is_builtin, provision_disks, recommended
from xsctl.xapi.ops.vm import MAX_VCPUS, MIN_MEMORY

STEPS = ("Template", "Name", "Install media", "Home server", "vCPUs and memory", "Disks",
         "Networks", "Finish")
REVIEW = len(STEPS)  # the page after the last step
PROGRESS = REVIEW + 1


def _options(choices: list[Choice]) -> list[Option]:
    out = []
    for i, c in enumerate(choices):
        t = Text(c.label)
        if c.detail:
            t.append(f"  {c.detail}", style="dim")
        if c.reason:
            t.append(f"  — {c.reason}", style="italic dim")
        out.append(Option(t, id=str(i), disabled=c.reason is not None))
    return out


class NewVmWizard(ModalScreen[str | None]):
    """Returns the new VM's ref when it was made, None when cancelled or failed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="wizard.cancel"),
        Binding("ctrl+n", "next", "Next", id="wizard.next", show=False),
        Binding("ctrl+b", "back", "Back", id="wizard.back", show=False),
    ]

    def __init__(self, client: Client, template: str | None = None) -> None:
        super().__init__(classes="dialog-screen", id="new-vm-wizard")
        self.client = client
        cache = client.cache
        self.templates = install.templates(cache)
        first = template or (self.templates[0].ref if self.templates else "")
        self.spec: InstallSpec = install.defaults(cache, first) if first else InstallSpec("", "")
        self.step = 0 if template is None else 1
        self.media: list[tuple[str, str]] = []  # (kind, value) per media option
        self.plan: Plan | None = None
        self.running = False
        self.made: str | None = None
        self.keep = False

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="wizard"):
            yield Label("", id="wizard-title", classes="dialog-title")
            with ContentSwitcher(initial="page-0", id="wizard-pages"):
                with Vertical(id="page-0", classes="wizard-page"):
                    yield OptionList(id="w-template")
                    yield Static("", id="w-template-info", classes="note")
                with Vertical(id="page-1", classes="wizard-page"):
                    yield Label("Name")
                    yield Input(id="w-name")
                    yield Label("Description")
                    yield Input(id="w-description")
                with Vertical(id="page-2", classes="wizard-page"):
                    yield OptionList(id="w-media")
                    yield Label("Network install URL (when chosen above)")
                    yield Input(placeholder="http://deb.debian.org/debian", id="w-url")
                with Vertical(id="page-3", classes="wizard-page"):
                    yield OptionList(id="w-home")
                with Vertical(id="page-4", classes="wizard-page"):
                    yield Label("vCPUs")
                    yield Input(id="w-vcpus", type="integer")
                    yield Label("Memory (4GiB, 512M)")
                    yield Input(id="w-memory")
                    yield Static("", id="w-limits", classes="note")
                with Vertical(id="page-5", classes="wizard-page"):
                    yield OptionList(id="w-disks")
                    with Horizontal(classes="field"):
                        yield Label("Size", classes="field-label")
                        yield Input("10G", id="w-disk-size")
                    yield OptionList(id="w-disk-sr")
                    with Horizontal(classes="buttons"):
                        yield Button("Add disk (enter in Size)", id="w-disk-add", compact=True)
                        yield Button("Remove the disk marked above", id="w-disk-remove",
                                     compact=True)
                with Vertical(id="page-6", classes="wizard-page"):
                    yield TickList[str](id="w-networks")
                with Vertical(id="page-7", classes="wizard-page"):
                    yield Tick("Start the VM when it is made", id="w-start")
                    yield Tick("If a step fails, keep what was made (else it is removed)",
                                   id="w-keep")
                with VerticalScroll(id="page-8", classes="wizard-page"):
                    yield Static("", id="w-review")
                with Vertical(id="page-9", classes="wizard-page"):
                    yield ProgressBar(total=100, show_eta=False, id="w-progress")
                    yield Static("", id="w-steps")
            yield Static("", id="w-error", classes="error")
            with Horizontal(classes="buttons", id="w-buttons"):
                yield Label(Text("^n next ^b back"), classes="hint")
                yield Button("Back", id="w-back", compact=True)
                yield Button("Next", variant="primary", id="w-next", compact=True)
                yield Button("Cancel", id="w-cancel", compact=True)

    def on_mount(self) -> None:
        self.fill_templates()
        self.show_step()

    # ------------------------------------------------------------ filling the pages

    @property
    def cache(self) -> Any:
        return self.client.cache

    def template(self) -> Vm | None:
        return Vm.get(self.cache, self.spec.template) if self.spec.template else None

    def fill_templates(self) -> None:
        ol = self.query_one("#w-template", OptionList)
        ol.clear_options()
        ol.add_options(_options([
            Choice(t.ref, t.name_label, "custom" if not is_builtin(t) else "", None)
            for t in self.templates]))
        refs = [t.ref for t in self.templates]
        if self.spec.template in refs:
            ol.highlighted = refs.index(self.spec.template)

    def fill_for_template(self) -> None:
        """Every page's choices as the template (and the choices so far) allow."""
        t = self.template()
        if t is None:
            return
        cache = self.cache
        self.query_one("#w-name", Input).value = self.spec.name
        self.query_one("#w-description", Input).value = self.spec.description
        # install media
        methods = install_methods(t)
        own_cd = any(d.vbd.type == "CD" for d in vm_disks(cache, t))
        net = [m for m in methods if m != "cdrom"]
        media: list[Choice] = [Choice("none", "None", "boot from the template's own disks"
                                      if not provision_disks(t) else "")]
        self.media = [("none", "")]
        media.append(Choice("url", "Network install from a URL", ", ".join(net),
                            None if net else "this template has no network install"))
        self.media.append(("url", ""))
        iso_why = (f"{t.name_label} has a CD drive of its own" if own_cd else
                   "this template does not install from a CD"
                   if methods and "cdrom" not in methods else None)
        for c in install.iso_choices(cache):
            media.append(Choice(c.value, "ISO: " + c.label, c.detail, iso_why or c.reason))
            self.media.append(("iso", c.value))
        ol = self.query_one("#w-media", OptionList)
        ol.clear_options()
        ol.add_options(_options(media))
        current = (("iso", self.spec.iso) if self.spec.iso else ("url", "")
                   if self.spec.install_url else ("none", ""))
        ol.highlighted = self.media.index(current) if current in self.media else 0
        # home server
        self.fill_hosts()
        # vCPUs and memory
        self.query_one("#w-vcpus", Input).value = str(self.spec.vcpus or t.VCPUs_at_startup)
        self.query_one("#w-memory", Input).value = human_bytes(
            self.spec.memory or t.memory_static_max, exact=True)
        rec = recommended(cache, t)
        self.query_one("#w-limits", Static).update(Text(
            f"{t.name_label}: memory {human_bytes(max(MIN_MEMORY, t.memory_static_min))}"
            f" to {human_bytes(rec.get('memory-static-max', 0)) if rec.get('memory-static-max') else 'any'}"
            f", vCPUs 1 to {rec.get('vcpus-max') or MAX_VCPUS}"))
        # disks
        self.fill_disks()
        sr_ol = self.query_one("#w-disk-sr", OptionList)
        sr_ol.clear_options()
        self.sr_choices = install.sr_choices(cache, 0, self.spec.home)
        sr_ol.add_options(_options(self.sr_choices))
        default = install.default_sr(cache)
        for i, c in enumerate(self.sr_choices):
            if c.value == default:
                sr_ol.highlighted = i
        # networks
        sl = self.query_one("#w-networks", SelectionList)
        sl.clear_options()
        for c in install.network_choices(cache):
            t2 = Text(c.label)
            if c.reason:
                t2.append(f"  — {c.reason}", style="italic dim")
            sl.add_option(Selection(t2, c.value, c.value in self.spec.networks,
                                    disabled=c.reason is not None))
        self.query_one("#w-start", Checkbox).value = self.spec.start

    def fill_hosts(self) -> None:
        t = self.template()
        memory = self.spec.memory or (t.memory_static_max if t else 0)
        self.host_choices = install.host_choices(self.cache, memory)
        ol = self.query_one("#w-home", OptionList)
        ol.clear_options()
        ol.add_options(_options(self.host_choices))
        values = [c.value for c in self.host_choices]
        ol.highlighted = values.index(self.spec.home or "") if (self.spec.home or "") in values else 0

    def fill_disks(self) -> None:
        ol = self.query_one("#w-disks", OptionList)
        ol.clear_options()
        t = self.template()
        own = [d for d in vm_disks(self.cache, t) if d.vdi is not None
               and d.vbd.type == "Disk"] if t else []
        rows: list[Option] = [Option(Text(f"{human_bytes(d.vdi.virtual_size)} on "
                                          f"{d.vdi.sr_name} (the template's own, copied)",
                                          style="dim"), disabled=True)
                              for d in own if d.vdi is not None]
        for i, d in enumerate(self.spec.disks or ()):
            rows.append(Option(Text(f"{human_bytes(d.size)} on {install.sr_name(self.cache, d.sr)}"),
                               id=f"disk-{i}"))
        if not rows:
            rows.append(Option(Text("No disks", style="dim"), disabled=True))
        ol.add_options(rows)

    # ------------------------------------------------------------ moving between pages

    def show_step(self) -> None:
        self.query_one("#wizard-pages", ContentSwitcher).current = f"page-{self.step}"
        title = (f"New VM · step {self.step + 1} of {len(STEPS)}: {STEPS[self.step]}"
                 if self.step < REVIEW else "New VM · review the plan" if self.step == REVIEW
                 else "New VM · making it")
        self.query_one("#wizard-title", Label).update(Text(title))
        self.query_one("#w-error", Static).update("")
        back = self.query_one("#w-back", Button)
        nxt = self.query_one("#w-next", Button)
        back.display = 0 < self.step <= REVIEW
        nxt.label = "Create" if self.step == REVIEW else "Close" if self.step == PROGRESS else "Next"
        nxt.disabled = self.step == PROGRESS and self.running
        self.query_one("#w-cancel", Button).display = self.step != PROGRESS
        if self.step == 0:
            self.show_template_info()
        if self.step == 1 or (self.step > 0 and not self.query_one("#w-name", Input).value):
            self.fill_for_template()
        focus: dict[int, str] = {0: "#w-template", 1: "#w-name", 2: "#w-media", 3: "#w-home",
                                 4: "#w-vcpus", 5: "#w-disk-size", 6: "#w-networks",
                                 7: "#w-start", 8: "#w-next", 9: "#w-next"}
        # at once, not after the next refresh: what is typed right after a page
        # changes belongs to the new page
        self.set_focus(self.query_one(focus[self.step], Widget))

    def show_template_info(self) -> None:
        t = self.template()
        if t is None:
            return
        from xsctl.ui.views.templates import template_summary

        self.query_one("#w-template-info", Static).update(template_summary(self.cache, t))

    def collect(self) -> InstallSpec:
        """The current page's answers into the spec; raises what is wrong."""
        spec = self.spec
        if self.step == 0:
            return spec
        if self.step == 1:
            return replace(spec, name=self.query_one("#w-name", Input).value,
                           description=self.query_one("#w-description", Input).value)
        if self.step == 2:
            i = self.query_one("#w-media", OptionList).highlighted or 0
            kind, value = self.media[i]
            url = self.query_one("#w-url", Input).value.strip()
            if kind == "url" and not url:
                raise UsageError("type the network install URL")
            return replace(spec, iso=value if kind == "iso" else None,
                           install_url=url if kind == "url" else None)
        if self.step == 3:
            i = self.query_one("#w-home", OptionList).highlighted or 0
            return replace(spec, home=self.host_choices[i].value or None)
        if self.step == 4:
            text = self.query_one("#w-vcpus", Input).value.strip()
            if not text.isdigit():
                raise UsageError("vCPUs: a whole number")
            return replace(spec, vcpus=int(text),
                           memory=parse_size(self.query_one("#w-memory", Input).value))
        if self.step == 6:
            nets = tuple(self.query_one("#w-networks", SelectionList).selected)
            return replace(spec, networks=nets)
        if self.step == 7:
            self.keep = self.query_one("#w-keep", Checkbox).value
            return replace(spec, start=self.query_one("#w-start", Checkbox).value)
        return spec

    def action_next(self) -> None:
        if self.step == PROGRESS:
            if not self.running:
                self.dismiss(self.made)
            return
        if self.step == REVIEW:
            self.start()
            return
        try:
            spec = self.collect()
            install.check(self.cache, spec)
        except XsctlError as e:
            self.query_one("#w-error", Static).update(Text(reason(e)))
            return
        self.spec = spec
        self.step += 1
        if self.step == 3:
            self.fill_hosts()
        if self.step == REVIEW:
            self.review()
        self.show_step()

    def action_back(self) -> None:
        if 0 < self.step <= REVIEW:
            self.step -= 1
            self.show_step()

    def action_cancel(self) -> None:
        if not self.running:
            self.dismiss(None)

    def review(self) -> None:
        cache = self.cache
        try:
            self.plan = install.plan(cache, self.spec)
        except XsctlError as e:
            self.step -= 1
            self.query_one("#w-error", Static).update(Text(reason(e)))
            return
        body = Text()
        for k, v in install.summary(cache, self.spec):
            body.append(f"{k:<14}", style="bold")
            body.append(f"{v}\n")
        if self.keep:
            body.append("If a step fails, what was made is kept.\n", style="italic")
        body.append("\n")
        body.append(self.plan.describe())
        self.query_one("#w-review", Static).update(body)

    # ------------------------------------------------------------ buttons and lists

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        bid = event.button.id
        if bid == "w-next":
            self.action_next()
        elif bid == "w-back":
            self.action_back()
        elif bid == "w-cancel":
            self.action_cancel()
        elif bid == "w-disk-add":
            self.add_disk()
        elif bid == "w-disk-remove":
            self.remove_disk()

    @on(OptionList.OptionHighlighted, "#w-template")
    def _template_moved(self, event: OptionList.OptionHighlighted) -> None:
        # only the user's own moves on the first page choose: filling the list
        # highlights entries too, and must not reset the choices made since
        i = event.option_index
        if self.step != 0 or not 0 <= i < len(self.templates):
            return
        if self.templates[i].ref != self.spec.template:
            self.spec = install.defaults(self.cache, self.templates[i].ref)
            self.query_one("#w-name", Input).value = ""  # filled from the new template
            self.show_template_info()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        if event.option_list.id in ("w-template", "w-media", "w-home"):
            self.action_next()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "w-disk-size":
            self.add_disk()
        else:
            self.action_next()

    def add_disk(self) -> None:
        try:
            size = parse_size(self.query_one("#w-disk-size", Input).value, default_unit="G")
            i = self.query_one("#w-disk-sr", OptionList).highlighted
            if i is None or self.sr_choices[i].reason is not None:
                raise UsageError("choose an SR that can take the disk")
            spec = replace(self.spec, disks=(*(self.spec.disks or ()),
                                             DiskChoice(size, self.sr_choices[i].value)))
            install.check(self.cache, spec)
        except XsctlError as e:
            self.query_one("#w-error", Static).update(Text(reason(e)))
            return
        self.query_one("#w-error", Static).update("")
        self.spec = spec
        self.fill_disks()

    def remove_disk(self) -> None:
        ol = self.query_one("#w-disks", OptionList)
        i = ol.highlighted
        if i is None:
            return
        opt = ol.get_option_at_index(i)
        if not (opt.id or "").startswith("disk-"):
            return
        n = int((opt.id or "disk-0")[5:])
        disks = list(self.spec.disks or ())
        del disks[n]
        self.spec = replace(self.spec, disks=tuple(disks))
        self.fill_disks()

    # ------------------------------------------------------------ running

    def start(self) -> None:
        plan = self.plan
        if plan is None:
            return
        refusal = self.client.refused(plan)
        if refusal is not None:
            self.query_one("#w-error", Static).update(Text(str(refusal)))
            return
        self.running = True
        self.step = PROGRESS
        self.show_step()
        self.query_one("#w-steps", Static).update(Text("\n".join(
            f"  {i + 1}. {s}" for i, s in enumerate(plan.steps()))))
        keep = self.keep
        client = self.client
        n = len(plan.calls)

        def work() -> None:
            def progress(step: int, fraction: float) -> None:
                self.post_message(InstallProgress(step, fraction, n))

            try:
                results = client.run(plan, progress, keep_on_failure=keep)
            except Exception as e:  # shown on the page
                self.post_message(InstallEnded(None, e))
                return
            self.post_message(InstallEnded(str(results[0]), None))

        self.run_worker(work, thread=True, group="install", exit_on_error=False,
                        name=plan.title)

    def on_install_progress(self, msg: InstallProgress) -> None:
        bar = self.query_one("#w-progress", ProgressBar)
        bar.update(progress=100 * (msg.step + msg.fraction) / max(1, msg.steps))
        plan = self.plan
        if plan is not None:
            lines = [("✓ " if i < msg.step or (i == msg.step and msg.fraction >= 1) else
                      "▶ " if i == msg.step else "  ") + f"{i + 1}. {s}"
                     for i, s in enumerate(plan.steps())]
            self.query_one("#w-steps", Static).update(Text("\n".join(lines)))

    def on_install_ended(self, msg: InstallEnded) -> None:
        self.running = False
        self.made = msg.vm
        self.show_step()  # Close, no Cancel; clears the error line
        if msg.error is None:
            self.query_one("#w-progress", ProgressBar).update(progress=100)
            self.query_one("#w-steps", Static).update(Text(
                f"{self.spec.name} is made" + (" and started." if self.spec.start else ".")))
            return
        e = msg.error
        text = (f"Step {e.step + 1} ({e.plan.calls[e.step].method}) failed: {e.reason}\n"
                f"{e.outcome}" if isinstance(e, PlanFailed) else f"It failed: {reason(e)}")
        self.query_one("#w-error", Static).update(Text(text))


def open_wizard(view: Any, template: str | None = None) -> None:
    """Open the wizard over the screen of ``view``; a toast when a VM was made."""
    from xsctl.ui.notify import say

    def done(ref: str | None) -> None:
        if ref:
            vm = Vm.get(view.client.cache, ref)
            say(view.app, f"New VM {vm.name_label if vm else ''} made")

    view.app.push_screen(NewVmWizard(view.client, template), done)
