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



# ------------------------------------------------------------------ what operations check

MiB = 1024**2
GiB = 1024**3
# SR types whose disks are VHDs and how big one may be (sm vhdutil.MAX_VHD_SIZE)
VHD_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba", "ext", "nfs", "smb", "file"})
MAX_VHD = 2040 * GiB
# thick-provisioned types: a disk takes its whole size at once (LVHD)
THICK_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba"})


def sm_features(cache: Cache, sr_type: str) -> frozenset[str] | None:
    """The SM driver's features for an SR type (``VDI_RESIZE_ONLINE``, ...), as
    Xapi_sr_operations.features_of_sr reads them; None when the cache has no SM
    records (a reader that did not load them cannot tell)."""
    rows = cache.snapshot("sm")
    if not rows:
        return None
    for _, r in rows:
        if r.get("type") == sr_type:
            names = r.get("features") or dict.fromkeys(r.get("capabilities") or ())
            return frozenset(str(k).split("/")[0] for k in names)
    return frozenset()


def is_thick(cache: Cache, sr: Sr) -> bool:
    """A disk takes its whole size at creation (LVHD unless sm_config says thin)."""
    sm_config = (cache.get("sr", sr.ref) or {}).get("sm_config") or {}
    return sr.type in THICK_TYPES and sm_config.get("allocation", "thick") != "thin"


def _roundup(quantum: int, n: int) -> int:
    return -(-n // quantum) * quantum


def thick_size(virtual_size: int) -> int:
    """The logical volume LVHD allocates for a disk of this size: the size, VHD
    metadata sized for 2 TiB (so that it can grow without moving) and a 4 KiB
    bitmap per 2 MiB block, in 4 MiB extents (sm's lvhdutil.calcSizeVHDLV)."""
    size_mb = 2 * 1024 * 1024  # 2 TiB in MiB
    header = _roundup(512, 3 * 1024 + (size_mb // 2) * 4)
    header = _roundup(4096, header + (size_mb // 2) // 8)
    bitmaps = -(-virtual_size // (2 * MiB)) * 4096
    return _roundup(4 * MiB, virtual_size + header + bitmaps)


def running_on(cache: Cache, sr: Sr) -> list[Use]:
    """The uses of the SR's disks by a domain now (attached VBDs): each one stops
    PBD.unplug with VDI_IN_USE (xapi_pbd.ml get_active_vdis_by_pbd)."""
    out = []
    for ref in sr.VDIs:
        r = cache.get("vdi", ref)
        if r is not None:
            out += attached(cache, Vdi.from_record(cache, ref, r))
    return out


def live_holders(cache: Cache, sr: Sr) -> list[str]:
    """Names of the VMs that are not halted and hold a disk or their memory image on
    the SR (running, paused or suspended): forgetting or destroying it would take
    their disks away under them."""
    on_sr = set(sr.VDIs)
    out: set[str] = set()
    for _, r in cache.snapshot("vm"):
        if r.get("power_state") in (None, "Halted") or r.get("is_control_domain"):
            continue
        if r.get("suspend_VDI") in on_sr:
            out.add(str(r.get("name_label", "")))
            continue
        for vbd in r.get("VBDs") or ():
            b = cache.get("vbd", vbd)
            if b is not None and b.get("VDI") in on_sr:
                out.add(str(r.get("name_label", "")))
                break
    for u in running_on(cache, sr):
        out.add(u.vm_name)
    return sorted(out, key=str.lower)


def some(names: list[str], n: int = 3) -> str:
    """``a, b and c`` or ``a, b, c and 4 more``."""
    if len(names) <= 1:
        return "".join(names)
    if len(names) <= n:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return ", ".join(names[:n]) + f" and {len(names) - n} more"
