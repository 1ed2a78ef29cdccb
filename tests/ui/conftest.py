"""Fixtures for the Pilot tests: a loaded client over real HTTPS on the per-test
simulator (``sim`` from tests/conftest.py, operations of 0.05 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.client import Client


@pytest.fixture
def client(sim: Simulator) -> Iterator[Client]:
    c = connect(sim)
    try:
        yield c
    finally:
        c.close()
