"""VLAN.create/destroy, pool.create_VLAN(_from_PIF) and Bond.create/destroy
(xapi_vlan.ml, xapi_pool.ml, xapi_bond.ml): what they make and each refusal."""

from __future__ import annotations

from typing import Any

from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, jfail


def net(x: Any, bridge: str) -> str:
    return str(next(r for r, n in x.xenapi.network.get_all_records().items()
                    if n["bridge"] == bridge))


def new_net(x: Any, name: str = "n") -> str:
    return str(x.xenapi.network.create({"name_label": name, "name_description": "",
                                        "MTU": "1500", "other_config": {}}))


def pifs(x: Any, bridge: str) -> list[str]:
    recs = x.xenapi.PIF.get_all_records()
    return sorted(x.xenapi.network.get_PIFs(net(x, bridge)),
                  key=lambda p: recs[p]["host"])


def test_vlan_from_pif_on_every_host_and_destroy(xapi: Any, jrpc: JsonRpcClient) -> None:
    n = new_net(xapi)
    untagged = xapi.xenapi.pool.create_VLAN_from_PIF(pifs(xapi, "xenbr1")[0], n, "200")
    assert len(untagged) == 3
    for p in untagged:
        rec = xapi.xenapi.PIF.get_record(p)
        assert rec["VLAN"] == "200" and rec["network"] == n and rec["currently_attached"]
        assert rec["physical"] is False and rec["device"] == "eth1"
        vlan = rec["VLAN_master_of"]
        assert xapi.xenapi.VLAN.get_untagged_PIF(vlan) == p
        tagged = xapi.xenapi.VLAN.get_tagged_PIF(vlan)
        assert vlan in xapi.xenapi.PIF.get_VLAN_slave_of(tagged)
    for p in untagged:
        jrpc("VLAN.destroy", xapi.xenapi.PIF.get_VLAN_master_of(p))
    assert xapi.xenapi.network.get_PIFs(n) == []
    assert fail(xapi.xenapi.PIF.get_uuid, untagged[0])[0] == "HANDLE_INVALID"


def test_vlan_refusals(xapi: Any, jrpc: JsonRpcClient) -> None:
    eth0 = pifs(xapi, "xenbr0")[0]
    dmz = pifs(xapi, "xapi1")[0]
    n = new_net(xapi)
    assert fail(xapi.xenapi.VLAN.create, eth0, "4095", n) == ["VLAN_TAG_INVALID", "4095"]
    assert jfail(jrpc, "VLAN.create", eth0, -1, n) == ["VLAN_TAG_INVALID", "-1"]
    assert fail(xapi.xenapi.VLAN.create, eth0, "100", n) == ["PIF_VLAN_EXISTS", "eth0"]
    assert fail(xapi.xenapi.VLAN.create, dmz, "7", n) == ["PIF_IS_VLAN", dmz]
    host = xapi.xenapi.PIF.get_host(eth0)
    assert fail(xapi.xenapi.VLAN.create, eth0, "7", net(xapi, "xenbr1")) == [
        "NETWORK_ALREADY_CONNECTED", host, pifs(xapi, "xenbr1")[0]]
    # one host failing undoes the others: nothing is left
    before = len(xapi.xenapi.VLAN.get_all())
    assert fail(xapi.xenapi.pool.create_VLAN_from_PIF, eth0, n, "100")[0] == "PIF_VLAN_EXISTS"
    assert len(xapi.xenapi.VLAN.get_all()) == before
    assert xapi.xenapi.network.get_PIFs(n) == []


def test_pool_create_vlan_by_device(xapi: Any) -> None:
    n = new_net(xapi)
    made = xapi.xenapi.pool.create_VLAN("eth1", n, "33")
    assert len(made) == 3
    assert fail(xapi.xenapi.pool.create_VLAN, "eth9", new_net(xapi, "m"), "33") == [
        "PIF_DEVICE_NOT_FOUND"]


