"""Faults while an action runs: the action says what happened; where it cannot be known
whether xapi ran the call, it says so and does not send it again; the views show the
pool as it is once the connection is back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import make_sim
from tests.ui.dialogs import answer_text
from tests.ui.harness import in_thread, running
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.client import Client


@pytest.fixture
def still_sim() -> Iterator[Simulator]:
    """No metric drift: no event wakes the cache's long poll, so the next call the
    simulator sees is the action's own."""
    s = make_sim(drift=False)
    try:
        yield s
    finally:
        s.stop()


async def test_a_dropped_call_says_its_outcome_is_unknown(still_sim: Simulator) -> None:
    sim = still_sim
    client = connect(sim)
    try:
        async with running(sim, client) as ui:
            await ui.open_vms()
            ref = ui.ref("dev-sandbox")
            await ui.act("r", on="dev-sandbox")
            mark = ui.writes.mark()
            sim.faults.drop_next = 1  # the next request is cut before xapi reads it
            await answer_text(ui, "dev-renamed")  # enter runs it (no confirmation)
            toast = await ui.until_said("outcome unknown", "error", timeout=15)
            assert "may or may not" in toast.message and "not sent again" in toast.message
            await ui.settle()
            # it did not run (the simulator cut it first), and nothing sent it again
            assert not ui.writes.touched(ref, mark)
            assert sim.store.get(ref, "VM")["name_label"] == "dev-sandbox"
            # the view shows the truth once live again: the name it has
            await ui.until(lambda: "● live" in ui.screen_text(), timeout=10, what="live")
            assert ui.table.rows[ref].cells[0][0] == "dev-sandbox"
    finally:
        client.close()


async def test_a_restart_while_a_task_runs_is_followed_to_its_end(sim: Simulator,
                                                                  client: Client) -> None:
    """xapi restarts while a clone runs: the app logs in again, follows the same task
    to its end and reports it done; the clone was asked for once and exists once."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        sim.op_time = 0.8  # the clone takes ~1.6 s: time for a restart in the middle
        mark = ui.writes.mark()
        await ui.act("c", on="web-staging")
        await answer_text(ui, "ws-clone")
        await ui.until(lambda: "Async.VM.clone" in ui.writes.tasks(mark), what="the clone")
        await in_thread(lambda: sim.restart(downtime=0.5))
        await ui.until_said("Clone web-staging as 'ws-clone': done", timeout=20)
        await ui.until(lambda: "ws-clone" in ui.names(), timeout=10, what="the clone's row")
        assert ui.writes.tasks(mark).count("Async.VM.clone") == 1
        assert [n for n in ui.vm_names() if n == "ws-clone"] == ["ws-clone"]
