"""PIF.reconfigure_ip (xapi_pif.ml), host.management_reconfigure and
host.set_hostname_live (xapi_host.ml): xapi 24.19's checks and errors, and the host's
address moving with its management interface."""

from __future__ import annotations

from typing import Any

import XenAPI

from tests.conftest import wait_for
from tests.sim.test_host_support import fail
from xsctl.sim import Simulator


def _master_pifs(x: Any) -> tuple[str, dict[str, str]]:
    master = x.pool.get_master(x.pool.get_all()[0])
    pifs = {x.PIF.get_device(p) + ("" if x.PIF.get_VLAN(p) == "-1" else "." + x.PIF.get_VLAN(p)): p
            for p in x.PIF.get_all() if x.PIF.get_host(p) == master}
    return master, pifs


def test_reconfigure_ip_checks_addresses_and_changes_nothing_when_refused(xapi: Any) -> None:
    x = xapi.xenapi
    _, pifs = _master_pifs(x)
    eth1 = pifs["eth1"]
    before = x.PIF.get_record(eth1)
    assert fail(x.PIF.reconfigure_ip, eth1, "Static", "10.0.0.300", "255.255.255.0", "", "") \
        == ["INVALID_IP_ADDRESS_SPECIFIED", "IP"]
    assert fail(x.PIF.reconfigure_ip, eth1, "Static", "10.0.0.30", "", "", "") \
        == ["INVALID_IP_ADDRESS_SPECIFIED", "netmask"]
    assert fail(x.PIF.reconfigure_ip, eth1, "DHCP", "", "", "gw", "") \
        == ["INVALID_IP_ADDRESS_SPECIFIED", "gateway"]
    mgmt = pifs["eth0"]
    assert fail(x.PIF.reconfigure_ip, mgmt, "None", "", "", "", "") \
        == ["PIF_IS_MANAGEMENT_IFACE", mgmt]
    assert x.PIF.get_record(eth1) == before


def test_reconfigure_ip_keeps_only_ipv4_dns_and_refuses_under_ha(sim: Simulator,
                                                                 xapi: Any) -> None:
    x = xapi.xenapi
    _, pifs = _master_pifs(x)
    eth1 = pifs["eth1"]
    x.PIF.reconfigure_ip(eth1, "Static", "192.0.2.5", "255.255.255.0", "", "1.1.1.1,bad,8.8.8.8")
    r = x.PIF.get_record(eth1)
    assert (r["ip_configuration_mode"], r["IP"], r["DNS"]) == ("Static", "192.0.2.5",
                                                               "1.1.1.1,8.8.8.8")
    pool = x.pool.get_all()[0]
    sim.store.update(pool, {"ha_enabled": True})
    assert fail(x.PIF.reconfigure_ip, eth1, "Static", "192.0.2.6", "255.255.255.0", "", "") \
        == ["HA_IS_ENABLED"]
    # only the DNS servers of the same static configuration: allowed under HA
    x.PIF.reconfigure_ip(eth1, "Static", "192.0.2.5", "255.255.255.0", "", "9.9.9.9")
    assert x.PIF.get_DNS(eth1) == "9.9.9.9"


def test_set_hostname_live_checks_the_name(xapi: Any) -> None:
    x = xapi.xenapi
    master, _ = _master_pifs(x)
    for bad, why in (("", "hostname empty"), ("-lab", "hostname contains invalid characters"),
                     ("lab_1", "hostname contains invalid characters"),
                     ("a" * 256, "hostname is too long")):
        assert fail(x.host.set_hostname_live, master, bad) == ["HOST_NAME_INVALID", why]
    assert x.host.get_hostname(master) == "xcp-ng-01"
    x.host.set_hostname_live(master, "lab-01.example")
    assert x.host.get_hostname(master) == "lab-01.example"
    dom0 = x.host.get_control_domain(master)
    assert x.VM.get_name_label(dom0) == "Control domain on host: lab-01.example"


def test_management_reconfigure_moves_the_host_and_its_listener(sim: Simulator,
                                                                 xapi: Any) -> None:
    x = xapi.xenapi
    master, pifs = _master_pifs(x)
    eth1 = pifs["eth1"]
    assert fail(x.host.management_reconfigure, eth1) == ["PIF_HAS_NO_NETWORK_CONFIGURATION", eth1]
    x.PIF.reconfigure_ip(eth1, "Static", "127.0.0.9", "255.0.0.0", "", "")
    assert x.host.get_address(master) == "127.0.0.1"  # not the management PIF yet
    x.host.management_reconfigure(eth1)
    assert x.PIF.get_management(eth1) and not x.PIF.get_management(pifs["eth0"])
    wait_for(lambda: any(lst.server.server_address[0] == "127.0.0.9"
                         for lst in sim.listeners[master]))
    s = XenAPI.Session(sim.url_for("127.0.0.9"), ignore_ssl=True)
    s.xenapi.login_with_password(sim.user, sim.password, "1.0", "xsctl-tests")
    try:
        assert s.xenapi.host.get_address(master) == "127.0.0.9"
        assert s.xenapi.host.get_management_interface(master) == eth1
    finally:
        s.xenapi.session.logout()
