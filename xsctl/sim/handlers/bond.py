"""Bond.* behaviour: NICs of one host joined into one link.

From xapi (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_bond.ml`` ``create``: the network must be managed
  (``NETWORK_UNMANAGED``) and not yet reach the host (``NETWORK_ALREADY_CONNECTED
  [host, pif]``); a MAC given must be valid (``MAC_INVALID``); lacp's properties are
  checked (``INVALID_VALUE``) and given their defaults (hashing_algorithm
  tcpudp_ports, lacp-time slow, lacp-fallback-ab true). Members are made a set;
  none is ``PIF_BOND_NEEDS_MORE_MEMBERS``; each must be in no bond
  (``PIF_ALREADY_BONDED [pif]``), untagged (``PIF_VLAN_EXISTS [device]``), not the
  management interface while HA is on (``HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE``)
  and managed (``PIF_UNMANAGED``); all on one host (``PIF_CANNOT_BOND_CROSS_HOST``),
  with equal properties (``INCOMPATIBLE_PIF_PROPERTIES``) and at most one with an IP
  configuration (``PIF_BOND_MORE_THAN_ONE_IP``). The primary member is the management
  PIF, else the one with an IP configuration, else the first. The master PIF (device
  ``bondN``, the first free N on the host) takes its MAC (unless one is given), IP
  configuration and management; the members are unplugged and the master plugged; the
  members' VLANs move onto the master, and the VIFs of VMs resident on the host move
  from the members' networks to the bond's.
* ``destroy``: the reverse: the configuration and management go back to the primary
  member, the members are plugged again, VLANs and VIFs move down to the primary
  member, then the Bond and its master PIF are destroyed.
* ``set_mode``: the mode, with the properties the new mode keeps and its defaults.
"""

from __future__ import annotations

import re
from typing import Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.vlan import assert_network_managed, assert_no_other_local_pifs
from xsctl.sim.store import Store
from xsctl.sim.wire import NULL_REF, Row

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
# xapi_bond.ml requirements_of_mode: key -> (default, valid values; None: an integer)
LACP: dict[str, tuple[str | None, tuple[str, ...] | None]] = {
    "hashing_algorithm": ("tcpudp_ports", ("src_mac", "tcpudp_ports")),
    "lacp-time": ("slow", ("fast", "slow")),
    "lacp-aggregation-key": (None, None),
    "lacp-fallback-ab": ("true", ("true", "false")),
}
# what moves between a bond's master and its primary member (move_configuration)
IP_FIELDS = ("ip_configuration_mode", "IP", "netmask", "gateway", "DNS",
             "ipv6_configuration_mode", "IPv6", "ipv6_gateway", "primary_address_type")


def _requirements(mode: str) -> dict[str, tuple[str | None, tuple[str, ...] | None]]:
    return LACP if mode == "lacp" else {}


def _valid(key: str, value: str, mode: str) -> bool:
    req = _requirements(mode).get(key)
    if req is None:
        return True
    allowed = req[1]
    if allowed is None:
        return value.lstrip("-").isdigit()
    return value in allowed


def _with_defaults(props: dict[str, str], mode: str) -> dict[str, str]:
    out = dict(props)
    for key, (default, _) in _requirements(mode).items():
        if key not in out and default is not None:
            out[key] = default
    return out


def _row(store: Store, ref: str, cls: str) -> Row:
    row = store.tables[cls].get(ref)
    if row is None:
        raise XapiFailure("HANDLE_INVALID", cls, ref)
    return row


def _device(store: Store, host: str) -> str:
    """choose_bond_device_name: bondN, the first N no PIF of the host uses."""
    used = {p["device"] for p in store.all("PIF").values() if p["host"] == host}
    n = 0
    while f"bond{n}" in used:
        n += 1
    return f"bond{n}"


def _move_config(store: Store, src: str, dst: str) -> None:
    row = store.get(src, "PIF")
    store.update(dst, {f: row[f] for f in IP_FIELDS})
    store.update(src, {"ip_configuration_mode": "None", "IP": "", "netmask": "",
                       "gateway": "", "DNS": "", "ipv6_configuration_mode": "None",
                       "IPv6": [], "ipv6_gateway": ""})


def _move_vifs(store: Store, host: str, networks: set[str], to: str) -> None:
    """The VIFs of VMs resident on ``host`` (running, paused) on ``networks`` move to
    ``to`` (get_local_vifs, Xapi_vif.move_internal)."""
    for ref, vif in list(store.all("VIF").items()):
        vm = store.tables["VM"].get(vif["VM"])
        if (vif["network"] in networks and vm is not None and vm["resident_on"] == host
                and not vm["is_control_domain"]):
            store.update(ref, {"network": to})


def _move_vlans(store: Store, src: str, dst: str) -> None:
    for ref, vlan in list(store.all("VLAN").items()):
        if vlan["tagged_PIF"] == src:
            store.update(ref, {"tagged_PIF": dst})


