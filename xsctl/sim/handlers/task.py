"""task.create / cancel / destroy (ocaml/xapi/xapi_task.ml, taskHelper.ml).

task.cancel never refuses (root may cancel any task): it records ``cancel`` in the
task's current_operations, keyed by the cancelling call's own (dummy) task, and the
operation notices it if it made itself cancellable. task.destroy removes a completed
task and marks a pending one with ``destroy``, to be removed when it completes.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from xsctl.sim.dispatch import Context, api, new_task

COMPLETED = ("success", "failure", "cancelled")


@api("task.create")
def create(ctx: Context, label: str, description: str) -> str:
    ref = new_task(ctx.sim, label, ctx.session, cancellable=False)
    ctx.store.update(ref, {"name_description": description})
    return ref


@api("task.cancel")
def cancel(ctx: Context, task: str) -> None:
    store = ctx.store
    with ctx.lock:
        store.get(task, "task")
        # the caller's own task: task.* calls get a dummy one (Ref.make_dummy)
        key = f"DummyRef:|{uuidlib.uuid4()}|task.cancel"
        store.update(task, {"current_operations": {key: "cancel"}})


@api("task.destroy")
def destroy(ctx: Context, task: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = store.get(task, "task")
        if row["status"] in COMPLETED:
            store.destroy(task)
            return
        store.update(task, {"current_operations": {**row["current_operations"], "task": "destroy"}})


def _setter(field: str) -> Any:
    def fn(ctx: Context, task: str, value: Any) -> None:
        ctx.store.get(task, "task")
        ctx.store.update(task, {field: value})

    return fn


for _f in ("status", "progress", "result", "error_info"):
    api(f"task.set_{_f}")(_setter(_f))
