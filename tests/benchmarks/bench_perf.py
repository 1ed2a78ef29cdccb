"""Performance view benchmark (a script, not a test): what one refresh of a VM's graphs
costs at 10,000 VMs, against the same at the demo's 25 VMs in the same run.

* Bytes per refresh: each host's /rrd_updates answer for one round of the metrics feed
  as the view asks it (this VM only, the last 30 s), read with http.client and nothing
  of xsctl's; against it, the answer for every VM of the pool (a client that asks for
  everything and filters later), which is what a round would cost without the feed's
  interest filter. One request per host per round either way.
* UI thread per refresh: the real app headless at 80x24, the Performance view on a
  running VM; a real feed round (taken from the simulator) handed to the view as the
  feed hands it, one new 5 s row each time; timed from the handler's start until the
  app is idle again (the graphs redrawn), median of ROUNDS.
* The history read (10 minutes, 120 rows) that opening the graphs costs: the request
  and its parsing, outside the UI thread.

    python tests/benchmarks/bench_perf.py [--vms 10000] [--baseline-vms 25] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from xsctl.sim import Simulator  # noqa: E402
from xsctl.ui.app import create_app  # noqa: E402
from xsctl.ui.messages import MetricsUpdated  # noqa: E402
from xsctl.ui.views.performance import PerformanceView  # noqa: E402
from xsctl.xapi.client import Client, KnownHosts, Target  # noqa: E402
from xsctl.xapi.metrics import PERIODS, MetricsUpdate, history  # noqa: E402


def answer_bytes(sim: Simulator, address: str, session: str, vm_uuids: list[str] | None) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection(address, sim.port, context=ctx, timeout=60)
    q = [("start", "-30"), ("cf", "AVERAGE"), ("interval", "5"), ("host", "false"),
         ("session_id", session)] + [("vm_uuid", u) for u in vm_uuids or ()]
    try:
        c.request("GET", "/rrd_updates?" + urlencode(q), headers={"Accept": "application/json"})
        r = c.getresponse()
        body = r.read()
        return len(body) if r.status == 200 else 0
    finally:
        c.close()


async def ui_rounds(client: Client, vm_ref: str, rounds: int) -> tuple[float, float]:
    """(median ms of the handler alone, median ms until the app is idle again)."""
    app = create_app(client, metrics=False)
    handler: list[float] = []
    idle: list[float] = []
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("9")
        view = app.screen.query_one(PerformanceView)
        view.show_related(vm_ref)
        for _ in range(400):
            if view.hist is not None and view.hist.kind == "vm":
                break
            await pilot.pause(0.05)
        await pilot.pause()
        h = view.hist
        assert h is not None
        vm = client.cache.get("vm", vm_ref) or {}
        host_ref = str(vm.get("resident_on"))
        real = client.metrics.round(False, frozenset({h.uuid}))
        for i in range(rounds):
            t = h.times[-1] + 5
            update = MetricsUpdate(real.at, real.values, {}, {host_ref: t})
            t0 = time.perf_counter()
            view.on_metrics_updated(MetricsUpdated(update))
            t1 = time.perf_counter()
            await pilot.pause()
            t2 = time.perf_counter()
            assert h.times[-1] == t, i
            handler.append((t1 - t0) * 1000)
            idle.append((t2 - t0) * 1000)
    return statistics.median(handler), statistics.median(idle)


def measure(vms: int, rounds: int) -> dict[str, Any]:
    sim = Simulator(vms=vms, password="bench", op_time=0.0, auth_fail_delay=0.0,
                    drift=False).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            client = Client.connect(
                Target(url=sim.url, user=sim.user, accept_fingerprint=sim.fingerprint),
                sim.password, known=KnownHosts(Path(tmp) / "known_hosts"))
            client.load()
            load_s = time.perf_counter() - t0
            try:
                vm_ref, vm = next((r, v) for r, v in client.cache.all("vm").items()
                                  if v.get("power_state") == "Running"
                                  and not v.get("is_control_domain"))
                session = client.conn.session or ""
                hosts = [str(h["address"]) for h in client.cache.all("host").values()]
                one = sum(answer_bytes(sim, a, session, [str(vm["uuid"])]) for a in hosts)
                every = sum(answer_bytes(sim, a, session, None) for a in hosts)
                t0 = time.perf_counter()
                h = history(client.conn, client.cache, "vm", vm_ref, PERIODS["10m"])
                hist_ms = (time.perf_counter() - t0) * 1000
                assert len(h.times) == 120
                handler_ms, idle_ms = asyncio.run(ui_rounds(client, vm_ref, rounds))
            finally:
                client.close()
    finally:
        sim.stop()
    return {"vms": vms, "hosts": len(hosts), "load_s": load_s, "bytes_view": one,
            "bytes_every_vm": every, "history_ms": hist_ms, "handler_ms": handler_ms,
            "idle_ms": idle_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--baseline-vms", type=int, default=25)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    base = measure(args.baseline_vms, args.rounds)
    big = measure(args.vms, args.rounds)
    print(f"{'':34}{base['vms']:>12,} VMs{big['vms']:>12,} VMs")
    rows = [
        ("bytes per refresh, this VM", "bytes_view", "{:,.0f} B"),
        ("bytes per refresh, every VM", "bytes_every_vm", "{:,.0f} B"),
        ("history read (10 min, 120 rows)", "history_ms", "{:.1f} ms"),
        ("UI thread: handler", "handler_ms", "{:.2f} ms"),
        ("UI thread: until idle (redrawn)", "idle_ms", "{:.2f} ms"),
    ]
    for label, key, f in rows:
        print(f"{label:<34}{f.format(base[key]):>16}{f.format(big[key]):>16}")
    print(f"requests per refresh: one per host ({big['hosts']}), at either size")
    print(f"every VM's figures would be {big['bytes_every_vm'] / max(1, big['bytes_view']):,.0f}x "
          "the bytes of this VM's at the larger size")


if __name__ == "__main__":
    main()