@api("Bond.create")
def bond_create(ctx: Context, network: str, members: list[str], MAC: str, mode: str,
                properties: dict[str, Any]) -> str:
    store = ctx.store
    ctx.work(0.3)
    with ctx.lock:
        assert_network_managed(store, network)
        members = list(dict.fromkeys(members))
        for m in members:
            _row(store, m, "PIF")
        if not members:
            raise XapiFailure("PIF_BOND_NEEDS_MORE_MEMBERS")
        host = store.get(members[0], "PIF")["host"]
        assert_no_other_local_pifs(store, host, network)
        if MAC and not _MAC.match(MAC):
            raise XapiFailure("MAC_INVALID", MAC)
        props = {str(k): str(v) for k, v in properties.items()}
        for k, v in props.items():
            if not _valid(k, v, mode):
                raise XapiFailure("INVALID_VALUE", "properties", f"{k}: {v}")
        props = _with_defaults(props, mode)
        pool = next(iter(store.all("pool").values()))
        rows = [store.get(m, "PIF") for m in members]
        for m, row in zip(members, rows, strict=True):
            if row["bond_slave_of"] != NULL_REF and store.exists(row["bond_slave_of"], "Bond"):
                raise XapiFailure("PIF_ALREADY_BONDED", m)
            if int(row["VLAN"]) != -1:
                raise XapiFailure("PIF_VLAN_EXISTS", row["device"])
            if pool["ha_enabled"] and row["management"]:
                raise XapiFailure("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE")
            if not row["managed"]:
                raise XapiFailure("PIF_UNMANAGED", m)
        if len({r["host"] for r in rows}) != 1:
            raise XapiFailure("PIF_CANNOT_BOND_CROSS_HOST")
        if any(r["properties"] != rows[0]["properties"] for r in rows[1:]):
            raise XapiFailure("INCOMPATIBLE_PIF_PROPERTIES")
        with_ip = [m for m, r in zip(members, rows, strict=True)
                   if r["ip_configuration_mode"] != "None"]
        if len(with_ip) > 1:
            raise XapiFailure("PIF_BOND_MORE_THAN_ONE_IP")
        mgmt = [m for m, r in zip(members, rows, strict=True) if r["management"]]
        primary = (mgmt or with_ip or members)[0]
        prow = store.get(primary, "PIF")
        device = _device(store, host)
        bond = store.new_ref()
        master = store.create("PIF", {
            "device": device, "network": network, "host": host,
            "MAC": MAC or prow["MAC"], "MTU": store.get(network, "network")["MTU"],
            "VLAN": -1, "metrics": prow["metrics"], "physical": False,
            "currently_attached": False, "ip_configuration_mode": "None", "IP": "",
            "netmask": "", "gateway": "", "DNS": "", "bond_slave_of": NULL_REF,
            "VLAN_master_of": NULL_REF, "management": False, "other_config": {},
            "disallow_unplug": False, "ipv6_configuration_mode": "None", "IPv6": [],
            "primary_address_type": "IPv4", "managed": True,
            "properties": dict(rows[0]["properties"]), "capabilities": [],
        })
        store.create("Bond", {"master": master, "primary_slave": primary, "mode": mode,
                              "properties": props, "links_up": len(members),
                              "other_config": {}}, ref=bond)
        store.update(master, {"bond_master_of": [bond]})
        for m in members:
            store.update(m, {"bond_slave_of": bond, "currently_attached": False})
        _move_config(store, primary, master)
        unplug = any(r["disallow_unplug"] for r in rows)
        store.update(master, {"currently_attached": True, "management": bool(mgmt),
                              "disallow_unplug": unplug})
        if mgmt:
            store.update(mgmt[0], {"management": False})
        for m in members:
            _move_vlans(store, m, master)
            store.update(m, {"disallow_unplug": False})
        _move_vifs(store, host, {r["network"] for r in rows}, network)
        return bond


@api("Bond.destroy")
def bond_destroy(ctx: Context, self: str) -> None:
    store = ctx.store
    ctx.work(0.3)
    with ctx.lock:
        row = _row(store, self, "Bond")
        master = row["master"]
        mrow = store.get(master, "PIF")
        members = list(row["slaves"])
        primary = row["primary_slave"]
        pool = next(iter(store.all("pool").values()))
        if pool["ha_enabled"] and mrow["management"]:
            raise XapiFailure("HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE")
        _move_config(store, master, primary)
        if mrow["management"]:
            store.update(primary, {"management": True})
        plugged = mrow["currently_attached"]
        for m in members:
            store.update(m, {"bond_slave_of": NULL_REF,
                             "currently_attached": plugged or m == primary})
        _move_vlans(store, master, primary)
        _move_vifs(store, mrow["host"], {mrow["network"]}, store.get(primary, "PIF")["network"])
        if mrow["disallow_unplug"]:
            store.update(primary, {"disallow_unplug": True})
        store.destroy(self)
        store.destroy(master)


@api("Bond.set_mode")
def bond_set_mode(ctx: Context, self: str, value: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = _row(store, self, "Bond")
        kept = {k: v for k, v in row["properties"].items() if _valid(k, v, value)}
        store.update(self, {"mode": value, "properties": _with_defaults(kept, value)})
