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
* ``xapi_vif.ml configure_ipv4``/``configure_ipv6``: for ``Static``, the pool's
  licence (``LICENCE_RESTRICTION ["Guest_ip_setting"]``), the address as CIDR
  (``INVALID_CIDR_ADDRESS_SPECIFIED ["address"]``, Helpers.parse_cidr), a locked VIF's
  allowed addresses (``ADDRESS_VIOLATES_LOCKING_CONSTRAINT [address]``) and a
  non-empty gateway (``INVALID_IP_ADDRESS_SPECIFIED ["gateway"]``); then, whatever the
  mode, the guest's ``feature-static-ip-setting`` (``VM_LACKS_FEATURE [vm]``); then
  the mode, ``[address]`` and the gateway are stored as given.
* ``xapi_vif.ml set_locking_mode`` and ``xapi_vif_helpers.ml create``: a locked VIF
  (or one with allowed addresses) needs the licence (``LICENCE_RESTRICTION
  ["VIF_locking"]``).
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
import socket
from typing import Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.vm_guest import networks_changed
from xsctl.sim.handlers.vm_lifecycle import pool_row
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


def _xapi_version(store: Store) -> tuple[int, ...]:
    master = store.tables["host"].get(pool_row(store)["master"])
    text = str(master["software_version"].get("xapi", "")) if master is not None else ""
    try:
        return tuple(int(p) for p in text.split(".")[:2])
    except ValueError:
        return ()


def allowed_vif_devices(store: Store, vm: Row) -> list[str]:
    """Xapi_vm_helpers.allowed_VIF_devices: 0 to 6 (seven VIFs, what a VM's grant
    frames allowed) up to xapi 25.28; 0 to 15 from 25.29.0 on, whose domains size
    their grant frames to their devices. Less the devices the VM's VIFs name, as
    written (a VIF at "01" leaves 1 free, as in xapi)."""
    top = 16 if _xapi_version(store) >= (25, 29) else 7
    used = {store.tables["VIF"][v]["device"] for v in vm["VIFs"] if v in store.tables["VIF"]}
    return [str(n) for n in range(top) if str(n) not in used]


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
        if (args.get("locking_mode") == "locked" or args.get("ipv4_allowed")
                or args.get("ipv6_allowed")):
            assert_feature(store, "VIF_locking")
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
            row = store.get(vif, "VIF")
            networks_changed(store, row["VM"], row["device"])
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


# ------------------------------------------------------- VIF locking and IP setting

# Features.keys_of_features: the pool's restrictions key of each feature checked here
# (absent means restricted: neither is in enabled_when_unknown)
_FEATURE_KEYS = {"VIF_locking": "restrict_vif_locking",
                 "Guest_ip_setting": "restrict_guest_ip_setting"}


def assert_feature(store: Store, feature: str) -> None:
    """Pool_features.assert_enabled: LICENCE_RESTRICTION [feature] unless the pool's
    restrictions say "false" for it."""
    if pool_row(store)["restrictions"].get(_FEATURE_KEYS[feature]) != "false":
        raise XapiFailure("LICENCE_RESTRICTION", feature)


def is_valid_ip(kind: str, address: str) -> bool:
    """Helpers.is_valid_ip: Unix.inet_addr_of_string (inet_pton, IPv4 tried first)
    gives an address of the family asked for."""
    family = socket.AF_INET if kind == "ipv4" else socket.AF_INET6
    try:
        socket.inet_pton(family, address)
    except (OSError, ValueError):
        return False
    return True


_SCANF_INT = re.compile(r"[+-]?[0-9][0-9_]*")


def parse_cidr(kind: str, cidr: str) -> tuple[str, int] | None:
    """Helpers.parse_cidr: Scanf "%s@/%d" (the text up to the first /, then a
    decimal integer, what follows it ignored), a valid address of the kind and a
    prefix length of 0 to 32 (IPv4) or 128 (IPv6)."""
    address, sep, rest = cidr.partition("/")
    m = _SCANF_INT.match(rest)
    if not sep or m is None:
        return None
    prefix = int(m.group().replace("_", ""))
    if not is_valid_ip(kind, address):
        return None
    if prefix < 0 or prefix > (32 if kind == "ipv4" else 128):
        return None
    return address, prefix


def _effective_locking_mode(store: Store, row: Row, mode: str | None = None) -> str:
    """xapi_vif.ml get_effective_locking_mode (of ``mode``, else the VIF's own)."""
    mode = str(row["locking_mode"]) if mode is None else mode
    if mode == "network_default":
        net = store.tables["network"].get(row["network"])
        return str(net["default_locking_mode"]) if net is not None else "unlocked"
    return mode


