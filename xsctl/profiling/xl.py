"""``xl list`` and ``xl info``: the domains' IDs (xentop prints none) and the host's
Xen facts.

``xl list`` prints ``%-40s %5d %5lu %5d     %s %8.1f`` per domain (name, ID, Mem in
MiB, VCPUs, State, Time(s)): a name longer than 40 characters pushes the rest right,
and a name may hold spaces (on XenServer and XCP-ng it is the VM's name-label), so a
row is read from the right. Its header separates its last columns with tabs.
``xl info`` is ``key : value`` lines; a value may hold colons and be empty.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xsctl.profiling.tables import (
    Column,
    Parsed,
    Problems,
    failed,
    lines_of,
    table,
    to_float,
    to_int,
)

_XL_STATE = re.compile(r"[-rbpscdS]{6}")


@dataclass(frozen=True)
class XlDomain:
    name: str
    domid: int
    mem_mib: int | None
    vcpus: int | None
    state: str
    time_s: float | None


def _is_header(line: str) -> bool:
    words = line.split()
    return len(words) >= 3 and words[0] == "Name" and words[1] == "ID"


def xl_domains(text: str) -> tuple[list[XlDomain], Problems, bool]:
    """The domains of ``xl list`` output, the lines skipped, and whether a header
    was seen."""
    out: list[XlDomain] = []
    problems = Problems()
    header = False
    for n, line in enumerate(lines_of(text), 1):
        if not line.strip():
            continue
        if _is_header(line):
            header = True
            continue
        parts = line.rstrip().rsplit(None, 5)
        if len(parts) == 6:
            name, domid, mem, vcpus, state, secs = parts
            d = to_int(domid)
            if d is not None and d >= 0 and _XL_STATE.fullmatch(state):
                out.append(XlDomain(name.strip(), d, to_int(mem), to_int(vcpus), state,
                                    to_float(secs)))
                continue
        problems.add(n, line)
    return out, problems, header


def parse_xl_list(text: str) -> Parsed:
    domains, problems, header = xl_domains(text)
    if not domains:
        return failed("xl list", "no domain found in the output of xl list"
                      + ("" if header else " (no 'Name ID Mem VCPUs State Time(s)' header)"),
                      problems.done())
    cols = (Column("name", "Name"), Column("domid", "ID", True), Column("mem", "Mem", True, "MiB"),
            Column("vcpus", "VCPUs", True), Column("state", "State"),
            Column("time", "Time", True, "s"))
    rows = [(d.name, d.domid, d.mem_mib, d.vcpus, d.state, d.time_s) for d in domains]
    return Parsed("xl list", (table("Domains", cols, rows),), problems=problems.done())


def parse_xl_info(text: str) -> Parsed:
    facts: list[tuple[str, str]] = []
    problems = Problems()
    for n, line in enumerate(lines_of(text), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            problems.add(n, line)
            continue
        facts.append((key.strip(), value.strip()))
    if not facts:
        return failed("xl info", "no 'key : value' line in the output", problems.done())
    cols = (Column("key", "Key"), Column("value", "Value"))
    return Parsed("xl info", (table("Host", cols, facts),), tuple(facts), problems.done())
