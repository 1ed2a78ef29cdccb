"""Where a VM may run: Xapi_vm_helpers.assert_can_boot_here (in its order),
vm_can_run_on_host, choose_host_for_vm and choose_host (ocaml/xapi/xapi_vm_helpers.ml,
vm_placement.ml), with the checks they make of SRs, networks, memory and CPUs.

xapi picks a host at random, biased by free memory; the simulator chooses
deterministically (the most free memory) so tests are stable.
"""

from __future__ import annotations

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.vm_lifecycle import get_host, get_vm, is_true
from xsctl.sim.handlers.vm_memory import Constraints, domain_type, host_free_memory, start_memory
from xsctl.sim.store import Store
from xsctl.sim.wire import NULL_REF, Row, ocaml_float


def validate_basic_parameters(row: Row, vm: str) -> None:
    """Xapi_vm_helpers.validate_basic_parameters."""
    vmax, vstart = int(row["VCPUs_max"]), int(row["VCPUs_at_startup"])
    if vmax < 1:
        raise XapiFailure("INVALID_VALUE", "VCPUs_max", vmax)
    if vstart < 1:
        raise XapiFailure("INVALID_VALUE", "VCPUs-at-startup", vstart)
    if vstart > vmax:
        raise XapiFailure("VALUE_NOT_SUPPORTED", "VCPUs-at-startup", vstart,
                          "value greater than VCPUs-max")
    if not Constraints.of(row).transformable():
        raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION")
    mult = float(row["HVM_shadow_multiplier"])
    if mult < 1.0:
        raise XapiFailure("INVALID_VALUE", "HVM_shadow_multiplier", ocaml_float(mult))
    crash = row["actions_after_crash"]
    fld = "VM.actions_after_crash"
    if crash == "rename_restart":
        raise XapiFailure("VALUE_NOT_SUPPORTED", fld, "rename_restart",
                          "option would leak a domain; VMs and not domains are managed by this API")
    if crash in ("coredump_and_destroy", "coredump_and_restart") and domain_type(row) != "pv":
        raise XapiFailure("VALUE_NOT_SUPPORTED", fld, crash,
                          "cannot invoke a coredump of an HVM, PVH or PV-in-PVH domain")


def host_live(store: Store, host: str) -> bool:
    hrow = store.tables["host"].get(host)
    if hrow is None:
        return False
    metrics = store.tables["host_metrics"].get(hrow["metrics"])
    return metrics is not None and bool(metrics["live"])


def srs_seen_by(store: Store, host: str) -> set[str]:
    out: set[str] = set()
    for pbd in store.get(host, "host")["PBDs"]:
        row = store.tables["PBD"].get(pbd)
        if row is not None and row["currently_attached"]:
            out.add(row["SR"])
    return out


def required_srs(store: Store, row: Row, with_suspend: bool = True) -> list[str]:
    """The SRs of the VM's non-empty VBDs, plus the suspend image when Suspended."""
    vdis: list[str] = []
    for vbd in row["VBDs"]:
        vrow = store.tables["VBD"].get(vbd)
        if vrow is not None and not vrow["empty"]:
            vdis.append(vrow["VDI"])
    if with_suspend and row["power_state"] == "Suspended" and row["suspend_VDI"] != NULL_REF:
        vdis.append(row["suspend_VDI"])
    srs: list[str] = []
    for vdi in vdis:
        vdi_row = store.tables["VDI"].get(vdi)
        if vdi_row is not None and vdi_row["SR"] not in srs:
            srs.append(vdi_row["SR"])
    return srs


def assert_can_see_srs(store: Store, vm: str, row: Row, host: str) -> None:
    seen = srs_seen_by(store, host)
    for sr in required_srs(store, row):
        if sr not in seen:
            raise XapiFailure("VM_REQUIRES_SR", vm, sr)


def assert_can_see_networks(store: Store, vm: str, row: Row, host: str) -> None:
    """Xapi_network_attach_helpers.assert_can_see_named_networks."""
    for vif in row["VIFs"]:
        vrow = store.tables["VIF"].get(vif)
        if vrow is None:
            continue
        net = store.tables["network"].get(vrow["network"])
        if net is None:
            continue
        if net["PIFs"]:
            pifs = store.tables["PIF"]
            ok = any(p in pifs and pifs[p]["host"] == host for p in net["PIFs"])
        elif is_true(net["other_config"].get("assume_network_is_shared")) or not net["managed"]:
            ok = True
        else:
            hosts = set()
            for other_vif in net["VIFs"]:
                other = store.tables["VIF"].get(other_vif)
                vm_row = store.tables["VM"].get(other["VM"]) if other else None
                if vm_row is not None and vm_row["power_state"] == "Running":
                    hosts.add(vm_row["resident_on"])
            ok = not hosts or host in hosts
        if not ok:
            raise XapiFailure("VM_REQUIRES_NETWORK", vm, vrow["network"])


