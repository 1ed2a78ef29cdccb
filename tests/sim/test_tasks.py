"""Async calls and their tasks.

Sources: ocaml/xapi/server_helpers.ml (do_dispatch: Async. returns the task at once),
ocaml/xapi/taskHelper.ml (make, complete: result = ``Xmlrpc.to_string`` of the
marshalled value; failed: error_info, cancelled for TASK_CANCELLED; set_cancellable,
is_cancelling), ocaml/xapi/xapi_task.ml (create, cancel: no refusal, records
``cancel`` in current_operations; destroy: pending tasks are marked ``destroy``),
ocaml/xapi/db_gc_util.ml (marked tasks go once complete), ocaml/xapi/context.ml
(task labels), and vatesfr/xen-orchestra _getTaskResult.mjs (the result format).
"""

from __future__ import annotations

import re
import time
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.conftest import make_sim, wait_for, wait_task, xenapi_session
from tests.jsonrpc import JsonRpcClient, JsonRpcError
from xsctl.sim import Simulator

REF = r"OpaqueRef:[0-9a-f-]{36}"
EPOCH = "19700101T00:00:00Z"


@pytest.fixture(scope="module")
def tsim() -> Iterator[Simulator]:
    # operations long enough (0.6 s for a shutdown) for progress and cancel to be seen
    s = make_sim(op_time=1.0)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def x(tsim: Simulator) -> Iterator[Any]:
    session = xenapi_session(tsim)
    yield session
    session.xenapi.session.logout()


def vm_named(x: Any, name: str) -> str:
    refs = x.xenapi.VM.get_by_name_label(name)
    assert len(refs) == 1
    return str(refs[0])


def value_of(fragment: str) -> Any:
    """Parse task.result as Xen Orchestra does: an XML-RPC <value> fragment."""
    return xmlrpc.client.loads(
        f"<methodResponse><params><param>{fragment}</param></params></methodResponse>"
    )[0][0]


def test_async_returns_a_pending_task_with_observable_progress(tsim: Simulator, x: Any) -> None:
    vm = vm_named(x, "web-03")
    task = x.xenapi.Async.VM.clean_shutdown(vm)
    assert re.fullmatch(REF, task)
    rec = x.xenapi.task.get_record(task)
    assert rec["status"] == "pending" and rec["name_label"] == "Async.VM.clean_shutdown"
    assert rec["finished"].value == EPOCH and rec["resident_on"] == tsim.master_ref()
    progress: set[float] = set()

    def finished() -> bool:
        r = x.xenapi.task.get_record(task)
        progress.add(r["progress"])
        return bool(r["status"] != "pending")

    wait_for(finished, timeout=10, interval=0.01)
    rec = x.xenapi.task.get_record(task)
    assert rec["status"] == "success" and rec["progress"] == 1.0
    assert rec["result"] == "<value></value>"  # a void result
    assert rec["finished"].value != EPOCH and rec["allowed_operations"] == []
    assert len({p for p in progress if 0 < p < 1}) >= 2, progress
    assert x.xenapi.VM.get_power_state(vm) == "Halted"
    x.xenapi.task.destroy(task)


def test_result_is_an_xmlrpc_value_fragment(tsim: Simulator, x: Any) -> None:
    """taskHelper.ml complete: ``"<value>OpaqueRef:...</value>"`` for a ref result,
    the same whether the call came over XML-RPC or JSON-RPC."""
    vm = vm_named(x, "web-staging")
    task = x.xenapi.Async.VM.clone(vm, "task-clone")
    rec = wait_task(x, task)
    assert rec["status"] == "success"
    assert re.fullmatch(f"<value>{REF}</value>", rec["result"])
    new_vm = value_of(rec["result"])
    assert x.xenapi.VM.get_name_label(new_vm) == "task-clone"
    j = JsonRpcClient(tsim.url)
    j.session = x.handle  # sessions are shared between the endpoints
    task2 = j("Async.VM.clone", vm, "task-clone-json")
    rec2 = wait_task(x, task2)
    assert x.xenapi.VM.get_name_label(value_of(rec2["result"])) == "task-clone-json"
    j.close()
    for t in (task, task2):
        x.xenapi.task.destroy(t)


