"""VM operations: their gates, parameters and planners, declared in the catalogue.

The power-state rules mirror xapi's (ocaml/xapi/xapi_vm_lifecycle.ml
``allowed_power_states``) so that a refusal here reads exactly like xapi's own
VM_BAD_POWER_STATE [vm, expected, actual]; ``allowed_operations`` stays the final word.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.errors import UsageError, XapiError, XsctlError
from xsctl.xapi.models import (
    NULL,
    Host,
    Sr,
    Vm,
    as_int,
    human_bytes,
    is_guest,
    snapshots_of,
    vm_disks,
)
from xsctl.xapi.ops.base import Call, Plan, xe
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Impact,
    Kind,
    Operation,
    Param,
    ParamKind,
    Refused,
    declare,
)
from xsctl.xapi.ops.resolve import resolve_host, resolve_snapshot, resolve_sr, resolve_vm

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
    "make_into_template": ("halted",),
    "checkpoint": ("running", "halted", "suspended"),
    "export": ("halted", "suspended"),
    "changing_memory_limits": ("halted",),
    "changing_VCPUs": ("halted",),
    "changing_static_range": ("halted",),
    "changing_dynamic_range": ("halted", "running"),
    "changing_VCPUs_live": ("running",),
}

# xapi_vm_lifecycle.ml ignored_ops that xsctl calls: xapi checks them when they are
# called but never lists them in allowed_operations, so their absence proves nothing.
NEVER_LISTED = frozenset({"changing_memory_limits", "changing_VCPUs"})

MIN_MEMORY = 16 * 1024**2
# Xen's limit for an HVM guest (xen/include/public/hvm/hvm_info_table.h HVM_MAX_VCPUS);
# xapi itself only checks 1 <= VCPUs_max at set time and the host's pCPUs at boot
MAX_VCPUS = 128


def explain(vm: Vm, op: str) -> XapiError | None:
    """The error xapi would raise if ``op`` is not in allowed_operations, else None."""
    if op in vm.allowed_operations:
        return None
    if op in vm.blocked_operations:
        return XapiError("OPERATION_BLOCKED", [vm.ref, vm.blocked_operations[op]])
    if vm.is_a_template and not vm.is_a_snapshot:
        return XapiError("VM_IS_TEMPLATE", [vm.ref, op])
    if vm.is_a_snapshot and op not in ("revert", "clone", "copy", "destroy"):
        return XapiError("VM_IS_SNAPSHOT", [vm.ref, op])
    states = ALLOWED_STATES.get(op)
    actual = vm.power_state.lower()
    if states is not None and actual not in states:
        return XapiError("VM_BAD_POWER_STATE", [vm.ref, ", ".join(states), actual])
    if vm.current_operations:
        task, running = next(iter(vm.current_operations.items()))
        return XapiError("OTHER_OPERATION_IN_PROGRESS", ["VM", vm.ref, running, task])
    if vm.is_control_domain:
        return XapiError("OPERATION_NOT_ALLOWED",
                         ["This operation is not allowed on a control domain"])
    if op in NEVER_LISTED:
        return None
    if op in ("clean_shutdown", "clean_reboot"):
        return XapiError("VM_LACKS_FEATURE", [vm.ref])
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def check_allowed(vm: Vm, op: str) -> None:
    err = explain(vm, op)
    if err is not None:
        raise err


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("vm")
            if is_guest(r)]


def _load(cache: Cache, ref: str) -> Vm | None:
    vm = Vm.get(cache, ref)
    return vm if vm is not None and vm.is_vm else None


def _explain(vm: Any, op: str) -> XsctlError | None:
    return explain(vm, op)


VM = Kind(
    cls="vm", noun="VM", nouns="VMs", resolve=resolve_vm, load=_load,
    name=lambda vm: vm.name_label, members=_members, explain=_explain,
    classes=("pool", "host", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics", "VBD",
             "VDI", "SR", "PBD", "VIF", "network", "console"),
)


def vm_of(cache: Cache, spec_or_ref: str) -> Vm:
    """The guest a user named (name, UUID, prefix) or a ref."""
    ref = spec_or_ref if spec_or_ref.startswith("OpaqueRef:") else resolve_vm(cache, spec_or_ref)
    vm = Vm.get(cache, ref)
    if vm is None:
        raise XapiError("HANDLE_INVALID", ["VM", ref])
    return vm


# ------------------------------------------------------------------ hosts and storage


def unreachable_sr(cache: Cache, vm: Vm, host_ref: str) -> str | None:
    """The first SR holding one of the VM's disks that ``host_ref`` cannot reach (no
    attached PBD there), as xapi's VM_REQUIRES_SR check finds it; None if all can."""
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


