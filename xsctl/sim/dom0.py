"""The simulated hosts' dom0: what their xentop, xl, xenpm, perf, tap-ctl, pgrep and
OProfile would see, so that the Profiling view runs real commands in the demo.

``write_tools`` makes a folder with one subfolder per host address, each holding an
executable per tool. They are small Python scripts (dom0_tools.py, standard library
only) that ask this simulator for the host's domains through ``/sim/control``
(action ``dom0``) and print what the real tool prints, in its format. The
Profiling view runs them as local commands (``host_tools`` in the profile), so the
command path is the same as in a real dom0.

The domains follow the simulated VMs: a VM started, paused or migrated shows, stops
or moves in xentop at its next refresh. Each domain's load is its own fixed wave
(seeded by its UUID), with counters that are the wave's integral, so they only grow.
With ``drift`` off (screenshots) the time is the seed's epoch plus the tool's own
elapsed delays, so every run prints the same.
"""

from __future__ import annotations

import calendar
import hashlib
import math
import os
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

TOOLS = ("xentop", "xl", "xenpm", "perf", "pgrep", "tap-ctl")
OPROFILE = ("opcontrol", "operf", "opreport")  # the pool master's dom0 only
NULL = "OpaqueRef:NULL"


def _mix(key: str, i: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``i``."""
    h = hashlib.blake2b(f"{key}:{i}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") / 2**64


class Wave:
    """A load that moves between ``lo`` and ``hi`` of ``peak`` with a period of its
    own, and its integral (a counter that never goes back)."""

    def __init__(self, key: str, peak: float, lo: float = 0.05, hi: float = 0.9) -> None:
        mean = lo + (hi - lo) * _mix(key, 1)
        self.mean = peak * mean
        self.amp = min(self.mean, peak - self.mean) * (0.3 + 0.6 * _mix(key, 2))
        self.period = 120.0 + 1080.0 * _mix(key, 3)
        self.phase = 2 * math.pi * _mix(key, 4)

    def at(self, t: float) -> float:
        return self.mean + self.amp * math.sin(2 * math.pi * t / self.period + self.phase)

    def total(self, start: float, t: float) -> float:
        """The integral from ``start`` to ``t``."""
        if t <= start:
            return 0.0
        w = 2 * math.pi / self.period
        return (self.mean * (t - start)
                - self.amp / w * (math.cos(w * t + self.phase) - math.cos(w * start + self.phase)))


def _unix(dt: str) -> float:
    try:
        return float(calendar.timegm((int(dt[0:4]), int(dt[4:6]), int(dt[6:8]),
                                      int(dt[9:11]), int(dt[12:14]), int(dt[15:17]), 0, 0, 0)))
    except (ValueError, IndexError):
        return 0.0


def _when(sim: Simulator, arg: str) -> tuple[str, float]:
    """``ADDRESS`` or ``ADDRESS@OFFSET``: the host, and the time to describe it at
    (the seed's epoch plus the tool's own offset when the simulator does not drift)."""
    address, _, offset = arg.partition("@")
    try:
        off = float(offset) if offset else 0.0
    except ValueError:
        off = 0.0
    if not math.isfinite(off) or not 0 <= off <= 86400 * 366:
        off = 0.0
    return address, (sim.epoch + off) if not sim.drift else time.time()


def snapshot(sim: Simulator, arg: str) -> dict[str, Any]:
    """The host at ``arg`` (an address) as its dom0 sees it: its CPUs and memory, and
    a domain per running or paused VM resident on it, dom0 first."""
    from xsctl.sim.control import ControlError

    address, t = _when(sim, arg)
    store = sim.store
    with store.lock:
        host_ref = next((r for r, h in store.all("host").items() if h["address"] == address),
                        None)
        if host_ref is None:
            raise ControlError(f"the pool has no host at {address!r}")
        host = store.get(host_ref, "host")
        metrics: Any = store.find(host["metrics"]) if host["metrics"] != NULL else None
        cpus = [c for c in store.all("host_cpu").values() if c["host"] == host_ref]
        xen = str((host["software_version"] or {}).get("xen", "4.17"))
        domains = []
        for ref in host["resident_VMs"]:
            vm = store.find(ref)
            if vm is None or vm["power_state"] not in ("Running", "Paused"):
                continue
            domains.append(_domain(store, ref, vm, t))
        domains.sort(key=lambda d: d["domid"])
        master = next(iter(store.all("pool").values()))["master"] == host_ref
    return {
        "time": t,
        "host": {"name": host["name_label"], "address": address, "uuid": host["uuid"],
                 "master": master, "cpus": len(cpus) or 1,
                 "cpu_mhz": int(cpus[0]["speed"]) if cpus else 2000,
                 "memory_total": int((metrics or {}).get("memory_total") or 0),
                 "memory_free": int((metrics or {}).get("memory_free") or 0),
                 "xen": xen, "boot": _boot(host, t)},
        "domains": domains,
    }


def _boot(host: dict[str, Any], t: float) -> float:
    try:
        boot = float((host["other_config"] or {}).get("boot_time", ""))
    except ValueError:
        return t - 86400 * 12
    return min(boot, t) if math.isfinite(boot) else t - 86400 * 12


def _running_time(pauses: dict[str, tuple[float | None, float]], ref: str, paused: bool,
                  t: float) -> float:
    """The time on the domain's own clock, which stops while it is paused: its
    counters stand still then, as a paused domain does nothing."""
    since, before = pauses.get(ref, (None, 0.0))
    if paused:
        if since is None or since > t:
            since = t
        pauses[ref] = (since, before)
        return since - before
    if since is not None:
        before += max(0.0, t - since)
        pauses[ref] = (None, before)
    return t - before


def _domain(store: Any, ref: str, vm: Any, t: float) -> dict[str, Any]:
    uuid = vm["uuid"]
    m = store.find(vm["metrics"]) if vm["metrics"] != NULL else None
    control = bool(vm["is_control_domain"])
    vcpus = int((m or {}).get("VCPUs_number") or 0) or int(vm["VCPUs_at_startup"]) or 1
    memory = int((m or {}).get("memory_actual") or 0) or int(vm["memory_dynamic_max"])
    start = _unix(str((m or {}).get("start_time", ""))) or (t - 3600)
    start = min(start, t)
    paused = vm["power_state"] == "Paused"
    # dom0 idles: its load is xapi, xenopsd, tapdisks and qemus at work for the guests
    cpu = Wave(uuid + ":cpu", 1.0 if control else vcpus, 0.03, 0.3 if control else 0.8)
    vifs, vbds, vdis = [], [], []
    for v in vm["VIFs"]:
        row = store.find(v)
        if row is not None and row["currently_attached"]:
            vifs.append(row["device"])
    for b in vm["VBDs"]:
        row = store.find(b)
        if row is None or not row["currently_attached"] or row["empty"]:
            continue
        vbds.append(row["device"] or row["userdevice"])
        vdi = store.find(row["VDI"]) if row["VDI"] != NULL else None
        if vdi is not None:
            vdis.append({"uuid": vdi["uuid"], "sr": (store.find(vdi["SR"]) or {}).get("uuid", "")})
    net = Wave(uuid + ":net", 2000.0, 0.01, 0.6)  # KiB/s, both ways
    disk = Wave(uuid + ":disk", 400.0, 0.0, 0.5)  # requests/s
    now_cpu = 0.0 if paused else max(0.0, cpu.at(t))
    t = _running_time(store.runtime.dom0_pauses, ref, paused, t)
    return {
        "domid": int(vm["domid"]), "name": vm["name_label"], "uuid": uuid,
        "control": control, "paused": paused, "hvm": vm["domain_type"] == "hvm",
        "vcpus": vcpus, "memory": memory,
        "maxmem": None if control else int(vm["memory_static_max"]),
        "start": start,
        "cpu_pct": 100.0 * now_cpu,
        "cpu_s": cpu.total(start, t),
        "net_tx_k": 0.4 * net.total(start, t) if vifs else 0.0,
        "net_rx_k": 0.6 * net.total(start, t) if vifs else 0.0,
        "net_now": 0.0 if paused or not vifs else net.at(t),
        "vbd_rd": 0.6 * disk.total(start, t) if vbds else 0.0,
        "vbd_wr": 0.4 * disk.total(start, t) if vbds else 0.0,
        "disk_now": 0.0 if paused or not vbds else disk.at(t),
        "vifs": vifs, "vbds": vbds, "vdis": vdis,
    }


# ---------------------------------------------------------------- the executables

# Both a shell script and Python: sh runs the next line (exec the interpreter on this
# file), Python reads it as a string. A "#!" line holding the interpreter's path
# would break where the path has a space (a home folder "admin's files").
_SCRIPT = """#!/bin/sh
"exec" {python} "$0" "$@"
# A simulated dom0 tool: asks the xsctl simulator for the host {address}.
import runpy, sys
tools = runpy.run_path({module!r}, run_name="xsctl_dom0_tool")
sys.exit(tools["main"]({tool!r}, sys.argv[1:], {config!r}))
"""


def _quoted(path: str) -> str:
    """Single-quoted for sh, always: a string literal to Python too ('a'"'"'b')."""
    return "'" + path.replace("'", "'\"'\"'") + "'"


def write_tools(sim: Simulator, folder: str | Path) -> Path:
    """The simulated dom0 tools of every host, in ``folder/ADDRESS/``; returns
    ``folder``. The control token is in them: the folder is made private."""
    base = Path(folder)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    module = str(Path(__file__).with_name("dom0_tools.py"))
    info = sim.info()
    master = sim.master_address()
    for h in info["hosts"]:
        address = h["address"]
        d = base / address
        d.mkdir(mode=0o700, exist_ok=True)
        config = {"control": info["control"], "token": info["control_token"],
                  "host": address, "state": str(d / "state")}
        for tool in TOOLS + (OPROFILE if address == master else ()):
            path = d / tool
            path.write_text(_SCRIPT.format(python=_quoted(sys.executable), address=address,
                                           module=module, tool=tool, config=config),
                            encoding="utf-8")
            path.chmod(stat.S_IRWXU)
    return base
