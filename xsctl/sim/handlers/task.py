"""task.create / cancel / destroy (ocaml/xapi/xapi_task.ml, taskHelper.ml)."""

from __future__ import annotations

from typing import Any

from xsctl.sim.dispatch import Context, api, new_task
from xsctl.sim.errors import XapiFailure


@api("task.create")
def create(ctx: Context, label: str, description: str) -> str:
    ref = new_task(ctx.sim, label, ctx.session, cancellable=False)
    ctx.store.update(ref, {"name_description": description})
    return ref


@api("task.cancel")
def cancel(ctx: Context, task: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = store.get(task, "task")
        if "cancel" not in row["allowed_operations"]:
            raise XapiFailure(
                "OPERATION_NOT_ALLOWED", f"Task {task} cannot be cancelled"
            )
        store.update(
            task,
            {
                "status": "cancelling",
                "allowed_operations": [],
            },
        )


@api("task.destroy")
def destroy(ctx: Context, task: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = store.get(task, "task")
        if row["status"] in ("pending", "cancelling"):
            # destroyed when it finishes (taskHelper.ml): mark it
            store.update(task, {"other_config": {**row["other_config"], "destroy_on_finish": "true"}})
            return
        store.destroy(task)


def _setter(field: str) -> Any:
    def fn(ctx: Context, task: str, value: Any) -> None:
        ctx.store.get(task, "task")
        ctx.store.update(task, {field: value})

    return fn


for _f in ("status", "progress", "result", "error_info"):
    api(f"task.set_{_f}")(_setter(_f))
