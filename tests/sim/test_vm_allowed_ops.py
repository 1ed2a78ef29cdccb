"""VM.allowed_operations and the operation check, against xapi's rules.

Source: xapi-project/xen-api ocaml/xapi/xapi_vm_lifecycle.ml (allowed_power_states,
check_template, check_snapshot, check_op_for_feature, check_operation_error,
ignored_ops, update_allowed_operations); ocaml/xapi-cli-server/record_util.ml
(vm_operation_to_string, the op text in VM_IS_TEMPLATE / VM_IS_SNAPSHOT).
"""

from __future__ import annotations

import time

from tests.sim import test_vm_support as S
from tests.sim.test_vm_support import Api
from xsctl.sim import Simulator
from xsctl.sim.handlers import vm_lifecycle as vmh

sim_fixture = S.sim_fixture
api_fixture = S.api_fixture
xml_fixture = S.xml_fixture

HALTED = {"snapshot", "clone", "copy", "start", "start_on", "migrate_send",
          "changing_dynamic_range", "changing_static_range", "changing_shadow_memory",
          "changing_NVRAM", "make_into_template", "export", "metadata_export", "destroy",
          "create_vtpm"}
RUNNING_WITH_TOOLS = {"snapshot", "checkpoint", "pause", "clean_shutdown", "clean_reboot",
                      "hard_shutdown", "hard_reboot", "suspend", "pool_migrate",
                      "migrate_send", "changing_dynamic_range", "changing_VCPUs_live",
                      "metadata_export"}
SUSPENDED = {"snapshot", "checkpoint", "hard_shutdown", "resume", "resume_on",
             "migrate_send", "export", "metadata_export", "destroy"}
PAUSED = {"snapshot", "checkpoint", "unpause", "hard_shutdown", "hard_reboot",
          "metadata_export"}
DEFAULT_TEMPLATE = {"clone", "copy", "provision", "changing_dynamic_range",
                    "changing_static_range", "changing_shadow_memory", "changing_NVRAM",
                    "export", "metadata_export"}
SNAPSHOT = {"revert", "clone", "copy", "export", "destroy", "metadata_export"}
DOM0 = {"changing_dynamic_range", "changing_static_range", "metadata_export"}


def allowed(xml: Api, name: str) -> set[str]:
    return set(xml("VM.get_allowed_operations", xml.vm(name)))


def test_allowed_operations_per_power_state(xml: Api) -> None:
    assert allowed(xml, "web-staging") == HALTED
    assert allowed(xml, "web-01") == RUNNING_WITH_TOOLS
    assert allowed(xml, "k8s-node-03") == SUSPENDED
    assert allowed(xml, "ci-runner-02") == PAUSED


def test_allowed_operations_templates_snapshots_and_dom0(xml: Api) -> None:
    assert allowed(xml, "Debian Bookworm 12") == DEFAULT_TEMPLATE
    # a custom template may also be destroyed and migrated (check_template)
    assert allowed(xml, "web-base (Debian 12)") == DEFAULT_TEMPLATE | {"destroy", "migrate_send"}
    assert allowed(xml, "pre-deploy") == SNAPSHOT
    assert allowed(xml, "Control domain on host: xcp-ng-01") == DOM0


def test_allowed_operations_come_in_xapis_order(xml: Api, sim: Simulator) -> None:
    """update_allowed_operations folds with ``op :: accu``: reverse enum order."""
    ops = xml("VM.get_allowed_operations", xml.vm("web-staging"))
    enum = sim.dm.enums["vm_operations"]
    assert ops == sorted(ops, key=enum.index, reverse=True)


def test_hvm_guest_without_tools_loses_guest_driven_operations(xml: Api) -> None:
    """check_op_for_feature: a live HVM guest with no PV drivers and no feature flags
    cannot be shut down, rebooted, suspended or migrated cleanly."""
    vm = xml.vm("[lab] test-vm")
    xml("VM.start", vm, False, False)
    assert set(xml("VM.get_allowed_operations", vm)) == {
        "snapshot", "pause", "hard_shutdown", "hard_reboot", "changing_dynamic_range",
        "metadata_export"}
    assert xml.fail("VM.clean_shutdown", vm) == ["VM_LACKS_FEATURE", vm]
    assert xml.fail("VM.clean_reboot", vm) == ["VM_LACKS_FEATURE", vm]
    assert xml.fail("VM.suspend", vm) == ["VM_LACKS_FEATURE", vm]
    assert xml.fail("VM.set_VCPUs_number_live", vm, 1) == ["VM_LACKS_FEATURE", vm]


