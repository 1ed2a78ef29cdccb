"""host.evacuate and its planning calls (xapi_host.ml compute_evacuation_plan_no_wlb,
evacuate, assert_can_evacuate, get_vms_which_prevent_evacuation)."""

from __future__ import annotations

from typing import Any

from tests.conftest import wait_task
from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, hosts_by_address
from xsctl.sim import Simulator

GiB = 1024**3


def expected_blockers(x: Any, host: str) -> dict[str, list[str]]:
    """What xapi finds, computed independently: a VM with a disk on an SR only this
    host sees needs that SR (VM_REQUIRES_SR), and a VM that is not running cannot be
    pool-migrated (VM_BAD_POWER_STATE [vm, "running", actual]), which wins."""
    shared = {sr for sr, r in x.xenapi.SR.get_all_records().items() if r["shared"]}
    out: dict[str, list[str]] = {}
    for vm in x.xenapi.host.get_resident_VMs(host):
        rec = x.xenapi.VM.get_record(vm)
        if rec["is_control_domain"]:
            continue
        if rec["power_state"] != "Running":
            out[vm] = ["VM_BAD_POWER_STATE", vm, "running", rec["power_state"].lower()]
            continue
        for vbd in rec["VBDs"]:
            b = x.xenapi.VBD.get_record(vbd)
            if b["empty"]:
                continue
            sr = x.xenapi.VDI.get_SR(b["VDI"])
            if sr not in shared:
                out[vm] = ["VM_REQUIRES_SR", vm, sr]
                break
    return out


def test_vms_which_prevent_evacuation(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_host.ml get_vms_which_prevent_evacuation."""
    for h, _ in hosts_by_address(xapi):
        want = expected_blockers(xapi, h)
        assert xapi.xenapi.host.get_vms_which_prevent_evacuation(h) == want
        assert jrpc("host.get_vms_which_prevent_evacuation", h) == want
    assert any(expected_blockers(xapi, h) for h, _ in hosts_by_address(xapi))


def test_assert_can_evacuate(xapi: Any) -> None:
    """xapi_host.ml assert_can_evacuate: CANNOT_EVACUATE_HOST ["code,params|code,params"] (the old Miami encoding)."""
    h = hosts_by_address(xapi)[2][0]
    want = expected_blockers(xapi, h)
    details = fail(xapi.xenapi.host.assert_can_evacuate, h)
    assert details[0] == "CANNOT_EVACUATE_HOST" and len(details) == 2
    assert sorted(details[1].split("|")) == sorted(",".join(v) for v in want.values())


def test_evacuate_raises_the_first_blocker(xapi: Any) -> None:
    """xapi_host.ml evacuate: the first planning error is raised."""
    h = hosts_by_address(xapi)[1][0]
    want = expected_blockers(xapi, h)
    details = fail(xapi.xenapi.host.evacuate, h)
    assert details in list(want.values())
    assert xapi.xenapi.host.get_current_operations(h) == {}


def test_evacuate_migrates_every_vm(sim: Simulator, xapi: Any) -> None:
    """xapi_host.ml evacuate: With the blockers shut down, Async.host.evacuate moves every VM to another
    enabled host (VM.pool_migrate), keeping them running; the host keeps dom0 only."""
    h = hosts_by_address(xapi)[1][0]
    for vm in expected_blockers(xapi, h):
        xapi.xenapi.VM.hard_shutdown(vm)
    xapi.xenapi.host.disable(h)
    assert xapi.xenapi.host.get_vms_which_prevent_evacuation(h) == {}
    xapi.xenapi.host.assert_can_evacuate(h)
    users = [vm for vm in xapi.xenapi.host.get_resident_VMs(h)
             if not xapi.xenapi.VM.get_is_control_domain(vm)]
    assert users
    task = xapi.xenapi.Async.host.evacuate(h)
    rec = wait_task(xapi, task)
    assert rec["status"] == "success", rec["error_info"]
    assert rec["progress"] == 1.0
    for vm in users:
        v = xapi.xenapi.VM.get_record(vm)
        assert v["power_state"] == "Running" and v["resident_on"] not in (h, "OpaqueRef:NULL")
    left = xapi.xenapi.host.get_resident_VMs(h)
    assert [xapi.xenapi.VM.get_is_control_domain(v) for v in left] == [True]
    names = {m["name"] for m in xapi.xenapi.message.get_all_records().values()}
    assert "VM_MIGRATED" in names


def test_no_hosts_available(xapi: Any) -> None:
    """xapi_host.ml compute_evacuation_plan_no_wlb: Every other host disabled: NO_HOSTS_AVAILABLE [vm] for each VM."""
    hosts = hosts_by_address(xapi)
    target = hosts[0][0]
    for h, _ in hosts[1:]:
        xapi.xenapi.host.disable(h)
    plan = xapi.xenapi.host.get_vms_which_prevent_evacuation(target)
    users = [vm for vm in xapi.xenapi.host.get_resident_VMs(target)
             if not xapi.xenapi.VM.get_is_control_domain(vm)]
    assert plan == {vm: ["NO_HOSTS_AVAILABLE", vm] for vm in users}


def test_not_enough_free_memory(sim: Simulator, xapi: Any) -> None:
    """xapi_host.ml compute_evacuation_plan_no_wlb: The memory bin-packing leaves out what fits nowhere:
    HOST_NOT_ENOUGH_FREE_MEMORY [vm]."""
    hosts = hosts_by_address(xapi)
    source = hosts[0][0]
    for h, rec in hosts[1:]:  # shrink the other hosts to (almost) what they already use
        free = int(xapi.xenapi.host.compute_free_memory(h))
        total = int(xapi.xenapi.host_metrics.get_memory_total(rec["metrics"]))
        with sim.store.lock:
            sim.store.update(rec["metrics"], {"memory_total": total - free + GiB})
    plan = xapi.xenapi.host.get_vms_which_prevent_evacuation(source)
    codes = {v[0] for v in plan.values()}
    assert "HOST_NOT_ENOUGH_FREE_MEMORY" in codes
    for vm, detail in plan.items():
        if detail[0] == "HOST_NOT_ENOUGH_FREE_MEMORY":
            assert detail == ["HOST_NOT_ENOUGH_FREE_MEMORY", vm]
