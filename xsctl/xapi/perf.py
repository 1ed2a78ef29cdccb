"""What a person reads from an object's RRD: the figures of a host or a VM in units
they trust (%, MiB, MiB/s, IOPS), their range, and a sparkline. Shared by
``xsctl metrics`` and the Performance view.

Data-source names and units, from xcp-rrdd and its plugins:

* host: ``cpuN`` and ``cpu_avg`` (0..1), ``memory_total_kib``/``memory_free_kib``,
  ``pif_<dev>_rx``/``_tx`` (bytes/s), ``io_throughput_read``/``_write_<sr8>`` (MiB/s,
  xcp-rrdd-iostat);
* VM: ``cpuN`` (0..1 per vCPU), ``memory`` (bytes), ``memory_internal_free`` (KiB, from
  the guest agent), ``vbd_<dev>_read``/``_write`` (bytes/s),
  ``vbd_<dev>_iops_read``/``_write``, ``vif_N_rx``/``_tx`` (bytes/s, as the VM sees
  them: rx is what it receives).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsctl.xapi.metrics import MetricsUpdate

MIB = 1048576.0
BLOCKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Figure:
    """One series as shown: ``values`` oldest first, NaN where xapi had none."""

    id: str  # "cpu", "cpu0", "memory", "net_rx", "disk_read", "iops_read", ...
    label: str
    unit: str  # "%", "MiB", "MiB/s", "IOPS"
    values: list[float]
    ceiling: float | None = None  # the scale's top when it is known (100 %, the RAM)

    @property
    def known(self) -> list[float]:
        return [v for v in self.values if not math.isnan(v)]

    @property
    def now(self) -> float:
        return next((v for v in reversed(self.values) if not math.isnan(v)), math.nan)

    @property
    def low(self) -> float:
        k = self.known
        return min(k) if k else math.nan

    @property
    def high(self) -> float:
        k = self.known
        return max(k) if k else math.nan

    @property
    def mean(self) -> float:
        k = self.known
        return sum(k) / len(k) if k else math.nan

    def top(self) -> float:
        """The top of the graph's scale: the ceiling, else the highest value."""
        if self.ceiling is not None and self.ceiling > 0:
            return self.ceiling
        high = self.high
        return high if high > 0 else 1.0

    def text(self, v: float) -> str:
        return fmt(v, self.unit)


def fmt(v: float, unit: str) -> str:
    """A value in its unit, with the precision its size deserves."""
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "∞"
    if unit == "%":
        return f"{v:.1f}%"
    if unit == "MiB":
        return f"{v / 1024:.2f} GiB" if abs(v) >= 1024 else f"{v:.0f} MiB"
    if unit == "IOPS":
        return f"{v:.0f} IOPS" if abs(v) >= 10 else f"{v:.1f} IOPS"
    if unit == "MiB/s" and abs(v) < 1:  # small rates in the next unit down, not 0.0057
        v, unit = v * 1024, "KiB/s"
        if abs(v) < 1:
            v, unit = v * 1024, "B/s"
    a = abs(v)
    digits = 0 if a >= 100 or unit == "B/s" else 1 if a >= 10 else 2
    return f"{v:.{digits}f} {unit}"


