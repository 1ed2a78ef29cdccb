"""Plans: the calls an operation will make, shown before they are made."""

from __future__ import annotations

import logging
import shlex
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xsctl.xapi.session import Connection
from xsctl.xapi.tasks import wait_task

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Result:
    """Placeholder for the result of an earlier call of the same plan."""

    index: int


@dataclass(frozen=True, slots=True)
class Call:
    method: str  # xapi wire name, e.g. "VM.clean_shutdown"
    args: tuple[Any, ...] = ()
    use_async: bool = False  # run through Async.* with task progress

    def render(self, names: Mapping[str, str]) -> str:
        """``VM.clean_shutdown(web-01)``: refs shown by name where known."""

        def one(a: Any) -> str:
            if isinstance(a, Result):
                return f"<result of step {a.index + 1}>"
            if isinstance(a, str):
                return names.get(a, a) if a.startswith("OpaqueRef:") else repr(a)
            if isinstance(a, bool):
                return "true" if a else "false"
            if isinstance(a, dict):
                # a device-config password (xapi moves it to a secret) is never shown
                return "{" + ", ".join(
                    f"{k}: {'********' if str(k).endswith('password') else one(v)}"
                    for k, v in a.items()) + "}"
            if isinstance(a, (list, tuple)):
                return "[" + ", ".join(one(x) for x in a) + "]"
            return str(a)

        prefix = "Async." if self.use_async else ""
        return f"{prefix}{self.method}({', '.join(one(a) for a in self.args)})"


@dataclass(frozen=True)
class Plan:
    title: str  # "Shut down web-01"
    action: str  # "vm.shutdown"
    targets: tuple[str, ...]  # the refs acted on
    calls: tuple[Call, ...]
    xe: tuple[str, ...]  # equivalent xe command lines
    names: Mapping[str, str] = field(default_factory=dict)  # ref -> name for display
    destructive: bool = False  # loses data (delete, revert, force shutdown)
    disruptive: bool = False  # interrupts a running guest
    confirm_text: str | None = None  # what the user must type to confirm
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # likely a mistake: asked about even when harmless

    @property
    def needs_confirmation(self) -> bool:
        return self.destructive or self.disruptive or bool(self.warnings)

    def steps(self) -> list[str]:
        return [c.render(self.names) for c in self.calls]

    def describe(self) -> str:
        lines = [self.title, "", "API calls:"]
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.steps())]
        lines += ["", "xe equivalent:"] + [f"  {x}" for x in self.xe]
        if self.warnings:
            lines += [""] + [f"Warning: {w}" for w in self.warnings]
        if self.notes:
            lines += [""] + [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self, names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """For --json; ``names`` (xapi's exact names, where the plan holds the
        printable ones) names the refs in the calls."""
        return {
            "title": self.title,
            "action": self.action,
            "targets": list(self.targets),
            "calls": [c.render({**self.names, **(names or {})}) for c in self.calls],
            "xe": list(self.xe),
            "destructive": self.destructive,
            "disruptive": self.disruptive,
            "notes": list(self.notes),
            "warnings": list(self.warnings),
        }


def xe(command: str, **params: Any) -> str:
    """An ``xe`` command line with properly quoted parameters."""
    parts = ["xe", command]
    for k, v in params.items():
        if v is None or v is False:
            continue
        k = k.replace("_", "-") if k not in ("name_label",) else "name-label"
        if v is True:
            parts.append(f"--{k}" if k in ("force",) else f"{k}=true")
        else:
            # quoted for a shell: a VM may be named "x; rm -rf ~"
            parts.append(shlex.quote(f"{k}={v}"))
    return " ".join(parts)


StepProgress = Callable[[int, float], None]


def run(
    conn: Connection,
    plan: Plan,
    progress: StepProgress | None = None,
    cancel: threading.Event | None = None,
    on_task: Callable[[str], None] | None = None,
) -> list[Any]:
    """Run the plan's calls in order; Async ones report progress (step, fraction) and
    their task ref to ``on_task`` as soon as xapi returns it."""
    results: list[Any] = []

    def fill(a: Any) -> Any:
        """An argument with the results of earlier steps in place (PBD.create takes
        a record that names the SR an earlier step made)."""
        if isinstance(a, Result):
            return results[a.index]
        if isinstance(a, dict):
            return {k: fill(v) for k, v in a.items()}
        if isinstance(a, (list, tuple)):
            return type(a)(fill(v) for v in a)
        return a

    log.info("run: %s", plan.title)
    for i, call in enumerate(plan.calls):
        args = tuple(fill(a) for a in call.args)
        if call.use_async:
            task = conn.call("Async." + call.method, *args)
            if on_task is not None:
                on_task(str(task))

            def report(p: float, i: int = i) -> None:
                if progress is not None:
                    progress(i, p)

            results.append(wait_task(conn, str(task), report, cancel))
        else:
            results.append(conn.call(call.method, *args))
            if progress is not None:
                progress(i, 1.0)
    return results
