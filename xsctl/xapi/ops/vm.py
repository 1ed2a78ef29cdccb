"""VM operations: validate against the cache, then plan.

The power-state rules mirror xapi's (ocaml/xapi/xapi_vm_lifecycle.ml
``allowed_power_states``) so that a refusal here reads exactly like xapi's own
VM_BAD_POWER_STATE [vm, expected, actual]; ``allowed_operations`` stays the final word.
"""

from __future__ import annotations

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XapiError
from xsctl.xapi.models import NULL, Host, Vm, human_bytes, parse_size
from xsctl.xapi.ops.base import Call, Plan, Result, xe
from xsctl.xapi.ops.resolve import resolve_host, resolve_sr, resolve_vm

# operation -> power states it is allowed in (lower-case, xapi's order)
ALLOWED_STATES: dict[str, tuple[str, ...]] = {
    "start": ("halted",),
    "start_on": ("halted",),
    "clean_shutdown": ("running",),
    "hard_shutdown": ("paused", "suspended", "running"),
    "clean_reboot": ("running",),
    "hard_reboot": ("paused", "running"),
    "suspend": ("running",),
    "resume": ("suspended",),
    "resume_on": ("suspended",),
    "pause": ("running",),
    "unpause": ("paused",),
    "pool_migrate": ("running",),
    "clone": ("halted", "suspended"),
    "copy": ("halted", "suspended"),
    "destroy": ("halted", "suspended"),
    "changing_memory_limits": ("halted",),
    "changing_VCPUs": ("halted",),
    "changing_static_range": ("halted",),
    "changing_dynamic_range": ("halted", "running"),
}


# xapi_vm_lifecycle.ml ignored_ops that xsctl calls: xapi checks them when they are
# called but never lists them in allowed_operations, so their absence proves nothing.
NEVER_LISTED = frozenset({"changing_memory_limits", "changing_VCPUs"})


def vm_of(cache: Cache, spec_or_ref: str) -> Vm:
    ref = spec_or_ref if spec_or_ref.startswith("OpaqueRef:") else resolve_vm(cache, spec_or_ref)
    vm = Vm.get(cache, ref)
    if vm is None:
        raise XapiError("HANDLE_INVALID", ["VM", ref])
    return vm


def check_allowed(vm: Vm, op: str) -> None:
    """Raise the error xapi would raise if ``op`` is not in allowed_operations."""
    if op in vm.allowed_operations:
        return
    if op in vm.blocked_operations:
        raise XapiError("OPERATION_BLOCKED", [vm.ref, vm.blocked_operations[op]])
    if vm.is_a_template and not vm.is_a_snapshot:
        raise XapiError("VM_IS_TEMPLATE", [vm.ref, op])
    if vm.is_a_snapshot:
        raise XapiError("VM_IS_SNAPSHOT", [vm.ref, op])
    states = ALLOWED_STATES.get(op)
    actual = vm.power_state.lower()
    if states is not None and actual not in states:
        raise XapiError("VM_BAD_POWER_STATE", [vm.ref, ", ".join(states), actual])
    if vm.current_operations:
        task, running = next(iter(vm.current_operations.items()))
        raise XapiError("OTHER_OPERATION_IN_PROGRESS", ["VM", vm.ref, running, task])
    if vm.is_control_domain:
        raise XapiError("OPERATION_NOT_ALLOWED", ["This operation is not allowed on a control domain"])
    if op in NEVER_LISTED:
        return
    if op in ("clean_shutdown", "clean_reboot"):
        raise XapiError("VM_LACKS_FEATURE", [vm.ref])
    raise XapiError("OPERATION_NOT_ALLOWED", [f"{op} is not allowed on this VM now"])


def why_not(vm: Vm, op: str) -> str | None:
    """None if ``op`` is allowed, else the friendly reason (for disabled UI actions)."""
    try:
        check_allowed(vm, op)
    except XapiError as e:
        return e.friendly
    return None


