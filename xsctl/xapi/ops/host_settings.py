"""A host's settings as xsconsole sets them, and a new pool master.

``xsctl host set HOST --hostname/--dns/--ntp/--timezone/--pif ...`` (one setting at a
time: each is its own plan), ``xsctl host designate-master HOST`` (also ``xsctl pool
designate-master HOST``). What each reads and where xapi keeps it is in
xsctl/xapi/host_settings.py; the checks are xapi's (xapi_host.ml set_hostname_live,
xapi_pif.ml reconfigure_ip, xapi_host.ml management_reconfigure, xapi_pool.ml
designate_new_master), made before anything is sent.
"""

from __future__ import annotations

import re
from typing import Any

from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.host_settings import (
    NO_NTP_API,
    NO_TIMEZONE_API,
    check_hostname,
    check_ipv4,
    check_netmask,
    check_servers,
    has_ntp_api,
    has_timezone_api,
    management_pif,
    pif_name,
    pifs_of,
    vlan_of,
)
from xsctl.xapi.models import NULL, Host, Pool
from xsctl.xapi.ops.base import Call, Plan, xe
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Impact,
    Operation,
    Param,
    ParamKind,
    Refused,
    declare,
)
from xsctl.xapi.ops.host import HOST
from xsctl.xapi.session import Connection
from xsctl.xapi.text import printable


def _record(cache: Cache, host: Host) -> Record:
    return cache.get("host", host.ref) or {}


def _names(cache: Cache, host: Host) -> dict[str, str]:
    names = {host.ref: host.name_label or host.address}
    for ref, p in pifs_of(cache, host.ref):
        vlan = vlan_of(p)
        names[ref] = printable(str(p.get("device", ""))) + (f".{vlan}" if vlan >= 0 else "")
    return names


# ------------------------------------------------------------------ hostname


def set_hostname(cache: Cache, host: Host, hostname: str) -> Plan:
    name = check_hostname(hostname)
    return Plan(
        title=f"Set the hostname of {host.name_label} to {name}", action="host.set_hostname",
        targets=(host.ref,), calls=(Call("host.set_hostname_live", (host.ref, name)),),
        xe=(xe("host-set-hostname-live", host_uuid=host.uuid, host_name=name),),
        names=_names(cache, host),
        notes=("The host's own name (dom0's hostname); its name in the pool stays "
               f"{host.name_label}.",))


# ------------------------------------------------------------------ DNS


def _dns_when(cache: Cache, host: Any) -> str | None:
    mgmt = management_pif(cache, host.ref)
    if mgmt is None:
        return "it has no management interface"
    if mgmt[1].get("ip_configuration_mode") != "Static":
        return ("it takes its management address from DHCP, which gives the DNS "
                "servers: give it a static address to choose them")
    return None


def set_dns(cache: Cache, host: Host, dns: str) -> Plan:
    why = _dns_when(cache, host)
    if why is not None:
        raise Refused(why)
    servers = check_servers("DNS servers", dns)
    if not servers:
        raise UsageError("DNS servers: give one address at least")
    mgmt = management_pif(cache, host.ref)
    assert mgmt is not None
    ref, p = mgmt
    ip, mask, gw = (str(p.get(k, "")) for k in ("IP", "netmask", "gateway"))
    value = ",".join(servers)
    return Plan(
        title=f"Set the DNS servers of {host.name_label} to {', '.join(servers)}",
        action="host.set_dns", targets=(host.ref,),
        # xapi_pif.ml: the same static address with other DNS servers only
        calls=(Call("PIF.reconfigure_ip", (ref, "Static", ip, mask, gw, value)),),
        xe=(xe("pif-reconfigure-ip", uuid=p.get("uuid", ""), mode="static", IP=ip,
               netmask=mask, gateway=gw, DNS=value),),
        names=_names(cache, host),
        notes=("The management interface keeps its address; only its DNS servers change.",))


# ------------------------------------------------------------------ NTP and timezone


def _ntp_when(cache: Cache, host: Any) -> str | None:
    return None if has_ntp_api(_record(cache, host)) else NO_NTP_API


