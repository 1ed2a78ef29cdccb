"""Plans: the calls an operation will make, shown before they are made."""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from xsctl.xapi import transfer
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.session import Connection
from xsctl.xapi.tasks import wait_task

log = logging.getLogger(__name__)


LIST_SHOWN = 5  # a list argument longer than this is shown by its first items


@dataclass(frozen=True, slots=True)
class Result:
    """Placeholder for the result of an earlier call of the same plan."""

    index: int


# The calls that remove what a step made, worked out when it is time: what a VM got
# from provisioning (its disks) is only known then. Given the connection and the
# step's own result.
Expand = Callable[[Connection, Any], "list[Call]"]


@dataclass(frozen=True, slots=True)
class Undo:
    """How to remove what a step made, should a later step fail: ``what`` names it
    for people ("the new VM web-07 and its disks"); ``calls`` (which may use the
    step's :class:`Result`) and then ``expand`` give the calls."""

    what: str
    calls: tuple[Call, ...] = ()
    expand: Expand | None = None


@dataclass(frozen=True, slots=True)
class Call:
    method: str  # xapi wire name, e.g. "VM.clean_shutdown"
    args: tuple[Any, ...] = ()
    use_async: bool = False  # run through Async.* with task progress
    undo: Undo | None = None  # removes what this call made
    # run instead when this call fails (a forced unplug after a clean one was refused)
    otherwise: Call | None = None

    def render(self, names: Mapping[str, str]) -> str:
        """``VM.clean_shutdown(web-01)``: refs shown by name where known."""

        def one(a: Any) -> str:
            if isinstance(a, Result):
                return f"<result of step {a.index + 1}>"
            if isinstance(a, str):
                if a.startswith("OpaqueRef:"):
                    return names.get(a, a)
                items = a.split(",")
                # the UUIDs of a host's VMs, comma-separated (not a text someone wrote)
                if len(items) > LIST_SHOWN and len(a) > 120 and " " not in a:
                    return repr(",".join(items[:LIST_SHOWN]) + ",…") + f" ({len(items)} in all)"
                return repr(a)
            if isinstance(a, bool):
                return "true" if a else "false"
            if isinstance(a, dict):
                # a device-config password (xapi moves it to a secret) is never shown
                return "{" + ", ".join(
                    f"{k}: {'********' if str(k).endswith('password') else one(v)}"
                    for k, v in a.items()) + "}"
            if isinstance(a, (list, tuple)):
                # thousands of alerts dismissed at once: the first few, and the count
                if len(a) > LIST_SHOWN:
                    return ("[" + ", ".join(one(x) for x in a[:LIST_SHOWN])
                            + f", … {len(a)} in all]")
                return "[" + ", ".join(one(x) for x in a) + "]"
            return str(a)

        prefix = "Async." if self.use_async else ""
        text = f"{prefix}{self.method}({', '.join(one(a) for a in self.args)})"
        if self.otherwise is not None:
            text += f", and if that fails: {self.otherwise.render(names)}"
        return text


@dataclass(frozen=True, slots=True)
class Transfer:
    """A step that streams a VM to or from a file through xapi's HTTP handlers
    (``GET /export``, ``PUT /import``) under the task an earlier step made; run by
    xsctl.xapi.transfer, with progress, and cancelled like any task."""

    direction: str  # "export" or "import"
    obj: str  # the VM (export) or the SR (import)
    path: str  # the file on this machine
    task: Result  # the step that made the task (task.create)
    compression: str | None = None  # export.ml use_compression: gzip or zstd
    force: bool = False  # replace an existing file
    use_async = False
    undo = None  # xapi removes a half import itself

    @property
    def method(self) -> str:
        """The API message xapi checks the session's rights against (xapi_http.ml
        rbac: http/get_export, http/put_import)."""
        return "VM.export" if self.direction == "export" else "VM.import"

    def render(self, names: Mapping[str, str]) -> str:
        """``GET /export?ref=web-01&task_id=<result of step 1> > /tmp/web-01.xva``"""
        task = f"<result of step {self.task.index + 1}>"
        name = names.get(self.obj, self.obj)
        if self.direction == "export":
            extra = f"&use_compression={self.compression}" if self.compression else ""
            return (f"GET /export?ref={name}&task_id={task}{extra} > {self.path} "
                    "(streamed to a temporary file, renamed when whole)")
        return f"PUT /import?sr_id={name}&task_id={task} < {self.path} (streamed)"


