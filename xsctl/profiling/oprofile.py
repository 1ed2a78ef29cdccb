"""OProfile: ``opcontrol`` and ``operf`` sessions, and ``opreport``, with Xen's
domain modes as the Xenoprof documents describe them.

Xenoprof is OProfile adapted to Xen: the hypervisor takes the samples (it owns the
performance counters), and domains write them out.

- *Passive* domains (``--passive-domains``, with ``--passive-images``, their kernels)
  run nothing themselves: dom0 writes their samples, and can name the symbols of
  their kernels only (their user space shows as one lump per domain:
  ``domain1-apps``, ``domain1-kernel``, ...).
- *Active* domains (``--active-domains``) run OProfile themselves: dom0's daemon
  starts first (``opcontrol --start-daemon``), then each active guest starts its own
  (``opcontrol --reset; opcontrol --start``), then dom0 starts collecting. xsctl can
  do dom0's part only, and waits while the user does the guests'.
- Xen mode needs the hypervisor's symbols (``--xen=``, an uncompressed xen-syms) and
  is opcontrol's alone: ``operf`` (OProfile 0.9.8 and later) profiles dom0's own
  processes and knows nothing of Xen. Without a PMU (usual in a dom0) operf refuses
  to run, and opcontrol falls back to the timer ("Profiling through timer
  interrupt").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from xsctl.profiling.shell import Command
from xsctl.profiling.tables import (
    Column,
    Parsed,
    Problems,
    Table,
    failed,
    lines_of,
    table,
    to_float,
    to_int,
)
from xsctl.xapi.errors import UsageError

MODES = ("status", "operf", "passive", "active")
MAX_SECONDS = 3600
_PATH = re.compile(r"/[A-Za-z0-9._+/-]{1,255}")


def _path(what: str, p: str) -> str:
    if not _PATH.fullmatch(p) or "/../" in p or p.endswith("/.."):
        raise UsageError(f"{what}: an absolute path in dom0 is needed, not {p!r}")
    return p


@dataclass(frozen=True)
class Session:
    """An OProfile session in dom0.

    ``mode``: ``status`` (opcontrol --status), ``operf`` (dom0 alone, system-wide),
    ``passive`` or ``active`` (Xenoprof, through opcontrol, with ``domains``)."""

    mode: str
    seconds: int = 10
    domains: tuple[int, ...] = ()
    xen: str = ""  # the hypervisor's symbols (xen-syms)
    vmlinux: str = ""  # dom0's kernel symbols; none: --no-vmlinux
    images: tuple[str, ...] = ()  # passive: each domain's kernel, in order
    session_dir: str = "/tmp/xsctl-oprofile"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"OProfile mode {self.mode!r}: one of {', '.join(MODES)}")
        if not 1 <= self.seconds <= MAX_SECONDS:
            raise UsageError(f"profile for 1 to {MAX_SECONDS} seconds, not {self.seconds}")
        if not re.fullmatch(r"/tmp/xsctl-oprofile(-[0-9a-f]{8,32})?", self.session_dir):
            raise UsageError(f"not a session folder of ours: {self.session_dir!r}")
        if self.mode in ("passive", "active"):
            if not self.domains:
                raise UsageError(f"{self.mode} profiling needs the IDs of the domains")
            if 0 in self.domains or any(d < 0 for d in self.domains):
                raise UsageError("domain 0 is always profiled: name the guests' IDs")
            if not self.xen:
                raise UsageError("Xen profiling needs the hypervisor's symbols: --xen "
                                 "/boot/xen-syms-VERSION (uncompressed)")
            _path("--xen", self.xen)
            if self.vmlinux:
                _path("--vmlinux", self.vmlinux)
        if self.mode == "passive":
            if len(self.images) != len(self.domains):
                raise UsageError("passive profiling needs one kernel image per domain, in "
                                 f"the same order ({len(self.domains)} domains, "
                                 f"{len(self.images)} images)")
            for img in self.images:
                _path("--passive-images", img)
        elif self.images:
            raise UsageError("kernel images are for passive domains only")

    # ------------------------------------------------------------ the commands

    def status(self) -> Command:
        return Command(("opcontrol", "--status"), timeout=30)

    def _xen(self) -> list[str]:
        doms = ",".join(str(d) for d in self.domains)
        opts = [f"--xen={self.xen}",
                f"--vmlinux={self.vmlinux}" if self.vmlinux else "--no-vmlinux"]
        if self.mode == "passive":
            opts += [f"--passive-domains={doms}", f"--passive-images={','.join(self.images)}"]
        else:
            opts.append(f"--active-domains={doms}")
        return opts

    def start_daemon(self) -> Command:
        return Command(("opcontrol", "--start-daemon", *self._xen(),
                        f"--session-dir={self.session_dir}"), timeout=60)

    def reset(self) -> Command:
        return Command(("opcontrol", "--reset", f"--session-dir={self.session_dir}"),
                       timeout=60)

    def start(self) -> Command:
        return Command(("opcontrol", "--start"), timeout=60)

    def wait(self) -> Command:
        return Command(("sleep", str(self.seconds)), timeout=self.seconds + 30)

    def dump(self) -> Command:
        return Command(("opcontrol", "--dump"), timeout=120)

    def shutdown(self) -> Command:
        return Command(("opcontrol", "--shutdown"), timeout=120)

    def operf(self) -> Command:
        # operf -a runs until SIGINT, on which it writes its samples
        return Command(("timeout", "-s", "INT", str(self.seconds), "operf", "--system-wide",
                        f"--session-dir={self.session_dir}"), timeout=self.seconds + 120)

    def report(self, symbols: bool) -> Command:
        return Command(("opreport", *(["-l"] if symbols else []),
                        f"--session-dir={self.session_dir}"), timeout=300)

    def remove(self) -> Command:
        return Command(("rm", "-rf", "--", self.session_dir), timeout=60)

    def guest_steps(self) -> str:
        """What the user runs in each active guest, between dom0's two starts."""
        doms = ", ".join(str(d) for d in self.domains)
        return (f"In each active domain ({doms}), as root, start OProfile now: "
                "opcontrol --reset; opcontrol --start  (and opcontrol --shutdown there "
                "once dom0's session ended)")


