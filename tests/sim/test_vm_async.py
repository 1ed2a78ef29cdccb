"""Async.VM.* calls: tasks with progress, current_operations and allowed_operations
while they run, task.result in xapi's format, waiting and cancelling.

Sources (xapi-project/xen-api): ocaml/xapi/xapi_vm_helpers.ml with_vm_operation (mark
current_operations keyed by the task, recompute allowed_operations), ocaml/xapi/helpers.ml
retry / Policy.standard (an operation that meets OTHER_OPERATION_IN_PROGRESS waits and
tries again, and is cancellable meanwhile), ocaml/xapi/xapi_vm_lifecycle.ml
is_allowed_concurrently, ocaml/xapi/message_forwarding.ml (hard_shutdown cancels a
clean_shutdown in progress; the VM's host carries vm_start while it starts; VBDs carry
attach), ocaml/xapi/taskHelper.ml (result is an XML-RPC value fragment).
"""

from __future__ import annotations

import re
from typing import Any

from tests.conftest import wait_for
from tests.sim import test_vm_support as S
from tests.sim.test_vm_support import Api
from xsctl.sim import Simulator

sim_fixture = S.sim_fixture
api_fixture = S.api_fixture
xml_fixture = S.xml_fixture


def running_op(api: Api, vm: str) -> dict[str, str]:
    ops: dict[str, str] = wait_for(lambda: api("VM.get_current_operations", vm))
    return ops


def test_async_start_shows_its_operation_while_it_runs(api: Api, sim: Simulator) -> None:
    sim.op_time = 0.4
    vm = api.vm("web-staging")
    task = api("Async.VM.start", vm, False, False)
    assert running_op(api, vm) == {task: "start"}
    # nothing may run alongside a start (is_allowed_concurrently)
    assert api("VM.get_allowed_operations", vm) == []
    rec = api.record("task", task)
    assert rec["status"] == "pending" and rec["name_label"] == "Async.VM.start"
    assert rec["allowed_operations"] == ["cancel"]
    wait_for(lambda: 0 < float(api("task.get_progress", task)) < 1)
    host = wait_for(lambda: next((h for h in api("host.get_all")
                                  if task in api("host.get_current_operations", h)), None))
    assert api("host.get_current_operations", host) == {task: "vm_start"}
    vbd = api("VM.get_VBDs", vm)[0]
    assert api("VBD.get_current_operations", vbd) == {task: "attach"}
    done = api.wait_task(task)
    assert done["status"] == "success"
    assert done["result"] == "<value></value>"
    assert float(done["progress"]) == 1.0 and done["error_info"] == []
    assert api("VM.get_current_operations", vm) == {}
    assert api("VM.get_resident_on", vm) == host
    assert api("host.get_current_operations", host) == {}
    assert api("VBD.get_current_operations", vbd) == {}


def test_async_clone_result_is_an_xmlrpc_value(api: Api) -> None:
    vm = api.vm("web-staging")
    task = api("Async.VM.clone", vm, "web-staging-clone")
    done = api.wait_task(task)
    assert done["status"] == "success"
    m = re.fullmatch(r"<value>(OpaqueRef:[0-9a-f-]+)</value>", done["result"])
    assert m is not None
    assert api("VM.get_name_label", m.group(1)) == "web-staging-clone"


