"""The one action runner: for any operation of the catalogue, on the objects a view
hands it, it checks the gate, asks for the parameters with the dialog each kind of
parameter takes, plans, shows the plan where it must be confirmed, runs it in a
worker thread and reports how it ended. Nothing here knows a particular operation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from textual.app import App, SuspendNotSupported

from xsctl.config import vnc_viewer
from xsctl.ui.messages import PlanFinished, TaskStarted, TransferMoved
from xsctl.ui.modals.confirm import ConfirmPlan, ConfirmTyped
from xsctl.ui.modals.console import TunnelDialog
from xsctl.ui.modals.forms import Field, FieldsForm, PickMany, PickOne
from xsctl.ui.notify import error, say
from xsctl.ui.views.base import key_label
from xsctl.xapi import block
from xsctl.xapi import console as xc
from xsctl.xapi.client import Client
from xsctl.xapi.errors import OutcomeUnknown, XsctlError
from xsctl.xapi.models import Vbd
from xsctl.xapi.ops import block as block_ops
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops import console as console_ops
from xsctl.xapi.ops.base import Plan, Transfer, outcome, outcome_text
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Impact,
    Operation,
    Param,
    ParamKind,
    Refusals,
)
from xsctl.xapi.text import printable
from xsctl.xapi.transfer import Progress

if TYPE_CHECKING:
    from textual.screen import Screen


RATE_EVERY = 0.25  # seconds between rate updates of a transfer's task row


def _value(p: Param, text: str) -> Any:
    """A field's text as the planner takes it; an optional field left empty is None."""
    if not p.required and not text.strip():
        return None
    return p.parse(text)


def _dialogs() -> dict[str, Any]:
    """The operations that ask with a dialog of their own, by id."""
    from xsctl.ui.modals.attach import AttachDialog

    return {"vm.block-attach": AttachDialog}