# ---------------------------------------------------------------- opcontrol --status


def parse_status(text: str) -> Parsed:
    facts: list[tuple[str, str]] = []
    problems = Problems()
    errors: list[str] = []
    for n, line in enumerate(lines_of(text), 1):
        s = line.strip()
        if not s or s.startswith("$ "):
            continue
        m = re.match(r"Daemon (not running|running|paused)(?::\s*pid\s*(\d+))?", s)
        if m:
            facts.append(("daemon", m.group(1)))
            if m.group(2):
                facts.append(("daemon_pid", m.group(2)))
            continue
        key, sep, value = s.partition(":")
        if sep and key and len(key) <= 40 and not key.lower().startswith(("error", "warning")):
            facts.append((key.strip(), value.strip()))
            continue
        if _error_line(s):
            errors.append(s)
        else:
            problems.add(n, line)
    if not facts:
        return failed("opcontrol --status", errors[0] if errors else
                      "no 'Daemon ...' or 'key: value' line in the output of opcontrol",
                      problems.done())
    cols = (Column("key", "Setting"), Column("value", "Value"))
    return Parsed("opcontrol --status", (table("OProfile", cols, facts),), tuple(facts),
                  problems.done())


def _error_line(s: str) -> bool:
    low = s.lower()
    return any(w in low for w in (
        "error", "not supported", "does not support", "does not seem to be valid",
        "no such file", "not found", "permission denied", "must be root", "cannot",
        "could not", "failed", "please use", "make sure"))


def parse_messages(tool: str, text: str) -> Parsed:
    """What opcontrol or operf said (they print no table): the lines, and the first
    error among them as the error."""
    lines = [ln.strip() for ln in lines_of(text) if ln.strip() and not ln.startswith("$ ")]
    errors = [ln for ln in lines if _error_line(ln)]
    facts = tuple(("said", ln) for ln in lines)
    if errors:
        hint = ""
        if any("does not support your processor" in e for e in errors):
            hint = (" (no usable PMU here, usual in a Xen dom0: opcontrol's timer mode "
                    "and Xenoprof still work)")
        return failed(tool, errors[0] + hint, (), facts)
    return Parsed(tool, (), facts)


# ---------------------------------------------------------------- opreport

_COUNTED = re.compile(r"Counted (\S+) events \((.*?)\)")
_HEAD_NAMES = re.compile(r"cum\. samples|cum\. %|samples|%|vma|image name|app name|"
                         r"symbol name|linenr info")


def _join_wrapped(lines: list[str]) -> list[str]:
    """``Counted ... count N`` may wrap (a mail, a book): join it back."""
    out: list[str] = []
    for line in lines:
        if (out and out[-1].startswith("Counted ") and not re.search(r"count \d+\s*$", out[-1])
                and line.strip() and not re.match(r"\s*(\d|CPU|samples|Counted)", line)):
            out[-1] = out[-1].rstrip() + " " + line.strip()
        else:
            out.append(line)
    return out


