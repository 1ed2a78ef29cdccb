"""What a host is made of, read from the cache: its CPUs, where its memory goes, its
network interfaces and its management interface. The Hosts view and ``xsctl host
show`` both read them here."""

from __future__ import annotations

from dataclasses import dataclass

from xsctl.xapi.cache import Cache
from xsctl.xapi.host_settings import dns_servers, management_pif
from xsctl.xapi.models import Host, as_int
from xsctl.xapi.text import printable


@dataclass(frozen=True, slots=True)
class Cpus:
    model: str
    sockets: int
    cores: int  # logical CPUs, as xapi counts them (cpu_count)
    speed_mhz: int
    vendor: str

    def text(self) -> str:
        """``Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz: 1 socket, 16 CPUs``"""
        sockets = f"{self.sockets} socket{'s' if self.sockets != 1 else ''}"
        return f"{self.model or 'unknown model'}: {sockets}, {self.cores} CPUs"


def cpus(cache: Cache, host: Host) -> Cpus:
    """host.cpu_info: cpu_count, socket_count, modelname, speed, vendor."""
    ci = (cache.get("host", host.ref) or {}).get("cpu_info") or {}
    try:
        speed = int(float(str(ci.get("speed", "0"))))
    except ValueError:
        speed = 0
    return Cpus(printable(str(ci.get("modelname", ""))), as_int(ci.get("socket_count")),
                as_int(ci.get("cpu_count")), speed, printable(str(ci.get("vendor", ""))))


@dataclass(frozen=True, slots=True)
class Memory:
    total: int
    free: int
    vms: int  # what the guests resident there have
    dom0: int  # the control domain's
    xen: int  # host.memory_overhead: what xen and xapi keep for themselves

    @property
    def used(self) -> int:
        return max(0, self.total - self.free)


def _actual(cache: Cache, r: dict[str, object]) -> int:
    """A running VM's memory: memory_actual (VM_metrics), else its target."""
    m = cache.get("vm_metrics", str(r.get("metrics", ""))) or {}
    return as_int(m.get("memory_actual")) or as_int(r.get("memory_target"))


def memory(cache: Cache, host: Host) -> Memory:
    vms = dom0 = 0
    for ref in host.resident_VMs:
        r = cache.get("vm", ref)
        if r is None:
            continue
        if r.get("is_control_domain"):
            dom0 += _actual(cache, r)
        else:
            vms += _actual(cache, r)
    return Memory(host.memory_total, host.memory_free, vms, dom0, host.memory_overhead)


@dataclass(frozen=True, slots=True)
class Nic:
    ref: str
    device: str
    network: str
    MAC: str
    VLAN: int
    physical: bool
    attached: bool
    management: bool
    carrier: bool | None  # None: no metrics
    speed: int  # Mbit/s; 0 when unknown
    duplex: bool | None
    vendor: str
    model: str

    def link(self) -> str:
        """``up, 10 Gbit/s full duplex`` or ``down``."""
        if self.carrier is None:
            return "unknown"
        if not self.carrier:
            return "down"
        speed = (f"{self.speed // 1000} Gbit/s" if self.speed >= 1000 and not self.speed % 1000
                 else f"{self.speed} Mbit/s" if self.speed > 0 else "")
        duplex = "" if self.duplex is None else ("full duplex" if self.duplex else "half duplex")
        return ", ".join(p for p in ("up", " ".join(x for x in (speed, duplex) if x)) if p)


def nics(cache: Cache, host: Host, physical_only: bool = False) -> list[Nic]:
    """The host's PIFs, with PIF_metrics' link state, speed and vendor, by device."""
    out = []
    for ref in host.PIFs:
        p = cache.get("pif", ref)
        if p is None:
            continue
        if physical_only and not p.get("physical"):
            continue
        m = cache.get("pif_metrics", str(p.get("metrics", "")))
        net = cache.get("network", str(p.get("network", ""))) or {}
        out.append(Nic(
            ref=ref, device=printable(str(p.get("device", ""))),
            network=printable(str(net.get("name_label", ""))),
            MAC=printable(str(p.get("MAC", ""))), VLAN=as_int(p.get("VLAN"), -1),
            physical=bool(p.get("physical")), attached=bool(p.get("currently_attached")),
            management=bool(p.get("management")),
            carrier=None if m is None else bool(m.get("carrier")),
            speed=0 if m is None else as_int(m.get("speed")),
            duplex=None if m is None else bool(m.get("duplex")),
            vendor=printable(str((m or {}).get("vendor_name", ""))),
            model=printable(str((m or {}).get("device_name", ""))),
        ))
    out.sort(key=lambda n: (n.device, n.VLAN))
    return out


@dataclass(frozen=True, slots=True)
class Management:
    device: str
    network: str
    mode: str  # ip_configuration_mode: DHCP, Static, None
    IP: str
    netmask: str
    gateway: str
    DNS: tuple[str, ...]
    IPv6: tuple[str, ...]


def management(cache: Cache, host: Host) -> Management | None:
    """The PIF with management=true (xapi's management interface), or None."""
    found = management_pif(cache, host.ref)
    if found is not None:
        p = found[1]
        net = cache.get("network", str(p.get("network", ""))) or {}
        dns = tuple(printable(d) for d in dns_servers(p))
        return Management(
            device=printable(str(p.get("device", ""))),
            network=printable(str(net.get("name_label", ""))),
            mode=printable(str(p.get("ip_configuration_mode", ""))),
            IP=printable(str(p.get("IP", ""))), netmask=printable(str(p.get("netmask", ""))),
            gateway=printable(str(p.get("gateway", ""))), DNS=dns,
            IPv6=tuple(printable(str(a)) for a in p.get("IPv6") or ()),
        )
    return None


def state(host: Host) -> str:
    """``enabled``, ``maintenance`` (disabled and marked so, as XenCenter marks it),
    ``disabled``, ``off`` (not live) or ``going down``."""
    if "shutdown" in host.current_operations.values():
        return "going down"
    if not host.live:
        return "off"
    if host.enabled:
        return "enabled"
    return "maintenance" if host.maintenance else "disabled"
