"""VIF.*: create/destroy/plug/unplug/unplug_force/move and allowed_operations
(xapi_vif_helpers.ml, xapi_vif.ml, message_forwarding.ml module VIF)."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.conftest import vm_ref
from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, jfail
from xsctl.sim import Simulator

NULL = "OpaqueRef:NULL"


def first_vif(x: Any, vm: str) -> str:
    vifs = sorted(x.xenapi.VM.get_VIFs(vm), key=lambda v: x.xenapi.VIF.get_device(v))
    return str(vifs[0])


def net(x: Any, bridge: str) -> str:
    return str(next(r for r, n in x.xenapi.network.get_all_records().items()
                    if n["bridge"] == bridge))


def vif_args(vm: str, network: str, device: str = "5", mac: str = "") -> dict[str, Any]:
    return {"device": device, "network": network, "VM": vm, "MAC": mac, "MTU": "1500",
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}


def mac_from_seed(device: int, seed: str) -> str:
    """xapi_vif_helpers.ml gen_mac, written again here from the OCaml."""
    h = seed.encode()
    for _ in range(2 * device):
        h = hashlib.md5(h).digest()
    d1 = hashlib.md5(h).digest()
    d2 = hashlib.md5(d1).digest()
    b = [d1[0], d1[1], d1[2], d1[3], d2[1], d2[2]]
    b[0] = (b[0] | 2) & 0xFE
    return ":".join(f"{x:02x}" for x in b)


def test_allowed_operations(xapi: Any) -> None:
    """xapi_vif_helpers.ml valid_operations."""
    running = first_vif(xapi, vm_ref(xapi, "web-01"))
    halted = first_vif(xapi, vm_ref(xapi, "web-staging"))
    assert sorted(xapi.xenapi.VIF.get_allowed_operations(running)) == ["attach", "unplug"]
    assert xapi.xenapi.VIF.get_allowed_operations(halted) == ["attach"]


def test_plug_unplug_cycle(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif_helpers.ml valid_operations: DEVICE_ALREADY_ATTACHED/DETACHED."""
    vm = vm_ref(xapi, "web-02")
    vif = first_vif(xapi, vm)
    assert fail(xapi.xenapi.VIF.plug, vif) == ["DEVICE_ALREADY_ATTACHED", vif]
    jrpc("VIF.unplug", vif)
    assert xapi.xenapi.VIF.get_currently_attached(vif) is False
    assert sorted(xapi.xenapi.VIF.get_allowed_operations(vif)) == ["attach", "plug"]
    assert jfail(jrpc, "VIF.unplug", vif) == ["DEVICE_ALREADY_DETACHED", vif]
    assert fail(xapi.xenapi.VIF.unplug_force, vif) == ["DEVICE_ALREADY_DETACHED", vif]
    xapi.xenapi.VIF.plug(vif)
    assert xapi.xenapi.VIF.get_currently_attached(vif) is True
    xapi.xenapi.VIF.unplug_force(vif)
    assert xapi.xenapi.VIF.get_currently_attached(vif) is False
    assert xapi.xenapi.VIF.get_current_operations(vif) == {}


