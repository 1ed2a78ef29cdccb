"""The settings read from the cache, and the client following the pool when a plan
moves it: a new master, a management interface at a new address. The event feed
must keep going afterwards, against the host's new address."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import wait_for
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.errors import UsageError
from xsctl.xapi.host_settings import pool_settings, settings
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.catalogue import Context
from xsctl.xapi.ops.resolve import resolve_host


def _vm(sim: Simulator, name: str) -> str:
    return next(r for r, v in sim.store.all("VM").items() if v["name_label"] == name)


def test_settings_come_from_the_cache(sim: Simulator) -> None:
    with connect(sim) as c:
        host = resolve_host(c.cache, "xcp-ng-02")
        got = {s.key: s.value for s in settings(c.cache, host)}
        assert got["hostname"] == "xcp-ng-02"
        assert got["management"].startswith("eth0 (") and "Static 10.0.0.12/255.255.255.0" \
            in got["management"]
        assert got["dns"] == "10.0.0.1"
        # xapi 24.19 has no NTP or timezone API: said, not guessed
        assert got["ntp"] == got["timezone"] == "not readable through this xapi"
        pool = {s.key: s.value for s in pool_settings(c.cache)}
        assert pool["name_label"] == "Demo pool" and pool["ha_enabled"] == "off"
        assert pool["master"] == "xcp-ng-01 (127.0.0.1)"
        assert pool["default_SR"] == "NFS storage"


def _run(c: object, op_id: str, spec: str, **values: object) -> None:
    from xsctl.xapi.client import Client

    assert isinstance(c, Client)
    op = catalogue.get(op_id)
    ctx = Context(c.cache, datetime.now(UTC))
    obj = op.kind.load(c.cache, op.kind.resolve(c.cache, spec))
    c.run(catalogue.prepare(op, ctx, obj, values))


def test_the_client_follows_a_new_master(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        _run(c, "host.designate_master", "xcp-ng-02")
        wait_for(lambda: sim.master_address() == "127.0.0.2")
        vm = _vm(sim, "web-staging")
        sim.store.update(vm, {"name_label": "after-new-master"})
        wait_for(lambda: c.cache.get("vm", vm)["name_label"] == "after-new-master", timeout=15)
        assert c.conn.endpoint.host == "127.0.0.2"
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0


def test_the_client_follows_the_management_interface(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        eth1 = next(r for r, p in sim.store.all("PIF").items()
                    if p["host"] == sim.master_ref() and p["device"] == "eth1")
        _run(c, "host.management", "xcp-ng-01", pif=eth1, mode="Static", ip="127.0.0.9",
             netmask="255.0.0.0", gateway=None)
        assert c.conn.endpoint.host == "127.0.0.9"
        assert sim.master_address() == "127.0.0.9"
        vm = _vm(sim, "web-staging")
        sim.store.update(vm, {"name_label": "after-the-move"})
        wait_for(lambda: c.cache.get("vm", vm)["name_label"] == "after-the-move", timeout=15)
        assert c.conn.call("host.get_address", sim.master_ref()) == "127.0.0.9"
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0


def test_ntp_and_timezone_use_the_api_where_the_host_has_it(sim: Simulator) -> None:
    """A later xapi sends host.ntp_mode, ntp_custom_servers and timezone (the fields
    of host.set_ntp_custom_servers and host.set_timezone): the settings show them and
    the plans use those calls. The simulator is 24.19, so the record arrives as such
    an xapi's event would."""
    with connect(sim) as c:
        host = resolve_host(c.cache, "xcp-ng-02")
        ctx = Context(c.cache, datetime.now(UTC))
        ntp, tz = catalogue.get("host.set_ntp"), catalogue.get("host.set_timezone")
        obj = ntp.kind.load(c.cache, host)
        assert catalogue.why_not(ntp, c.cache, obj) is not None
        record = {**c.cache.get("host", host), "ntp_mode": "Factory",
                  "ntp_custom_servers": [], "timezone": "UTC"}
        c.cache.apply([{"class": "host", "ref": host, "operation": "mod", "snapshot": record}])
        got = {s.key: s.value for s in settings(c.cache, host)}
        assert (got["ntp"], got["timezone"]) == ("Factory", "UTC")
        obj = ntp.kind.load(c.cache, host)
        plan = catalogue.prepare(ntp, ctx, obj, {"ntp": "0.pool.ntp.org, 10.0.0.5"})
        assert plan.steps() == [
            "host.set_ntp_custom_servers(xcp-ng-02, ['0.pool.ntp.org', '10.0.0.5'])",
            "host.set_ntp_mode(xcp-ng-02, 'Custom')"]
        assert plan.xe[0].endswith("ntp-custom-servers=0.pool.ntp.org,10.0.0.5")
        plan = catalogue.prepare(tz, ctx, obj, {"timezone": "Europe/London"})
        assert plan.steps() == ["host.set_timezone(xcp-ng-02, 'Europe/London')"]
        assert plan.xe[0].endswith("timezone=Europe/London")
        for bad in ("../etc/passwd", "Europe London", ""):
            with pytest.raises(UsageError, match=r"^Timezone: "):
                catalogue.prepare(tz, ctx, obj, {"timezone": bad})


def test_the_client_follows_a_management_interface_on_dhcp(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        eth1 = next(r for r, p in sim.store.all("PIF").items()
                    if p["host"] == sim.master_ref() and p["device"] == "eth1")
        _run(c, "host.management", "xcp-ng-01", pif=eth1, mode="DHCP", ip=None,
             netmask=None, gateway=None)
        lease = sim.store.get(eth1, "PIF")["IP"]
        assert sim.master_address() == lease and c.conn.endpoint.host == lease
        vm = _vm(sim, "web-staging")
        sim.store.update(vm, {"name_label": "after-dhcp"})
        wait_for(lambda: c.cache.get("vm", vm)["name_label"] == "after-dhcp", timeout=15)
