"""Networks as people read them: what each is (a NIC's, a VLAN, a bond, internal to
the hosts), its PIF on each host, and the VMs attached through VIFs.

A network is what its PIFs make it (xapi keeps no type): none, and it is internal
(host-only, like XenCenter's "single-server private network"); PIFs that are VLANs
(``VLAN`` >= 0), and it is a VLAN; bond masters (``bond_master_of`` non-empty), a
bond; physical ones, a NIC's network. xapi's host-internal management network
(``other_config:is_host_internal_management_network``) is the system's own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.models import NULL, as_int, is_guest, is_template
from xsctl.xapi.text import printable

INTERNAL = "internal"
NIC = "NIC"
VLAN = "VLAN"
BOND = "bond"
SYSTEM = "system"

BOND_MODES = ("balance-slb", "active-backup", "lacp")
MAX_TAG = 4094  # xapi_vlan.ml: 4095 is reserved by 802.1Q


def _text(v: Any) -> str:
    return printable(str(v if v is not None else ""))


@dataclass(frozen=True, slots=True)
class Pif:
    """A host's link to a network."""

    ref: str
    uuid: str
    host: str
    host_name: str
    device: str
    VLAN: int  # the tag, -1 for none
    physical: bool
    currently_attached: bool
    management: bool
    MTU: int
    IP: str
    ip_mode: str
    bonded: bool  # a member of a bond (bond_slave_of)
    bond: str  # the Bond it is the master of, or NULL
    bond_uuid: str
    bond_mode: str
    bond_members: tuple[str, ...]  # the members' devices
    vlan: str  # the VLAN it is the untagged PIF of, or NULL
    tagged_device: str  # the device under the VLAN

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Pif:
        host = str(r.get("host", NULL))
        masters = [b for b in r.get("bond_master_of") or () if b != NULL]
        bond = masters[0] if masters else NULL
        b = cache.get("bond", bond) or {}
        members = []
        for m in b.get("slaves") or ():
            mr = cache.get("pif", m)
            if mr is not None:
                members.append(_text(mr.get("device")))
        vlan = str(r.get("VLAN_master_of", NULL))
        v = cache.get("vlan", vlan) or {}
        tagged = cache.get("pif", str(v.get("tagged_PIF", NULL))) or {}
        slave_of = str(r.get("bond_slave_of", NULL))
        return cls(
            ref=ref, uuid=_text(r.get("uuid")), host=host,
            host_name=_text((cache.get("host", host) or {}).get("name_label", "")),
            device=_text(r.get("device")), VLAN=as_int(r.get("VLAN"), -1),
            physical=bool(r.get("physical")),
            currently_attached=bool(r.get("currently_attached")),
            management=bool(r.get("management")), MTU=as_int(r.get("MTU")),
            IP=_text(r.get("IP")), ip_mode=_text(r.get("ip_configuration_mode")),
            bonded=slave_of != NULL and cache.get("bond", slave_of) is not None,
            bond=bond, bond_uuid=_text(b.get("uuid")), bond_mode=_text(b.get("mode")), bond_members=tuple(sorted(members)),
            vlan=vlan if v else NULL, tagged_device=_text(tagged.get("device")),
        )

    @property
    def shown_device(self) -> str:
        """``eth0``, ``eth0.100`` for a VLAN (as Linux names it), ``bond0``."""
        if self.VLAN >= 0:
            return f"{self.tagged_device or self.device}.{self.VLAN}"
        return self.device


@dataclass(frozen=True, slots=True)
class Attachment:
    """A VIF on the network: whose, which device, plugged or not."""

    vif: str
    vm: str
    vm_name: str
    device: str
    MAC: str
    currently_attached: bool
    what: str  # "VM", "template" or "snapshot"


