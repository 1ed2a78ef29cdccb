"""pool.*: designate_new_master and allowed_operations (xapi_pool.ml,
xapi_pool_helpers.ml, message_forwarding.ml)."""

from __future__ import annotations

from typing import Any

import XenAPI

from tests.conftest import wait_for
from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, hosts_by_address
from xsctl.sim import Simulator


def test_allowed_operations_without_ha(xapi: Any) -> None:
    """xapi_pool_helpers.ml: with HA off only ha_disable is refused."""
    pool = xapi.xenapi.pool.get_all()[0]
    ops = set(xapi.xenapi.pool.get_allowed_operations(pool))
    assert "ha_disable" not in ops
    assert {"ha_enable", "designate_new_master", "cluster_create", "eject"} <= ops


def test_designate_new_master(sim: Simulator, xapi: Any) -> None:
    """The chosen member becomes master; the old master answers HOST_IS_SLAVE with
    the new address; the new master raises POOL_MASTER_TRANSITION about itself
    (xapi_pool_transition.ml consider_sending_alert)."""
    hosts = hosts_by_address(xapi)
    old, new = hosts[0], hosts[1]
    pool = xapi.xenapi.pool.get_all()[0]
    xapi.xenapi.pool.designate_new_master(new[0])
    wait_for(lambda: sim.master_ref() == new[0])
    s = XenAPI.Session(sim.url_for(new[1]["address"]), ignore_ssl=True)
    s.xenapi.login_with_password(sim.user, sim.password, "1.0", "xsctl-tests")
    try:
        assert s.xenapi.pool.get_master(pool) == new[0]
        assert s.xenapi.pool.get_current_operations(pool) == {}
        msgs = s.xenapi.message.get_all_records().values()
        assert any(m["name"] == "POOL_MASTER_TRANSITION" and m["obj_uuid"] == new[1]["uuid"]
                   and m["cls"] == "Host" and m["priority"] == "4" for m in msgs)
    finally:
        s.xenapi.session.logout()
    other = XenAPI.Session(sim.url_for(old[1]["address"]), ignore_ssl=True)
    assert fail(other.xenapi.login_with_password, sim.user, sim.password) == [
        "HOST_IS_SLAVE", new[1]["address"]]


def test_designate_the_current_master_does_nothing(sim: Simulator, jrpc: JsonRpcClient) -> None:
    """xapi_pool.ml designate_new_master: nothing to do on the master."""
    master = sim.master_ref()
    jrpc("pool.designate_new_master", master)
    assert sim.master_ref() == master


def test_designate_with_ha_enabled(sim: Simulator, xapi: Any) -> None:
    """xapi_pool.ml designate_new_master: HA_IS_ENABLED; xapi_pool_helpers.ml ha ops."""
    pool = xapi.xenapi.pool.get_all()[0]
    with sim.store.lock:
        sim.store.update(pool, {"ha_enabled": True})
    member = hosts_by_address(xapi)[2][0]
    assert fail(xapi.xenapi.pool.designate_new_master, member) == ["HA_IS_ENABLED"]
    ops = set(xapi.xenapi.pool.get_allowed_operations(pool))
    assert "ha_enable" not in ops and "ha_disable" in ops


def test_designate_while_in_progress(sim: Simulator, xapi: Any) -> None:
    """xapi_pool_helpers.ml compute_valid_operations: A blocking pool operation in progress refuses another with its own error."""
    pool = xapi.xenapi.pool.get_all()[0]
    with sim.store.lock:
        sim.store.set_map_key(pool, "current_operations", "OpaqueRef:t", "designate_new_master")
    assert xapi.xenapi.pool.get_allowed_operations(pool) == []
    member = hosts_by_address(xapi)[2][0]
    assert fail(xapi.xenapi.pool.designate_new_master, member) == [
        "DESIGNATE_NEW_MASTER_IN_PROGRESS"]
