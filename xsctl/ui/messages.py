"""Every custom message of the app, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from xsctl.profiling.sessions import Outcome
from xsctl.profiling.tools import Probe
from xsctl.profiling.xentop import Xentop
from xsctl.profiling.xl import XlDomain
from xsctl.xapi.cache import Change
from xsctl.xapi.errors import ChangedCertificate
from xsctl.xapi.metrics import MetricsUpdate
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
    # the host's certificate changed mid-session: the connection stopped for good
    changed: ChangedCertificate | None = None


@dataclass
class ActionRequested(Message):
    """A view asks for an operation on objects; ``op_id`` "" opens the actions menu."""

    op_id: str
    refs: list[str]
    view: str
    kind: str = ""  # the kind of the refs, where not the view's own (a VM's devices)


class MenuRequested(Message):
    """A view gives the keys back to the menu (escape)."""


@dataclass
class ViewRequested(Message):
    """A view asks for another one, showing what it holds of ``ref`` (enter on an SR
    opens the Disks view on that SR's disks)."""

    view: str
    ref: str


@dataclass
class TaskStarted(Message):
    """xapi made a task for one of our plans (so the Tasks view can name it)."""

    task: str
    plan: Plan


@dataclass
class TransferMoved(Message):
    """A transfer of ours moved on: its rate and time left, for its task's row."""

    task: str
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TransferMoved) and message.task == self.task


@dataclass
class PlanFinished(Message):
    plan: Plan
    error: Exception | None = None
    result: object = None
    # True when a dropped connection left it unknown whether the call took effect
    unknown: bool = False


@dataclass
class MetricsUpdated(Message):
    """A new round of /rrd_updates figures from the metrics feed."""

    update: MetricsUpdate


@dataclass
class InstallProgress(Message):
    """The New VM wizard's plan: step ``step`` of ``steps`` is ``fraction`` done."""

    step: int
    fraction: float
    steps: int


@dataclass
class InstallEnded(Message):
    """The New VM wizard's plan ended: the new VM's ref, or the error (a PlanFailed
    says what was removed and what is left)."""

    vm: str | None
    error: Exception | None = None


# ---------------------------------------------------------------- the Profiling view


@dataclass
class ToolsProbed(Message):
    """What a host's dom0 has (``probe``), or why it could not be asked (``error``)."""

    host: str
    probe: Probe | None
    error: str | None = None


@dataclass
class XentopRefreshed(Message):
    """One more iteration of the live xentop on ``host`` (its ``index``-th)."""

    host: str
    top: Xentop
    index: int
    raw: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, XentopRefreshed) and message.host == self.host


@dataclass
class DomainsListed(Message):
    """``xl list`` on ``host``: the domains' IDs (None: xl failed, ``error`` why)."""

    host: str
    domains: list[XlDomain] | None
    error: str | None = None


@dataclass
class XentopStopped(Message):
    """The live xentop ended by itself (not stopped by the view): why."""

    host: str
    error: str | None


@dataclass
class JobProgressed(Message):
    """A profiling session moved on: what it runs now."""

    tool: str
    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgressed) and message.tool == self.tool


@dataclass
class JobEnded(Message):
    """A profiling session ended: its commands, their output and the tables."""

    tool: str
    outcome: Outcome
