"""What the benchmark scripts share: a simulator in its own process, children whose
peak memory is read from outside, the standard library's floor, and Xen Orchestra's
``xen-api`` client for comparison.

Run as a script it is one of those children:

    python tests/benchmarks/support.py floor INFO_FILE    # stdlib fetch and parse
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# The classes xsctl's cache reads at start-up (xsctl/xapi/cache.py CLASSES).
from xsctl.xapi.cache import CLASSES  # noqa: E402

XO_PACKAGE = "xen-api"
XO_VERSION = "4.7.6"  # the version measured against in issue 7
XO_DRIVER = os.path.join(HERE, "xo_load.mjs")

# ``xsctl sim`` with its metric drift off (Simulator(drift=False), as the screenshots
# use). At 30,000 VMs the first drift tick, 5 s after the simulator starts serving,
# fills the simulator's RRD sources under its store lock for ~4 s: a load that
# overlaps it waits that long (measured: 6.2 s against 2.1 s a few seconds later),
# whoever the client is. Later ticks cost it ~1 s of CPU every 5 s.
QUIET_SIM = """
import json, signal, sys, threading
from xsctl.sim.simulator import Simulator
sim = Simulator(vms=int(sys.argv[1]), op_time=0.05, auth_fail_delay=0, drift=False).start()
info = sim.info()
print(json.dumps({k: info[k] for k in ("url", "user", "password", "fingerprint")}), flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
stop.wait()
sim.stop()
"""


def bench_env(tmp: str) -> dict[str, str]:
    """Children get throw-away XDG folders (pins, state) and this checkout first."""
    env = dict(os.environ)
    env.update(XDG_CONFIG_HOME=f"{tmp}/config", XDG_STATE_HOME=f"{tmp}/state",
               XDG_CACHE_HOME=f"{tmp}/cache", PYTHONPATH=REPO)
    return env


def start_sim(vms: int, drift: bool = False) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """A simulator in its own process; ``info`` has its url, user, password and
    fingerprint, and ``started`` (when it began serving)."""
    cmd = ([sys.executable, "-m", "xsctl", "sim", "--vms", str(vms), "--json",
            "--auth-fail-delay", "0", "--op-time", "0.05"] if drift
           else [sys.executable, "-c", QUIET_SIM, str(vms)])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        raise SystemExit(f"the simulator with {vms} VMs did not start")
    return p, json.loads(line) | {"started": time.time()}


def stop_sim(p: subprocess.Popen[str]) -> None:
    p.terminate()
    p.wait(60)


def write_info(tmp: str, info: dict[str, Any], name: str) -> str:
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(info, f)
    return path


@dataclass
class Run:
    out: dict[str, Any]  # the JSON the child printed last
    wall_s: float  # from the start of the process to its end
    rss_mb: float  # the child's peak resident memory (ru_maxrss), read from outside


def run_child(cmd: list[str], env: dict[str, str], timeout: float = 600) -> Run:
    """Run one measuring child; its peak memory comes from wait4, so a Python child
    and a node child are measured the same way."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        killer = threading.Timer(timeout, p.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        if p.returncode:
            sys.stderr.write(err.read().decode(errors="replace"))
            raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({p.returncode})")
        lines = out.read().decode().strip().splitlines()
    return Run(json.loads(lines[-1]) if lines else {}, wall, usage.ru_maxrss / 1024)


def cpu_s() -> float:
    """The CPU time (user and system) this process has used so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def median(xs: list[float]) -> float:
    return statistics.median(xs)


# ------------------------------------------------------------------ the stdlib floor


def floor(info: dict[str, Any]) -> dict[str, Any]:
    """What the standard library takes to fetch and parse the records the cache reads:
    http.client and json.loads (tests/jsonrpc.py), one get_all_records per class,
    one after the other, with the interpreter's defaults (the cyclic collector on)."""
    from tests.jsonrpc import JsonRpcClient

    c = JsonRpcClient(info["url"], timeout=600)
    cpu0 = cpu_s()
    t0 = time.perf_counter()
    c.login(info["user"], info["password"])
    records = {cls: c(f"{cls}.get_all_records") for cls in CLASSES}
    took = time.perf_counter() - t0
    cpu = cpu_s() - cpu0
    c.logout()
    c.close()
    vms = sum(1 for r in records["VM"].values()
              if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"]))
    return {"load_s": took, "cpu_s": cpu, "vms": vms}


def floor_cmd(info_file: str) -> list[str]:
    return [sys.executable, __file__, "floor", info_file]


# ------------------------------------------------------------------ Xen Orchestra


def xo_client(tmp: str, version: str = XO_VERSION) -> tuple[str | None, str]:
    """Install Xen Orchestra's ``xen-api`` npm package into a folder of ``tmp`` (never
    into the checkout). Returns (its node_modules folder or None, what happened)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node and npm are not on this machine: no comparison with Xen " \
                     "Orchestra's client"
    where = os.path.join(tmp, "xo")
    os.makedirs(where, exist_ok=True)
    r = subprocess.run([npm, "install", "--prefix", where, "--no-audit", "--no-fund",
                        "--no-save", "--silent", f"{XO_PACKAGE}@{version}"],
                       capture_output=True, text=True, timeout=600)
    modules = os.path.join(where, "node_modules")
    if r.returncode or not os.path.isdir(os.path.join(modules, XO_PACKAGE)):
        why = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"npm could not install {XO_PACKAGE}@{version} ({why[0]}): no " \
                     "comparison with Xen Orchestra's client"
    return modules, f"Xen Orchestra's {XO_PACKAGE} {version} (node {_node_version()})"


def _node_version() -> str:
    r = subprocess.run(["node", "--version"], capture_output=True, text=True)
    return r.stdout.strip()


def xo_cmd(modules: str, info_file: str) -> list[str]:
    """XO's client loading the same classes as xsctl's cache, to objectsFetched."""
    return ["node", XO_DRIVER, modules, info_file, ",".join(CLASSES)]


def main() -> None:
    what, info_file = sys.argv[1:3]
    with open(info_file) as f:
        info = json.load(f)
    if what == "floor":
        print(json.dumps(floor(info)))
    else:
        raise SystemExit(f"unknown child {what!r}")


if __name__ == "__main__":
    main()


async def until(pred: Any, timeout: float = 120.0) -> float:
    """Let the app run until ``pred()`` holds; the time it did (perf_counter)."""
    import asyncio

    deadline = time.perf_counter() + timeout
    while not pred():
        if time.perf_counter() > deadline:
            raise SystemExit("timed out")
        await asyncio.sleep(0.001)
    return time.perf_counter()