def host_reason(cache: Cache, vm: Vm, h: Host, *, migrate: bool) -> str | None:
    """Why ``vm`` cannot go to host ``h`` (start there, or migrate there), or None."""
    if migrate and h.ref == vm.resident_on:
        return "this is where it runs"
    if not h.enabled:
        return "in maintenance"
    if not h.live:
        return "not responding"
    if cache.all("pbd"):
        sr = unreachable_sr(cache, vm, h.ref)
        if sr is not None:
            s = Sr.get(cache, sr)
            return f"cannot reach {s.display_name if s else 'its storage'}"
    need = vm.memory_static_max if not migrate else (vm.memory or vm.memory_static_max)
    if h.memory_free and need > h.memory_free:
        return f"not enough free memory ({human_bytes(h.memory_free)} free, needs {human_bytes(need)})"
    return None


def _host_choices(ctx: Context, vm: Vm, migrate: bool) -> list[Choice]:
    from xsctl.xapi.models import hosts

    return [Choice(h.ref, h.name_label, f"{human_bytes(h.memory_free)} free",
                   host_reason(ctx.cache, vm, h, migrate=migrate))
            for h in hosts(ctx.cache)]


def _resolve_host(ctx: Context, vm: Any, text: str) -> str:
    if not text.strip():
        raise UsageError("no host given (--on HOST: a name, address or UUID)")
    return resolve_host(ctx.cache, text)


def _host_param(flags: tuple[str, ...], migrate: bool, help: str) -> Param:
    return Param("host", ParamKind.PICK, "Host", flags, help, metavar="HOST",
                 choices=lambda ctx, vm: _host_choices(ctx, vm, migrate),
                 resolve=_resolve_host)


def _target_host(cache: Cache, vm: Vm, host: str, *, migrate: bool) -> Host:
    h = Host.get(cache, host)
    if h is None:
        raise XapiError("HANDLE_INVALID", ["host", host])
    if migrate and vm.resident_on == h.ref:
        raise Refused(f"{vm.name_label} already runs on {h.name_label}")
    if not h.enabled:
        raise XapiError("HOST_DISABLED", [h.ref])
    if cache.all("pbd"):
        sr = unreachable_sr(cache, vm, h.ref)
        if sr is not None:
            raise XapiError("VM_REQUIRES_SR", [vm.ref, sr])
    return h


# ------------------------------------------------------------------ planners


def _plan(vm: Vm, title: str, action: str, calls: list[Call], xe_line: str,
          names: dict[str, str] | None = None, **kw: Any) -> Plan:
    n = {vm.ref: vm.name_label, **(names or {})}
    return Plan(title=title, action=action, targets=(vm.ref,), calls=tuple(calls),
                xe=(xe_line,), names=n, **kw)


def start(cache: Cache, vm: Vm, paused: bool = False) -> Plan:
    check_allowed(vm, "start")
    return _plan(vm, f"Start {vm.name_label}", "vm.start",
                 [Call("VM.start", (vm.ref, paused, False), True)],
                 xe("vm-start", uuid=vm.uuid, paused=paused))


def start_on(cache: Cache, vm: Vm, host: str, paused: bool = False) -> Plan:
    check_allowed(vm, "start_on")
    h = _target_host(cache, vm, host, migrate=False)
    return _plan(vm, f"Start {vm.name_label} on {h.name_label}", "vm.start_on",
                 [Call("VM.start_on", (vm.ref, h.ref, paused, False), True)],
                 xe("vm-start", uuid=vm.uuid, on=h.name_label, paused=paused),
                 {h.ref: h.name_label})


_FORCE_OFF = "A forced shutdown is like pulling the power cord: unsaved data in the guest is lost."
_FORCE_RESET = "A forced reboot is like pressing reset: unsaved data in the guest is lost."


def shutdown(cache: Cache, vm: Vm) -> Plan:
    err = explain(vm, "clean_shutdown")
    if err is not None:
        if err.code == "VM_LACKS_FEATURE":
            raise XapiError("VM_LACKS_FEATURE", err.params, method="VM.clean_shutdown")
        raise err
    return _plan(vm, f"Shut down {vm.name_label}", "vm.shutdown",
                 [Call("VM.clean_shutdown", (vm.ref,), True)],
                 xe("vm-shutdown", uuid=vm.uuid), disruptive=True)