def assert_can_boot_here(
    store: Store, vm: str, row: Row, host: str, *, memory: bool = True, srs: bool = True
) -> None:
    """Xapi_vm_helpers.assert_can_boot_here, in its order."""
    validate_basic_parameters(row, vm)
    hrow = store.get(host, "host")
    if not host_live(store, host):
        raise XapiFailure("HOST_NOT_LIVE")
    if row["is_control_domain"] and row["affinity"] not in (NULL_REF, host):
        raise XapiFailure(
            "OPERATION_NOT_ALLOWED",
            "Cannot boot a control domain on a host different from its affinity",
        )
    local_live = row["power_state"] == "Running" and row["resident_on"] == host
    if not row["is_control_domain"] and not local_live and not hrow["enabled"]:
        raise XapiFailure("HOST_DISABLED", host)
    versions = [int(v) for v in hrow["virtual_hardware_platform_versions"]] or [0]
    if int(row["hardware_platform_version"]) not in versions:
        raise XapiFailure(
            "VM_HOST_INCOMPATIBLE_VIRTUAL_HARDWARE_PLATFORM_VERSION", host,
            "[" + "; ".join(str(v) for v in versions) + "]", vm,
            int(row["hardware_platform_version"]),
        )
    if srs:
        assert_can_see_srs(store, vm, row, host)
    assert_can_see_networks(store, vm, row, host)
    if domain_type(row) != "pv" and not any("hvm" in c for c in hrow["capabilities"]):
        raise XapiFailure("VM_HVM_REQUIRED", vm)
    if memory:
        needed = start_memory(row)
        avail = host_free_memory(store, host, ignore_scheduled=vm)
        if avail < needed:
            raise XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, avail)
    try:
        pcpus = int(hrow["cpu_info"].get("cpu_count", "0"))
    except ValueError:
        pcpus = 0
    vcpus = int(row["VCPUs_max"])
    if pcpus and vcpus > pcpus and not is_true(row["platform"].get("vcpu-unrestricted")):
        raise XapiFailure("HOST_NOT_ENOUGH_PCPUS", vcpus, pcpus)


def _hosts(store: Store) -> list[str]:
    return sorted(store.tables["host"], key=lambda h: store.tables["host"][h]["address"])


def _evacuating(store: Store, host: str) -> bool:
    return "evacuate" in store.get(host, "host")["current_operations"].values()


def vm_can_run_on_host(store: Store, vm: str, row: Row, host: str, memory: bool) -> bool:
    """Xapi_vm_helpers.vm_can_run_on_host."""
    hrow = store.get(host, "host")
    if not (row["is_control_domain"] or hrow["enabled"]) or not host_live(store, host):
        return False
    try:
        assert_can_boot_here(store, vm, row, host, memory=memory)
    except XapiFailure:
        return False
    return not _evacuating(store, host)


def choose_host_for_vm(store: Store, vm: str, row: Row) -> str:
    """choose_host_for_vm_no_wlb: the affinity host when it can run the VM, else a host
    that can (xapi picks at random, biased towards free memory; the simulator takes the
    one with the most free memory). When no host has the memory, xapi tries again
    without the memory check and lets the start itself fail."""
    affinity = row["affinity"]
    for memory in (True, False):
        ok = [h for h in _hosts(store) if vm_can_run_on_host(store, vm, row, h, memory)]
        if affinity in ok:
            return str(affinity)
        if ok:
            return max(ok, key=lambda h: host_free_memory(store, h, ignore_scheduled=vm))
    raise XapiFailure("NO_HOSTS_AVAILABLE")


def choose_host_seeing(store: Store, srs: list[str]) -> str:
    """Xapi_vm_helpers.choose_host with assert_can_see_specified_SRs."""
    for h in _hosts(store):
        if host_live(store, h) and set(srs) <= srs_seen_by(store, h):
            return h
    raise XapiFailure("NO_HOSTS_AVAILABLE")


@api("VM.assert_can_boot_here")
def api_assert_can_boot_here(ctx: Context, self: str, host: str) -> None:
    with ctx.lock:
        row = get_vm(ctx, self)
        get_host(ctx, host)
        assert_can_boot_here(ctx.store, self, row, host)


@api("VM.get_possible_hosts")
def get_possible_hosts(ctx: Context, vm: str) -> list[str]:
    """Xapi_vm_helpers.get_possible_hosts_for_vm."""
    store = ctx.store
    with ctx.lock:
        row = get_vm(ctx, vm)
        if row["scheduled_to_be_resident_on"] in store.tables["host"]:
            return [row["scheduled_to_be_resident_on"]]
        out = []
        for h in _hosts(store):
            try:
                assert_can_boot_here(store, vm, row, h)
            except XapiFailure:
                continue
            out.append(h)
        return out
