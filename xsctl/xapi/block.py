"""Block devices of VMs: what a disk attach may use and why not, read from the cache.

The rules are xapi's, told in advance: device positions as
``Xapi_vm_helpers.allowed_VBD_devices`` computes them, the VDI sharing checks of
``Xapi_vbd_helpers.valid_operations`` (a disk attached read-write to a running VM is
in use unless sharable), the read-only rules of ``Xapi_vbd.create`` (VDI_READONLY) and
``Xapi_vbd.plug`` (CA-83260: an HVM guest takes no read-only disk), and the hot-plug
rule of ``Xapi_vbd_helpers`` (an HVM guest needs its PV drivers, or to say it can
hot-plug). A disk attached to a control domain for inspection is tagged, so that a
later run finds one an interrupted run left behind.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.models import Sr, Vbd, Vdi, Vm, as_int
from xsctl.xapi.storage import GUEST_TYPES, Use, some, uses

# VBD.other_config key of an inspection attach: "<machine>/<pid>/<start>" for the
# app (detached when it exits), "cli/<machine>" for one the CLI leaves on purpose
TAG = "xsctl-inspect"
KEPT = "cli"


# ------------------------------------------------------------------ positions


def _disk_number(name: str) -> int | None:
    """A position as xapi writes it: "3" or a Linux name (xvdd, hdd). An sd name is
    a SCSI device, which takes no position (Device_number: Scsi disks are neither
    the Xen nor the IDE disks that positions count)."""
    if name.isdigit():
        return int(name)
    for prefix in ("xvd", "hd"):
        if name.startswith(prefix):
            letters = name[len(prefix):].rstrip("0123456789")
            if letters and letters.isalpha() and letters.islower():
                n = 0
                for c in letters:
                    n = n * 26 + (ord(c) - ord("a") + 1)
                return n - 1
    return None


def linux_name(position: str | int) -> str:
    """The name the guest sees for a position (3 -> xvdd), as xenopsd names it."""
    n = int(position) + 1
    letters = ""
    while n > 0:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return "xvd" + letters


def allowed_positions(cache: Cache, vm: Vm) -> list[str]:
    """The free device positions, as VM.get_allowed_VBD_devices answers
    (Xapi_vm_helpers.allowed_VBD_devices): 0 to 254 (255 for a PV control domain),
    less those the VM's VBDs use by number or by name."""
    used: set[int] = set()
    for ref in vm.VBDs:
        r = cache.get("vbd", ref)
        if r is None:
            continue
        for f in ("userdevice", "device"):
            n = _disk_number(str(r.get(f) or ""))
            if n is not None:
                used.add(n)
    top = 255 if vm.is_control_domain and vm.domain_type != "hvm" else 254
    return [str(n) for n in range(top + 1) if n not in used]


# ------------------------------------------------------------------ the guest


def _guest_metrics(cache: Cache, vm: Vm) -> dict[str, object]:
    r = cache.get("vm", vm.ref) or {}
    return dict(cache.get("vm_guest_metrics", str(r.get("guest_metrics", ""))) or {})


def runs_hvm(cache: Cache, vm: Vm) -> bool:
    """Helpers.domain_type: the running domain's type, else the configured one."""
    r = cache.get("vm", vm.ref) or {}
    m = cache.get("vm_metrics", str(r.get("metrics", ""))) or {}
    current = str(m.get("current_domain_type") or "")
    if vm.power_state in ("Running", "Paused") and current not in ("", "unspecified"):
        return current == "hvm"
    return vm.domain_type == "hvm"


def says_no_hotplug(cache: Cache, vm: Vm) -> bool:
    """The running HVM guest's agent says it cannot hot-plug disks (xapi then
    refuses a plug with OPERATION_NOT_ALLOWED, not VM_MISSING_PV_DRIVERS)."""
    return (not vm.is_control_domain and runs_hvm(cache, vm)
            and str(_guest_metrics(cache, vm).get("can_use_hotplug_vbd")) == "no")


def hotplug_refusal(cache: Cache, vm: Vm) -> str | None:
    """Why devices cannot be hot-plugged into the running guest, or None
    (Xapi_vbd_helpers.valid_operations: an HVM guest must have PV drivers, or
    say it can hot-plug; PV and PVH guests always can)."""
    if vm.is_control_domain or not runs_hvm(cache, vm):
        return None
    gm = _guest_metrics(cache, vm)
    said = str(gm.get("can_use_hotplug_vbd") or "unspecified")
    if said == "no":
        return f"{vm.name_label}'s guest says it cannot hot-plug disks"
    pv = gm.get("PV_drivers_version") or {}
    has = isinstance(pv, dict) and str(pv.get("major", "")).isdigit() and str(
        pv.get("minor", "")).isdigit()
    if said == "yes" or gm.get("PV_drivers_detected") or has:
        return None
    return f"{vm.name_label} has no PV drivers, which hot-plugging a disk needs"


# ------------------------------------------------------------------ disks to attach


