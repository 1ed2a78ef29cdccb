"""Task operations."""

from __future__ import annotations

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XapiError
from xsctl.xapi.models import Task
from xsctl.xapi.ops.base import Call, Plan, xe


def cancel(cache: Cache, ref: str) -> Plan:
    r = cache.get("task", ref)
    if r is None:
        raise UsageError("that task is gone")
    t = Task.from_record(ref, r)
    if not t.pending:
        raise UsageError(f"{t.name_label} has already finished ({t.status})")
    if "cancel" not in t.allowed_operations:
        raise XapiError("OPERATION_NOT_ALLOWED", [f"{t.name_label} cannot be cancelled"])
    return Plan(title=f"Cancel {t.name_label}", action="task.cancel", targets=(ref,),
                calls=(Call("task.cancel", (ref,)),), xe=(xe("task-cancel", uuid=t.uuid),),
                names={ref: t.name_label})
