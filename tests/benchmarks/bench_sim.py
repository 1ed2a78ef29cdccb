"""Benchmark: a 10,000-VM simulated pool, over real HTTPS.

Not a test (pytest does not collect ``bench_*.py``); run it as a script::

    python tests/benchmarks/bench_sim.py [--vms 10000] [--repeat 2]

It prints the time to build the pool and start the listeners, then, per protocol,
the wall time a client sees for ``VM.get_all_records`` and for a token-less
``event.from(["*"], "", ...)`` (what XenCenter and xsctl do at connection), the reply
size, and how much of that time the simulator spent producing the reply (measured
in-process on the same data), so server cost and client parsing can be told apart.
The XML-RPC client is the official XenAPI package (CPython's xmlrpc.client parser);
the JSON-RPC client is tests/jsonrpc.py (json.loads).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import XenAPI

from tests.jsonrpc import JsonRpcClient
from xsctl.sim import Simulator, wire
from xsctl.sim.handlers import event as event_handlers


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return times, result


def fmt(times: list[float]) -> str:
    first = f"{times[0]:.2f} s"
    if len(times) == 1:
        return first
    return f"{first} first, {statistics.median(times[1:]):.2f} s after"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    t0 = time.perf_counter()
    sim = Simulator(vms=args.vms, password="bench", op_time=0.0, auth_fail_delay=0.0)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim.start()
    t_start = time.perf_counter() - t0
    store = sim.store
    rows = sum(len(t) for t in store.tables.values())
    print(f"pool: {len(store.all('VM'))} VM records ({args.vms} VMs + templates, snapshots, "
          f"dom0s), {rows} objects in all")
    print(f"build {t_build:.2f} s, start {t_start:.2f} s")

    try:
        x = XenAPI.Session(sim.url, ignore_ssl=True)
        x.xenapi.login_with_password(sim.user, sim.password, "1.0", "bench")
        j = JsonRpcClient(sim.url, timeout=300)
        j.login(sim.user, sim.password)

        # what the server spends producing each reply, on the same data
        vms = dict(store.all("VM"))
        with store.lock:
            events, last, msg_gen = event_handlers.collect(
                store, event_handlers.parse_subs(["*"]), 0, 0
            )
        batch = {"events": events, "valid_ref_counts": event_handlers.valid_ref_counts(store),
                 "token": event_handlers.make_token(last, msg_gen)}

        def xml_vms() -> str:
            return wire.xml_success(vms)

        def json_vms() -> str:
            return wire.json_success(vms, 1, 2)

        def xml_events() -> str:
            return wire.xml_success(batch)

        def json_events() -> str:
            return wire.json_success(batch, 1, 2)

        cases = [
            ("VM.get_all_records  XML-RPC", lambda: x.xenapi.VM.get_all_records(), xml_vms),
            ("VM.get_all_records  JSON-RPC", lambda: j("VM.get_all_records"), json_vms),
            ("event.from(*, '')   XML-RPC",
             lambda: x.xenapi.event_from(["*"], "", 30.0), xml_events),
            ("event.from(*, '')   JSON-RPC",
             lambda: j("event.from", ["*"], "", 30.0), json_events),
        ]
        # server side, cold: no record has been serialised yet
        cold: dict[str, float] = {}
        for label, _, enc in cases:
            for table in store.tables.values():
                for row in table.values():
                    row.invalidate()
            cold[label] = timed(enc, 1)[0][0]
        for table in store.tables.values():
            for row in table.values():
                row.invalidate()
        print()
        print(f"{'':30}{'client wall time':>32}{'reply':>9}"
              f"{'server encode (cold/warm)':>28}")
        for label, call, enc in cases:
            times, result = timed(call, args.repeat)
            warm, body = timed(enc, 1)
            n = len(result["events"]) if "events" in result else len(result)
            size = len(wire.encode_body(body)) / 1e6
            print(f"{label:30}{fmt(times):>32}{size:>6.0f} MB"
                  f"{cold[label]:>18.2f} s / {warm[0]:.2f} s   ({n} items)")
        x.xenapi.session.logout()
        j.logout()
        j.close()
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
