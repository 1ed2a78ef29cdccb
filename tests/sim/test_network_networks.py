"""network.create / network.destroy (xapi_network.ml)."""

from __future__ import annotations

from typing import Any

from tests.conftest import vm_ref
from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, jfail


def args(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name_label": "lab", "name_description": "", "MTU": "1500",
                            "other_config": {}}
    base.update(kw)
    return base


def by_bridge(x: Any, bridge: str) -> str:
    return str(next(r for r, n in x.xenapi.network.get_all_records().items()
                    if n["bridge"] == bridge))


def test_create_picks_free_xapi_bridges(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_network.ml create: choose_bridge_name: xapiN not yet used (the demo pool has xapi1)."""
    a = xapi.xenapi.network.create(args())
    b = jrpc("network.create", args(MTU=0))
    assert xapi.xenapi.network.get_bridge(a) == "xapi0"
    assert xapi.xenapi.network.get_bridge(b) == "xapi2"
    assert jrpc("network.get_MTU", b) == 1500  # MTU <= 0 means 1500
    rec = xapi.xenapi.network.get_record(a)
    assert rec["VIFs"] == [] and rec["PIFs"] == [] and rec["allowed_operations"] == []
    assert rec["default_locking_mode"] == "unlocked" and rec["managed"] is True


def test_create_bridge_rules(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_network.ml create: bridge_blacklist, length, BRIDGE_NAME_EXISTS."""
    for bad in ("eth5", "xenbr9", "vif1.0", "tap0", "xapi9", "a-very-long-bridge-name"):
        assert jfail(jrpc, "network.create", args(bridge=bad)) == ["INVALID_VALUE", "bridge", bad]
    ok = xapi.xenapi.network.create(args(bridge="br-lab"))
    assert xapi.xenapi.network.get_bridge(ok) == "br-lab"
    assert fail(xapi.xenapi.network.create, args(bridge="br-lab")) == [
        "BRIDGE_NAME_EXISTS", "br-lab"]


def test_destroy_refuses_attached_vifs_and_pifs(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_network.ml destroy."""
    n0 = by_bridge(xapi, "xenbr0")
    details = fail(xapi.xenapi.network.destroy, n0)
    attached = [v for v in xapi.xenapi.network.get_VIFs(n0)
                if xapi.xenapi.VIF.get_currently_attached(v)]
    assert details[0] == "NETWORK_CONTAINS_VIF" and sorted(details[1:]) == sorted(attached)
    vlan = by_bridge(xapi, "xapi1")
    for vif in xapi.xenapi.network.get_VIFs(vlan):
        if xapi.xenapi.VIF.get_currently_attached(vif):
            xapi.xenapi.VIF.unplug(vif)
    details = jfail(jrpc, "network.destroy", vlan)
    assert details[0] == "NETWORK_CONTAINS_PIF"
    assert sorted(details[1:]) == sorted(xapi.xenapi.network.get_PIFs(vlan))


def test_destroy_system_network(xapi: Any) -> None:
    """xapi_network.ml destroy: CANNOT_DESTROY_SYSTEM_NETWORK."""
    internal = by_bridge(xapi, "xenapi")
    assert fail(xapi.xenapi.network.destroy, internal) == [
        "CANNOT_DESTROY_SYSTEM_NETWORK", internal]


def test_destroy_takes_detached_vifs_along(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_network.ml destroy."""
    n = xapi.xenapi.network.create(args())
    vm = vm_ref(xapi, "web-staging")
    vif = xapi.xenapi.VIF.create({"device": "4", "network": n, "VM": vm, "MAC": "", "MTU": "1500",
                                  "other_config": {}, "qos_algorithm_type": "",
                                  "qos_algorithm_params": {}})
    jrpc("network.destroy", n)
    assert fail(xapi.xenapi.network.get_record, n) == ["HANDLE_INVALID", "network", n]
    assert vif not in xapi.xenapi.VM.get_VIFs(vm)
    assert fail(xapi.xenapi.VIF.get_uuid, vif) == ["HANDLE_INVALID", "VIF", vif]
