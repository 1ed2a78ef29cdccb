"""Client benchmark (a script, not a test): a 10,000-VM simulator in its own process,
then, each in a fresh child process so that peak memory is the client's own:

* cold load of the cache over JSON-RPC (get_all_records per class, and a token-less
  event.from) and over XML-RPC through the XenAPI package, and their ratio;
* peak memory (ru_maxrss) of the client after the load;
* the delay from a VM change in the simulator to the cache's listener.

    python tests/benchmarks/bench_client.py [--vms 10000] [--rounds 20]

Targets (issue: client core): JSON-RPC at least 5x faster than XML-RPC; the event
delay under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)


def start_sim(vms: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    p = subprocess.Popen(
        [sys.executable, "-m", "xsctl", "sim", "--vms", str(vms), "--json",
         "--auth-fail-delay", "0", "--op-time", "0.05"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    return p, json.loads(line)


def child(mode: str, info: dict[str, Any], rounds: int) -> dict[str, Any]:
    from xsctl.xapi.cache import Cache, Changes
    from xsctl.xapi.client import Client, Target

    transport, strategy = mode.split("-")
    target = Target(url=info["url"], user=info["user"], transport=transport,
                    accept_fingerprint=info["fingerprint"], timeout=300)
    t0 = time.perf_counter()
    client = Client.connect(target, info["password"])
    client.cache = Cache(client.conn, strategy=strategy)
    client.cache.load()
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "mode": mode,
        "protocol": client.conn.protocol,
        "load_s": load_s,
        "vms": sum(1 for r in client.cache.all("vm").values()
                   if not r["is_a_template"] and not r["is_control_domain"]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if rounds:
        delays = []
        seen = threading.Event()
        target_ref: list[str] = []

        def listener(ch: Changes) -> None:
            if target_ref and target_ref[0] in ch.refs("vm"):
                seen.set()

        client.cache.subscribe(listener)
        client.cache.start()
        # a second, independent connection makes the changes
        writer = Client.connect(target, info["password"])
        ref = next(r for r, v in client.cache.all("vm").items()
                   if v["name_label"] == "vm-09999" or v["name_label"] == "web-01")
        target_ref.append(ref)
        time.sleep(0.5)
        for i in range(rounds):
            seen.clear()
            t = time.perf_counter()
            writer.conn.call("VM.set_name_description", ref, f"bench {i}")
            if not seen.wait(10):
                raise SystemExit("the change never reached the listener")
            delays.append((time.perf_counter() - t) * 1000)
            time.sleep(0.05)
        writer.close()
        out["event_delay_ms"] = {"median": statistics.median(delays),
                                 "p95": sorted(delays)[int(0.95 * (len(delays) - 1))],
                                 "max": max(delays)}
    client.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--info", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        with open(args.info) as f:
            info = json.load(f)
        print(json.dumps(child(args.child, info, args.rounds)))
        return

    env = dict(os.environ)
    tmp = tempfile.mkdtemp()
    env.update(XDG_CONFIG_HOME=f"{tmp}/config", XDG_STATE_HOME=f"{tmp}/state",
               PYTHONPATH=REPO)
    t = time.perf_counter()
    sim, info = start_sim(args.vms)
    print(f"simulator with {args.vms} VMs ready in {time.perf_counter() - t:.1f} s (own process)")
    info_file = os.path.join(tmp, "info.json")
    with open(info_file, "w") as f:
        json.dump(info, f)
    results = {}
    try:
        for mode, rounds in (("json-records", args.rounds), ("json-event", 0),
                             ("xml-records", 0), ("xml-event", 0)):
            r = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--info", info_file,
                 "--rounds", str(rounds)],
                capture_output=True, text=True, env=env, check=True,
            )
            results[mode] = json.loads(r.stdout.strip().splitlines()[-1])
    finally:
        sim.terminate()
        sim.wait(30)
    print(f"\n{'mode':<14} {'protocol':<9} {'VMs':>6} {'cold load':>10} {'peak RSS':>10}")
    for mode, r in results.items():
        print(f"{mode:<14} {r['protocol']:<9} {r['vms']:>6} {r['load_s']:>9.2f}s "
              f"{r['peak_rss_mb']:>8.0f}MB")
    best_json = min(results["json-records"]["load_s"], results["json-event"]["load_s"])
    best_xml = min(results["xml-records"]["load_s"], results["xml-event"]["load_s"])
    ratio = best_xml / best_json
    print(f"\nJSON-RPC vs XML-RPC cold load: {ratio:.1f}x faster (target >= 5x): "
          f"{'ok' if ratio >= 5 else 'MISSED'}")
    strategy = ("get_all_records per class" if results["json-records"]["load_s"]
                <= results["json-event"]["load_s"] else "token-less event.from")
    print(f"faster start-up over JSON-RPC: {strategy}")
    d = results["json-records"]["event_delay_ms"]
    print(f"VM change -> cache listener: median {d['median']:.1f} ms, p95 {d['p95']:.1f} ms, "
          f"max {d['max']:.1f} ms (target < 100 ms): {'ok' if d['p95'] < 100 else 'MISSED'}")


if __name__ == "__main__":
    main()
