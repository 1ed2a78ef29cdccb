"""``xenpm get-cpufreq-states`` and ``get-cpuidle-states``: each CPU's P-states
(frequency, transitions, time in each) and C-states (idle).

From xenpm.c: per CPU a block of ``key : value`` lines (``cpu id``, ``total
P-states``, ``current frequency``, ...), then two lines per state:
``P0         [1700 MHz]: transition [  133]`` and ``residency  [  5350 ms]``. The
current P-state is marked ``*P2`` (which shifts that line by one). C-states read
``C1                   : transition [...]``; ``pc``/``cc`` package and core residency
lines appear only when not zero. Older xenpm zero-padded the numbers in the brackets.
CPUs that are offline or absent are not listed (even IDs only, with SMT off).
"""

from __future__ import annotations

import re

from xsctl.profiling.shell import Command
from xsctl.profiling.tables import (
    Column,
    Parsed,
    Problems,
    failed,
    lines_of,
    table,
    to_int,
)

WHAT = {"cpufreq": "get-cpufreq-states", "cpuidle": "get-cpuidle-states"}

_KV = re.compile(r"([A-Za-z][A-Za-z ()-]*?)\s*:\s*(.*)")
_STATE = re.compile(r"(\*?)([PC]\d+)\s*(?:\[\s*(\d+)\s*MHz\s*\])?\s*:\s*transition\s*\[\s*(\d+)\s*\]")
_RESIDENCY = re.compile(r"residency\s*\[\s*(\d+)\s*ms\s*\]")
_PKG = re.compile(r"((?:pc|cc)\d+)\s*:\s*\[\s*(\d+)\s*ms\s*\]")


def command(what: str) -> Command:
    return Command(("xenpm", WHAT[what]), timeout=60)


def parse(text: str) -> Parsed:
    """Either listing (which one is told by its state lines)."""
    problems = Problems()
    facts: list[tuple[str, str]] = []
    rows: list[list[object]] = []
    extra: list[tuple[object, ...]] = []  # package/core residencies
    cpu: int | None = None
    cpu_facts: dict[str, str] = {}
    kinds: set[str] = set()
    errors: list[str] = []
    for n, line in enumerate(lines_of(text), 1):
        s = line.strip()
        if not s or (s.startswith(("#", "$", "[")) and "xenpm" in s):
            continue
        m = _STATE.match(s)
        if m:
            if cpu is None:
                problems.add(n, line, "a state before any 'cpu id'")
                continue
            current, state, mhz, trans = m.groups()
            kinds.add(state[0])
            rows.append([cpu, state, to_int(mhz) if mhz else None, bool(current),
                         int(trans), None, cpu_facts.get("current frequency", "")])
            continue
        m = _RESIDENCY.match(s)
        if m:
            if rows and rows[-1][5] is None:
                rows[-1][5] = int(m.group(1))
            else:
                problems.add(n, line, "a residency with no state above it")
            continue
        m = _PKG.match(s)
        if m:
            extra.append((cpu, m.group(1), int(m.group(2))))
            continue
        m = re.match(r"Max possible C-state:\s*(\S+)", s)
        if m:
            facts.append(("max_cstate", m.group(1)))
            continue
        if s.startswith("All C-states allowed"):
            facts.append(("max_cstate", "unlimited"))
            continue
        m = _KV.fullmatch(s)
        if m:
            key, value = m.group(1).strip(), m.group(2).strip()
            if key == "cpu id":
                cpu = to_int(value)
                cpu_facts = {}
                if cpu is None:
                    problems.add(n, line, "a cpu id that is not a number")
            else:
                cpu_facts[key] = value
                if key == "Max possible substate":
                    facts.append(("max_csubstate", value))
            continue
        low = s.lower()
        if any(w in low for w in ("error", "failed", "not supported", "disabled", "permission",
                                  "no valid information", "usage")):
            errors.append(s)
            continue
        problems.add(n, line)
    if not rows:
        why = errors[0] if errors else "no P-state or C-state found in the output of xenpm"
        return failed("xenpm", why, problems.done(), facts)
    cols: tuple[Column, ...]
    data: list[tuple[object, ...]]
    if kinds == {"P"}:
        cols = (Column("cpu", "CPU", True), Column("state", "P-state"),
                Column("mhz", "MHz", True, "MHz"), Column("current", "Current"),
                Column("transitions", "Transitions", True), Column("residency", "Residency", True, "ms"))
        data = [(r[0], r[1], r[2], "*" if r[3] else "", r[4], r[5]) for r in rows]
        tool, title = "xenpm get-cpufreq-states", "P-states (frequency)"
    else:
        cols = (Column("cpu", "CPU", True), Column("state", "C-state"),
                Column("transitions", "Transitions", True), Column("residency", "Residency", True, "ms"))
        data = [(r[0], r[1], r[4], r[5]) for r in rows]
        tool, title = "xenpm get-cpuidle-states", "C-states (idle)"
    cpus = sorted({r[0] for r in rows if isinstance(r[0], int)})
    facts.append(("cpus", str(len(cpus))))
    tables = [table(title, cols, data)]
    if extra:
        tables.append(table("Package and core residency",
                            (Column("cpu", "CPU", True), Column("counter", "Counter"),
                             Column("residency", "Residency", True, "ms")), extra))
    return Parsed(tool, tuple(tables), tuple(facts), problems.done())
