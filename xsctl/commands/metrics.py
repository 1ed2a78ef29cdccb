"""``xsctl metrics HOST|VM``: a host's or a VM's figures over a period, from the
RRD its host keeps (one /rrd_updates request)."""

from __future__ import annotations

import argparse
import math
import shutil
from datetime import UTC, datetime
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, say
from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError
from xsctl.xapi.metrics import PERIODS, history
from xsctl.xapi.ops.resolve import resolve_host, resolve_vm
from xsctl.xapi.perf import figures, sparkline

CLASSES = ["pool", "host", "VM"]


def add_metrics(sub: Any, leaf: Any) -> None:
    m = leaf(sub, "metrics", cmd_metrics,
             "a host's or a VM's performance: CPU, memory, disk and network, with a "
             "sparkline per series")
    m.add_argument("target", metavar="HOST|VM",
                   help="a host (name, address or UUID) or a VM (name, UUID or prefix)")
    m.add_argument("--since", choices=list(PERIODS), default="10m",
                   help="the period, as xapi keeps it: 10m at 5 s, 2h at 1 min, 1w at "
                   "1 h, 1y at 1 day (default 10m)")


def resolve_object(cache: Cache, spec: str) -> tuple[str, str]:
    """("host"|"vm", ref) for a name that names one host or one VM."""
    found: list[tuple[str, str]] = []
    for kind, fn in (("host", resolve_host), ("vm", resolve_vm)):
        try:
            found.append((kind, fn(cache, spec)))
        except UsageError:
            continue
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"{spec!r} names a host and a VM; give the UUID of the one meant")
    raise UsageError(f"no host or VM named {spec!r}")


def _clean(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else round(v, 6)


def _when(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_metrics(args: argparse.Namespace) -> int:
    period = PERIODS[args.since]
    with open_client(args, CLASSES) as client:
        kind, ref = resolve_object(client.cache, args.target)
        rec = client.cache.get(kind, ref) or {}
        name = str(rec.get("name_label", ""))
        h = history(client.conn, client.cache, kind, ref, period)
    figs = figures(kind, h.series, len(h.times))
    if args.json:
        print_json({
            "kind": kind, "uuid": h.uuid, "name_label": name, "period": period.name,
            "step": h.step, "times": h.times,
            "series": [{"id": f.id, "label": f.label, "unit": f.unit,
                        "now": _clean(f.now), "min": _clean(f.low), "max": _clean(f.high),
                        "mean": _clean(f.mean), "values": [_clean(v) for v in f.values]}
                       for f in figs],
        })
        return 0
    span = f"{_when(h.times[0])} to {_when(h.times[-1])}" if h.times else "no rows"
    say(f"{name} ({'host' if kind == 'host' else 'VM'}), {period.label} at {h.step} s: {span}")
    if not figs:
        say("xapi keeps no figures for it in this period")
        return 0
    label_w = max(len(f.label) for f in figs)
    width = max(10, min(60, shutil.get_terminal_size((80, 24)).columns - label_w - 3 * 13 - 2))
    say(f"{'':<{label_w}}  {'now':>12} {'min':>12} {'max':>12}")
    for f in figs:
        say(f"{f.label:<{label_w}}  {f.text(f.now):>12} {f.text(f.low):>12} "
            f"{f.text(f.high):>12}  {sparkline(f.values, width, f.top())}")
    return 0
