"""The CPU trail behind the sparkline columns: 30 s slots of the clock, a fixed 0 to
100 % scale, blanks where no row came, only the objects asked for."""

from __future__ import annotations

import math

from xsctl.xapi.metrics import MetricsUpdate, Recent
from xsctl.xapi.perf import BLOCKS, CpuTrail


def update(kind: str, uuid: str, times: list[int], **series: list[float]) -> MetricsUpdate:
    return MetricsUpdate(0.0, {}, recent={(kind, uuid): Recent(times, dict(series))})


def test_slots_scale_and_gaps() -> None:
    trail = CpuTrail("vm")
    # two vCPUs: the VM's CPU is their mean; one 5 s row a slot here and there
    times = [3000 + 30 * i for i in range(10)]
    cpu0 = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, math.nan, 0.0, 0.5, 0.99]
    cpu1 = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, math.nan, 0.0, 0.5, 0.99]
    got = trail.take(update("vm", "a", times, cpu0=cpu0, cpu1=cpu1), frozenset({"a"}))
    # 0 % is the lowest block, 100 % the highest, the scale never the VM's own range
    assert got["a"] == "▁▁▃▅▇█ ▁▅█"
    assert set(got["a"]) <= set(BLOCKS) | {" "}
    # the same at a tenth of the load: low blocks, not stretched to fill the cell
    low = trail.take(update("vm", "b", times, cpu0=[v / 10 for v in cpu0]),
                     frozenset({"b"}))
    assert "a" not in low  # no longer asked for: forgotten
    assert low["b"] == "▁▁▁▁▁▁ ▁▁▁"


def test_a_slot_is_the_mean_of_its_rows_and_the_line_moves_on() -> None:
    trail = CpuTrail("host")
    keep = frozenset({"h"})
    times = list(range(6000, 6030, 5))  # six rows, one slot
    trail.take(update("host", "h", times, cpu_avg=[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), keep)
    assert trail.values("h")[-1] == 50.0
    assert trail.line("h") == " " * 9 + "▅"
    # the next slot: the old one moves one cell left
    trail.take(update("host", "h", [6030], cpu_avg=[0.2]), keep)
    assert trail.line("h") == " " * 8 + "▅▂"
    # 5 minutes on, the first slots fall out
    trail.take(update("host", "h", [6330], cpu_avg=[1.0]), keep)
    assert trail.line("h") == " " * 9 + "█"


def test_no_cpu_no_line() -> None:
    trail = CpuTrail("vm")
    got = trail.take(update("vm", "a", [100], memory=[1.0]), frozenset({"a"}))
    assert got == {} and trail.line("a") == ""
