"""VM memory and vCPU settings and the start-time validation.

Sources (xapi-project/xen-api): ocaml/xapi/xapi_vm.ml (set_memory_limits, set_memory,
set_memory_static_range, set_memory_dynamic_range, set_VCPUs_max, set_VCPUs_at_startup),
ocaml/xapi/message_forwarding.ml (the operation each setter marks; static/dynamic min
and max setters become range calls; reserve_memory_for_dynamic_change reports KiB),
ocaml/xapi/xapi_vm_memory_constraints.ml (ORDER / MAXPIN reasons),
ocaml/xapi-idl/memory/memory.ml (overhead), ocaml/xapi/xapi_xenops.ml set_vcpus,
ocaml/xapi/xapi_vm_helpers.ml (validate_basic_parameters, assert_enough_pcpus).
"""

from __future__ import annotations

from tests.sim import test_vm_support as S
from tests.sim.test_vm_support import Api, GiB, MiB, num, vm_record
from xsctl.sim import Simulator
from xsctl.sim.handlers import vm_memory as vmh

sim_fixture = S.sim_fixture
api_fixture = S.api_fixture
xml_fixture = S.xml_fixture

RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


def memory(api: Api, vm: str) -> tuple[int, ...]:
    r = api.record("VM", vm)
    return tuple(num(r[f]) for f in ("memory_static_min", "memory_dynamic_min", "memory_target",
                                      "memory_dynamic_max", "memory_static_max"))


