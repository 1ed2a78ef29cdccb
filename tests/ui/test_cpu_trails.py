"""The CPU sparkline column of the VM list and of the Status view's host rows: the
last 5 minutes of each host's own /rrd_updates answer, a cell per 30 s slot on a
0 to 100 % scale; a new cell as the simulator's RRD clock moves on; asked only for
the running VMs on screen and only while the view shows them; a hostile name does not
disturb it."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tests.conftest import make_sim
from tests.ui.harness import Ui, driving, frozen_clock
from tests.ui.test_hostile_text import SHOWN, controls, hostile
from tests.unit.helpers import connect
from tests.unit.test_metrics import direct
from xsctl.sim import Simulator
from xsctl.ui.app import create_app
from xsctl.ui.views.status import StatusView
from xsctl.ui.views.vms import TRAIL
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client

BLOCKS = "▁▂▃▄▅▆▇█"
SLOT = 30  # seconds a cell covers
CELLS = 10


@asynccontextmanager
async def live(size: tuple[int, int] = (80, 24)) -> AsyncIterator[tuple[Ui, Simulator, Client]]:
    """The app with the metrics feed on (a round each 0.2 s), over a simulator whose
    RRD clock stands still until a test moves it."""
    sim = make_sim(rrd_time=float((int(time.time()) // 5 + 12) * 5))
    client = connect(sim)
    client.metrics.interval = 0.2
    try:
        app = create_app(client, metrics=True, clock=frozen_clock)
        async with driving(app, sim, size) as ui:
            await ui.until_main()
            yield ui, sim, client
    finally:
        client.close()
        sim.stop()


def expected(sim: Simulator, client: Client, kind: str, ref: str) -> str:
    """The line drawn from the host's own answer (read with http.client): the mean
    CPU of each 30 s slot of the clock, the newest slot last, 0 to 100 %."""
    rec = sim.store.get(ref, "VM" if kind == "vm" else "host")
    host = rec if kind == "host" else sim.store.get(rec["resident_on"], "host")
    dom0 = next(v for v in host["resident_VMs"] if sim.store.get(v, "VM")["is_control_domain"])
    uuids = [sim.store.get(dom0, "VM")["uuid"] if kind == "host" else rec["uuid"]]
    raw = direct(sim, host["address"], client.conn.session or "", -300, uuids)
    legend = raw["meta"]["legend"]  # type: ignore[index]
    prefix = f"AVERAGE:{kind}:{rec['uuid']}:cpu"
    cols = [i for i, name in enumerate(legend) if name.startswith(prefix)
            and name[len(prefix):].isdigit()]
    points: dict[int, float] = {}
    for row in raw["data"]:  # type: ignore[union-attr]
        vals = [float(row["values"][i]) for i in cols]
        vals = [v for v in vals if not math.isnan(v)]
        if vals:
            points[int(row["t"])] = 100 * sum(vals) / len(vals)
    newest = max(points)
    first = (newest // SLOT + 1) * SLOT - CELLS * SLOT
    line = ""
    for c in range(CELLS):
        got = [v for t, v in points.items()
               if first + c * SLOT <= t < first + (c + 1) * SLOT and t > newest - 300]
        line += BLOCKS[min(7, int(sum(got) / len(got) / 100 * 8))] if got else " "
    return line


def cell(ui: Ui, name: str) -> str:
    return ui.table.rows[ui.ref(name)].cells[TRAIL][0]


def running_on_screen(ui: Ui) -> set[str]:
    t = ui.table
    return {ui.sim.store.get(k, "VM")["uuid"] for k in t.window()
            if ui.sim.store.get(k, "VM")["power_state"] in ("Running", "Paused")}


async def test_vm_column_shows_the_simulators_series_and_follows_it() -> None:
    async with live() as (ui, sim, client):
        await ui.open_vms()
        await ui.until(lambda: cell(ui, "web-01").strip(), timeout=15, what="web-01's line")
        assert cell(ui, "web-01") == expected(sim, client, "vm", ui.ref("web-01"))
        assert cell(ui, "db-02") == expected(sim, client, "vm", ui.ref("db-02"))
        # drawn in the row, between the memory and the address, at 80 columns
        assert "CPU 5 min" in ui.header_line()
        assert f"16 GiB  {cell(ui, 'db-02')} 10.0.1.27" in ui.line("db-02")
        # a halted VM, and a suspended one (no domain, so no RRD), show nothing
        assert cell(ui, "backup-01") == "" and cell(ui, "k8s-node-03") == ""
        # the feed asked for the running VMs on screen, and for no other
        feed = client.metrics
        assert feed.last is not None
        asked = {uuid for kind, uuid in feed.last.recent if kind == "vm"}
        assert asked <= running_on_screen(ui) | {v["uuid"] for v in sim.store.all("VM").values()
                                                 if v["is_control_domain"]}
        assert len(ui.table.order) > len(ui.table.window())  # some rows are off screen

        # the RRD clock 30 s on: the line moves one cell left, the new cell on the right
        before = cell(ui, "web-01")
        assert sim.rrd_time is not None
        sim.rrd_time += SLOT
        want = expected(sim, client, "vm", ui.ref("web-01"))
        assert want != before
        await ui.until(lambda: cell(ui, "web-01") == want, timeout=15, what="the next round")
        assert cell(ui, "db-02") == expected(sim, client, "vm", ui.ref("db-02"))


async def test_vm_column_asks_nothing_when_the_table_is_not_shown() -> None:
    async with live() as (ui, sim, client):
        feed = client.metrics
        await ui.open_vms()
        await ui.until(lambda: cell(ui, "web-01").strip(), timeout=15, what="web-01's line")
        # at 80 columns the detail takes the table's place: no row on screen, no request
        await ui.press("d")
        assert not ui.table.display
        await ui.until(lambda: not client.metrics._subs or all(
            i.empty for _, i in client.metrics._subs.values()), what="an empty interest")
        asked, turns = feed.requests, feed.turns
        # the feed's thread goes on turning, and asks nothing
        await ui.until(lambda: feed.turns >= turns + 3, timeout=15, what="three turns")
        assert feed.running and feed.requests == asked
        await ui.press("d")
        await ui.until(lambda: feed.requests > asked, timeout=15, what="rounds again")
        # another view without figures: the subscription ends, the feed stops
        await ui.press("3")
        await ui.until(lambda: not feed.running, timeout=15, what="the feed to stop")
        stopped = feed.requests
        assert not any(ui.vms_view.rows.trails.values())  # type: ignore[union-attr]
        await ui.press("2")
        await ui.until(lambda: feed.requests > stopped, timeout=15, what="the feed again")
        await ui.until(lambda: cell(ui, "web-01").strip(), timeout=15, what="the line again")
        assert cell(ui, "web-01") == expected(sim, client, "vm", ui.ref("web-01"))


async def test_a_scroll_asks_for_the_rows_it_brings_on_the_next_round() -> None:
    async with live(size=(80, 12)) as (ui, sim, client):
        await ui.open_vms()
        await ui.until(lambda: cell(ui, "cache-01").strip(), timeout=15, what="cache-01's line")
        assert ui.ref("web-01") not in ui.table.window()
        assert cell(ui, "web-01") == ""
        await ui.press("end")
        assert ui.ref("web-01") in ui.table.window()
        # the rows gone off screen keep no line
        assert cell(ui, "cache-01") == ""
        await ui.until(lambda: cell(ui, "web-01").strip(), timeout=15, what="web-01's line")
        # its last 5 minutes at once, though the feed had asked its host before
        assert cell(ui, "web-01") == expected(sim, client, "vm", ui.ref("web-01"))
        assert " " not in cell(ui, "web-01").strip()


async def test_a_hostile_name_leaves_the_line_alone() -> None:
    # wide enough for the name whole and the line (the line gives way to the name)
    async with live(size=(130, 40)) as (ui, sim, client):
        await ui.open_vms()
        await ui.until(lambda: cell(ui, "web-01").strip(), timeout=15, what="web-01's line")
        ref = await hostile(ui, sim)
        await ui.until(lambda: ui.table.rows[ref].cells[0][0] == SHOWN, what="the new name")
        want = expected(sim, client, "vm", ref)
        await ui.until(lambda: ui.table.rows[ref].cells[TRAIL][0] == want, timeout=15,
                       what="the line kept")
        t = ui.table
        line = t.render_line(t.order.index(ref) - t.scroll_offset.y + 1).text
        assert not controls(line) and want in line and SHOWN[:12] in line


async def test_host_rows_show_each_hosts_series() -> None:
    async with live() as (ui, sim, client):
        view = ui.main.query_one(StatusView)
        table = view.query_one("#status-hosts", VirtualTable)
        hosts = list(sim.store.all("host"))
        await ui.until(lambda: all(table.rows[h].cells[4][0].strip() for h in hosts),
                       timeout=15, what="every host's line")
        assert [c.label for c in table.columns[3:5]] == ["CPU", "Last 5 min"]
        for h in hosts:
            assert table.rows[h].cells[4][0] == expected(sim, client, "host", h)
        # at 80 columns the names and the memory stay whole; the uptime made room
        top = table.render_line(1).text
        assert top.split()[0] == "xcp-ng-01" and "GiB" in top
        assert sim.rrd_time is not None
        sim.rrd_time += SLOT
        await ui.until(lambda: all(table.rows[h].cells[4][0] == expected(sim, client, "host", h)
                                   for h in hosts), timeout=15, what="the next round")