def set_ntp(cache: Cache, host: Host, ntp: str) -> Plan:
    why = _ntp_when(cache, host)
    if why is not None:
        raise Refused(why)
    servers = [s for s in ntp.replace(",", " ").split() if s]
    if not servers:
        raise UsageError("NTP servers: give one server at least")
    for s in servers:
        if not re.fullmatch(r"[A-Za-z0-9.:-]{1,255}", s):
            raise UsageError(f"NTP servers: {s!r} is not a host name or address")
    return Plan(
        title=f"Set the NTP servers of {host.name_label} to {', '.join(servers)}",
        action="host.set_ntp", targets=(host.ref,),
        calls=(Call("host.set_ntp_custom_servers", (host.ref, servers)),
               Call("host.set_ntp_mode", (host.ref, "Custom"))),
        xe=(xe("host-param-set", uuid=host.uuid, ntp_custom_servers=",".join(servers)),
            xe("host-param-set", uuid=host.uuid, ntp_mode="Custom")),
        names=_names(cache, host))


def _timezone_when(cache: Cache, host: Any) -> str | None:
    return None if has_timezone_api(_record(cache, host)) else NO_TIMEZONE_API


def set_timezone(cache: Cache, host: Host, timezone: str) -> Plan:
    why = _timezone_when(cache, host)
    if why is not None:
        raise Refused(why)
    tz = timezone.strip()
    # IANA names: Europe/London, America/Argentina/Buenos_Aires, UTC, Etc/GMT+5
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*", tz) or ".." in tz:
        raise UsageError(f"Timezone: {tz!r} is not a timezone name (as Europe/London)")
    return Plan(
        title=f"Set the timezone of {host.name_label} to {tz}", action="host.set_timezone",
        targets=(host.ref,), calls=(Call("host.set_timezone", (host.ref, tz)),),
        xe=(xe("host-param-set", uuid=host.uuid, timezone=tz),), names=_names(cache, host))


# ------------------------------------------------------------------ management interface


def _pif_choices(ctx: Context, host: Any) -> list[Choice]:
    out = []
    for ref, p in pifs_of(ctx.cache, host.ref):
        why = None
        if not p.get("managed", True):
            why = "not managed by xapi"
        elif str(p.get("bond_slave_of", NULL)) != NULL:
            why = "it is in a bond: pick the bond"
        detail = "management" if p.get("management") else ""
        out.append(Choice(ref, pif_name(ctx.cache, p), detail, why))
    return out


def _resolve_pif(ctx: Context, host: Any, text: str) -> str:
    """``eth1``, ``eth0.100`` (a VLAN), or a PIF's UUID."""
    t = text.strip()
    device, _, vlan = t.partition(".")
    for ref, p in pifs_of(ctx.cache, host.ref):
        v = vlan_of(p)
        if p.get("uuid") == t or (p.get("device") == device
                                  and (str(v) == vlan if vlan else v < 0)):
            return ref
    raise UsageError(f"--pif: {host.name_label} has no interface {t!r} "
                     "(eth1, eth0.100 for a VLAN, or a PIF's UUID)")


def _mode_choices(ctx: Context, host: Any) -> list[Choice]:
    return [Choice("DHCP", "DHCP", "the address comes from a DHCP server"),
            Choice("Static", "Static", "an address, netmask and gateway you give")]


def _resolve_mode(ctx: Context, host: Any, text: str) -> str:
    for m in ("DHCP", "Static"):
        if text.strip().lower() == m.lower():
            return m
    raise UsageError(f"--mode: dhcp or static (not {text!r})")


def _current(ctx: Context, host: Any, field: str) -> str:
    mgmt = management_pif(ctx.cache, host.ref)
    return str(mgmt[1].get(field, "")) if mgmt else ""


