"""A VM's guest metrics, as the guest agent reports them (ocaml/xapi/xapi_guest_agent.ml
and xapi_xenops.ml create_guest_metrics_if_needed): made empty when a domain starts,
filled a little after boot from what the guest's template installs, and gone when the
VM halts or boots again (Xapi_vm_helpers.delete_guest_metrics).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from xsctl.sim.handlers.storage import refresh_vm_devices
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.wire import NULL_REF, Row

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator


def has_pv_drivers(gm: Row | None) -> bool:
    """xapi_pv_driver_version.ml: drivers are known when major and minor parse."""
    if gm is None:
        return False
    ver = gm["PV_drivers_version"]
    try:
        int(ver["major"])
        int(ver["minor"])
    except (KeyError, ValueError):
        return False
    return True


def delete_guest_metrics(store: Store, vm: str) -> None:
    """Xapi_vm_helpers.delete_guest_metrics."""
    gm = store.get(vm, "VM")["guest_metrics"]
    store.update(vm, {"guest_metrics": NULL_REF})
    if gm in store.tables["VM_guest_metrics"]:
        store.destroy(gm)


def create_guest_metrics(store: Store, vm: str) -> None:
    """xapi_xenops.ml create_guest_metrics_if_needed: when a domain starts running, a
    guest metrics record made from what xenstore holds (nothing yet)."""
    if store.get(vm, "VM")["guest_metrics"] in store.tables["VM_guest_metrics"]:
        return
    gm = store.create("VM_guest_metrics", {
        "os_version": {}, "PV_drivers_version": {}, "PV_drivers_up_to_date": False,
        "PV_drivers_detected": False, "memory": {}, "disks": {}, "networks": {}, "other": {},
        "last_updated": now_datetime(), "other_config": {}, "live": True,
        "can_use_hotplug_vbd": "unspecified", "can_use_hotplug_vif": "unspecified",
    })
    store.update(vm, {"guest_metrics": gm})


def _mac_bytes(mac: str) -> list[int]:
    try:
        return [int(x, 16) for x in mac.split(":")][:6]
    except ValueError:
        return [0x02, 0, 0, 0, 0, 0]


def guest_networks(store: Store, row: Row) -> dict[str, str]:
    """What the guest agent reports, in xapi_guest_agent.ml's key format
    (``<device>/ip``, ``<device>/ipv4/0``, ``<device>/ipv6/0``). Addresses follow from
    the MAC, like a DHCP lease, so a VM keeps its address across reboots."""
    nets: dict[str, str] = {}
    vifs = [store.tables["VIF"][v] for v in row["VIFs"] if v in store.tables["VIF"]]
    for vif in sorted(vifs, key=lambda v: int(v["device"]) if v["device"].isdigit() else 99):
        if not vif["currently_attached"]:
            continue
        dev = vif["device"]
        b = (_mac_bytes(vif["MAC"]) + [0] * 6)[:6]
        net = store.tables["network"].get(vif["network"])
        if net is not None and net["bridge"] == "xenbr0":
            ip = f"10.0.{1 + b[4] % 4}.{2 + b[5] % 250}"
        else:
            ip = f"192.168.{10 + int(dev) if dev.isdigit() else 99}.{2 + b[5] % 250}"
        eui = [b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]]
        ip6 = "fe80::" + ":".join(f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2))
        # a static setting (VIF.configure_ipv4/6, which only a guest stating
        # feature-static-ip-setting accepts) replaces the lease
        ip = _static(vif, "ipv4") or ip
        nets[f"{dev}/ip"] = ip
        nets[f"{dev}/ipv4/0"] = ip
        nets[f"{dev}/ipv6/0"] = ip6
        six = _static(vif, "ipv6")
        if six:
            nets[f"{dev}/ipv6/1"] = six
    return nets


def _static(vif: Row, kind: str) -> str:
    if vif[f"{kind}_configuration_mode"] != "Static" or not vif[f"{kind}_addresses"]:
        return ""
    return str(vif[f"{kind}_addresses"][0]).partition("/")[0]


def networks_changed(store: Store, vm: str, device: str) -> None:
    """The guest agent's report after the VIF at ``device`` came or went or took a
    static address (its networks follow what is plugged; the others keep their
    leases); a guest with no agent says nothing. Call with the lock held."""
    row = store.get(vm, "VM")
    gm = store.tables["VM_guest_metrics"].get(row["guest_metrics"])
    if row["power_state"] != "Running" or gm is None or not gm["PV_drivers_detected"]:
        return
    old: dict[str, str] = gm["networks"]
    fresh = guest_networks(store, row)
    nets: dict[str, str] = {}
    for dev in dict.fromkeys(k.partition("/")[0] for k in fresh):
        kept = {k: v for k, v in old.items() if k.partition("/")[0] == dev}
        nets.update(kept if kept and dev != device else
                    {k: v for k, v in fresh.items() if k.partition("/")[0] == dev})
    report(store, vm, {"networks": nets})


def _guest_os(row: Row) -> Any:
    """The OS the guest agent would report: the one its template installs. VMs whose
    template the demo pool does not know (install media, generic) have no agent."""
    from xsctl.sim.seed import OS_BY_TEMPLATE

    return OS_BY_TEMPLATE.get(row["other_config"].get("base_template_name", ""))


def report(store: Store, vm: str, fields: dict[str, Any]) -> str:
    """A guest agent report (xapi_guest_agent.ml): the VM's guest metrics, made first
    when the domain has none (create_guest_metrics_if_needed), take these fields and a
    new last_updated; then, as the drivers and the features the guest states decide
    some operations, XenAPI.VM.update_allowed_operations (xapi_xenops.ml update_vm)
    for the VM and its devices. Call with the lock held; returns the guest metrics."""
    create_guest_metrics(store, vm)
    gm: str = store.get(vm, "VM")["guest_metrics"]
    store.update(gm, {**fields, "last_updated": now_datetime()})
    store.republish(vm)
    refresh_vm_devices(store, vm)
    return gm


def guest_agent_report(sim: Simulator, vm: str, domid: int) -> None:
    """The guest agent's first report, a little after boot: what the guest's template
    installs. Not when a test has already set what this domain's guest reports."""
    store = sim.store
    with store.lock:
        row = store.tables["VM"].get(vm)
        if row is None or row["power_state"] not in ("Running", "Paused") or row["domid"] != domid:
            return
        if sim.runtime.guest_reported.get(vm) == domid:
            return
        gm = row["guest_metrics"]
        if gm not in store.tables["VM_guest_metrics"]:
            return
        os = _guest_os(row)
        if os is None:
            return
        osv = {"name": os.name, "distro": os.distro, "major": os.major, "minor": os.minor}
        if os.uname:
            osv["uname"] = os.uname
        report(store, vm, {
            "os_version": osv,
            "PV_drivers_version": {"major": "9" if os.windows else "8", "minor": "3",
                                   "micro": "3", "build": "1"},
            "PV_drivers_up_to_date": True, "PV_drivers_detected": True,
            "networks": guest_networks(store, row),
            "other": os.agent_other,
            "live": True, "can_use_hotplug_vbd": "yes", "can_use_hotplug_vif": "yes",
        })


def guest_agent_delay(sim: Simulator) -> float:
    return sim.op_time * 2


def schedule_guest_agent(sim: Simulator, vm: str, domid: int) -> None:
    t = threading.Timer(guest_agent_delay(sim), guest_agent_report, args=(sim, vm, domid))
    t.daemon = True
    t.name = "sim guest agent"
    t.start()
    sim.track_thread(t)