def _one_call(op: str, action: str, verb: str, xe_cmd: str, *, args: tuple[Any, ...] = (),
              force: bool = False, disruptive: bool = False,
              note: str | None = None) -> Callable[[Cache, Vm], Plan]:
    """The planner of an operation that is one Async call of its own name on the VM
    (VM.<op>), gated by the same allowed_operations entry; a note makes it destructive."""

    def plan(cache: Cache, vm: Vm) -> Plan:
        check_allowed(vm, op)
        return _plan(
            vm, f"{verb} {vm.name_label}", action,
            [Call(f"VM.{op}", (vm.ref, *args), True)], xe(xe_cmd, uuid=vm.uuid, force=force),
            disruptive=disruptive, destructive=note is not None,
            notes=(note,) if note else ())

    plan.__name__ = op
    return plan


force_shutdown = _one_call("hard_shutdown", "vm.force_shutdown", "Force shut down",
                           "vm-shutdown", force=True, disruptive=True, note=_FORCE_OFF)
reboot = _one_call("clean_reboot", "vm.reboot", "Reboot", "vm-reboot", disruptive=True)
force_reboot = _one_call("hard_reboot", "vm.force_reboot", "Force reboot", "vm-reboot",
                         force=True, disruptive=True, note=_FORCE_RESET)
suspend = _one_call("suspend", "vm.suspend", "Suspend", "vm-suspend", disruptive=True)
resume = _one_call("resume", "vm.resume", "Resume", "vm-resume", args=(False, False))
pause = _one_call("pause", "vm.pause", "Pause", "vm-pause", disruptive=True)
unpause = _one_call("unpause", "vm.unpause", "Unpause", "vm-unpause")


def resume_on(cache: Cache, vm: Vm, host: str) -> Plan:
    check_allowed(vm, "resume_on")
    h = _target_host(cache, vm, host, migrate=False)
    return _plan(vm, f"Resume {vm.name_label} on {h.name_label}", "vm.resume_on",
                 [Call("VM.resume_on", (vm.ref, h.ref, False, False), True)],
                 xe("vm-resume", uuid=vm.uuid, on=h.name_label), {h.ref: h.name_label})


def migrate(cache: Cache, vm: Vm, host: str) -> Plan:
    check_allowed(vm, "pool_migrate")
    h = _target_host(cache, vm, host, migrate=True)
    return _plan(vm, f"Migrate {vm.name_label} to {h.name_label}", "vm.migrate",
                 [Call("VM.pool_migrate", (vm.ref, h.ref, {"live": "true"}), True)],
                 xe("vm-migrate", uuid=vm.uuid, host=h.name_label, live=True),
                 {h.ref: h.name_label}, disruptive=True,
                 notes=("The guest keeps running; it pauses for a moment at the end.",))


def name_given(text: str, what: str) -> str:
    if not text.strip():
        raise UsageError(f"{what} cannot be empty")
    return text


def snapshot(cache: Cache, vm: Vm, name: str) -> Plan:
    name_given(name, "a snapshot's name")
    check_allowed(vm, "snapshot")
    return _plan(vm, f"Snapshot {vm.name_label} as {name!r}", "vm.snapshot",
                 [Call("VM.snapshot", (vm.ref, name), True)],
                 xe("vm-snapshot", uuid=vm.uuid, new_name_label=name))


def checkpoint(cache: Cache, vm: Vm, name: str) -> Plan:
    name_given(name, "a snapshot's name")
    check_allowed(vm, "checkpoint")
    notes: tuple[str, ...] = ()
    if vm.power_state == "Running":
        notes = (f"{vm.name_label} pauses while its memory is saved, then runs on.",)
    return _plan(vm, f"Snapshot {vm.name_label} with its memory as {name!r}", "vm.checkpoint",
                 [Call("VM.checkpoint", (vm.ref, name), True)],
                 xe("vm-checkpoint", uuid=vm.uuid, new_name_label=name), notes=notes)


def make_template(cache: Cache, vm: Vm) -> Plan:
    """VM.set_is_a_template true (xe vm-param-set is-a-template=true): the halted VM
    becomes a template; it cannot be started any more, only installed from."""
    check_allowed(vm, "make_into_template")
    return _plan(vm, f"Convert {vm.name_label} into a template", "vm.make_template",
                 [Call("VM.set_is_a_template", (vm.ref, True))],
                 xe("vm-param-set", uuid=vm.uuid, is_a_template=True),
                 destructive=True,
                 notes=(f"{vm.name_label} leaves the VM list for the templates: new VMs "
                        "are made from it; it is never started itself.",))


def _no_snapshots(cache: Cache, vm: Any) -> str | None:
    return None if vm.snapshots else "it has no snapshots"


def _snapshot_choices(ctx: Context, vm: Vm) -> list[Choice]:
    return [Choice(s.ref, s.name_label,
                   s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else "",
                   None if (e := explain(s, "revert")) is None else e.friendly)
            for s in snapshots_of(ctx.cache, vm)]


