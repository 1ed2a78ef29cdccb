"""VIF and network behaviour.

From xapi (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_vif_helpers.ml`` ``valid_operations`` (the first error set wins):
  any current operation blocks all (``OTHER_OPERATION_IN_PROGRESS ["VIF", ref,
  "{ops}", "{tasks}"]``); no hotplug on the control domain; on a running VM, plug of
  an attached VIF is ``DEVICE_ALREADY_ATTACHED [vif]`` and unplug of a detached one
  ``DEVICE_ALREADY_DETACHED [vif]``; on any other power state plug/unplug are
  ``VM_BAD_POWER_STATE [vm, "running", actual]``; a VM shutting down, suspending or
  pausing refuses them (``OPERATION_NOT_ALLOWED ["Current operation on VM:<ref> is
  <op>"]``); an HVM guest needs its PV drivers (guest metrics
  ``can_use_hotplug_vif``, else ``VM_MISSING_PV_DRIVERS [vm]``).
* ``xapi_vif_helpers.ml create``/``destroy`` and ``xapi_vif.ml``: the device must be an
  unsigned decimal (``INVALID_DEVICE``) not used by another VIF of the VM
  (``DEVICE_ALREADY_EXISTS``); an empty MAC is generated from the VM's
  ``other_config:mac_seed`` (MD5 chain, locally administered), and a MAC must be six
  hex pairs (``MAC_INVALID``); a new VIF is attached only on a suspended VM; a VIF
  attached to a running VM cannot be destroyed (``OPERATION_NOT_ALLOWED ["VIF
  currently attached to a running VM"]``); ``move`` of an active VIF needs the
  network on the VM's host (``HOST_CANNOT_ATTACH_NETWORK [host, network]``).
* ``ocaml/xapi/xapi_network.ml``: ``create`` picks a free ``xapiN`` bridge when none
  is given, refuses user bridge names longer than 15 or starting with xen, xapi, vif,
  tap, eth (``INVALID_VALUE ["bridge", name]``) and duplicates
  (``BRIDGE_NAME_EXISTS``), MTU <= 0 means 1500; ``destroy`` refuses attached VIFs
  (``NETWORK_CONTAINS_VIF [vifs]``), PIFs (``NETWORK_CONTAINS_PIF [pifs]``) and the
  host-internal management network (``CANNOT_DESTROY_SYSTEM_NETWORK``), and takes
  the remaining VIFs with it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import Store, allowed_ops
from xsctl.sim.wire import NULL_REF, Row

VIF_OPS = ("attach", "plug", "unplug")
_BLOCKING_VM_OPS = ("clean_shutdown", "hard_shutdown", "suspend", "pause")
BRIDGE_BLACKLIST = ("xen", "xapi", "vif", "tap", "eth")
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_DEVICE = re.compile(r"^\+?[0-9]+$")  # Scanf "%u%!"


def _domain_type(store: Store, vm: Row) -> str:
    """Helpers.domain_type: the running domain's type, else the configured one."""
    dtype = vm["domain_type"]
    if vm["power_state"] in ("Paused", "Running", "Suspended"):
        metrics = store.tables["VM_metrics"].get(vm["metrics"])
        if metrics is not None and metrics["current_domain_type"] not in ("", "unspecified"):
            dtype = metrics["current_domain_type"]
    if dtype == "unspecified":
        return "hvm" if vm["HVM_boot_policy"] else "pv"
    return str(dtype)


def _has_pv_drivers(gm: Row | None) -> bool:
    """Xapi_pv_driver_version.of_guest_metrics <> Unknown."""
    return gm is not None and "major" in gm["PV_drivers_version"]


