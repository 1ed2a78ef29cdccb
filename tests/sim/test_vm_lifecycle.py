"""VM power-state transitions and what they change, over both wire protocols.

Sources (xapi-project/xen-api): ocaml/xapi/message_forwarding.ml (module VM: host
choice, memory reservation, alerts and their bodies), ocaml/xapi/xapi_vm.ml (start,
hard_shutdown of a suspended VM, power_state_reset), ocaml/xapi/xapi_vm_helpers.ml
(assert_can_boot_here, choose_host), ocaml/xapi/xapi_vm_lifecycle.ml
(allowed_power_states -> VM_BAD_POWER_STATE, force_state_reset), ocaml/xapi/xapi_xenops.ml
(consoles, domid, suspend image), ocaml/xapi/xapi_guest_agent.ml (networks keys).
"""

from __future__ import annotations

import re

from tests.conftest import wait_for
from tests.sim import test_vm_support as S
from tests.sim.test_vm_support import Api, GiB, num
from xsctl.sim import Simulator

sim_fixture = S.sim_fixture
api_fixture = S.api_fixture
xml_fixture = S.xml_fixture
jsn_fixture = S.jsn_fixture

NULL = "OpaqueRef:NULL"


def host_named(api: Api, name: str) -> str:
    return str(api("host.get_by_name_label", name)[0])


def memory_free(api: Api, host: str) -> int:
    # memory_free is a removed field: on the wire in records, without a getter
    return num(api.record("host_metrics", api("host.get_metrics", host))["memory_free"])


def test_start_effects(api: Api) -> None:
    """Xapi_xenops.start and the xenopsd events: Running, resident, a domid, devices
    plugged, consoles at https://<host address>/console?uuid=..., metrics, a guest
    metrics record at once and the agent's report a little later; VM_STARTED."""
    vm = api.vm("web-staging")
    before = {h: memory_free(api, h) for h in api("host.get_all")}
    api("VM.start", vm, False, False)
    rec = api.record("VM", vm)
    assert rec["power_state"] == "Running"
    host = rec["resident_on"]
    assert host in before
    assert num(rec["domid"]) > 0
    assert rec["scheduled_to_be_resident_on"] == NULL
    for vbd in rec["VBDs"]:
        vbd_rec = api.record("VBD", vbd)
        assert vbd_rec["currently_attached"] is True
        assert re.fullmatch(r"xvd[a-z]", vbd_rec["device"])
    assert all(api("VIF.get_currently_attached", v) for v in rec["VIFs"])
    address = api("host.get_address", host)
    consoles = [api.record("console", c) for c in rec["consoles"]]
    assert [c["protocol"] for c in consoles] == ["rfb"]  # an HVM guest
    assert consoles[0]["location"] == f"https://{address}/console?uuid={consoles[0]['uuid']}"
    metrics = api.record("VM_metrics", rec["metrics"])
    assert num(metrics["VCPUs_number"]) == num(rec["VCPUs_at_startup"])
    assert num(metrics["memory_actual"]) == num(rec["memory_dynamic_max"])
    assert metrics["current_domain_type"] == "hvm"
    assert str(metrics["start_time"]) != "19700101T00:00:00Z"
    assert rec["guest_metrics"] != NULL
    gm = api.wait_agent(vm)
    assert gm["os_version"]["distro"] == "debian"
    assert set(gm["networks"]) == {"0/ip", "0/ipv4/0", "0/ipv6/0"}
    assert gm["networks"]["0/ip"] == gm["networks"]["0/ipv4/0"]
    assert gm["networks"]["0/ipv6/0"].startswith("fe80::")
    used = num(rec["memory_dynamic_max"]) + num(api("VM.get_memory_overhead", vm))
    assert memory_free(api, host) == before[host] - used
    name = api("host.get_name_label", host)
    hid = api("host.get_uuid", host)
    [msg] = api.messages("VM_STARTED", vm)
    assert msg["body"] == (f"VM 'web-staging' (uuid: {rec['uuid']}) started on host: "
                           f"{name} (uuid: {hid})")
    assert num(msg["priority"]) == 5