def sparkline(values: list[float], width: int, top: float | None = None) -> str:
    """``values`` squeezed (mean per column) or stretched to ``width`` block
    characters from 0 to ``top``; a blank where there is no value."""
    if width <= 0:
        return ""
    n = len(values)
    if n == 0:
        return " " * width
    cols: list[float] = []
    for c in range(width):
        lo = c * n // width
        hi = max(lo + 1, (c + 1) * n // width)
        part = [v for v in values[lo:hi] if not math.isnan(v)]
        cols.append(sum(part) / len(part) if part else math.nan)
    if top is None:
        known = [v for v in cols if not math.isnan(v)]
        top = max(known) if known else 1.0
    top = top if top > 0 and not math.isinf(top) else 1.0
    out = []
    for v in cols:
        if math.isnan(v):
            out.append(" ")
        else:
            level = max(0.0, min(1.0, v / top))
            out.append(BLOCKS[min(len(BLOCKS) - 1, int(level * len(BLOCKS)))])
    return "".join(out)


def _combine(columns: list[list[float]], n: int,
             f: Callable[[list[float]], float] = sum) -> list[float]:
    """Per time: ``f`` of the known values (NaN when none is)."""
    out = []
    for i in range(n):
        known = [c[i] for c in columns if i < len(c) and not math.isnan(c[i])]
        out.append(f(known) if known else math.nan)
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _matching(series: dict[str, list[float]], pattern: str) -> list[list[float]]:
    rx = re.compile(pattern)
    return [v for k, v in sorted(series.items()) if rx.fullmatch(k)]


def _scale(values: Iterable[float], by: float) -> list[float]:
    return [v * by for v in values]


def _cpu_index(name: str) -> int:
    return int(name[3:])


def _cores(series: dict[str, list[float]]) -> list[str]:
    return sorted((k for k in series if re.fullmatch(r"cpu\d+", k)), key=_cpu_index)


def cpu_percent(kind: str, series: dict[str, list[float]], n: int) -> list[float] | None:
    """The CPU % of a host (``cpu_avg``, else the mean of its cores) or a VM (the mean
    of its vCPUs) at each of the ``n`` times; None when the RRD has no CPU."""
    if kind == "host" and "cpu_avg" in series:
        return _scale(series["cpu_avg"], 100.0)
    cores = _cores(series)
    if not cores:
        return None
    return _scale(_combine([series[k] for k in cores], n, _mean), 100.0)


def host_figures(series: dict[str, list[float]], n: int) -> list[Figure]:
    cores = _cores(series)
    out: list[Figure] = []
    cpu = cpu_percent("host", series, n)
    if cpu is not None:
        out.append(Figure("cpu", "CPU (average)", "%", cpu, 100.0))
    out += [Figure(k, f"CPU {k[3:]}", "%", _scale(series[k], 100.0), 100.0) for k in cores]
    total = series.get("memory_total_kib")
    free = series.get("memory_free_kib")
    if total is not None and free is not None:
        used = [(t - f) / 1024.0 for t, f in zip(total, free, strict=False)]
        known_total = [t for t in total if not math.isnan(t)]
        out.append(Figure("memory", "Memory used", "MiB", used,
                          known_total[-1] / 1024.0 if known_total else None))
    # physical NICs; a bond's traffic also crosses its members, so it is not added again
    for d, label in (("rx", "Network in"), ("tx", "Network out")):
        cols = _matching(series, rf"pif_(?!bond)\w+?_{d}")
        if cols:
            out.append(Figure(f"net_{d}", label, "MiB/s", _scale(_combine(cols, n), 1 / MIB)))
    for op, label in (("read", "Disk read"), ("write", "Disk write")):
        cols = _matching(series, rf"io_throughput_{op}_\w+")
        if cols:
            out.append(Figure(f"disk_{op}", label, "MiB/s", _combine(cols, n)))
    return out


def vm_figures(series: dict[str, list[float]], n: int) -> list[Figure]:
    out: list[Figure] = []
    vcpus = _cores(series)
    cpu = cpu_percent("vm", series, n)
    if cpu is not None:
        out.append(Figure("cpu", f"CPU ({len(vcpus)} vCPU{'s' if len(vcpus) > 1 else ''})",
                          "%", cpu, 100.0))
    memory = series.get("memory")
    if memory is not None:
        given = [m / MIB for m in memory]
        known = [m for m in given if not math.isnan(m)]
        free = series.get("memory_internal_free")
        if free is not None:  # the guest agent says how much it uses of what it has
            used = [m - f / 1024.0 for m, f in zip(given, free, strict=False)]
            out.append(Figure("memory", "Memory used", "MiB", used,
                              known[-1] if known else None))
        else:
            out.append(Figure("memory", "Memory", "MiB", given, known[-1] if known else None))
    for op, label in (("read", "Disk read"), ("write", "Disk write")):
        cols = _matching(series, rf"vbd_[a-z0-9]+_{op}")
        if cols:
            out.append(Figure(f"disk_{op}", label, "MiB/s", _scale(_combine(cols, n), 1 / MIB)))
    for op, label in (("read", "Disk read IOPS"), ("write", "Disk write IOPS")):
        cols = _matching(series, rf"vbd_[a-z0-9]+_iops_{op}")
        if cols:
            out.append(Figure(f"iops_{op}", label, "IOPS", _combine(cols, n)))
    for d, label in (("rx", "Network in"), ("tx", "Network out")):
        cols = _matching(series, rf"vif_\d+_{d}")
        if cols:
            out.append(Figure(f"net_{d}", label, "MiB/s", _scale(_combine(cols, n), 1 / MIB)))
    return out


def figures(kind: str, series: dict[str, list[float]], n: int) -> list[Figure]:
    return host_figures(series, n) if kind == "host" else vm_figures(series, n)


# ---------------------------------------------------------------- trails

TRAIL_CELLS = 10  # the sparkline column's width
TRAIL_SPAN = 300  # seconds it covers: a cell each 30 s, six of xapi's 5 s rows


class CpuTrail:
    """The last few minutes of CPU % of the hosts or VMs a table shows, for its
    sparkline column, fed by the metrics feed's rounds.

    A cell is the mean of the rows in a fixed 30 s slot of the clock, the newest slot
    on the right, so a cell keeps its height while the line moves on and the whole
    line shifts by one cell every 30 s. The scale is 0 to 100 % for every row (one
    block is 12.5 %), never a row's own lowest and highest: rows are compared at a
    glance. A slot without a row is blank."""

    def __init__(self, kind: str, span: int = TRAIL_SPAN, cells: int = TRAIL_CELLS) -> None:
        self.kind = kind
        self.span = span
        self.cells = cells
        self.slot = max(1, span // cells)
        self.points: dict[str, dict[int, float]] = {}  # uuid -> time -> CPU %

    def take(self, update: MetricsUpdate, keep: frozenset[str]) -> dict[str, str]:
        """Add the round's rows of the objects in ``keep`` (forgetting the others) and
        return the sparkline of each object ``keep`` names that has a trail."""
        for gone in self.points.keys() - keep:
            del self.points[gone]
        for (kind, uuid), rec in update.recent.items():
            if kind != self.kind or uuid not in keep:
                continue
            cpu = cpu_percent(kind, rec.series, len(rec.times))
            if cpu is None:
                continue
            pts = self.points.setdefault(uuid, {})
            for t, v in zip(rec.times, cpu, strict=False):
                if not math.isnan(v):
                    pts[t] = v
            if pts:
                oldest = max(pts) - self.span
                for t in [t for t in pts if t <= oldest]:
                    del pts[t]
        return {uuid: self.line(uuid) for uuid in self.points}

    def values(self, uuid: str) -> list[float]:
        """The mean CPU % of each cell, oldest first (NaN: no row in its slot)."""
        pts = self.points.get(uuid)
        if not pts:
            return []
        end = (max(pts) // self.slot + 1) * self.slot  # the end of the newest slot
        first = end - self.cells * self.slot
        sums = [0.0] * self.cells
        counts = [0] * self.cells
        for t, v in pts.items():
            if t >= first:
                i = (t - first) // self.slot
                sums[i] += v
                counts[i] += 1
        return [s / c if c else math.nan for s, c in zip(sums, counts, strict=True)]

    def line(self, uuid: str) -> str:
        cells = self.values(uuid)
        return sparkline(cells, self.cells, 100.0) if cells else ""