def vif_op_errors(store: Store, ref: str, row: Row) -> dict[str, XapiFailure]:
    errors: dict[str, XapiFailure] = {}

    def set_errors(err: XapiFailure, ops: tuple[str, ...]) -> None:
        for op in ops:
            errors.setdefault(op, err)

    current = row["current_operations"]
    if current:
        set_errors(XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VIF", ref,
                               "{" + "; ".join(current.values()) + "}",
                               "{" + "; ".join(current) + "}"), VIF_OPS)
    vm_ref = row["VM"]
    vm = store.tables["VM"].get(vm_ref)
    if vm is None:
        return errors
    if vm["is_control_domain"]:
        set_errors(XapiFailure("OPERATION_NOT_ALLOWED", "Control domain does not support hotplug"),
                   ("plug",))
    state = vm["power_state"]
    plugged = row["currently_attached"] or row.get("reserved", False)
    if state == "Running":
        if plugged:
            set_errors(XapiFailure("DEVICE_ALREADY_ATTACHED", ref), ("plug",))
        else:
            set_errors(XapiFailure("DEVICE_ALREADY_DETACHED", ref), ("unplug",))
    else:
        set_errors(XapiFailure("VM_BAD_POWER_STATE", vm_ref, "running", state.lower()),
                   ("plug", "unplug"))
    for op in vm["current_operations"].values():
        if op in _BLOCKING_VM_OPS:
            set_errors(XapiFailure("OPERATION_NOT_ALLOWED",
                                   f"Current operation on VM:{vm_ref} is {op}"),
                       ("plug", "unplug"))
    if state == "Running" and _domain_type(store, vm) == "hvm":
        gm = store.tables["VM_guest_metrics"].get(vm["guest_metrics"])
        hotplug = gm["can_use_hotplug_vif"] if gm is not None else "unspecified"
        if hotplug == "no":
            set_errors(XapiFailure("OPERATION_NOT_ALLOWED",
                                   "VM states it does not support VIF hotplug."),
                       ("plug", "unplug"))
        elif hotplug != "yes" and not (gm is not None and gm["PV_drivers_detected"]) \
                and not _has_pv_drivers(gm):
            set_errors(XapiFailure("VM_MISSING_PV_DRIVERS", vm_ref), ("plug", "unplug"))
    return errors


@allowed_ops("VIF")
def vif_allowed_operations(store: Store, row: Row) -> list[str]:
    ref = store.uuids["VIF"].get(row["uuid"], "")
    errors = vif_op_errors(store, ref, row)
    return [op for op in VIF_OPS if op not in errors]


@allowed_ops("network")
def network_allowed_operations(store: Store, row: Row) -> list[str]:
    """xapi never computes network operations: the only one, ``attaching``, is a
    marker set while a host attaches the network."""
    return []


def gen_mac(device: int, seed: str) -> str:
    """xapi_vif_helpers.ml gen_mac: MD5 applied 2*device+1 times to the seed, then
    bytes 0-3 of that and 1-2 of its MD5, locally administered and unicast."""
    data = seed.encode()
    for _ in range(device * 2 + 1):
        data = hashlib.md5(data).digest()
    second = hashlib.md5(data).digest()
    octets = [data[0], data[1], data[2], data[3], second[1], second[2]]
    octets[0] = (octets[0] | 0x2) & ~0x1
    return ":".join(f"{b:02x}" for b in octets)


# ---------------------------------------------------------------- VIF


def _check_ref(store: Store, ref: str, cls: str) -> Row:
    row = store.tables[cls].get(ref)
    if row is None:
        raise XapiFailure("HANDLE_INVALID", cls, ref)
    return row


@api("VIF.create")
def vif_create(ctx: Context, args: dict[str, Any]) -> str:
    store = ctx.store
    with ctx.lock:
        vm_row = _check_ref(store, args["VM"], "VM")
        _check_ref(store, args["network"], "network")
        device = str(args["device"])
        if not _DEVICE.match(device):
            raise XapiFailure("INVALID_DEVICE", device)
        mac = str(args.get("MAC", ""))
        seed = vm_row["other_config"].get("mac_seed")
        autogenerated = False
        if seed is not None and mac == "":
            mac, autogenerated = gen_mac(int(device), seed), True
        if not _MAC.match(mac):
            raise XapiFailure("MAC_INVALID", mac)
        for vif in vm_row["VIFs"]:
            other = store.tables["VIF"].get(vif)
            if other is not None and other["device"].isdigit() and int(other["device"]) == int(device):
                raise XapiFailure("DEVICE_ALREADY_EXISTS", device)
        record = dict(args)
        record.update(
            device=device, MAC=mac, MAC_autogenerated=autogenerated,
            currently_attached=bool(args.get("currently_attached"))
            and vm_row["power_state"] == "Suspended",
            current_operations={}, reserved=False, status_code=0, status_detail="",
            runtime_properties={}, qos_supported_algorithms=[], metrics=NULL_REF,
            ipv4_configuration_mode="None", ipv4_addresses=[], ipv4_gateway="",
            ipv6_configuration_mode="None", ipv6_addresses=[], ipv6_gateway="",
        )
        record = {k: v for k, v in record.items() if k in store.field_names["VIF"]}
        return store.create("VIF", record)