@dataclass(frozen=True, slots=True)
class Candidate:
    """A disk offered to a VM: ``reason`` says why it cannot be attached; ``read_only``
    why it can be attached read-only only (None: read-write too)."""

    vdi: Vdi
    sr: Sr | None
    reason: str | None
    read_only: str | None
    users: tuple[Use, ...]

    @property
    def label(self) -> str:
        return self.vdi.name_label


def _others(users: Iterable[Use], vm: Vm) -> list[Use]:
    """Who else has the disk attached now (the sharing check of valid_operations:
    an attached VBD, of a VM that is not suspended and not a control domain)."""
    return [u for u in users
            if u.vm != vm.ref and u.attached and not u.is_control_domain
            and u.power_state != "Suspended"]


def _sr(cache: Cache, ref: str, srs: dict[str, Sr | None]) -> Sr | None:
    if ref not in srs:
        srs[ref] = Sr.get(cache, ref)
    return srs[ref]


def sr_reachable(cache: Cache, vm: Vm, sr: Sr,
                 srs: dict[str, Sr | None] | None = None) -> str | None:
    """Why the VM cannot see the SR, or None: a running VM sees the SRs plugged on
    its host; a halted one needs the SR plugged somewhere, and a local SR on another
    host than its other local disks would pin it to two hosts."""
    if not sr.hosts:
        return f"{sr.display_name} is detached"
    if vm.power_state in ("Running", "Paused"):
        if vm.resident_on not in sr.hosts:
            return f"{sr.display_name} is not plugged on {vm.host_name or 'its host'}"
        return None
    if sr.shared or vm.is_control_domain:
        return None
    for d in vm.VBDs:
        r = cache.get("vbd", d)
        vr = cache.get("vdi", str(r.get("VDI"))) if r else None
        other = _sr(cache, str(vr.get("SR")), srs if srs is not None else {}) if vr else None
        if other is not None and not other.shared and other.hosts and not other.is_iso \
                and set(other.hosts).isdisjoint(sr.hosts):
            return (f"local to {sr.host_name}, while its disk {(vr or {}).get('name_label')} is "
                    f"local to {other.host_name}")
    return None


def read_only_reason(cache: Cache, vm: Vm, vdi: Vdi, sr: Sr | None,
                     others: list[Use], users: Iterable[Use] = ()) -> str | None:
    """Why the disk can be attached read-only only (VBD.create answers VDI_READONLY
    for a read-write VBD of a read-only disk; a disk another VM has attached is
    shared read-only, unless it is sharable). A suspended VM's disk too: xapi's
    sharing check passes it over, but the VM would resume onto a disk changed under
    it, its file systems' state in its saved memory no longer true."""
    if vdi.read_only:
        return "the disk is read-only"
    if sr is not None and (sr.is_iso or sr.is_tools_sr):
        return f"{sr.display_name} is read-only"
    if others and not vdi.sharable:
        return f"{some(sorted({u.vm_name for u in others}))} has it attached"
    asleep = sorted({u.vm_name for u in users if u.vm != vm.ref and u.power_state == "Suspended"
                     and not u.is_snapshot and not u.is_control_domain})
    if asleep and not vdi.sharable:
        return (f"{some(asleep)} is suspended with it, and would resume onto a changed "
                "disk")
    return None


def candidate(cache: Cache, vm: Vm, vdi: Vdi,
              srs: dict[str, Sr | None] | None = None) -> Candidate:
    """``srs``: the SRs read so far (an SR of 10,000 disks is costly to read each time)."""
    if srs is None:
        srs = {}
    sr = _sr(cache, vdi.SR, srs)
    users = tuple(uses(cache, vdi))
    others = _others(users, vm)
    ro = read_only_reason(cache, vm, vdi, sr, others, users)
    mine = [u for u in users if u.vm == vm.ref]
    reason: str | None = None
    if mine:
        reason = f"attached to it already, at position {mine[0].device}"
    elif vdi.type not in GUEST_TYPES:
        reason = f"xapi's own {vdi.type} disk"
    elif not vdi.managed or vdi.missing:
        reason = "not managed by xapi" if not vdi.managed else "missing from its SR"
    elif sr is not None and sr.is_iso:
        reason = "an ISO: insert it into a CD drive"
    elif sr is not None and sr.type == "udev":
        reason = "a host's removable drive"
    elif vdi.is_a_snapshot and not vm.is_control_domain:
        reason = "a snapshot: revert to it, or make a VM of it"
    elif users and all(u.is_template for u in users) and not vm.is_control_domain:
        reason = f"the disk of template {users[0].vm_name}: make a VM of it instead"
    elif vm.is_control_domain and any(u.mode == "RW" for u in others):
        # xapi lets a control domain have it (its sharing check exempts system
        # domains), but both would write: look at a snapshot of it instead
        rw = sorted({u.vm_name for u in others if u.mode == "RW"})
        reason = (f"{some(rw)} has it attached read-write and running: look inside a "
                  "snapshot of it instead")
    elif any(u.mode == "RW" for u in others) and not vdi.sharable:
        rw = sorted({u.vm_name for u in others if u.mode == "RW"})
        reason = f"in use: {some(rw)} has it attached read-write"
    elif any(op for op in vdi.current_operations if op not in ("copy", "mirror")):
        reason = f"busy ({vdi.current_operations[0]})"
    elif sr is not None:
        reason = sr_reachable(cache, vm, sr, srs)
    if reason is None and ro is not None and runs_hvm(cache, vm) and not vm.is_control_domain:
        reason = f"read-only here ({ro}), and an HVM guest takes disks read-write only"
    return Candidate(vdi, sr, reason, ro, users)


