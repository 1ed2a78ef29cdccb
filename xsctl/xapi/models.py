"""Typed, frozen, read-only views over cached records, keyed by OpaqueRef, with xapi's
own field names. They accept both wire forms (XML-RPC sends int64 as strings,
JSON-RPC as numbers) and resolve references through the cache."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from xsctl.xapi.errors import UsageError
from xsctl.xapi.text import GiB, KiB, MiB, TiB, human_bytes, human_duration, printable

if TYPE_CHECKING:
    from xsctl.xapi.cache import Cache, Record

NULL = "OpaqueRef:NULL"
__all__ = ["GiB", "KiB", "MiB", "TiB", "human_bytes", "human_duration", "printable"]  # re-exported


def as_int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        try:
            return int(float(v))
        except (TypeError, ValueError):
            return default


def as_float(v: Any, default: float = 0.0) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def parse_time(v: Any) -> datetime | None:
    """xapi datetimes: ``20241130T12:00:00Z`` (also with dashes or fractions)."""
    if not v:
        return None
    s = v.strip() if type(v) is str else str(v).strip()
    # Fast path for xapi's own form (every VM has two of these; strptime costs ~20 us,
    # fromisoformat 0.1 us and reads that form as strptime does; what it refuses goes
    # on to strptime). The digits keep out ISO forms that strptime refuses (2024W011).
    # The epoch (the snapshot_time of every VM that is not a snapshot) means "none".
    if (len(s) == 18 and s[8] == "T" and s[11] == ":" and s[14] == ":" and s[17] == "Z"
            and s[:8].isdigit()):
        if s[:4] <= "1970":
            return None  # also what strptime below makes of such a string
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(s)
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S.%fZ",
                "%Y-%m-%dT%H:%M:%S.%fZ", "%Y%m%dT%H:%M:%S"):
        try:
            dt = datetime.strptime(s, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return None if dt.year <= 1970 else dt
    return None


# ASCII digits only: str.isdigit and \d also take "٣" (Arabic-Indic three), which
# xapi's Int64.of_string refuses
_SIZE = re.compile(r"^\s*([0-9]{1,30})(?:\.([0-9]{1,30}))?\s*([KMGT]?)(i?B?)?\s*$",
                   re.IGNORECASE | re.ASCII)
INT64_MAX = 2**63 - 1


def parse_size(text: str, default_unit: str = "M") -> int:
    """``2G``, ``2048M``, ``2 GiB``, ``1.5G``, ``536870912`` (bytes if no unit and
    ``default_unit`` is empty). Binary units, as xe takes them. Exact (no float), and
    within xapi's int64."""
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(f"not a size: {str(text)[:40]!r} (e.g. 2G, 2048M, 2GiB)")
    whole, frac, unit = m.group(1), m.group(2) or "", (m.group(3) or default_unit).upper()
    mult = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": TiB}[unit]
    value = int(whole) * mult + (int(frac) * mult // 10 ** len(frac) if frac else 0)
    if value > INT64_MAX:
        raise UsageError(f"{str(text)[:40]!r} is too large a size (8 EiB at most)")
    return value


# The sort key of each VM_guest_metrics.networks key seen: the same few ("0/ip",
# "0/ipv4/0", ...) come with every guest. Bounded, since the guest writes them.
_NET_ORDER: dict[str, list[int]] = {}


def _net_order(key: str) -> list[int]:
    order = _NET_ORDER.get(key)
    if order is None:
        order = [as_int(p, 0) if p.isdigit() else 0 for p in key.split("/")]
        if len(_NET_ORDER) < 1024:
            _NET_ORDER[key] = order
    return order


def guest_ips(networks: Mapping[str, Any]) -> tuple[str, ...]:
    """IPs from VM_guest_metrics.networks (keys ``0/ip``, ``0/ipv4/0``, ``0/ipv6/0``),
    IPv4 first, in device order, without duplicates."""
    v4: list[str] = []
    v6: list[str] = []
    for key in sorted(networks, key=_net_order):
        val = printable(str(networks[key]))
        if not val:
            continue
        target = v6 if "/ipv6/" in key or ":" in val else v4
        if val not in target:
            target.append(val)
    return tuple(v4 + v6)


def _text(v: Any) -> str:
    """A string from xapi, as people may see it: every model field of text goes
    through here (the one place, with xsctl.xapi.text.printable, that keeps escape
    codes in a VM's name from the terminal). --json reads the records instead."""
    return printable(str(v)) if v is not None else ""


def is_guest(r: Mapping[str, Any]) -> bool:
    """A VM record of a real guest: not a template, a snapshot or a control domain.
    The one place this is decided (the table, the counts, the resolver, the palette)."""
    return not (r.get("is_a_template") or r.get("is_a_snapshot") or r.get("is_control_domain"))


def is_template(r: Mapping[str, Any]) -> bool:
    return bool(r.get("is_a_template")) and not r.get("is_a_snapshot")


# current_operations as a person reads them in a table ("⟳ shutting down")
_DOING = {
    "start": "starting", "start_on": "starting", "clean_shutdown": "shutting down",
    "hard_shutdown": "powering off", "shutdown": "shutting down",
    "clean_reboot": "rebooting", "hard_reboot": "resetting", "suspend": "suspending",
    "resume": "resuming", "resume_on": "resuming", "pause": "pausing",
    "unpause": "unpausing", "pool_migrate": "migrating", "migrate_send": "migrating",
    "snapshot": "snapshotting", "checkpoint": "checkpointing", "revert": "reverting",
    "clone": "cloning", "copy": "copying", "destroy": "deleting", "export": "exporting",
    "import": "importing", "provision": "provisioning", "changing_dynamic_range":
    "changing memory", "changing_memory_limits": "changing memory",
    "changing_VCPUs_live": "changing vCPUs", "changing_VCPUs": "changing vCPUs",
    "make_into_template": "converting", "csvm": "copying", "metadata_export": "exporting",
    "snapshot_with_quiesce": "snapshotting", "awaiting_memory_live": "changing memory",
    "assert_operation_valid": "checking", "update_allowed_operations": "updating",
}


def doing(operation: str) -> str:
    """``clean_shutdown`` -> ``shutting down``; unknown ones with spaces for "_"."""
    return _DOING.get(operation, operation.replace("_", " "))


def _name_of(cache: Cache, cls: str, ref: str) -> str:
    rec = cache.get(cls, ref) if ref and ref != NULL else None
    return _text(rec.get("name_label")) if rec else ""


@dataclass(frozen=True, slots=True)
class Vm:
    ref: str
    uuid: str
    name_label: str
    name_description: str
    power_state: str
    is_a_template: bool
    is_default_template: bool
    is_a_snapshot: bool
    is_control_domain: bool
    snapshot_of: str
    snapshot_time: datetime | None
    resident_on: str
    host_name: str
    affinity: str
    memory_static_min: int
    memory_static_max: int
    memory_dynamic_min: int
    memory_dynamic_max: int
    memory_actual: int
    VCPUs_max: int
    VCPUs_at_startup: int
    VCPUs_number: int
    domid: int
    domain_type: str
    os_version: str
    ips: tuple[str, ...]
    tags: tuple[str, ...]
    allowed_operations: frozenset[str]
    current_operations: Mapping[str, str]
    blocked_operations: Mapping[str, str]
    VBDs: tuple[str, ...]
    VIFs: tuple[str, ...]
    snapshots: tuple[str, ...]
    other_config: Mapping[str, str]
    start_time: datetime | None
    pv_drivers: str
    # its guest agent takes a static address for a VIF (VM_guest_metrics.other
    # feature-static-ip-setting, which xapi_vif.ml configure_ipv4 requires)
    static_ip_setting: bool = False

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Vm:
        # Called for every VM when a view builds its rows (30,000 at start-up in a big
        # pool): the record's get is bound once.
        get = r.get
        metrics = cache.get("vm_metrics", str(get("metrics", ""))) or {}
        gm = cache.get("vm_guest_metrics", str(get("guest_metrics", ""))) or {}
        running = get("power_state") in ("Running", "Paused")
        # a halted VM's guest metrics describe its last run: xapi keeps the object,
        # but its addresses are no longer the VM's (a VM halted by revert kept them)
        gm_live = gm if running else {}
        os_v = gm.get("os_version") or {}
        os_name = _text(os_v.get("name")).split("|")[0] if os_v else ""
        other_config = get("other_config") or {}
        if not os_name:
            os_name = _text(other_config.get("base_template_name"))
        pv = gm.get("PV_drivers_version") or {}
        resident_on = str(get("resident_on", NULL))
        return cls(
            ref=ref,
            uuid=_text(get("uuid")),
            name_label=_text(get("name_label")),
            name_description=_text(get("name_description")),
            power_state=_text(get("power_state")),
            is_a_template=bool(get("is_a_template")),
            is_default_template=bool(get("is_default_template")),
            is_a_snapshot=bool(get("is_a_snapshot")),
            is_control_domain=bool(get("is_control_domain")),
            snapshot_of=str(get("snapshot_of", NULL)),
            snapshot_time=parse_time(get("snapshot_time")),
            resident_on=resident_on,
            host_name=_name_of(cache, "host", resident_on),
            affinity=str(get("affinity", NULL)),
            memory_static_min=as_int(get("memory_static_min")),
            memory_static_max=as_int(get("memory_static_max")),
            memory_dynamic_min=as_int(get("memory_dynamic_min")),
            memory_dynamic_max=as_int(get("memory_dynamic_max")),
            memory_actual=as_int(metrics.get("memory_actual")) if running else 0,
            VCPUs_max=as_int(get("VCPUs_max")),
            VCPUs_at_startup=as_int(get("VCPUs_at_startup")),
            VCPUs_number=as_int(metrics.get("VCPUs_number")) if running else 0,
            domid=as_int(get("domid"), -1),
            domain_type=_text(get("domain_type")),
            os_version=os_name,
            ips=guest_ips(gm_live.get("networks") or {}) if gm_live else (),
            tags=tuple(map(_text, get("tags") or ())),
            allowed_operations=frozenset(map(str, get("allowed_operations") or ())),
            current_operations=dict(get("current_operations") or {}),
            blocked_operations=dict(get("blocked_operations") or {}),
            VBDs=tuple(get("VBDs") or ()),
            VIFs=tuple(get("VIFs") or ()),
            snapshots=tuple(get("snapshots") or ()),
            other_config=dict(other_config),
            start_time=parse_time(metrics.get("start_time")) if running else None,
            pv_drivers=_text(".".join(str(pv[k]) for k in ("major", "minor", "micro") if k in pv)),
            static_ip_setting=(gm.get("other") or {}).get("feature-static-ip-setting") == "1",
        )

    @classmethod
    def get(cls, cache: Cache, ref: str) -> Vm | None:
        r = cache.get("vm", ref)
        return None if r is None else cls.from_record(cache, ref, r)

    @property
    def is_vm(self) -> bool:
        """A real guest (see :func:`is_guest`)."""
        return not (self.is_a_template or self.is_a_snapshot or self.is_control_domain)

    @property
    def memory(self) -> int:
        """What the VM has (running) or will get (halted)."""
        return self.memory_actual or self.memory_dynamic_max or self.memory_static_max

    @property
    def vcpus(self) -> int:
        return self.VCPUs_number or self.VCPUs_at_startup

    @property
    def busy(self) -> str:
        """The operation in progress, as xapi names it (``clean_shutdown``), if any."""
        return next(iter(self.current_operations.values()), "")

    @property
    def doing(self) -> str:
        """The operation in progress as a person reads it (``shutting down``)."""
        return doing(self.busy) if self.busy else ""


# XenCenter's marks in host.other_config (XenModel/XenAPI-Extensions/Host.cs): a host
# put into maintenance mode, and the VMs it had then (UUIDs, comma-separated), so that
# leaving maintenance mode can bring them back; kept as XenCenter keeps them, so either
# tool reads what the other wrote
MAINTENANCE_MODE = "MAINTENANCE_MODE"
EVACUATED = {"migrated": "MAINTENANCE_MODE_EVACUATED_VMS_MIGRATED",
             "suspended": "MAINTENANCE_MODE_EVACUATED_VMS_SUSPENDED",
             "halted": "MAINTENANCE_MODE_EVACUATED_VMS_HALTED"}


def _evacuated(oc: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    out = {}
    for kind, key in EVACUATED.items():
        uuids = tuple(u.strip() for u in str(oc.get(key) or "").split(",") if u.strip())
        if uuids:
            out[kind] = uuids
    return out


@dataclass(frozen=True, slots=True)
class Host:
    ref: str
    uuid: str
    name_label: str
    hostname: str
    address: str
    enabled: bool
    is_master: bool
    live: bool
    memory_total: int
    memory_free: int
    cpu_count: int
    cpu_model: str
    product: str
    version: str
    boot_time: datetime | None
    resident_VMs: tuple[str, ...]
    allowed_operations: frozenset[str]
    PBDs: tuple[str, ...]
    # defaults: a Host made by hand (a test's, a dom0 probe's) need not name them
    current_operations: Mapping[str, str] = field(default_factory=dict)
    power_on_mode: str = ""
    memory_overhead: int = 0
    control_domain: str = NULL
    PIFs: tuple[str, ...] = ()
    maintenance: bool = False  # marked so (MAINTENANCE_MODE=true), not merely disabled
    # the VMs it had when it entered maintenance mode: "migrated", "suspended" or
    # "halted" -> VM UUIDs
    evacuated: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Host:
        m = cache.get("host_metrics", str(r.get("metrics", ""))) or {}
        pool = next(iter(cache.all("pool").values()), {})
        sv = r.get("software_version") or {}
        ci = r.get("cpu_info") or {}
        oc = r.get("other_config") or {}
        boot = as_float(oc.get("boot_time"), 0.0)
        return cls(
            ref=ref,
            uuid=_text(r.get("uuid")),
            name_label=_text(r.get("name_label")),
            hostname=_text(r.get("hostname")),
            address=_text(r.get("address")),
            enabled=bool(r.get("enabled")),
            is_master=pool.get("master") == ref,
            live=bool(m.get("live", True)),
            memory_total=as_int(m.get("memory_total")),
            memory_free=as_int(m.get("memory_free")),
            cpu_count=as_int(ci.get("cpu_count")),
            cpu_model=_text(ci.get("modelname")),
            product=_text(f"{sv.get('product_brand', '')} {sv.get('product_version', '')}".strip()),
            version=_text(sv.get("xapi")),
            boot_time=datetime.fromtimestamp(boot, UTC) if boot > 0 else None,
            resident_VMs=tuple(r.get("resident_VMs") or ()),
            allowed_operations=frozenset(r.get("allowed_operations") or ()),
            PBDs=tuple(r.get("PBDs") or ()),
            current_operations=dict(r.get("current_operations") or {}),
            power_on_mode=_text(r.get("power_on_mode")),
            memory_overhead=as_int(r.get("memory_overhead")),
            control_domain=str(r.get("control_domain", NULL)),
            PIFs=tuple(r.get("PIFs") or ()),
            maintenance=str(oc.get(MAINTENANCE_MODE, "")).strip().lower() == "true",
            evacuated=_evacuated(oc),
        )

    @classmethod
    def get(cls, cache: Cache, ref: str) -> Host | None:
        r = cache.get("host", ref)
        return None if r is None else cls.from_record(cache, ref, r)

    @property
    def memory_used(self) -> int:
        return max(0, self.memory_total - self.memory_free)


def sr_display_name(cache: Cache, ref: str) -> str:
    """An SR's name as people tell them apart: ``Local storage on xcp-ng-02`` for a
    local SR (every host has its own "Local storage"), the name alone otherwise."""
    r = cache.get("sr", ref)
    if r is None:
        return ""
    name = _text(r.get("name_label"))
    pbds = list(r.get("PBDs") or ())
    if r.get("shared") or len(pbds) != 1:
        return name
    p = cache.get("pbd", str(pbds[0]))
    host = _name_of(cache, "host", str(p.get("host"))) if p else ""
    return f"{name} on {host}" if host else name


@dataclass(frozen=True, slots=True)
class Sr:
    ref: str
    uuid: str
    name_label: str
    name_description: str
    type: str
    content_type: str
    shared: bool
    physical_size: int
    physical_utilisation: int
    virtual_allocation: int
    VDIs: tuple[str, ...]
    PBDs: tuple[str, ...]
    hosts: tuple[str, ...]  # hosts with a plugged PBD
    pbd_hosts: tuple[str, ...]  # hosts with a PBD, plugged or not
    host_name: str  # the host of a local SR (its one PBD's), else ""
    is_default: bool
    is_tools_sr: bool
    allowed_operations: frozenset[str]
    current_operations: tuple[str, ...]  # what xapi is doing to it now

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Sr:
        pool = next(iter(cache.all("pool").values()), {})
        hosts = []
        pbd_hosts = []
        for pbd in r.get("PBDs") or ():
            p = cache.get("pbd", pbd)
            if p:
                pbd_hosts.append(str(p.get("host")))
                if p.get("currently_attached"):
                    hosts.append(str(p.get("host")))
        local = not r.get("shared") and len(pbd_hosts) == 1
        return cls(
            ref=ref,
            uuid=_text(r.get("uuid")),
            name_label=_text(r.get("name_label")),
            name_description=_text(r.get("name_description")),
            type=_text(r.get("type")),
            content_type=_text(r.get("content_type")),
            shared=bool(r.get("shared")),
            physical_size=as_int(r.get("physical_size")),
            physical_utilisation=as_int(r.get("physical_utilisation")),
            virtual_allocation=as_int(r.get("virtual_allocation")),
            VDIs=tuple(r.get("VDIs") or ()),
            PBDs=tuple(r.get("PBDs") or ()),
            hosts=tuple(hosts),
            pbd_hosts=tuple(pbd_hosts),
            host_name=_name_of(cache, "host", pbd_hosts[0]) if local else "",
            is_default=pool.get("default_SR") == ref,
            is_tools_sr=bool(r.get("is_tools_sr")),
            allowed_operations=frozenset(r.get("allowed_operations") or ()),
            current_operations=tuple(str(o) for o in (r.get("current_operations") or {}).values()),
        )

    @classmethod
    def get(cls, cache: Cache, ref: str) -> Sr | None:
        r = cache.get("sr", ref)
        return None if r is None else cls.from_record(cache, ref, r)

    @property
    def free(self) -> int:
        return max(0, self.physical_size - self.physical_utilisation)

    @property
    def usage(self) -> float:
        return self.physical_utilisation / self.physical_size if self.physical_size else 0.0

    @property
    def is_iso(self) -> bool:
        return self.content_type == "iso"

    @property
    def display_name(self) -> str:
        """``Local storage on xcp-ng-02``: every host has its own "Local storage"."""
        return f"{self.name_label} on {self.host_name}" if self.host_name else self.name_label


@dataclass(frozen=True, slots=True)
class Vbd:
    ref: str
    VM: str
    VDI: str
    device: str
    userdevice: str
    type: str
    mode: str
    bootable: bool
    currently_attached: bool
    empty: bool
    unpluggable: bool
    allowed_operations: frozenset[str]
    other_config: Mapping[str, str] = field(default_factory=dict)
    current_operations: tuple[str, ...] = ()
    vm_name: str = ""  # where loaded with the pool at hand (a device named for people)

    @classmethod
    def from_record(cls, ref: str, r: Record) -> Vbd:
        return cls(
            ref=ref,
            VM=str(r.get("VM", NULL)),
            VDI=str(r.get("VDI", NULL)),
            device=_text(r.get("device")),
            userdevice=_text(r.get("userdevice")),
            type=_text(r.get("type")),
            mode=_text(r.get("mode")),
            bootable=bool(r.get("bootable")),
            currently_attached=bool(r.get("currently_attached")),
            empty=bool(r.get("empty")),
            unpluggable=bool(r.get("unpluggable", True)),
            allowed_operations=frozenset(r.get("allowed_operations") or ()),
            other_config=dict(r.get("other_config") or {}),
            current_operations=tuple(str(o) for o in
                                     (r.get("current_operations") or {}).values()),
        )


@dataclass(frozen=True, slots=True)
class Vdi:
    ref: str
    uuid: str
    name_label: str
    name_description: str
    SR: str
    sr_name: str
    virtual_size: int
    physical_utilisation: int
    type: str
    read_only: bool
    sharable: bool
    is_a_snapshot: bool
    VBDs: tuple[str, ...]
    allowed_operations: frozenset[str]
    snapshot_of: str = NULL  # the disk this is a snapshot of
    snapshots: tuple[str, ...] = ()  # its snapshots
    snapshot_time: datetime | None = None
    managed: bool = True  # False: a leaf of a snapshot chain xapi keeps hidden
    missing: bool = False  # the SR's last scan did not find it
    current_operations: tuple[str, ...] = ()

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Vdi:
        return cls(
            ref=ref,
            uuid=_text(r.get("uuid")),
            name_label=_text(r.get("name_label")),
            name_description=_text(r.get("name_description")),
            SR=str(r.get("SR", NULL)),
            sr_name=sr_display_name(cache, str(r.get("SR", NULL))),
            virtual_size=as_int(r.get("virtual_size")),
            physical_utilisation=as_int(r.get("physical_utilisation")),
            type=_text(r.get("type")),
            read_only=bool(r.get("read_only")),
            sharable=bool(r.get("sharable")),
            is_a_snapshot=bool(r.get("is_a_snapshot")),
            VBDs=tuple(r.get("VBDs") or ()),
            allowed_operations=frozenset(r.get("allowed_operations") or ()),
            snapshot_of=str(r.get("snapshot_of", NULL)),
            snapshots=tuple(r.get("snapshots") or ()),
            snapshot_time=parse_time(r.get("snapshot_time")) if r.get("is_a_snapshot") else None,
            managed=bool(r.get("managed", True)),
            missing=bool(r.get("missing")),
            current_operations=tuple(str(o) for o in (r.get("current_operations") or {}).values()),
        )


@dataclass(frozen=True, slots=True)
class Disk:
    """A VM's disk or drive: the VBD and, unless the drive is empty, its VDI."""

    vbd: Vbd
    vdi: Vdi | None

    @property
    def label(self) -> str:
        if self.vdi is None:
            return "(empty)"
        return self.vdi.name_label


def vm_disks(cache: Cache, vm: Vm) -> list[Disk]:
    out = []
    for ref in vm.VBDs:
        r = cache.get("vbd", ref)
        if r is None:
            continue
        vbd = Vbd.from_record(ref, r)
        vr = cache.get("vdi", vbd.VDI) if vbd.VDI != NULL else None
        out.append(Disk(vbd, Vdi.from_record(cache, vbd.VDI, vr) if vr else None))
    out.sort(key=lambda d: as_int(d.vbd.userdevice, 99))
    return out


@dataclass(frozen=True, slots=True)
class Vif:
    ref: str
    device: str
    MAC: str
    network: str
    network_name: str
    currently_attached: bool
    VM: str = NULL
    uuid: str = ""
    MTU: int = 0
    MAC_autogenerated: bool = False
    locking_mode: str = "network_default"
    allowed_operations: frozenset[str] = frozenset()
    current_operations: tuple[str, ...] = ()
    # the static configuration xapi hands the guest (VIF.configure_ipv4/ipv6):
    # mode None or Static, the CIDR address and the gateway
    ipv4_configuration_mode: str = "None"
    ipv4_addresses: tuple[str, ...] = ()
    ipv4_gateway: str = ""
    ipv6_configuration_mode: str = "None"
    ipv6_addresses: tuple[str, ...] = ()
    ipv6_gateway: str = ""
    # what the guest reports for this device (VM_guest_metrics.networks), while it runs
    ips: tuple[str, ...] = ()
    vm_name: str = ""

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Vif:
        device = _text(r.get("device"))
        vm = cache.get("vm", str(r.get("VM", NULL))) or {}
        ips: tuple[str, ...] = ()
        if vm.get("power_state") in ("Running", "Paused"):
            gm = cache.get("vm_guest_metrics", str(vm.get("guest_metrics", ""))) or {}
            nets = gm.get("networks") or {}
            prefix = f"{device}/"
            ips = guest_ips({k: v for k, v in nets.items() if str(k).startswith(prefix)})
        return cls(
            ref=ref,
            device=device,
            MAC=_text(r.get("MAC")),
            network=str(r.get("network", NULL)),
            network_name=_name_of(cache, "network", str(r.get("network", NULL))),
            currently_attached=bool(r.get("currently_attached")),
            VM=str(r.get("VM", NULL)),
            uuid=_text(r.get("uuid")),
            MTU=as_int(r.get("MTU")),
            MAC_autogenerated=bool(r.get("MAC_autogenerated")),
            locking_mode=_text(r.get("locking_mode") or "network_default"),
            allowed_operations=frozenset(map(str, r.get("allowed_operations") or ())),
            current_operations=tuple(map(str, (r.get("current_operations") or {}).values())),
            ipv4_configuration_mode=_text(r.get("ipv4_configuration_mode") or "None"),
            ipv4_addresses=tuple(_text(a) for a in r.get("ipv4_addresses") or () if a),
            ipv4_gateway=_text(r.get("ipv4_gateway")),
            ipv6_configuration_mode=_text(r.get("ipv6_configuration_mode") or "None"),
            ipv6_addresses=tuple(_text(a) for a in r.get("ipv6_addresses") or () if a),
            ipv6_gateway=_text(r.get("ipv6_gateway")),
            ips=ips,
            vm_name=_text(vm.get("name_label")),
        )

    def static(self, kind: str) -> str:
        """``10.0.9.7/24 via 10.0.9.1``, or "" where the mode is not Static."""
        if getattr(self, f"{kind}_configuration_mode") != "Static":
            return ""
        addr = ", ".join(getattr(self, f"{kind}_addresses")) or "?"
        gw = getattr(self, f"{kind}_gateway")
        return addr + (f" via {gw}" if gw else "")


def vm_vifs(cache: Cache, vm: Vm) -> list[Vif]:
    out = [Vif.from_record(cache, ref, r) for ref in vm.VIFs if (r := cache.get("vif", ref))]
    out.sort(key=lambda v: as_int(v.device, 99))
    return out


@dataclass(frozen=True, slots=True)
class Task:
    ref: str
    uuid: str
    name_label: str
    status: str
    progress: float
    created: datetime | None
    finished: datetime | None
    error_info: tuple[str, ...]
    result: str
    allowed_operations: frozenset[str]
    resident_on: str

    @classmethod
    def from_record(cls, ref: str, r: Record) -> Task:
        return cls(
            ref=ref,
            uuid=_text(r.get("uuid")),
            name_label=_text(r.get("name_label")),
            status=_text(r.get("status")),
            progress=as_float(r.get("progress")),
            created=parse_time(r.get("created")),
            finished=parse_time(r.get("finished")),
            error_info=tuple(str(x) for x in r.get("error_info") or ()),
            result=_text(r.get("result")),
            allowed_operations=frozenset(r.get("allowed_operations") or ()),
            resident_on=str(r.get("resident_on", NULL)),
        )

    @property
    def pending(self) -> bool:
        return self.status in ("pending", "cancelling")


# What each priority means, in the words of xapi (ocaml/xapi-consts/api_messages.ml)
# and XenCenter (XenModel/Alerts/Types/Alert.cs AlertPriority): 1 is the most severe.
ALERT_PRIORITIES = {
    1: "Data-loss imminent",
    2: "Service-loss imminent",
    3: "Service degraded",
    4: "Service recovered",
    5: "Informational",
}


# the same in a word or two, as a column at 80 columns holds it
ALERT_PRIORITIES_SHORT = {1: "data loss", 2: "service loss", 3: "degraded", 4: "recovered",
                          5: "info"}


def priority_name(priority: int) -> str:
    """``Service degraded``; a priority outside 1 to 5 (older hosts, a client's own
    message.create) as XenCenter has it: unknown."""
    return ALERT_PRIORITIES.get(priority, "Unknown")


_ACRONYMS = frozenset({"VM", "VMS", "SR", "HA", "PBD", "PIF", "VDI", "VBD", "VIF", "NIC",
                       "CPU", "GPU", "VGPU", "PCI", "USB", "PVS", "VMPP", "VMSS", "SSL",
                       "TLS", "NTP", "IP", "HCL", "XAPI", "TPM", "VTPM", "MTU", "RPU"})
_ALARM_VARIABLE = re.compile(r'<name value="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Message:
    ref: str
    uuid: str
    name: str
    priority: int
    cls: str
    obj_uuid: str
    timestamp: datetime | None
    body: str

    @classmethod
    def from_record(cls, ref: str, r: Record) -> Message:
        return cls(
            ref=ref,
            uuid=_text(r.get("uuid")),
            name=_text(r.get("name")),
            priority=as_int(r.get("priority"), 5),
            cls=_text(r.get("cls")),
            obj_uuid=_text(r.get("obj_uuid")),
            timestamp=parse_time(r.get("timestamp")),
            body=printable(str(r.get("body") or ""), multiline=True),
        )

    @classmethod
    def get(cls, cache: Cache, ref: str) -> Message | None:
        r = cache.get("message", ref)
        return None if r is None else cls.from_record(ref, r)

    @property
    def priority_name(self) -> str:
        return priority_name(self.priority)

    @property
    def priority_short(self) -> str:
        """``2 service loss``: the number and a word or two."""
        return f"{self.priority} {ALERT_PRIORITIES_SHORT.get(self.priority, 'unknown')}"

    @property
    def when(self) -> str:
        """When xapi raised it, in UTC as xapi keeps it (every reader sees the same)."""
        return self.timestamp.strftime("%Y-%m-%d %H:%M:%S UTC") if self.timestamp else "–"

    @property
    def title(self) -> str:
        """What happened, in words: ``VM crashed`` for VM_CRASHED; an alarm names the
        variable it watches (``Alarm: cpu_usage``), which xapi writes in its body
        (ocaml/xcp-rrdd alarms: ``<name value="cpu_usage"/>``)."""
        if self.name == "ALARM":
            m = _ALARM_VARIABLE.search(self.body)
            if m:
                return f"Alarm: {m.group(1)}"
        words = [w if w in _ACRONYMS else w.lower() for w in self.name.split("_") if w]
        text = " ".join(words)
        return text[:1].upper() + text[1:]

    @property
    def first_line(self) -> str:
        """The body's first line that says something."""
        for line in self.body.splitlines():
            if line.strip():
                return line.strip()
        return ""


@dataclass(frozen=True, slots=True)
class Pool:
    ref: str
    uuid: str
    name_label: str
    master: str
    default_SR: str

    @classmethod
    def of(cls, cache: Cache) -> Pool | None:
        for ref, r in cache.all("pool").items():
            return cls(ref, _text(r.get("uuid")), _text(r.get("name_label")),
                       str(r.get("master", NULL)), str(r.get("default_SR", NULL)))
        return None


def vms(cache: Cache, *, templates: bool = False, snapshots: bool = False,
        control: bool = False) -> list[Vm]:
    """Guests (by default only real VMs), sorted by name."""
    out = []
    for ref, r in cache.snapshot("vm"):
        if r.get("is_control_domain") and not control:
            continue
        if r.get("is_a_snapshot") and not snapshots:
            continue
        if is_template(r) and not templates:
            continue
        out.append(Vm.from_record(cache, ref, r))
    out.sort(key=lambda v: v.name_label.lower())
    return out


def snapshots_of(cache: Cache, vm: Vm) -> list[Vm]:
    """A VM's snapshots, newest first (the one order of the detail pane, the revert
    picker and ``vm show``)."""
    out = [s for s in (Vm.get(cache, r) for r in vm.snapshots) if s is not None]
    out.sort(key=lambda s: s.snapshot_time or datetime.min.replace(tzinfo=UTC), reverse=True)
    return out


def hosts(cache: Cache) -> list[Host]:
    out = [Host.from_record(cache, ref, r) for ref, r in cache.snapshot("host")]
    out.sort(key=lambda h: h.name_label.lower())
    return out


def srs(cache: Cache) -> list[Sr]:
    out = [Sr.from_record(cache, ref, r) for ref, r in cache.snapshot("sr")]
    out.sort(key=lambda s: s.name_label.lower())
    return out


def tasks(cache: Cache) -> list[Task]:
    out = [Task.from_record(ref, r) for ref, r in cache.snapshot("task")]
    out.sort(key=lambda t: t.created or datetime.min.replace(tzinfo=UTC), reverse=True)
    return out


def messages(cache: Cache) -> list[Message]:
    out = [Message.from_record(ref, r) for ref, r in cache.snapshot("message")]
    out.sort(key=lambda m: m.timestamp or datetime.min.replace(tzinfo=UTC), reverse=True)
    return out