def unreachable_sr(cache: Cache, vm: Vm, host_ref: str) -> str | None:
    """The first SR holding one of the VM's disks that ``host_ref`` cannot reach (no
    attached PBD there), as xapi's VM_REQUIRES_SR check finds it; None if all can."""
    from xsctl.xapi.models import vm_disks

    for d in vm_disks(cache, vm):
        if d.vdi is None or d.vbd.type != "Disk":
            continue
        sr = cache.get("sr", d.vdi.SR)
        if sr is None:
            continue
        attached = [
            p for p in (cache.get("pbd", r) for r in sr.get("PBDs") or ())
            if p and p.get("host") == host_ref and p.get("currently_attached")
        ]
        if not attached:
            return d.vdi.SR
    return None


def _host(cache: Cache, spec: str) -> Host:
    ref = resolve_host(cache, spec)
    host = Host.get(cache, ref)
    assert host is not None
    if not host.enabled:
        raise XapiError("HOST_DISABLED", [ref])
    return host


def _reachable(cache: Cache, vm: Vm, h: Host) -> None:
    sr = unreachable_sr(cache, vm, h.ref) if cache.all("pbd") else None
    if sr is not None:
        raise XapiError("VM_REQUIRES_SR", [vm.ref, sr])


def _plan(vm: Vm, title: str, action: str, calls: list[Call], xe_line: str,
          names: dict[str, str] | None = None, **kw: object) -> Plan:
    n = {vm.ref: vm.name_label, **(names or {})}
    return Plan(title=title, action=action, targets=(vm.ref,), calls=tuple(calls),
                xe=(xe_line,), names=n, **kw)  # type: ignore[arg-type]


def start(cache: Cache, spec: str, host: str | None = None, paused: bool = False) -> Plan:
    vm = vm_of(cache, spec)
    if host:
        h = _host(cache, host)
        check_allowed(vm, "start_on")
        _reachable(cache, vm, h)
        return _plan(vm, f"Start {vm.name_label} on {h.name_label}", "vm.start",
                     [Call("VM.start_on", (vm.ref, h.ref, paused, False), True)],
                     xe("vm-start", uuid=vm.uuid, on=h.name_label, paused=paused),
                     {h.ref: h.name_label})
    check_allowed(vm, "start")
    return _plan(vm, f"Start {vm.name_label}", "vm.start",
                 [Call("VM.start", (vm.ref, paused, False), True)],
                 xe("vm-start", uuid=vm.uuid, paused=paused))


def shutdown(cache: Cache, spec: str, force: bool = False) -> Plan:
    vm = vm_of(cache, spec)
    op = "hard_shutdown" if force else "clean_shutdown"
    try:
        check_allowed(vm, op)
    except XapiError as e:
        if not force and e.code == "VM_LACKS_FEATURE":
            raise XapiError(
                "VM_LACKS_FEATURE", e.params, method="VM.clean_shutdown"
            ) from None
        raise
    verb = "Force shut down" if force else "Shut down"
    return _plan(vm, f"{verb} {vm.name_label}", "vm.shutdown",
                 [Call(f"VM.{op}", (vm.ref,), True)],
                 xe("vm-shutdown", uuid=vm.uuid, force=force),
                 disruptive=True, destructive=force,
                 notes=("A forced shutdown is like pulling the power cord: unsaved data in the guest is lost.",) if force else ())


def reboot(cache: Cache, spec: str, force: bool = False) -> Plan:
    vm = vm_of(cache, spec)
    op = "hard_reboot" if force else "clean_reboot"
    check_allowed(vm, op)
    verb = "Force reboot" if force else "Reboot"
    return _plan(vm, f"{verb} {vm.name_label}", "vm.reboot",
                 [Call(f"VM.{op}", (vm.ref,), True)],
                 xe("vm-reboot", uuid=vm.uuid, force=force),
                 disruptive=True, destructive=force,
                 notes=("A forced reboot is like pressing reset: unsaved data in the guest is lost.",) if force else ())


