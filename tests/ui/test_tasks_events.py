"""Tasks & Events: a running task with its progress, cancelling a cancellable one,
and the live feed of the pool's changes with which field went from what to what."""

from __future__ import annotations

from textual.widgets import RichLog

from tests.ui.dialogs import answer_text, pick
from tests.ui.harness import FROZEN, Ui, running
from xsctl.sim import Simulator
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.cache import Change, Changes
from xsctl.xapi.client import Client


def task_rows(ui: Ui) -> dict[str, list[str]]:
    """Task ref -> the cells of its row, as plain text."""
    table = ui.main.query_one("#task-table", VirtualTable)
    return {key: [text for text, _ in table.rows[key].cells] for key in table.order}


def copy_task(ui: Ui) -> tuple[str, list[str]] | None:
    for ref, cells in task_rows(ui).items():
        if "VM.copy" in cells[0]:
            return ref, cells
    return None


def feed(ui: Ui) -> list[str]:
    return [line.text for line in ui.main.query_one("#event-log", RichLog).lines]


async def test_running_task_shows_progress_and_can_be_cancelled(sim: Simulator,
                                                               client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        sim.op_time = 1.0  # a copy now takes 2 s, in four steps: time to watch and cancel
        await ui.act("C", on="backup-01")
        await pick(ui, "Same storage as the original")
        await answer_text(ui, "backup-copy")
        await ui.back_to_main()
        await ui.press("3")
        assert ui.main.current_view == "tasks"
        ref, cells = await ui.until(lambda: copy_task(ui), what="the copy's task row")
        assert "Copy backup-01 as 'backup-copy'" in cells[0]  # named by its plan
        # it runs, and its bar moves
        _, cells = await ui.until(lambda: (t := copy_task(ui)) and "pending" in t[1][1]
                                  and " 0%" not in t[1][2] and t, what="progress above 0%")
        assert "█" in cells[2]
        table = ui.main.query_one("#task-table", VirtualTable)
        assert ui.app.focused is table
        assert table.order[0] == ref == table.cursor_key  # running tasks come first
        mark = ui.writes.mark()
        await ui.press("x")
        await ui.until(lambda: (t := copy_task(ui)) and t[1][1] == "cancelled",
                       what="the task shown cancelled")
        # not "100%": a cancelled task's bar would say it all happened
        assert (copy_task(ui) or ("", ["", "", ""]))[1][2] == "–"
        toast = await ui.until_said("Copy backup-01 as 'backup-copy' failed", "error")
        assert "TASK_CANCELLED" in toast.message
        await ui.settle()
        assert "backup-copy" not in ui.vm_names()  # nothing was made
        # the cancel reached the simulator: the task was marked, then ended cancelled
        assert any(cls == "task" and r == ref for cls, _, r, _ in ui.writes.since(mark))


async def test_events_feed_shows_changes(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.press("3")
        stamp = FROZEN.astimezone().strftime("%H:%M:%S")
        ref = ui.ref("web-02")
        sim.store.update(ref, {"name_label": "web-02b", "name_description": "the second web"})
        line = await ui.until(lambda: next((x for x in feed(ui) if "web-02b" in x), None),
                              what="the rename in the feed")
        assert line.startswith(f"{stamp} vm")
        assert "mod" in line
        assert "name_label: web-02 → web-02b" in line
        # a power change made from the VM view shows from → to as well
        await ui.press("2")
        await ui.act("p", on="web-03")
        await ui.press("y")
        await ui.press("3")
        await ui.until(lambda: any("web-03" in x and "power_state: Running → Paused" in x
                                   for x in feed(ui)), what="the pause in the feed")
        await ui.until_said("Pause web-03: done")  # its task ended: unpause is allowed now
        # metrics and task updates are hidden until M shows them
        assert not [x for x in feed(ui) if " task " in x]
        title = ui.main.query_one("#events-title")
        assert "metrics and task updates hidden" in str(title.render())
        await ui.press("M")
        assert "all classes" in str(title.render())
        await ui.press("2")
        # a task that starts and ends between two event.from answers is never seen (xapi
        # coalesces): this one lasts 0.2 s, with progress
        sim.op_time = 1.0
        await ui.act("P", on="web-03")
        await ui.press("3")
        await ui.until(lambda: any(" task " in x and "Async.VM.unpause" in x for x in feed(ui)),
                       what="a task event once M shows them")
        assert not ui.errors()
        await ui.until_said("Unpause web-03: done")
        # its task is destroyed once done: the last event of it to come
        await ui.until(lambda: any(" task " in x and "del Async.VM.unpause" in x
                                   for x in feed(ui)), what="the task's end in the feed")
        await ui.settle()
        await ui.press("ctrl+l")
        assert feed(ui) == []


async def test_something_that_came_and_went_between_two_repaints_is_named(
        sim: Simulator, client: Client) -> None:
    """The bridge coalesces the changes the cache reports until the UI takes them: a
    task added and deleted in that time still shows in the feed by its name."""
    async with running(sim, client) as ui:
        await ui.press("3", "M")
        bridge = ui.main.bridge
        assert bridge is not None
        rec = {"name_label": "Async.VM.snapshot", "uuid": "0e0f", "status": "success"}
        ref = "OpaqueRef:5f1e7a62-0000-4000-8000-000000000001"
        # two batches, as the cache's thread delivers them, before the UI runs again
        bridge._on_changes(Changes([Change("task", ref, "add", None, rec)]))
        bridge._on_changes(Changes([Change("task", ref, "del", rec, None)]))
        line = await ui.until(lambda: next((x for x in feed(ui) if ref[10:18] in x
                                            or "Async.VM.snapshot" in x), None),
                              what="the task in the feed")
        assert "task" in line and "del" in line and "Async.VM.snapshot" in line