def test_check_order_and_op_text(api: Api) -> None:
    """Errors in check_operation_error's order, with Record_util's op names."""
    tmpl = api.vm("Debian Bookworm 12")
    snap = api.vm("pre-deploy")
    web = api.vm("web-staging")
    dom0 = api.vm("Control domain on host: xcp-ng-01")
    assert api.fail("VM.start", tmpl, False, False) == ["VM_IS_TEMPLATE", tmpl, "start"]
    assert api.fail("VM.destroy", tmpl) == ["VM_IS_TEMPLATE", tmpl, "destroy"]
    assert api.fail("VM.start", snap, False, False) == ["VM_IS_SNAPSHOT", snap, "start"]
    # changing_memory_limits is missing from xapi's op table
    assert api.fail("VM.set_memory", snap, 1024**3) == [
        "VM_IS_SNAPSHOT", snap, "(unknown operation)"]
    assert api.fail("VM.provision", web) == ["ONLY_PROVISION_TEMPLATE"]
    assert api.fail("VM.revert", web) == ["ONLY_REVERT_SNAPSHOT"]
    # power state is checked before the template rule
    assert api.fail("VM.clean_shutdown", tmpl) == ["VM_BAD_POWER_STATE", tmpl, "running", "halted"]
    assert api.fail("VM.pause", dom0) == [
        "OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain"]
    assert api.fail("VM.set_VCPUs_max", dom0, 4) == [
        "OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0"]
    assert api.fail("VM.destroy", dom0) == ["VM_BAD_POWER_STATE", dom0, "halted, suspended", "running"]


def test_blocked_operations(api: Api) -> None:
    """OPERATION_BLOCKED [vm, reason] comes first; allowed_operations follows at once."""
    vm = api.vm("web-staging")
    api("VM.add_to_blocked_operations", vm, "start", "Maintenance window")
    assert "start" not in api("VM.get_allowed_operations", vm)
    assert api.fail("VM.start", vm, False, False) == ["OPERATION_BLOCKED", vm, "Maintenance window"]
    api("VM.remove_from_blocked_operations", vm, "start")
    assert "start" in api("VM.get_allowed_operations", vm)
    api("VM.start", vm, False, False)
    assert api("VM.get_power_state", vm) == "Running"


def test_assert_operation_valid(api: Api) -> None:
    vm = api.vm("web-01")
    assert api("VM.assert_operation_valid", vm, "suspend") == ""
    assert api.fail("VM.assert_operation_valid", vm, "start") == [
        "VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_clone_of_suspended_vm_needs_the_pool_switch(xml: Api, sim: Simulator) -> None:
    """allowed_power_states: clone/copy also from Suspended for snapshots or when
    pool.other_config:allow_clone_suspended_vm = true (Helpers.clone_suspended_vm_enabled)."""
    vm = xml.vm("k8s-node-03")
    assert xml.fail("VM.clone", vm, "x") == ["VM_BAD_POWER_STATE", vm, "halted", "suspended"]
    pool = xml("pool.get_all")[0]
    xml("pool.add_to_other_config", pool, "allow_clone_suspended_vm", "true")
    xml("VM.update_allowed_operations", vm)
    assert "clone" in xml("VM.get_allowed_operations", vm)
    new = xml("VM.clone", vm, "k8s-clone")
    assert xml("VM.get_power_state", new) == "Suspended"
    assert xml("VM.get_suspend_VDI", new) != xml("VM.get_suspend_VDI", vm)


def test_allowed_operations_scale_to_ten_thousand_vms() -> None:
    """Memoised on the facts that decide them: recomputing 10,000 VMs is quick."""
    s = Simulator(vms=10_000, op_time=0.0, password="x", member_listeners=False)
    store = s.store
    rows = list(store.all("VM").items())
    t0 = time.perf_counter()
    for ref, _ in rows:
        store.republish(ref)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0, elapsed
    running = [r for r, row in store.all("VM").items()
               if row["power_state"] == "Running" and not row["is_control_domain"]]
    assert set(store.get(running[0], "VM")["allowed_operations"]) == RUNNING_WITH_TOOLS
    assert vmh.vm_facts(store, running[0], store.get(running[0], "VM")).live