@dataclass(frozen=True, slots=True)
class Console:
    """A step that hands a console over (``CONNECT /console``, console.ml): a text
    one to the terminal, a graphical one to a tunnel on loopback. Not run by
    :func:`run`: the terminal or the tunnel belongs to the CLI or the app, which
    open it with xsctl.xapi.console."""

    console: str  # the console's ref
    protocol: str  # vt100 or rfb
    vm: str  # the VM (a control domain for a host's console)
    address: str  # the host that serves it
    port: int | None = None  # rfb: the local port (None: any free one)
    use_async = False
    undo = None
    otherwise = None

    @property
    def method(self) -> str:
        """What a read-only connection judges it by: typing into a console changes
        things."""
        return "console"

    def render(self, names: Mapping[str, str]) -> str:
        req = (f"CONNECT https://{self.address}/console?ref={names.get(self.console, self.console)}"
               " (session in a cookie)")
        if self.protocol == "rfb":
            port = self.port if self.port else "a free port"
            return f"listen on 127.0.0.1:{port}; for each VNC connection to it: {req}"
        return f"{req}; the terminal is handed over raw"


Step = Call | Transfer | Console


@dataclass(frozen=True)
class Plan:
    title: str  # "Shut down web-01"
    action: str  # "vm.shutdown"
    targets: tuple[str, ...]  # the refs acted on
    calls: tuple[Step, ...]
    xe: tuple[str, ...]  # equivalent xe command lines
    names: Mapping[str, str] = field(default_factory=dict)  # ref -> name for display
    destructive: bool = False  # loses data (delete, revert, force shutdown)
    disruptive: bool = False  # interrupts a running guest
    confirm_text: str | None = None  # what the user must type to confirm
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # likely a mistake: asked about even when harmless
    # run once the calls have: the connection follows what they moved (a host's
    # management interface); given the connection and the calls' results
    then: Callable[[Connection, list[Any]], None] | None = None

    @property
    def needs_confirmation(self) -> bool:
        # a transfer moves a whole VM through a file for minutes: its plan (the HTTP
        # request, the file, the xe line) is shown before it starts
        return (self.destructive or self.disruptive or bool(self.warnings)
                or any(isinstance(c, Transfer) for c in self.calls))

    def steps(self) -> list[str]:
        return [c.render(self.names) for c in self.calls]

    def undoes(self) -> list[str]:
        """What a failure part way removes, in the order it would be removed."""
        return [c.undo.what for c in reversed(self.calls) if c.undo is not None]

    def describe(self) -> str:
        lines = [self.title, "", "API calls:"]
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.steps())]
        if self.undoes():
            lines += ["", "If a step fails, what was made is removed: "
                      + "; ".join(self.undoes()) + "."]
        lines += ["", "xe equivalent:"] + [f"  {x}" for x in self.xe]
        if self.warnings:
            lines += [""] + [f"Warning: {w}" for w in self.warnings]
        if self.notes:
            lines += [""] + [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self, names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """For --json; ``names`` (xapi's exact names, where the plan holds the
        printable ones) names the refs in the calls."""
        return {
            "title": self.title,
            "action": self.action,
            "targets": list(self.targets),
            "calls": [c.render({**self.names, **(names or {})}) for c in self.calls],
            "xe": list(self.xe),
            "destructive": self.destructive,
            "disruptive": self.disruptive,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "undo_on_failure": self.undoes(),
        }


class Var(str):
    """A shell variable in an xe line: what an earlier line printed (the new VM's
    uuid, ``vm=$(xe vm-install ...)``), written ``uuid="$vm"``."""


def xe(command: str, **params: Any) -> str:
    """An ``xe`` command line with properly quoted parameters."""
    parts = ["xe", command]
    for k, v in params.items():
        if v is None or v is False:
            continue
        k = k.replace("_", "-") if k not in ("name_label",) else "name-label"
        if isinstance(v, Var):
            parts.append(f'{k}="${v}"')
        elif v is True:
            parts.append(f"--{k}" if k in ("force",) else f"{k}=true")
        else:
            # quoted for a shell: a VM may be named "x; rm -rf ~"
            parts.append(shlex.quote(f"{k}={v}"))
    return " ".join(parts)


StepProgress = Callable[[int, float], None]
TransferProgress = Callable[[int, transfer.Progress], None]


class PlanFailed(XsctlError):
    """A step of a plan failed after earlier ones had made something: ``cause`` is
    the step's error; ``removed`` what the clean-up removed, ``left`` what is still
    there (kept on request, or because removing it failed too)."""

    def __init__(self, plan: Plan, step: int, cause: XsctlError, removed: list[str],
                 left: list[str], kept: bool) -> None:
        self.plan = plan
        self.step = step
        self.cause = cause
        self.removed = removed
        self.left = left
        self.kept = kept
        self.exit_code = cause.exit_code
        super().__init__(self.text)

    @property
    def reason(self) -> str:
        return self.cause.friendly if isinstance(self.cause, XapiError) else str(self.cause)

    @property
    def outcome(self) -> str:
        """What became of what was made, as a sentence."""
        parts = []
        if self.removed:
            parts.append("Removed: " + "; ".join(self.removed) + ".")
        if self.left:
            why = "kept as asked" if self.kept else "its removal failed too"
            parts.append(f"Left behind ({why}): " + "; ".join(self.left) + ".")
        if not parts:
            parts.append("Nothing had been made.")
        return " ".join(parts)

    @property
    def text(self) -> str:
        return (f"{self.plan.title}: step {self.step + 1} "
                f"({self.plan.calls[self.step].method}) failed: {self.cause}\n{self.outcome}")

    @property
    def details(self) -> list[str]:
        inner = getattr(self.cause, "details", [str(self.cause)])
        return [*inner, self.outcome]


def run(
    conn: Connection,
    plan: Plan,
    progress: StepProgress | None = None,
    cancel: threading.Event | None = None,
    on_task: Callable[[str], None] | None = None,
    keep_on_failure: bool = False,
    rate: TransferProgress | None = None,
) -> list[Any]:
    """Run the plan's calls in order; Async ones report progress (step, fraction) and
    their task ref to ``on_task`` as soon as xapi returns it; a transfer reports its
    bytes, rate and time left to ``rate`` as well.

    When a step fails, the undos of the steps done so far run in reverse order (so a
    disk goes before the VM that holds it is destroyed), unless ``keep_on_failure``;
    :class:`PlanFailed` then says what was removed and what is left. A plan whose
    failing step had nothing before it to undo raises the step's own error."""
    results: list[Any] = []

    def fill(a: Any) -> Any:
        """An argument with the results of earlier steps in place (PBD.create takes
        a record that names the SR an earlier step made)."""
        if isinstance(a, Result):
            return results[a.index]
        if isinstance(a, dict):
            return {k: fill(v) for k, v in a.items()}
        if isinstance(a, (list, tuple)):
            return type(a)(fill(v) for v in a)
        return a

    def one(call: Step, i: int, report: Callable[[float], None] | None) -> Any:
        if isinstance(call, Console):
            raise XsctlError("a console is opened by xsctl console or the app, not run "
                             "as a call")
        if isinstance(call, Transfer):
            return _transfer(conn, call, str(fill(call.task)), i, progress, cancel, on_task,
                             rate)
        if call.otherwise is not None:
            try:
                return one(replace(call, otherwise=None), i, report)
            except XapiError as e:
                log.warning("%s failed (%s): %s instead", call.method, e.code,
                            call.otherwise.method)
                return one(call.otherwise, i, report)
        args = tuple(fill(a) for a in call.args)
        if call.use_async:
            task = conn.call("Async." + call.method, *args)
            if on_task is not None:
                on_task(str(task))
            return wait_task(conn, str(task), report, cancel)
        return conn.call(call.method, *args)

    log.info("run: %s", plan.title)
    for i, call in enumerate(plan.calls):

        def report(p: float, i: int = i) -> None:
            if progress is not None:
                progress(i, p)

        try:
            results.append(one(call, i, report))
        except XsctlError as e:
            done = [(j, c) for j, c in enumerate(plan.calls[:i]) if c.undo is not None]
            if not done:
                raise
            raise _roll_back(conn, plan, i, e, done, results, one, keep_on_failure) from e
        if not call.use_async and progress is not None:
            progress(i, 1.0)
    if plan.then is not None:
        plan.then(conn, results)
    return results


def _roll_back(conn: Connection, plan: Plan, step: int, cause: XsctlError,
               done: list[tuple[int, Call]], results: list[Any],
               one: Callable[[Step, int, Callable[[float], None] | None], Any],
               keep: bool) -> PlanFailed:
    removed: list[str] = []
    left: list[str] = []
    for j, call in reversed(done):
        undo = call.undo
        assert undo is not None
        if keep:
            left.append(undo.what)
            continue
        try:
            calls = list(undo.calls)
            if undo.expand is not None:
                calls += undo.expand(conn, results[j])
            for c in calls:
                one(c, step, None)
            removed.append(undo.what)
        except XsctlError as e:
            log.warning("undo of step %d of %s failed: %s", j + 1, plan.title, e)
            left.append(undo.what)
    log.info("%s failed at step %d; removed %s, left %s", plan.title, step + 1, removed, left)
    return PlanFailed(plan, step, cause, removed, left, keep)


def _transfer(conn: Connection, step: Transfer, task: str, i: int,
              progress: StepProgress | None, cancel: threading.Event | None,
              on_task: Callable[[str], None] | None, rate: TransferProgress | None) -> Any:
    if on_task is not None:
        on_task(task)

    def report(p: transfer.Progress) -> None:
        if progress is not None:
            progress(i, p.fraction)
        if rate is not None:
            rate(i, p)

    if step.direction == "export":
        size = transfer.export_vm(conn, step.obj, step.path, task,
                                  compression=step.compression, force=step.force,
                                  report=report, cancel=cancel)
        return {"file": step.path, "bytes": size}
    refs = transfer.import_vm(conn, step.path, step.obj, task, report=report, cancel=cancel)
    return [{"ref": r, "uuid": str(conn.call("VM.get_uuid", r)),
             "name_label": str(conn.call("VM.get_name_label", r))} for r in refs]


def outcome(plan: Plan, results: list[Any]) -> Any:
    """What a plan that ends in a transfer made, for people and --json: the file
    written ({file, bytes}) or the VMs imported ([{ref, uuid, name_label}]); None
    for other plans."""
    if plan.calls and isinstance(plan.calls[-1], Transfer) and len(results) == len(plan.calls):
        return results[-1]
    return None


def outcome_text(result: Any) -> str:
    """``to /tmp/web-01.xva (2.1 GiB)`` or ``as web-01 (3f2a…)``."""
    from xsctl.xapi.text import human_bytes, printable

    if isinstance(result, dict) and "file" in result:
        return f"to {result['file']} ({human_bytes(int(result['bytes']))})"
    if isinstance(result, list):
        return "as " + ", ".join(f"{printable(v['name_label'])} ({v['uuid']})" for v in result)
    return ""