def _assert_static_ip_feature(store: Store, row: Row) -> None:
    """xapi_vif.ml assert_has_feature_static_ip_setting: the guest reports
    feature-static-ip-setting=1 in its guest metrics' other."""
    vm = row["VM"]
    gm = store.tables["VM_guest_metrics"].get(store.get(vm, "VM")["guest_metrics"])
    if gm is None or gm["other"].get("feature-static-ip-setting") != "1":
        raise XapiFailure("VM_LACKS_FEATURE", vm)


def _configure_ip(ctx: Context, self: str, kind: str, mode: str, address: str,
                  gateway: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = _check_ref(store, self, "VIF")
        if mode == "Static":
            assert_feature(store, "Guest_ip_setting")
            parsed = parse_cidr(kind, address)
            if parsed is None:
                raise XapiFailure("INVALID_CIDR_ADDRESS_SPECIFIED", "address")
            if (_effective_locking_mode(store, row) == "locked"
                    and parsed[0] not in row[f"{kind}_allowed"]):
                raise XapiFailure("ADDRESS_VIOLATES_LOCKING_CONSTRAINT", address)
            if gateway != "" and not is_valid_ip(kind, gateway):
                raise XapiFailure("INVALID_IP_ADDRESS_SPECIFIED", "gateway")
        _assert_static_ip_feature(store, row)
        store.update(self, {f"{kind}_configuration_mode": mode,
                            f"{kind}_addresses": [address], f"{kind}_gateway": gateway})
        if row["currently_attached"]:  # device_active: xenopsd tells the guest now
            networks_changed(store, row["VM"], row["device"])


@api("VIF.configure_ipv4")
def vif_configure_ipv4(ctx: Context, self: str, mode: str, address: str, gateway: str) -> None:
    _configure_ip(ctx, self, "ipv4", mode, address, gateway)


@api("VIF.configure_ipv6")
def vif_configure_ipv6(ctx: Context, self: str, mode: str, address: str, gateway: str) -> None:
    _configure_ip(ctx, self, "ipv6", mode, address, gateway)


@api("VIF.set_locking_mode")
def vif_set_locking_mode(ctx: Context, self: str, value: str) -> None:
    """xapi_vif.ml set_locking_mode: the licence when it comes out locked."""
    store = ctx.store
    with ctx.lock:
        row = _check_ref(store, self, "VIF")
        if _effective_locking_mode(store, row, value) == "locked":
            assert_feature(store, "VIF_locking")
        store.update(self, {"locking_mode": value})


def _assert_ip_addr(kind: str, value: str) -> None:
    """Helpers.assert_is_valid_ip_addr: an address or a CIDR of the kind."""
    if not is_valid_ip(kind, value) and parse_cidr(kind, value) is None:
        raise XapiFailure("INVALID_IP_ADDRESS_SPECIFIED", f"{kind}_allowed")


def _change_allowed(ctx: Context, self: str, kind: str, licensed: bool,
                    change: Any) -> None:
    """xapi_vif.ml change_locking_config: the licence where asked, then the change."""
    store = ctx.store
    with ctx.lock:
        row = _check_ref(store, self, "VIF")
        if licensed:
            assert_feature(store, "VIF_locking")
        field = f"{kind}_allowed"
        store.update(self, {field: change(list(row[field]))})


def _set_allowed(kind: str) -> Any:
    def handler(ctx: Context, self: str, value: list[str]) -> None:
        addrs = list(dict.fromkeys(value))  # Listext.setify

        def change(_: list[str]) -> list[str]:
            for a in addrs:
                _assert_ip_addr(kind, a)
            return addrs

        _change_allowed(ctx, self, kind, bool(addrs), change)
    return handler


def _add_allowed(kind: str) -> Any:
    def handler(ctx: Context, self: str, value: str) -> None:
        def change(old: list[str]) -> list[str]:
            _assert_ip_addr(kind, value)
            return old if value in old else [*old, value]  # a set field

        _change_allowed(ctx, self, kind, True, change)
    return handler


def _remove_allowed(kind: str) -> Any:
    def handler(ctx: Context, self: str, value: str) -> None:
        _change_allowed(ctx, self, kind, False, lambda old: [a for a in old if a != value])
    return handler


for _kind in ("ipv4", "ipv6"):
    api(f"VIF.set_{_kind}_allowed")(_set_allowed(_kind))
    api(f"VIF.add_{_kind}_allowed")(_add_allowed(_kind))
    api(f"VIF.remove_{_kind}_allowed")(_remove_allowed(_kind))


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
