"""Client benchmark (a script, not a test): for each pool size, a simulator in its own
process (metric drift off, see support.QUIET_SIM), then, each in a fresh child process
so that peak memory is that client's own (ru_maxrss, read from outside):

* the growth sweep: a cold load of xsctl's cache (get_all_records per class over
  JSON-RPC), of Xen Orchestra's ``xen-api`` npm client loading the same classes (where
  node is present; installed into a temporary folder at run time), and of the standard
  library alone (http.client and json.loads, the cyclic collector on: the floor), in
  turns, the median of ``--repeat``; then the growth from size to size;
* at the first size, every start-up way: JSON-RPC and XML-RPC (through the XenAPI
  package), get_all_records per class and a token-less event.from, and their ratio;
* at the first size, the delay from a VM change in the simulator to the cache's
  listener.

Before the timed loads, one untimed load warms the simulator (its first
get_all_records of a class builds what it serves and costs it ~2x).

    python tests/benchmarks/bench_client.py [--vms 10000,30000,50000] [--repeat 3]
                                            [--rounds 20] [--no-xo] [--no-modes] [--drift]

Targets (issue 7): at every size a cold load no slower than XO's client and a peak
memory below XO's, and a cost that grows linearly (the client's CPU time per VM at the
largest size within 15% of the smallest; the wall time also holds the simulator's own
work, printed alongside); (client core) JSON-RPC at least 5x faster than XML-RPC;
the event delay under 100 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from tests.benchmarks import support  # noqa: E402

LINEAR = 1.15  # the time per VM may grow this much from the smallest to the largest pool


def child(mode: str, info: dict[str, Any], rounds: int) -> dict[str, Any]:
    from xsctl.xapi.cache import Cache, Changes
    from xsctl.xapi.client import Client, Target

    class TimedCache(Cache):
        """Notes how long the two phases of a load take."""

        fetch_s = 0.0
        apply_s = 0.0

        def _fetch_all(self) -> Any:
            t = time.perf_counter()
            try:
                return super()._fetch_all()
            finally:
                self.fetch_s = time.perf_counter() - t

        def _replace_all(self, fresh: Any) -> Changes:
            t = time.perf_counter()
            try:
                return super()._replace_all(fresh)
            finally:
                self.apply_s = time.perf_counter() - t

    transport, strategy = mode.split("-")
    target = Target(url=info["url"], user=info["user"], transport=transport,
                    accept_fingerprint=info["fingerprint"], timeout=600)
    cpu0 = support.cpu_s()
    t0 = time.perf_counter()
    client = Client.connect(target, info["password"])
    connect_s = time.perf_counter() - t0
    cache = client.cache = TimedCache(client.conn, strategy=strategy)
    cache.load()
    load_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "mode": mode,
        "protocol": client.conn.protocol,
        "load_s": load_s,
        "cpu_s": support.cpu_s() - cpu0,
        "connect_s": connect_s,
        "fetch_s": cache.fetch_s,
        "apply_s": cache.apply_s,
        "vms": sum(1 for r in client.cache.all("vm").values()
                   if not (r["is_a_template"] or r["is_control_domain"] or r["is_a_snapshot"])),
    }
    if rounds:
        out["event_delay_ms"] = event_delays(client, target, info, rounds)
    client.close()
    return out


def event_delays(client: Any, target: Any, info: dict[str, Any], rounds: int) -> dict[str, float]:
    from xsctl.xapi.cache import Changes
    from xsctl.xapi.client import Client

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
    return {"median": statistics.median(delays), "p95": sorted(delays)[int(0.95 * (len(delays) - 1))],
            "max": max(delays)}


def ours_cmd(mode: str, info_file: str, rounds: int = 0) -> list[str]:
    return [sys.executable, __file__, "--child", mode, "--info", info_file, "--rounds", str(rounds)]


def sweep_one(n: int, args: argparse.Namespace, env: dict[str, str], tmp: str,
              xo: str | None) -> dict[str, Any]:
    t = time.perf_counter()
    sim, info = support.start_sim(n, drift=args.drift)
    print(f"simulator with {n:,} VMs ready in {time.perf_counter() - t:.1f} s (own process, "
          f"metric drift {'on' if args.drift else 'off'})", flush=True)
    info_file = support.write_info(tmp, info, f"info-{n}.json")
    res: dict[str, Any] = {"ours": [], "xo": [], "floor": []}
    try:
        support.run_child(ours_cmd("json-records", info_file), env)  # warms the simulator
        for _ in range(args.repeat):
            res["ours"].append(support.run_child(ours_cmd("json-records", info_file), env))
            if xo:
                res["xo"].append(support.run_child(support.xo_cmd(xo, info_file), env))
            res["floor"].append(support.run_child(support.floor_cmd(info_file), env))
        if n == args.sizes[0] and not args.no_modes:
            res["modes"] = {}
            for mode, rounds in (("json-records", args.rounds), ("json-event", 0),
                                 ("xml-records", 0), ("xml-event", 0)):
                res["modes"][mode] = support.run_child(ours_cmd(mode, info_file, rounds), env)
    finally:
        support.stop_sim(sim)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", default="10000",
                    help="pool sizes, comma-separated (e.g. 10000,30000,50000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed cold loads per client and size")
    ap.add_argument("--rounds", type=int, default=20, help="VM changes for the event delay")
    ap.add_argument("--no-xo", action="store_true", help="no comparison with XO's client")
    ap.add_argument("--xo-version", default=support.XO_VERSION)
    ap.add_argument("--no-modes", action="store_true",
                    help="skip XML-RPC, event.from start-up and the event delay")
    ap.add_argument("--drift", action="store_true",
                    help="the simulator with its 5-second metric drift (xsctl sim)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--info", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        with open(args.info) as f:
            info = json.load(f)
        print(json.dumps(child(args.child, info, args.rounds)))
        return
    args.sizes = sorted({int(x.replace("_", "").replace(",", "")) for x in args.vms.split(",")
                         if x.strip()})

    tmp = tempfile.mkdtemp(prefix="xsctl-bench-")
    env = support.bench_env(tmp)
    xo, xo_text = (None, "no comparison with Xen Orchestra's client (--no-xo)") if args.no_xo \
        else support.xo_client(tmp, args.xo_version)
    print(f"comparing with: {xo_text}", flush=True)
    results = {n: sweep_one(n, args, env, tmp, xo) for n in args.sizes}
    report(args, results, xo is not None, xo_text)


def report(args: argparse.Namespace, results: dict[int, dict[str, Any]], with_xo: bool,
           xo_text: str) -> None:
    med = support.median

    def of(n: int, who: str, key: str = "load_s") -> float:
        runs = results[n][who]
        return med([r.out[key] for r in runs]) if runs else float("nan")

    def rss(n: int, who: str) -> float:
        runs = results[n][who]
        return med([r.rss_mb for r in runs]) if runs else float("nan")

    print(f"\ncold load, each in a fresh process, median of {args.repeat}: wall time, the "
          "process's CPU time\n(user+system; the rest of the wall time is mostly waiting for "
          "the simulator), its peak RSS")
    print("  xsctl: Client.connect + Cache.load (get_all_records per class, JSON-RPC)")
    print(f"  XO:    {xo_text}: createClient .. objectsFetched, the same "
          f"{len(support.CLASSES)} classes")
    print("  floor: the standard library alone (tests/jsonrpc.py: http.client + json.loads)")
    cols = [("xsctl", "ours")] + ([("XO", "xo")] if with_xo else []) + [("floor", "floor")]
    print(f"{'':>8}" + "".join(f" {name:^24}" for name, _ in cols)
          + (f" {'xsctl/XO':>9}" if with_xo else ""))
    print(f"{'VMs':>8}" + " {:>8} {:>7} {:>7}".format("wall", "CPU", "RSS") * len(cols)
          + (f" {'wall':>9}" if with_xo else ""))
    for n in args.sizes:
        row = f"{n:>8,}"
        for _, who in cols:
            row += f" {of(n, who):>7.2f}s {of(n, who, 'cpu_s'):>6.2f}s {rss(n, who):>5.0f}MB"
        if with_xo:
            row += f" {of(n, 'ours') / of(n, 'xo'):>8.2f}x"
        print(row)
    print("  xsctl per VM, and its load in parts (median): connect / fetch and decode / apply")
    for n in args.sizes:
        print(f"  {n:>8,}: {of(n, 'ours') / n * 1e6:5.1f} us wall, "
              f"{of(n, 'ours', 'cpu_s') / n * 1e6:5.1f} us CPU; "
              f"{of(n, 'ours', 'connect_s'):.2f} / {of(n, 'ours', 'fetch_s'):.2f} / "
              f"{of(n, 'ours', 'apply_s'):.2f} s")

    if len(args.sizes) > 1:
        print("\ngrowth from size to size (x the pool -> x the wall time, x the CPU time, "
              "x the peak RSS):")
        for a, b in zip(args.sizes, args.sizes[1:], strict=False):
            parts = []
            for name, who in cols:
                parts.append(f"{name} x{of(b, who) / of(a, who):.2f} / "
                             f"x{of(b, who, 'cpu_s') / of(a, who, 'cpu_s'):.2f} / "
                             f"x{rss(b, who) / rss(a, who):.2f}")
            print(f"  {a:>6,} -> {b:>6,} (x{b / a:.2f}): " + "; ".join(parts))

    def ok(good: bool) -> str:
        return "ok" if good else "MISSED"

    print()
    small, large = args.sizes[0], args.sizes[-1]
    if len(args.sizes) > 1:
        cpu = (of(large, "ours", "cpu_s") / large) / (of(small, "ours", "cpu_s") / small)
        wall = (of(large, "ours") / large) / (of(small, "ours") / small)
        print(f"linear: xsctl's CPU time per VM at {large:,} is x{cpu:.2f} that at {small:,} "
              f"(target <= x{LINEAR}): {ok(cpu <= LINEAR)}; its wall time per VM x{wall:.2f}, "
              "simulator included")
    if with_xo:
        slower = [n for n in args.sizes if of(n, "ours") > of(n, "xo")]
        heavier = [n for n in args.sizes if rss(n, "ours") >= rss(n, "xo")]
        print(f"cold load no slower than XO's at every size: "
              f"{ok(not slower)}{'' if not slower else f' (slower at {slower})'}")
        print(f"peak memory below XO's at every size: "
              f"{ok(not heavier)}{'' if not heavier else f' (not at {heavier})'}")
    else:
        print(f"no comparison with XO: {xo_text}")

    modes = results[small].get("modes")
    if modes:
        print(f"\nstart-up ways at {small:,} VMs (one cold load each):")
        print(f"{'mode':<14} {'protocol':<9} {'VMs':>6} {'cold load':>10} {'peak RSS':>10}")
        for mode, r in modes.items():
            print(f"{mode:<14} {r.out['protocol']:<9} {r.out['vms']:>6} "
                  f"{r.out['load_s']:>9.2f}s {r.rss_mb:>8.0f}MB")
        best_json = min(modes["json-records"].out["load_s"], modes["json-event"].out["load_s"])
        best_xml = min(modes["xml-records"].out["load_s"], modes["xml-event"].out["load_s"])
        ratio = best_xml / best_json
        print(f"JSON-RPC vs XML-RPC cold load: {ratio:.1f}x faster (target >= 5x): "
              f"{ok(ratio >= 5)}")
        strategy = ("get_all_records per class" if modes["json-records"].out["load_s"]
                    <= modes["json-event"].out["load_s"] else "token-less event.from")
        print(f"faster start-up over JSON-RPC: {strategy}")
        d = modes["json-records"].out.get("event_delay_ms")
        if d:
            print(f"VM change -> cache listener: median {d['median']:.1f} ms, p95 "
                  f"{d['p95']:.1f} ms, max {d['max']:.1f} ms (target < 100 ms): "
                  f"{ok(d['p95'] < 100)}")


if __name__ == "__main__":
    main()