def test_start_on_paused_and_vt100_for_pv(xml: Api) -> None:
    vm = xml.vm("web-staging")
    xml("VM.set_domain_type", vm, "pv")
    host = host_named(xml, "xcp-ng-02")
    xml("VM.start_on", vm, host, True, False)
    rec = xml.record("VM", vm)
    assert (rec["power_state"], rec["resident_on"]) == ("Paused", host)
    assert sorted(xml("console.get_protocol", c) for c in rec["consoles"]) == ["rfb", "vt100"]
    xml("VM.unpause", vm)
    assert xml("VM.get_power_state", vm) == "Running"
    assert len(xml.messages("VM_UNPAUSED", vm)) == 1


def test_bad_power_state_lists_states_like_xapi(api: Api) -> None:
    """VM_BAD_POWER_STATE [vm, expected, actual]: allowed_power_states, lower case,
    joined with ", " in xapi's order."""
    running = api.vm("web-01")
    halted = api.vm("web-staging")
    assert api.fail("VM.start", running, False, False) == [
        "VM_BAD_POWER_STATE", running, "halted", "running"]
    assert api.fail("VM.hard_shutdown", halted) == [
        "VM_BAD_POWER_STATE", halted, "paused, suspended, running", "halted"]
    assert api.fail("VM.clean_shutdown", halted) == [
        "VM_BAD_POWER_STATE", halted, "running", "halted"]
    assert api.fail("VM.resume", running, False, False) == [
        "VM_BAD_POWER_STATE", running, "suspended", "running"]
    assert api.fail("VM.unpause", running) == ["VM_BAD_POWER_STATE", running, "paused", "running"]
    assert api.fail("VM.hard_reboot", halted) == [
        "VM_BAD_POWER_STATE", halted, "paused, running", "halted"]
    assert api.fail("VM.destroy", running) == [
        "VM_BAD_POWER_STATE", running, "halted, suspended", "running"]
    assert api.fail("VM.pool_migrate", halted, host_named(api, "xcp-ng-02"), {}) == [
        "VM_BAD_POWER_STATE", halted, "running", "halted"]
    assert api.fail("VM.start", "OpaqueRef:nope", False, False) == [
        "HANDLE_INVALID", "VM", "OpaqueRef:nope"]


def test_clean_shutdown_and_guest_metrics_go(api: Api) -> None:
    vm = api.vm("web-01")
    host = api("VM.get_resident_on", vm)
    gm = api("VM.get_guest_metrics", vm)
    free = memory_free(api, host)
    api("VM.clean_shutdown", vm)
    rec = api.record("VM", vm)
    assert (rec["power_state"], rec["resident_on"], num(rec["domid"])) == ("Halted", NULL, -1)
    assert rec["consoles"] == [] and rec["guest_metrics"] == NULL
    assert gm not in api("VM_guest_metrics.get_all")
    assert not any(api("VBD.get_currently_attached", v) for v in rec["VBDs"])
    assert num(api("VM_metrics.get_memory_actual", rec["metrics"])) == 0
    assert memory_free(api, host) > free
    [msg] = api.messages("VM_SHUTDOWN", vm)
    assert msg["body"] == f"VM 'web-01' (uuid: {rec['uuid']}) shutdown"


def test_hvm_guest_without_drivers_needs_hard_shutdown(api: Api) -> None:
    """check_op_for_feature: VM_LACKS_FEATURE [vm]; VM.shutdown falls back to a hard
    shutdown (Xapi_vm.shutdown)."""
    vm = api.vm("[lab] test-vm")
    api("VM.start", vm, False, False)
    assert api.fail("VM.clean_shutdown", vm) == ["VM_LACKS_FEATURE", vm]
    gm = api.record("VM_guest_metrics", api("VM.get_guest_metrics", vm))
    assert gm["PV_drivers_version"] == {} and gm["os_version"] == {}
    api("VM.shutdown", vm)
    assert api("VM.get_power_state", vm) == "Halted"


