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


def _leave_free(sim: Simulator, x: Any, hosts: list[tuple[str, Any]], free: list[int]) -> None:
    """Shrink each host's memory so that compute_free_memory says ``free``."""
    for (h, rec), want in zip(hosts, free, strict=True):
        now = int(x.xenapi.host.compute_free_memory(h))
        total = int(x.xenapi.host_metrics.get_memory_total(rec["metrics"]))
        with sim.store.lock:
            sim.store.update(rec["metrics"], {"memory_total": total - now + want})


def _vm(x: Any, name: str) -> str:
    return str(x.VM.get_by_name_label(name)[0])


def test_a_vm_that_cannot_migrate_still_takes_its_room(sim: Simulator, xapi: Any) -> None:
    """xapi_host.ml compute_evacuation_plan_no_wlb bin-packs every VM that passed the
    boot checks, also one whose pool_migrate check failed: a paused VM takes room
    another VM then lacks (HOST_NOT_ENOUGH_FREE_MEMORY), and keeps its own error."""
    x = xapi.xenapi
    hosts = hosts_by_address(xapi)
    source = next(h for h, r in hosts if r["name_label"] == "xcp-ng-02")
    others = [(h, r) for h, r in hosts if h != source]
    db = _vm(x, "db-01")  # 16 GiB, the biggest on xcp-ng-02
    x.VM.pause(db)
    db_rec = x.VM.get_record(db)
    need = int(db_rec["memory_dynamic_min"]) + int(db_rec["memory_overhead"])
    _leave_free(sim, xapi, others, [need + GiB, GiB // 2])
    plan = x.host.get_vms_which_prevent_evacuation(source)
    assert plan[db][0] == "VM_BAD_POWER_STATE"
    k8s = _vm(x, "k8s-node-01")
    assert plan[k8s] == ["HOST_NOT_ENOUGH_FREE_MEMORY", k8s]


def test_memory_shortage_replaces_a_migrate_error(sim: Simulator, xapi: Any) -> None:
    """A VM the bin-packing leaves out gets HOST_NOT_ENOUGH_FREE_MEMORY, replacing the
    pool_migrate error it had (Hashtbl.replace)."""
    x = xapi.xenapi
    hosts = hosts_by_address(xapi)
    source = next(h for h, r in hosts if r["name_label"] == "xcp-ng-02")
    db = _vm(x, "db-01")
    x.VM.pause(db)
    _leave_free(sim, xapi, [(h, r) for h, r in hosts if h != source], [GiB // 2, GiB // 2])
    assert x.host.get_vms_which_prevent_evacuation(source)[db] == [
        "HOST_NOT_ENOUGH_FREE_MEMORY", db]


def test_a_pvh_guest_is_packed_at_its_static_max(sim: Simulator, xapi: Any) -> None:
    """xapi_ha_vm_failover.ml vm_memory: a PVH guest counts memory_static_max, not its
    dynamic_min, when the evacuation is planned."""
    x = xapi.xenapi
    hosts = hosts_by_address(xapi)
    source = next(h for h, r in hosts if r["name_label"] == "xcp-ng-02")
    k8s = _vm(x, "k8s-node-01")
    rec = x.VM.get_record(k8s)
    assert rec["domain_type"] == "pvh"
    with sim.store.lock:
        sim.store.update(k8s, {"memory_dynamic_min": int(rec["memory_static_max"]) // 2})
    # room for its dynamic_min, not for its static_max; the other VMs find no room
    half = int(rec["memory_static_max"]) // 2 + int(rec["memory_overhead"])
    _leave_free(sim, xapi, [(h, r) for h, r in hosts if h != source], [half + GiB // 4, 0])
    assert x.host.get_vms_which_prevent_evacuation(source)[k8s] == [
        "HOST_NOT_ENOUGH_FREE_MEMORY", k8s]


def test_ha_protects_only_vms_that_always_run(sim: Simulator, xapi: Any) -> None:
    """Helpers.vm_should_always_run: with HA on, a VM is protected only with
    ha_always_run and restart priority "restart"; the others cannot be evacuated
    (HOST_EVACUATE_VM_NOT_HA_PROTECTED)."""
    x = xapi.xenapi
    hosts = hosts_by_address(xapi)
    source = next(h for h, r in hosts if r["name_label"] == "xcp-ng-01")
    web, cache = _vm(x, "web-01"), _vm(x, "cache-01")
    with sim.store.lock:
        pool = next(iter(sim.store.all("pool")))
        sim.store.update(pool, {"ha_enabled": True})
        sim.store.update(web, {"ha_restart_priority": "restart", "ha_always_run": True})
        sim.store.update(cache, {"ha_restart_priority": "restart", "ha_always_run": False})
    plan = x.host.get_vms_which_prevent_evacuation(source)
    assert web not in plan
    assert plan[cache] == ["HOST_EVACUATE_VM_NOT_HA_PROTECTED", cache]