def is_checkpoint(cache: Cache, snap: Vm) -> bool:
    """A snapshot that holds the VM's memory (VM.checkpoint of a running VM): its
    suspend_VDI is the memory image, and it is Suspended."""
    rec = cache.get("vm", snap.ref) or {}
    return str(rec.get("suspend_VDI", NULL)) not in ("", NULL) or snap.power_state == "Suspended"


def revert_to(cache: Cache, snap: Vm, action: str = "vm.revert") -> Plan:
    """Revert the snapshot's VM to it. xapi_vm_snapshot.ml revert: a running VM is
    shut down (hard) and takes the snapshot's power state, halted for a snapshot of
    disks alone, suspended for a checkpoint, which is then resumed from its memory
    (as XenCenter's revert does)."""
    vm = Vm.get(cache, snap.snapshot_of)
    if vm is None:
        raise Refused(f"the VM of snapshot {snap.name_label!r} no longer exists")
    check_allowed(snap, "revert")
    notes = [f"Changes to {vm.name_label}'s disks since the snapshot are lost."]
    calls = [Call("VM.revert", (snap.ref,), True)]
    checkpoint = is_checkpoint(cache, snap)
    if checkpoint:
        calls.append(Call("VM.resume", (vm.ref, False, False), True))
        notes.insert(0, f"{vm.name_label} is "
                     + (f"{vm.power_state.lower()}: it is powered off now, then "
                        if vm.power_state != "Halted" else "")
                     + "resumed from the checkpoint's memory, running as it was then.")
    elif vm.power_state != "Halted":
        notes.insert(0, f"{vm.name_label} is {vm.power_state.lower()}: it is powered off "
                        "now and stays halted (the snapshot holds no memory).")
    lines = [xe("snapshot-revert", snapshot_uuid=snap.uuid)]
    if checkpoint:
        lines.append(xe("vm-resume", uuid=vm.uuid))
    return Plan(
        title=f"Revert {vm.name_label} to snapshot {snap.name_label!r}",
        action=action, targets=(vm.ref,), calls=tuple(calls), xe=tuple(lines),
        names={vm.ref: vm.name_label, snap.ref: snap.name_label},
        destructive=True, disruptive=vm.power_state != "Halted", notes=tuple(notes),
    )


def revert(cache: Cache, vm: Vm, snapshot: str) -> Plan:
    snap = Vm.get(cache, snapshot)
    if snap is None or snap.snapshot_of != vm.ref:
        raise UsageError(f"that is not a snapshot of {vm.name_label}")
    return revert_to(cache, snap)


def _resolve_snapshot(ctx: Context, vm: Any, text: str) -> str:
    return resolve_snapshot(ctx.cache, text, vm.ref)


def clone(cache: Cache, vm: Vm, name: str) -> Plan:
    name_given(name, "the clone's name")
    check_allowed(vm, "clone")
    return _plan(vm, f"Clone {vm.name_label} as {name!r}", "vm.clone",
                 [Call("VM.clone", (vm.ref, name), True)],
                 xe("vm-clone", uuid=vm.uuid, new_name_label=name),
                 warnings=same_name(cache, vm, name))


def _disk_bytes(cache: Cache, vm: Vm) -> int:
    return sum(d.vdi.virtual_size for d in vm_disks(cache, vm)
               if d.vdi is not None and d.vbd.type == "Disk")


def copy_sr_choices(ctx: Context, vm: Vm) -> list[Choice]:
    """Where a full copy of a VM or template can go (VM.copy): each SR that can take
    all its disks, the others with their reason."""
    from xsctl.xapi.models import srs

    need = _disk_bytes(ctx.cache, vm)
    out = [Choice("", "Same storage as the original", "each disk stays on its SR")]
    for s in srs(ctx.cache):
        if s.is_iso or s.type in ("udev", "iso") or s.is_tools_sr:
            continue
        why = None
        if "vdi_create" not in s.allowed_operations and s.allowed_operations:
            why = "cannot create disks"
        elif not s.hosts:
            why = "not plugged on any host"
        elif s.physical_size and s.free < need:
            why = f"not enough space ({human_bytes(s.free)} free, needs {human_bytes(need)})"
        out.append(Choice(s.ref, s.display_name, f"{human_bytes(s.free)} free", why))
    return out


def _resolve_sr(ctx: Context, vm: Any, text: str) -> str:
    return "" if not text.strip() else resolve_sr(ctx.cache, text)


