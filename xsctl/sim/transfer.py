from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator


def register(sim: Simulator) -> None:
    pass
