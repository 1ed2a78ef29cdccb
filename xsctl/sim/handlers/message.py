"""message.* (alerts). xapi keeps messages outside the database; their changes count
in the second half of event.from tokens (see store.MESSAGE_CLASSES)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xsctl.sim.store import now_datetime

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

# name -> priority, from ocaml/xapi-consts/api_messages.ml
PRIORITIES = {
    "VM_STARTED": 5,
    "VM_SHUTDOWN": 5,
    "VM_REBOOTED": 5,
    "VM_SNAPSHOTTED": 5,
    "VM_CHECKPOINTED": 5,
    "VM_SUSPENDED": 5,
    "VM_RESUMED": 5,
    "VM_CRASHED": 2,
    "VM_CLONED": 5,
    "HA_HOST_FAILED": 3,
    "HOST_CLOCK_SKEW_DETECTED": 3,
    "ALARM": 1,
}


def emit(sim: Simulator, name: str, cls: str, obj_uuid: str, body: str) -> str:
    """Create an alert as xapi does when something happens (message.create)."""
    return sim.store.create(
        "message",
        {
            "name": name,
            "priority": PRIORITIES.get(name, 5),
            "cls": cls,
            "obj_uuid": obj_uuid,
            "timestamp": now_datetime(),
            "body": body,
        },
    )
