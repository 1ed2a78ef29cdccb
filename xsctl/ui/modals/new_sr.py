"""The New SR wizard, driven by probes as XenCenter's is: the type, (a local SR's
host), the fields that say where the storage is (each checked before any call), then
what the probes find to pick from (an NFS server's exports; an iSCSI target's IQNs,
then its LUNs; an HBA's LUNs), then the SRs already there: attach one (SR.introduce
and a PBD per host) or create a new one; then its name; the last page shows the plan
(API calls and the xe equivalent) and runs it through the action runner, like every
other plan.

Open it with :func:`open_new_sr` (the Storage view's key and palette command do).
Keys: enter goes on, escape goes back a page (cancels on the first), tab moves.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from xsctl.ui.modals.confirm import plan_text
from xsctl.ui.modals.forms import Dialog
from xsctl.xapi.client import Client
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import Pool, Sr, hosts
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.base import Plan
from xsctl.xapi.ops.catalogue import Context
from xsctl.xapi.ops.pool import POOL
from xsctl.xapi.probe import SR_KINDS, FoundSr, Probe, SrKind, check_device_config, probe
from xsctl.xapi.text import human_bytes, printable

CREATE = "create"


def _size(n: int | None) -> str:
    return human_bytes(n) if n is not None else ""


class NewSrWizard(Dialog[Plan | None]):
    """A modal of pages; dismissed with the plan to run, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="new-sr.back",
                tooltip="The previous page (on the first: cancel)"),
    ]

    def __init__(self, client: Client, now: Callable[[], datetime]) -> None:
        super().__init__(id="new-sr-wizard")
        self.client = client
        self.now = now
        self.kind: SrKind | None = None
        self.host = ""
        self.dc: dict[str, str] = {}
        self.found: Probe | None = None
        self.attach: FoundSr | None = None
        self.plan: Plan | None = None
        self.page = ""
        self.shown = ""  # the page whose widgets are mounted (page, once they are)
        self.history: list[tuple[str, dict[str, str]]] = []
        self._probe: Worker[Probe] | None = None

    # ------------------------------------------------------------ frame

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="new-sr"):
            yield Label("", id="wizard-title", classes="dialog-title")
            yield Static("", id="wizard-note", classes="note")
            yield Vertical(id="wizard-page")
            yield Static("", id="error", classes="error")
            yield Label("", id="wizard-hint", classes="hint")

    def on_mount(self) -> None:
        self._go("type")

    @property
    def cache(self) -> Any:
        return self.client.cache

    def _title(self, text: str) -> None:
        what = f"New SR · {self.kind.label}" if self.kind else "New SR"
        self.query_one("#wizard-title", Label).update(Text(f"{what} — {text}"))

    def _note(self, text: str | Text) -> None:
        self.query_one("#wizard-note", Static).update(
            text if isinstance(text, Text) else Text(text))

    def _error(self, text: str) -> None:
        self.query_one("#error", Static).update(Text(text))

    def _go(self, page: str, *, remember: bool = True) -> None:
        if remember and self.page:
            self.history.append((self.page, dict(self.dc)))
        self.page = page
        self.shown = ""
        self._error("")
        enter = {"fields": "probe" if self.kind and self._probes() else "next",
                 "name": "next",
                 "plan": "attach" if self.attach else "create"}.get(page, "choose")
        back = "cancel" if page == "type" else "back"
        self.query_one("#wizard-hint", Label).update(
            Text(f"enter: {enter} · escape: {back} · tab moves"))
        widgets = getattr(self, f"_page_{page}")()
        self.call_next(self._show, widgets)

    async def _show(self, widgets: list[Widget]) -> None:
        body = self.query_one("#wizard-page", Vertical)
        await body.remove_children()
        await body.mount_all(widgets)
        self.shown = self.page
        self._focus_first()

    def _focus_first(self) -> None:
        for w in self.query_one("#wizard-page", Vertical).query("OptionList, Input, Button"):
            if w.focusable:
                w.focus()
                # at 80x24 a plan can be taller than the dialog: its button in view
                self.call_after_refresh(w.scroll_visible, animate=False)
                return

    def action_back(self) -> None:
        self._probe = None
        if not self.history:
            self.dismiss(None)
            return
        page, self.dc = self.history.pop()
        if page == "type":
            self.kind = None
        self._go(page, remember=False)

    # ------------------------------------------------------------ pages

    def _page_type(self) -> list[Widget]:
        self._title("type")
        self._note("What kind of storage? The next pages find it with xapi's probes.")
        drivers = {str(r.get("type")): r for r in self.cache.all("sm").values()}
        options = []
        for k in SR_KINDS:
            why = None if not drivers or k.type in drivers else "no driver on the hosts"
            t = Text(k.label)
            t.append(f"  {'shared' if k.shared else 'one host'} · type {k.type}", style="dim")
            if why:
                t.append(f"  — {why}", style="italic dim")
            options.append(Option(t, id=k.id, disabled=why is not None))
        return [OptionList(*options, id="sr-types")]

    def _page_host(self) -> list[Widget]:
        assert self.kind is not None
        self._title("host")
        self._note(f"A {self.kind.label} SR is on one host's own disk: which host?")
        opts = []
        for h in hosts(self.cache):
            t = Text(h.name_label)
            t.append("  master" if h.is_master else "", style="dim")
            opts.append(Option(t, id=h.ref, disabled=not h.live))
        return [OptionList(*opts, id="sr-hosts")]

    def _fields(self) -> list[Any]:
        assert self.kind is not None
        return [k for k in self.kind.keys if k.probe]

    def _default(self, name: str) -> str:
        """A value the pool already uses for this key (the NFS server its SRs are
        on), so a first try finds something."""
        if name in self.dc:
            return self.dc[name]
        if self.kind is not None and name in ("server", "target") and not self.kind.local:
            pool = Pool.of(self.cache)
            default = pool.default_SR if pool else ""
            used = []
            for p in self.cache.all("pbd").values():
                sr = self.cache.get("sr", str(p.get("SR"))) or {}
                v = (p.get("device_config") or {}).get(name)
                if sr.get("type") == self.kind.type and v:
                    # the default SR's server first, then the others by name
                    used.append((p.get("SR") != default, str(v)))
            if used:
                return min(used)[1]
        return ""

    def _page_fields(self) -> list[Widget]:
        assert self.kind is not None
        self._title("where")
        probes = self._probes()
        self._note("Where is the storage? " + (
            "Nothing is sent until enter: then a probe asks the host what is there."
            if probes else "This type has no probe: the SR is made from these values."))
        out: list[Widget] = []
        for k in self._fields():
            row = Horizontal(Label(Text(k.label), classes="field-label"),
                             Input(self._default(k.name),
                                   placeholder=(f"e.g. {k.example}" if k.example else k.help),
                                   password=k.secret, id=f"f-{k.name}", tooltip=k.help),
                             classes="field")
            out.append(row)
        out.append(Horizontal(Button("Probe" if probes else "Next", variant="primary",
                                     id="next"), Button("Back", id="back"), classes="buttons"))
        return out

    def _page_pick(self) -> list[Widget]:
        found = self.found
        assert found is not None and self.kind is not None
        opts: list[Option] = []
        if found.needs == "serverpath":
            self._title("export")
            self._note(f"{self.dc.get('server', '')} exports these: which one?")
            opts = [Option(Text.assemble(e.path, (f"   open to {e.access}", "dim")),
                           id=e.path) for e in found.exports]
        elif found.needs == "targetIQN":
            self._title("target IQN")
            self._note(f"{self.dc.get('target', '')} offers these IQNs: which one? "
                       "(* logs in to all of them)")
            opts = [Option(Text.assemble(i.iqn, (f"  {i.address}", "dim")), id=i.iqn)
                    for i in found.iqns]
        elif found.needs == "SCSIid":
            self._title("LUN")
            self._note("These LUNs are free (those an SR of the pool uses are not listed): "
                       "which one?")
            for x in found.luns:
                t = Text(f"LUN {x.lun or '?'}  {_size(x.size)}")
                t.append(f"  {x.vendor} {x.serial} {x.path}  {x.scsi_id}".rstrip(), style="dim")
                opts.append(Option(t, id=x.scsi_id))
        if not opts:
            self._note("The probe found nothing to pick here.")
            return [Horizontal(Button("Back", id="back"), classes="buttons")]
        return [OptionList(*opts, id="probe-choices")]

    def _in_pool(self, uuid: str) -> str | None:
        for ref, r in self.cache.snapshot("sr"):
            if r.get("uuid") == uuid:
                s = Sr.get(self.cache, ref)
                return s.display_name if s else uuid
        return None

    def _page_found(self) -> list[Widget]:
        found = self.found
        assert self.kind is not None
        self._title("attach or create")
        srs = found.srs if found else ()
        self._note(("No SR is there yet." if not srs else
                    f"The probe found {len(srs)} SR{'s' if len(srs) != 1 else ''} there.")
                   if found else "No probe for this type.")
        used = [n for s in srs if (n := self._in_pool(s.uuid))]
        opts = []
        create = Text("Create a new SR here")
        why = None
        if self.kind.formats:
            if used:
                why = f"in use by {used[0]}"
            else:
                create.append("  formats it: what it holds is erased", style="dim")
        if why:
            create.append(f"  — {why}", style="italic dim")
        opts.append(Option(create, id=CREATE, disabled=why is not None))
        for s in srs:
            t = Text(f"Attach SR {s.uuid[:8]}…")
            extra = " ".join(x for x in (s.name_label, _size(s.size), s.devices) if x)
            if extra:
                t.append(f"  {extra}", style="dim")
            pool_name = self._in_pool(s.uuid)
            if pool_name:
                t.append(f"  — already in the pool as {pool_name}", style="italic dim")
            opts.append(Option(t, id=s.uuid, disabled=pool_name is not None))
        return [OptionList(*opts, id="found-choices")]

    def _default_name(self) -> str:
        assert self.kind is not None
        if self.attach is not None and self.attach.name_label:
            return self.attach.name_label
        d = self.dc
        where = (f"{d['server']}:{d['serverpath']}" if "serverpath" in d
                 else d.get("location") or d.get("server") or d.get("device")
                 or d.get("target") or d.get("SCSIid", "")[-8:])
        return f"{self.kind.label.split(' (')[0]} {where}".strip()

    def _page_name(self) -> list[Widget]:
        self._title("name")
        self._note("Attach: the SR keeps its disks; give it a name in this pool."
                   if self.attach else "The new SR's name and description.")
        return [
            Horizontal(Label(Text("Name"), classes="field-label"),
                       Input(self._default_name(), id="f-name"), classes="field"),
            Horizontal(Label(Text("Description"), classes="field-label"),
                       Input("", id="f-description"), classes="field"),
            Horizontal(Button("Next", variant="primary", id="next"), Button("Back", id="back"),
                       classes="buttons"),
        ]

    def _page_plan(self) -> list[Widget]:
        plan = self.plan
        assert plan is not None
        self._title("plan")
        self._note(Text(plan.title, style="bold"))
        verb = "Attach" if self.attach else "Create"
        out: list[Widget] = [Static(plan_text([plan], titled=False), classes="plan")]
        if plan.confirm_text:
            out.append(Label(Text.assemble("Type ", (plan.confirm_text, "bold"),
                                           " and enter to confirm")))
            out.append(Input(placeholder=plan.confirm_text, id="typed"))
        out.append(Horizontal(
            Button(verb, variant="error" if plan.destructive else "primary", id="run",
                   disabled=plan.confirm_text is not None),
            Button("Back", id="back"), classes="buttons"))
        return out

    # ------------------------------------------------------------ moving on

    def _probes(self) -> bool:
        """The type's driver answers SR.probe (its SM record's SR_PROBE feature)."""
        assert self.kind is not None
        for r in self.cache.all("sm").values():
            if r.get("type") == self.kind.type:
                return "SR_PROBE" in (r.get("features") or {}) or "SR_PROBE" in (
                    r.get("capabilities") or ())
        return True

    def _after_kind(self) -> None:
        assert self.kind is not None
        pool = Pool.of(self.cache)
        self.host = pool.master if pool else ""
        self.dc = dict(self.kind.fixed)
        if self.kind.local:
            self._go("host")
        elif self._fields():
            self._go("fields")
        else:  # an HBA: the first probe lists its LUNs
            self.history.append((self.page, {}))
            self.page = ""
            self._run_probe()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        value = event.option.id or ""
        if event.option_list.id == "sr-types":
            self.kind = next(k for k in SR_KINDS if k.id == value)
            self._after_kind()
        elif event.option_list.id == "sr-hosts":
            self.host = value
            self._go("fields")
        elif event.option_list.id == "probe-choices":
            assert self.found is not None
            self.history.append((self.page, dict(self.dc)))
            self.page = ""
            self.dc[self.found.needs] = value
            self._run_probe()
        elif event.option_list.id == "found-choices":
            self.attach = None if value == CREATE else next(
                s for s in (self.found.srs if self.found else ()) if s.uuid == value)
            self._go("name")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "typed":
            if self.plan is not None and event.value == self.plan.confirm_text:
                self.dismiss(self.plan)
            return
        self._next()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "typed" and self.plan is not None:
            self.query_one("#run", Button).disabled = event.value != self.plan.confirm_text

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "back":
            self.action_back()
        elif event.button.id == "run":
            self.dismiss(self.plan)
        else:
            self._next()

    def _next(self) -> None:
        if self.page == "fields":
            self._submit_fields()
        elif self.page == "name":
            self._submit_name()
        elif self.page == "plan" and self.plan is not None and not self.plan.confirm_text:
            self.dismiss(self.plan)

    def _submit_fields(self) -> None:
        assert self.kind is not None
        dc = dict(self.kind.fixed)
        for k in self._fields():
            v = self.query_one(f"#f-{k.name}", Input).value
            if v.strip():
                dc[k.name] = v.strip() if not k.secret else v
        try:
            check_device_config(self.kind, dc, for_probe=True)
        except XsctlError as e:
            self._error(str(e))
            return
        self.history.append((self.page, dict(self.dc)))
        self.page = ""
        self.dc = dc
        if self._probes():
            self._run_probe()
        else:
            self.found = None
            self.attach = None
            self._go("name", remember=False)

    # ------------------------------------------------------------ probing

    def _run_probe(self) -> None:
        assert self.kind is not None
        host = self.cache.get("host", self.host) or {}
        self._error("")
        self._note(Text(f"Probing from {printable(str(host.get('name_label', 'the master')))}… "
                        "(SR.probe_ext, else SR.probe)", style="italic"))
        kind, dc, ref, call = self.kind, dict(self.dc), self.host, self.client.conn.call
        self._probe = self.run_worker(lambda: probe(call, ref, kind.type, dc), thread=True,
                                      group="probe", exit_on_error=False,
                                      name=f"probe {kind.type}")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if w is not self._probe or w.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        self._probe = None
        if w.state is WorkerState.ERROR:
            e = w.error
            # back on the page the probe was asked from, with why it failed; fields
            # keep what was typed, to be corrected
            tried = dict(self.dc)
            page, self.dc = self.history.pop() if self.history else ("type", {})
            if page == "fields":
                self.dc = tried
            self._go(page, remember=False)
            self._error(str(e))
            return
        self.found = w.result
        assert self.found is not None
        self._go("pick" if self.found.needs else "found", remember=False)

    def _submit_name(self) -> None:
        assert self.kind is not None
        name = self.query_one("#f-name", Input).value
        desc = self.query_one("#f-description", Input).value
        values: dict[str, Any] = {
            "type": self.kind.type, "device_config": dict(self.dc), "name": name,
            "description": desc, "host": self.host, "shared": self.kind.shared,
            "content_type": self.kind.content_type}
        op = catalogue.get("sr.introduce" if self.attach else "sr.create")
        if self.attach is not None:
            values["uuid"] = self.attach.uuid
        cache = self.cache
        pool = next((POOL.load(cache, ref) for ref, _ in POOL.members(cache)), None)
        try:
            if pool is None:
                raise XsctlError("the pool is not in view yet")
            self.plan = catalogue.prepare(op, Context(cache, self.now()), pool, values)
        except XsctlError as e:
            self._error(catalogue.reason(e))
            return
        self._go("plan")


def open_new_sr(runner: Any) -> None:
    """Open the wizard over the runner's screen; its plan runs through the runner
    (worker, task progress, the toast at the end) like any other."""

    def done(plan: Plan | None) -> None:
        if plan is not None:
            runner.run_plan(plan)

    runner.app.push_screen(NewSrWizard(runner.client, runner.now), done)