def test_reboots_make_a_new_domain(xml: Api) -> None:
    vm = xml.vm("web-02")
    host, domid = xml("VM.get_resident_on", vm), num(xml("VM.get_domid", vm))
    gm = xml("VM.get_guest_metrics", vm)
    xml("VM.clean_reboot", vm)
    assert xml("VM.get_resident_on", vm) == host
    assert num(xml("VM.get_domid", vm)) > domid
    assert xml("VM.get_guest_metrics", vm) != gm  # fresh record for the new domain
    xml.wait_agent(vm)
    xml("VM.pause", vm)
    xml("VM.hard_reboot", vm)  # a paused VM reboots to Running
    assert xml("VM.get_power_state", vm) == "Running"
    bodies = sorted(m["body"] for m in xml.messages("VM_REBOOTED", vm))
    uuid = xml("VM.get_uuid", vm)
    assert bodies == [f"VM 'web-02' (uuid: {uuid}) rebooted cleanly",
                      f"VM 'web-02' (uuid: {uuid}) rebooted forcibly"]


def test_suspend_and_resume(api: Api) -> None:
    """Xapi_xenops.suspend: VDI.create of a "Suspend image" (type suspend) of 1.26 x
    static_max + 100 MiB on pool.suspend_image_SR, which the SR's VHD driver rounds up
    to 2 MiB blocks (sm vhdutil.validate_and_round_vhd_size); resume destroys it."""
    vm = api.vm("cache-01")
    pool = api("pool.get_all")[0]
    sr = api("pool.get_suspend_image_SR", pool)
    used = num(api("SR.get_physical_utilisation", sr))
    api("VM.suspend", vm)
    rec = api.record("VM", vm)
    assert (rec["power_state"], rec["resident_on"], num(rec["domid"])) == ("Suspended", NULL, -1)
    assert rec["consoles"] == []
    vdi = api.record("VDI", rec["suspend_VDI"])
    assert (vdi["name_label"], vdi["type"], vdi["SR"]) == ("Suspend image", "suspend", sr)
    asked = int(num(rec["memory_static_max"]) * 1.2 * 1.05) + 100 * 1024**2
    assert num(vdi["virtual_size"]) == -(-asked // (2 * 1024**2)) * 2 * 1024**2
    assert num(api("SR.get_physical_utilisation", sr)) > used
    assert rec["guest_metrics"] != NULL  # kept while suspended
    api("VM.resume", vm, False, False)
    rec = api.record("VM", vm)
    assert rec["power_state"] == "Running" and rec["suspend_VDI"] == NULL
    assert rec["resident_on"] != NULL and len(rec["consoles"]) == 1
    assert num(api("SR.get_physical_utilisation", sr)) == used
    assert len(api.messages("VM_SUSPENDED", vm)) == 1
    [msg] = api.messages("VM_RESUMED", vm)
    assert " resumed on host: xcp-ng-" in msg["body"]


def test_suspend_without_room_for_the_image(api: Api, sim: Simulator) -> None:
    """xapi_xenops.ml turns the SR's out-of-space failure into
    SR_SUSPEND_SPACE_INSUFFICIENT [sr]; the VM keeps running."""
    vm = api.vm("cache-01")
    sr = api("pool.get_suspend_image_SR", api("pool.get_all")[0])
    row = sim.store.get(sr, "SR")
    sim.store.update(sr, {"physical_size": row["physical_utilisation"] + GiB})
    assert api.fail("VM.suspend", vm) == ["SR_SUSPEND_SPACE_INSUFFICIENT", sr]
    assert api("VM.get_power_state", vm) == "Running"
    assert api("VM.get_suspend_VDI", vm) == NULL
    pool = api("pool.get_all")[0]
    api("pool.set_suspend_image_SR", pool, NULL)
    assert api.fail("VM.suspend", vm) == ["VM_NO_SUSPEND_SR", vm]


def test_hard_shutdown_of_suspended_vm_discards_the_image(api: Api) -> None:
    vm = api.vm("k8s-node-03")
    image = api("VM.get_suspend_VDI", vm)
    api("VM.hard_shutdown", vm)
    assert api("VM.get_power_state", vm) == "Halted"
    assert api("VM.get_suspend_VDI", vm) == NULL
    assert image not in api("VDI.get_all")
    [msg] = api.messages("VM_SHUTDOWN", vm)
    assert msg["body"].endswith(") shutdown forcibly")


def test_host_choice_follows_affinity_and_local_storage(api: Api) -> None:
    """A VM on local storage can only start where that SR is plugged: VM_REQUIRES_SR
    [vm, sr] elsewhere (assert_can_see_SRs); get_possible_hosts agrees."""
    vm = api.vm("dev-sandbox")
    home = api("VM.get_affinity", vm)
    other = next(h for h in api("host.get_all") if h != home)
    vbd = next(v for v in api("VM.get_VBDs", vm) if api("VBD.get_type", v) == "Disk")
    sr = api("VDI.get_SR", api("VBD.get_VDI", vbd))
    assert api("VM.get_possible_hosts", vm) == [home]
    assert api.fail("VM.assert_can_boot_here", vm, other) == ["VM_REQUIRES_SR", vm, sr]
    assert api.fail("VM.start_on", vm, other, False, False) == ["VM_REQUIRES_SR", vm, sr]
    api("VM.set_affinity", vm, NULL)
    api("VM.start", vm, False, False)
    assert api("VM.get_resident_on", vm) == home


def test_affinity_host_is_preferred(xml: Api) -> None:
    vm = xml.vm("web-staging")
    h3 = host_named(xml, "xcp-ng-03")
    xml("VM.set_affinity", vm, h3)
    xml("VM.start", vm, False, False)
    assert xml("VM.get_resident_on", vm) == h3


def test_no_host_sees_the_disks(api: Api, sim: Simulator) -> None:
    vm = api.vm("dev-sandbox")
    home = api("VM.get_affinity", vm)
    for pbd in api("host.get_PBDs", home):
        if api("SR.get_type", api("PBD.get_SR", pbd)) == "lvm":
            sim.store.update(pbd, {"currently_attached": False})
    assert api.fail("VM.start", vm, False, False) == ["NO_HOSTS_AVAILABLE"]
    assert api("VM.get_possible_hosts", vm) == []


def test_disabled_host(api: Api, sim: Simulator) -> None:
    vm = api.vm("web-staging")
    h2 = host_named(api, "xcp-ng-02")
    sim.store.update(h2, {"enabled": False})
    assert api.fail("VM.start_on", vm, h2, False, False) == ["HOST_DISABLED", h2]
    assert api.fail("VM.assert_can_boot_here", vm, h2) == ["HOST_DISABLED", h2]
    assert h2 not in api("VM.get_possible_hosts", vm)
    api("VM.start", vm, False, False)
    assert api("VM.get_resident_on", vm) != h2
    running = api.vm("web-01")
    assert api.fail("VM.pool_migrate", running, h2, {}) == ["HOST_DISABLED", h2]


def test_not_enough_memory(api: Api) -> None:
    """HOST_NOT_ENOUGH_FREE_MEMORY [needed, available] in bytes; when no host has room
    VM.start still picks one (choose_host_for_vm_no_wlb retries without the memory
    check) and fails there."""
    vm = api.vm("web-staging")
    big = 300 * GiB
    api("VM.set_memory_limits", vm, 512 * 1024**2, big, big, big)
    h1 = host_named(api, "xcp-ng-01")
    err = api.fail("VM.start_on", vm, h1, False, False)
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
    needed, available = int(err[1]), int(err[2])
    assert needed > big > available > 0
    assert api.fail("VM.assert_can_boot_here", vm, h1) == err
    err2 = api.fail("VM.start", vm, False, False)
    assert err2[0] == "HOST_NOT_ENOUGH_FREE_MEMORY" and int(err2[1]) == needed
    assert api("VM.get_possible_hosts", vm) == []
    assert api("VM.get_power_state", vm) == "Halted"
    assert api("VM.get_scheduled_to_be_resident_on", vm) == NULL


def test_power_state_reset(api: Api, sim: Simulator) -> None:
    """Xapi_vm.power_state_reset: refused for a control domain, for a live domain on
    this (master) host, and while the VM's host is alive."""
    dom0 = api.vm("Control domain on host: xcp-ng-01")
    assert api.fail("VM.power_state_reset", dom0) == ["CANNOT_RESET_CONTROL_DOMAIN", dom0]
    on_master = api.vm("web-01")
    assert api.fail("VM.power_state_reset", on_master) == ["DOMAIN_EXISTS", on_master]
    vm = api.vm("db-01")
    host = api("VM.get_resident_on", vm)
    assert api.fail("VM.power_state_reset", vm) == ["HOST_IS_LIVE", host]
    sim.store.update(api("host.get_metrics", host), {"live": False})
    api("VM.power_state_reset", vm)
    rec = api.record("VM", vm)
    assert (rec["power_state"], rec["resident_on"], num(rec["domid"])) == ("Halted", NULL, -1)
    halted = api.vm("web-staging")
    api("VM.power_state_reset", halted)  # any power state
    assert api("VM.get_power_state", halted) == "Halted"


def test_pool_migrate(api: Api) -> None:
    vm = api.vm("web-01")
    src = api("VM.get_resident_on", vm)
    dst = host_named(api, "xcp-ng-02")
    free_src, free_dst = memory_free(api, src), memory_free(api, dst)
    api("VM.pool_migrate", vm, dst, {"live": "true"})
    rec = api.record("VM", vm)
    assert rec["resident_on"] == dst and rec["power_state"] == "Running"
    address = api("host.get_address", dst)
    assert api("console.get_location", rec["consoles"][0]).startswith(f"https://{address}/console?uuid=")
    assert memory_free(api, src) > free_src and memory_free(api, dst) < free_dst
    [msg] = api.messages("VM_MIGRATED", vm)
    assert msg["body"] == (
        f"VM 'web-01' (uuid: {rec['uuid']}) migrated from host 'xcp-ng-01' "
        f"(uuid: {api('host.get_uuid', src)}) to host 'xcp-ng-02' (uuid: {api('host.get_uuid', dst)})")


def test_pool_migrate_needs_shared_storage(api: Api) -> None:
    vm = api.vm("dns-01")  # on its host's local LVM
    here = api("VM.get_resident_on", vm)
    there = next(h for h in api("host.get_all") if h != here)
    vbd = next(v for v in api("VM.get_VBDs", vm) if api("VBD.get_type", v) == "Disk")
    sr = api("VDI.get_SR", api("VBD.get_VDI", vbd))
    assert api.fail("VM.pool_migrate", vm, there, {}) == ["VM_REQUIRES_SR", vm, sr]
    assert api("VM.get_resident_on", vm) == here


def test_pause_and_start_paused_alerts(jsn: Api) -> None:
    vm = jsn.vm("proxy-01")
    jsn("VM.pause", vm)
    assert jsn("VM.get_power_state", vm) == "Paused"
    assert "unpause" in jsn("VM.get_allowed_operations", vm)
    [msg] = jsn.messages("VM_PAUSED", vm)
    assert msg["body"] == f"VM 'proxy-01' (uuid: {jsn('VM.get_uuid', vm)}) paused"
    jsn("VM.hard_shutdown", vm)
    assert jsn("VM.get_power_state", vm) == "Halted"


def test_guest_agent_report_arrives_after_boot(xml: Api) -> None:
    """create_guest_metrics_if_needed makes an empty record when the domain runs; the
    agent's report fills it (and allowed_operations gains the guest-driven ops)."""
    vm = xml.vm("win-build-01")
    xml("VM.start", vm, False, False)
    gm = xml.wait_agent(vm)
    assert gm["os_version"]["distro"] == "windows"
    assert gm["PV_drivers_detected"] is True
    assert gm["other"]["feature-suspend"] == "1"
    wait_for(lambda: "clean_shutdown" in xml("VM.get_allowed_operations", vm))


def test_evacuating_host_takes_no_new_vms(api: Api, sim: Simulator) -> None:
    """message_forwarding.ml start_on: HOST_EVACUATE_IN_PROGRESS [host];
    vm_can_run_on_host leaves such a host out of VM.start's choice."""
    vm = api.vm("web-staging")
    h1 = host_named(api, "xcp-ng-01")
    sim.store.set_map_key(h1, "current_operations", "OpaqueRef:evacuation", "evacuate")
    assert api.fail("VM.start_on", vm, h1, False, False) == ["HOST_EVACUATE_IN_PROGRESS", h1]
    api("VM.set_affinity", vm, h1)
    api("VM.start", vm, False, False)
    assert api("VM.get_resident_on", vm) != h1


def test_resume_on_a_chosen_host_and_migrate_needs_memory(xml: Api, sim: Simulator) -> None:
    vm = xml.vm("legacy-erp")
    h3 = host_named(xml, "xcp-ng-03")
    xml("VM.resume_on", vm, h3, False, False)
    assert (xml("VM.get_power_state", vm), xml("VM.get_resident_on", vm)) == ("Running", h3)
    [msg] = xml.messages("VM_RESUMED", vm)
    assert "resumed on host: xcp-ng-03 (uuid: " in msg["body"]
    h2 = host_named(xml, "xcp-ng-02")
    hm = xml("host.get_metrics", h2)
    sim.store.update(hm, {"memory_total": 2 * GiB})
    err = xml.fail("VM.pool_migrate", vm, h2, {})
    assert err[0] == "HOST_NOT_ENOUGH_FREE_MEMORY" and err[2] == "0"
    assert xml("VM.get_resident_on", vm) == h3


def test_smaller_calls(api: Api) -> None:
    """Setters with xapi's own checks (xapi_vm.ml), and calls xapi answers trivially."""
    halted, running = api.vm("web-staging"), api.vm("web-01")
    assert api.fail("VM.set_start_delay", halted, -1) == [
        "INVALID_VALUE", "start_delay must be non-negative", "-1"]
    assert api.fail("VM.set_shutdown_delay", halted, -5) == [
        "INVALID_VALUE", "shutdown_delay must be non-negative", "-5"]
    assert api.fail("VM.set_order", halted, -2) == ["INVALID_VALUE", "order must be non-negative", "-2"]
    api("VM.set_order", halted, 3)
    assert num(api("VM.get_order", halted)) == 3
    assert api.fail("VM.set_domain_type", halted, "unspecified") == [
        "INVALID_VALUE", "domain_type", "unspecified"]
    api("VM.set_domain_type", halted, "pv")
    assert api("VM.get_HVM_boot_policy", halted) == ""
    api("VM.set_HVM_boot_policy", halted, "BIOS order")
    assert api("VM.get_domain_type", halted) == "hvm"
    assert api.fail("VM.set_has_vendor_device", running, True) == [
        "VM_BAD_POWER_STATE", running, "halted", "running"]
    assert api.fail("VM.set_suspend_VDI", halted, NULL) == [
        "VM_BAD_POWER_STATE", halted, "suspended", "halted"]
    assert api.fail("VM.send_sysrq", running, "b") == ["NOT_IMPLEMENTED", "send_sysrq"]
    assert api.fail("VM.send_trigger", halted, "x") == [
        "VM_BAD_POWER_STATE", halted, "running", "halted"]
    assert api("VM.get_cooperative", running) is True
    assert api("VM.get_boot_record", running)["uuid"] == api("VM.get_uuid", running)
    biggest = num(api("VM.maximise_memory", halted, 8 * GiB, False))
    assert 7 * GiB < biggest < 8 * GiB