@dataclass(frozen=True, slots=True)
class Network:
    ref: str
    uuid: str
    name_label: str
    name_description: str
    bridge: str
    MTU: int
    managed: bool
    system: bool
    pifs: tuple[Pif, ...]  # by host name
    VIFs: tuple[str, ...]

    @classmethod
    def from_record(cls, cache: Cache, ref: str, r: Record) -> Network:
        pifs = [Pif.from_record(cache, p, pr) for p in r.get("PIFs") or ()
                if (pr := cache.get("pif", p)) is not None]
        pifs.sort(key=lambda p: (p.host_name.lower(), p.device))
        oc = r.get("other_config") or {}
        return cls(
            ref=ref, uuid=_text(r.get("uuid")), name_label=_text(r.get("name_label")),
            name_description=_text(r.get("name_description")), bridge=_text(r.get("bridge")),
            MTU=as_int(r.get("MTU")), managed=bool(r.get("managed", True)),
            system=str(oc.get("is_host_internal_management_network", "")).lower() == "true",
            pifs=tuple(pifs), VIFs=tuple(r.get("VIFs") or ()),
        )

    @classmethod
    def get(cls, cache: Cache, ref: str) -> Network | None:
        r = cache.get("network", ref)
        return None if r is None else cls.from_record(cache, ref, r)

    @property
    def kind(self) -> str:
        if self.system:
            return SYSTEM
        if not self.pifs:
            return INTERNAL
        if any(p.VLAN >= 0 for p in self.pifs):
            return VLAN
        if any(p.bond != NULL for p in self.pifs):
            return BOND
        return NIC

    @property
    def kind_text(self) -> str:
        return {INTERNAL: "internal", NIC: "NIC", VLAN: "VLAN", BOND: "bond",
                SYSTEM: "xapi's"}[self.kind]

    @property
    def tags(self) -> tuple[int, ...]:
        return tuple(sorted({p.VLAN for p in self.pifs if p.VLAN >= 0}))

    @property
    def bond_modes(self) -> tuple[str, ...]:
        return tuple(sorted({p.bond_mode for p in self.pifs if p.bond != NULL and p.bond_mode}))

    @property
    def management(self) -> bool:
        """The management interface of some host is on it."""
        return any(p.management for p in self.pifs)

    @property
    def devices(self) -> tuple[str, ...]:
        """The NIC each host reaches it through (``eth0``, ``eth0.100``, ``bond0``),
        once each."""
        return tuple(dict.fromkeys(p.shown_device for p in self.pifs))

    @property
    def bonded(self) -> bool:
        """Its NICs are members of a bond (they carry nothing of their own)."""
        return bool(self.pifs) and all(p.bonded for p in self.pifs)

    @property
    def display_name(self) -> str:
        return self.name_label or self.bridge or self.uuid

    def vlan_base(self) -> Pif | None:
        """A PIF a VLAN can go on (xapi_vlan.ml: not a VLAN, not a bond member),
        or None."""
        for p in self.pifs:
            if p.VLAN < 0 and not p.bonded:
                return p
        return None


def networks(cache: Cache) -> list[Network]:
    out = [Network.from_record(cache, ref, r) for ref, r in cache.snapshot("network")]
    out.sort(key=lambda n: n.display_name.lower())
    return out


def attachments(cache: Cache, net: Network) -> list[Attachment]:
    """The VIFs on the network, VMs first, by name and device."""
    out = []
    for vif in net.VIFs:
        r = cache.get("vif", vif)
        if r is None:
            continue
        vm_ref = str(r.get("VM", NULL))
        vm = cache.get("vm", vm_ref) or {}
        if vm.get("is_control_domain"):
            continue
        what = ("VM" if is_guest(vm) else "snapshot" if vm.get("is_a_snapshot")
                else "template" if is_template(vm) else "VM")
        out.append(Attachment(vif, vm_ref, _text(vm.get("name_label", "?")),
                              _text(r.get("device")), _text(r.get("MAC")),
                              bool(r.get("currently_attached")), what))
    out.sort(key=lambda a: (a.what != "VM", a.vm_name.lower(), as_int(a.device, 99)))
    return out


def vm_count(cache: Cache, net: Network) -> int:
    """How many VMs (not templates or snapshots) have a VIF on it."""
    return len({a.vm for a in attachments(cache, net) if a.what == "VM"})
