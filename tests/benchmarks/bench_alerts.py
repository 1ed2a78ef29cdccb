"""Alerts view benchmark (a script, not a test): a pool at xapi's message limit.

A simulator with MESSAGE_LIMIT (10,000) alerts, the real app headless on it
(``create_app(client, metrics=False)``, ``run_test(size=(160, 50))``), and in the
Alerts view:

* build: every row from the cache (the first show, a resync, a renamed object);
* the ages' minute tick: the rows whose age reads differently;
* one filter keystroke -> the table filtered and its screen of lines drawn, typed
  character by character, then deleted back to every row;
* p (the most severe only) and back;
* one alert arriving: the keyed update of its row, with the table re-sorted;
* dismissing 10,000 in one plan: planned (the confirm dialog's text included).

Against them, in the same run: a Textual DataTable fed the same 10,000 rows in
``batch_update()`` (the clear-and-refill that STYLE.md measured at 1.16 s), and the
same filter done by clearing and refilling it.

    python tests/benchmarks/bench_alerts.py [--alerts 10000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable  # noqa: E402

from tests.conftest import make_sim  # noqa: E402
from tests.unit.helpers import connect  # noqa: E402
from xsctl.sim.handlers.message import MESSAGE_LIMIT, emit  # noqa: E402
from xsctl.ui.app import create_app  # noqa: E402
from xsctl.ui.views.alerts import AlertsView  # noqa: E402
from xsctl.xapi.models import Message  # noqa: E402
from xsctl.xapi.ops import alert as alert_ops  # noqa: E402

WORD = "shutdown"
KINDS = ("VM_STARTED", "VM_SHUTDOWN", "VM_REBOOTED", "VM_SNAPSHOTTED", "ALARM")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def fill(sim: Any, n: int) -> None:
    vms = [r["uuid"] for r in sim.store.all("VM").values()
           if not r["is_a_template"] and not r["is_control_domain"]]
    have = len(sim.store.all("message"))
    for i in range(max(0, n - have)):
        kind = KINDS[i % len(KINDS)]
        emit(sim, kind, "VM", vms[i % len(vms)], f"VM {vms[i % len(vms)][:8]}: {kind} #{i}")


async def measure_app(sim: Any, rounds: int) -> dict[str, float]:
    client = connect(sim)
    app = create_app(client, metrics=False)
    out: dict[str, list[float]] = {"build": [], "tick": [], "key": [], "p": [], "arrive": [],
                                   "plan": []}
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause(0.5)
            app.screen.action_show_view("alerts")  # type: ignore[attr-defined]
            await pilot.pause(0.5)
            view = app.screen.query_one(AlertsView)
            table = view.table
            assert len(table.rows) == len(sim.store.all("message")), len(table.rows)
            lines = table.scrollable_content_region.height

            def draw() -> None:
                for y in range(lines):
                    table.render_line(y)

            for _ in range(rounds):
                t = time.perf_counter()
                view.rebuild()
                draw()
                out["build"].append(time.perf_counter() - t)
                t = time.perf_counter()
                view.tick()
                draw()
                out["tick"].append(time.perf_counter() - t)
                for text in [WORD[:i] for i in range(1, len(WORD) + 1)] + \
                        [WORD[:i] for i in range(len(WORD) - 1, -1, -1)]:
                    t = time.perf_counter()
                    view.filter_input.value = text  # as the Input's own key handling sets it
                    draw()
                    out["key"].append(time.perf_counter() - t)
                t = time.perf_counter()
                view.action_priority()
                draw()
                view.widen()
                draw()
                out["p"].append((time.perf_counter() - t) / 2)
                ref = emit(sim, "VM_CRASHED", "VM", next(iter(sim.store.uuids["VM"])), "crash")
                assert ref is not None
                rec = sim.store.get(ref, "message")
                t = time.perf_counter()
                table.upsert(ref, view.row(Message.from_record(ref, dict(rec))))
                table.commit()
                draw()
                out["arrive"].append(time.perf_counter() - t)
                table.remove_row(ref)
                table.commit()
                msgs = [Message.from_record(r, m) for r, m in client.cache.snapshot("message")]
                t = time.perf_counter()
                plan = alert_ops.dismiss_many(client.cache, msgs)
                plan.describe()
                out["plan"].append(time.perf_counter() - t)
    finally:
        client.close()
    return {k: statistics.median(v) for k, v in out.items()} | {
        "key_max": max(out["key"])}


class _Baseline(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable(id="t")


async def measure_datatable(rows: list[tuple[str, ...]]) -> dict[str, float]:
    app = _Baseline()
    async with app.run_test(size=(160, 50)) as pilot:
        t_ = app.query_one(DataTable)
        t_.add_columns("When", "Priority", "Class", "On", "Alert", "Message")
        t = time.perf_counter()
        with app.batch_update():
            t_.add_rows(rows)
        await pilot.pause()
        fill_s = time.perf_counter() - t
        t = time.perf_counter()
        with app.batch_update():
            t_.clear()
            t_.add_rows([r for r in rows if WORD in " ".join(r).lower()])
        await pilot.pause()
        filter_s = time.perf_counter() - t
    return {"fill": fill_s, "filter": filter_s}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=MESSAGE_LIMIT)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    sim = make_sim(drift=False)
    try:
        t = time.perf_counter()
        fill(sim, args.alerts)
        print(f"{len(sim.store.all('message'))} alerts in the simulator "
              f"({time.perf_counter() - t:.1f} s to make)")
        app = asyncio.run(measure_app(sim, args.rounds))
        rows = [(str(m["timestamp"]), str(m["priority"]), str(m["cls"]), str(m["obj_uuid"]),
                 str(m["name"]), str(m["body"])) for m in sim.store.all("message").values()]
        base = asyncio.run(measure_datatable(rows))
    finally:
        sim.stop()
    print(f"Alerts view, {args.alerts} alerts (median of {args.rounds} rounds)")
    print(f"  build every row + draw:        {ms(app['build'])}"
          f"   DataTable fill (baseline): {ms(base['fill'])}")
    print(f"  the ages' minute tick + draw:  {ms(app['tick'])}")
    print(f"  filter keystroke + draw:       {ms(app['key'])} (max {ms(app['key_max'])})"
          f"   DataTable clear+refill:    {ms(base['filter'])}")
    print(f"  p (most severe only) + draw:   {ms(app['p'])}")
    print(f"  one alert arriving + draw:     {ms(app['arrive'])}")
    print(f"  plan dismissing all of them:   {ms(app['plan'])}")


if __name__ == "__main__":
    main()
