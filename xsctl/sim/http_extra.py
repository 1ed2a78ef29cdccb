"""HTTP handlers beside RPC (datamodel.ml http_actions): metrics and transfers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator


def register(sim: Simulator) -> None:
    from xsctl.sim import export, rrd, vm_import

    rrd.register(sim)
    export.register(sim)
    vm_import.register(sim)
