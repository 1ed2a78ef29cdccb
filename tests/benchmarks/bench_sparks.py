"""CPU sparkline columns benchmark (a script, not a test): what a refresh of the VM
list's CPU column costs at 10,000 VMs, against the list without it, in the same run.

* UI thread per refresh: the real app headless at 80x24 on the VM list; a real feed
  round (the running VMs on screen, one new 5 s row: the simulator's RRD clock moved
  by hand) handed to the view as the feed hands it; timed: the handler (the trail,
  the rows whose line changed replaced), then the table's lines on screen rendered
  as the compositor asks them (the lines of unchanged rows are kept). Baseline: the
  same screen of the list rendered from scratch before the column had any figure
  (the list without the column's work), and with the lines. The same for the Status
  view's host rows.
* Bytes per refresh: each host's /rrd_updates answer for one round as the feed asks
  it (the VMs on screen resident there, the rows since the last answer), read with
  http.client and nothing of xsctl's; the first round after the view is shown (the
  last 5 minutes of those VMs); against it, one round of every VM of the pool (a list
  that asked for all and drew the rows on screen).
* Requests per refresh: counted by the feed.

    python tests/benchmarks/bench_sparks.py [--vms 10000] [--rounds 30]
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from textual.geometry import Region  # noqa: E402

from xsctl.sim import Simulator  # noqa: E402
from xsctl.ui.app import create_app  # noqa: E402
from xsctl.ui.messages import MetricsUpdated  # noqa: E402
from xsctl.ui.views.status import StatusView  # noqa: E402
from xsctl.ui.views.vms import VmsView  # noqa: E402
from xsctl.ui.widgets.table import VirtualTable  # noqa: E402
from xsctl.xapi.client import Client, KnownHosts, Target  # noqa: E402
from xsctl.xapi.perf import TRAIL_SPAN  # noqa: E402


def answer_bytes(sim: Simulator, address: str, session: str, start: int, host: bool,
                 vm_uuids: list[str] | None) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection(address, sim.port, context=ctx, timeout=120)
    q = [("start", str(start)), ("cf", "AVERAGE"), ("interval", "5"),
         ("host", "true" if host else "false"), ("json", "true"),
         ("session_id", session)] + [("vm_uuid", u) for u in vm_uuids or ()]
    try:
        c.request("GET", "/rrd_updates?" + urlencode(q), headers={"Accept": "application/json"})
        r = c.getresponse()
        body = r.read()
        return len(body) if r.status == 200 else 0
    finally:
        c.close()


def ms(xs: list[float]) -> tuple[float, float]:
    """(median, p95) in ms."""
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


async def until(pred: Callable[[], Any], pause: Callable[[float], Awaitable[None]],
                what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await pause(0.05)


def draw(table: VirtualTable) -> float:
    """ms to render the table's lines on screen, as the compositor asks them."""
    region = Region(0, 0, table.size.width, table.size.height)
    t0 = time.perf_counter()
    table.render_lines(region)
    return (time.perf_counter() - t0) * 1000


def scratch(table: VirtualTable) -> float:
    """ms to render them with no line kept from an earlier paint."""
    table._strips.clear()
    table._styles_cache.clear()  # Textual's own cache of the lines drawn
    return draw(table)


async def ui_rounds(sim: Simulator, client: Client, rounds: int) -> dict[str, Any]:
    feed = client.metrics
    feed.interval = 3600.0  # the feed's own thread makes the first rounds; these are by hand
    app = create_app(client, metrics=True)
    out: dict[str, Any] = {}
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("2")
        view = app.screen.query_one(VmsView)
        table = view.table
        await until(lambda: table.order and table.window(), pilot.pause, "the VM rows")
        # the list without the column's work: drawn before any figure came
        base = [scratch(table) for _ in range(rounds)]
        await until(lambda: any(view.rows.trails.values()) if view.rows else False,
                    pilot.pause, "the first lines")
        out["on_screen"] = dict(view._on_screen)  # uuid -> ref of the running VMs shown
        with_lines = [scratch(table) for _ in range(rounds)]
        handler: list[float] = []
        drawn: list[float] = []
        requests: list[int] = []
        for _ in range(rounds):
            assert sim.rrd_time is not None
            sim.rrd_time += 5
            asked = feed.requests
            update = await asyncio.to_thread(feed.round, False, frozenset(view._on_screen),
                                             TRAIL_SPAN)
            requests.append(feed.requests - asked)
            await pilot.pause()
            draw(table)  # what was there is kept, as between two rounds
            t0 = time.perf_counter()
            view.on_metrics_updated(MetricsUpdated(update))
            handler.append((time.perf_counter() - t0) * 1000)
            drawn.append(handler[-1] + draw(table))
        out |= {"base": ms(base), "with_lines": ms(with_lines), "handler": ms(handler),
                "drawn": ms(drawn), "requests": max(requests)}

        # the Status view's host rows
        await pilot.press("1")
        status = app.screen.query_one(StatusView)
        hosts = status.query_one("#status-hosts", VirtualTable)
        await pilot.pause()
        sbase = [scratch(hosts) for _ in range(rounds)]
        shandler: list[float] = []
        sdrawn: list[float] = []
        for _ in range(rounds):
            sim.rrd_time += 5
            update = await asyncio.to_thread(feed.round, True, frozenset(), TRAIL_SPAN)
            await pilot.pause()
            draw(hosts)
            t0 = time.perf_counter()
            status.on_metrics_updated(MetricsUpdated(update))
            shandler.append((time.perf_counter() - t0) * 1000)
            sdrawn.append(shandler[-1] + draw(hosts))
        assert status.trails and all(status.trails.values())
        out |= {"status_base": ms(sbase), "status_handler": ms(shandler),
                "status_drawn": ms(sdrawn)}
    return out


