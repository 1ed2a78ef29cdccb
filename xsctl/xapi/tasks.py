"""Async.* calls and their tasks: wait for a task through event.from on that task
alone (xapi answers task-only subscriptions without its batching delay), report
progress, cancel on request, return the decoded result, destroy the task."""

from __future__ import annotations

import contextlib
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from xsctl.xapi.errors import ConnectionFailed, XapiError
from xsctl.xapi.session import Connection

Progress = Callable[[float], None]


def parse_task_result(text: str) -> Any:
    """task.result is an XML-RPC value fragment (taskHelper.ml): ``<value>OpaqueRef:..
    </value>``, ``<value></value>`` for void; older hosts send an empty string."""
    if not text:
        return ""
    try:
        params, _ = xmlrpc.client.loads(
            '<?xml version="1.0"?><methodResponse><params><param>'
            + text
            + "</param></params></methodResponse>"
        )
    except Exception:
        return text
    value = params[0] if params else ""
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    return value


def wait_task(
    conn: Connection,
    task: str,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    timeout: float | None = None,
    destroy: bool = True,
) -> Any:
    """Block until ``task`` finishes; raise XapiError with its error_info on failure."""
    token = ""
    deadline = None if timeout is None else time.monotonic() + timeout
    cancel_sent = False
    last = -1.0
    try:
        while True:
            if cancel is not None and cancel.is_set() and not cancel_sent:
                cancel_sent = True
                with contextlib.suppress(XapiError):
                    conn.call("task.cancel", task)
            wait = 1.0 if cancel is not None else 30.0
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            batch = conn.call("event.from", [f"task/{task}"], token, wait, timeout=wait + 30)
            token = str(batch.get("token", token))
            rec: dict[str, Any] | None = None
            for ev in batch.get("events", []):
                if ev.get("ref") != task:
                    continue
                if ev.get("operation") == "del":
                    raise XapiError("HANDLE_INVALID", ["task", task], method="task.wait")
                rec = ev.get("snapshot")
            if rec is not None:
                p = float(rec.get("progress", 0) or 0)
                if progress is not None and p != last:
                    last = p
                    progress(p)
                status = rec.get("status")
                if status == "success":
                    return parse_task_result(str(rec.get("result", "")))
                if status in ("failure", "cancelled"):
                    info = [str(x) for x in rec.get("error_info") or ["TASK_CANCELLED", task]]
                    raise XapiError(info[0], info[1:], method=str(rec.get("name_label", "")))
            if deadline is not None and time.monotonic() >= deadline:
                raise ConnectionFailed(f"task {task} did not finish in time")
    finally:
        if destroy:
            with contextlib.suppress(XapiError, ConnectionFailed):
                conn.call("task.destroy", task, timeout=5.0)
