"""Performance metrics over HTTP: ``/rrd_updates``, ``/host_rrd`` and ``/vm_rrd``.

Behaviour follows xapi and xcp-rrdd:

* ocaml/xapi/rrdd_proxy.ml: ``/rrd_updates`` without ``start`` is ``400`` (headers
  only); ``/vm_rrd`` without ``uuid`` is ``400``, and for a VM running on another host
  it is a ``302`` to that host.
* ocaml/xcp-rrdd/bin/rrdd/rrdd_http_handler.ml: ``cf`` (AVERAGE|MIN|MAX|LAST, anything
  else means all), ``interval`` (seconds, default 0), ``host=true`` adds the host's
  RRD, ``vm_uuid`` (repeatable) filters VMs, ``sr_uuid`` asks for SR RRDs (none are
  simulated), JSON when the ``Accept`` header prefers ``application/json`` over
  ``text/xml`` (``*/*`` does) or, without a usable ``Accept``, when a ``json`` key is
  in the query. Only RRDs held by the host whose listener got the request: its own
  and those of the VMs resident (running or paused) there.
* ocaml/libs/xapi-rrd/lib/rrd_updates.ml and rrd.ml ``find_best_rras``: the archive is
  the first one (5 s x 120, 60 s x 120, 3600 s x 168, 86400 s x 366) that holds
  ``start`` with at least ``interval / 5`` steps per row, else the longest one; a
  negative ``start`` counts back from the last update; rows come newest first and
  stop before ``start``; ``meta.start`` is the first row time after ``start``;
  legend entries are ``CF:vm|host:<uuid>:<ds>``, per object, then per CF, then per
  data source. With no RRD at all, or no archive of the wanted CF, rrdd raises
  ``No_RRA_Available`` and the answer is ``500``. Values print as ``%0.15g`` with
  ``0.0``, ``NaN``, ``Infinity`` (rrd_utils.ml ``f_to_s``); JSON values are strings.
* rrdd_monitor.ml ``create_rras``: only AVERAGE archives unless pool
  ``other_config:create_min_max_in_new_VM_RRDs=true``, which adds MIN and MAX for the
  archives coarser than 5 s.

The numbers are a deterministic function of (object uuid, data source, time): smooth
daily and shorter cycles plus hashed noise, so the same request gives the same answer
and consecutive requests join up. They are consistent with the store: one ``cpuN``
per vCPU, ``memory`` from VM_metrics, one ``vif_N`` per attached VIF and ``vbd_xvdX``
per attached disk with its ``vbd_xvdX_iops_read``/``_write``, host ``cpuN`` per host_cpu driven by its resident VMs' load,
``memory_total_kib``/``memory_free_kib`` from host_metrics, ``pif_ethN`` carrying the
traffic of the VIFs bridged onto it, ``io_throughput_read_<sr8>``/``_write``
(MiB/s, xcp-rrdd-iostat) the disk traffic of its VMs to each SR. A VM's rows before its start time are NaN, as in
a fresh RRD.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xsctl.sim import http_common as hc
from xsctl.sim.store import Store
from xsctl.sim.wire import NULL_REF

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator

STEP = 5
# rrdd_shared.ml timescales: (rows, steps per row)
TIMESCALES: list[tuple[int, int]] = [(120, 1), (120, 12), (168, 720), (366, 17280)]
CFS = ("AVERAGE", "MIN", "MAX", "LAST")
MIN_MAX_KEY = "create_min_max_in_new_VM_RRDs"  # xapi_globs.ml


class NoRraAvailable(Exception):
    """rrd.ml No_RRA_Available."""


@dataclass(frozen=True, slots=True)
class Rra:
    cf: str
    pdp_cnt: int
    rows: int
    xff: float = 0.5

    @property
    def step(self) -> int:
        return STEP * self.pdp_cnt


def make_rras(use_min_max: bool) -> list[Rra]:
    out: list[Rra] = []
    for rows, ns in TIMESCALES:
        if ns > 1 and use_min_max:
            out += [Rra(cf, ns, rows, 1.0) for cf in ("AVERAGE", "MIN", "MAX")]
        else:
            out.append(Rra("AVERAGE", ns, rows, 0.5))
    return out


def f_to_s(v: float) -> str:
    """rrd_utils.ml f_to_s."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    if v == 0.0:
        return "0.0"
    return f"{v:.15g}"


