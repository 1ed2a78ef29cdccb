"""A host's settings as xsconsole shows and sets them (hostname, DNS, NTP, timezone,
the management interface), and the pool's own (name, master, default SR, HA), read
from the cache for display; and the checks of what a person types for them.

Where each lives in xapi 24.19 (the version the simulator claims):

* hostname: ``host.hostname``, set with ``host.set_hostname_live``;
* DNS servers: the management PIF's ``DNS``, set with ``PIF.reconfigure_ip`` (only in
  Static mode: with DHCP the lease gives them, as XenCenter and xsconsole say);
* the management interface: the PIF with ``management`` true, its
  ``ip_configuration_mode``, ``IP``, ``netmask`` and ``gateway``;
* NTP servers and the timezone: no API before the host fields ``ntp_mode``,
  ``ntp_custom_servers`` and ``timezone`` (design doc host-ntp-time.md, later than
  24.19). Where a host has them they are read and set through the API; otherwise
  xsconsole edits chrony.conf and /etc/localtime in dom0, which a remote client
  cannot, so they are shown as not available.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import NULL, Host, Pool
from xsctl.xapi.text import printable

# short: beside a disabled entry of an 80-column menu (the reason is in the docstring)
NO_NTP_API = "no NTP API in this xapi: use xsconsole"
NO_TIMEZONE_API = "no timezone API in this xapi: use xsconsole"


@dataclass(frozen=True, slots=True)
class Setting:
    """One line of a host's settings: ``key`` for --json, ``label`` for people."""

    key: str
    label: str
    value: str


# ------------------------------------------------------------------ reading


def vlan_of(pif: Record) -> int:
    """The PIF's VLAN tag, -1 for none (an int64 arrives as a string)."""
    try:
        return int(pif.get("VLAN", -1))
    except (TypeError, ValueError):
        return -1


def pifs_of(cache: Cache, host: str) -> list[tuple[str, Record]]:
    """The host's PIFs, by device then VLAN (eth0 before eth0.100)."""
    out = [(r, p) for r, p in cache.snapshot("pif") if p.get("host") == host]
    out.sort(key=lambda rp: (str(rp[1].get("device", "")), vlan_of(rp[1])))
    return out


def management_pif(cache: Cache, host: str) -> tuple[str, Record] | None:
    """The host's PIF with management=true (xapi's management interface), or None:
    read through the host's own PIFs, not every PIF of the pool."""
    for ref in (cache.get("host", host) or {}).get("PIFs") or ():
        p = cache.get("pif", str(ref))
        if p is not None and p.get("management"):
            return str(ref), p
    return None


def pif_name(cache: Cache, pif: Record) -> str:
    """``eth0``, ``eth0 VLAN 100``, with its network's name where it has one."""
    name = printable(str(pif.get("device", "")))
    vlan = vlan_of(pif)
    if vlan >= 0:
        name += f" VLAN {vlan}"
    net = cache.get("network", str(pif.get("network", NULL)))
    if net is not None and net.get("name_label"):
        name += f" ({printable(str(net['name_label']))})"
    return name


def dns_servers(pif: Record | None) -> list[str]:
    if pif is None:
        return []
    return [a.strip() for a in str(pif.get("DNS", "")).split(",") if a.strip()]


def has_ntp_api(record: Record) -> bool:
    return "ntp_mode" in record


def has_timezone_api(record: Record) -> bool:
    return "timezone" in record


def ip_config(pif: Record) -> str:
    """``Static 10.0.0.11/255.255.255.0 via 10.0.0.1``, ``DHCP (10.0.0.104)``."""
    mode = str(pif.get("ip_configuration_mode", "None"))
    ip, mask, gw = (printable(str(pif.get(k, ""))) for k in ("IP", "netmask", "gateway"))
    if mode == "Static":
        return f"Static {ip}/{mask}" + (f" via {gw}" if gw else "")
    if mode == "DHCP":
        return "DHCP" + (f" ({ip})" if ip else "")
    return "no IP configuration"


