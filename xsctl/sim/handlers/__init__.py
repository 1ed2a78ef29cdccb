"""Hand-written xapi behaviour. Importing this package registers every handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

# Periodic drift of live metrics, registered by the modules that own them.
TICKS: list[Callable[[Simulator], None]] = []


def metrics_tick(sim: Simulator) -> None:
    for fn in TICKS:
        fn(sim)


from xsctl.sim.handlers import (  # noqa: E402
    bond,
    event,
    host,
    message,
    network,
    pbd,
    pif,
    pool,
    session,
    sm,
    sr,
    storage,
    task,
    vbd,
    vdi,
    vlan,
    vm,
    vm_clone,
    vm_devices,
    vm_guest,
    vm_lifecycle,
    vm_memory,
    vm_placement,
)

__all__ = [
    "TICKS", "bond", "event", "host", "message", "metrics_tick", "network", "pbd", "pif", "pool",
    "session", "sm", "sr", "storage", "task", "vbd", "vdi", "vlan", "vm", "vm_clone", "vm_devices",
    "vm_guest",
    "vm_lifecycle", "vm_memory", "vm_placement",
]