# ---------------------------------------------------------------- the signal model

_M64 = (1 << 64) - 1


def _key_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def _mix(h: int, i: int) -> float:
    """splitmix64 of (h, i) as a float in [0, 1)."""
    z = (h + (i + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


def _window(period: float, width: float) -> float:
    """How much of a sine of ``period`` survives averaging over ``width`` seconds."""
    x = math.pi * width / period
    return 1.0 if x < 1e-9 else math.sin(x) / x


@dataclass(frozen=True, slots=True)
class Shape:
    """The parameters of one signal, fixed by its key."""

    h: int
    mean: float
    amp_day: float
    phase_day: float
    amp_fast: float
    period_fast: float
    phase_fast: float
    noise: float


def shape(key: str, lo: float = 0.08, hi: float = 0.6) -> Shape:
    h = _key_hash(key)
    mean = lo + (hi - lo) * _mix(h, 1)
    return Shape(
        h=h, mean=mean,
        amp_day=mean * 0.5 * _mix(h, 2), phase_day=2 * math.pi * _mix(h, 3),
        amp_fast=mean * 0.35 * _mix(h, 4), period_fast=300.0 + 3300.0 * _mix(h, 5),
        phase_fast=2 * math.pi * _mix(h, 6), noise=mean * (0.1 + 0.3 * _mix(h, 7)),
    )


def level(s: Shape, t: int, step: int, cf: str) -> float:
    """The signal in [0, 1] consolidated over the ``step`` seconds ending at ``t``."""
    centre = t - step / 2.0
    w_day = _window(86400.0, step)
    w_fast = _window(s.period_fast, step)
    smooth = (
        s.mean
        + s.amp_day * w_day * math.sin(2 * math.pi * centre / 86400.0 + s.phase_day)
        + s.amp_fast * w_fast * math.sin(2 * math.pi * centre / s.period_fast + s.phase_fast)
    )
    n = max(1, step // STEP)
    slot = t // step
    noise = (_mix(s.h, slot * 7 + n) - 0.5) * 2.0 * s.noise / math.sqrt(n)
    v = smooth + noise
    if cf in ("MIN", "MAX") and n > 1:
        spread = s.noise + s.amp_fast * (1.0 - w_fast) + s.amp_day * (1.0 - w_day)
        v = v - spread if cf == "MIN" else v + spread
    return min(1.0, max(0.0, v))


def _rate(key: str, lo: float, hi: float) -> float:
    """A per-device peak rate, log-uniform in [lo, hi] bytes/s."""
    return _rate_of(_key_hash(key), lo, hi)


def _rate_of(h: int, lo: float, hi: float) -> float:
    return float(lo * math.pow(hi / lo, _mix(h, 11)))


# ---------------------------------------------------------------- RRDs from the store

Series = Callable[[Sequence[int], int, str], list[float]]


@dataclass
class Ds:
    name: str
    series: Series
    ty: str = "GAUGE"
    max: float = math.inf


@dataclass
class RrdObj:
    kind: str  # "vm" or "host"
    uuid: str
    sources: list[Ds]
    born: float = 0.0  # rows before this are NaN

    @property
    def prefix(self) -> str:
        return f"{self.kind}:{self.uuid}:"


def _const(value: float) -> Series:
    return lambda times, step, cf: [value] * len(times)


def _signal(key: str, scale: float, lo: float = 0.08, hi: float = 0.6) -> Series:
    return _scaled(shape(key, lo, hi), scale)


def _scaled(s: Shape, scale: float) -> Series:
    return lambda times, step, cf: [scale * level(s, t, step, cf) for t in times]


@dataclass
class VmLoad:
    """What a VM puts on its host, for the host's own data sources."""

    vcpu_keys: list[Shape]
    scale: float
    paused: bool
    vif_rx: list[Series]
    vif_tx: list[Series]
    vif_devices: list[str]  # PIF device each VIF's traffic crosses ("" if none)
    # (SR uuid's first 8 characters, "read"|"write", bytes/s) of each plugged disk
    vbd_io: list[tuple[str, str, Series]] = field(default_factory=list)


def _vm_cpu_scale(uuid: str) -> float:
    return 0.15 + 0.85 * _mix(_key_hash(uuid + ":cpuload"), 0)


def vm_rrd(store: Store, ref: str, host_pif_dev: dict[str, str]) -> tuple[RrdObj, VmLoad]:
    """A running VM's data sources. They are functions of time, so they are kept (in
    the simulator's Runtime) until one of the records they read changes: without
    that, every 5 s drift at 10,000 VMs spent about a second here. Call with the
    store lock held."""
    vm = store.get(ref, "VM")
    mod = store.modified
    deps = (
        mod.get(ref), mod.get(vm["metrics"]), mod.get(vm["guest_metrics"]),
        tuple(mod.get(v) for v in vm["VIFs"]), tuple(mod.get(v) for v in vm["VBDs"]),
        tuple(sorted(host_pif_dev.items())),
    )
    cache = store.runtime.rrd_vms
    hit = cache.get(ref)
    if hit is not None and hit[0] == deps:
        return hit[1]
    result = _vm_rrd(store, ref, host_pif_dev)
    cache[ref] = (deps, result)
    return result


def _vm_rrd(store: Store, ref: str, host_pif_dev: dict[str, str]) -> tuple[RrdObj, VmLoad]:
    vm = store.get(ref, "VM")
    uuid = vm["uuid"]
    metrics = store.find(vm["metrics"]) if vm["metrics"] != NULL_REF else None
    paused = vm["power_state"] == "Paused"
    n_vcpus = int(metrics["VCPUs_number"]) if metrics and metrics["VCPUs_number"] else 0
    n_vcpus = n_vcpus or int(vm["VCPUs_at_startup"]) or 1
    memory = float(metrics["memory_actual"]) if metrics and metrics["memory_actual"] else 0.0
    memory = memory or float(vm["memory_dynamic_max"])
    scale = 0.0 if paused else _vm_cpu_scale(uuid)
    sources: list[Ds] = []
    vcpu_shapes: list[Shape] = []
    for i in range(n_vcpus):
        key = f"{uuid}:cpu{i}"
        s = shape(key, 0.05, 0.7)
        vcpu_shapes.append(s)
        sources.append(Ds(f"cpu{i}", _scaled(s, scale), "DERIVE", 1.0))
    sources.append(Ds("memory", _const(memory)))
    sources.append(Ds("memory_target", _const(float(vm["memory_target"] or memory))))
    gm = store.find(vm["guest_metrics"]) if vm["guest_metrics"] != NULL_REF else None
    if gm is not None:
        used = shape(f"{uuid}:memory_used", 0.3, 0.8)

        def internal_free(times: Sequence[int], step: int, cf: str) -> list[float]:
            flip = {"MIN": "MAX", "MAX": "MIN"}.get(cf, cf)  # least free when most used
            return [memory / 1024.0 * (1.0 - level(used, t, step, flip)) for t in times]

        sources.append(Ds("memory_internal_free", internal_free))
    load = VmLoad(vcpu_shapes, scale, paused, [], [], [])
    traffic = 0.0 if paused else 1.0
    for vif_ref in vm["VIFs"]:
        vif = store.find(vif_ref)
        if vif is None or not vif["currently_attached"]:
            continue
        dev = vif["device"]
        for direction in ("rx", "tx"):
            key = f"{uuid}:vif{dev}:{direction}"
            s = shape(key, 0.02, 0.5)  # each key hashed once: 10,000 VMs build these
            series = _scaled(s, traffic * _rate_of(s.h, 2e3, 6e6))
            sources.append(Ds(f"vif_{dev}_{direction}", series, "DERIVE"))
            (load.vif_rx if direction == "rx" else load.vif_tx).append(series)
        load.vif_devices.append(host_pif_dev.get(vif["network"], ""))
    for vbd_ref in vm["VBDs"]:
        vbd = store.find(vbd_ref)
        if vbd is None or not vbd["currently_attached"] or vbd["empty"] or not vbd["device"]:
            continue
        dev = vbd["device"]
        vdi = store.find(vbd["VDI"])
        sr = store.find(vdi["SR"]) if vdi is not None else None
        sr8 = str(sr["uuid"])[:8] if sr is not None else ""
        for op, hi in (("read", 4e7), ("write", 2e7)):
            key = f"{uuid}:vbd_{dev}:{op}"
            s = shape(key, 0.0, 0.4)
            rate = traffic * _rate_of(s.h, 1e4, hi)
            sources.append(Ds(f"vbd_{dev}_{op}", _scaled(s, rate), "DERIVE"))
            # xcp-rrdd-iostat: requests per second; the request size is the disk's own
            # (4 KiB to 128 KiB), so IOPS follow the bytes
            size = 4096.0 * (1 << int(_mix(s.h, 7) * 6))
            sources.append(Ds(f"vbd_{dev}_iops_{op}", _scaled(s, rate / size)))
            if sr8:
                load.vbd_io.append((sr8, op, _scaled(s, rate)))
    born = 0.0
    if metrics is not None and str(metrics["start_time"]) > "19700101T00:00:00Z":
        born = _unix(str(metrics["start_time"]))
    return RrdObj("vm", uuid, sources, born), load


def _unix(dt: str) -> float:
    """``YYYYMMDDTHH:MM:SSZ`` as seconds since the epoch (without strptime's cost)."""
    import calendar

    try:
        return float(calendar.timegm((int(dt[0:4]), int(dt[4:6]), int(dt[6:8]),
                                      int(dt[9:11]), int(dt[12:14]), int(dt[15:17]), 0, 0, 0)))
    except (ValueError, IndexError):
        return 0.0


def host_pif_devices(store: Store, host: str) -> tuple[dict[str, str], list[str]]:
    """network -> the physical device its traffic crosses on ``host``, and the
    host's physical PIF devices."""
    by_net: dict[str, str] = {}
    physical: list[str] = []
    for pif_ref in store.get(host, "host")["PIFs"]:
        pif = store.find(pif_ref)
        if pif is None:
            continue
        by_net[pif["network"]] = pif["device"]
        if pif["physical"] and pif["device"] not in physical:
            physical.append(pif["device"])
    return by_net, sorted(physical)


def host_rrd(store: Store, host: str, loads: list[VmLoad], physical: list[str]) -> RrdObj:
    """The host's data sources, driven by its resident VMs. Store lock held."""
    hrow = store.get(host, "host")
    uuid = hrow["uuid"]
    n_cpus = len(hrow["host_CPUs"]) or 1
    metrics = store.find(hrow["metrics"])
    total = float(metrics["memory_total"]) if metrics else 0.0
    free = float(metrics["memory_free"]) if metrics else 0.0

    def vcpu_load(times: Sequence[int], step: int, cf: str) -> list[float]:
        out = [0.0] * len(times)
        for ld in loads:
            if ld.scale == 0.0:
                continue
            for s in ld.vcpu_keys:
                for i, t in enumerate(times):
                    out[i] += ld.scale * level(s, t, step, cf)
        return out

    cache: dict[tuple[int, int, int, str], list[float]] = {}

    def busy(times: Sequence[int], step: int, cf: str) -> list[float]:
        k = (times[0] if times else 0, len(times), step, cf)
        if k not in cache:
            cache[k] = vcpu_load(times, step, cf)
        return cache[k]

    def cpu(i: int) -> Series:
        factor = 0.7 + 0.6 * _mix(_key_hash(f"{uuid}:pcpu{i}"), 0)
        dom0 = shape(f"{uuid}:dom0cpu{i}", 0.01, 0.05)

        def series(times: Sequence[int], step: int, cf: str) -> list[float]:
            b = busy(times, step, cf)
            return [min(1.0, level(dom0, t, step, cf) + factor * b[j] / n_cpus)
                    for j, t in enumerate(times)]

        return series

    cpus = [cpu(i) for i in range(n_cpus)]

    def cpu_avg(times: Sequence[int], step: int, cf: str) -> list[float]:
        cols = [c(times, step, cf) for c in cpus]
        return [sum(col[j] for col in cols) / n_cpus for j in range(len(times))]

    def loadavg(times: Sequence[int], step: int, cf: str) -> list[float]:
        b = busy(times, step, cf)
        return [0.05 + 1.1 * x for x in b]

    sources = [Ds(f"cpu{i}", c, "DERIVE", 1.0) for i, c in enumerate(cpus)]
    sources.append(Ds("cpu_avg", cpu_avg, "GAUGE", 1.0))
    sources.append(Ds("loadavg", loadavg))
    sources.append(Ds("memory_total_kib", _const(total / 1024.0)))
    sources.append(Ds("memory_free_kib", _const(free / 1024.0)))
    for dev in physical:
        for direction in ("rx", "tx"):
            base = _signal(f"{uuid}:pif_{dev}:{direction}", _rate(f"{uuid}:{dev}", 5e3, 3e5))
            vifs = [
                (ld.vif_rx if direction == "rx" else ld.vif_tx)[k]
                for ld in loads for k, d in enumerate(ld.vif_devices) if d == dev
            ]

            def pif(times: Sequence[int], step: int, cf: str,
                    base: Series = base, vifs: list[Series] = vifs) -> list[float]:
                out = base(times, step, cf)
                for v in vifs:
                    out = [a + b for a, b in zip(out, v(times, step, cf), strict=True)]
                return out

            sources.append(Ds(f"pif_{dev}_{direction}", pif, "DERIVE"))
    # xcp-rrdd-iostat: the host's traffic to each SR, in MiB/s, named by the SR
    # uuid's first 8 characters
    per_sr: dict[tuple[str, str], list[Series]] = {}
    for ld in loads:
        for sr8, op, series in ld.vbd_io:
            per_sr.setdefault((sr8, op), []).append(series)
    for (sr8, op), parts in sorted(per_sr.items()):

        def throughput(times: Sequence[int], step: int, cf: str,
                       parts: list[Series] = parts) -> list[float]:
            out = [0.0] * len(times)
            for p in parts:
                out = [a + b / 1048576.0 for a, b in zip(out, p(times, step, cf), strict=True)]
            return out

        sources.append(Ds(f"io_throughput_{op}_{sr8}", throughput))
    return RrdObj("host", uuid, sources)


def resident_vms(store: Store, host: str) -> list[str]:
    """VMs with a domain on ``host`` (rrdd holds an RRD for each): not dom0."""
    out = []
    for ref in store.get(host, "host")["resident_VMs"]:
        row = store.find(ref)
        if row is None or row["is_control_domain"]:
            continue
        if row["power_state"] in ("Running", "Paused"):
            out.append(ref)
    return out


def collect(store: Store, host: str, with_host: bool, vm_uuids: list[str] | None
            ) -> list[RrdObj]:
    """rrdd_http_handler.ml get_host_stats: the host's RRD first (host=true), then the
    resident VMs' (filtered by vm_uuid when given)."""
    with store.lock:
        by_net, physical = host_pif_devices(store, host)
        resident = resident_vms(store, host)
    # the lock taken per VM, not for all of them: building a VM's sources the first
    # time is slow (~0.1 ms), and at 30,000 VMs holding the lock for all of them at
    # once stalled every API call for 4 s
    vms = []
    for ref in resident:
        with store.lock:
            if store.exists(ref, "VM"):
                vms.append(vm_rrd(store, ref, by_net))
    with store.lock:
        objs: list[RrdObj] = []
        if with_host:
            objs.append(host_rrd(store, host, [ld for _, ld in vms], physical))
        for obj, _ in vms:
            if vm_uuids is None or obj.uuid in vm_uuids:
                objs.append(obj)
        return objs


def use_min_max(store: Store) -> bool:
    pool = next(iter(store.all("pool").values()), None)
    return bool(pool) and pool["other_config"].get(MIN_MAX_KEY) == "true"  # type: ignore[index]


def last_update(now: float | None = None) -> int:
    """rrdd updates every 5 s; the simulated RRDs were last updated on that grid."""
    t = time.time() if now is None else now
    return int(t) // STEP * STEP


# ---------------------------------------------------------------- rrd_updates


def find_best_rras(rras: list[Rra], last_updated: int, pdp_interval: int, cf: str | None,
                   start: int) -> list[Rra]:
    """rrd.ml find_best_rras."""
    cands = [r for r in rras if cf is None or r.cf == cf]
    if not cands:
        raise NoRraAvailable
    last_pdp = last_updated // STEP * STEP

    def contains(t: int, r: Rra) -> bool:
        return r.pdp_cnt >= pdp_interval and t > last_pdp - STEP * r.rows * r.pdp_cnt

    first = next((r for r in cands if contains(start, r)), None)
    if first is not None:
        return [r for r in cands if r.rows == first.rows and r.pdp_cnt == first.pdp_cnt]
    longest = cands[-1]
    newstart = 1 + last_pdp - STEP * longest.rows * longest.pdp_cnt
    return [r for r in cands if contains(newstart, r)]


@dataclass
class Updates:
    start: int
    step: int
    end: int
    legend: list[str]
    rows: list[tuple[int, list[float]]]


def export(objs: list[RrdObj], start: int, interval: int, cf: str | None,
           rras: list[Rra], last_updated: int) -> Updates:
    """rrd_updates.ml create_multi + create."""
    if not objs:
        raise NoRraAvailable
    pdp_interval = interval // STEP
    if start < 0:
        start += last_updated
    chosen = [find_best_rras(rras, last_updated, pdp_interval, cf, start) for _ in objs]
    first = next((c[0] for c in chosen if c), None)
    if first is None:
        raise NoRraAvailable
    chosen = [[r for r in c if r.pdp_cnt == first.pdp_cnt and r.rows == first.rows]
              for c in chosen]
    step = first.step
    last_cdp = last_updated // step * step
    first_cdp = start // step * step + step
    times: list[int] = []
    for i in range(first.rows):
        t = last_cdp - i * step
        if t < start:
            break
        times.append(t)
    legend: list[str] = []
    columns: list[list[float]] = []
    for obj, sel in zip(objs, chosen, strict=True):
        for rra in sel:
            for ds in obj.sources:
                legend.append(f"{rra.cf}:{obj.prefix}{ds.name}")
                values = ds.series(times, step, rra.cf) if times else []
                if obj.born:
                    values = [math.nan if obj.born > t - step / 2.0 else v
                              for t, v in zip(times, values, strict=True)]
                columns.append(values)
    rows = [(t, [col[i] for col in columns]) for i, t in enumerate(times)]
    return Updates(first_cdp, step, last_cdp, legend, rows)


def xml_of(u: Updates) -> str:
    """rrd_updates.ml xml_of (Xmlm, declaration then no whitespace)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta>',
           f"<start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>",
           f"<rows>{len(u.rows)}</rows><columns>{len(u.legend)}</columns><legend>"]
    out += [f"<entry>{_xml_escape(e)}</entry>" for e in u.legend]
    out.append("</legend></meta><data>")
    for t, values in u.rows:
        out.append(f"<row><t>{t}</t>")
        out += [f"<v>{f_to_s(v)}</v>" for v in values]
        out.append("</row>")
    out.append("</data></xport>")
    return "".join(out)


def json_of(u: Updates) -> str:
    """rrd_updates.ml json_of_t (Yojson.to_string: no spaces; values are strings)."""
    meta = {"start": u.start, "step": u.step, "end": u.end, "rows": len(u.rows),
            "columns": len(u.legend), "legend": u.legend}
    data = [{"t": t, "values": [f_to_s(v) for v in values]} for t, values in u.rows]
    return json.dumps({"meta": meta, "data": data}, separators=(",", ":"))


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- full RRDs


def full_rrd(obj: RrdObj, rras: list[Rra], last_updated: int, as_json: bool) -> str:
    """rrd.ml xml_to_output / json_to_string (the /host_rrd and /vm_rrd body)."""
    per_rra: list[tuple[Rra, list[int], list[list[float]]]] = []
    for rra in rras:
        step = rra.step
        last_cdp = last_updated // step * step
        times = [last_cdp - i * step for i in range(rra.rows)][::-1]  # oldest first
        cols = []
        for ds in obj.sources:
            vals = ds.series(times, step, rra.cf)
            if obj.born:
                vals = [math.nan if obj.born > t - step / 2.0 else v
                        for t, v in zip(times, vals, strict=True)]
            cols.append(vals)
        per_rra.append((rra, times, cols))
    last = [col[-1] if col else 0.0 for col in per_rra[0][2]] if per_rra else []
    if as_json:
        doc: dict[str, Any] = {
            "version": "0003", "step": str(STEP), "lastupdate": f_to_s(float(last_updated)),
            "ds": [{"name": ds.name, "type": ds.ty, "minimal_heartbeat": f_to_s(300.0),
                    "min": f_to_s(0.0), "max": f_to_s(ds.max), "last_ds": f_to_s(last[i]),
                    "value": f_to_s(0.0), "unknown_sec": f_to_s(0.0),
                    "last_updated": f_to_s(float(last_updated))}
                   for i, ds in enumerate(obj.sources)],
            "rra": [{"cf": rra.cf, "pdp_per_row": str(rra.pdp_cnt),
                     "params": {"xff": f_to_s(rra.xff)},
                     "cdp_prep": {"ds": [{"primary_value": "0.0", "secondary_value": "0.0",
                                          "value": "0.0", "unknown_datapoints": "0"}
                                         for _ in obj.sources]},
                     "database": [[f_to_s(col[j]) for col in cols] for j in range(len(times))]}
                    for rra, times, cols in per_rra],
        }
        return json.dumps(doc, separators=(",", ":"))
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<rrd><version>0003</version>',
           f"<step>{STEP}</step><lastupdate>{last_updated}</lastupdate>"]
    for i, ds in enumerate(obj.sources):
        out.append(
            f"<ds><name>{ds.name}</name><type>{ds.ty}</type>"
            f"<minimal_heartbeat>{f_to_s(300.0)}</minimal_heartbeat><min>0.0</min>"
            f"<max>{f_to_s(ds.max)}</max><last_ds>{f_to_s(last[i])}</last_ds>"
            f"<value>0.0</value><unknown_sec>0</unknown_sec></ds>"
        )
    for rra, times, cols in per_rra:
        out.append(f"<rra><cf>{rra.cf}</cf><pdp_per_row>{rra.pdp_cnt}</pdp_per_row>"
                   f"<params><xff>{f_to_s(rra.xff)}</xff></params>"
                   "<cdp_prep>")
        out += ["<ds><primary_value>0.0</primary_value><secondary_value>0.0</secondary_value>"
                "<value>0.0</value><unknown_datapoints>0</unknown_datapoints></ds>"] * len(cols)
        out.append("</cdp_prep><database>")
        for j in range(len(times)):
            out.append("<row>" + "".join(f"<v>{f_to_s(col[j])}</v>" for col in cols) + "</row>")
        out.append("</database></rra>")
    out.append("</rrd>")
    return "".join(out)


# ---------------------------------------------------------------- HTTP

_MEDIA = re.compile(r"^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)/([A-Za-z0-9!#$%&'*+.^_`|~-]+)\s*$")


def prefers_json(accept: str | None, query: hc.Query) -> bool:
    """rrdd_http_handler.ml client_prefers_json: the Accept header decides when it
    names json or xml (``*/*`` prefers json, the first candidate); otherwise the
    ``json`` query key."""
    default = "json" in query
    if accept is None:
        return default
    ranges: list[tuple[str, str, float]] = []
    for item in accept.split(","):
        if not item.strip():
            continue
        media, *params = item.split(";")
        m = _MEDIA.match(media)
        if m is None:
            return default  # Accept.Parse_failure
        q = 1.0
        for p in params:
            k, _, v = p.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v.strip())
                except ValueError:
                    return default
        ranges.append((m.group(1).lower(), m.group(2).lower(), q))

    def quality(ty: str, sub: str) -> float:
        best, spec = 0.0, -1
        for rt, rs, q in ranges:
            s = 2 if (rt, rs) == (ty, sub) else 1 if (rt == ty and rs == "*") else \
                0 if (rt, rs) == ("*", "*") else -1
            if s > spec:
                best, spec = q, s
        return best if spec >= 0 else 0.0

    qj, qx = quality("application", "json"), quality("text", "xml")
    if qj <= 0 and qx <= 0:
        return default
    return qj >= qx


def _reply(handler: Handler, body: str, as_json: bool) -> None:
    data = body.encode("utf-8")
    hc.write_raw(
        handler,
        ["HTTP/1.1 200 OK", "Connection: keep-alive", f"Content-Length: {len(data)}", hc.CACHE,
         f"content-type: {'application/json' if as_json else 'text/xml'}",
         "Access-Control-Allow-Origin: *", "Access-Control-Allow-Headers: X-Requested-With"],
        data, close=False,
    )


def _stream_reply(handler: Handler, body: str, as_json: bool) -> None:
    """rrdd_http_handler.ml rrd_handler: HTTP/1.0, no length, then close."""
    hc.write_raw(
        handler,
        ["HTTP/1.0 200 OK", "Connection: close", hc.CACHE,
         f"content-type: {'application/json' if as_json else 'text/xml'}",
         "Access-Control-Allow-Origin: *"],
        body.encode("utf-8"),
    )


def _no_rra(handler: Handler) -> None:
    hc.internal_error(handler, "Rrd.No_RRA_Available")


def _int64(text: str) -> int | None:
    try:
        v = int(text.strip(), 0) if text.strip().lower().startswith(("0x", "0o", "0b")) \
            else int(text.strip())
    except ValueError:
        return None
    return v if -(1 << 63) <= v < (1 << 63) else None


def rrd_updates(handler: Handler, query: hc.Query) -> None:
    sim = handler.sim
    with hc.authenticated(handler, query, "get_rrd_updates") as auth:
        if auth is None:
            return
        start_s = hc.arg(query, "start")
        if start_s is None:
            hc.bad_request(handler)
            return
        start = _int64(start_s)
        if start is None:
            hc.internal_error(handler, 'Failure("Int64.of_string")')
            return
        cf_s = hc.arg(query, "cf")
        cf = cf_s if cf_s in CFS else None
        interval = _int64(hc.arg(query, "interval") or "") or 0
        with_host = hc.arg(query, "host") == "true"
        vm_uuids = query.get("vm_uuid")
        as_json = prefers_json(handler.headers.get("Accept"), query)
        store = sim.store
        objs = collect(store, handler.server.host_ref, with_host, vm_uuids)
        try:
            u = export(objs, start, interval, cf, make_rras(use_min_max(store)),
                       last_update(sim.rrd_time))
        except NoRraAvailable:
            _no_rra(handler)
            return
        _reply(handler, json_of(u) if as_json else xml_of(u), as_json)


def host_rrd_handler(handler: Handler, query: hc.Query) -> None:
    sim = handler.sim
    with hc.authenticated(handler, query, "get_host_rrd") as auth:
        if auth is None:
            return
        objs = collect(sim.store, handler.server.host_ref, True, [])
        as_json = prefers_json(handler.headers.get("Accept"), query)
        body = full_rrd(objs[0], make_rras(use_min_max(sim.store)), last_update(sim.rrd_time),
                        as_json)
        _stream_reply(handler, body, as_json)


def vm_rrd_handler(handler: Handler, query: hc.Query) -> None:
    sim = handler.sim
    with hc.authenticated(handler, query, "get_vm_rrd") as auth:
        if auth is None:
            return
        uuid = hc.arg(query, "uuid")
        if uuid is None:
            hc.bad_request(handler)
            return
        store = sim.store
        here = handler.server.host_ref
        objs = collect(store, here, False, [uuid])
        if objs:
            as_json = prefers_json(handler.headers.get("Accept"), query)
            _stream_reply(handler, full_rrd(objs[0], make_rras(use_min_max(store)),
                                            last_update(sim.rrd_time), as_json), as_json)
            return
        with store.lock:
            ref = store.uuids["VM"].get(uuid)
            owner = store.get(ref, "VM")["resident_on"] if ref else NULL_REF
            raw_query = handler.path.partition("?")[2]
            if owner != NULL_REF and store.exists(owner, "host") and owner != here:
                target = store.get(owner, "host")["address"]
            elif here != sim.master_ref():
                target = sim.master_address()  # rrdd_proxy.ml unarchive_at coordinator
            else:
                target = ""
        if target:
            hc.redirect(handler, hc.url_on(sim, target, "/vm_rrd", raw_query))
        else:
            hc.not_found(handler)  # nothing archived for a VM that never ran here


def register(sim: Simulator) -> None:
    sim.http_get["/rrd_updates"] = rrd_updates
    sim.http_get["/host_rrd"] = host_rrd_handler
    sim.http_get["/host_rrds"] = host_rrd_handler
    sim.http_get["/vm_rrd"] = vm_rrd_handler
    sim.http_get["/vm_rrds"] = vm_rrd_handler


def host_cpu_now(store: Store, host: str, now: float | None = None) -> list[float]:
    """The host's per-CPU load at the latest 5 s sample (host_cpu.utilisation)."""
    t = last_update(now)
    objs = collect(store, host, True, [])
    cpus = [ds for ds in objs[0].sources if re.fullmatch(r"cpu\d+", ds.name)]
    return [ds.series([t], STEP, "AVERAGE")[0] for ds in cpus]