@api("VIF.destroy")
def vif_destroy(ctx: Context, self: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = _check_ref(store, self, "VIF")
        vm = store.tables["VM"].get(row["VM"])
        if vm is not None and int(vm["domid"]) != -1 and row["currently_attached"]:
            raise XapiFailure("OPERATION_NOT_ALLOWED", "VIF currently attached to a running VM")
        store.destroy(self)


def _vif_operation(ctx: Context, vif: str, op: str, attached: bool) -> None:
    """message_forwarding.ml with_vif_marked: check and mark, do it, unmark."""
    store = ctx.store
    task = ctx.ensure_task()
    with ctx.lock:
        row = _check_ref(store, vif, "VIF")
        err = vif_op_errors(store, vif, row).get(op)
        if err is not None:
            raise err
        store.set_map_key(vif, "current_operations", task, op)
    try:
        ctx.work(0.5)
        with ctx.lock:
            store.update(vif, {"currently_attached": attached})
    finally:
        with ctx.lock:
            if store.exists(vif, "VIF"):
                store.del_map_key(vif, "current_operations", task)


@api("VIF.plug")
def vif_plug(ctx: Context, self: str) -> None:
    _vif_operation(ctx, self, "plug", True)


@api("VIF.unplug")
def vif_unplug(ctx: Context, self: str) -> None:
    _vif_operation(ctx, self, "unplug", False)


@api("VIF.unplug_force")
def vif_unplug_force(ctx: Context, self: str) -> None:
    _vif_operation(ctx, self, "unplug", False)


def network_available_on(store: Store, net: str, host: str) -> bool:
    """xapi_network_attach_helpers.ml assert_can_see_named_networks, one network."""
    row = store.get(net, "network")
    if row["PIFs"]:
        pifs = store.tables["PIF"]
        return any(p in pifs and pifs[p]["host"] == host for p in row["PIFs"])
    if row["other_config"].get("assume_network_is_shared") == "true" or not row["managed"]:
        return True
    hosts = set()
    for vif in row["VIFs"]:
        other = store.tables["VIF"].get(vif)
        vm = store.tables["VM"].get(other["VM"]) if other is not None else None
        if vm is not None and vm["power_state"] == "Running":
            hosts.add(vm["resident_on"])
    return not hosts or host in hosts


@api("VIF.move")
def vif_move(ctx: Context, self: str, network: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = _check_ref(store, self, "VIF")
        _check_ref(store, network, "network")
        vm = store.get(row["VM"], "VM")
        active = row["currently_attached"] and vm["power_state"] != "Suspended"
        if active:
            host = vm["resident_on"]
            if not network_available_on(store, network, host):
                raise XapiFailure("HOST_CANNOT_ATTACH_NETWORK", host, network)
        store.update(self, {"network": network})


# ---------------------------------------------------------------- network


def _next_bridge(store: Store) -> str:
    used = {row["bridge"] for row in store.all("network").values()}
    n = 0
    while f"xapi{n}" in used:
        n += 1
    return f"xapi{n}"


@api("network.create")
def network_create(ctx: Context, args: dict[str, Any]) -> str:
    store = ctx.store
    with ctx.lock:
        bridge = str(args.get("bridge", ""))
        if bridge == "":
            bridge = _next_bridge(store)
        else:
            if len(bridge) > 15 or bridge.startswith(BRIDGE_BLACKLIST):
                raise XapiFailure("INVALID_VALUE", "bridge", bridge)
            if any(row["bridge"] == bridge for row in store.all("network").values()):
                raise XapiFailure("BRIDGE_NAME_EXISTS", bridge)
        mtu = int(args.get("MTU", 1500))
        record = dict(args)
        record.update(bridge=bridge, MTU=mtu if mtu > 0 else 1500, current_operations={},
                      blobs={}, purpose=[], default_locking_mode="unlocked", assigned_ips={})
        record = {k: v for k, v in record.items() if k in store.field_names["network"]}
        return store.create("network", record)


@api("network.destroy")
def network_destroy(ctx: Context, self: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = _check_ref(store, self, "network")
        attached = [v for v in row["VIFs"]
                    if (r := store.tables["VIF"].get(v)) is not None
                    and (r["currently_attached"] or r.get("reserved", False))]
        if attached:
            raise XapiFailure("NETWORK_CONTAINS_VIF", *attached)
        if row["PIFs"]:
            raise XapiFailure("NETWORK_CONTAINS_PIF", *row["PIFs"])
        if row["other_config"].get("is_host_internal_management_network", "").lower() == "true":
            raise XapiFailure("CANNOT_DESTROY_SYSTEM_NETWORK", self)
        for vif in list(row["VIFs"]):
            if store.exists(vif, "VIF"):
                store.destroy(vif)
        store.destroy(self)