def copy(cache: Cache, vm: Vm, name: str, sr: str | None = None) -> Plan:
    name_given(name, "the copy's name")
    check_allowed(vm, "copy")
    sr_ref = sr or NULL
    target = Sr.get(cache, sr_ref) if sr else None
    names = {sr_ref: target.display_name} if target else {}
    return _plan(vm, f"Copy {vm.name_label} as {name!r}"
                 + (f" to {target.display_name}" if target else ""), "vm.copy",
                 [Call("VM.copy", (vm.ref, name, sr_ref), True)],
                 xe("vm-copy", uuid=vm.uuid, new_name_label=name,
                    sr_uuid=target.uuid if target else None), names,
                 warnings=same_name(cache, vm, name))


def same_name(cache: Cache, vm: Vm, name: str, *, noun: str = "VM",
              accept: Callable[[Record], bool] = is_guest) -> tuple[str, ...]:
    """xapi allows two VMs (or templates) one name; every xe and xsctl command naming
    it then has to use its UUID, so say so before it happens."""
    others = [r for r, rec in cache.snapshot("vm")
              if r != vm.ref and accept(rec) and rec.get("name_label") == name]
    if not others:
        return ()
    return (f"Another {noun} is already named {name!r}: afterwards both can only be told "
            "apart by UUID.",)


def rename(cache: Cache, vm: Vm, name: str) -> Plan:
    name_given(name, "the name")
    if name == vm.name_label:
        raise UsageError(f"{vm.name_label} already has that name")
    return _plan(vm, f"Rename {vm.name_label} to {name!r}", "vm.rename",
                 [Call("VM.set_name_label", (vm.ref, name))],
                 xe("vm-param-set", uuid=vm.uuid, name_label=name),
                 warnings=same_name(cache, vm, name))


def _memory_fixed(vm: Any) -> str | None:
    return None if vm.power_state == "Halted" else "the VM must be halted to change it"


def set_memory(cache: Cache, vm: Vm, static_max: int, dynamic_min: int | None = None,
               dynamic_max: int | None = None) -> Plan:
    """Memory in xapi's four numbers (vm_memory_constraints.ml); static min stays.
    Without dynamic limits, they follow static max (no ballooning)."""
    smax = static_max
    dmax = dynamic_max if dynamic_max is not None else smax
    dmin = dynamic_min if dynamic_min is not None else dmax
    smin = min(vm.memory_static_min, dmin)
    if smax < MIN_MEMORY:
        raise UsageError(f"{human_bytes(smax)} is too little memory for a VM (16 MiB at least)")
    if not (smin <= dmin <= dmax <= smax):
        raise XapiError("MEMORY_CONSTRAINT_VIOLATION_ORDER", [])
    if vm.power_state != "Halted":
        if smax != vm.memory_static_max:
            raise Refused(f"static max can only change while {vm.name_label} is halted "
                          f"(it is {vm.power_state.lower()}); a running VM changes its "
                          "dynamic range only")
        check_allowed(vm, "changing_dynamic_range")
        return _plan(vm, f"Set {vm.name_label}'s dynamic memory to "
                     f"{human_bytes(dmin)}–{human_bytes(dmax)}", "vm.set_memory",
                     [Call("VM.set_memory_dynamic_range", (vm.ref, str(dmin), str(dmax)))],
                     xe("vm-memory-dynamic-range-set", uuid=vm.uuid, min=dmin, max=dmax))
    check_allowed(vm, "changing_memory_limits")
    return _plan(vm, f"Set {vm.name_label}'s memory to {human_bytes(smax)}", "vm.set_memory",
                 [Call("VM.set_memory_limits", (vm.ref, str(smin), str(smax), str(dmin), str(dmax)))],
                 xe("vm-memory-limits-set", uuid=vm.uuid, static_min=smin, static_max=smax,
                    dynamic_min=dmin, dynamic_max=dmax))


