"""The Performance view: a host's or a VM's graphs, read from the host that holds the
RRD, with their scale and units; the periods xapi keeps; opened from the VMs view on
the VM under the cursor; following the metrics feed only while shown."""

from __future__ import annotations

import math
import time

from tests.conftest import make_sim
from tests.ui.harness import driving, frozen_clock, running, text_of
from tests.unit.helpers import connect
from tests.unit.test_metrics import direct, row_at
from xsctl.sim import Simulator
from xsctl.ui.app import create_app
from xsctl.ui.views.performance import Cores, Graph, PerformanceView
from xsctl.xapi.client import Client
from xsctl.xapi.perf import BLOCKS, fmt


def graphs(view: PerformanceView) -> dict[str, Graph]:
    return {g.fig.id: g for g in view.query(Graph)}


async def test_host_graphs_and_periods(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        await ui.press("9")
        view = ui.main.query_one(PerformanceView)
        assert ui.main.current_view == "performance"
        await ui.until(lambda: view.hist is not None, what="the host's history")
        await ui.handled()
        shown = graphs(view)
        assert {"cpu", "memory", "net_rx", "net_tx", "disk_read", "disk_write"} <= set(shown)
        title = text_of(view.query_one("#perf-title")).strip()
        assert title.startswith("xcp-ng-01 (host), 10 min: ") and title.endswith(" UTC")
        assert "\n" not in title  # one line at 80 columns
        cpu = shown["cpu"]
        axis = text_of(cpu.query_one(".graph-axis")).split()
        assert axis == [fmt(cpu.fig.high, "%"), fmt(cpu.fig.low, "%")]
        assert f"now {fmt(cpu.fig.now, '%')}" in text_of(cpu.query_one(".graph-title"))
        cores = view.query_one(Cores).lines
        assert cores[0].startswith("[b]CPU per core[/b]") and len(cores) == 1 + 16
        assert cores[1].startswith("CPU 0 ") and cores[1].rstrip()[-1] in BLOCKS
        assert len(view.hist.times) == 120 and view.hist.step == 5  # type: ignore[union-attr]

        for key, step, label in (("h", 60, "2 hours"), ("w", 3600, "week"),
                                 ("y", 86400, "year")):
            await ui.press(key)
            await ui.until(lambda s=step: view.hist is not None and view.hist.step == s,
                           what=label)
            await ui.handled()
            assert f"(host), {label}: " in text_of(view.query_one("#perf-title"))
        assert view.requests == 4  # one request per choice, no more


async def test_vm_graphs_from_the_vms_view(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        await ui.open_vms()
        await ui.go_to("web-01")
        await ui.press("f")
        assert ui.main.current_view == "performance"
        view = ui.main.query_one(PerformanceView)
        await ui.until(lambda: view.hist is not None and view.hist.kind == "vm",
                       what="the VM's history")
        await ui.handled()
        h = view.hist
        assert h is not None
        assert text_of(view.query_one("#perf-title")).strip().startswith("web-01 (VM), 10 min: ")
        shown = graphs(view)
        assert {"cpu", "memory", "disk_read", "disk_write", "iops_read", "iops_write",
                "net_rx", "net_tx"} <= set(shown)
        # the newest CPU figure is the mean of the vCPUs in the host's own answer
        vm = ui.vm("web-01")
        host = sim.store.get(vm["resident_on"], "host")
        raw = direct(sim, host["address"], client.conn.session or "", -595, [vm["uuid"]])
        row = row_at(raw, h.times[-1])
        cpus = [v for k, v in row.items() if k.startswith(f"AVERAGE:vm:{vm['uuid']}:cpu")]
        assert shown["cpu"].fig.now == 100 * sum(cpus) / len(cpus)
        assert ui.main.query_one(PerformanceView).table.cursor_key == ui.ref("web-01")

        halted = next(r for r, v in sim.store.all("VM").items()
                      if v["power_state"] == "Halted" and not v["is_a_template"])
        view.show_related(halted)
        await ui.until(lambda: "is not running" in text_of(view.query_one("#perf-status")),
                       what="the reason")
        await ui.until(lambda: not view.query(Graph), what="the old graphs gone")
        assert view.hist is None


async def test_follows_the_feed_only_while_shown() -> None:
    # the RRDs' clock is moved by hand: a new 5 s row comes when the test says so
    sim = make_sim(rrd_time=float((int(time.time()) // 5 + 12) * 5))
    client = connect(sim)
    client.metrics.interval = 0.2
    try:
        app = create_app(client, metrics=True, clock=frozen_clock)
        async with driving(app, sim, (80, 24)) as ui:
            await ui.until_main()
            await ui.open_vms()
            await ui.go_to("db-01")
            await ui.press("f")
            view = ui.main.query_one(PerformanceView)
            await ui.until(lambda: view.hist is not None and view.hist.kind == "vm")
            h = view.hist
            assert h is not None
            first = h.times[-1]
            feed = client.metrics
            assert feed.running
            # the feed asks for this VM's figures; a new 5 s row is appended as it comes
            assert sim.rrd_time is not None
            sim.rrd_time += 5
            await ui.until(lambda: view.hist is not None and view.hist.times[-1] == first + 5,
                           timeout=15, what="a new row")
            h = view.hist
            assert len(h.times) == 120 and h.times[-1] - h.times[0] == 595
            assert not math.isnan(h.series["memory"][-1])
            await ui.press("3")  # a view without figures: the subscription ends, the feed stops
            await ui.until(lambda: not feed.running, timeout=15, what="the feed to stop")
            asked = feed.requests
            await ui.press("9")
            assert view.hist is h  # shown again: the same history, following again
            await ui.until(lambda: feed.requests > asked, timeout=15, what="the feed again")
    finally:
        client.close()
        sim.stop()
