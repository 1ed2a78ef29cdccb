"""What the profiling tools need from xapi: a host's domains as VMs (domid and
name), a VM's disks (its tapdisks serve them), a VM named as an ``xe`` user names it."""

from __future__ import annotations

from xsctl.profiling.sessions import PerfTarget
from xsctl.profiling.xentop import VmOnHost
from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import NULL, Vm
from xsctl.xapi.text import printable

Domains = tuple[dict[int, VmOnHost], dict[str, list[VmOnHost]]]


def vms_on_host(cache: Cache, host: str) -> Domains:
    """The VMs with a domain on ``host`` (running or paused), by domid and by name;
    dom0 under ``Domain-0`` too, the name xl and xentop give it."""
    by_id: dict[int, VmOnHost] = {}
    by_name: dict[str, list[VmOnHost]] = {}
    for ref, r in cache.snapshot("vm"):
        if r.get("resident_on") != host or r.get("power_state") not in ("Running", "Paused"):
            continue
        control = bool(r.get("is_control_domain"))
        vm = VmOnHost(ref, str(r.get("name_label", "")), control, str(r.get("uuid", "")))
        try:
            domid = int(r.get("domid", -1))
        except (TypeError, ValueError):
            domid = -1
        if domid >= 0:
            by_id[domid] = vm
        by_name.setdefault("Domain-0" if control else vm.name, []).append(vm)
    return by_id, by_name


def vm_vdis(cache: Cache, vm: str) -> tuple[str, ...]:
    """The UUIDs of the disks attached to ``vm`` (what its tapdisks serve)."""
    out = []
    for vbd in (cache.get("vm", vm) or {}).get("VBDs") or ():
        b = cache.get("vbd", vbd) or {}
        vdi = b.get("VDI")
        if not b.get("currently_attached") or not vdi or vdi == NULL:
            continue
        uuid = (cache.get("vdi", vdi) or {}).get("uuid")
        if uuid:
            out.append(str(uuid))
    return tuple(out)


def perf_target(cache: Cache, host: str, vm_ref: str | None, kind: str) -> PerfTarget:
    """``host``, or ``qemu``/``tapdisk`` of the VM ``vm_ref``, which must have its domain
    on ``host``: domain IDs are each host's own, and another host's domid N is some
    other VM here."""
    if kind == "host" or vm_ref is None:
        return PerfTarget()
    vm = Vm.get(cache, vm_ref)
    name = printable(vm.name_label) if vm else vm_ref
    if vm is None or vm.resident_on != host or vm.power_state not in ("Running", "Paused"):
        where = printable(vm.host_name) if vm is not None and vm.host_name else ""
        raise UsageError(f"{name} has no domain on this host"
                         + (f" (it runs on {where})" if where else " (it is not running)"))
    domid = vm.domid if vm.domid >= 0 else None
    if kind == "qemu":
        return PerfTarget("qemu", domid, (), f"{name}'s qemu")
    return PerfTarget("tapdisk", domid, vm_vdis(cache, vm_ref), f"{name}'s tapdisks")