def settings(cache: Cache, host: str) -> list[Setting]:
    """The host's settings for display, from the cache."""
    r = cache.get("host", host) or {}
    mgmt = management_pif(cache, host)
    out = [Setting("hostname", "Hostname", printable(str(r.get("hostname", ""))) or "–")]
    if mgmt is None:
        out.append(Setting("management", "Management", "none (management is disabled)"))
    else:
        pif = mgmt[1]
        out.append(Setting("management", "Management",
                           f"{pif_name(cache, pif)}: {ip_config(pif)}"))
    servers = dns_servers(mgmt[1] if mgmt else None)
    out.append(Setting("dns", "DNS servers", ", ".join(printable(s) for s in servers) or "–"))
    if has_ntp_api(r):
        mode = printable(str(r.get("ntp_mode", "")))
        custom = ", ".join(printable(str(s)) for s in r.get("ntp_custom_servers") or [])
        out.append(Setting("ntp", "NTP servers", f"{mode}: {custom}" if custom else mode))
    else:
        out.append(Setting("ntp", "NTP servers", "not readable through this xapi"))
    out.append(Setting("timezone", "Timezone",
                       printable(str(r.get("timezone", ""))) if has_timezone_api(r)
                       else "not readable through this xapi"))
    return out


def pool_settings(cache: Cache) -> list[Setting]:
    """The pool's name, master, default SR and whether HA is on."""
    pool = Pool.of(cache)
    if pool is None:
        return []
    r = cache.get("pool", pool.ref) or {}
    master = Host.get(cache, pool.master)
    sr = cache.get("sr", pool.default_SR)
    ha = bool(r.get("ha_enabled"))
    tolerate = int(r.get("ha_host_failures_to_tolerate", 0) or 0)
    return [
        Setting("name_label", "Pool", printable(pool.name_label) or "–"),
        Setting("name_description", "Description",
                printable(str(r.get("name_description", ""))) or "–"),
        Setting("master", "Master",
                f"{printable(master.name_label)} ({master.address})" if master else "–"),
        Setting("default_SR", "Default SR",
                printable(str(sr.get("name_label", ""))) if sr else "none"),
        Setting("ha_enabled", "HA",
                f"on (tolerates {tolerate} host failure{'s' if tolerate != 1 else ''})"
                if ha else "off"),
    ]


# ------------------------------------------------------------------ checking input


def check_ipv4(label: str, text: str) -> str:
    """A dotted IPv4 address, as xapi's helpers.ml is_valid_ip takes it."""
    t = text.strip()
    try:
        ipaddress.IPv4Address(t)
    except ValueError:
        raise UsageError(f"{label}: {printable(text)!r} is not an IPv4 address") from None
    return t


def check_netmask(text: str) -> str:
    """A netmask: an IPv4 address whose bits are ones then zeros (xapi only checks it
    is an address; a mask like 255.0.255.0 would cut the host off)."""
    t = check_ipv4("Netmask", text)
    bits = int(ipaddress.IPv4Address(t))
    inverted = ~bits & 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise UsageError(f"Netmask: {t} is not a netmask (its ones must come first, "
                         "as in 255.255.255.0)")
    return t


def check_servers(label: str, text: str) -> list[str]:
    """Comma- or space-separated IPv4 addresses (xapi's PIF.DNS keeps only those)."""
    items = [s for s in text.replace(",", " ").split() if s]
    return [check_ipv4(label, s) for s in items]


def check_hostname(text: str) -> str:
    """xapi_host.ml set_hostname_live's rule: letters, digits, dots and hyphens, not
    starting or ending with a hyphen, at most 255 characters."""
    t = text.strip()
    if not t:
        raise UsageError("Hostname: a hostname is needed")
    if len(t) > 255:
        raise UsageError("Hostname: at most 255 characters")
    if not all(c.isascii() and (c.isalnum() or c in "-.") for c in t) or t[0] == "-" \
            or t[-1] == "-":
        raise UsageError(f"Hostname: {printable(t)!r} may hold only letters, digits, dots "
                         "and hyphens, and not start or end with a hyphen")
    return t
