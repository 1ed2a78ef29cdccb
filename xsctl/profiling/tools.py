"""The tools the Profiling view and ``xsctl profiling`` offer, what each needs on the
host, and the probe that finds out (``command -v``, one command for all)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from xsctl.profiling import oprofile, perf, xenpm, xentop, xl
from xsctl.profiling.shell import Command, Shell
from xsctl.profiling.tables import Parsed
from xsctl.xapi.errors import UsageError, XsctlError


class ProfilingError(XsctlError):
    """A host command could not run, or failed in a way that leaves nothing to show."""

    exit_code = 1


@dataclass(frozen=True)
class Tool:
    id: str
    label: str
    needs: tuple[str, ...]  # every one of these programs
    any_of: tuple[str, ...] = ()  # and one of these
    helps: tuple[str, ...] = ()  # used when there (xl: domain IDs for xentop)
    help: str = ""


TOOLS: tuple[Tool, ...] = (
    Tool("xentop", "xentop", ("xentop",), helps=("xl",),
         help="every domain's CPU, memory, network and disk, live; its VM a key away"),
    Tool("perf", "perf", ("perf",), helps=("pgrep", "tap-ctl"),
         help="record the host, or one VM's qemu or tapdisks, then its symbols"),
    Tool("oprofile", "OProfile", ("opreport",), any_of=("opcontrol", "operf"),
         help="opcontrol or operf sessions, Xenoprof's passive and active domains"),
    Tool("xenpm", "xenpm", ("xenpm",), help="CPU frequency (P) and idle (C) states"),
)
BY_ID = {t.id: t for t in TOOLS}
PROGRAMS = tuple(sorted({p for t in TOOLS for p in (*t.needs, *t.any_of, *t.helps)}))

# for each program, the one shell line that prints its path when the host has it
_PROBE = 'for t do command -v "$t" || :; done'


def probe_command(programs: tuple[str, ...] = PROGRAMS) -> Command:
    return Command(("sh", "-c", _PROBE, "sh", *programs), timeout=30)


@dataclass(frozen=True)
class Probe:
    """What a host has."""

    found: frozenset[str]

    def has(self, tool: str) -> bool:
        t = BY_ID[tool]
        return all(p in self.found for p in t.needs) and (
            not t.any_of or any(p in self.found for p in t.any_of))

    @property
    def offered(self) -> tuple[Tool, ...]:
        return tuple(t for t in TOOLS if self.has(t.id))

    @property
    def missing(self) -> tuple[Tool, ...]:
        return tuple(t for t in TOOLS if not self.has(t.id))


def parse_probe(text: str, programs: tuple[str, ...] = PROGRAMS) -> Probe:
    found = set()
    for line in text.splitlines():
        name = os.path.basename(line.strip())
        if name in programs:
            found.add(name)
    return Probe(frozenset(found))


def probe(shell: Shell) -> Probe:
    r = shell.run(probe_command())
    if not r.ok:
        raise ProfilingError(r.problem() or "the probe failed")
    return parse_probe(r.stdout)


# ---------------------------------------------------------------- free-form commands

MAX_FREEFORM_TIMEOUT = 3600.0


def freeform(text: str, timeout: float = 60.0) -> Command:
    """A command the user typed: split into words as a POSIX shell would split them,
    then run as those words. Operators (``|``, ``;``, ``>``) stay words: a pipeline is
    ``sh -c '...'``, typed on purpose."""
    try:
        words = shlex.split(text, comments=False, posix=True)
    except ValueError as e:
        raise UsageError(f"cannot split the command into words: {e}") from None
    if not words:
        raise UsageError("no command given")
    if not 0 < timeout <= MAX_FREEFORM_TIMEOUT:
        raise UsageError(f"a timeout of 1 to {MAX_FREEFORM_TIMEOUT:g} seconds")
    return Command(tuple(words), timeout=timeout)


def parser_for(argv: tuple[str, ...]) -> Callable[[str], Parsed] | None:
    """The parser of a known tool's output, picked by the command (None: raw only)."""
    name = os.path.basename(argv[0]) if argv else ""
    sub = next((a for a in argv[1:] if not a.startswith("-")), "")
    if name == "xentop":
        return lambda text: xentop.as_parsed(xentop.parse(text))
    if name in ("xl", "xm") and sub == "list" and not {"-l", "--long"} & set(argv):
        return xl.parse_xl_list
    if name in ("xl", "xm") and sub == "info":
        return xl.parse_xl_info
    if name == "xenpm" and sub in xenpm.WHAT.values():
        return xenpm.parse
    if name == "perf" and sub in ("report", "top"):
        return perf.parse_report
    if name == "perf" and sub == "stat":
        return perf.parse_stat
    if name == "opreport":
        return oprofile.parse_report
    if name == "opcontrol" and "--status" in argv:
        return oprofile.parse_status
    if name in ("opcontrol", "operf"):
        return lambda text: oprofile.parse_messages(name, text)
    return None
