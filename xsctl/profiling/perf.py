"""perf: record for N seconds (the whole host, or one domain's qemu or tapdisk
processes), then the report as a table of symbols; ``perf stat`` and ``perf top
--stdio`` read too.

``perf report --stdio`` prints ``#`` lines (the event, its sample count), a header of
column names separated by two spaces, a line of dots as wide as each column, then
a row per entry; with call graphs, tree lines (``|``, ``---``, ``--9.80%--``) under a
row. Its TUI, copied from a screen, has no ``#`` and a ``+`` before each row. The
Symbol column starts with ``[.]`` (user), ``[k]`` (kernel) or ``[g]`` (guest), and a
symbol may hold spaces (C++). In a Xen dom0 there is no PMU: the event is
``cpu-clock``, and idle shows as ``xen_hypercall_sched_op``.
"""

from __future__ import annotations

import re
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

MAX_SECONDS = 3600
# the columns perf prints as numbers (percentages, or counts for Samples and Period)
_NUMERIC = {"Overhead", "Children", "Self", "Samples", "Period", "sys", "usr", "guest sys",
            "guest usr", "Overhead (sys)", "Overhead (usr)"}
_COUNTS = {"Samples", "Period"}
_SECTION = re.compile(r"#?\s*Samples:\s*(\S+)\s+of event\s+'([^']*)'(?:,\s*Event count \(approx\.\):\s*(\d+))?")
_ROW = re.compile(r"\s*[+-]?\s*\d+(?:\.\d+)?%")
_SYMBOL = re.compile(r"\s(\[[.kKgGuHhs]\])\s")
_TOP = re.compile(r"\s*PerfTop:")


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Recording:
    """What to record: the whole host, or the processes ``pids`` (a domain's qemu
    or tapdisks), for ``seconds``, into ``data`` (a file in dom0's /tmp)."""

    seconds: int
    data: str
    pids: tuple[int, ...] = ()
    call_graph: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.seconds <= MAX_SECONDS:
            raise UsageError(f"perf records for 1 to {MAX_SECONDS} seconds, not {self.seconds}")
        if not re.fullmatch(r"/tmp/xsctl-perf-[0-9a-f]{8,32}\.data", self.data):
            raise UsageError(f"not a perf data file of ours: {self.data!r}")

    def record(self) -> Command:
        who = ["-p", ",".join(str(p) for p in self.pids)] if self.pids else ["-a"]
        graph = ["-g"] if self.call_graph else []
        return Command(("perf", "record", *who, *graph, "-o", self.data, "--", "sleep",
                        str(self.seconds)), timeout=self.seconds + 60)

    def report(self) -> Command:
        # --stdio: no TUI and no pager; -n: the Samples column
        return Command(("perf", "report", "--stdio", "-n", "-i", self.data),
                       timeout=120)

    def remove(self) -> Command:
        return Command(("rm", "-f", "--", self.data, self.data + ".old"), timeout=30)


def qemu_pids(domid: int) -> Command:
    """The domain's device model: XenServer starts it as ``qemu-dm-<domid>``."""
    return Command(("pgrep", "-f", f"^qemu-dm-{int(domid)}( |$)"), timeout=30)


def tapdisks() -> Command:
    return Command(("tap-ctl", "list"), timeout=30)


def parse_pids(text: str) -> list[int]:
    return [int(w) for w in text.split() if w.isdigit() and 0 < int(w) < 1 << 22]


def tapdisk_pids(text: str, vdi_uuids: set[str]) -> list[int]:
    """The tapdisks serving ``vdi_uuids`` in ``tap-ctl list`` output
    (``pid=N minor=M state=S args=vhd:/.../<vdi>.vhd``)."""
    pids: set[int] = set()
    for line in lines_of(text):
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        pid = to_int(fields.get("pid", ""))
        args = fields.get("args", "")
        if pid and any(u in args for u in vdi_uuids):
            pids.add(pid)
    return sorted(pids)


