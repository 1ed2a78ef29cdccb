"""Every custom message of the app, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from xsctl.xapi.cache import Change
from xsctl.xapi.ops.base import Plan


@dataclass
class CacheChanged(Message):
    """Objects changed in the cache (coalesced since the last one was handled)."""

    changes: list[Change] = field(default_factory=list)
    classes: set[str] = field(default_factory=set)
    resync: bool = False

    def refs(self, cls: str) -> set[str]:
        return {c.ref for c in self.changes if c.cls == cls}


@dataclass
class HealthChanged(Message):
    """The connection or the cache's freshness changed."""

    connected: bool
    fresh: bool
    text: str


@dataclass
class PlanProgress(Message):
    plan: Plan
    fraction: float


@dataclass
class PlanFinished(Message):
    plan: Plan
    error: Exception | None = None
    result: object = None


@dataclass
class MetricsUpdated(Message):
    """Host load figures from /rrd_updates: host ref -> (cpu 0..1, mem used, mem total)."""

    load: dict[str, tuple[float, int, int]]
