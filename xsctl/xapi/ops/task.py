"""Task operations."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import Task
from xsctl.xapi.ops.base import Call, Plan, xe
from xsctl.xapi.ops.catalogue import Kind, Operation, Refused, declare
from xsctl.xapi.ops.resolve import resolve


def _load(cache: Cache, ref: str) -> Task | None:
    r = cache.get("task", ref)
    return None if r is None else Task.from_record(ref, r)


def _explain(t: Any, op: str) -> XsctlError | None:
    if not t.pending:
        return Refused(f"it has already finished ({t.status})")
    if op not in t.allowed_operations:
        return XapiError("OPERATION_NOT_ALLOWED", [f"{t.name_label} cannot be cancelled"])
    return None


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("task")]


TASK = Kind(
    cls="task", noun="task", nouns="tasks",
    resolve=lambda cache, spec: resolve(cache, "task", spec, kind="task"),
    load=_load, name=lambda t: t.name_label, members=_members, explain=_explain,
    classes=("host", "task"),
)


def cancel(cache: Cache, task: Task) -> Plan:
    err = _explain(task, "cancel")
    if err is not None:
        raise err
    return Plan(title=f"Cancel {task.name_label}", action="task.cancel", targets=(task.ref,),
                calls=(Call("task.cancel", (task.ref,)),),
                xe=(xe("task-cancel", uuid=task.uuid),), names={task.ref: task.name_label})


declare(
    Operation("task.cancel", TASK, "Cancel task", "x", "cancel", "task-cancel", "cancelled",
              "Ask xapi to cancel the task (it stops at its next safe point)", cancel,
              allowed="cancel", multi=True, footer=True),
)
