"""Hosts as the object of operations: maintenance mode, evacuation, power.

The gates read like xapi's own refusals (ocaml/xapi/xapi_host_helpers.ml
``valid_operations``). Entering maintenance mode is what XenCenter does: disable the
host, then evacuate it; the plan says where xapi's own rule puts each VM and names
the VMs that cannot move, and its first call is ``host.assert_can_evacuate``, so
that xapi refuses before anything changes should it see more than the cache shows.
A reboot or shutdown is refused while guests run on the host, unless the plan
evacuates it first (xapi would shut down what cannot move, vm_evacuation.ml
``ensure_no_vms``: xsctl does not do that behind the user's back).
"""

from __future__ import annotations

import shlex
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import XapiError, XsctlError
from xsctl.xapi.models import (
    EVACUATED,
    MAINTENANCE_MODE,
    NULL,
    Host,
    Pool,
    Vm,
    human_bytes,
    sr_display_name,
)
from xsctl.xapi.ops.base import Call, Plan, Undo, xe
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
from xsctl.xapi.ops.resolve import resolve_host, resolve_vm
from xsctl.xapi.storage import some
from xsctl.xapi.text import printable


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("host")]


def _load(cache: Cache, ref: str) -> Host | None:
    return Host.get(cache, ref)


_REMOVING = ("evacuate", "reboot", "shutdown")
_CREATING = ("provision", "vm_resume", "vm_migrate")


def errors(host: Host, op: str) -> list[XapiError]:
    """The errors xapi_host_helpers.ml valid_operations sets for ``op``, in its order
    (the first is the one xapi raises)."""
    out: list[XapiError] = []
    current = list(host.current_operations.items())
    if op != "power_on":
        against = _CREATING if op in _REMOVING else _REMOVING if op in _CREATING else ()
        busy = next(((t, o) for t, o in current if o in against), None)
        if busy is not None:
            out.append(XapiError("OTHER_OPERATION_IN_PROGRESS",
                                 ["host", host.ref, busy[1], busy[0]]))
    for running, blocks in (("reboot", ("shutdown", "apply_updates")),
                            ("shutdown", ("reboot", "apply_updates")),
                            ("apply_updates", ("reboot", "shutdown", "enable"))):
        task = next((t for t, o in current if o == running), None)
        if task is not None and op in blocks:
            out.append(XapiError("OTHER_OPERATION_IN_PROGRESS", ["host", host.ref, running, task]))
    if host.enabled and op in ("reboot", "shutdown", "apply_updates"):
        out.append(XapiError("HOST_NOT_DISABLED", []))
    if op == "power_on" and host.live:
        out.append(XapiError("HOST_IS_LIVE", [host.ref]))
    if op == "power_on" and not host.power_on_mode:
        out.append(XapiError("HOST_POWER_ON_MODE_DISABLED", []))
    return out