def test_async_failure_fills_error_info(api: Api) -> None:
    vm = api.vm("web-01")
    task = api("Async.VM.start", vm, False, False)
    done = api.wait_task(task)
    assert done["status"] == "failure"
    assert done["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert float(done["progress"]) == 1.0


def test_a_conflicting_call_waits_for_the_running_one(xml: Api, sim: Simulator) -> None:
    """While suspend runs, clean_shutdown meets OTHER_OPERATION_IN_PROGRESS, waits
    (Helpers.retry), then finds the VM suspended. assert_operation_valid does not wait."""
    sim.op_time = 0.3
    vm = xml.vm("web-03")
    task = xml("Async.VM.suspend", vm)
    assert running_op(xml, vm) == {task: "suspend"}
    assert xml.fail("VM.assert_operation_valid", vm, "clean_shutdown") == [
        "OTHER_OPERATION_IN_PROGRESS", "VM", vm, "suspend", task]
    assert xml.fail("VM.clean_shutdown", vm) == ["VM_BAD_POWER_STATE", vm, "running", "suspended"]
    assert xml.record("task", task)["status"] == "success"


def test_clones_run_side_by_side(xml: Api, sim: Simulator) -> None:
    """clone, copy and export may overlap (is_allowed_concurrently long_copies)."""
    sim.op_time = 0.4
    vm = xml.vm("web-staging")
    t1 = xml("Async.VM.clone", vm, "c1")
    t2 = xml("Async.VM.copy", vm, "c2", "OpaqueRef:NULL")
    def both() -> dict[str, str] | None:
        ops: dict[str, str] = xml("VM.get_current_operations", vm)
        return ops if len(ops) == 2 else None

    ops = wait_for(both)
    assert ops == {t1: "clone", t2: "copy"}
    assert set(xml("VM.get_allowed_operations", vm)) == {"clone", "copy", "export"}
    assert xml.wait_task(t1)["status"] == "success"
    assert xml.wait_task(t2)["status"] == "success"


def test_hard_shutdown_cancels_a_clean_shutdown(xml: Api, sim: Simulator) -> None:
    sim.op_time = 0.6
    vm = xml.vm("web-02")
    task = xml("Async.VM.clean_shutdown", vm)
    running_op(xml, vm)
    xml("VM.hard_shutdown", vm)
    done = xml.wait_task(task)
    assert done["status"] == "cancelled"
    assert done["error_info"] == ["TASK_CANCELLED", task]
    assert xml("VM.get_power_state", vm) == "Halted"
    bodies = [m["body"] for m in xml.messages("VM_SHUTDOWN", vm)]
    assert len(bodies) == 1 and bodies[0].endswith("shutdown forcibly")


def test_task_cancel_leaves_the_vm_as_it_was(api: Api, sim: Simulator) -> None:
    sim.op_time = 0.6
    vm = api.vm("web-staging")
    task = api("Async.VM.start", vm, False, False)
    running_op(api, vm)
    api("task.cancel", task)
    done = api.wait_task(task)
    assert done["status"] == "cancelled"
    assert done["error_info"] == ["TASK_CANCELLED", task]
    rec = api.record("VM", vm)
    assert rec["power_state"] == "Halted" and rec["current_operations"] == {}
    assert rec["scheduled_to_be_resident_on"] == "OpaqueRef:NULL"
    assert "start" in rec["allowed_operations"]


def test_event_from_shows_the_operation(xml: Api, sim: Simulator) -> None:
    """Clients see current_operations/allowed_operations change through event.from."""
    sim.op_time = 0.3
    vm = xml.vm("web-staging")
    ev = xml.x.xenapi.event_from([f"vm/{vm}"], "", 0.0)
    task = xml("Async.VM.start", vm, False, False)
    token = ev["token"]
    seen: list[dict[str, Any]] = []
    while xml("task.get_status", task) == "pending" or not seen or \
            seen[-1]["power_state"] != "Running":
        ev = xml.x.xenapi.event_from([f"vm/{vm}"], token, 2.0)
        token = ev["token"]
        seen += [e["snapshot"] for e in ev["events"] if e["operation"] == "mod"]
    assert any(s["current_operations"] == {task: "start"} and s["allowed_operations"] == []
               for s in seen)
    assert seen[-1]["current_operations"] == {}
    assert "clean_shutdown" not in seen[-1]["allowed_operations"] or \
        seen[-1]["guest_metrics"] != "OpaqueRef:NULL"