def test_failure_fills_error_info(x: Any) -> None:
    """taskHelper.ml failed: progress 1, error_info = [code, params...], finished."""
    vm = vm_named(x, "web-01")
    task = x.xenapi.Async.VM.start(vm, False, False)
    rec = wait_task(x, task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert rec["progress"] == 1.0 and rec["result"] == ""
    assert rec["finished"].value != EPOCH and rec["allowed_operations"] == []
    x.xenapi.task.destroy(task)


def test_synchronous_errors_come_before_any_task(x: Any) -> None:
    """Count, unmarshalling and session errors answer the Async call itself."""
    with pytest.raises(XenAPI.Failure) as e:
        x.xenapi.Async.VM.start(vm_named(x, "web-01"), False)
    assert e.value.details[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
    with pytest.raises(XenAPI.Failure) as e:
        x.xenapi.Async.VM.start(vm_named(x, "web-01"), "no", False)
    assert e.value.details[0] == "INTERNAL_ERROR"


def test_cancel_a_cancellable_task(x: Any) -> None:
    """xapi_task.ml cancel records ``cancel`` in current_operations (keyed by the
    cancelling call's dummy task); a cancellable operation then fails with
    TASK_CANCELLED [task] and the task ends ``cancelled``."""
    vm = vm_named(x, "web-02")
    task = x.xenapi.Async.VM.clean_shutdown(vm)
    wait_for(lambda: x.xenapi.task.get_allowed_operations(task) == ["cancel"])
    assert x.xenapi.task.cancel(task) == ""
    ops = x.xenapi.task.get_current_operations(task)
    assert list(ops.values()) == ["cancel"]
    assert re.fullmatch(r"DummyRef:\|[0-9a-f-]{36}\|task\.cancel", next(iter(ops)))
    rec = wait_task(x, task)
    assert rec["status"] == "cancelled"
    assert rec["error_info"] == ["TASK_CANCELLED", task]
    assert x.xenapi.VM.get_power_state(vm) == "Running"
    x.xenapi.task.destroy(task)


def test_cancel_a_task_that_is_not_cancellable(x: Any) -> None:
    """Not refused either, but the operation does not heed it (VM.suspend marks its
    task not cancellable, taskHelper.ml set_not_cancellable)."""
    vm = vm_named(x, "web-02")
    task = x.xenapi.Async.VM.suspend(vm)
    x.xenapi.task.cancel(task)
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["error_info"] == []
    assert x.xenapi.VM.get_power_state(vm) == "Suspended"
    x.xenapi.task.destroy(task)
    x.xenapi.VM.resume(vm, False, False)


def test_destroy_completed_and_pending_tasks(x: Any) -> None:
    """xapi_task.ml destroy: a completed task goes at once; a pending one gets
    ``destroy`` in current_operations and goes when it completes."""
    done = x.xenapi.task.create("mine", "a client's own task")
    x.xenapi.task.set_status(done, "success")
    x.xenapi.task.destroy(done)
    with pytest.raises(XenAPI.Failure) as e:
        x.xenapi.task.get_record(done)
    assert e.value.details == ["HANDLE_INVALID", "task", done]
    vm = vm_named(x, "web-03")
    task = x.xenapi.Async.VM.start(vm, False, False)
    x.xenapi.task.destroy(task)
    assert x.xenapi.task.get_current_operations(task) == {"task": "destroy"}

    def gone() -> bool:
        try:
            x.xenapi.task.get_status(task)
        except XenAPI.Failure as f:
            return bool(f.details[0] == "HANDLE_INVALID")
        return False

    wait_for(gone, timeout=10)
    assert x.xenapi.VM.get_power_state(vm) == "Running"


def test_task_create(tsim: Simulator, x: Any) -> None:
    task = x.xenapi.task.create("export", "for an HTTP transfer")
    rec = x.xenapi.task.get_record(task)
    assert (rec["name_label"], rec["name_description"], rec["status"]) == (
        "export", "for an HTTP transfer", "pending"
    )
    assert rec["progress"] == 0.0 and rec["allowed_operations"] == []
    assert rec["type"] == "<none/>" and rec["backtrace"] == "()"
    assert task in x.xenapi.task.get_all()
    x.xenapi.task.cancel(task)  # accepted; nothing runs under it
    assert x.xenapi.task.get_status(task) == "pending"
    x.xenapi.task.set_status(task, "success")
    x.xenapi.task.destroy(task)


def test_task_events(tsim: Simulator) -> None:
    """A task is watched with event.from(["task"]): add, mods as progress moves, del
    once destroyed."""
    j = JsonRpcClient(tsim.url)
    j.login(tsim.user, tsim.password)
    tok = j("event.from", ["task"], "", 1.0)["token"]
    vm = next(r for r, row in tsim.store.all("VM").items() if row["name_label"] == "monitor-01")
    task = j("Async.VM.clean_shutdown", vm)
    ops: list[str] = []
    progress: list[float] = []
    status = "pending"
    deadline = time.monotonic() + 15
    while status == "pending" and time.monotonic() < deadline:
        batch = j("event.from", ["task"], tok, 10.0)
        tok = batch["token"]
        for e in batch["events"]:
            if e["ref"] == task:
                ops.append(e["operation"])
                progress.append(e["snapshot"]["progress"])
                status = e["snapshot"]["status"]
    assert ops[0] == "add" and set(ops[1:]) <= {"mod"} and status == "success"
    assert progress == sorted(progress) and progress[-1] == 1.0
    j("task.destroy", task)
    batch = j("event.from", ["task"], tok, 10.0)
    assert [(e["operation"], e["ref"]) for e in batch["events"]] == [("del", task)]
    with pytest.raises(JsonRpcError) as e:
        j("task.get_record", task)
    assert e.value.details == ["HANDLE_INVALID", "task", task]
    j.logout()
    j.close()
