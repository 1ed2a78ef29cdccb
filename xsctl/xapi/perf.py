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


def host_figures(series: dict[str, list[float]], n: int) -> list[Figure]:
    cores = sorted((k for k in series if re.fullmatch(r"cpu\d+", k)), key=_cpu_index)
    out: list[Figure] = []
    if "cpu_avg" in series:
        avg = series["cpu_avg"]
    else:
        avg = _combine([series[k] for k in cores], n, _mean)
    if cores or "cpu_avg" in series:
        out.append(Figure("cpu", "CPU (average)", "%", _scale(avg, 100.0), 100.0))
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
    vcpus = _matching(series, r"cpu\d+")
    if vcpus:
        out.append(Figure("cpu", f"CPU ({len(vcpus)} vCPU{'s' if len(vcpus) > 1 else ''})",
                          "%", _scale(_combine(vcpus, n, _mean), 100.0), 100.0))
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
