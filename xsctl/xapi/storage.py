"""What the storage views, the CLI and the planners all need to know about SRs and
their disks, derived from the cache: which VMs use a disk (and whether it is attached
now), which disks no VM uses, what an SR's row warns about.

The CLI and the TUI read these, so that ``xsctl vdi list --orphans`` and the Disks
view's filter agree on what an orphan is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xsctl.xapi.cache import Cache
from xsctl.xapi.models import NULL, Sr, Vbd, Vdi

# xapi's VDI types (datamodel ``vdi_type``) that hold a guest's data; the others
# (rrd, metadata, ha_statefile, redo_log, pvs_cache, cbt_metadata, suspend,
# crashdump) belong to xapi and are never "used by no VM" in a way a user fixes
GUEST_TYPES = frozenset({"user", "system", "ephemeral"})

NEARLY_FULL = 0.9  # an SR's usage from which its row warns


@dataclass(frozen=True, slots=True)
class Use:
    """One VM's use of a disk, through one VBD."""

    vm: str  # the VM's ref
    vm_name: str
    vbd: str
    device: str  # the position: userdevice ("0") and device ("xvda") when known
    mode: str  # "RW" or "RO"
    attached: bool  # currently_attached: plugged into the running guest now
    power_state: str
    is_snapshot: bool  # the user is a snapshot (its disk is kept for it)
    is_template: bool
    is_control_domain: bool


def uses(cache: Cache, vdi: Vdi) -> list[Use]:
    """Each VM that has a VBD of this disk, attached ones first."""
    out = []
    for vbd_ref in vdi.VBDs:
        r = cache.get("vbd", vbd_ref)
        if r is None:
            continue
        vbd = Vbd.from_record(vbd_ref, r)
        vr = cache.get("vm", vbd.VM) if vbd.VM != NULL else None
        if vr is None:
            continue
        position = vbd.userdevice + (f" ({vbd.device})" if vbd.device else "")
        out.append(Use(
            vm=vbd.VM, vm_name=str(vr.get("name_label", "")), vbd=vbd_ref,
            device=position, mode=vbd.mode, attached=vbd.currently_attached,
            power_state=str(vr.get("power_state", "")),
            is_snapshot=bool(vr.get("is_a_snapshot")),
            is_template=bool(vr.get("is_a_template")) and not vr.get("is_a_snapshot"),
            is_control_domain=bool(vr.get("is_control_domain")),
        ))
    out.sort(key=lambda u: (not u.attached, u.is_snapshot, u.vm_name.lower()))
    return out


def attached(cache: Cache, vdi: Vdi) -> list[Use]:
    return [u for u in uses(cache, vdi) if u.attached]


def _suspend_images(cache: Cache) -> set[str]:
    return {str(r.get("suspend_VDI")) for _, r in cache.snapshot("vm")
            if r.get("suspend_VDI") not in (None, "", NULL)}


def is_iso_sr(cache: Cache, sr: str) -> bool:
    r = cache.get("sr", sr)
    return r is not None and r.get("content_type") == "iso"


class Orphans:
    """Which disks no VM uses: a guest disk (not an ISO, not xapi's own) with no VBD
    to any VM, snapshot or template, and not a suspended VM's memory image. Built once
    per refresh: the suspend images are read from every VM once, not per disk."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.suspend = _suspend_images(cache)

    def __call__(self, vdi: Vdi) -> bool:
        if vdi.type not in GUEST_TYPES or not vdi.managed or vdi.ref in self.suspend:
            return False
        if is_iso_sr(self.cache, vdi.SR):
            return False
        return not uses(self.cache, vdi)


def is_orphan(cache: Cache, vdi: Vdi) -> bool:
    return Orphans(cache)(vdi)


def disks(cache: Cache, sr: str | None = None, *, hidden: bool = False) -> list[Vdi]:
    """The disks of one SR (or of all), sorted by SR then name. xapi's hidden
    snapshot-chain leaves (managed=false) are left out unless ``hidden``."""
    out = []
    for ref, r in cache.snapshot("vdi"):
        if sr is not None and r.get("SR") != sr:
            continue
        if not hidden and not r.get("managed", True):
            continue
        out.append(Vdi.from_record(cache, ref, r))
    out.sort(key=lambda v: (v.sr_name.lower(), v.name_label.lower(), v.uuid))
    return out


def orphan_counts(cache: Cache) -> dict[str, int]:
    """SR ref -> how many of its disks no VM uses."""
    test = Orphans(cache)
    out: dict[str, int] = {}
    for vdi in disks(cache):
        if test(vdi):
            out[vdi.SR] = out.get(vdi.SR, 0) + 1
    return out


def host_names(cache: Cache, refs: Iterable[str]) -> list[str]:
    return sorted(str((cache.get("host", h) or {}).get("name_label", "")) for h in refs)


def problems(cache: Cache, sr: Sr) -> list[str]:
    """What an SR's row warns about: nearly full, or not plugged on a host that should
    see it (every host for a shared SR, its own host for a local one)."""
    out = []
    # an ISO library or a host's drives are read-only: full is what they are
    writable = sr.content_type != "iso" and sr.type != "udev"
    if writable and sr.physical_size > 0 and sr.usage >= NEARLY_FULL:
        out.append(f"{round(sr.usage * 100)}% full")
    if sr.PBDs:
        unplugged = [h for h in sr.pbd_hosts if h not in sr.hosts]
        if sr.shared:
            every = [ref for ref, _ in cache.snapshot("host")]
            unplugged += [h for h in every if h not in sr.pbd_hosts]
        if unplugged and not sr.hosts:
            out.append("detached")
        elif unplugged:
            out.append("unplugged on " + ", ".join(host_names(cache, unplugged)))
    elif not sr.is_tools_sr:
        out.append("detached")
    return out