def explain(host: Host, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the host's allowed_operations, or
    None."""
    if op in host.allowed_operations:
        return None
    found = errors(host, op)
    if found:
        return found[0]
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op.replace('_', ' ')} is not possible now"])


def _explain(host: Any, op: str) -> XsctlError | None:
    return explain(host, op)


HOST = Kind(
    cls="host", noun="host", nouns="hosts", resolve=resolve_host, load=_load,
    name=lambda h: h.name_label or h.hostname or h.address, members=_members,
    explain=_explain,
    classes=("pool", "host", "host_metrics", "VM", "VM_metrics", "PIF", "PIF_metrics",
             "network", "SR", "PBD", "VBD", "VDI", "VIF", "console"),
)


# ------------------------------------------------------------------ evacuation


@dataclass
class Evacuation:
    """Where xapi's rule (xapi_host.ml compute_evacuation_plan_no_wlb) puts each guest
    of a host, worked out from the cache: ``moves`` VM -> host, ``blocked`` VM -> why
    it cannot move, in words."""

    host: str
    moves: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # VM and host refs -> names

    @property
    def possible(self) -> bool:
        return not self.blocked

    def refusal(self) -> str:
        """One line: every VM that cannot move, with its reason."""
        parts = [f"{self.names[vm]} ({why})" for vm, why in self._sorted(self.blocked)]
        return "it has VMs that cannot move: " + "; ".join(parts)

    def move_lines(self) -> list[str]:
        return [f"{self.names[vm]} → {self.names[h]}" for vm, h in self._sorted(self.moves)]

    def _sorted(self, d: dict[str, str]) -> list[tuple[str, str]]:
        return sorted(d.items(), key=lambda kv: self.names[kv[0]].lower())


def guests(cache: Cache, host: Host) -> list[Vm]:
    """The VMs resident on the host but its control domain(s)."""
    out = []
    for ref in host.resident_VMs:
        r = cache.get("vm", ref)
        if r is not None and not r.get("is_control_domain"):
            out.append(Vm.from_record(cache, ref, r))
    return out


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _used(r: dict[str, Any]) -> int:
    """memory_check.ml vm_compute_used_memory, Dynamic_min policy."""
    return _int(r.get("memory_dynamic_min")) + _int(r.get("memory_overhead"))


def free_memory(cache: Cache, hosts: list[Host]) -> dict[str, int]:
    """memory_check.ml host_compute_free_memory_with_maximum_compression, for each of
    ``hosts`` in one walk of the VMs: the total less the host's overhead and what each
    VM resident or scheduled there needs (not the reported memory_free, which lags)."""
    free = {h.ref: h.memory_total - h.memory_overhead for h in hosts}
    for _, r in cache.snapshot("vm"):
        for where in (r.get("resident_on"), r.get("scheduled_to_be_resident_on")):
            if where in free:
                free[str(where)] -= _used(r)
    return {h: max(0, f) for h, f in free.items()}


def vm_need(r: dict[str, Any]) -> int:
    """xapi_ha_vm_failover.ml vm_memory: Static_max for PVH guests, Dynamic_min for
    the others, plus the VM's overhead."""
    dtype = str(r.get("domain_type", ""))
    policy = _int(r.get("memory_static_max") if dtype in ("pvh", "pv_in_pvh")
                  else r.get("memory_dynamic_min"))
    return policy + _int(r.get("memory_overhead"))


@dataclass
class _Target:
    """What the boot checks need of a target host, read once per plan."""

    ref: str
    name: str
    live: bool
    srs: set[str]  # plugged there


def _target(cache: Cache, ref: str, name: str) -> _Target:
    h = Host.get(cache, ref)
    srs = set()
    for pbd in h.PBDs if h is not None else ():
        p = cache.get("pbd", pbd)
        if p is not None and p.get("currently_attached"):
            srs.add(str(p.get("SR")))
    return _Target(ref, name, h is not None and h.live, srs)


def _boot_blocker(cache: Cache, r: dict[str, Any], t: _Target,
                  net_hosts: dict[str, set[str]]) -> str | None:
    """Xapi_vm_helpers.assert_can_boot_here without the memory check: the target is
    live, the VM's SRs are plugged there, its networks reach it."""
    if not t.live:
        return f"{t.name} is enabled but not running"
    for vbd in r.get("VBDs") or ():
        b = cache.get("vbd", str(vbd))
        if b is None or b.get("empty"):
            continue
        vdi = cache.get("vdi", str(b.get("VDI")))
        sr = str((vdi or {}).get("SR", NULL))
        if vdi is not None and sr not in t.srs:
            return (f"its disk is on {printable(sr_display_name(cache, sr))}, which "
                    f"{t.name} cannot reach")
    for vif in r.get("VIFs") or ():
        net_ref = str((cache.get("vif", str(vif)) or {}).get("network"))
        if net_ref not in net_hosts:
            net = cache.get("network", net_ref)
            pifs = (net or {}).get("PIFs") or ()
            # a network without PIFs is not checked here (xapi's rule for it needs
            # the VMs using it): assert_can_evacuate has the last word
            net_hosts[net_ref] = ({str((cache.get("pif", str(p)) or {}).get("host"))
                                   for p in pifs} if pifs else set())
            if not pifs:
                net_hosts[net_ref].add("*")
        seen = net_hosts[net_ref]
        if "*" not in seen and t.ref not in seen:
            name = str((cache.get("network", net_ref) or {}).get("name_label", ""))
            return f"its network {printable(name)} has no interface on {t.name}"
    return None


def _vm_blocker(cache: Cache, ref: str, r: dict[str, Any], op: str) -> str | None:
    """Xapi_vm_lifecycle.get_operation_error for ``op`` on the VM (pool_migrate,
    start_on, resume_on), as its allowed_operations tell it."""
    if op in (r.get("allowed_operations") or ()):
        return None
    from xsctl.xapi.ops.vm import explain as vm_explain

    err = vm_explain(Vm.from_record(cache, ref, r), op)
    if err is None:
        return None
    if err.code == "VM_BAD_POWER_STATE" and len(err.params) >= 3:
        return f"it is {err.params[2]}" + (": only a running VM migrates"
                                           if op == "pool_migrate" else "")
    return err.friendly


# a plan names this many moves (a host of 3,000 VMs: the count of the others)
MOVES_SHOWN = 30

# what the rule reads; while none of these tables changes, the last answer stands
_EVACUATION_READS = ("host", "vm", "pool", "pbd", "vbd", "vdi", "sr", "vif", "network", "pif")
_last_evacuation: tuple[weakref.ref[Cache], tuple[Any, ...], Evacuation] | None = None


def evacuation(cache: Cache, host: Host) -> Evacuation:
    """xapi_host.ml compute_evacuation_plan_no_wlb, in its order (a later check
    replaces an earlier one's reason): no target, HA protection, boot checks on every
    target, pool_migrate, then the memory bin-packing (Binpack.biggest_fit_decreasing:
    the biggest VM first, onto the target with the most room). Read from the records.

    Entering maintenance mode asks twice (the VMs to mark, then the plan), on the UI
    thread: the last answer is kept while the cache's tables it reads are unchanged
    (a copy each time: callers narrow it). bench_hosts.py measures both."""
    global _last_evacuation
    key = (host.ref, tuple(host.resident_VMs), cache.version(*_EVACUATION_READS))
    last = _last_evacuation
    if last is not None and last[0]() is cache and last[1] == key:
        return _copy(last[2])
    ev = _evacuation(cache, host)
    _last_evacuation = (weakref.ref(cache), key, ev)
    return _copy(ev)


def _copy(ev: Evacuation) -> Evacuation:
    return Evacuation(ev.host, dict(ev.moves), dict(ev.blocked), dict(ev.names))


def _evacuation(cache: Cache, host: Host) -> Evacuation:
    ev = Evacuation(host.ref)
    every = {ref: r for ref, r in cache.snapshot("host")}
    for ref, r in every.items():
        ev.names[ref] = printable(str(r.get("name_label", ""))) or ref
    vms: list[tuple[str, dict[str, Any]]] = []
    for ref in host.resident_VMs:
        rec = cache.get("vm", ref)
        if rec is not None and not rec.get("is_control_domain"):
            vms.append((ref, rec))
            ev.names[ref] = printable(str(rec.get("name_label", "")))
    targets = [ref for ref, r in every.items() if ref != host.ref and r.get("enabled")]
    if not targets:
        ev.blocked = {ref: "no other host is enabled to take it" for ref, _ in vms}
        return ev
    pool = Pool.of(cache)
    ha = bool((cache.get("pool", pool.ref) or {}).get("ha_enabled")) if pool else False
    protected = []
    for ref, r in vms:
        if ha and not (r.get("ha_always_run") and r.get("ha_restart_priority") == "restart"):
            ev.blocked[ref] = "HA does not protect it, and xapi moves only protected VMs"
        else:
            protected.append((ref, r))
    checks = [_target(cache, t, ev.names[t]) for t in targets]
    net_hosts: dict[str, set[str]] = {}
    migratable = []
    for ref, r in protected:
        for check in checks:
            why = _boot_blocker(cache, r, check, net_hosts)
            if why is not None:
                ev.blocked[ref] = why
                break
        else:
            migratable.append((ref, r))
    for ref, r in vms:
        why = _vm_blocker(cache, ref, r, "pool_migrate")
        if why is not None:
            ev.blocked[ref] = why
    free = free_memory(cache, [h for h in (Host.get(cache, t) for t in targets)
                               if h is not None])
    need = {ref: vm_need(r) for ref, r in migratable}
    for ref, _ in sorted(migratable, key=lambda v: need[v[0]], reverse=True):
        best = max(targets, key=lambda h: free.get(h, 0))
        if free.get(best, 0) >= need[ref]:
            free[best] -= need[ref]
            if ref not in ev.blocked:
                ev.moves[ref] = best
        else:
            ev.blocked[ref] = f"no other host has {human_bytes(need[ref])} free for it"
    return ev


# ------------------------------------------------------------------ gates


def _live(host: Host) -> str | None:
    return None if host.live else "it is powered off (power it on first)"


def _going_down(host: Host) -> str | None:
    if "shutdown" in host.current_operations.values():
        return "it is shutting down or rebooting already"
    return None


def _enable_when(cache: Cache, host: Any) -> str | None:
    if host.enabled:
        return "it is enabled already (not in maintenance mode)"
    return _live(host) or _going_down(host)


def _disable_when(cache: Cache, host: Any) -> str | None:
    if not host.enabled:
        return "it is disabled already (in maintenance mode)"
    return _live(host)


def _evacuate_when(cache: Cache, host: Any) -> str | None:
    why = _live(host) or _going_down(host)
    if why is not None:
        return why
    if not guests(cache, host):
        return "no VM runs on it"
    return None


def _maintenance_when(cache: Cache, host: Any) -> str | None:
    why = _live(host) or _going_down(host)
    if why is not None:
        return why
    if not host.enabled and not guests(cache, host):
        return "it is in maintenance mode already"
    return None


def _power_when(cache: Cache, host: Any) -> str | None:
    return _live(host) or _going_down(host)


def _runs_vms(cache: Cache, host: Host, verb: str) -> str | None:
    running = guests(cache, host)
    if not running:
        return None
    shown = sorted(printable(v.name_label) for v in running)
    some = ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")
    return (f"it runs {len(running)} VM{'s' if len(running) != 1 else ''} ({some}): "
            f"evacuate it first ('Evacuate, then {verb}', --evacuate)")


def _reboot_when(cache: Cache, host: Any) -> str | None:
    return _power_when(cache, host) or _runs_vms(cache, host, "reboot")


def _shutdown_when(cache: Cache, host: Any) -> str | None:
    return _power_when(cache, host) or _runs_vms(cache, host, "shut down")


def _power_on_when(cache: Cache, host: Any) -> str | None:
    if host.live:
        return "it is running"
    if not host.power_on_mode:
        return ("it has no power-on mode set, so xapi cannot wake it "
                "(xe host-set-power-on-mode)")
    return None


# ------------------------------------------------------------------ planners


def _names(cache: Cache, host: Host, ev: Evacuation | None = None) -> dict[str, str]:
    n = {host.ref: printable(host.name_label)}
    if ev is not None:
        n.update(ev.names)
    return n


def _master_note(cache: Cache, host: Host) -> tuple[str, ...]:
    if not host.is_master:
        return ()
    return (f"{printable(host.name_label)} is the pool master: the pool cannot be managed "
            "until it is back, and xsctl reconnects then.",)


def _shutdown_call(vm: Vm) -> tuple[Call, str]:
    """A clean shutdown where the guest allows one, else a forced one (a paused VM)."""
    if "clean_shutdown" in vm.allowed_operations:
        return Call("VM.clean_shutdown", (vm.ref,), True), xe("vm-shutdown", uuid=vm.uuid)
    return (Call("VM.hard_shutdown", (vm.ref,), True),
            xe("vm-shutdown", uuid=vm.uuid, force=True))


def _evacuation_steps(cache: Cache, host: Host, shut_down: frozenset[str],
                      disable: bool) -> tuple[Evacuation, list[Call], list[str], list[str],
                                              list[str]]:
    """The calls that empty the host: (disable,) assert_can_evacuate, evacuate, with the
    VMs that cannot move shut down first where the user marked them; refused here,
    before any call, when one that cannot move is not marked. Returns the calls, their
    xe lines, the notes listing the moves and the warnings."""
    ev = evacuation(cache, host)
    left = {vm: why for vm, why in ev.blocked.items() if vm not in shut_down}
    if left:
        ev.blocked = left
        raise Refused(ev.refusal() + " (or mark them to shut down: --shut-down VM)")
    calls: list[Call] = []
    lines: list[str] = []
    check = Call("host.assert_can_evacuate", (host.ref,))
    if not shut_down:
        calls.append(check)  # xapi's own verdict before anything changes
    if disable:
        calls.append(_disable_call(host))
        lines.append(xe("host-disable", uuid=host.uuid))
    stopped = sorted((v for v in guests(cache, host) if v.ref in shut_down),
                     key=lambda v: v.name_label.lower())
    for vm in stopped:
        call, line = _shutdown_call(vm)
        calls.append(call)
        lines.append(line)
    if shut_down:
        calls.append(check)
    calls.append(Call("host.evacuate", (host.ref,), True))
    lines.append(xe("host-evacuate", uuid=host.uuid))
    notes = []
    moves = ev.move_lines()
    if ev.moves:
        notes.append("Live-migrated (where xapi's rule puts them now): "
                     + "; ".join(moves[:MOVES_SHOWN])
                     + (f"; and {len(moves) - MOVES_SHOWN} more" if len(moves) > MOVES_SHOWN
                        else "") + ".")
    warnings = []
    if stopped:
        warnings.append("Shut down, as they cannot move: "
                        + some([printable(v.name_label) for v in stopped], MOVES_SHOWN) + ".")
    return ev, calls, lines, notes, warnings


def _blocked_choices(ctx: Context, host: Any) -> list[Choice]:
    """The VMs that cannot move off the host, each with why; one that cannot be shut
    down either says so."""
    ev = evacuation(ctx.cache, host)
    out = []
    for vm, why in sorted(ev.blocked.items(), key=lambda kv: ev.names[kv[0]].lower()):
        v = Vm.get(ctx.cache, vm)
        stoppable = v is not None and bool({"clean_shutdown", "hard_shutdown"}
                                           & v.allowed_operations)
        out.append(Choice(vm, ev.names[vm], why,
                          None if stoppable else "it cannot be shut down now"))
    return out


def _resolve_blocked(ctx: Context, host: Any, text: str) -> str:
    return resolve_vm(ctx.cache, text)


SHUT_DOWN = Param(
    "shut_down", ParamKind.PICK_MANY, "VMs to shut down", ("--shut-down",),
    "shut down this VM first: one that cannot move off the host (repeatable)",
    required=False, choices=_blocked_choices, resolve=_resolve_blocked, metavar="VM",
    note="These VMs cannot move off the host, each for the reason beside it. Mark those "
         "to shut down first (the others must be moved or stopped by hand).")


def _disable_call(host: Host) -> Call:
    return Call("host.disable", (host.ref,),
                undo=Undo(f"{printable(host.name_label)} enabled again",
                          (Call("host.enable", (host.ref,)),)))


def _set_mark(host: Host, key: str, value: str, undo: bool = False) -> tuple[list[Call], str]:
    """A key of the host's other_config set as XenCenter sets it (remove, then add)."""
    add = Call("host.add_to_other_config", (host.ref, key, value),
               undo=Undo(f"{printable(host.name_label)}'s {key} mark removed",
                         (Call("host.remove_from_other_config", (host.ref, key)),))
               if undo else None)
    line = (xe("host-param-set", uuid=host.uuid) + " "
            + shlex.quote(f"other-config:{key}={value}"))
    return [Call("host.remove_from_other_config", (host.ref, key)), add], line


def _clear_mark(host: Host, key: str) -> tuple[Call, str]:
    return (Call("host.remove_from_other_config", (host.ref, key)),
            xe("host-param-remove", uuid=host.uuid, param_name="other-config") + " "
            + shlex.quote(f"param-key={key}"))


def _maintenance_marks(cache: Cache, host: Host, ev: Evacuation,
                       shut_down: frozenset[str]) -> tuple[list[Call], list[str]]:
    """MAINTENANCE_MODE=true, and the VMs that leave the host (those migrated, those
    shut down), which leaving maintenance mode offers to bring back."""
    calls, line = _set_mark(host, MAINTENANCE_MODE, "true", undo=True)
    lines = [line]
    uuids = {ref: str((cache.get("vm", ref) or {}).get("uuid", "")) for ref in
             [*ev.moves, *shut_down]}
    for kind, refs in (("migrated", sorted(ev.moves)), ("halted", sorted(shut_down))):
        key = EVACUATED[kind]
        listed = ",".join(uuids[r] for r in refs if uuids.get(r))
        if listed:
            more, line = _set_mark(host, key, listed)
            calls += more
            lines.append(line)
        elif kind in host.evacuated:  # an older list would bring back the wrong VMs
            call, line = _clear_mark(host, key)
            calls.append(call)
            lines.append(line)
    if "suspended" in host.evacuated:
        call, line = _clear_mark(host, EVACUATED["suspended"])
        calls.append(call)
        lines.append(line)
    return calls, lines


def enter_maintenance(cache: Cache, host: Host, shut_down: frozenset[str]) -> Plan:
    why = _maintenance_when(cache, host)
    if why is not None:
        raise Refused(why)
    ev, calls, lines, notes, warnings = _evacuation_steps(cache, host, shut_down,
                                                          host.enabled)
    # marked as XenCenter marks it, once disabled and before anything moves
    marks, mark_lines = _maintenance_marks(cache, host, ev, shut_down)
    at = next((i + 1 for i, c in enumerate(calls) if c.method == "host.disable"),
              1 if calls and calls[0].method == "host.assert_can_evacuate" else 0)
    calls[at:at] = marks
    at_line = next((i + 1 for i, x in enumerate(lines) if x.startswith("xe host-disable")), 0)
    lines[at_line:at_line] = mark_lines
    if not ev.moves:
        notes.append("No VM moves.")
    else:
        notes.append("Leaving maintenance mode offers to bring these VMs back.")
    notes.append("No new VM starts on it until it leaves maintenance mode (enable).")
    return Plan(title=f"Enter maintenance mode on {printable(host.name_label)}",
                action="host.enter_maintenance", targets=(host.ref,), calls=tuple(calls),
                xe=tuple(lines), names=_names(cache, host, ev), notes=tuple(notes),
                warnings=tuple(warnings))


def enable(cache: Cache, host: Host, bring_back: frozenset[str] = frozenset()) -> Plan:
    why = _enable_when(cache, host)
    if why is not None:
        raise Refused(why)
    err = explain(host, "enable")
    if err is not None:
        raise err
    calls = [Call("host.enable", (host.ref,))]
    lines = [xe("host-enable", uuid=host.uuid)]
    if host.maintenance:
        call, line = _clear_mark(host, MAINTENANCE_MODE)
        calls.append(call)
        lines.append(line)
    names = _names(cache, host)
    back = [b for b in returning(cache, host) if b.vm in bring_back]
    for b in back:
        names[b.vm] = b.name
        calls.append(b.call)
        lines.append(b.line)
    for kind in host.evacuated:  # asked once: the lists go, brought back or not
        call, line = _clear_mark(host, EVACUATED[kind])
        calls.append(call)
        lines.append(line)
    notes = ["VMs may start or migrate there again."]
    if back:
        notes.append("Brought back: " + ", ".join(f"{b.name} ({b.how})" for b in back)
                     + ".")
    left = len(returning(cache, host)) - len(back)
    if left:
        notes.append(f"{left} VM(s) that were moved off it stay where they are.")
    elif not back:
        notes.append("The VMs moved off it stay where they are.")
    return Plan(title=f"Enable {printable(host.name_label)} (exit maintenance mode)",
                action="host.enable", targets=(host.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names, notes=tuple(notes),
                disruptive=bool(back))  # a live migration pauses its guest a moment


@dataclass(frozen=True)
class BringBack:
    """A VM that left the host when it entered maintenance mode, and the call that
    brings it back (XenCenter's restore: migrate the running, resume the suspended,
    start the halted, each on this host)."""

    vm: str
    name: str
    how: str  # "migrated back", "started here", "resumed here"
    call: Call
    line: str
    why_not: str | None  # when it cannot come back now


def returning(cache: Cache, host: Host) -> list[BringBack]:
    """The VMs the host's saved lists name that are still in the state they were left
    in, elsewhere (XenCenter's GetMigratedEvacuatedVMs and the like)."""
    if not host.evacuated:
        return []
    by_uuid = {str(r.get("uuid")): (ref, r) for ref, r in cache.snapshot("vm")
               if not r.get("is_control_domain") and not r.get("is_a_template")}
    out = []
    seen = set()
    for kind, uuids in host.evacuated.items():
        want, op = {"migrated": ("Running", "pool_migrate"),
                    "suspended": ("Suspended", "resume_on"),
                    "halted": ("Halted", "start_on")}[kind]
        for u in uuids:
            hit = by_uuid.get(u)
            if hit is None or hit[0] in seen:
                continue
            ref, r = hit
            if r.get("power_state") != want or r.get("resident_on") == host.ref:
                continue
            seen.add(ref)
            name = printable(str(r.get("name_label", "")))
            where = printable(str((cache.get("host", str(r.get("resident_on"))) or {})
                                  .get("name_label", "")))
            why_not = None
            if op not in (r.get("allowed_operations") or ()):
                why_not = _vm_blocker(cache, ref, r, op) or "xapi does not allow it now"
            if kind == "migrated":
                out.append(BringBack(ref, name, f"migrated back from {where}",
                                   Call("VM.pool_migrate", (ref, host.ref, {"live": "true"}),
                                        True),
                                   xe("vm-migrate", uuid=r.get("uuid"), host_uuid=host.uuid,
                                      live=True), why_not))
            elif kind == "suspended":
                out.append(BringBack(ref, name, "resumed here",
                                   Call("VM.resume_on", (ref, host.ref, False, False), True),
                                   xe("vm-resume", uuid=r.get("uuid"), on=host.uuid),
                                   why_not))
            else:
                out.append(BringBack(ref, name, "started here",
                                   Call("VM.start_on", (ref, host.ref, False, False), True),
                                   xe("vm-start", uuid=r.get("uuid"), on=host.uuid),
                                   why_not))
    return sorted(out, key=lambda b: b.name.lower())


def _bring_back_choices(ctx: Context, host: Any) -> list[Choice]:
    return [Choice(b.vm, b.name, b.how, b.why_not) for b in returning(ctx.cache, host)]


BRING_BACK = Param(
    "bring_back", ParamKind.PICK_MANY, "VMs to bring back", ("--bring-back",),
    "bring this VM back: one that left the host when it entered maintenance mode "
    "(repeatable)", required=False, choices=_bring_back_choices, resolve=_resolve_blocked,
    metavar="VM",
    note="These VMs left the host when it entered maintenance mode. Mark those to bring "
         "back: a running one migrates back, a halted one starts here.")


def disable(cache: Cache, host: Host) -> Plan:
    why = _disable_when(cache, host)
    if why is not None:
        raise Refused(why)
    notes = ["No new VM starts or migrates there until it is enabled again."]
    running = guests(cache, host)
    if running:
        notes.append(f"The {len(running)} VM(s) running there keep running: enter "
                     "maintenance mode to move them off.")
    return Plan(title=f"Disable {printable(host.name_label)}", action="host.disable",
                targets=(host.ref,), calls=(Call("host.disable", (host.ref,)),),
                xe=(xe("host-disable", uuid=host.uuid),), names=_names(cache, host),
                notes=tuple(notes))


def evacuate(cache: Cache, host: Host, shut_down: frozenset[str]) -> Plan:
    why = _evacuate_when(cache, host)
    if why is not None:
        raise Refused(why)
    err = explain(host, "evacuate")
    if err is not None:
        raise err
    ev, calls, lines, notes, warnings = _evacuation_steps(cache, host, shut_down, False)
    if host.enabled:
        notes.append("The host stays enabled: VMs may start there again (enter maintenance "
                     "mode to keep it empty).")
    return Plan(title=f"Evacuate {printable(host.name_label)}", action="host.evacuate",
                targets=(host.ref,), calls=tuple(calls), xe=tuple(lines),
                names=_names(cache, host, ev), notes=tuple(notes), warnings=tuple(warnings))


def _plan_power(cache: Cache, host: Host, op: str, verb: str, first: bool,
                shut_down: frozenset[str]) -> Plan:
    """Reboot or shut down (``first``: evacuate first). xapi needs the host disabled
    (HOST_NOT_DISABLED), so the plan disables it."""
    why = _power_when(cache, host)
    if why is not None:
        raise Refused(why)
    running = guests(cache, host)
    name = printable(host.name_label)
    names = _names(cache, host)
    if running and not first:
        raise Refused(_runs_vms(cache, host, verb.lower()) or "")
    calls: list[Call] = []
    lines: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    if running:
        ev, calls, lines, notes, warnings = _evacuation_steps(cache, host, shut_down,
                                                              host.enabled)
        names.update(ev.names)
    elif host.enabled:
        calls.append(_disable_call(host))
        lines.append(xe("host-disable", uuid=host.uuid))
    calls.append(Call(f"host.{op}", (host.ref,)))
    lines.append(xe(f"host-{op}", uuid=host.uuid))
    if op == "reboot":
        notes.append(f"{name} comes back enabled; the VMs moved off it stay where they are.")
    else:
        notes.append(f"{name} stays off until it is powered on"
                     + (f" ({host.power_on_mode})." if host.power_on_mode else
                        " by hand: it has no power-on mode."))
    notes += _master_note(cache, host)
    return Plan(title=f"{verb} {name}" + (" after evacuating it" if running else ""),
                action=f"host.{op}" + ("_evacuated" if first else ""),
                targets=(host.ref,), calls=tuple(calls), xe=tuple(lines), names=names,
                disruptive=True, notes=tuple(notes), warnings=tuple(warnings))


def reboot(cache: Cache, host: Host) -> Plan:
    return _plan_power(cache, host, "reboot", "Reboot", False, frozenset())


def reboot_evacuated(cache: Cache, host: Host, shut_down: frozenset[str]) -> Plan:
    return _plan_power(cache, host, "reboot", "Reboot", True, shut_down)


def shutdown(cache: Cache, host: Host) -> Plan:
    return _plan_power(cache, host, "shutdown", "Shut down", False, frozenset())


def shutdown_evacuated(cache: Cache, host: Host, shut_down: frozenset[str]) -> Plan:
    return _plan_power(cache, host, "shutdown", "Shut down", True, shut_down)


def power_on(cache: Cache, host: Host) -> Plan:
    why = _power_on_when(cache, host)
    if why is not None:
        raise Refused(why)
    err = explain(host, "power_on")
    if err is not None:
        raise err
    return Plan(title=f"Power on {printable(host.name_label)}", action="host.power_on",
                targets=(host.ref,), calls=(Call("host.power_on", (host.ref,), True),),
                xe=(xe("host-power-on", uuid=host.uuid),), names=_names(cache, host),
                notes=(f"xapi wakes it by its power-on mode ({host.power_on_mode}).",))


declare(
    Operation("host.enter_maintenance", HOST, "Enter maintenance mode", "m",
              "enter-maintenance", "host-evacuate", "is in maintenance mode",
              "Disable it, then live-migrate every VM off it", enter_maintenance,
              when=_maintenance_when, impact=Impact.DISRUPTIVE, footer=True,
              params=(SHUT_DOWN,)),
    Operation("host.enable", HOST, "Exit maintenance mode (enable)", "e", "enable",
              "host-enable", "enabled",
              "Enable it: VMs may start and migrate there again, and those moved off "
              "it may come back", enable, when=_enable_when,
              also=("host exit-maintenance",), params=(BRING_BACK,)),
    Operation("host.disable", HOST, "Disable", "x", "disable", "host-disable", "disabled",
              "Disable it: no new VM starts or migrates there; running VMs stay",
              disable, when=_disable_when),
    Operation("host.evacuate", HOST, "Evacuate", "E", "evacuate", "host-evacuate",
              "evacuated", "Live-migrate every VM off it (it stays enabled)", evacuate,
              when=_evacuate_when, impact=Impact.DISRUPTIVE, params=(SHUT_DOWN,)),
    Operation("host.reboot", HOST, "Reboot", "b", "reboot", "host-reboot",
              "is rebooting", "Reboot it (refused while VMs run on it)", reboot,
              when=_reboot_when, impact=Impact.DISRUPTIVE),
    Operation("host.reboot_evacuated", HOST, "Evacuate, then reboot", "B", "reboot",
              "host-reboot", "is rebooting", "Evacuate it, then reboot it",
              reboot_evacuated, when=_power_when, impact=Impact.DISRUPTIVE,
              flag="--evacuate", params=(SHUT_DOWN,)),
    Operation("host.shutdown", HOST, "Shut down", "t", "shutdown", "host-shutdown",
              "is shutting down", "Shut it down (refused while VMs run on it)",
              shutdown, when=_shutdown_when, impact=Impact.DISRUPTIVE),
    Operation("host.shutdown_evacuated", HOST, "Evacuate, then shut down", "T", "shutdown",
              "host-shutdown", "is shutting down", "Evacuate it, then shut it down",
              shutdown_evacuated, when=_power_when, impact=Impact.DISRUPTIVE,
              flag="--evacuate", params=(SHUT_DOWN,)),
    Operation("host.power_on", HOST, "Power on", "s", "power-on", "host-power-on",
              "is powered on", "Power it on, as its power-on mode allows (wake-on-LAN, "
              "iLO, DRAC, IPMI)", power_on, when=_power_on_when),
)
