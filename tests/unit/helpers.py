"""Building real clients against the simulator."""

from __future__ import annotations

from typing import Any

from xsctl.sim import Simulator
from xsctl.xapi.client import Client, Target


def target(sim: Simulator, **kw: Any) -> Target:
    kw.setdefault("accept_fingerprint", sim.fingerprint)
    return Target(url=sim.url, user=sim.user, **kw)


def connect(sim: Simulator, *, load: bool = True, **kw: Any) -> Client:
    password = kw.pop("password", sim.password)
    client = Client.connect(target(sim, **kw), password)
    if load:
        client.load()
    return client
