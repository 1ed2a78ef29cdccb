"""What each tool runs on a host, start to end: the commands in order, each one's
result, the tables made of them, and the clean-up that runs however it ended (a
perf data file, an OProfile daemon). The CLI and the Profiling view both run these;
neither builds a command line of its own."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xsctl.profiling import oprofile, perf, xenpm, xentop, xl
from xsctl.profiling.shell import Command, Result, Shell
from xsctl.profiling.tables import Parsed, failed
from xsctl.profiling.tools import parser_for

Progress = Callable[[str], None]


def _quiet(text: str) -> None:
    pass


@dataclass
class Outcome:
    """A session's end: every command with its output, the tables, and the error
    that ended it early (None: it ran through)."""

    title: str
    where: str
    results: list[Result] = field(default_factory=list)
    parsed: list[Parsed] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.cancelled

    def raw(self) -> str:
        """Every command and what it printed, as a terminal would have shown it."""
        parts = []
        for r in self.results:
            parts.append(f"$ {r.command.text}")
            if r.stdout:
                parts.append(r.stdout.rstrip("\n"))
            if r.stderr:
                parts.append(r.stderr.rstrip("\n"))
            end = r.problem()
            if end:
                parts.append(f"[{end}]")
        return "\n".join(parts) + ("\n" if parts else "")

    def as_json(self, raw: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "title": self.title, "where": self.where, "ok": self.ok, "error": self.error,
            "cancelled": self.cancelled, "notes": self.notes,
            "commands": [{"argv": list(r.command.argv), "exit": r.rc, "timed_out": r.timed_out,
                          "seconds": round(r.elapsed, 3)} for r in self.results],
            "parsed": [p.as_json() for p in self.parsed],
        }
        if raw:
            doc["raw"] = self.raw()
        return doc


class _Run:
    """Runs a session's commands, keeping each result in the outcome."""

    def __init__(self, shell: Shell, outcome: Outcome, cancel: threading.Event | None,
                 progress: Progress) -> None:
        self.shell = shell
        self.outcome = outcome
        self.cancel = cancel
        self.progress = progress

    def __call__(self, cmd: Command, what: str, *, cancel: bool = True,
                 on_line: Callable[[str], None] | None = None) -> Result:
        self.progress(f"{what}: {cmd.text}")
        r = self.shell.run(cmd, cancel=self.cancel if cancel else None, on_line=on_line)
        self.outcome.results.append(r)
        return r

    def failed(self, r: Result) -> bool:
        """Whether the session stops here (said in the outcome)."""
        if r.cancelled:
            self.outcome.cancelled = True
            return True
        if not r.ok:
            self.outcome.error = r.problem()
            return True
        return False

    @property
    def stopped(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()


# ---------------------------------------------------------------- xentop


def xentop_command(iterations: int = 2, delay: int = 1) -> Command:
    # -f: names whole (a cut name matches several VMs); -i 2: the first iteration's
    # CPU(%) is always 0.0
    return Command(("xentop", "-b", "-f", "-i", str(iterations), "-d", str(delay)),
                   timeout=iterations * delay + 30)


def xentop_stream_command(delay: int, iterations: int) -> Command:
    return Command(("xentop", "-b", "-f", "-d", str(delay), "-i", str(iterations)),
                   timeout=delay * iterations + 60)


XL_LIST = Command(("xl", "list"), timeout=30)


def xentop_snapshot(shell: Shell, vms: Mapping[int, xentop.VmOnHost],
                    names: Mapping[str, list[xentop.VmOnHost]], *, has_xl: bool = True,
                    cancel: threading.Event | None = None,
                    progress: Progress = _quiet) -> Outcome:
    out = Outcome("xentop", shell.where)
    run = _Run(shell, out, cancel, progress)
    doms: list[xl.XlDomain] | None = None
    if has_xl:
        r = run(XL_LIST, "domain IDs")
        if run.failed(r):
            return out
        doms, _, _ = xl.xl_domains(r.stdout)
    else:
        out.notes.append("no xl on the host: domains matched to VMs by name only")
    r = run(xentop_command(), "xentop")
    if run.failed(r):
        return out
    top = xentop.parse(r.stdout)
    if top.error or top.last is None:
        out.parsed.append(xentop.as_parsed(top))
        out.error = top.error
        return out
    rows = xentop.join(top.last, doms, vms, names)
    out.parsed.append(xentop.as_parsed(top, rows))
    return out


# ---------------------------------------------------------------- perf


@dataclass(frozen=True)
class PerfTarget:
    """``host`` (everything), or one domain's ``qemu`` or ``tapdisk`` processes."""

    kind: str = "host"
    domid: int | None = None
    vdis: tuple[str, ...] = ()  # the domain's disks (tapdisk)
    label: str = "the whole host"


def perf_session(shell: Shell, target: PerfTarget, seconds: int, *, call_graph: bool = False,
                 cancel: threading.Event | None = None, progress: Progress = _quiet) -> Outcome:
    out = Outcome(f"perf: {target.label}, {seconds} s", shell.where)
    run = _Run(shell, out, cancel, progress)
    pids: tuple[int, ...] = ()
    if target.kind == "qemu":
        if target.domid is None:
            out.error = f"{target.label} has no domain: is it running?"
            return out
        r = run(perf.qemu_pids(target.domid), "its qemu")
        pids = tuple(perf.parse_pids(r.stdout))
        if r.cancelled:
            out.cancelled = True
            return out
        if not pids:
            out.error = (f"no qemu process for domain {target.domid} "
                         "(a PV guest has none; is the VM running here?)")
            return out
    elif target.kind == "tapdisk":
        r = run(perf.tapdisks(), "its tapdisks")
        if run.failed(r):
            return out
        pids = tuple(perf.tapdisk_pids(r.stdout, set(target.vdis)))
        if not pids:
            out.error = f"no tapdisk serves a disk of {target.label} on this host"
            return out
    rec = perf.Recording(seconds, f"/tmp/xsctl-perf-{secrets.token_hex(8)}.data", pids,
                         call_graph)
    try:
        r = run(rec.record(), f"recording {seconds} s")
        if run.failed(r):
            return out
        r = run(rec.report(), "the report")
        if run.failed(r):
            return out
        parsed = perf.parse_report(r.stdout)
        out.parsed.append(parsed)
        if parsed.error:
            out.error = parsed.error
    finally:
        # the data file goes however the session ended (not cancellable: it is short)
        run(rec.remove(), "clean-up", cancel=False)
    return out


# ---------------------------------------------------------------- OProfile


def oprofile_session(shell: Shell, session: oprofile.Session, *,
                     cancel: threading.Event | None = None, progress: Progress = _quiet,
                     guests_ready: Callable[[str], bool] | None = None) -> Outcome:
    """``guests_ready``: asked, with what to run in the guests, between dom0's daemon
    and its start (active domains); False stops the session."""
    titles = {"status": "OProfile status", "operf": f"operf, dom0, {session.seconds} s",
              "passive": f"Xenoprof, passive domains {list(session.domains)}",
              "active": f"Xenoprof, active domains {list(session.domains)}"}
    out = Outcome(titles[session.mode], shell.where)
    run = _Run(shell, out, cancel, progress)
    if session.mode == "status":
        r = run(session.status(), "status")
        if not run.failed(r):
            out.parsed.append(oprofile.parse_status(r.stdout))
        return out
    if session.mode == "operf":
        try:
            r = run(session.operf(), f"profiling {session.seconds} s")
            said = oprofile.parse_messages("operf", r.stdout + r.stderr)
            if said.error:
                out.error = said.error
                return out
            # timeout(1) ends operf with SIGINT and exits 124: that is the plan
            if r.cancelled or (r.rc not in (0, 124) and run.failed(r)):
                out.cancelled = r.cancelled
                return out
            _reports(run, session, out)
        finally:
            run(session.remove(), "clean-up", cancel=False)
        return out
    started = False
    try:
        r = run(session.reset(), "reset")
        if run.failed(r):
            return out
        r = run(session.start_daemon(), "the daemon")
        started = True
        if run.failed(r):
            return out
        if session.mode == "active":
            steps = session.guest_steps()
            out.notes.append(steps)
            if guests_ready is None or not guests_ready(steps):
                out.cancelled = True
                return out
        for cmd, what in ((session.start(), "start"),
                          (session.wait(), f"profiling {session.seconds} s"),
                          (session.dump(), "dump")):
            r = run(cmd, what)
            if run.failed(r):
                return out
        r = run(session.shutdown(), "shutdown", cancel=False)
        started = False
        if run.failed(r):
            return out
        _reports(run, session, out)
    finally:
        if started:
            run(session.shutdown(), "clean-up: the daemon", cancel=False)
        run(session.remove(), "clean-up", cancel=False)
    return out


def _reports(run: _Run, session: oprofile.Session, out: Outcome) -> None:
    for cmd in oprofile.report_commands(session):
        r = run(cmd, "the report")
        if run.failed(r):
            return
        out.parsed.append(oprofile.parse_report(r.stdout))
    if all(p.error for p in out.parsed):
        out.error = out.parsed[-1].error


# ---------------------------------------------------------------- xenpm and the rest


def xenpm_session(shell: Shell, what: Sequence[str] = ("cpufreq", "cpuidle"), *,
                  cancel: threading.Event | None = None, progress: Progress = _quiet) -> Outcome:
    out = Outcome("xenpm", shell.where)
    run = _Run(shell, out, cancel, progress)
    for w in what:
        r = run(xenpm.command(w), w)
        if r.cancelled or r.rc in (None, 126, 127) or (r.via_ssh and r.rc == 255):
            # it did not run at all: the next listing would not either
            run.failed(r)
            return out
        parsed = xenpm.parse(r.stdout + (r.stderr if not r.stdout.strip() else ""))
        if not r.ok and parsed.error:
            parsed = failed(parsed.tool, r.problem() or parsed.error)
        out.parsed.append(parsed)
    errors = [p.error for p in out.parsed if p.error]
    if errors and len(errors) == len(out.parsed):
        out.error = errors[0]
    return out


def run_command(shell: Shell, cmd: Command, *, cancel: threading.Event | None = None,
                progress: Progress = _quiet) -> Outcome:
    """A free-form command: run as typed, its output parsed when it is a known tool's."""
    out = Outcome(cmd.text, shell.where)
    run = _Run(shell, out, cancel, progress)
    r = run(cmd, "running")
    if r.cancelled:
        out.cancelled = True
    elif not r.ok:
        out.error = r.problem()
    parse = parser_for(cmd.argv)
    if parse is not None and (r.stdout.strip() or r.stderr.strip()):
        parsed = parse(r.stdout)
        if parsed.error and r.stderr.strip():
            # perf stat, for one, prints its counters on stderr
            parsed = parse(r.stdout + "\n" + r.stderr)
        out.parsed.append(parsed)
    return out