class Runner:
    def __init__(self, screen: Screen[Any], client: Client, now: Callable[[], datetime]) -> None:
        self.screen = screen
        self.client = client
        self.now = now
        # the plans running in workers, each with the event that cancels it
        self._running: set[threading.Event] = set()
        self._swept: set[str] = set()  # leftover inspection devices being detached
        # the devices this run's inspections made, as their plans told it: the cache
        # may not have them yet when the app leaves right after
        self._inspected: set[str] = set()
        self._lock = threading.Lock()

    @property
    def app(self) -> App[Any]:
        return self.screen.app

    def context(self) -> Context:
        return Context(self.client.cache, self.now())

    def _objects(self, kind: catalogue.Kind, refs: list[str]) -> list[Any]:
        cache = self.client.cache
        return [o for o in (kind.load(cache, r) for r in refs) if o is not None]

    # ------------------------------------------------------------ the actions menu

    async def menu(self, cls: str, refs: list[str],
                   extras: Sequence[tuple[str, str]] = ()) -> str | None:
        """Every operation on these objects, after ``extras`` (operation id, ref: on
        an object of their own); those not possible say why. Returns the chosen
        operation's id."""
        ops = catalogue.operations(cls)
        if not ops:
            return None
        kind = ops[0].kind
        objs = self._objects(kind, refs)
        if not objs:
            return None
        cache = self.client.cache
        choices = []
        for op_id, ref in extras:
            op = catalogue.get(op_id)
            obj = op.kind.load(cache, ref)
            gone = "it is no longer there" if obj is None else catalogue.why_not(op, cache, obj)
            choices.append(Choice(op.id, op.menu_label, f"[{key_label(op.key)}]", gone))
        for op in ops:
            why: str | None
            if len(objs) > 1 and not op.multi:
                why = f"one {kind.noun} at a time"
            else:
                reasons = [catalogue.why_not(op, cache, o) for o in objs]
                why = None if any(r is None for r in reasons) else (
                    reasons[0] if len(objs) == 1 else f"none of them: {reasons[0]}")
            choices.append(Choice(op.id, op.menu_label, f"[{key_label(op.key)}]", why))
        title = kind.name(objs[0]) if len(objs) == 1 else f"{len(objs)} {kind.nouns}"
        chosen: str | None = await self.app.push_screen_wait(
            PickOne[str](f"Actions: {title}", choices, id="actions-menu",
                    hint="enter runs · the key beside each runs it from the table · "
                         "escape closes"))
        return chosen

    # ------------------------------------------------------------ one operation

    async def perform(self, op: Operation, refs: list[str]) -> bool:
        """Run ``op`` on ``refs`` (asking, confirming); True when plans were started."""
        kind = op.kind
        objs = self._objects(kind, refs)
        if not objs:
            say(self.app, f"That {kind.noun} is no longer in the pool", error=True)
            return False
        if len(objs) > 1 and not op.multi:
            say(self.app, f"{op.label} works on one {kind.noun} at a time", error=True)
            return False
        ctx = self.context()
        cache = ctx.cache
        refused = Refusals(kind)
        ok = []
        for o in objs:
            err = catalogue.gate(op, cache, o)
            if err is None:
                ok.append(o)
            else:
                refused.add(kind.name(o), err)
        if not ok:
            if len(objs) == 1:
                error(self.app, f"Cannot {op.label.lower()} {kind.name(objs[0])}",
                      refused.items[0][1])
            else:
                error(self.app, f"None of the {len(objs)} {kind.nouns} can {op.label.lower()}",
                      "\n".join(refused.lines()))
            return False
        if console_ops.is_console(op):  # the terminal or a tunnel, not calls
            return await self.console(op, ok[0])
        values = catalogue.defaults(op, ctx, ok[0])
        if len(ok) == 1 and len(objs) == 1:
            asked = await self.ask(op, ctx, ok[0])
            if asked is None:
                return False
            values = asked
        plans: list[Plan] = []
        if op.plan_many is not None and len(ok) > 1:
            # one plan for them all (thousands of alerts: one call, one worker)
            try:
                plans.append(catalogue.prepare_many(op, ctx, ok, values))
            except XsctlError as e:
                refused.add(f"{len(ok)} {kind.nouns}", e)
        else:
            for o in ok:
                try:
                    plans.append(catalogue.prepare(op, ctx, o, values))
                except XsctlError as e:
                    refused.add(kind.name(o), e)
        if not plans:
            if len(objs) == 1:
                error(self.app, f"Cannot {op.label.lower()} {kind.name(objs[0])}",
                      refused.items[0][1])
            else:
                error(self.app, f"Cannot {op.label.lower()}", "\n".join(refused.lines()))
            return False
        if not await self.confirm(op, plans, refused):
            return False
        for p in plans:
            self.run_plan(p)
        return True

    async def ask(self, op: Operation, ctx: Context, obj: Any) -> dict[str, Any] | None:
        """Each parameter with the dialog its kind takes; None when cancelled. An
        operation whose parameters depend on one another (the mode a disk allows)
        has a dialog of its own."""
        own = _dialogs().get(op.id)
        if own is not None:
            asked: dict[str, Any] | None = await self.app.push_screen_wait(own(ctx, obj))
            return asked
        name = op.kind.name(obj)
        values = catalogue.defaults(op, ctx, obj)
        for p in op.params:
            if p.kind is ParamKind.PICK:
                choices = catalogue.choices(p, ctx, obj)
                if not any(c.reason is None for c in choices):
                    why = "; ".join(f"{c.label}: {c.reason}" for c in choices) or "none exists"
                    error(self.app, f"Cannot {op.label.lower()} {name}",
                          f"No {p.label.lower()} can be chosen ({why})")
                    return None
                picked = await self.app.push_screen_wait(
                    PickOne[str](f"{op.label}: {name} — {p.label.lower()}", choices))
                if picked is None:
                    return None
                values[p.name] = picked
            elif p.kind is ParamKind.PICK_MANY:
                choices = catalogue.choices(p, ctx, obj)
                if choices:
                    marked = await self.app.push_screen_wait(
                        PickMany(f"{op.label} {name}", p.note or p.help, choices))
                    if marked is None:
                        return None
                    values[p.name] = marked
        form = [p for p in op.params if p.is_form_field]
        if not form:
            return values

        def check(texts: dict[str, str]) -> str | None:
            try:
                vals = {**values, **{p.name: _value(p, texts[p.name]) for p in form}}
                catalogue.prepare(op, ctx, obj, vals)
            except XsctlError as e:
                return catalogue.reason(e)
            return None

        fields = [Field(p.name, p.label, p.default(ctx, obj) if p.default else "",
                        p.fixed(obj) if p.fixed else None, p.kind is ParamKind.COUNT)
                  for p in form]
        texts = await self.app.push_screen_wait(
            FieldsForm(f"{op.label}: {name}", fields, check, op.rules, verb=op.label))
        if texts is None:
            return None
        try:
            for p in form:
                values[p.name] = _value(p, texts[p.name])
        except XsctlError as e:  # checked as typed; kept for safety
            error(self.app, f"Cannot {op.label.lower()} {name}", catalogue.reason(e))
            return None
        return values

    async def confirm(self, op: Operation, plans: list[Plan], refused: Refusals) -> bool:
        if len(plans) == 1 and plans[0].confirm_text is not None:
            ok: bool = await self.app.push_screen_wait(
                ConfirmTyped(plans[0], plans[0].confirm_text, verb=op.label))
            return ok
        needs = (any(p.needs_confirmation for p in plans) or len(plans) > 1 or bool(refused)
                 or op.impact >= Impact.DISRUPTIVE)
        if not needs:
            return True
        title = plans[0].title if len(plans) == 1 else (
            f"{op.label}: {len(plans)} {op.kind.nouns}")
        answer: bool = await self.app.push_screen_wait(
            ConfirmPlan(title, plans, refused.lines(), verb=op.label))
        return answer

    # ------------------------------------------------------------ running

    def run_plan(self, plan: Plan) -> None:
        refusal = self.client.refused(plan)
        if refusal is not None:
            error(self.app, f"{plan.title}: refused", str(refusal))
            return
        say(self.app, f"{plan.title}…", timeout=3)
        self.screen.run_worker(lambda: self._run(plan), thread=True, group="plans",
                               exit_on_error=False, name=plan.title)

    def _run(self, plan: Plan) -> None:
        """In a worker thread: what happens is posted, nothing is written here."""
        screen = self.screen
        task = [""]
        shown = [0.0]

        def started(t: str) -> None:
            task[0] = t
            screen.post_message(TaskStarted(t, plan))

        def moved(step: int, p: Progress) -> None:
            now = time.monotonic()
            if now - shown[0] >= RATE_EVERY or p.fraction >= 1.0:
                shown[0] = now
                screen.post_message(TransferMoved(task[0], p.short()))

        # a transfer streams through this process and dies with it: leaving cancels
        # it cleanly; any other task runs on in xapi and is left alone
        moves = any(isinstance(c, Transfer) for c in plan.calls)
        cancel = threading.Event()
        if moves:
            with self._lock:
                self._running.add(cancel)
        try:
            result = self.client.run(plan, on_task=started, rate=moved,
                                     cancel=cancel if moves else None)
        except Exception as e:  # reported by PlanFinished's handler
            screen.post_message(PlanFinished(plan, e, unknown=isinstance(e, OutcomeUnknown)))
            return
        finally:
            with self._lock:
                self._running.discard(cancel)
        screen.post_message(PlanFinished(plan, None, result))

    def stop(self, timeout: float = 20.0) -> None:
        """Leaving: cancel the transfers still running and give them ``timeout``
        seconds to end, so that each cancels its task and removes its partial file
        (or xapi its half-made VM) before the connection closes."""
        with self._lock:
            running = list(self._running)
        for e in running:
            e.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    return
            time.sleep(0.05)

    # ------------------------------------------------------------ consoles

    async def console(self, op: Operation, obj: Any) -> bool:
        """Open the console ``op`` plans: a text one gets the terminal (the app is
        suspended until the escape key), a graphical one a tunnel shown in a dialog
        while it runs."""
        ctx = self.context()
        name = op.kind.name(obj)
        title = f"Cannot open the console of {name}"
        try:
            plan = catalogue.prepare(op, ctx, obj, catalogue.defaults(op, ctx, obj))
        except XsctlError as e:
            error(self.app, title, catalogue.reason(e))
            return False
        refusal = self.client.refused(plan)
        step = console_ops.console_step(plan)
        if refusal is not None or step is None:
            error(self.app, title, str(refusal or "it has no console"))
            return False
        info = xc.ConsoleInfo(step.console, step.protocol, step.vm, name, "", step.address)
        if step.protocol == "rfb":
            return await self._tunnel(plan.title, info)
        say(self.app, f"Opening the console of {name}: {xc.ESCAPE_NAME} brings xsctl back…",
            timeout=3)
        try:
            stream = await asyncio.to_thread(xc.open_stream, self.client.conn, info)
        except XsctlError as e:
            error(self.app, title, e)
            return False
        try:
            why = self._hand_over(stream, name)
        except SuspendNotSupported:
            error(self.app, title, "this terminal cannot be handed over (the app does not "
                                   "run on a terminal of its own here)")
            return False
        finally:
            stream.close()
        say(self.app, f"Console of {name}: "
            + {"closed": "closed by the host", "eof": "the terminal's input ended",
               "signal": "ended by a signal"}.get(why, "closed"))
        return True

    def _hand_over(self, stream: xc.Stream, name: str) -> str:
        """The terminal to the console until the escape key (the event loop waits:
        the app neither reads nor draws meanwhile)."""
        with self.app.suspend():
            tty_in, tty_out = sys.__stdin__, sys.__stdout__
            assert tty_in is not None and tty_out is not None
            os.write(tty_out.fileno(), (f"Console of {printable(name)}. Press "
                                        f"{xc.ESCAPE_NAME} to come back to xsctl.\r\n"
                                        ).encode("utf-8", "replace"))
            return xc.attach(stream, tty_in.fileno(), tty_out.fileno())

    async def _tunnel(self, title: str, info: xc.ConsoleInfo) -> bool:
        conn = self.client.conn
        tunnel = xc.Tunnel(lambda: xc.open_stream(conn, info)).start()
        viewer: subprocess.Popen[bytes] | None = None
        try:
            profile = self.client.target.profile if self.client.target else None
            try:
                command = xc.viewer_command(tunnel.host, tunnel.port, vnc_viewer(profile))
            except XsctlError as e:
                command, text = None, str(e)
            else:
                text = (f"No VNC viewer found: connect one to {tunnel.host}::{tunnel.port}, "
                        f"or name one in ${xc.VIEWER_ENV} or the profile's vnc_viewer")
            if command is not None:
                try:  # its output would write over the app
                    viewer = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL,
                                              start_new_session=True)
                    text = f"Started {' '.join(command)}"
                except OSError as e:
                    text = f"Could not start {command[0]}: {e.strerror or e}"
            await self.app.push_screen_wait(TunnelDialog(title, tunnel, text))
        finally:
            await asyncio.to_thread(tunnel.stop)
            if viewer is not None and viewer.poll() is None:
                viewer.terminate()
        return True

    # ------------------------------------------------------------ inspections

    def sweep_inspections(self) -> None:
        """Detach what an interrupted run of this machine left attached to a control
        domain for inspection (its process is gone): each as a plan, with its toast."""
        cache = self.client.cache
        left = [v for v in block.stale(cache) if v.ref not in self._swept]
        self._swept.update(v.ref for v in left)
        if left:
            say(self.app, f"{len(left)} disk(s) that an interrupted run left attached to a "
                          "control domain are being detached")
        for vbd in left:
            try:
                self.run_plan(block_ops.release(cache, vbd))
            except XsctlError as e:
                error(self.app, "Cannot detach a leftover inspection", e)

    def release_inspections(self, timeout: float = 20.0) -> None:
        """Leaving: detach the disks this run attached to a control domain (each
        bounded by the connection's timeouts; one that fails stays tagged, and the
        next run's sweep finds it)."""
        if not self.client.connected:
            return
        cache = self.client.cache
        deadline = time.monotonic() + timeout
        refs = self._inspected | {v.ref for v in block.mine(cache, block.owner_tag())}
        for ref in sorted(refs):
            if time.monotonic() > deadline:
                break
            try:
                # as xapi has it now: the cache may lag behind a plug just done (an
                # unplugged device is only destroyed, which xapi refuses while attached)
                vbd = Vbd.from_record(ref, self.client.conn.call("VBD.get_record", ref))
                if vbd.other_config.get(block.TAG) != block.owner_tag():
                    continue
                self.client.run(block_ops.release(cache, vbd))
            except Exception:
                continue  # gone already, or it stays tagged for the next run's sweep

    def finished(self, msg: PlanFinished) -> None:
        if (msg.error is None and isinstance(msg.result, list)
                and block_ops.is_inspection(msg.plan)):
            self._inspected.update(block_ops.made_vbds(msg.plan, msg.result))
        if msg.error is None:
            made = outcome(msg.plan, msg.result) if isinstance(msg.result, list) else None
            where = ([n for n in msg.plan.notes if "/dev/" in n]
                     if block_ops.is_inspection(msg.plan) else [])
            say(self.app, f"{msg.plan.title}: done" + (f" — {outcome_text(made)}" if made else "")
                + (f". {where[0]}" if where else ""), timeout=12 if where else None)
        elif msg.unknown:
            error(self.app, f"{msg.plan.title}: outcome unknown",
                  f"{catalogue.reason(msg.error)}\nIt may or may not have taken effect; it "
                  "was not sent again. The views show the pool as it is once the "
                  "connection is back.")
        else:
            error(self.app, f"{msg.plan.title} failed", msg.error)