def measure(vms: int, rounds: int) -> dict[str, Any]:
    sim = Simulator(vms=vms, password="bench", op_time=0.0, auth_fail_delay=0.0,
                    drift=False, rrd_time=float((int(time.time()) // 5) * 5)).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            client = Client.connect(
                Target(url=sim.url, user=sim.user, accept_fingerprint=sim.fingerprint),
                sim.password, known=KnownHosts(Path(tmp) / "known_hosts"))
            client.load()
            try:
                ui = asyncio.run(ui_rounds(sim, client, rounds))
                session = client.conn.session or ""
                cache = client.cache
                per_host: dict[str, list[str]] = {}
                for uuid, ref in ui["on_screen"].items():
                    r = cache.get("vm", ref) or {}
                    per_host.setdefault(str(r.get("resident_on")), []).append(uuid)
                steady = first = every = hosts_only = 0
                for href, h in cache.all("host").items():
                    address = str(h["address"])
                    mine = per_host.get(href)
                    if mine:
                        steady += answer_bytes(sim, address, session, -5, False, mine)
                        first += answer_bytes(sim, address, session, -TRAIL_SPAN, False, mine)
                    every += answer_bytes(sim, address, session, -5, False, None)
                    dom0 = next(str(v["uuid"]) for v in (cache.get("vm", x) for x in
                                h.get("resident_VMs") or ()) if v and v.get("is_control_domain"))
                    hosts_only += answer_bytes(sim, address, session, -5, True, [dom0])
            finally:
                client.close()
    finally:
        sim.stop()
    return ui | {"vms": vms, "hosts": len(per_host), "pool_hosts": len(cache.all("host")),
                 "bytes_steady": steady, "bytes_first": first, "bytes_every": every,
                 "bytes_hosts": hosts_only}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    r = measure(args.vms, args.rounds)
    print(f"{r['vms']:,} VMs, {r['pool_hosts']} hosts, 80x24, {len(r['on_screen'])} running VMs "
          f"on screen, {args.rounds} rounds")
    print(f"{'UI thread per refresh (median / p95)':<46}")
    for label, key in (("VM list drawn, no figures yet (baseline)", "base"),
                       ("VM list drawn, with the lines", "with_lines"),
                       ("VM list, a round: handler", "handler"),
                       ("VM list, a round: handler + rows redrawn", "drawn"),
                       ("Status hosts drawn, no figures (baseline)", "status_base"),
                       ("Status hosts, a round: handler", "status_handler"),
                       ("Status hosts, a round: + rows redrawn", "status_drawn")):
        med, p95 = r[key]
        print(f"  {label:<44}{med:>8.2f} ms {p95:>8.2f} ms")
    print("Bytes per refresh (one round, all hosts)")
    for label, key in (("VM list: the VMs on screen, next row", "bytes_steady"),
                       ("VM list: first round, their last 5 min", "bytes_first"),
                       ("every VM of the pool, next row (not asked)", "bytes_every"),
                       ("Status: the hosts' own series, next row", "bytes_hosts")):
        print(f"  {label:<44}{r[key]:>12,} B")
    print(f"requests per round: {r['requests']} (the hosts holding a running VM on screen: "
          f"{r['hosts']} of {r['pool_hosts']})")
    print(f"every VM's figures would be {r['bytes_every'] / max(1, r['bytes_steady']):,.0f}x "
          "the bytes of the VMs on screen")


if __name__ == "__main__":
    main()
