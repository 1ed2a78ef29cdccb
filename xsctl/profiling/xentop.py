"""``xentop -b``: its domains, and which VM each one is.

The format, from xentop.c: one header line, then a row per domain, fields separated
by one space and right-aligned in their width. What moves:

- NAME is ``%10.10s``, cut to ten characters, unless ``-f`` (then as wide as the
  longest name). On XenServer and XCP-ng it is the VM's name-label, so it may hold
  spaces and anything else a name-label holds. A row is therefore read from the
  right, anchored on STATE (six flags from ``dsbcpr`` or ``-``).
- MAXMEM(k) is ``no limit`` (two words) and MAXMEM(%) ``n/a`` when unlimited (dom0).
- Missing VBD statistics are ``-``.
- 17 columns before Xen 4.2 era (no VBD_RSECT and VBD_WSECT), 19 since.
- Widths of the counters grow with their values: never slice by position.
- ``-r`` repeats the header before each domain; ``-v``, ``-n`` and ``-x`` add
  sub-lines under a domain (VCPUs, NetN, VBD).
- Batch mode has no summary lines (an interactive screen copy has three) and no
  separator between iterations; the first iteration's CPU(%) is 0.0, as there is no
  previous sample.

xentop prints no domain ID. ``xl list`` does (xl.py): the two are joined by name,
narrowed by vCPUs, memory and CPU time where names repeat (two VMs may share a
name-label, and a cut name may match several), and the ID leads to the VM through
xapi's VM.domid on that host.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from xsctl.profiling.tables import (
    Cell,
    Column,
    Parsed,
    Problems,
    failed,
    lines_of,
    table,
    to_float,
    to_int,
)
from xsctl.profiling.xl import XlDomain

STATE = re.compile(r"[-d][-s][-b][-c][-p][-r]")
COLUMNS_19 = ("NAME", "STATE", "CPU(sec)", "CPU(%)", "MEM(k)", "MEM(%)", "MAXMEM(k)",
              "MAXMEM(%)", "VCPUS", "NETS", "NETTX(k)", "NETRX(k)", "VBDS", "VBD_OO",
              "VBD_RD", "VBD_WR", "VBD_RSECT", "VBD_WSECT", "SSID")
COLUMNS_17 = tuple(c for c in COLUMNS_19 if c not in ("VBD_RSECT", "VBD_WSECT"))
SUB_LINE = re.compile(r"\s*(VCPUs\(sec\):|Net\d+ RX:|VBD \w+ |\d+:\s+\d+s)")


@dataclass(frozen=True)
class Domain:
    name: str
    state: str
    cpu_sec: int | None = None
    cpu_pct: float | None = None
    mem_k: int | None = None
    mem_pct: float | None = None
    maxmem_k: int | None = None  # None: no limit (or not read)
    maxmem_pct: float | None = None
    vcpus: int | None = None
    nets: int | None = None
    nettx_k: int | None = None
    netrx_k: int | None = None
    vbds: int | None = None
    vbd_oo: int | None = None
    vbd_rd: int | None = None
    vbd_wr: int | None = None
    vbd_rsect: int | None = None
    vbd_wsect: int | None = None
    ssid: int | None = None
    no_limit: bool = False
    sub_lines: tuple[str, ...] = ()

    @property
    def state_word(self) -> str:
        """The state as a word (the first flag set, in xentop's order)."""
        words = ("dying", "shutdown", "blocked", "crashed", "paused", "running")
        return next((w for w, c in zip(words, self.state, strict=False) if c != "-"), "-")


_FIELDS = {
    "CPU(sec)": ("cpu_sec", to_int), "CPU(%)": ("cpu_pct", to_float),
    "MEM(k)": ("mem_k", to_int), "MEM(%)": ("mem_pct", to_float),
    "MAXMEM(k)": ("maxmem_k", to_int), "MAXMEM(%)": ("maxmem_pct", to_float),
    "VCPUS": ("vcpus", to_int), "NETS": ("nets", to_int), "NETTX(k)": ("nettx_k", to_int),
    "NETRX(k)": ("netrx_k", to_int), "VBDS": ("vbds", to_int), "VBD_OO": ("vbd_oo", to_int),
    "VBD_RD": ("vbd_rd", to_int), "VBD_WR": ("vbd_wr", to_int),
    "VBD_RSECT": ("vbd_rsect", to_int), "VBD_WSECT": ("vbd_wsect", to_int),
    "SSID": ("ssid", to_int),
}


@dataclass(frozen=True)
class Block:
    """One iteration: the domains as xentop listed them."""

    columns: tuple[str, ...]
    domains: tuple[Domain, ...]


@dataclass(frozen=True)
class Xentop:
    blocks: tuple[Block, ...]
    facts: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()
    error: str | None = None

    @property
    def last(self) -> Block | None:
        return self.blocks[-1] if self.blocks else None


def _is_header(words: Sequence[str]) -> bool:
    return len(words) >= 4 and words[0] == "NAME" and words[1] == "STATE"


def is_header(line: str) -> bool:
    """Whether ``line`` is xentop's header (each iteration starts with one)."""
    return _is_header(line.split())


def _row(line: str, columns: Sequence[str]) -> tuple[Domain | None, str]:
    """A domain row read from the right, or (None, why not)."""
    toks = [(m.start(), m.group()) for m in re.finditer(r"\S+", line)]
    after = list(columns[2:])
    # exact: every column there, "no limit" counting as one
    i = len(toks) - 1
    values: dict[str, str] = {}
    for col in reversed(after):
        if i < 0:
            break
        if col == "MAXMEM(k)" and toks[i][1] == "limit" and i > 0 and toks[i - 1][1] == "no":
            values[col] = "no limit"
            i -= 2
        else:
            values[col] = toks[i][1]
            i -= 1
    missing = ""
    if i < 0 or len(values) < len(after) or not STATE.fullmatch(toks[i][1]):
        # columns missing (a cut line, an older layout): anchor on the rightmost
        # state-like token and read what follows it from the left
        k = next((j for j in range(len(toks) - 1, -1, -1) if STATE.fullmatch(toks[j][1])
                  and j + 1 <= len(toks)), None)
        if k is None:
            return None, "no STATE column (six of -dsbcpr)"
        rest = [t for _, t in toks[k + 1:]]
        joined: list[str] = []
        for t in rest:
            if t == "limit" and joined and joined[-1] == "no":
                joined[-1] = "no limit"
            else:
                joined.append(t)
        if len(joined) > len(after):
            return None, f"{len(joined)} columns after STATE, the header has {len(after)}"
        values = dict(zip(after, joined, strict=False))
        i = k
        missing = f"{len(after) - len(joined)} of {len(after)} columns missing"
    state_at, state = toks[i]
    name = line[:state_at].strip()
    kw: dict[str, object] = {}
    for col, text in values.items():
        spec = _FIELDS.get(col)
        if spec is None:
            continue
        attr, conv = spec
        if col == "MAXMEM(k)" and text == "no limit":
            kw["no_limit"] = True
            continue
        kw[attr] = conv(text)
    return Domain(name, state, **kw), missing  # type: ignore[arg-type]


def _again(old: Domain, new: Domain) -> bool:
    """``new`` is ``old`` in a later iteration (not another domain of the same name:
    a cut name, or two VMs that share one)."""
    return (old.name == new.name and old.vcpus == new.vcpus and old.no_limit == new.no_limit
            and old.maxmem_k == new.maxmem_k and old.cpu_sec is not None
            and new.cpu_sec is not None and 0 <= new.cpu_sec - old.cpu_sec <= 3600)


def _layout(line: str) -> tuple[str, ...] | None:
    """For rows without a header (a quoted fragment): the layout whose column count
    the row has exactly."""
    for cols in (COLUMNS_19, COLUMNS_17):
        dom, missing = _row(line, cols)
        if dom is not None and not missing:
            return cols
    return None


_SUMMARY = (
    (re.compile(r"xentop - (\S+)\s+Xen (\S+)"), ("time", "xen_version")),
    (re.compile(r"(\d+) domains?: (.*)"), ("domains", "domain_states")),
    (re.compile(r"Mem: (\d+)k total, (\d+)k used, (\d+)k free\s+CPUs: (\d+) @ (\d+)MHz"),
     ("mem_total_k", "mem_used_k", "mem_free_k", "cpus", "cpu_mhz")),
)


def parse(text: str) -> Xentop:
    """Every iteration in ``text`` (``xentop -b [-i N] [-r] [-v|-n|-x] [-f]``, or a
    screen copy)."""
    lines = lines_of(text)
    problems = Problems()
    facts: list[tuple[str, str]] = []
    # -r: a header before every domain. Then the iterations are told apart by the
    # name order going back (xentop sorts by name), not by the headers.
    heads = [n for n, ln in enumerate(lines) if _is_header(ln.split())]
    gaps = [sum(1 for ln in lines[a + 1:b] if ln.strip() and not SUB_LINE.match(ln)
                and not _is_header(ln.split()))
            for a, b in zip(heads, [*heads[1:], len(lines)], strict=False)]
    # every header over one row: -r, or iterations of a single domain (the same
    # domain again, its CPU time not gone back, starts the next iteration)
    repeat = len(heads) > 1 and max(gaps, default=0) <= 1
    blocks: list[Block] = []
    columns: tuple[str, ...] | None = None
    current: list[Domain] = []

    def close() -> None:
        if current and columns is not None:
            blocks.append(Block(columns, tuple(current)))
        current.clear()

    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        words = line.split()
        if _is_header(words):
            if not repeat:
                close()
            columns = tuple(words)
            continue
        matched = False
        for rx, keys in _SUMMARY:
            m = rx.match(line.strip())
            if m:
                facts.extend(zip(keys, m.groups(), strict=True))
                matched = True
                break
        if matched:
            continue
        if SUB_LINE.match(line):
            if current:
                last = current[-1]
                current[-1] = replace(last, sub_lines=(*last.sub_lines, line.strip()))
            else:
                problems.add(n, line, "a sub-line with no domain above it")
            continue
        cols = columns or _layout(line)
        if cols is None:
            problems.add(n, line, "no header and not a row of 17 or 19 columns")
            continue
        dom, why = _row(line, cols)
        if dom is None:
            problems.add(n, line, why)
            continue
        if why:
            problems.add(n, line, why)
        if repeat and current and (dom.name.casefold() < current[-1].name.casefold()
                                   or any(_again(old, dom) for old in current)):
            close()
        if columns is None:
            columns = cols
        current.append(dom)
    close()
    if not blocks:
        return Xentop((), tuple(facts), problems.done(),
                      "no domain row found in the output of xentop"
                      + ("" if heads else " (no NAME STATE ... header)"))
    return Xentop(tuple(blocks), tuple(facts), problems.done())


class Stream:
    """The lines of a running ``xentop -b`` (no ``-r``) cut into its iterations: a
    header after rows starts the next one, so an iteration is handed on as soon as
    the following begins, and the last one at :meth:`flush`."""

    def __init__(self, on_iteration: Callable[[str], None]) -> None:
        self.on_iteration = on_iteration
        self.lines: list[str] = []
        self.rows = False

    def feed(self, line: str) -> None:
        if is_header(line) and self.rows:
            self.flush()
        elif line.strip() and not is_header(line):
            self.rows = True
        self.lines.append(line)

    def flush(self) -> None:
        if self.rows:
            self.on_iteration("\n".join(self.lines))
        self.lines = []
        self.rows = False


# ---------------------------------------------------------------- joined to the VMs


@dataclass(frozen=True)
class VmOnHost:
    ref: str
    name: str
    control: bool = False  # the host's dom0
    uuid: str = ""


@dataclass(frozen=True)
class Row:
    """A domain with what is known of it: its ID and VM, or why not."""

    domain: Domain
    domid: int | None
    vm: VmOnHost | None
    how: str  # "domid", "name" (no xl), "ambiguous", "unknown"

    @property
    def key(self) -> str:
        """A key that stays with the domain across refreshes."""
        if self.domid is not None:
            return f"domid:{self.domid}"
        return f"name:{self.domain.name}"

    @property
    def label(self) -> str:
        return self.vm.name if self.vm is not None else self.domain.name


def _same_name(xl_name: str, top_name: str) -> bool:
    # without -f xentop cuts the name to its first ten characters
    return xl_name == top_name or (len(top_name) == 10 and xl_name.startswith(top_name))


def join(block: Block, xl: Sequence[XlDomain] | None,
         vms: Mapping[int, VmOnHost], names: Mapping[str, list[VmOnHost]] | None = None
         ) -> list[Row]:
    """Each domain of ``block`` with its ID (from ``xl list``) and VM (xapi's domid on
    the host, in ``vms``). Without ``xl`` (not installed), by name when one VM alone
    has it (``names``)."""
    rows: list[Row] = []
    if xl is None:
        for d in block.domains:
            hits = (names or {}).get(d.name, [])
            if d.name == "Domain-0" and 0 in vms:
                rows.append(Row(d, 0, vms[0], "name"))
            elif len(hits) == 1:
                rows.append(Row(d, None, hits[0], "name"))
            else:
                rows.append(Row(d, None, None, "ambiguous" if hits else "unknown"))
        return rows
    free = list(xl)
    for d in block.domains:
        cands = [x for x in free if _same_name(x.name, d.name)]
        if len(cands) > 1 and d.vcpus is not None:
            cands = [x for x in cands if x.vcpus == d.vcpus] or cands
        if len(cands) > 1 and d.mem_k is not None:
            near = [x for x in cands if x.mem_mib is not None
                    and abs(x.mem_mib - d.mem_k / 1024) <= 1]
            cands = near or cands
        if len(cands) > 1 and d.cpu_sec is not None:
            cpu = d.cpu_sec
            gaps = {id(x): abs(x.time_s - cpu) for x in cands if x.time_s is not None}
            if gaps:
                best = min(gaps.values())
                close = [x for x in cands if id(x) in gaps and gaps[id(x)] < best + 2]
                cands = close if len(close) == 1 else cands
        if len(cands) == 1:
            x = cands[0]
            free.remove(x)
            rows.append(Row(d, x.domid, vms.get(x.domid), "domid"))
        else:
            rows.append(Row(d, None, None, "ambiguous" if cands else "unknown"))
    return rows


# ---------------------------------------------------------------- as a table

TABLE_COLUMNS = (
    Column("name", "Name"), Column("state", "State"), Column("cpu_sec", "CPU(sec)", True, "s"),
    Column("cpu_pct", "CPU(%)", True, "%"), Column("mem_k", "MEM(k)", True, "KiB"),
    Column("mem_pct", "MEM(%)", True, "%"), Column("maxmem_k", "MAXMEM(k)", True, "KiB"),
    Column("maxmem_pct", "MAXMEM(%)", True, "%"), Column("vcpus", "VCPUS", True),
    Column("nets", "NETS", True), Column("nettx_k", "NETTX(k)", True, "KiB"),
    Column("netrx_k", "NETRX(k)", True, "KiB"), Column("vbds", "VBDS", True),
    Column("vbd_oo", "VBD_OO", True), Column("vbd_rd", "VBD_RD", True),
    Column("vbd_wr", "VBD_WR", True), Column("vbd_rsect", "VBD_RSECT", True),
    Column("vbd_wsect", "VBD_WSECT", True), Column("ssid", "SSID", True),
)


def domain_cells(d: Domain) -> tuple[Cell, ...]:
    return (d.name, d.state, d.cpu_sec, d.cpu_pct, d.mem_k, d.mem_pct,
            None if d.no_limit else d.maxmem_k, d.maxmem_pct, d.vcpus, d.nets, d.nettx_k,
            d.netrx_k, d.vbds, d.vbd_oo, d.vbd_rd, d.vbd_wr, d.vbd_rsect, d.vbd_wsect, d.ssid)


def as_parsed(top: Xentop, rows: Iterable[Row] | None = None) -> Parsed:
    """The last iteration as a table (with the VM of each domain when joined)."""
    if top.error is not None or top.last is None:
        return failed("xentop", top.error or "no domain", top.problems, top.facts)
    block = top.last
    facts = [*top.facts, ("iterations", str(len(top.blocks)))]
    if len(top.blocks) == 1:
        facts.append(("note", "one iteration: CPU(%) needs two (xentop -i 2)"))
    if rows is None:
        t = table("Domains", TABLE_COLUMNS, [domain_cells(d) for d in block.domains])
        return Parsed("xentop", (t,), tuple(facts), top.problems)
    cols = (Column("vm", "VM"), Column("vm_uuid", "VM UUID"), Column("control", "dom0"),
            Column("domid", "ID", True), *TABLE_COLUMNS, Column("join", "Joined by"))
    data = [(r.vm.name if r.vm else None, r.vm.uuid if r.vm else None,
             "yes" if r.vm is not None and r.vm.control else "",
             r.domid, *domain_cells(r.domain), r.how) for r in rows]
    return Parsed("xentop", (table("Domains", cols, data),), tuple(facts), top.problems)


@dataclass
class Rates:
    """Network and disk rates from one iteration to the next, per domain key
    (counters wrap and reset: a counter that went back gives no rate)."""

    last: dict[str, tuple[float, int | None, int | None, int | None, int | None]] = field(
        default_factory=dict)

    def update(self, now: float, rows: Sequence[Row]) -> dict[str, tuple[float | None, float | None]]:
        """key -> (network KiB/s, disk requests/s) since the last iteration."""
        out: dict[str, tuple[float | None, float | None]] = {}
        seen: dict[str, tuple[float, int | None, int | None, int | None, int | None]] = {}
        for r in rows:
            d = r.domain
            seen[r.key] = (now, d.nettx_k, d.netrx_k, d.vbd_rd, d.vbd_wr)
            prev = self.last.get(r.key)
            if prev is None or now <= prev[0]:
                out[r.key] = (None, None)
                continue
            dt = now - prev[0]
            out[r.key] = (_rate((d.nettx_k, d.netrx_k), prev[1:3], dt),
                          _rate((d.vbd_rd, d.vbd_wr), prev[3:5], dt))
        self.last = seen
        return out


def _rate(now: tuple[int | None, ...], before: tuple[int | None, ...], dt: float) -> float | None:
    """The sum's growth per second; None where a counter is missing or went back."""
    total = 0
    for a, b in zip(now, before, strict=True):
        if a is None or b is None or a < b:
            return None
        total += a - b
    return total / dt