def test_set_memory_limits_on_a_halted_vm(api: Api) -> None:
    vm = api.vm("web-staging")
    api("VM.set_memory_limits", vm, 512 * MiB, 4 * GiB, GiB, 3 * GiB)
    # target follows dynamic_min
    assert memory(api, vm) == (512 * MiB, GiB, GiB, 3 * GiB, 4 * GiB)
    # memory.ml HVM overhead for 4 GiB and 2 vCPUs: 1 + 1 + shadow 34 + 1 MiB
    assert num(api("VM.get_memory_overhead", vm)) == 37 * MiB
    assert num(api("VM.compute_memory_overhead", vm)) == 37 * MiB
    assert api.fail("VM.set_memory_limits", vm, 512 * MiB, 2 * GiB, 3 * GiB, 3 * GiB) == [
        "MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    api("VM.set_memory", vm, 3 * GiB)
    assert memory(api, vm) == (512 * MiB, 3 * GiB, 3 * GiB, 3 * GiB, 3 * GiB)


def test_static_and_dynamic_setters(api: Api) -> None:
    vm = api.vm("web-staging")
    api("VM.set_memory_static_max", vm, 4 * GiB)
    api("VM.set_memory_dynamic_max", vm, 3 * GiB)
    api("VM.set_memory_dynamic_min", vm, GiB)
    api("VM.set_memory_static_min", vm, 256 * MiB)
    assert memory(api, vm) == (256 * MiB, GiB, GiB, 3 * GiB, 4 * GiB)
    api("VM.set_memory_static_range", vm, 128 * MiB, 8 * GiB)
    api("VM.set_memory_dynamic_range", vm, 2 * GiB, 6 * GiB)
    assert memory(api, vm) == (128 * MiB, 2 * GiB, 2 * GiB, 6 * GiB, 8 * GiB)
    assert api.fail("VM.set_memory_static_max", vm, GiB) == ["MEMORY_CONSTRAINT_VIOLATION_ORDER"]
    assert api.fail("VM.set_memory_dynamic_range", vm, 4 * GiB, 3 * GiB) == [
        "MEMORY_CONSTRAINT_VIOLATION_ORDER"]


def test_limits_need_a_halted_vm(api: Api) -> None:
    vm = api.vm("web-01")
    bad = ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert api.fail("VM.set_memory_limits", vm, 512 * MiB, 2 * GiB, 2 * GiB, 2 * GiB) == bad
    assert api.fail("VM.set_memory", vm, GiB) == bad
    assert api.fail("VM.set_memory_static_max", vm, 4 * GiB) == bad
    assert api.fail("VM.set_memory_static_range", vm, 0, 4 * GiB) == bad
    assert api.fail("VM.set_VCPUs_max", vm, 4) == bad
    susp = api.vm("k8s-node-03")
    assert api.fail("VM.set_memory_dynamic_range", susp, GiB, GiB) == [
        "VM_BAD_POWER_STATE", susp, "halted, running", "suspended"]


def test_maxpin_when_dmc_is_off_and_for_the_control_domain(api: Api, sim: Simulator) -> None:
    """assert_valid_for_current_context: pinned at static_max unless DMC is enabled;
    a control domain is always pinned; a running one then requires a reboot."""
    vm = api.vm("web-staging")
    pool = api("pool.get_all")[0]
    sim.store.update(pool, {"restrictions": {"restrict_dmc": "true"}})
    assert api.fail("VM.set_memory_limits", vm, 512 * MiB, 4 * GiB, GiB, 4 * GiB) == [
        "MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "DMC disabled"]
    api("VM.set_memory_limits", vm, 512 * MiB, 4 * GiB, 4 * GiB, 4 * GiB)
    dom0 = api.vm("Control domain on host: xcp-ng-02")
    sim.store.update(pool, {"restrictions": {"restrict_dmc": "false"}})
    assert api.fail("VM.set_memory_limits", dom0, 4 * GiB, 8 * GiB, 4 * GiB, 8 * GiB) == [
        "MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "control domain"]
    assert api("VM.get_requires_reboot", dom0) is False
    api("VM.set_memory_limits", dom0, 4 * GiB, 8 * GiB, 8 * GiB, 8 * GiB)
    assert api("VM.get_requires_reboot", dom0) is True


def test_nested_virt_pins_memory_and_blocks_ballooning(xml: Api) -> None:
    vm = xml.vm("web-staging")
    xml("VM.add_to_platform", vm, "nested-virt", "true")
    xml("VM.set_memory_limits", vm, 512 * MiB, 4 * GiB, 2 * GiB, 4 * GiB)
    assert xml.fail("VM.start", vm, False, False) == [
        "MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "nested virt"]
    xml("VM.start", vm, False, True)  # force skips the check (Xapi_vm.start)
    assert xml.fail("VM.set_memory_dynamic_range", vm, GiB, 4 * GiB) == [
        "VM_IS_USING_NESTED_VIRT", vm]
    h2 = xml("host.get_by_name_label", "xcp-ng-02")[0]
    xml.wait_agent(vm)
    assert xml.fail("VM.pool_migrate", vm, h2, {}) == ["VM_IS_IMMOBILE", vm]
    xml("VM.hard_shutdown", vm)
    assert xml.fail("VM.set_memory_limits", vm, 512 * MiB, 4 * GiB, 2 * GiB, 4 * GiB) == [
        "MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "nested virt"]


def test_dynamic_range_of_a_running_vm(api: Api, sim: Simulator) -> None:
    """A higher dynamic_min must fit on the host: HOST_NOT_ENOUGH_FREE_MEMORY with
    KiB values (reserve_memory_for_dynamic_change)."""
    vm = api.vm("web-01")
    api("VM.set_memory_dynamic_range", vm, GiB, 2 * GiB)
    assert memory(api, vm)[1:4] == (GiB, GiB, 2 * GiB)
    metrics = api("VM.get_metrics", vm)
    assert num(api("VM_metrics.get_memory_actual", metrics)) == 2 * GiB
    host = api("VM.get_resident_on", vm)
    hm = api("host.get_metrics", host)
    total = sim.store.get(hm, "host_metrics")["memory_total"]
    sim.store.update(hm, {"memory_total": total - vmh.host_free_memory(sim.store, host)})
    err = api.fail("VM.set_memory_dynamic_range", vm, 2 * GiB, 2 * GiB)
    assert err == ["HOST_NOT_ENOUGH_FREE_MEMORY", str(GiB // 1024), "0"]
    assert memory(api, vm)[1] == GiB


def test_vcpu_settings(api: Api) -> None:
    vm = api.vm("web-staging")  # 2 of 2 vCPUs
    assert api.fail("VM.set_VCPUs_max", vm, 1) == ["INVALID_VALUE", RULE, "1"]
    assert api.fail("VM.set_VCPUs_max", vm, 0) == ["INVALID_VALUE", RULE, "0"]
    api("VM.set_VCPUs_max", vm, 4)
    assert num(api("VM.get_VCPUs_max", vm)) == 4
    # memory.ml: 1 + 1 + shadow ceil((256*4 + 2*2048) / 256) = 20 + 1 MiB for 4 vCPUs
    assert num(api("VM.get_memory_overhead", vm)) == 23 * MiB
    assert api.fail("VM.set_VCPUs_at_startup", vm, 5) == ["INVALID_VALUE", RULE, "5"]
    assert api.fail("VM.set_VCPUs_at_startup", vm, 0) == ["INVALID_VALUE", RULE, "0"]
    api("VM.set_VCPUs_at_startup", vm, 3)
    assert num(api("VM.get_VCPUs_at_startup", vm)) == 3
    running = api.vm("web-01")
    api("VM.set_VCPUs_at_startup", running, 1)  # no power-state rule (next boot)
    assert num(api("VM.get_VCPUs_at_startup", running)) == 1
    dom0 = api.vm("Control domain on host: xcp-ng-01")
    assert api.fail("VM.set_VCPUs_at_startup", dom0, 8) == [
        "OPERATION_NOT_ALLOWED", "set_VCPUs_at_startup is not allowed on dom0"]


def test_vcpu_hotplug(api: Api) -> None:
    vm = api.vm("web-01")
    api("VM.set_VCPUs_number_live", vm, 1)
    assert num(api("VM.get_VCPUs_at_startup", vm)) == 1
    assert num(api("VM_metrics.get_VCPUs_number", api("VM.get_metrics", vm))) == 1
    assert api.fail("VM.set_VCPUs_number_live", vm, 3) == [
        "INVALID_VALUE", "VCPU values must satisfy: 0 < VCPUs ≤ VCPUs_max", "3"]
    halted = api.vm("web-staging")
    assert api.fail("VM.set_VCPUs_number_live", halted, 1) == [
        "VM_BAD_POWER_STATE", halted, "running", "halted"]


def test_start_validates_the_configuration(api: Api) -> None:
    """assert_can_boot_here's errors reach the caller of start_on; VM.start only
    learns that no host would take the VM (vm_can_run_on_host swallows them)."""
    h1 = api("host.get_by_name_label", "xcp-ng-01")[0]

    def fails(expected: list[str], **over: object) -> str:
        vm = str(api("VM.create", vm_record(**over)))
        assert api.fail("VM.start_on", vm, h1, False, False) == expected
        assert api.fail("VM.start", vm, False, False) == ["NO_HOSTS_AVAILABLE"]
        return vm

    fails(["VALUE_NOT_SUPPORTED", "VCPUs-at-startup", "4", "value greater than VCPUs-max"],
          VCPUs_max=2, VCPUs_at_startup=4)
    fails(["INVALID_VALUE", "VCPUs_max", "0"], VCPUs_max=0, VCPUs_at_startup=0)
    fails(["MEMORY_CONSTRAINT_VIOLATION"], memory_static_min=2 * GiB)
    fails(["INVALID_VALUE", "HVM_shadow_multiplier", "0.5"], HVM_shadow_multiplier=0.5)
    # the hosts have 16 pCPUs
    vm = fails(["HOST_NOT_ENOUGH_PCPUS", "32", "16"], VCPUs_max=32, VCPUs_at_startup=2)
    api("VM.add_to_platform", vm, "vcpu-unrestricted", "true")
    api("VM.start_on", vm, h1, False, False)
    assert api("VM.get_power_state", vm) == "Running"
