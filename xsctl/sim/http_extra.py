"""HTTP handlers beside RPC (datamodel.ml http_actions): metrics, transfers and
consoles."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator


def register(sim: Simulator) -> None:
    from xsctl.sim import console, export, rrd, vm_import

    rrd.register(sim)
    export.register(sim)
    vm_import.register(sim)
    console.register(sim)