def listed(cache: Cache, r: Mapping[str, Any]) -> bool:
    """Whether a disk is offered at all: not an ISO (a CD drive's business), not
    xapi's own (suspend images, metadata) nor a hidden node of a snapshot chain."""
    sr = cache.get("sr", str(r.get("SR")))
    if sr is not None and sr.get("content_type") == "iso":
        return False
    return r.get("type") in GUEST_TYPES and bool(r.get("managed", True))


def candidates(cache: Cache, vm: Vm) -> list[Candidate]:
    """Every disk of the pool, for ``vm``: those it can take first, by name."""
    out = []
    srs: dict[str, Sr | None] = {}
    for ref, r in cache.snapshot("vdi"):
        if listed(cache, r):
            out.append(candidate(cache, vm, Vdi.from_record(cache, ref, r), srs))
    out.sort(key=lambda c: (c.reason is not None, c.vdi.name_label.lower()))
    return out


# ------------------------------------------------------------------ CD drives


def cd_drives(cache: Cache, vm: Vm) -> list[Vbd]:
    out = []
    for ref in vm.VBDs:
        r = cache.get("vbd", ref)
        if r is not None and r.get("type") == "CD":
            out.append(Vbd.from_record(ref, r))
    out.sort(key=lambda v: as_int(v.userdevice, 99))
    return out


def isos(cache: Cache) -> list[Vdi]:
    """Every ISO of every ISO SR (the physical drives' discs too), by name."""
    out = []
    for ref, r in cache.snapshot("vdi"):
        sr = cache.get("sr", str(r.get("SR")))
        if sr is not None and sr.get("content_type") == "iso" and r.get("managed", True):
            out.append(Vdi.from_record(cache, ref, r))
    out.sort(key=lambda v: v.name_label.lower())
    return out


def iso_reason(cache: Cache, vm: Vm, vdi: Vdi) -> str | None:
    sr = Sr.get(cache, vdi.SR)
    if sr is None:
        return "its SR is gone"
    return sr_reachable(cache, vm, sr)


# ------------------------------------------------------------------ control domains


def control_domain(cache: Cache, host: str) -> Vm | None:
    for ref, r in cache.snapshot("vm"):
        if r.get("is_control_domain") and r.get("resident_on") == host:
            return Vm.from_record(cache, ref, r)
    return None


def control_domains(cache: Cache) -> list[Vm]:
    out = [Vm.from_record(cache, ref, r) for ref, r in cache.snapshot("vm")
           if r.get("is_control_domain")]
    out.sort(key=lambda v: v.host_name)
    return out


def _machine() -> str:
    try:
        with open("/etc/machine-id") as f:
            mid = f.read().strip()[:12]
    except OSError:
        mid = ""
    return f"{socket.gethostname()}:{mid}" if mid else socket.gethostname()


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22):
    with the pid, it names one process even after the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return ""
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def owner_tag(pid: int | None = None) -> str:
    """The tag of an inspection attach made by this process (detached when it ends)."""
    pid = os.getpid() if pid is None else pid
    return f"{_machine()}/{pid}/{_start_time(pid)}"


def kept_tag() -> str:
    """The tag of one the CLI leaves attached on purpose (until block-detach)."""
    return f"{KEPT}/{_machine()}"


def tagged(cache: Cache) -> list[Vbd]:
    """Every VBD an inspection attach made."""
    return [Vbd.from_record(ref, r) for ref, r in cache.snapshot("vbd")
            if TAG in (r.get("other_config") or {})]


def is_stale(vbd: Vbd) -> bool:
    """Left behind by a run that ended without detaching it: made by a process of
    this machine that is gone, or a kept one that was never plugged (the CLI was
    stopped between VBD.create and VBD.plug)."""
    tag = str(vbd.other_config.get(TAG, ""))
    if tag.startswith(KEPT + "/"):
        return not vbd.currently_attached and tag == kept_tag()
    parts = tag.rsplit("/", 2)
    if len(parts) != 3:
        return False
    machine, pid, start = parts
    if machine != _machine() or not pid.isdigit():
        return False
    return _start_time(int(pid)) != start or not start


def stale(cache: Cache) -> list[Vbd]:
    return [v for v in tagged(cache) if is_stale(v)]


def mine(cache: Cache, tag: str) -> list[Vbd]:
    return [v for v in tagged(cache) if v.other_config.get(TAG) == tag]


def dom0_path(vbd: Vbd) -> str:
    """Where the disk appears in the control domain once plugged (/dev/xvdb)."""
    return f"/dev/{vbd.device}" if vbd.device else f"/dev/{linux_name(vbd.userdevice)}"