def management(cache: Cache, host: Host, pif: str, mode: str, ip: str | None,
               netmask: str | None, gateway: str | None) -> Plan:
    p = cache.get("pif", pif)
    if p is None or p.get("host") != host.ref:
        raise UsageError(f"that interface is not one of {host.name_label}'s")
    if str(p.get("bond_slave_of", NULL)) != NULL:
        raise Refused(f"{pif_name(cache, p)} is in a bond: pick the bond")
    current = management_pif(cache, host.ref)
    names = _names(cache, host)
    dns = str(current[1].get("DNS", "")) if current else ""
    if mode == "Static":
        if not ip:
            raise UsageError("Static needs --ip ADDRESS and --netmask MASK")
        address = check_ipv4("IP address", ip)
        mask = check_netmask(netmask or "")
        gw = check_ipv4("Gateway", gateway) if gateway and gateway.strip() else ""
        call = Call("PIF.reconfigure_ip", (pif, "Static", address, mask, gw, dns))
        line = xe("pif-reconfigure-ip", uuid=p.get("uuid", ""), mode="static", IP=address,
                  netmask=mask, gateway=gw or None, DNS=dns or None)
        where = address
    else:
        address = ""
        call = Call("PIF.reconfigure_ip", (pif, "DHCP", "", "", "", ""))
        line = xe("pif-reconfigure-ip", uuid=p.get("uuid", ""), mode="dhcp")
        where = "the address DHCP gives"
    calls = [call]
    lines = [line]
    moving = current is None or current[0] != pif
    if moving:
        if mode == "DHCP":
            # the address the lease gave, read while the old address still answers
            calls.append(Call("PIF.get_IP", (pif,)))
        calls.append(Call("host.management_reconfigure", (pif,)))
        lines.append(xe("host-management-reconfigure", pif_uuid=p.get("uuid", "")))
    changes_address = moving or address != str(p.get("IP", "")) or mode == "DHCP"
    pool = Pool.of(cache)
    here = pool is not None and pool.master == host.ref
    warnings: list[str] = []
    notes: list[str] = []
    if changes_address:
        who = "this connection" if here else f"xapi on {host.name_label}"
        warnings.append(f"{host.name_label}'s management interface moves to "
                        f"{pif_name(cache, p)} at {where}: {who} moves with it, and a "
                        "wrong address leaves the host reachable only at its console.")
    if mode == "DHCP":
        notes.append("The address, netmask, gateway and DNS servers come from DHCP.")

    def follow(conn: Connection, results: list[Any]) -> None:
        """The client follows the master to its new address (a member's is read
        again from the cache's next event)."""
        if not here:
            return
        target = address or (str(results[1]) if moving and mode == "DHCP" else "")
        if not target:
            # the management PIF itself went to DHCP: its address went with the call
            # that set it; read where it is now, or leave it to the connection's own
            # recovery (the pool's members name the master)
            try:
                target = str(conn.call("PIF.get_IP", pif))
            except XsctlError:
                return
        if target:
            conn.follow_address(target)

    return Plan(
        title=f"Management interface of {host.name_label}: {pif_name(cache, p)}, "
              + (f"static {address}" if mode == "Static" else "DHCP"),
        action="host.management", targets=(host.ref,), calls=tuple(calls), xe=tuple(lines),
        names=names, warnings=tuple(warnings), notes=tuple(notes),
        then=follow if changes_address else None)


# ------------------------------------------------------------------ a new master


def _master_when(cache: Cache, host: Any) -> str | None:
    if host.is_master:
        return "it is the pool master already"
    if not host.live:
        return "it is not responding"
    pool = Pool.of(cache)
    if pool is not None and (cache.get("pool", pool.ref) or {}).get("ha_enabled"):
        # xapi_pool.ml designate_new_master: HA_IS_ENABLED
        return "HA is on: disable HA first"
    return None


def designate_master(cache: Cache, host: Host) -> Plan:
    pool = Pool.of(cache)
    old = Host.get(cache, pool.master) if pool else None
    was = f"{old.name_label} ({old.address})" if old else "the master"
    return Plan(
        title=f"Make {host.name_label} the pool master", action="host.designate_master",
        targets=(host.ref,), calls=(Call("pool.designate_new_master", (host.ref,),
                                         use_async=True),),
        xe=(xe("pool-designate-new-master", host_uuid=host.uuid),),
        names=_names(cache, host),
        warnings=(f"xapi restarts on {was} and {host.name_label}: this connection moves "
                  f"to {host.address} by itself, and tasks under way may fail.",))


_HOSTNAME = Param("hostname", ParamKind.TEXT, "Hostname", ("--hostname",),
                  "the host's own name (letters, digits, dots, hyphens)",
                  default=lambda c, h: h.hostname, metavar="NAME")
