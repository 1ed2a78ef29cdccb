"""The simulator's control actions (``/sim/control`` and ``xsctl sim-control``): fault
injection and introspection for tests. Not part of xapi's API.

Both ends check an action's argument the same way: the CLI before it sends anything,
the simulator when a request arrives, so a bad value changes nothing either way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

MAX_SECONDS = 86400.0  # a day: anything longer is a mistake, and time.sleep has a limit
MAX_COUNT = 1_000_000


class ControlError(ValueError):
    """A control request that is wrong in itself (exit 2 in the CLI)."""

    exit_code = 2


class Unreachable(ControlError):
    """No answer from the simulator (exit 3 in the CLI)."""

    exit_code = 3


@dataclass(frozen=True)
class Action:
    key: str | None  # the argument's name in the request
    kind: str  # seconds, count, name
    required: bool = False
    default: Any = None


ACTIONS: dict[str, Action] = {
    "info": Action(None, ""),
    "sessions": Action(None, ""),
    "latency": Action("seconds", "seconds", required=True),
    "slow_events": Action("seconds", "seconds", required=True),
    "drop": Action("count", "count", default=1),
    "restart": Action("downtime", "seconds", default=0.5),
    "master": Action("host", "name", required=True),
    "expire": Action("session", "name"),  # one session, or all of them
    # the next call of a method (VIF.create) fails, as a driver or xapi would fail it
    "fail": Action("method", "name", required=True),
    # a host's domains as its dom0 sees them (the simulated dom0 tools ask: dom0.py);
    # the host by address, ADDRESS@SECONDS for a time past the epoch when not drifting
    "dom0": Action("host", "name", required=True),
}

_DIGITS = re.compile(r"[0-9]+")


def _seconds(action: str, v: Any) -> float:
    bad = ControlError(
        f"{action} takes a number of seconds from 0 to {MAX_SECONDS:g}, not {v!r}")
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise bad
    try:
        x = float(v)
    except (ValueError, OverflowError):
        raise bad from None
    if not math.isfinite(x) or not 0 <= x <= MAX_SECONDS:
        raise bad
    return x


def _count(action: str, v: Any) -> int:
    bad = ControlError(f"{action} takes a whole number from 0 to {MAX_COUNT}, not {v!r}")
    if isinstance(v, str) and _DIGITS.fullmatch(v) and len(v) <= 7:
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
        raise bad
    return v


def check(action: str, args: Any) -> dict[str, Any]:
    """The action's arguments, checked and typed (defaults filled in)."""
    spec = ACTIONS.get(action) if isinstance(action, str) else None
    if spec is None:
        raise ControlError(f"unknown action {action!r} (one of {', '.join(ACTIONS)})")
    if not isinstance(args, dict):
        raise ControlError(f"{action}: the arguments must be an object")
    extra = set(args) - ({spec.key} if spec.key else set())
    if extra:
        what = f"only {spec.key}" if spec.key else "no value"
        raise ControlError(f"{action} takes {what}")
    if spec.key is None:
        return {}
    v = args.get(spec.key)
    if v is None:
        if spec.required:
            raise ControlError(f"{action} needs a value ({spec.key})")
        return {spec.key: spec.default} if spec.default is not None else {}
    if spec.kind == "seconds":
        return {spec.key: _seconds(action, v)}
    if spec.kind == "count":
        return {spec.key: _count(action, v)}
    if not isinstance(v, str) or not v.strip():
        raise ControlError(f"{action} needs a {spec.key}, not {v!r}")
    return {spec.key: v}


def from_cli(action: str, value: str | None) -> dict[str, Any]:
    """``xsctl sim-control URL TOKEN ACTION [VALUE]`` as the request's arguments."""
    spec = ACTIONS.get(action)
    if spec is not None and spec.key is None and value is not None:
        raise ControlError(f"{action} takes no value")
    key = spec.key if spec is not None else None
    return check(action, {key: value} if key is not None and value is not None else {})