def suspend(cache: Cache, spec: str) -> Plan:
    vm = vm_of(cache, spec)
    check_allowed(vm, "suspend")
    return _plan(vm, f"Suspend {vm.name_label}", "vm.suspend",
                 [Call("VM.suspend", (vm.ref,), True)], xe("vm-suspend", uuid=vm.uuid),
                 disruptive=True)


def resume(cache: Cache, spec: str, host: str | None = None, paused: bool = False) -> Plan:
    vm = vm_of(cache, spec)
    if host:
        h = _host(cache, host)
        check_allowed(vm, "resume_on")
        return _plan(vm, f"Resume {vm.name_label} on {h.name_label}", "vm.resume",
                     [Call("VM.resume_on", (vm.ref, h.ref, paused, False), True)],
                     xe("vm-resume", uuid=vm.uuid, on=h.name_label), {h.ref: h.name_label})
    check_allowed(vm, "resume")
    return _plan(vm, f"Resume {vm.name_label}", "vm.resume",
                 [Call("VM.resume", (vm.ref, paused, False), True)], xe("vm-resume", uuid=vm.uuid))


def pause(cache: Cache, spec: str) -> Plan:
    vm = vm_of(cache, spec)
    check_allowed(vm, "pause")
    return _plan(vm, f"Pause {vm.name_label}", "vm.pause",
                 [Call("VM.pause", (vm.ref,), True)], xe("vm-pause", uuid=vm.uuid),
                 disruptive=True)


def unpause(cache: Cache, spec: str) -> Plan:
    vm = vm_of(cache, spec)
    check_allowed(vm, "unpause")
    return _plan(vm, f"Unpause {vm.name_label}", "vm.unpause",
                 [Call("VM.unpause", (vm.ref,), True)], xe("vm-unpause", uuid=vm.uuid))


def migrate(cache: Cache, spec: str, host: str) -> Plan:
    vm = vm_of(cache, spec)
    h = _host(cache, host)
    if vm.resident_on == h.ref:
        raise UsageError(f"{vm.name_label} already runs on {h.name_label}")
    check_allowed(vm, "pool_migrate")
    _reachable(cache, vm, h)
    return _plan(vm, f"Migrate {vm.name_label} to {h.name_label}", "vm.migrate",
                 [Call("VM.pool_migrate", (vm.ref, h.ref, {"live": "true"}), True)],
                 xe("vm-migrate", uuid=vm.uuid, host=h.name_label), {h.ref: h.name_label},
                 disruptive=True)


# ---------------------------------------------------------------- beyond the lifecycle


def snapshot(cache: Cache, spec: str, name: str) -> Plan:
    vm = vm_of(cache, spec)
    if not name.strip():
        raise UsageError("a snapshot needs a name")
    check_allowed(vm, "snapshot")
    return _plan(vm, f"Snapshot {vm.name_label} as {name!r}", "vm.snapshot",
                 [Call("VM.snapshot", (vm.ref, name), True)],
                 xe("vm-snapshot", uuid=vm.uuid, new_name_label=name))


def revert(cache: Cache, spec: str, snapshot_spec: str) -> Plan:
    from xsctl.xapi.ops.resolve import resolve_snapshot

    vm = vm_of(cache, spec)
    snap_ref = snapshot_spec if snapshot_spec.startswith("OpaqueRef:") else resolve_snapshot(cache, snapshot_spec, vm.ref)
    snap = Vm.get(cache, snap_ref)
    if snap is None or snap.snapshot_of != vm.ref:
        raise UsageError(f"{snapshot_spec!r} is not a snapshot of {vm.name_label}")
    check_allowed(snap, "revert")
    return Plan(
        title=f"Revert {vm.name_label} to snapshot {snap.name_label!r}",
        action="vm.revert", targets=(vm.ref,),
        calls=(Call("VM.revert", (snap.ref,), True),),
        xe=(xe("snapshot-revert", snapshot_uuid=snap.uuid),),
        names={vm.ref: vm.name_label, snap.ref: snap.name_label},
        destructive=True,
        notes=(f"Changes to {vm.name_label}'s disks since the snapshot are lost.",),
    )