_DNS = Param("dns", ParamKind.TEXT, "DNS servers", ("--dns",),
             "the management interface's DNS servers, comma-separated IPv4 addresses",
             default=lambda c, h: _current(c, h, "DNS"), metavar="ADDRESSES")
_NTP = Param("ntp", ParamKind.TEXT, "NTP servers", ("--ntp",),
             "NTP servers, comma-separated (needs a xapi with host.set_ntp_custom_servers)",
             default=lambda c, h: ",".join(_record(c.cache, h).get("ntp_custom_servers") or []),
             metavar="SERVERS")
_TZ = Param("timezone", ParamKind.TEXT, "Timezone", ("--timezone",),
            "an IANA timezone, as Europe/London (needs a xapi with host.set_timezone)",
            default=lambda c, h: str(_record(c.cache, h).get("timezone", "")), metavar="ZONE")

_MGMT_RULES = ("Static needs an IPv4 address and a netmask (ones then zeros, as "
               "255.255.255.0); the gateway may be empty. DHCP ignores them. The DNS "
               "servers stay as they are (set them with N).")

declare(
    Operation("host.set_hostname", HOST, "Hostname", "H", "set", "host-set-hostname-live",
              "has a new hostname", "Set the host's hostname (dom0's own name)",
              set_hostname, impact=Impact.DISRUPTIVE, via="hostname", params=(_HOSTNAME,)),
    Operation("host.set_dns", HOST, "DNS servers", "N", "set", "pif-reconfigure-ip",
              "has new DNS servers", "Set the DNS servers of its static management "
              "interface", set_dns, when=_dns_when, impact=Impact.DISRUPTIVE, via="dns",
              params=(_DNS,)),
    Operation("host.set_ntp", HOST, "NTP servers", "K", "set", "host-param-set",
              "has new NTP servers", "Set the NTP servers the host's clock follows",
              set_ntp, when=_ntp_when, impact=Impact.DISRUPTIVE, via="ntp", params=(_NTP,)),
    Operation("host.set_timezone", HOST, "Timezone", "Z", "set", "host-param-set",
              "has a new timezone", "Set the host's timezone", set_timezone,
              when=_timezone_when, impact=Impact.DISRUPTIVE, via="timezone", params=(_TZ,)),
    Operation("host.management", HOST, "Management interface", "I", "set",
              "host-management-reconfigure", "has a new management interface",
              "Choose the management interface (which NIC; DHCP or static address, "
              "netmask, gateway); the connection follows it", management,
              impact=Impact.DISRUPTIVE, via="pif", rules=_MGMT_RULES,
              params=(Param("pif", ParamKind.PICK, "Interface", ("--pif",),
                            "the NIC (eth1, eth0.100 for a VLAN, or a PIF's UUID)",
                            choices=_pif_choices, resolve=_resolve_pif, metavar="PIF"),
                      Param("mode", ParamKind.PICK, "Mode", ("--mode",), "dhcp or static",
                            choices=_mode_choices, resolve=_resolve_mode,
                            metavar="dhcp|static"),
                      Param("ip", ParamKind.TEXT, "IP address", ("--ip",),
                            "the static IPv4 address", required=False,
                            default=lambda c, h: _current(c, h, "IP"), metavar="ADDRESS"),
                      Param("netmask", ParamKind.TEXT, "Netmask", ("--netmask",),
                            "the static netmask (255.255.255.0)", required=False,
                            default=lambda c, h: _current(c, h, "netmask"), metavar="MASK"),
                      Param("gateway", ParamKind.TEXT, "Gateway", ("--gateway",),
                            "the static gateway (may be empty)", required=False,
                            default=lambda c, h: _current(c, h, "gateway"),
                            metavar="ADDRESS"))),
    Operation("host.designate_master", HOST, "Make it the pool master", "W",
              "designate-master", "pool-designate-new-master", "is the pool master",
              "Make this host the pool master (xapi restarts on it and on the old master)",
              designate_master, when=_master_when, impact=Impact.DISRUPTIVE,
              also=("pool designate-master",)),
)
