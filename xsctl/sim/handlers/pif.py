"""PIF.* behaviour: reconfigure_ip, and the management interface's move.

From xapi 24.19 (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_pif.ml`` ``reconfigure_ip``: an unmanaged PIF is refused
  (``PIF_UNMANAGED [pif]``); unless only the DNS servers of an unchanged static
  configuration change, an attached PIF is refused while HA is on (``HA_IS_ENABLED``)
  or the redo log is (``REDO_LOG_IS_ENABLED``); in Static mode the IP and the netmask
  must be IPv4 addresses, and every non-empty IP, netmask and gateway too
  (``helpers.ml assert_is_valid_ip``: ``INVALID_IP_ADDRESS_SPECIFIED [field]``; a
  netmask is only checked as an address); of the comma-separated DNS servers only the
  IPv4 ones are kept (``restrict_to``); the management PIF cannot be set to None
  (``PIF_IS_MANAGEMENT_IFACE [pif]``). An attached PIF is brought up again with the
  new configuration; in DHCP mode its address fields are refreshed from the lease.
* ``ocaml/xapi/xapi_mgmt_iface.ml`` ``on_dom0_networking_change``: when the
  management interface's address changes, ``host.address`` follows it, and xapi
  listens there instead (the simulator moves the host's listener).
"""

from __future__ import annotations

import ipaddress

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import Store
from xsctl.sim.wire import Row


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def assert_ipv4(field: str, value: str) -> None:
    if not is_ipv4(value):
        raise XapiFailure("INVALID_IP_ADDRESS_SPECIFIED", field)


def _pool(store: Store) -> Row:
    return next(iter(store.all("pool").values()))


def _dhcp_lease(store: Store, pif: str, row: Row) -> dict[str, str]:
    """What the simulated DHCP server hands out: the address the interface already
    has (a lease is renewed), else one by the PIF's place: on loopback where the
    simulated hosts listen there (so a host moved to it can still be reached), else
    from 10.0.0.100 on."""
    if row["IP"]:
        return {"IP": str(row["IP"]), "netmask": str(row["netmask"] or "255.255.255.0"),
                "gateway": str(row["gateway"]), "DNS": str(row["DNS"])}
    n = 100 + sorted(store.all("PIF")).index(pif) % 150
    host = store.tables["host"].get(row["host"])
    if host is not None and str(host["address"]).startswith("127."):
        return {"IP": f"127.0.0.{n}", "netmask": "255.0.0.0", "gateway": "", "DNS": ""}
    return {"IP": f"10.0.0.{n}", "netmask": "255.255.255.0", "gateway": "10.0.0.1",
            "DNS": "10.0.0.1"}


@api("PIF.reconfigure_ip")
def reconfigure_ip(ctx: Context, self: str, mode: str, IP: str, netmask: str,
                   gateway: str, DNS: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = store.get(self, "PIF")
        if not row["managed"]:
            raise XapiFailure("PIF_UNMANAGED", self)
        only_dns = (mode == "Static" and row["ip_configuration_mode"] == mode
                    and row["IP"] == IP and row["netmask"] == netmask
                    and row["gateway"] == gateway)
        if not only_dns and row["currently_attached"]:
            pool = _pool(store)
            if pool["ha_enabled"]:
                raise XapiFailure("HA_IS_ENABLED")
            if pool["redo_log_enabled"]:
                raise XapiFailure("REDO_LOG_IS_ENABLED")
        if mode == "Static":
            assert_ipv4("IP", IP)
            assert_ipv4("netmask", netmask)
        for field, value in (("IP", IP), ("netmask", netmask), ("gateway", gateway)):
            if value:
                assert_ipv4(field, value)
        dns = [a for a in DNS.split(",") if a and is_ipv4(a)]
        if row["management"] and mode == "None" and row["primary_address_type"] == "IPv4":
            raise XapiFailure("PIF_IS_MANAGEMENT_IFACE", self)
        # the IPv6 servers it had stay
        kept = [a for a in str(row["DNS"]).split(",") if a and ":" in a]
        changes = {"ip_configuration_mode": mode, "IP": IP, "netmask": netmask,
                   "gateway": gateway, "DNS": ",".join(dns + kept)}
        if mode == "DHCP" and row["currently_attached"]:
            changes.update(_dhcp_lease(store, self, row))
        store.update(self, changes)
        host = str(row["host"])
        moved = row["management"] and row["currently_attached"] and changes["IP"] != row["IP"]
        address = str(changes["IP"])
    if moved and address:
        ctx.sim.move_host(host, address)