def set_vcpus(cache: Cache, vm: Vm, vcpus: int, vcpus_max: int | None = None) -> Plan:
    running = vm.power_state != "Halted"
    if running:
        if vcpus_max is not None and vcpus_max != vm.VCPUs_max:
            raise Refused(f"the vCPU maximum can only change while {vm.name_label} is "
                          f"halted (it is {vm.power_state.lower()})")
        if vcpus > vm.VCPUs_max:
            raise Refused(f"{vcpus} vCPUs is above {vm.name_label}'s maximum of "
                          f"{vm.VCPUs_max}; a running VM cannot raise its maximum")
        if vcpus < 1:
            raise UsageError("a VM needs at least 1 vCPU")
        check_allowed(vm, "changing_VCPUs_live")
        return _plan(vm, f"Set {vm.name_label} to {vcpus} vCPUs (live)", "vm.set_vcpus",
                     [Call("VM.set_VCPUs_number_live", (vm.ref, str(vcpus)))],
                     xe("vm-vcpu-hotplug", uuid=vm.uuid, new_vcpus=vcpus))
    vmax = vcpus_max if vcpus_max is not None else max(vcpus, vm.VCPUs_max)
    if vcpus < 1:
        raise UsageError("a VM needs at least 1 vCPU")
    if vmax < vcpus:
        raise UsageError(f"{vcpus} vCPUs at start-up is above the maximum of {vmax}")
    if vmax > MAX_VCPUS:
        raise UsageError(f"{vmax} vCPUs is more than a VM can have ({MAX_VCPUS} at most)")
    check_allowed(vm, "changing_VCPUs")
    cpus = max((as_int((h.get("cpu_info") or {}).get("cpu_count")) for h in cache.all("host").values()),
               default=0)
    # xapi_vm_helpers.ml assert_enough_pcpus: it would not boot anywhere
    warnings = (f"No host has {vmax} CPUs (the most is {cpus}): xapi will refuse to start "
                "it (HOST_NOT_ENOUGH_PCPUS).",) if cpus and vmax > cpus else ()
    calls: list[Call] = []
    # order matters: xapi checks at_startup <= max at every step
    if vmax >= vm.VCPUs_max:
        calls += [Call("VM.set_VCPUs_max", (vm.ref, str(vmax))),
                  Call("VM.set_VCPUs_at_startup", (vm.ref, str(vcpus)))]
    else:
        calls += [Call("VM.set_VCPUs_at_startup", (vm.ref, str(vcpus))),
                  Call("VM.set_VCPUs_max", (vm.ref, str(vmax)))]
    return _plan(vm, f"Set {vm.name_label} to {vcpus} vCPUs (max {vmax})", "vm.set_vcpus",
                 calls, xe("vm-param-set", uuid=vm.uuid, VCPUs_max=vmax,
                           VCPUs_at_startup=vcpus), warnings=warnings)


def _disk_choices(ctx: Context, vm: Vm) -> list[Choice]:
    out = []
    for d in vm_disks(ctx.cache, vm):
        if d.vdi is None or d.vbd.type != "Disk":
            continue
        shared = d.vdi.sharable or len(d.vdi.VBDs) > 1
        out.append(Choice(d.vdi.ref, d.vdi.name_label,
                          f"{human_bytes(d.vdi.virtual_size)} on {d.vdi.sr_name}",
                          "used by another VM: always kept" if shared else None))
    return out


def _resolve_disk(ctx: Context, vm: Any, text: str) -> str:
    disks = [d.vdi for d in vm_disks(ctx.cache, vm) if d.vdi is not None]
    hits = [v.ref for v in disks if text in (v.uuid, v.name_label)
            or (len(text) >= 4 and v.uuid.startswith(text))]
    if len(hits) != 1:
        what = "matches several" if hits else "is not one"
        raise UsageError(f"--keep-disk {text!r} {what} of {vm.name_label}'s disks: "
                         + ", ".join(f"{v.name_label} ({v.uuid})" for v in disks))
    return hits[0]


def delete(cache: Cache, vm: Vm, keep: frozenset[str] = frozenset()) -> Plan:
    """Destroy a VM and its disks but those in ``keep`` (CDs and disks another VM
    uses are always kept), as xe vm-uninstall does. Confirmed by typing the name."""
    check_allowed(vm, "destroy")
    destroy_vdis = []
    names = {vm.ref: vm.name_label}
    kept = []
    for d in vm_disks(cache, vm):
        if d.vdi is None or d.vbd.type != "Disk":
            continue
        others = [v for v in d.vdi.VBDs if v != d.vbd.ref]
        if d.vdi.ref in keep or others or d.vdi.sharable:
            kept.append(d.vdi.name_label)
            continue
        destroy_vdis.append(d.vdi)
        names[d.vdi.ref] = d.vdi.name_label
    calls = [Call("VM.destroy", (vm.ref,), True)] + [
        Call("VDI.destroy", (v.ref,), True) for v in destroy_vdis]
    lines = ([xe("vm-uninstall", uuid=vm.uuid, force=True)] if not kept else
             [xe("vm-destroy", uuid=vm.uuid)] + [xe("vdi-destroy", uuid=v.uuid)
                                                 for v in destroy_vdis])
    notes = [f"Disks destroyed: {', '.join(v.name_label for v in destroy_vdis) or 'none'}."]
    if kept:
        notes.append(f"Disks kept: {', '.join(kept)}.")
    if vm.snapshots:
        notes.append(f"Its {len(vm.snapshots)} snapshot(s) stay (delete them separately).")
    return Plan(title=f"Delete {vm.name_label}", action="vm.delete", targets=(vm.ref,),
                calls=tuple(calls), xe=tuple(lines), names=names, destructive=True,
                confirm_text=vm.name_label, notes=tuple(notes))


# ------------------------------------------------------------------ the declarations


