"""What the storage views, the CLI and the planners all need to know about SRs and
their disks, derived from the cache: which VMs use a disk (and whether it is attached
now), which disks no VM uses, what an SR's row warns about.

The CLI and the TUI read these, so that ``xsctl vdi list --orphans`` and the Disks
view's filter agree on what an orphan is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xsctl.xapi.cache import Cache, Change, Record
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
        return _orphan(self.cache, vdi.ref, vdi.type, vdi.managed, vdi.SR, vdi.VBDs,
                       self.suspend)


def _used(cache: Cache, vbds: Iterable[str]) -> bool:
    """Some VM (a snapshot and a template count) has one of these VBDs: what
    :func:`uses` lists, without building its entries."""
    for ref in vbds:
        r = cache.get("vbd", ref)
        if r is not None:
            vm = r.get("VM", NULL)
            if vm != NULL and cache.get("vm", str(vm)) is not None:
                return True
    return False


def _orphan(cache: Cache, ref: str, type: str, managed: bool, sr: str, vbds: Iterable[str],
            suspend: Collection[str]) -> bool:
    """The one rule of :class:`Orphans`, on a model's fields or a record's."""
    if type not in GUEST_TYPES or not managed or ref in suspend or is_iso_sr(cache, sr):
        return False
    return not _used(cache, vbds)


def _record_is_orphan(cache: Cache, ref: str, r: Record, suspend: Collection[str]) -> bool:
    """:class:`Orphans` on a record, not a model (the index below tests thousands)."""
    return _orphan(cache, ref, str(r.get("type", "")), bool(r.get("managed", True)),
                   str(r.get("SR", NULL)), r.get("VBDs") or (), suspend)


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


# the fields of a VM whose change can change a row of one of its disks: who uses it,
# under which name, and whether it holds a suspended VM's memory
_VM_FIELDS = ("name_label", "VBDs", "suspend_VDI", "power_state", "is_a_snapshot",
              "is_a_template", "is_control_domain")


def _refs(r: Record | None, field: str) -> list[str]:
    if r is None:
        return []
    v = r.get(field)
    if isinstance(v, str):
        return [] if v in ("", NULL) else [v]
    return [str(x) for x in v or ()]


def _differ(c: Change, fields: Iterable[str]) -> bool:
    old, new = c.old or {}, c.new or {}
    return any(old.get(f) != new.get(f) for f in fields)


class DiskIndex:
    """The disks (managed VDIs) with whether each is an orphan, and per SR how many
    disks and orphans it has, kept current from the cache's changes.

    A change says which disk rows and which SR rows it may have changed: a VBD made
    or destroyed, a VM renamed, started or deleted touch the few disks concerned, not
    a walk of every disk (20,000 of them next to 10,000 VMs)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.sr_of: dict[str, str] = {}  # disk ref -> its SR
        self.orphans: set[str] = set()
        self.counts: dict[str, list[int]] = {}  # SR ref -> [disks, orphans]
        self.suspend: dict[str, str] = {}  # suspend image's VDI -> its VM

    def load(self) -> None:
        cache = self.cache
        self.suspend = {str(r["suspend_VDI"]): ref for ref, r in cache.snapshot("vm")
                        if r.get("suspend_VDI") not in (None, "", NULL)}
        self.sr_of.clear()
        self.orphans.clear()
        self.counts.clear()
        for ref, r in cache.snapshot("vdi"):
            self._place(ref, r)

    def disks(self, sr: str) -> int:
        return self.counts.get(sr, [0, 0])[0]

    def orphans_on(self, sr: str) -> int:
        return self.counts.get(sr, [0, 0])[1]

    def _forget(self, ref: str) -> None:
        sr = self.sr_of.pop(ref, None)
        if sr is not None:
            n = self.counts[sr]
            n[0] -= 1
            if ref in self.orphans:
                self.orphans.discard(ref)
                n[1] -= 1

    def _place(self, ref: str, r: Record | None) -> None:
        """(Re)file one disk from its record (None: it is gone)."""
        self._forget(ref)
        if r is None or not r.get("managed", True):
            return
        sr = str(r.get("SR", NULL))
        self.sr_of[ref] = sr
        n = self.counts.setdefault(sr, [0, 0])
        n[0] += 1
        if _record_is_orphan(self.cache, ref, r, self.suspend):
            self.orphans.add(ref)
            n[1] += 1

    def apply(self, changes: Iterable[Change]) -> tuple[set[str], set[str]]:
        """Take in a batch of changes; returns (the disks whose row may have changed,
        the SRs whose row may have changed)."""
        cache = self.cache
        disks: set[str] = set()
        srs: set[str] = set()
        for c in changes:
            if c.cls == "vdi":
                disks.add(c.ref)
                for r in (c.old, c.new):
                    # a snapshot names its parent, a parent counts its snapshots
                    disks.update(_refs(r, "snapshot_of"))
                    srs.update(_refs(r, "SR"))
                if c.op == "mod" and _differ(c, ("name_label",)):
                    disks.update(_refs(c.new, "snapshots"))
            elif c.cls == "vbd":
                disks.update(_refs(c.old, "VDI") + _refs(c.new, "VDI"))
            elif c.cls == "vm":
                if c.op == "mod" and not _differ(c, _VM_FIELDS):
                    continue
                for r in (c.old, c.new):
                    for vbd in _refs(r, "VBDs"):
                        disks.update(_refs(cache.get("vbd", vbd), "VDI"))
                    for vdi in _refs(r, "suspend_VDI"):
                        disks.add(vdi)
                        self.suspend.pop(vdi, None)
                for vdi in _refs(c.new, "suspend_VDI"):
                    self.suspend[vdi] = c.ref
            elif c.cls == "sr":
                srs.add(c.ref)
                if c.op != "mod" or _differ(c, ("name_label", "PBDs", "shared",
                                                "content_type")):
                    # its disks show its name (and whether it is an ISO library)
                    disks.update(_refs(c.old, "VDIs") + _refs(c.new, "VDIs"))
            elif c.cls == "pbd":
                for r in (c.old, c.new):
                    srs.update(_refs(r, "SR"))
                if c.op != "mod":  # a local SR is named after its PBD's host
                    for sr in _refs(c.old, "SR") + _refs(c.new, "SR"):
                        disks.update(_refs(cache.get("sr", sr), "VDIs"))
            elif c.cls == "host":
                if c.op == "mod" and not _differ(c, ("name_label",)):
                    continue
                # local SRs are named after their host; shared ones warn about hosts
                srs.update(ref for ref, _ in cache.snapshot("sr"))
                for pbd in _refs(c.old, "PBDs") + _refs(c.new, "PBDs"):
                    for sr in _refs(cache.get("pbd", pbd), "SR"):
                        disks.update(_refs(cache.get("sr", sr), "VDIs"))
            elif c.cls == "pool" and (c.op != "mod" or _differ(c, ("default_SR",))):
                for r in (c.old, c.new):
                    srs.update(_refs(r, "default_SR"))
        for ref in disks:
            before = (self.sr_of.get(ref), ref in self.orphans)
            self._place(ref, cache.get("vdi", ref))
            after = (self.sr_of.get(ref), ref in self.orphans)
            if before != after:
                srs.update(s for s in (before[0], after[0]) if s is not None)
        return disks, srs


SECRET_WORDS = ("password", "secret")
MASK = "••••••"


def masked_config(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A PBD's device_config for people to read, sorted, with the values of secret keys
    (cifspassword, chappassword, incoming_chappassword, password_secret, ...) masked:
    a screen, a screenshot or a terminal's scroll-back is no place for them."""
    out = []
    for k, v in sorted(config.items()):
        key = str(k)
        secret = any(w in key.lower() for w in SECRET_WORDS)
        out.append((key, MASK if secret else str(v)))
    return out
