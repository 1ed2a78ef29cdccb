"""Simulator.set_guest_metrics: a test reports from a guest as its guest agent does
(xapi_guest_agent.ml), and clients see what xapi would send: the record over the
API, the events, and allowed_operations that follow the drivers and features."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import vm_ref, wait_for
from tests.jsonrpc import JsonRpcClient
from xsctl.sim import Simulator
from xsctl.sim.handlers.vm_guest import guest_agent_report

EVIL = "evil\x1b]0;PWNED\x07\x1b[2J\x9b31m"


def token_now(j: JsonRpcClient, classes: list[str]) -> str:
    return str(j("event.from", classes, "", 0.0)["token"])


def test_what_a_guest_reports_reaches_clients(sim: Simulator, jrpc: JsonRpcClient) -> None:
    vm = vm_ref_j(jrpc, "web-01")
    gm = jrpc("VM.get_guest_metrics", vm)
    token = token_now(jrpc, ["vm", "vm_guest_metrics"])
    before = jrpc("VM_guest_metrics.get_last_updated", gm)
    assert sim.set_guest_metrics(
        vm, os_version={"name": EVIL, "distro": "debian", "major": "13"},
        networks={"0/ip": "10.0.9.9", "0/ipv4/0": "10.0.9.9", "0/ipv6/0": "fe80::9"},
        other={"feature-shutdown": "1", "note": EVIL},
    ) == gm
    rec = jrpc("VM_guest_metrics.get_record", gm)
    assert rec["os_version"] == {"name": EVIL, "distro": "debian", "major": "13"}
    assert rec["networks"]["0/ip"] == "10.0.9.9" and rec["other"]["note"] == EVIL
    assert rec["last_updated"] >= before
    batch = jrpc("event.from", ["vm", "vm_guest_metrics"], token, 5.0)
    seen = {(e["class"], e["operation"], e["ref"]) for e in batch["events"]}
    assert ("vm_guest_metrics", "mod", gm) in seen and seen <= {
        ("vm_guest_metrics", "mod", gm), ("vm", "mod", vm)}
    snap = next(e["snapshot"] for e in batch["events"] if e["ref"] == gm)
    assert snap["os_version"]["name"] == EVIL


def test_drivers_and_features_decide_operations(sim: Simulator, jrpc: JsonRpcClient) -> None:
    """An HVM guest without PV drivers states no features: no clean shutdown, reboot,
    suspend or vCPU hotplug (xapi_vm_lifecycle.ml check_op_for_feature)."""
    vm = vm_ref_j(jrpc, "web-01")
    assert "clean_shutdown" in jrpc("VM.get_allowed_operations", vm)
    token = token_now(jrpc, ["vm"])
    sim.set_guest_metrics(vm, PV_drivers_version={}, PV_drivers_detected=False, other={})
    ops = set(jrpc("VM.get_allowed_operations", vm))
    assert not ops & {"clean_shutdown", "clean_reboot", "suspend", "changing_VCPUs_live"}
    assert "hard_shutdown" in ops
    [event] = jrpc("event.from", ["vm"], token, 5.0)["events"]
    assert (event["ref"], event["operation"]) == (vm, "mod")
    assert set(event["snapshot"]["allowed_operations"]) == ops
    sim.set_guest_metrics(vm, PV_drivers_version={"major": "9", "minor": "4"},
                          PV_drivers_detected=True)
    assert {"clean_shutdown", "suspend"} <= set(jrpc("VM.get_allowed_operations", vm))


def test_a_report_is_not_overwritten_by_the_agent(sim: Simulator, xapi: Any) -> None:
    """The agent's own first report after boot leaves a test's report alone."""
    vm = vm_ref(xapi, "backup-01")
    xapi.xenapi.VM.start(vm, False, False)
    domid = int(xapi.xenapi.VM.get_domid(vm))
    gm = sim.set_guest_metrics(vm, os_version={"name": "Plan 9"})
    guest_agent_report(sim, vm, domid)  # what the boot's timer runs
    assert xapi.xenapi.VM_guest_metrics.get_os_version(gm) == {"name": "Plan 9"}
    # a new domain: its guest reports afresh
    xapi.xenapi.VM.hard_reboot(vm)
    wait_for(lambda: xapi.xenapi.VM_guest_metrics.get_os_version(
        xapi.xenapi.VM.get_guest_metrics(vm)).get("name", "Plan 9") != "Plan 9")


@pytest.mark.parametrize("fields,words", [
    ({"os_versions": {}}, "os_versions"),
    ({"uuid": "x"}, "uuid"),
    ({"os_version": "Debian"}, "os_version"),
    ({"networks": {"0/ip": 10}}, "networks"),
    ({"PV_drivers_detected": "yes"}, "PV_drivers_detected"),
    ({"can_use_hotplug_vbd": "maybe"}, "can_use_hotplug_vbd"),
])
def test_bad_reports_are_refused(sim: Simulator, fields: dict[str, Any], words: str) -> None:
    vm = next(r for r, v in sim.store.all("VM").items() if v["name_label"] == "web-01")
    gm = sim.store.get(vm, "VM")["guest_metrics"]
    before = sim.store.get(gm)
    with pytest.raises(ValueError, match=words):
        sim.set_guest_metrics(vm, **fields)
    assert sim.store.get(gm) is before


def test_only_a_running_guest_reports(sim: Simulator) -> None:
    halted = next(r for r, v in sim.store.all("VM").items() if v["name_label"] == "backup-01")
    with pytest.raises(ValueError, match="running"):
        sim.set_guest_metrics(halted, os_version={"name": "x"})
    with pytest.raises(ValueError, match="no VM"):
        sim.set_guest_metrics("OpaqueRef:nope", os_version={"name": "x"})


def vm_ref_j(j: JsonRpcClient, name: str) -> str:
    [ref] = j("VM.get_by_name_label", name)
    return str(ref)