def test_bond_create_moves_management_vlans_and_vifs_then_destroy(xapi: Any) -> None:
    eth0, eth1 = pifs(xapi, "xenbr0")[0], pifs(xapi, "xenbr1")[0]
    host = xapi.xenapi.PIF.get_host(eth0)
    ip = xapi.xenapi.PIF.get_IP(eth0)
    n = new_net(xapi, "bond")
    bond = xapi.xenapi.Bond.create(n, [eth0, eth1, eth0], "", "lacp", {})
    rec = xapi.xenapi.Bond.get_record(bond)
    assert sorted(rec["slaves"]) == sorted([eth0, eth1]) and rec["primary_slave"] == eth0
    assert rec["properties"]["hashing_algorithm"] == "tcpudp_ports"
    master = xapi.xenapi.PIF.get_record(rec["master"])
    assert master["device"] == "bond0" and master["management"] and master["IP"] == ip
    assert master["MAC"] == xapi.xenapi.PIF.get_MAC(eth0) and master["currently_attached"]
    assert not xapi.xenapi.PIF.get_management(eth0)
    assert xapi.xenapi.PIF.get_bond_slave_of(eth1) == bond
    # the DMZ VLAN of this host now sits on the bond
    vlans = [v for v, r in xapi.xenapi.VLAN.get_all_records().items()
             if xapi.xenapi.PIF.get_host(r["untagged_PIF"]) == host]
    assert all(xapi.xenapi.VLAN.get_tagged_PIF(v) == rec["master"] for v in vlans)
    # VIFs of the VMs resident on the host moved to the bond's network
    running = [v for v, r in xapi.xenapi.VIF.get_all_records().items()
               if r["network"] == net(xapi, "xenbr0")
               and xapi.xenapi.VM.get_resident_on(r["VM"]) == host]
    assert running == []
    xapi.xenapi.Bond.destroy(bond)
    assert xapi.xenapi.PIF.get_management(eth0) and xapi.xenapi.PIF.get_IP(eth0) == ip
    assert xapi.xenapi.PIF.get_bond_slave_of(eth1) == "OpaqueRef:NULL"
    assert all(xapi.xenapi.VLAN.get_tagged_PIF(v) == eth0 for v in vlans)
    assert xapi.xenapi.network.get_PIFs(n) == []


def test_bond_refusals(xapi: Any, jrpc: JsonRpcClient) -> None:
    e0 = pifs(xapi, "xenbr0")
    e1 = pifs(xapi, "xenbr1")
    dmz = pifs(xapi, "xapi1")[0]
    n = new_net(xapi)
    assert jfail(jrpc, "Bond.create", n, [], "", "balance-slb", {}) == [
        "PIF_BOND_NEEDS_MORE_MEMBERS"]
    assert fail(xapi.xenapi.Bond.create, n, [e1[0], dmz], "", "balance-slb", {}) == [
        "PIF_VLAN_EXISTS", "eth0"]
    assert fail(xapi.xenapi.Bond.create, n, [e1[0], e1[1]], "", "balance-slb", {}) == [
        "PIF_CANNOT_BOND_CROSS_HOST"]
    assert fail(xapi.xenapi.Bond.create, n, [e0[0], e1[0]], "zz", "balance-slb", {}) == [
        "MAC_INVALID", "zz"]
    assert fail(xapi.xenapi.Bond.create, n, [e0[0], e1[0]], "", "lacp",
                {"lacp-time": "never"}) == ["INVALID_VALUE", "properties", "lacp-time: never"]
    host = xapi.xenapi.PIF.get_host(e0[0])
    assert fail(xapi.xenapi.Bond.create, net(xapi, "xenbr1"), [e0[0]], "", "balance-slb",
                {}) == ["NETWORK_ALREADY_CONNECTED", host, e1[0]]
    bond = xapi.xenapi.Bond.create(n, [e0[0], e1[0]], "", "active-backup", {})
    assert fail(xapi.xenapi.Bond.create, new_net(xapi, "m"), [e1[0], e0[0]], "",
                "balance-slb", {}) == ["PIF_ALREADY_BONDED", e1[0]]
    xapi.xenapi.Bond.set_mode(bond, "lacp")
    assert xapi.xenapi.Bond.get_properties(bond)["lacp-time"] == "slow"
