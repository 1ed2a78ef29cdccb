"""An xapi simulator: the wire protocols, a datamodel-driven store and the behaviour
xsctl relies on, so the app runs and the tests pass with no XenServer at hand."""

from xsctl.sim.simulator import Faults, Simulator

__all__ = ["Faults", "Simulator"]