def clone(cache: Cache, spec: str, name: str) -> Plan:
    vm = vm_of(cache, spec)
    if not name.strip():
        raise UsageError("the clone needs a name")
    check_allowed(vm, "clone")
    return _plan(vm, f"Clone {vm.name_label} as {name!r}", "vm.clone",
                 [Call("VM.clone", (vm.ref, name), True)],
                 xe("vm-clone", uuid=vm.uuid, new_name_label=name))


def copy(cache: Cache, spec: str, name: str, sr: str | None = None) -> Plan:
    vm = vm_of(cache, spec)
    if not name.strip():
        raise UsageError("the copy needs a name")
    check_allowed(vm, "copy")
    sr_ref = resolve_sr(cache, sr) if sr else NULL
    names = {sr_ref: str((cache.get("sr", sr_ref) or {}).get("name_label", ""))} if sr else {}
    return _plan(vm, f"Copy {vm.name_label} as {name!r}", "vm.copy",
                 [Call("VM.copy", (vm.ref, name, sr_ref), True)],
                 xe("vm-copy", uuid=vm.uuid, new_name_label=name,
                    sr_uuid=(cache.get("sr", sr_ref) or {}).get("uuid") if sr else None), names)


def rename(cache: Cache, spec: str, name: str) -> Plan:
    vm = vm_of(cache, spec)
    if not name.strip():
        raise UsageError("the name cannot be empty")
    return _plan(vm, f"Rename {vm.name_label} to {name!r}", "vm.rename",
                 [Call("VM.set_name_label", (vm.ref, name))],
                 xe("vm-param-set", uuid=vm.uuid, name_label=name))


def set_memory(cache: Cache, spec: str, static_max: str, dynamic_min: str | None = None,
               dynamic_max: str | None = None) -> Plan:
    """Memory in xapi's four numbers; sizes like 2G or 2048M."""
    vm = vm_of(cache, spec)
    smax = parse_size(static_max)
    dmax = parse_size(dynamic_max) if dynamic_max else smax
    dmin = parse_size(dynamic_min) if dynamic_min else dmax
    smin = min(vm.memory_static_min, dmin)
    if not (smin <= dmin <= dmax <= smax):
        raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER", [])
    if smax < 16 * 1024**2:
        raise UsageError(f"{human_bytes(smax)} is too little memory for a VM (16 MiB at least)")
    if vm.power_state != "Halted":
        if smax != vm.memory_static_max:
            raise XapiError("VM_BAD_POWER_STATE", [vm.ref, "halted", vm.power_state.lower()])
        check_allowed(vm, "changing_dynamic_range")
        return _plan(vm, f"Set {vm.name_label}'s dynamic memory to {human_bytes(dmin)}–{human_bytes(dmax)}",
                     "vm.memory", [Call("VM.set_memory_dynamic_range", (vm.ref, str(dmin), str(dmax)))],
                     xe("vm-memory-dynamic-range-set", uuid=vm.uuid, min=dmin, max=dmax))
    check_allowed(vm, "changing_memory_limits")
    return _plan(vm, f"Set {vm.name_label}'s memory to {human_bytes(smax)}", "vm.memory",
                 [Call("VM.set_memory_limits", (vm.ref, str(smin), str(smax), str(dmin), str(dmax)))],
                 xe("vm-memory-limits-set", uuid=vm.uuid, static_min=smin, static_max=smax,
                    dynamic_min=dmin, dynamic_max=dmax))


