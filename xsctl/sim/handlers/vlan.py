"""VLAN.* and pool.create_VLAN(_from_PIF): a tagged network on a host's NIC.

From xapi (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_vlan.ml`` ``create``: the network must be managed
  (``NETWORK_UNMANAGED [network]``) and the tagged PIF too (``PIF_UNMANAGED [pif]``);
  the host may have no other PIF on the network (``xapi_pif.ml
  assert_no_other_local_pifs``: ``NETWORK_ALREADY_CONNECTED [host, pif]``); no VLAN on
  a bond member (``CANNOT_ADD_VLAN_TO_BOND_SLAVE [pif]``) nor on a VLAN (``PIF_IS_VLAN
  [pif]``, CA-25160); the tag is 0 to 4094 (``VLAN_TAG_INVALID [tag]``, 4095 is
  reserved by 802.1Q); one VLAN per tag and PIF (``PIF_VLAN_EXISTS [device]``). It
  makes the untagged PIF (the tagged one's device, MAC, MTU and metrics; not
  physical; ``VLAN_master_of`` the new VLAN) and plugs it.
* ``destroy``: an orphaned VLAN (its untagged PIF gone) is just removed; the untagged
  PIF may not be the management interface (``PIF_IS_MANAGEMENT_INTERFACE [pif]``) nor
  a physical one (``PIF_IS_PHYSICAL [pif]``); it is unplugged, then the VLAN and the
  PIF are destroyed. The network stays (``network.destroy`` removes it).
* ``ocaml/xapi/xapi_pool.ml`` ``create_VLAN_from_PIF``: a VLAN on every PIF of the
  given PIF's network whose host is enabled; when one fails, those made are destroyed
  and the error is raised. Answers the new untagged PIFs. ``create_VLAN`` does the
  same from a device name, on each host's PIF of that device.
"""

from __future__ import annotations

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import Store
from xsctl.sim.wire import NULL_REF, Row

MAX_TAG = 4094


def _row(store: Store, ref: str, cls: str) -> Row:
    row = store.tables[cls].get(ref)
    if row is None:
        raise XapiFailure("HANDLE_INVALID", cls, ref)
    return row


def assert_no_other_local_pifs(store: Store, host: str, network: str) -> None:
    """xapi_pif.ml: a host reaches a network through one PIF at most."""
    for ref, pif in store.all("PIF").items():
        if pif["network"] == network and pif["host"] == host:
            raise XapiFailure("NETWORK_ALREADY_CONNECTED", host, ref)


def assert_network_managed(store: Store, network: str) -> None:
    if not _row(store, network, "network")["managed"]:
        raise XapiFailure("NETWORK_UNMANAGED", network)


def create_vlan(store: Store, tagged_pif: str, tag: int, network: str) -> str:
    """Check as xapi_vlan.ml does, then make the VLAN and its plugged untagged PIF.
    Called with the store lock held."""
    pif = _row(store, tagged_pif, "PIF")
    assert_network_managed(store, network)
    if not pif["managed"]:
        raise XapiFailure("PIF_UNMANAGED", tagged_pif)
    assert_no_other_local_pifs(store, pif["host"], network)
    if pif["bond_slave_of"] != NULL_REF and store.exists(pif["bond_slave_of"], "Bond"):
        raise XapiFailure("CANNOT_ADD_VLAN_TO_BOND_SLAVE", tagged_pif)
    if int(pif["VLAN"]) >= 0:
        raise XapiFailure("PIF_IS_VLAN", tagged_pif)
    if not 0 <= tag <= MAX_TAG:
        raise XapiFailure("VLAN_TAG_INVALID", str(tag))
    if any(v["tagged_PIF"] == tagged_pif and int(v["tag"]) == tag
           for v in store.all("VLAN").values()):
        raise XapiFailure("PIF_VLAN_EXISTS", pif["device"])
    vlan = store.new_ref()
    untagged = store.create("PIF", {
        "device": pif["device"], "network": network, "host": pif["host"],
        "MAC": pif["MAC"], "MTU": pif["MTU"], "VLAN": tag, "metrics": pif["metrics"],
        "physical": False, "currently_attached": False, "ip_configuration_mode": "None",
        "IP": "", "netmask": "", "gateway": "", "DNS": "", "bond_slave_of": NULL_REF,
        "VLAN_master_of": vlan, "management": False, "other_config": {},
        "disallow_unplug": False, "ipv6_configuration_mode": "None", "IPv6": [],
        "primary_address_type": "IPv4", "managed": True, "properties": {},
        "capabilities": [],
    })
    store.create("VLAN", {"tagged_PIF": tagged_pif, "untagged_PIF": untagged, "tag": tag,
                          "other_config": {}}, ref=vlan)
    # Xapi_pif.plug
    store.update(untagged, {"currently_attached": True})
    return vlan


def destroy_vlan(store: Store, vlan: str) -> None:
    row = _row(store, vlan, "VLAN")
    untagged = row["untagged_PIF"]
    pif = store.tables["PIF"].get(untagged)
    if pif is None:  # an orphaned record
        store.destroy(vlan)
        return
    if pif["management"]:
        raise XapiFailure("PIF_IS_MANAGEMENT_INTERFACE", untagged)
    if int(pif["VLAN"]) < 0:
        raise XapiFailure("PIF_IS_PHYSICAL", untagged)
    store.update(untagged, {"currently_attached": False})
    store.destroy(vlan)
    store.destroy(untagged)


@api("VLAN.create")
def vlan_create(ctx: Context, tagged_PIF: str, tag: int, network: str) -> str:
    ctx.work(0.2)
    with ctx.lock:
        return create_vlan(ctx.store, tagged_PIF, int(tag), network)


@api("VLAN.destroy")
def vlan_destroy(ctx: Context, self: str) -> None:
    with ctx.lock:
        destroy_vlan(ctx.store, self)


def _vlans_on(ctx: Context, pifs: list[str], tag: int, network: str) -> list[str]:
    """A VLAN on each PIF, all or none; the new untagged PIFs."""
    store = ctx.store
    made: list[str] = []
    try:
        for p in pifs:
            made.append(create_vlan(store, p, tag, network))
    except XapiFailure:
        for vlan in made:
            try:
                destroy_vlan(store, vlan)
            except XapiFailure:
                pass
        raise
    return [store.get(v, "VLAN")["untagged_PIF"] for v in made]


@api("pool.create_VLAN_from_PIF")
def pool_create_vlan_from_pif(ctx: Context, pif: str, network: str, VLAN: int) -> list[str]:
    ctx.work(0.3)
    store = ctx.store
    with ctx.lock:
        base = _row(store, pif, "PIF")
        on_network = _row(store, base["network"], "network")["PIFs"]
        hosts = store.all("host")
        live = [p for p in on_network
                if (h := hosts.get(store.get(p, "PIF")["host"])) is not None and h["enabled"]]
        return _vlans_on(ctx, live, int(VLAN), network)


@api("pool.create_VLAN")
def pool_create_vlan(ctx: Context, device: str, network: str, VLAN: int) -> list[str]:
    ctx.work(0.3)
    store = ctx.store
    with ctx.lock:
        _row(store, network, "network")
        pifs = []
        for host in store.all("host"):
            found = [r for r, p in store.all("PIF").items()
                     if p["host"] == host and p["device"] == device and int(p["VLAN"]) < 0]
            if not found:
                raise XapiFailure("PIF_DEVICE_NOT_FOUND")
            pifs.append(found[0])
        return _vlans_on(ctx, pifs, int(VLAN), network)