def test_plug_needs_a_running_vm(xapi: Any) -> None:
    """xapi_vif_helpers.ml valid_operations: VM_BAD_POWER_STATE."""
    vm = vm_ref(xapi, "web-staging")
    vif = first_vif(xapi, vm)
    assert fail(xapi.xenapi.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    paused = vm_ref(xapi, "ci-runner-02")
    assert fail(xapi.xenapi.VIF.unplug, first_vif(xapi, paused)) == [
        "VM_BAD_POWER_STATE", paused, "running", "paused"]


def test_hotplug_needs_pv_drivers(sim: Simulator, xapi: Any) -> None:
    """xapi_vif_helpers.ml valid_operations, xapi_pv_driver_version.ml: An HVM guest's drivers decide: can_use_hotplug_vif=no refuses, and with no
    guest metrics at all the PV drivers are missing."""
    vm = vm_ref(xapi, "web-03")
    vif = first_vif(xapi, vm)
    gm = xapi.xenapi.VM.get_guest_metrics(vm)
    with sim.store.lock:
        sim.store.update(gm, {"can_use_hotplug_vif": "no"})
        sim.store.republish(vif)
    assert fail(xapi.xenapi.VIF.unplug, vif) == [
        "OPERATION_NOT_ALLOWED", "VM states it does not support VIF hotplug."]
    with sim.store.lock:
        sim.store.update(vm, {"guest_metrics": NULL})
        sim.store.republish(vif)
    assert fail(xapi.xenapi.VIF.unplug, vif) == ["VM_MISSING_PV_DRIVERS", vm]
    assert xapi.xenapi.VIF.get_allowed_operations(vif) == ["attach"]


def test_other_operation_in_progress(sim: Simulator, xapi: Any) -> None:
    """xapi_vif_helpers.ml valid_operations."""
    vif = first_vif(xapi, vm_ref(xapi, "web-01"))
    with sim.store.lock:
        sim.store.set_map_key(vif, "current_operations", "OpaqueRef:task", "unplug")
    assert xapi.xenapi.VIF.get_allowed_operations(vif) == []
    assert fail(xapi.xenapi.VIF.plug, vif) == [
        "OTHER_OPERATION_IN_PROGRESS", "VIF", vif, "{unplug}", "{OpaqueRef:task}"]


def test_vm_shutting_down_refuses_hotplug(sim: Simulator, xapi: Any) -> None:
    """xapi_vif_helpers.ml valid_operations."""
    vm = vm_ref(xapi, "cache-01")
    vif = first_vif(xapi, vm)
    with sim.store.lock:
        sim.store.set_map_key(vm, "current_operations", "OpaqueRef:t", "clean_shutdown")
        sim.store.republish(vif)
    assert fail(xapi.xenapi.VIF.unplug, vif) == [
        "OPERATION_NOT_ALLOWED", f"Current operation on VM:{vm} is clean_shutdown"]


def test_no_hotplug_on_the_control_domain(xapi: Any) -> None:
    """xapi_vif_helpers.ml valid_operations."""
    host = xapi.xenapi.pool.get_master(xapi.xenapi.pool.get_all()[0])
    dom0 = xapi.xenapi.host.get_control_domain(host)
    vif = xapi.xenapi.VIF.create(vif_args(dom0, net(xapi, "xenbr0"), "0", "02:00:00:00:00:01"))
    assert fail(xapi.xenapi.VIF.plug, vif) == [
        "OPERATION_NOT_ALLOWED", "Control domain does not support hotplug"]


def test_create_generates_mac_from_seed(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif_helpers.ml create/gen_mac, xapi_vif.ml create."""
    vm = vm_ref(xapi, "web-01")
    seed = xapi.xenapi.VM.get_other_config(vm)["mac_seed"]
    vif = jrpc("VIF.create", vif_args(vm, net(xapi, "xenbr1"), "5"))
    rec = xapi.xenapi.VIF.get_record(vif)
    assert rec["MAC"] == mac_from_seed(5, seed)
    assert rec["MAC_autogenerated"] is True
    assert rec["currently_attached"] is False  # only a suspended VM gets it attached
    assert vif in xapi.xenapi.VM.get_VIFs(vm)
    assert vif in xapi.xenapi.network.get_VIFs(net(xapi, "xenbr1"))
    xapi.xenapi.VIF.plug(vif)
    assert xapi.xenapi.VIF.get_currently_attached(vif) is True
    given = jrpc("VIF.create", vif_args(vm, net(xapi, "xenbr1"), "6", "aa:bb:cc:dd:ee:ff"))
    assert xapi.xenapi.VIF.get_MAC(given) == "aa:bb:cc:dd:ee:ff"
    assert xapi.xenapi.VIF.get_MAC_autogenerated(given) is False


def test_create_errors(sim: Simulator, xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif_helpers.ml create."""
    vm = vm_ref(xapi, "web-01")
    n = net(xapi, "xenbr0")
    assert jfail(jrpc, "VIF.create", vif_args(vm, n, "0")) == ["DEVICE_ALREADY_EXISTS", "0"]
    assert jfail(jrpc, "VIF.create", vif_args(vm, n, "eth1")) == ["INVALID_DEVICE", "eth1"]
    assert jfail(jrpc, "VIF.create", vif_args(vm, n, "-1")) == ["INVALID_DEVICE", "-1"]
    assert jfail(jrpc, "VIF.create", vif_args(vm, n, "7", "zz:00:00:00:00:00")) == [
        "MAC_INVALID", "zz:00:00:00:00:00"]
    assert jfail(jrpc, "VIF.create", vif_args(vm, "OpaqueRef:nope", "7")) == [
        "HANDLE_INVALID", "network", "OpaqueRef:nope"]
    with sim.store.lock:  # no mac_seed: an empty MAC is not generated
        oc = dict(sim.store.get(vm, "VM")["other_config"])
        oc.pop("mac_seed")
        sim.store.update(vm, {"other_config": oc})
    assert jfail(jrpc, "VIF.create", vif_args(vm, n, "7")) == ["MAC_INVALID", ""]


def test_destroy(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif_helpers.ml destroy: not while attached to a running VM."""
    vm = vm_ref(xapi, "web-03")
    vif = first_vif(xapi, vm)
    assert jfail(jrpc, "VIF.destroy", vif) == [
        "OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM"]
    xapi.xenapi.VIF.unplug(vif)
    xapi.xenapi.VIF.destroy(vif)
    assert vif not in xapi.xenapi.VM.get_VIFs(vm)
    assert fail(xapi.xenapi.VIF.get_record, vif) == ["HANDLE_INVALID", "VIF", vif]
    halted = first_vif(xapi, vm_ref(xapi, "web-staging"))
    jrpc("VIF.destroy", halted)


def test_move(sim: Simulator, xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif.ml move: an active VIF needs the network on the VM's host, else
    HOST_CANNOT_ATTACH_NETWORK [host, network]; an inactive one just moves."""
    vm = vm_ref(xapi, "web-01")
    vif = first_vif(xapi, vm)
    host = xapi.xenapi.VM.get_resident_on(vm)
    private = xapi.xenapi.network.create({"name_label": "private", "name_description": "",
                                          "MTU": "1500", "other_config": {}})
    xapi.xenapi.VIF.move(vif, private)
    assert xapi.xenapi.VIF.get_network(vif) == private
    assert vif in xapi.xenapi.network.get_VIFs(private)
    elsewhere = jrpc("network.create", {"name_label": "elsewhere", "name_description": "",
                                        "MTU": 1500, "other_config": {}})
    other_host = next(h for h in xapi.xenapi.host.get_all() if h != host)
    with sim.store.lock:
        sim.store.create("PIF", {"device": "eth2", "network": elsewhere, "host": other_host,
                                 "MAC": "02:00:00:00:00:02", "MTU": 1500, "VLAN": -1,
                                 "physical": True, "currently_attached": True})
    assert jfail(jrpc, "VIF.move", vif, elsewhere) == [
        "HOST_CANNOT_ATTACH_NETWORK", host, elsewhere]
    halted = first_vif(xapi, vm_ref(xapi, "web-staging"))
    jrpc("VIF.move", halted, elsewhere)
    assert xapi.xenapi.VIF.get_network(halted) == elsewhere


# ------------------------------------------------- static IP setting, locking, devices


def test_windows_guests_state_static_ip_setting(xapi: Any) -> None:
    """xapi_guest_agent.ml: control/feature-static-ip-setting lands in the guest
    metrics' other; the Windows management agent writes it, Linux tools do not."""
    def other(name: str) -> dict[str, str]:
        gm = xapi.xenapi.VM.get_guest_metrics(vm_ref(xapi, name))
        return dict(xapi.xenapi.VM_guest_metrics.get_other(gm))

    assert other("win-ad-01")["feature-static-ip-setting"] == "1"
    assert "feature-static-ip-setting" not in other("web-01")


def test_configure_ipv4_sets_the_static_configuration(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif.ml configure_ipv4: mode, [address] and gateway stored as given."""
    vif = first_vif(xapi, vm_ref(xapi, "win-ad-01"))
    jrpc("VIF.configure_ipv4", vif, "Static", "10.0.9.7/24", "10.0.9.1")
    rec = xapi.xenapi.VIF.get_record(vif)
    assert (rec["ipv4_configuration_mode"], rec["ipv4_addresses"], rec["ipv4_gateway"]) == (
        "Static", ["10.0.9.7/24"], "10.0.9.1")
    # no gateway is fine; a prefix length is read as Scanf's %d, what follows ignored
    xapi.xenapi.VIF.configure_ipv4(vif, "Static", "10.0.9.8/16x", "")
    assert xapi.xenapi.VIF.get_ipv4_addresses(vif) == ["10.0.9.8/16x"]
    # back to none: the address is not checked, and stored as the one given
    xapi.xenapi.VIF.configure_ipv4(vif, "None", "", "")
    rec = xapi.xenapi.VIF.get_record(vif)
    assert (rec["ipv4_configuration_mode"], rec["ipv4_addresses"], rec["ipv4_gateway"]) == (
        "None", [""], "")


def test_configure_ipv6(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif.ml configure_ipv6, Helpers.parse_cidr `ipv6."""
    vif = first_vif(xapi, vm_ref(xapi, "win-rds-01"))
    jrpc("VIF.configure_ipv6", vif, "Static", "2001:db8::7/64", "2001:db8::1")
    rec = xapi.xenapi.VIF.get_record(vif)
    assert (rec["ipv6_configuration_mode"], rec["ipv6_addresses"], rec["ipv6_gateway"]) == (
        "Static", ["2001:db8::7/64"], "2001:db8::1")
    assert rec["ipv4_configuration_mode"] == "None"
    assert jfail(jrpc, "VIF.configure_ipv6", vif, "Static", "10.0.0.1/24", "") == [
        "INVALID_CIDR_ADDRESS_SPECIFIED", "address"]
    assert jfail(jrpc, "VIF.configure_ipv6", vif, "Static", "2001:db8::7/129", "") == [
        "INVALID_CIDR_ADDRESS_SPECIFIED", "address"]
    assert jfail(jrpc, "VIF.configure_ipv6", vif, "Static", "2001:db8::7/64", "10.0.0.1") == [
        "INVALID_IP_ADDRESS_SPECIFIED", "gateway"]


def test_configure_ipv4_errors(sim: Simulator, xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_vif.ml configure_ipv4 and Helpers.parse_cidr/is_valid_ip, in their order;
    a refusal changes nothing."""
    vif = first_vif(xapi, vm_ref(xapi, "win-ad-01"))
    before = xapi.xenapi.VIF.get_record(vif)
    for address in ("10.0.0.1", "10.0.0.1/33", "10.0.0.1/-1", "10.0.0.256/24",
                    "2001:db8::1/64", "/24", "10.0.0.1/", "10.0.0.1/x", "web-01/24"):
        assert jfail(jrpc, "VIF.configure_ipv4", vif, "Static", address, "") == [
            "INVALID_CIDR_ADDRESS_SPECIFIED", "address"], address
    for gateway in ("10.0.0", "10.0.0.1/24", "::1", "gw"):
        assert fail(xapi.xenapi.VIF.configure_ipv4, vif, "Static", "10.0.0.5/24",
                    gateway) == ["INVALID_IP_ADDRESS_SPECIFIED", "gateway"], gateway
    # the address before the gateway
    assert jfail(jrpc, "VIF.configure_ipv4", vif, "Static", "bad", "bad") == [
        "INVALID_CIDR_ADDRESS_SPECIFIED", "address"]
    assert xapi.xenapi.VIF.get_record(vif) == before


def test_configure_ip_needs_the_guest_feature(sim: Simulator, xapi: Any,
                                               jrpc: JsonRpcClient) -> None:
    """xapi_vif.ml assert_has_feature_static_ip_setting: after the address checks,
    and for mode None too; no guest metrics is lacking it as well."""
    vm = vm_ref(xapi, "web-01")
    vif = first_vif(xapi, vm)
    assert jfail(jrpc, "VIF.configure_ipv4", vif, "Static", "10.0.0.5/24", "") == [
        "VM_LACKS_FEATURE", vm]
    assert jfail(jrpc, "VIF.configure_ipv4", vif, "Static", "10.0.0.5", "") == [
        "INVALID_CIDR_ADDRESS_SPECIFIED", "address"]
    assert fail(xapi.xenapi.VIF.configure_ipv6, vif, "None", "", "") == ["VM_LACKS_FEATURE", vm]
    halted = vm_ref(xapi, "win-build-01")  # a Windows guest, halted: no guest metrics
    assert jfail(jrpc, "VIF.configure_ipv4", first_vif(xapi, halted), "Static",
                 "10.0.0.5/24", "") == ["VM_LACKS_FEATURE", halted]
    gm = xapi.xenapi.VM.get_guest_metrics(vm_ref(xapi, "win-ad-01"))
    with sim.store.lock:  # "0" is not "1"
        sim.store.set_map_key(gm, "other", "feature-static-ip-setting", "0")
    win = vm_ref(xapi, "win-ad-01")
    assert jfail(jrpc, "VIF.configure_ipv4", first_vif(xapi, win), "None", "", "") == [
        "VM_LACKS_FEATURE", win]
    assert xapi.xenapi.VIF.get_ipv4_configuration_mode(vif) == "None"


def test_licence_and_locking(sim: Simulator, xapi: Any, jrpc: JsonRpcClient) -> None:
    """Pool_features.assert_enabled (LICENCE_RESTRICTION [feature]) and xapi_vif.ml
    assert_no_locking_mode_conflict."""
    vm = vm_ref(xapi, "win-ad-01")
    vif = first_vif(xapi, vm)
    pool = xapi.xenapi.pool.get_all()[0]
    assert fail(xapi.xenapi.VIF.set_ipv4_allowed, vif, ["10.0.9.7", "nope"]) == [
        "INVALID_IP_ADDRESS_SPECIFIED", "ipv4_allowed"]
    xapi.xenapi.VIF.set_ipv4_allowed(vif, ["10.0.9.7", "10.0.9.7"])
    assert xapi.xenapi.VIF.get_ipv4_allowed(vif) == ["10.0.9.7"]
    xapi.xenapi.VIF.set_locking_mode(vif, "locked")
    assert jfail(jrpc, "VIF.configure_ipv4", vif, "Static", "10.0.9.8/24", "") == [
        "ADDRESS_VIOLATES_LOCKING_CONSTRAINT", "10.0.9.8/24"]
    jrpc("VIF.configure_ipv4", vif, "Static", "10.0.9.7/24", "")
    with sim.store.lock:  # a pool whose licence restricts both features
        restrictions = dict(sim.store.get(pool, "pool")["restrictions"])
        restrictions["restrict_guest_ip_setting"] = "true"
        del restrictions["restrict_vif_locking"]  # absent: restricted as well
        sim.store.update(pool, {"restrictions": restrictions})
    assert jfail(jrpc, "VIF.configure_ipv4", vif, "Static", "10.0.9.7/24", "") == [
        "LICENCE_RESTRICTION", "Guest_ip_setting"]
    jrpc("VIF.configure_ipv4", vif, "None", "", "")  # mode None needs no licence
    assert fail(xapi.xenapi.VIF.set_locking_mode, vif, "locked") == [
        "LICENCE_RESTRICTION", "VIF_locking"]
    xapi.xenapi.VIF.set_locking_mode(vif, "disabled")
    args = {**vif_args(vm, net(xapi, "xenbr1"), "3"), "locking_mode": "locked"}
    assert jfail(jrpc, "VIF.create", args) == ["LICENCE_RESTRICTION", "VIF_locking"]


def test_allowed_vif_devices_follow_the_xapi_version(sim: Simulator, xapi: Any) -> None:
    """Xapi_vm_helpers.allowed_VIF_devices: 0-6 in xapi 24.19 (what the simulator
    says it is), 0-15 from 25.29.0 on."""
    vm = vm_ref(xapi, "db-01")  # VIFs 0 and 1
    assert xapi.xenapi.VM.get_allowed_VIF_devices(vm) == ["2", "3", "4", "5", "6"]
    master = xapi.xenapi.pool.get_master(xapi.xenapi.pool.get_all()[0])
    with sim.store.lock:
        sv = dict(sim.store.get(master, "host")["software_version"])
        sim.store.update(master, {"software_version": {**sv, "xapi": "25.29"}})
    assert xapi.xenapi.VM.get_allowed_VIF_devices(vm) == [str(n) for n in range(2, 16)]