def set_vcpus(cache: Cache, spec: str, count: int, max_count: int | None = None) -> Plan:
    vm = vm_of(cache, spec)
    vmax = max_count if max_count is not None else max(count, vm.VCPUs_max if vm.power_state != "Halted" else count)
    if count < 1 or vmax < count:
        raise XapiError("INVALID_VALUE", ["VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max", str(count)])
    if vm.power_state != "Halted":
        if vmax != vm.VCPUs_max or count > vm.VCPUs_max:
            raise XapiError("VM_BAD_POWER_STATE", [vm.ref, "halted", vm.power_state.lower()])
        check_allowed(vm, "changing_VCPUs_live")
        return _plan(vm, f"Set {vm.name_label} to {count} vCPUs (live)", "vm.vcpus",
                     [Call("VM.set_VCPUs_number_live", (vm.ref, str(count)))],
                     xe("vm-vcpu-hotplug", uuid=vm.uuid, new_vcpus=count))
    check_allowed(vm, "changing_VCPUs")
    calls: list[Call] = []
    # order matters: xapi checks at_startup <= max at every step
    if vmax >= vm.VCPUs_max:
        calls += [Call("VM.set_VCPUs_max", (vm.ref, str(vmax))),
                  Call("VM.set_VCPUs_at_startup", (vm.ref, str(count)))]
    else:
        calls += [Call("VM.set_VCPUs_at_startup", (vm.ref, str(count))),
                  Call("VM.set_VCPUs_max", (vm.ref, str(vmax)))]
    return _plan(vm, f"Set {vm.name_label} to {count} vCPUs (max {vmax})", "vm.vcpus", calls,
                 xe("vm-param-set", uuid=vm.uuid, VCPUs_max=vmax, VCPUs_at_startup=count))


def delete(cache: Cache, spec: str, keep_vdis: set[str] | None = None) -> Plan:
    """Destroy a VM and the disks not in ``keep_vdis`` (CDs and shared disks are
    always kept). Confirmed by typing the VM's name."""
    from xsctl.xapi.models import vm_disks

    vm = vm_of(cache, spec)
    check_allowed(vm, "destroy")
    keep = keep_vdis or set()
    destroy_vdis = []
    names = {vm.ref: vm.name_label}
    for d in vm_disks(cache, vm):
        if d.vdi is None or d.vbd.type != "Disk" or d.vdi.sharable:
            continue
        others = [v for v in d.vdi.VBDs if v != d.vbd.ref]
        if d.vdi.ref in keep or others:
            continue
        destroy_vdis.append(d.vdi)
        names[d.vdi.ref] = d.vdi.name_label
    calls = [Call("VM.destroy", (vm.ref,), True)] + [
        Call("VDI.destroy", (v.ref,), True) for v in destroy_vdis
    ]
    lines = [xe("vm-uninstall", uuid=vm.uuid, force=True)] if not keep else [
        xe("vm-destroy", uuid=vm.uuid)] + [xe("vdi-destroy", uuid=v.uuid) for v in destroy_vdis]
    kept = [n for r, n in ((d.vdi.ref, d.vdi.name_label) for d in vm_disks(cache, vm) if d.vdi) if r in keep]
    notes = [f"Disks destroyed: {', '.join(v.name_label for v in destroy_vdis) or 'none'}."]
    if kept:
        notes.append(f"Disks kept: {', '.join(kept)}.")
    if vm.snapshots:
        notes.append(f"Its {len(vm.snapshots)} snapshot(s) stay (delete them separately).")
    return Plan(title=f"Delete {vm.name_label}", action="vm.delete", targets=(vm.ref,),
                calls=tuple(calls), xe=tuple(lines), names=names, destructive=True,
                confirm_text=vm.name_label, notes=tuple(notes))


__all__ = [
    "ALLOWED_STATES", "Result", "check_allowed", "clone", "copy", "delete", "migrate",
    "pause", "reboot", "rename", "resume", "revert", "set_memory", "set_vcpus", "shutdown",
    "snapshot", "start", "suspend", "unpause", "vm_of", "why_not",
]