def _stamp(ctx: Context, vm: Any) -> str:
    return f"{vm.name_label} {ctx.now.astimezone().strftime('%Y-%m-%d %H:%M')}"


_NAME_FLAGS = ("--name", "--new-name-label")
_PAUSED = Param("paused", ParamKind.FLAG, "Paused", ("--paused",), "start it paused",
                required=False)

declare(
    Operation("vm.start", VM, "Start", "s", "start", "vm-start", "started",
              "Boot the VM on a host xapi chooses", start, allowed="start", multi=True,
              params=(_PAUSED,), footer=True),
    Operation("vm.start_on", VM, "Start on host", "S", "start", "vm-start", "started",
              "Boot the VM on a host you choose", start_on, allowed="start_on",
              params=(_host_param(("--on",), False, "start on this host"), _PAUSED),
              via="host"),
    Operation("vm.shutdown", VM, "Shut down", "t", "shutdown", "vm-shutdown", "shut down",
              "Ask the guest to shut down (needs its PV drivers)", shutdown,
              allowed="clean_shutdown", multi=True, impact=Impact.DISRUPTIVE, footer=True),
    Operation("vm.force_shutdown", VM, "Force shut down", "T", "shutdown", "vm-shutdown",
              "powered off", "Power the VM off at once, like pulling the cord",
              force_shutdown, allowed="hard_shutdown", multi=True,
              impact=Impact.DESTRUCTIVE, flag="--force"),
    Operation("vm.reboot", VM, "Reboot", "b", "reboot", "vm-reboot", "rebooted",
              "Ask the guest to reboot (needs its PV drivers)", reboot,
              allowed="clean_reboot", multi=True, impact=Impact.DISRUPTIVE, footer=True),
    Operation("vm.force_reboot", VM, "Force reboot", "B", "reboot", "vm-reboot", "reset",
              "Reset the VM at once, like pressing reset", force_reboot,
              allowed="hard_reboot", multi=True, impact=Impact.DESTRUCTIVE, flag="--force"),
    Operation("vm.suspend", VM, "Suspend", "z", "suspend", "vm-suspend", "suspended",
              "Save the VM's memory to disk and stop it", suspend, allowed="suspend",
              multi=True, impact=Impact.DISRUPTIVE),
    Operation("vm.resume", VM, "Resume", "u", "resume", "vm-resume", "resumed",
              "Resume a suspended VM on a host xapi chooses", resume, allowed="resume",
              multi=True),
    Operation("vm.resume_on", VM, "Resume on host", "U", "resume", "vm-resume", "resumed",
              "Resume a suspended VM on a host you choose", resume_on, allowed="resume_on",
              params=(_host_param(("--on",), False, "resume on this host"),), via="host"),
    Operation("vm.pause", VM, "Pause", "p", "pause", "vm-pause", "paused",
              "Stop the VM's vCPUs (it stays in memory)", pause, allowed="pause",
              multi=True, impact=Impact.DISRUPTIVE),
    Operation("vm.unpause", VM, "Unpause", "P", "unpause", "vm-unpause", "unpaused",
              "Let a paused VM run again", unpause, allowed="unpause", multi=True),
    Operation("vm.migrate", VM, "Migrate to host", "m", "migrate", "vm-migrate", "migrated",
              "Move the running VM to another host of the pool, live", migrate,
              allowed="pool_migrate", impact=Impact.DISRUPTIVE, footer=True,
              params=(_host_param(("--host", "--to"), True, "the destination host"),)),
    Operation("vm.snapshot", VM, "Take a snapshot", "n", "snapshot", "vm-snapshot",
              "snapshotted", "Snapshot the VM's disks", snapshot, allowed="snapshot",
              footer=True, also=("snapshot create",),
              params=(Param("name", ParamKind.TEXT, "Snapshot name", _NAME_FLAGS,
                            "the snapshot's name", default=_stamp, metavar="NAME"),)),
    Operation("vm.checkpoint", VM, "Take a snapshot with memory", "N", "snapshot",
              "vm-checkpoint", "checkpointed",
              "Snapshot the VM's disks and its memory (a checkpoint)", checkpoint,
              allowed="checkpoint", flag="--memory", also=("snapshot create",),
              params=(Param("name", ParamKind.TEXT, "Snapshot name", _NAME_FLAGS,
                            "the snapshot's name", default=_stamp, metavar="NAME"),)),
    Operation("vm.revert", VM, "Revert to a snapshot", "v", "revert", "snapshot-revert",
              "reverted", "Return the VM's disks to a snapshot; later changes are lost",
              revert, when=_no_snapshots, impact=Impact.DESTRUCTIVE,
              params=(Param("snapshot", ParamKind.PICK, "Snapshot",
                            ("--snapshot", "--snapshot-uuid"), "the snapshot to revert to",
                            choices=_snapshot_choices, resolve=_resolve_snapshot,
                            metavar="SNAPSHOT"),)),
    Operation("vm.clone", VM, "Clone", "c", "clone", "vm-clone", "cloned",
              "A fast copy sharing the disks' base (copy-on-write, same SRs)", clone,
              allowed="clone",
              params=(Param("name", ParamKind.TEXT, "Name of the new VM", _NAME_FLAGS,
                            "the new VM's name", default=lambda c, vm: f"{vm.name_label}-clone",
                            metavar="NAME"),)),
    Operation("vm.copy", VM, "Copy", "C", "copy", "vm-copy", "copied",
              "A full copy, to the same or another storage repository", copy,
              allowed="copy",
              params=(Param("name", ParamKind.TEXT, "Name of the new VM", _NAME_FLAGS,
                            "the new VM's name", default=lambda c, vm: f"{vm.name_label}-copy",
                            metavar="NAME"),
                      Param("sr", ParamKind.PICK, "Storage", ("--sr", "--sr-uuid"),
                            "copy the disks to this storage repository (default: where "
                            "they are)", required=False, choices=copy_sr_choices,
                            resolve=_resolve_sr, metavar="SR"))),
    Operation("vm.rename", VM, "Rename", "r", "rename", "vm-param-set", "renamed",
              "Change the VM's name", rename,
              params=(Param("name", ParamKind.TEXT, "New name", _NAME_FLAGS, "the new name",
                            default=lambda c, vm: vm.name_label, metavar="NAME"),)),
    Operation("vm.set_memory", VM, "Memory", "e", "set-memory", "vm-memory-limits-set",
              "memory set", "Set the VM's memory limits", set_memory,
              rules="static min ≤ dynamic min ≤ dynamic max ≤ static max. A running VM "
              "keeps its static max and changes only its dynamic range.",
              params=(Param("static_max", ParamKind.SIZE, "Static max", ("--static-max",),
                            "the most memory the VM can have (halted VMs only)",
                            default=lambda c, vm: _size(vm.memory_static_max),
                            fixed=_memory_fixed, metavar="SIZE"),
                      Param("dynamic_min", ParamKind.SIZE, "Dynamic min", ("--dynamic-min",),
                            "the least memory ballooning leaves it (default: dynamic max)",
                            required=False, default=lambda c, vm: _size(vm.memory_dynamic_min),
                            metavar="SIZE"),
                      Param("dynamic_max", ParamKind.SIZE, "Dynamic max", ("--dynamic-max",),
                            "the most memory it gets while running (default: static max)",
                            required=False, default=lambda c, vm: _size(vm.memory_dynamic_max),
                            metavar="SIZE"))),
    Operation("vm.set_vcpus", VM, "vCPUs", "E", "set-vcpus", "vm-param-set", "vCPUs set",
              "Set the VM's number of vCPUs", set_vcpus,
              rules="1 ≤ vCPUs ≤ max. A running VM changes its live count, up to its max.",
              params=(Param("vcpus", ParamKind.COUNT, "vCPUs", ("--vcpus", "--count"),
                            "vCPUs at start-up (live, for a running VM)", minimum=1,
                            maximum=MAX_VCPUS, default=lambda c, vm: str(vm.VCPUs_at_startup),
                            metavar="N"),
                      Param("vcpus_max", ParamKind.COUNT, "vCPUs max", ("--max",),
                            "the most vCPUs it can have (halted VMs only)", required=False,
                            minimum=1, maximum=MAX_VCPUS,
                            default=lambda c, vm: str(vm.VCPUs_max), fixed=_memory_fixed,
                            metavar="N"))),
    Operation("vm.make_template", VM, "Convert to template", "M", "make-template",
              "vm-param-set", "converted into a template",
              "Make the halted VM a template (it is no longer started, only installed from)",
              make_template, allowed="make_into_template", impact=Impact.DESTRUCTIVE),
    Operation("vm.delete", VM, "Delete", "delete", "destroy", "vm-uninstall", "deleted",
              "Destroy the VM and the disks you do not keep", delete, allowed="destroy",
              impact=Impact.DESTRUCTIVE, footer=True,
              params=(Param("keep", ParamKind.PICK_MANY, "Disks to keep", ("--keep-disk",),
                            "keep this disk (name or UUID; repeat for several)",
                            required=False, choices=_disk_choices, resolve=_resolve_disk,
                            metavar="DISK",
                            note="Marked disks are KEPT; the others are destroyed with "
                                 "the VM."),)),
)


def _size(n: int) -> str:
    return human_bytes(n, exact=True)