# ---------------------------------------------------------------- perf report


def _names(header: str) -> list[str]:
    return [n.strip() for n in re.split(r"\s{2,}", header.strip()) if n.strip()]


def _spans(dots: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\.+", dots)]


def _columns(names: list[str]) -> tuple[Column, ...]:
    cols = []
    for n in names:
        key = re.sub(r"[^a-z0-9]+", "_", n.lower()).strip("_") or "column"
        if n in _COUNTS:
            cols.append(Column(key, n, True))
        elif n in _NUMERIC:
            cols.append(Column(key, n, True, "%"))
        else:
            cols.append(Column(key, n))
    return tuple(cols)


@dataclass
class _Section:
    title: str
    names: list[str]
    spans: list[tuple[int, int]]
    rows: list[tuple[object, ...]]


def _split_row(line: str, names: list[str], spans: list[tuple[int, int]]
               ) -> tuple[object, ...] | None:
    body = line.rstrip()
    body = re.sub(r"^\s*[+-](?=\s)", " ", body)  # the TUI's expander
    nums = [n for n in names if n in _NUMERIC]
    texts = names[len(nums):]
    if names[:len(nums)] != nums:
        return None
    pos = 0
    values: list[object] = []
    for n in nums:
        m = re.compile(r"\s*(\S+)").match(body, pos)
        if m is None:
            return None
        v = to_int(m.group(1)) if n in _COUNTS else to_float(m.group(1))
        if v is None:
            return None
        values.append(v)
        pos = m.end()
    rest = body[pos:]
    if not texts:
        return tuple(values)
    if texts[-1] == "Symbol":
        m = _SYMBOL.search(" " + rest + " ")
        if m is None:
            return None
        before = rest[:m.start()].strip()
        symbol = rest[m.start():].strip()
        parts = [p for p in re.split(r"\s{2,}", before) if p] if before else []
        want = len(texts) - 1
        if len(parts) != want and spans and len(spans) == len(names):
            # two spaces inside a value: the dots say where each column is
            parts = [line[a:b + (1 if i < len(spans) - 1 else 0)].strip()
                     for i, (a, b) in enumerate(spans[len(nums):-1])]
        if len(parts) != want:
            return None
        return (*values, *parts, symbol)
    parts = [p for p in re.split(r"\s{2,}", rest.strip()) if p]
    if len(parts) < len(texts):
        return None
    head = parts[:len(texts) - 1]
    return (*values, *head, "  ".join(parts[len(texts) - 1:]))


def parse_report(text: str) -> Parsed:
    """``perf report`` (stdio or a copy of its TUI), or ``perf top --stdio``."""
    lines = lines_of(text)
    problems = Problems()
    facts: list[tuple[str, str]] = []
    sections: list[_Section] = []
    graph_lines = 0
    top = False
    names: list[str] = []
    spans: list[tuple[int, int]] = []
    pending_title = ""
    errors: list[str] = []

    def section() -> _Section:
        nonlocal pending_title
        if not sections or pending_title:
            sections.append(_Section(pending_title or "perf report", names, spans, []))
            pending_title = ""
        return sections[-1]

    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s:
            continue
        m = _SECTION.match(s)
        if m:
            pending_title = f"{m.group(2)} ({m.group(1)} samples)"
            facts.append(("event", m.group(2)))
            facts.append(("samples", m.group(1)))
            if m.group(3):
                facts.append(("event_count", m.group(3)))
            names, spans = [], []
            continue
        if _TOP.match(line):
            top = True
            pending_title = "perf top: " + s.split("[", 1)[-1].split("]", 1)[0] if "[" in s else "perf top"
            names, spans = ["Overhead", "Shared Object", "Symbol"], []
            continue
        if s.startswith("#"):
            inner = s[1:].strip()
            if inner.startswith(".") and set(inner) <= {".", " "}:
                spans = _spans(line)
                if sections and sections[-1].names == names:
                    sections[-1].spans = spans
                continue
            words = _names(inner)
            if words and words[0] in _NUMERIC:
                names, spans = words, []
                if sections and not sections[-1].rows and not pending_title:
                    sections[-1].names = names
                continue
            key, sep, value = inner.partition(":")
            if sep and key and len(key) < 40:
                facts.append((re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_"),
                              value.strip()))
            continue
        if set(s) <= {"-"}:
            continue
        words = _names(s)
        if words and words[0] in _NUMERIC and not _ROW.match(line):
            names, spans = words, []  # the TUI's header, with no '#'
            continue
        if _ROW.match(line):
            if not names:
                names = ["Overhead", "Shared Object", "Symbol"]
            sec = section()
            if not sec.names:
                sec.names = names
            row = _split_row(line, sec.names, sec.spans)
            if row is None:
                problems.add(n, line)
            else:
                sec.rows.append(row)
            continue
        if "|" in s or s.startswith("--") or s.startswith("---"):
            graph_lines += 1
            continue
        low = s.lower()
        if any(w in low for w in ("error", "failed", "no such file", "not found",
                                  "permission denied", "has no samples", "invalid")):
            errors.append(s)
            continue
        problems.add(n, line)
    tables: list[Table] = []
    kept = [sec for sec in sections if sec.rows]
    if top and kept:
        kept = kept[-1:]  # perf top: the last refresh
    for sec in kept:
        tables.append(table(sec.title, _columns(sec.names), sec.rows))
    if graph_lines:
        facts.append(("call_graph_lines", str(graph_lines)))
    if not tables:
        why = errors[0] if errors else "no sample row found in the output of perf"
        return failed("perf report", why, problems.done(), facts)
    return Parsed("perf top" if top else "perf report", tuple(tables), tuple(facts),
                  problems.done())


# ---------------------------------------------------------------- perf stat

_STAT_SHARE = re.compile(r"\((\d+(?:\.\d+)?)%\)\s*$")
_STAT_VALUE = re.compile(r"(<not supported>|<not counted>|[\d][\d,.]*)\s+(.*)")


def parse_stat(text: str) -> Parsed:
    problems = Problems()
    facts: list[tuple[str, str]] = []
    rows: list[tuple[object, ...]] = []
    for n, line in enumerate(lines_of(text), 1):
        s = line.strip()
        if not s or s in ("^C",) or s.startswith("# perf") or s.startswith("$"):
            continue
        m = re.match(r"Performance counter stats for (.*?):?$", s)
        if m:
            facts.append(("target", m.group(1).strip("'")))
            continue
        m = re.match(r"([\d.]+) seconds time elapsed", s)
        if m:
            facts.append(("elapsed_s", m.group(1)))
            continue
        m = re.match(r"([\d.]+) seconds (user|sys)", s)
        if m:
            facts.append((f"{m.group(2)}_s", m.group(1)))
            continue
        share = None
        sm = _STAT_SHARE.search(s)
        if sm:
            share = to_float(sm.group(1))
            s = s[:sm.start()].rstrip()
        body, _, note = s.partition("#")
        m = _STAT_VALUE.match(body.strip())
        if not m:
            problems.add(n, line)
            continue
        raw, rest = m.groups()
        words = rest.split()
        unit = ""
        if words and words[0] in ("msec", "ms", "ns", "us", "sec", "seconds"):
            unit = words.pop(0)
        if not words:
            problems.add(n, line)
            continue
        event = " ".join(words)
        value: object = raw if raw.startswith("<") else to_float(raw)
        rows.append((event, value, unit, note.strip(), share))
    if not rows:
        return failed("perf stat", "no counter found in the output of perf stat",
                      problems.done(), facts)
    cols = (Column("event", "Event"), Column("value", "Value", True), Column("unit", "Unit"),
            Column("note", "Note"), Column("running", "Counted", True, "%"))
    return Parsed("perf stat", (table("Counters", cols, rows),), tuple(facts), problems.done())