def parse_report(text: str) -> Parsed:
    """``opreport`` (images, with ``--separate`` sub-tables under each) and
    ``opreport -l`` (symbols), one or more events."""
    lines = _join_wrapped(lines_of(text))
    problems = Problems()
    facts: list[tuple[str, str]] = []
    events: list[str] = []
    errors: list[str] = []
    pairs = 0  # sample/% column pairs (one per event)
    sym_head: list[str] | None = None  # the text columns of a symbol report
    vma = False
    summary: list[tuple[object, ...]] = []  # (image, within, values...)
    symbols: list[tuple[object, ...]] = []
    parent: str | None = None
    nested = False
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s or s.startswith(("# ", "$ ")) or set(s) <= {"-"}:
            continue
        m = re.match(r"CPU:\s*(.*)", s)
        if m:
            facts.append(("cpu", m.group(1)))
            continue
        m = _COUNTED.match(s)
        if m:
            events.append(m.group(1))
            facts.append(("event", s))
            continue
        if s.startswith("Profiling through timer interrupt"):
            events = events or ["timer"]
            facts.append(("mode", "timer interrupt (no performance counters)"))
            continue
        m = re.match(r"Using (.*) for samples directory", s)
        if m:
            facts.append(("samples_dir", m.group(1)))
            continue
        if s.startswith(("warning:", "Processes with a thread ID", "Threads ")):
            facts.append(("note", s))
            continue
        if s.startswith("samples|") or s.startswith("samples |"):
            continue
        if s.endswith("|") and not re.match(r"\d", s):
            # an event heading over a (sub-)table: indented, it is nested
            pairs = max(pairs, s.count("|"))
            nested = line[:len(line) - len(line.lstrip())] != ""
            if not events:
                events = [e.rstrip(".") for e in s.split("|") if e]
            continue
        if s.startswith(("samples", "vma")) and ("symbol name" in s or "image name" in s
                                                  or "app name" in s):
            words = _HEAD_NAMES.findall(s)
            pairs = max(1, words.count("samples"))
            vma = "vma" in words
            sym_head = [w for w in words if " " in w and not w.startswith("cum")]
            continue
        nums = s.split()
        want = 2 * (pairs or 1) + (1 if vma and sym_head else 0)
        if len(nums) > want and all(to_float(x) is not None or (vma and i == 0)
                                    for i, x in enumerate(nums[:want])):
            values = [to_int(x) if i % 2 == 0 else to_float(x)
                      for i, x in enumerate(nums[1 if (vma and sym_head) else 0:want])]
            rest = s.split(None, want)[want]
            if sym_head:
                texts = sym_head
                parts = rest.split(None, len(texts) - 1)
                if len(parts) < len(texts):
                    problems.add(n, line, "columns missing")
                    continue
                symbols.append((*values, *parts))
            else:
                indent = len(line) - len(line.lstrip())
                if nested and indent > 4 and parent is not None:
                    summary.append((rest, parent, *values))
                else:
                    parent = rest
                    nested = False
                    summary.append((rest, None, *values))
            continue
        if _error_line(s):
            errors.append(s)
            continue
        problems.add(n, line)
    width = pairs or 1
    threads = [f"tid {m.group(1)}" for _, v in facts
               if (m := re.match(r"Processes with a thread ID of (\d+)", v))]
    if len(events) != width and len(threads) == width:
        # --separate=thread: a pair of columns per thread, all of the one event
        names = [f"{events[0]} {t}" if events else t for t in threads]
    else:
        names = (events + [f"column {i + 1}" for i in range(len(events), width)])[:width]
    value_cols: list[Column] = []
    for i, ev in enumerate(names):
        suffix = "" if width == 1 else f" {ev}"
        key = "" if width == 1 else f"_{i + 1}"
        value_cols += [Column(f"samples{key}", "Samples" + suffix, True),
                       Column(f"percent{key}", "%" + suffix, True, "%")]
    tables: list[Table] = []
    if symbols and sym_head:
        text_cols = [Column(h.replace(" ", "_"), h.capitalize()) for h in sym_head]
        tables.append(table("Symbols", [*value_cols, *text_cols], symbols))
    if summary:
        cols = [Column("image", "Image"), Column("within", "Within"), *value_cols]
        tables.append(table("Images", cols, summary))
    tool = "opreport -l" if symbols else "opreport"
    if not tables:
        why = errors[0] if errors else "no sample row found in the output of opreport"
        return failed(tool, why, problems.done(), facts)
    return Parsed(tool, tuple(tables), tuple(facts), problems.done())


def check_domains(text: str) -> tuple[int, ...]:
    """``1,2 3``: domain IDs, each once."""
    out: list[int] = []
    for w in re.split(r"[\s,]+", text.strip()):
        if not w:
            continue
        if not w.isdigit() or len(w) > 6:
            raise UsageError(f"not a domain ID: {w!r}")
        if int(w) not in out:
            out.append(int(w))
    return tuple(out)


def split_list(text: str) -> tuple[str, ...]:
    return tuple(w for w in re.split(r"[\s,]+", text.strip()) if w)


def report_commands(session: Session) -> Sequence[Command]:
    return (session.report(False), session.report(True))
