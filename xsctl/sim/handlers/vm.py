"""VM behaviour: the power-state machine and allowed_operations, host placement and
memory, the lifecycle calls, memory and vCPU settings, clone/copy/snapshot/checkpoint/
revert, provision, create and destroy.

Written from xapi's own code (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_vm_lifecycle.ml``: ``allowed_power_states``,
  ``is_allowed_concurrently``, ``check_operation_error`` (in its order),
  ``update_allowed_operations``, ``force_state_reset``.
* ``ocaml/xapi/message_forwarding.ml`` (module VM): which operation each call marks,
  host choice and memory reservation, the alerts (message bodies) after each call.
* ``ocaml/xapi/xapi_vm.ml``, ``xapi_vm_helpers.ml``: start, shutdown, suspend, reboot,
  power_state_reset, memory and vCPU setters, ``assert_can_boot_here``, device lists.
* ``ocaml/xapi/xapi_vm_memory_constraints.ml``, ``vm_memory_constraints.ml``,
  ``ocaml/xapi-idl/memory/memory.ml``, ``memory_check.ml``: memory rules and sizes.
* ``ocaml/xapi/xapi_vm_clone.ml``, ``xapi_vm_snapshot.ml``, ``xapi_templates.ml``:
  clone/copy/snapshot/checkpoint/revert and provisioning.
* ``ocaml/xapi/xapi_xenops.ml``, ``xapi_guest_agent.ml``: what a domain's start,
  suspend and shutdown change (consoles, domid, guest metrics, suspend image).

Where the simulator has to choose (xapi picks a host at random, biased by free memory),
it chooses deterministically so tests are stable; each such place says so.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from xsctl.sim.dispatch import Context, api, is_cancelling
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks, message, network, storage
from xsctl.sim.store import Store, allowed_ops, now_datetime
from xsctl.sim.wire import NULL_REF, DateTime, Row

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

MiB = 1024**2
EPOCH = DateTime("19700101T00:00:00Z")

# ============================================================================ operations

# xapi_vm_lifecycle.ml allowed_power_states (order matters: it is the order of the
# "expected" list in VM_BAD_POWER_STATE).
_ALL_STATES = ("Halted", "Paused", "Suspended", "Running")
_POWER_STATES: dict[str, tuple[str, ...]] = {
    "import": (),
    "changing_shadow_memory": ("Halted",),
    "changing_NVRAM": ("Halted",),
    "make_into_template": ("Halted",),
    "provision": ("Halted",),
    "start": ("Halted",),
    "start_on": ("Halted",),
    "unpause": ("Paused",),
    "csvm": ("Suspended",),
    "resume": ("Suspended",),
    "resume_on": ("Suspended",),
    "changing_dynamic_range": ("Halted", "Running"),
    "create_template": ("Halted", "Suspended"),
    "destroy": ("Halted", "Suspended"),
    "export": ("Halted", "Suspended"),
    "hard_reboot": ("Paused", "Running"),
    "checkpoint": ("Paused", "Suspended", "Running"),
    "get_boot_record": ("Paused", "Suspended", "Running"),
    "shutdown": ("Paused", "Suspended", "Running"),
    "hard_shutdown": ("Paused", "Suspended", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
    "assert_operation_valid": _ALL_STATES,
    "metadata_export": _ALL_STATES,
    "power_state_reset": _ALL_STATES,
    "revert": _ALL_STATES,
    "reverting": _ALL_STATES,
    "snapshot": _ALL_STATES,
    "update_allowed_operations": _ALL_STATES,
    "query_services": _ALL_STATES,
    "create_vtpm": ("Halted",),
}
_RUNNING_ONLY = (
    "awaiting_memory_live", "call_plugin", "clean_reboot", "clean_shutdown",
    "changing_memory_live", "changing_shadow_memory_live", "changing_VCPUs_live",
    "data_source_op", "pause", "pool_migrate", "send_sysrq", "send_trigger",
    "snapshot_with_quiesce", "sysprep", "suspend",
)
for _op in _RUNNING_ONLY:
    _POWER_STATES[_op] = ("Running",)

# Record_util.vm_operation_to_string: the text xapi puts in VM_IS_TEMPLATE,
# VM_IS_SNAPSHOT and OTHER_OPERATION_IN_PROGRESS. Operations missing from xapi's table
# (changing_VCPUs, changing_memory_limits, query_services, create_template) print as
# "(unknown operation)".
_OP_TEXT = {
    "assert_operation_valid": "assertoperationvalid",
    "data_source_op": "data_sources_op",
}
_OP_UNKNOWN = frozenset({"changing_VCPUs", "changing_memory_limits", "query_services",
                         "create_template"})


def op_text(op: str) -> str:
    if op in _OP_UNKNOWN:
        return "(unknown operation)"
    return _OP_TEXT.get(op, op)


# xapi_vm_lifecycle.ml ignored_ops: never listed in allowed_operations.
IGNORED_OPS = frozenset({
    "create_template", "power_state_reset", "csvm", "get_boot_record", "send_sysrq",
    "send_trigger", "query_services", "shutdown", "call_plugin", "changing_memory_live",
    "awaiting_memory_live", "changing_memory_limits", "changing_shadow_memory_live",
    "changing_VCPUs", "assert_operation_valid", "data_source_op",
    "update_allowed_operations", "import", "reverting",
})

_TEMPLATE_OPS = frozenset({
    "changing_dynamic_range", "changing_static_range", "changing_memory_limits",
    "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone", "copy",
    "export", "metadata_export", "provision",
})
_SNAPSHOT_OPS = frozenset({"revert", "clone", "copy", "export", "destroy", "hard_shutdown",
                           "metadata_export"})
_CONTROL_DOMAIN_OPS = frozenset({
    "data_source_op", "changing_memory_live", "awaiting_memory_live", "metadata_export",
    "changing_dynamic_range", "changing_memory_limits", "changing_static_range", "start",
    "start_on", "changing_VCPUs", "destroy",
})
_SUSPEND_LIKE = frozenset({"suspend", "checkpoint", "pool_migrate", "migrate_send"})
_PV_DOMAINS = frozenset({"pv", "pv_in_pvh", "pvh"})


def _is_true(v: str | None) -> bool:
    """xapi_vm_lifecycle.ml bool_of_assoc / Vm_platform.is_true."""
    return v is not None and (v == "1" or v.lower() == "true")


class Facts(NamedTuple):
    """Everything check_operation_error reads, except the names and refs that only
    appear in error parameters. Equal facts give equal allowed_operations, so the list
    is memoised on them (10,000 VMs share a few dozen distinct tuples)."""

    power_state: str
    is_template: bool
    is_snapshot: bool
    default_template: bool
    is_control_domain: bool
    is_domain_zero: bool
    blocked: frozenset[str]
    current: tuple[str, ...]
    implicit_support: bool
    live: bool
    features: frozenset[str]
    cant_suspend: str | None
    immobile: bool
    nested_virt: bool
    any_reset: bool
    reset_and_caching: bool
    has_pcis: bool
    has_vgpus: bool
    has_vusbs: bool
    has_vtpms: bool
    appliance: bool
    protection_policy: bool
    snapshot_schedule: bool
    system_domain: bool
    clone_suspended: bool


def _pool_row(store: Store) -> Row:
    return next(iter(store.tables["pool"].values()))


def has_pv_drivers(gm: Row | None) -> bool:
    """xapi_pv_driver_version.ml: drivers are known when major and minor parse."""
    if gm is None:
        return False
    ver = gm["PV_drivers_version"]
    try:
        int(ver["major"])
        int(ver["minor"])
    except (KeyError, ValueError):
        return False
    return True


def vm_facts(store: Store, ref: str, row: Row) -> Facts:
    tables = store.tables
    ps = row["power_state"]
    live = ps in ("Running", "Paused")
    metrics = tables["VM_metrics"].get(row["metrics"])
    gm = tables["VM_guest_metrics"].get(row["guest_metrics"])
    platform = row["platform"]
    if metrics is not None:
        nomigrate = bool(metrics["nomigrate"])
        nested = bool(metrics["nested_virt"])
        booted_pv = metrics["current_domain_type"] in _PV_DOMAINS
    else:
        nomigrate = _is_true(platform.get("nomigrate"))
        nested = _is_true(platform.get("nested-virt"))
        booted_pv = False
    other: dict[str, str] = gm["other"] if gm is not None else {}
    any_reset = reset_and_caching = False
    for vbd in row["VBDs"]:
        vbd_row = tables["VBD"].get(vbd)
        if vbd_row is None:
            continue
        vdi = tables["VDI"].get(vbd_row["VDI"])
        if vdi is None:
            continue
        reset = vdi["sm_config"].get("on_boot") == "reset" or vdi["on_boot"] == "reset"
        any_reset = any_reset or reset
        reset_and_caching = reset_and_caching or (
            reset and _is_true(vdi["sm_config"].get("caching"))
        )
    is_dom0 = False
    if row["is_control_domain"]:
        host = tables["host"].get(row["resident_on"])
        is_dom0 = host is not None and host["control_domain"] == ref
    pool_oc = _pool_row(store)["other_config"] if tables["pool"] else {}
    return Facts(
        power_state=ps,
        is_template=bool(row["is_a_template"]),
        is_snapshot=bool(row["is_a_snapshot"]),
        default_template=bool(row["is_default_template"])
        or _is_true(row["other_config"].get("default_template")),
        is_control_domain=bool(row["is_control_domain"]),
        is_domain_zero=is_dom0,
        blocked=frozenset(row["blocked_operations"]),
        current=tuple(row["current_operations"].values()),
        implicit_support=(not live) or booted_pv or has_pv_drivers(gm),
        live=live,
        features=frozenset(k for k, v in other.items() if v == "1"),
        cant_suspend=other.get("data-cant-suspend-reason"),
        immobile=nomigrate or nested,
        nested_virt=nested,
        any_reset=any_reset,
        reset_and_caching=reset_and_caching,
        has_pcis=bool(row["attached_PCIs"]),
        has_vgpus=bool(row["VGPUs"]),
        has_vusbs=bool(row["VUSBs"]),
        has_vtpms=bool(row["VTPMs"]),
        appliance=store.exists(row["appliance"]),
        protection_policy=store.exists(row["protection_policy"]),
        snapshot_schedule=store.exists(row["snapshot_schedule"]),
        system_domain=_is_true(row["other_config"].get("is_system_domain")),
        clone_suspended=pool_oc.get("allow_clone_suspended_vm") == "true",
    )


def allowed_power_states(op: str, f: Facts) -> tuple[str, ...]:
    if op in ("changing_VCPUs", "changing_static_range", "changing_memory_limits"):
        return ("Halted", "Running") if f.is_control_domain else ("Halted",)
    if op in ("clone", "copy"):
        return ("Halted", "Suspended") if f.is_snapshot or f.clone_suspended else ("Halted",)
    return _POWER_STATES.get(op, ())


def is_allowed_concurrently(op: str, current: tuple[str, ...]) -> bool:
    """xapi_vm_lifecycle.ml is_allowed_concurrently."""

    def aux(ops: frozenset[str]) -> bool:
        return op in ops and all(o in ops for o in current)

    if aux(frozenset({"clone", "copy", "export"})) or aux(frozenset({"snapshot", "checkpoint"})):
        return True
    if aux(frozenset({"get_boot_record"})):
        return True
    if op == "hard_shutdown":
        return op not in current
    if op == "hard_reboot":
        return not any(o in ("hard_shutdown", "hard_reboot") for o in current)
    table = [
        (("snapshot_with_quiesce",), "snapshot"),
        (("migrate_send",), "metadata_export"),
        (("migrate_send",), "clean_shutdown"),
        (("migrate_send",), "clean_reboot"),
    ]
    return any(state == current and transition == op for state, transition in table)


def _feature_error(f: Facts, op: str, ref: str, strict: bool) -> XapiFailure | None:
    """xapi_vm_lifecycle.ml check_op_for_feature."""
    if op in _SUSPEND_LIKE and f.live:
        if f.cant_suspend is not None:
            return XapiFailure("VM_NON_SUSPENDABLE", ref, f.cant_suspend)
        if not f.implicit_support and strict and "feature-suspend" not in f.features:
            return XapiFailure("VM_LACKS_FEATURE", ref)
        return None
    if f.implicit_support:
        return None
    lacks = f.features.isdisjoint
    if op == "clean_shutdown" and strict and lacks({"feature-shutdown", "feature-poweroff"}):
        return XapiFailure("VM_LACKS_FEATURE", ref)
    if op == "clean_reboot" and strict and lacks({"feature-shutdown", "feature-reboot"}):
        return XapiFailure("VM_LACKS_FEATURE", ref)
    if op == "changing_VCPUs_live" and "feature-vcpu-hotplug" not in f.features:
        return XapiFailure("VM_LACKS_FEATURE", ref)
    return None


def check_operation_error(
    f: Facts, op: str, ref: str, row: Row, strict: bool = True
) -> XapiFailure | None:
    """xapi_vm_lifecycle.ml check_operation_error: the first error, in xapi's order."""
    if op in f.blocked:
        return XapiFailure("OPERATION_BLOCKED", ref, row["blocked_operations"][op])
    states = allowed_power_states(op, f)
    if f.power_state not in states:
        return XapiFailure(
            "VM_BAD_POWER_STATE", ref, ", ".join(s.lower() for s in states),
            f.power_state.lower(),
        )
    if f.current and not is_allowed_concurrently(op, f.current):
        cur = list(row["current_operations"].items())
        if len(cur) == 1:
            refs, ops = cur[0][0], op_text(cur[0][1])
        else:
            refs = "{" + ",".join(t for t, _ in cur) + "}"
            ops = "{" + ",".join(op_text(o) for _, o in cur) + "}"
        return XapiFailure("OTHER_OPERATION_IN_PROGRESS", "VM", ref, ops, refs)
    if f.is_template and not f.is_snapshot and not (
        op in _TEMPLATE_OPS
        or (op in ("destroy", "migrate_send") and not f.default_template)
    ):
        return XapiFailure("VM_IS_TEMPLATE", ref, op_text(op))
    if f.is_snapshot and op not in _SNAPSHOT_OPS:
        return XapiFailure("VM_IS_SNAPSHOT", ref, op_text(op))
    if op == "provision" and not f.is_template:
        return XapiFailure("ONLY_PROVISION_TEMPLATE")
    if op == "revert" and not f.is_snapshot:
        return XapiFailure("ONLY_REVERT_SNAPSHOT")
    if op in _SUSPEND_LIKE and f.immobile and strict:
        return XapiFailure("VM_IS_IMMOBILE", ref)
    if op == "changing_dynamic_range" and f.nested_virt and strict:
        return XapiFailure("VM_IS_USING_NESTED_VIRT", ref)
    if op in ("changing_VCPUs", "destroy") and f.is_domain_zero:
        return XapiFailure("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
    if f.is_control_domain and op not in _CONTROL_DOMAIN_OPS:
        return XapiFailure(
            "OPERATION_NOT_ALLOWED", "This operation is not allowed on a control domain"
        )
    err = _feature_error(f, op, ref, strict)
    if err is not None:
        return err
    if op == "snapshot_with_quiesce":
        return XapiFailure("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", ref)
    if op in ("checkpoint", "snapshot", "suspend") and f.any_reset:
        return XapiFailure("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION")
    if op == "pool_migrate" and f.reset_and_caching:
        return XapiFailure("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION")
    if op in _SUSPEND_LIKE and f.has_pcis:
        return XapiFailure("VM_HAS_PCI_ATTACHED", ref)
    # check_vgpu; the simulator has no vGPU types, so none is suspendable
    if f.has_vgpus and op in _SUSPEND_LIKE and not (
        (op == "migrate_send" and f.power_state == "Halted")
        or (op == "checkpoint" and f.power_state == "Suspended")
    ):
        return XapiFailure("VM_HAS_VGPU", ref)
    if op in ("suspend", "snapshot", "checkpoint", "migrate_send", "pool_migrate") and f.has_vusbs:
        return XapiFailure("VM_HAS_VUSBS", ref)
    if op == "make_into_template":
        if f.appliance:
            return XapiFailure("VM_IS_PART_OF_AN_APPLIANCE", ref, row["appliance"])
        if f.protection_policy:
            return XapiFailure("VM_ASSIGNED_TO_PROTECTION_POLICY", ref, row["protection_policy"])
        if f.snapshot_schedule:
            return XapiFailure("VM_ASSIGNED_TO_SNAPSHOT_SCHEDULE", ref, row["snapshot_schedule"])
    if op == "query_services" and not f.system_domain:
        return XapiFailure("NOT_SYSTEM_DOMAIN", ref)
    if op == "create_vtpm" and f.has_vtpms:
        return XapiFailure("VTPM_MAX_AMOUNT_REACHED", len(row["VTPMs"]))
    return None


_MEMO_LIMIT = 4096


def _allowable(store: Store) -> tuple[str, ...]:
    """The vm_operations enum less ignored_ops: what update_allowed_operations tries."""
    rt = store.runtime
    if not rt.vm_allowable:
        ops = store.dm.enums["vm_operations"]
        rt.vm_allowable = tuple(op for op in ops if op not in IGNORED_OPS)
    return rt.vm_allowable


@allowed_ops("VM")
def vm_allowed_operations(store: Store, row: Row) -> list[str]:
    """update_allowed_operations: every allowable op through the check, strict. xapi
    folds with ``op :: accu``, so its list comes out in reverse enum order."""
    ref = store.uuids["VM"].get(row["uuid"], "")
    f = vm_facts(store, ref, row)
    memo = store.runtime.vm_allowed
    hit = memo.get(f)
    if hit is None:
        hit = tuple(
            op for op in reversed(_allowable(store))
            if check_operation_error(f, op, ref, row) is None
        )
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo[f] = hit
    return list(hit)


def operation_error(store: Store, vm: str, op: str, strict: bool = True) -> XapiFailure | None:
    row = store.get(vm, "VM")
    return check_operation_error(vm_facts(store, vm, row), op, vm, row, strict)


def assert_operation_valid(store: Store, vm: str, op: str, strict: bool = True) -> None:
    err = operation_error(store, vm, op, strict)
    if err is not None:
        raise err


# Helpers.Policy.standard: an operation that meets OTHER_OPERATION_IN_PROGRESS waits
# (woken when the VM changes) for up to two hours before giving up.
OTHER_OP_WAIT = 7200.0


def _task_cancelling(ctx: Context) -> bool:
    task = ctx.task
    if task is None:
        return False
    row = ctx.store.tables["task"].get(task)
    return row is not None and is_cancelling(row)


def _set_cancellable(ctx: Context, cancellable: bool) -> None:
    """TaskHelper.set_cancellable / set_not_cancellable."""
    task = ctx.ensure_task()
    with ctx.lock:
        row = ctx.store.tables["task"].get(task)
        if row is not None and row["status"] == "pending":
            want = ["cancel"] if cancellable else []
            if row["allowed_operations"] != want:
                ctx.store.update(task, {"allowed_operations": want})


@contextmanager
def vm_operation(
    ctx: Context, vm: str, op: str, *, strict: bool = True, wait: float = OTHER_OP_WAIT
) -> Iterator[str]:
    """Xapi_vm_helpers.with_vm_operation: check the operation and mark it in
    current_operations (keyed by the task) in one step under the lock; while another
    operation is in the way, wait for it (Helpers.retry, cancellable), as xapi does."""
    store = ctx.store
    task = ctx.ensure_task()
    _set_cancellable(ctx, True)
    deadline = time.monotonic() + wait
    with store.cond:
        while True:
            err = operation_error(store, vm, op, strict)
            if err is None:
                break
            if err.code != "OTHER_OPERATION_IN_PROGRESS" or time.monotonic() >= deadline:
                raise err
            if _task_cancelling(ctx):
                raise XapiFailure("TASK_CANCELLED", task)
            if ctx.sim.stopping:
                raise err
            store.cond.wait(timeout=min(0.5, max(0.01, deadline - time.monotonic())))
        store.set_map_key(vm, "current_operations", task, op)
    try:
        yield task
    finally:
        with ctx.lock:
            if store.exists(vm, "VM"):
                store.del_map_key(vm, "current_operations", task)


@contextmanager
def _marked(ctx: Context, refs: list[str], field: str, op: str) -> Iterator[None]:
    """The host's vm_start / vm_resume / vm_migrate: an entry in current_operations
    while the VM operation runs."""
    task = ctx.ensure_task()
    store = ctx.store
    with ctx.lock:
        marked = [r for r in refs if store.exists(r)]
        for r in marked:
            store.set_map_key(r, field, task, op)
    try:
        yield
    finally:
        with ctx.lock:
            for r in marked:
                if store.exists(r):
                    store.del_map_key(r, field, task)


# Helpers.Policy.fail_quickly: VM.start and the other calls that mark the VM's VBDs
# retry a VBD (or its VDI) busy with another operation every 2 s, for 2 minutes, then
# fail with the OTHER_OPERATION_IN_PROGRESS they met (message_forwarding.ml
# with_vbds_marked, "CA-26575: paper over transient VBD glitches").
VBD_LOCK_WAIT = 120.0


def _retry_locked(ctx: Context, attempt: Callable[[], None], wait: float) -> None:
    """Helpers.retry_with_global_lock: run ``attempt`` under the lock; while it meets
    OTHER_OPERATION_IN_PROGRESS, wait (woken when anything changes) and try again
    until ``wait`` seconds have passed; a cancelled task stops with TASK_CANCELLED."""
    store = ctx.store
    task = ctx.ensure_task()
    deadline = time.monotonic() + wait
    with store.cond:
        while True:
            if _task_cancelling(ctx):
                raise XapiFailure("TASK_CANCELLED", task)
            try:
                attempt()
                return
            except XapiFailure as e:
                if e.code != "OTHER_OPERATION_IN_PROGRESS" or ctx.sim.stopping or \
                        time.monotonic() >= deadline:
                    raise
            store.cond.wait(timeout=min(0.5, max(0.01, deadline - time.monotonic())))


def _unmark_vbds(store: Store, vbds: list[str], task: str) -> None:
    """unmark_vbds (the VDI follows, as the xenopsd VBD events make it follow)."""
    for vbd in vbds:
        row = store.tables["VBD"].get(vbd)
        if row is not None:
            store.del_map_key(vbd, "current_operations", task)
            storage.refresh(store, row["VDI"])


def _mark_vbds(store: Store, vm: str, task: str) -> list[str]:
    """message_forwarding.ml mark_vbds: each of the VM's VBDs in turn is checked for
    ``attach`` (Xapi_vbd_helpers.assert_operation_valid, sharing checks included, so
    a disk another running VM holds read-write is VDI_IN_USE [vdi] and a read-write
    VBD of a read-only VDI is VDI_READONLY [vdi]) and marked; the first failure
    unmarks those already marked and is raised."""
    marked: list[str] = []
    try:
        for vbd in store.get(vm, "VM")["VBDs"]:
            storage.assert_vbd_op(store, vbd, "attach")
            store.set_map_key(vbd, "current_operations", task, "attach")
            marked.append(vbd)
            storage.refresh(store, store.get(vbd, "VBD")["VDI"])
    except XapiFailure:
        _unmark_vbds(store, marked, task)
        raise
    return marked


def _unmark_vifs(store: Store, vifs: list[str], task: str) -> None:
    for vif in vifs:
        if vif in store.tables["VIF"]:
            store.del_map_key(vif, "current_operations", task)


def _mark_vifs(store: Store, vm: str, task: str) -> list[str]:
    """message_forwarding.ml mark_vifs: a VIF that fails its ``attach`` check is
    dropped (map_with_drop), and then not all are marked: OPERATION_NOT_ALLOWED
    ["Failed to lock all VIFs"], which is not retried."""
    vifs = list(store.get(vm, "VM")["VIFs"])
    marked: list[str] = []
    for vif in vifs:
        row = store.tables["VIF"].get(vif)
        if row is None or network.vif_op_errors(store, vif, row).get("attach") is not None:
            continue
        store.set_map_key(vif, "current_operations", task, "attach")
        marked.append(vif)
    if len(marked) != len(vifs):
        _unmark_vifs(store, marked, task)
        raise XapiFailure("OPERATION_NOT_ALLOWED", "Failed to lock all VIFs")
    return marked


@contextmanager
def _devices_marked(ctx: Context, vm: str, *, vifs: bool = True) -> Iterator[None]:
    """with_vbds_marked (then with_vifs_marked) ~op:`attach, as VM.start, start_on,
    clean_reboot and hard_reboot nest them (resume and resume_on mark only the VBDs):
    nobody can take a disk away while the devices are (re)attached."""
    store = ctx.store
    task = ctx.ensure_task()
    vbds: list[str] = []
    marked_vifs: list[str] = []

    def mark_vbds() -> None:
        vbds[:] = _mark_vbds(store, vm, task)

    def mark_vifs() -> None:
        marked_vifs[:] = _mark_vifs(store, vm, task)

    _retry_locked(ctx, mark_vbds, VBD_LOCK_WAIT)
    try:
        if vifs:
            _retry_locked(ctx, mark_vifs, OTHER_OP_WAIT)
        try:
            yield
        finally:
            with ctx.lock:
                _unmark_vifs(store, marked_vifs, task)
    finally:
        with ctx.lock:
            _unmark_vbds(store, vbds, task)


# ============================================================================ memory

def _mib_of_bytes_used(b: int) -> int:
    return -(-b // MiB)


def _mib_of_pages_used(p: int) -> int:
    return -(-p // 256)


def domain_type(row: Row) -> str:
    """Helpers.domain_type: an unspecified type is derived from HVM_boot_policy."""
    dt: str = row["domain_type"]
    if dt == "unspecified":
        return "hvm" if row["HVM_boot_policy"] else "pv"
    return dt


def _memory_model(row: Row) -> tuple[int, int, float, int]:
    """(extra_internal, extra_external, shadow multiplier, shim) MiB per memory.ml."""
    dt = domain_type(row)
    static_max_mib = _mib_of_bytes_used(int(row["memory_static_max"]))
    mult = float(row["HVM_shadow_multiplier"])
    if dt == "pv":
        return 0, 1, 1.0, 0
    if dt == "pv_in_pvh":
        return 1, 1, mult, 23 + static_max_mib // 90
    return 1, 1, mult, 0


def _shadow_mib(static_max_mib: int, vcpus: int, mult: float) -> int:
    total = _mib_of_pages_used(256 * vcpus + static_max_mib + static_max_mib)
    return max(1, int(total * mult))


def memory_overhead(row: Row) -> int:
    """Memory_check.vm_compute_memory_overhead (memory.ml overhead_mib), in bytes."""
    internal, external, mult, shim = _memory_model(row)
    static_max_mib = _mib_of_bytes_used(int(row["memory_static_max"]))
    vcpus = int(row["VCPUs_max"])
    mib = (internal + external + _shadow_mib(static_max_mib, vcpus, mult)
           + _mib_of_pages_used(38 * vcpus) + shim)
    return mib * MiB


def start_memory(row: Row) -> int:
    """Memory_check.vm_compute_start_memory with the Dynamic_min policy (Static_max
    for pv_in_pvh): the footprint the host must have free, in bytes."""
    policy = row["memory_static_max"] if domain_type(row) == "pv_in_pvh" else row["memory_dynamic_min"]
    target_mib = _mib_of_bytes_used(int(policy))
    return target_mib * MiB + memory_overhead(row)


def _used_memory(row: Row) -> int:
    """vm_compute_used_memory with Dynamic_min (maximum compression)."""
    return int(row["memory_dynamic_min"]) + int(row["memory_overhead"])


def host_free_memory(store: Store, host: str, ignore_scheduled: str | None = None) -> int:
    """Memory_check.host_compute_free_memory_with_maximum_compression: from what is
    resident or scheduled on the host, not from the reported metric."""
    hrow = store.get(host, "host")
    metrics = store.tables["host_metrics"].get(hrow["metrics"])
    total = int(metrics["memory_total"]) if metrics is not None else 0
    avail = total - int(hrow["memory_overhead"])
    vms = store.tables["VM"]
    for vm in hrow["resident_VMs"]:
        row = vms.get(vm)
        if row is not None:
            avail -= _used_memory(row)
    for vm, row in vms.items():
        if row["scheduled_to_be_resident_on"] == host and vm != ignore_scheduled:
            avail -= _used_memory(row)
    return max(0, avail)


def refresh_host_memory(store: Store, host: str) -> None:
    """Keep host_metrics.memory_free true: total less the host's own overhead and what
    its domains use (dynamic_max plus overhead, as the demo pool was built)."""
    hrow = store.tables["host"].get(host)
    if hrow is None:
        return
    metrics = store.tables["host_metrics"].get(hrow["metrics"])
    if metrics is None:
        return
    used = int(hrow["memory_overhead"])
    for vm in hrow["resident_VMs"]:
        row = store.tables["VM"].get(vm)
        if row is not None:
            used += int(row["memory_dynamic_max"]) + int(row["memory_overhead"])
    free = max(0, int(metrics["memory_total"]) - used)
    if metrics["memory_free"] != free:
        store.update(hrow["metrics"], {"memory_free": free})


class Constraints(NamedTuple):
    static_min: int
    dynamic_min: int
    target: int
    dynamic_max: int
    static_max: int

    @classmethod
    def of(cls, row: Row) -> Constraints:
        return cls(int(row["memory_static_min"]), int(row["memory_dynamic_min"]),
                   int(row["memory_target"]), int(row["memory_dynamic_max"]),
                   int(row["memory_static_max"]))

    def valid(self) -> bool:
        return self.static_min <= self.dynamic_min <= self.dynamic_max <= self.static_max

    def pinned_at_static_max(self) -> bool:
        return (self.static_min <= self.dynamic_min
                and self.dynamic_min == self.dynamic_max == self.static_max)

    def transformable(self) -> bool:
        """Vm_memory_constraints.transform <> None."""
        return self.static_max >= self.static_min and self.dynamic_max >= self.dynamic_min


def _dmc_enabled(store: Store) -> bool:
    restrictions: dict[str, str] = _pool_row(store)["restrictions"]
    return restrictions.get("restrict_dmc") != "true"


def _nested_virt(store: Store, row: Row) -> bool:
    metrics = store.tables["VM_metrics"].get(row["metrics"])
    if metrics is not None:
        return bool(metrics["nested_virt"])
    return _is_true(row["platform"].get("nested-virt"))


def assert_memory_valid(store: Store, row: Row, c: Constraints) -> None:
    """Vm_memory_constraints.assert_valid_for_current_context."""
    reason = None
    if not _dmc_enabled(store):
        reason = "DMC disabled"
    elif row["is_control_domain"]:
        reason = "control domain"
    elif _nested_virt(store, row):
        reason = "nested virt"
    if reason is not None:
        if not c.pinned_at_static_max():
            raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", reason)
    elif not c.valid():
        raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION_ORDER")


# ============================================================================ placement

def ocaml_float(x: float) -> str:
    """OCaml's string_of_float ("%.12g", with a trailing dot when it looks whole)."""
    s = f"{x:.12g}"
    if not any(c in s for c in ".eni"):
        s += "."
    return s


def validate_basic_parameters(row: Row, vm: str) -> None:
    """Xapi_vm_helpers.validate_basic_parameters."""
    vmax, vstart = int(row["VCPUs_max"]), int(row["VCPUs_at_startup"])
    if vmax < 1:
        raise XapiFailure("INVALID_VALUE", "VCPUs_max", vmax)
    if vstart < 1:
        raise XapiFailure("INVALID_VALUE", "VCPUs-at-startup", vstart)
    if vstart > vmax:
        raise XapiFailure("VALUE_NOT_SUPPORTED", "VCPUs-at-startup", vstart,
                          "value greater than VCPUs-max")
    if not Constraints.of(row).transformable():
        raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION")
    mult = float(row["HVM_shadow_multiplier"])
    if mult < 1.0:
        raise XapiFailure("INVALID_VALUE", "HVM_shadow_multiplier", ocaml_float(mult))
    crash = row["actions_after_crash"]
    fld = "VM.actions_after_crash"
    if crash == "rename_restart":
        raise XapiFailure("VALUE_NOT_SUPPORTED", fld, "rename_restart",
                          "option would leak a domain; VMs and not domains are managed by this API")
    if crash in ("coredump_and_destroy", "coredump_and_restart") and domain_type(row) != "pv":
        raise XapiFailure("VALUE_NOT_SUPPORTED", fld, crash,
                          "cannot invoke a coredump of an HVM, PVH or PV-in-PVH domain")


def host_live(store: Store, host: str) -> bool:
    hrow = store.tables["host"].get(host)
    if hrow is None:
        return False
    metrics = store.tables["host_metrics"].get(hrow["metrics"])
    return metrics is not None and bool(metrics["live"])


def _srs_seen_by(store: Store, host: str) -> set[str]:
    out: set[str] = set()
    for pbd in store.get(host, "host")["PBDs"]:
        row = store.tables["PBD"].get(pbd)
        if row is not None and row["currently_attached"]:
            out.add(row["SR"])
    return out


def required_srs(store: Store, row: Row, with_suspend: bool = True) -> list[str]:
    """The SRs of the VM's non-empty VBDs, plus the suspend image when Suspended."""
    vdis: list[str] = []
    for vbd in row["VBDs"]:
        vrow = store.tables["VBD"].get(vbd)
        if vrow is not None and not vrow["empty"]:
            vdis.append(vrow["VDI"])
    if with_suspend and row["power_state"] == "Suspended" and row["suspend_VDI"] != NULL_REF:
        vdis.append(row["suspend_VDI"])
    srs: list[str] = []
    for vdi in vdis:
        vdi_row = store.tables["VDI"].get(vdi)
        if vdi_row is not None and vdi_row["SR"] not in srs:
            srs.append(vdi_row["SR"])
    return srs


def assert_can_see_srs(store: Store, vm: str, row: Row, host: str) -> None:
    seen = _srs_seen_by(store, host)
    for sr in required_srs(store, row):
        if sr not in seen:
            raise XapiFailure("VM_REQUIRES_SR", vm, sr)


def assert_can_see_networks(store: Store, vm: str, row: Row, host: str) -> None:
    """Xapi_network_attach_helpers.assert_can_see_named_networks."""
    for vif in row["VIFs"]:
        vrow = store.tables["VIF"].get(vif)
        if vrow is None:
            continue
        net = store.tables["network"].get(vrow["network"])
        if net is None:
            continue
        if net["PIFs"]:
            pifs = store.tables["PIF"]
            ok = any(p in pifs and pifs[p]["host"] == host for p in net["PIFs"])
        elif _is_true(net["other_config"].get("assume_network_is_shared")) or not net["managed"]:
            ok = True
        else:
            hosts = set()
            for other_vif in net["VIFs"]:
                other = store.tables["VIF"].get(other_vif)
                vm_row = store.tables["VM"].get(other["VM"]) if other else None
                if vm_row is not None and vm_row["power_state"] == "Running":
                    hosts.add(vm_row["resident_on"])
            ok = not hosts or host in hosts
        if not ok:
            raise XapiFailure("VM_REQUIRES_NETWORK", vm, vrow["network"])


def assert_can_boot_here(
    store: Store, vm: str, row: Row, host: str, *, memory: bool = True, srs: bool = True
) -> None:
    """Xapi_vm_helpers.assert_can_boot_here, in its order."""
    validate_basic_parameters(row, vm)
    hrow = store.get(host, "host")
    if not host_live(store, host):
        raise XapiFailure("HOST_NOT_LIVE")
    if row["is_control_domain"] and row["affinity"] not in (NULL_REF, host):
        raise XapiFailure(
            "OPERATION_NOT_ALLOWED",
            "Cannot boot a control domain on a host different from its affinity",
        )
    local_live = row["power_state"] == "Running" and row["resident_on"] == host
    if not row["is_control_domain"] and not local_live and not hrow["enabled"]:
        raise XapiFailure("HOST_DISABLED", host)
    versions = [int(v) for v in hrow["virtual_hardware_platform_versions"]] or [0]
    if int(row["hardware_platform_version"]) not in versions:
        raise XapiFailure(
            "VM_HOST_INCOMPATIBLE_VIRTUAL_HARDWARE_PLATFORM_VERSION", host,
            "[" + "; ".join(str(v) for v in versions) + "]", vm,
            int(row["hardware_platform_version"]),
        )
    if srs:
        assert_can_see_srs(store, vm, row, host)
    assert_can_see_networks(store, vm, row, host)
    if domain_type(row) != "pv" and not any("hvm" in c for c in hrow["capabilities"]):
        raise XapiFailure("VM_HVM_REQUIRED", vm)
    if memory:
        needed = start_memory(row)
        avail = host_free_memory(store, host, ignore_scheduled=vm)
        if avail < needed:
            raise XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, avail)
    try:
        pcpus = int(hrow["cpu_info"].get("cpu_count", "0"))
    except ValueError:
        pcpus = 0
    vcpus = int(row["VCPUs_max"])
    if pcpus and vcpus > pcpus and not _is_true(row["platform"].get("vcpu-unrestricted")):
        raise XapiFailure("HOST_NOT_ENOUGH_PCPUS", vcpus, pcpus)


def _hosts(store: Store) -> list[str]:
    return sorted(store.tables["host"], key=lambda h: store.tables["host"][h]["address"])


def _evacuating(store: Store, host: str) -> bool:
    return "evacuate" in store.get(host, "host")["current_operations"].values()


def vm_can_run_on_host(store: Store, vm: str, row: Row, host: str, memory: bool) -> bool:
    """Xapi_vm_helpers.vm_can_run_on_host."""
    hrow = store.get(host, "host")
    if not (row["is_control_domain"] or hrow["enabled"]) or not host_live(store, host):
        return False
    try:
        assert_can_boot_here(store, vm, row, host, memory=memory)
    except XapiFailure:
        return False
    return not _evacuating(store, host)


def choose_host_for_vm(store: Store, vm: str, row: Row) -> str:
    """choose_host_for_vm_no_wlb: the affinity host when it can run the VM, else a host
    that can (xapi picks at random, biased towards free memory; the simulator takes the
    one with the most free memory). When no host has the memory, xapi tries again
    without the memory check and lets the start itself fail."""
    affinity = row["affinity"]
    for memory in (True, False):
        ok = [h for h in _hosts(store) if vm_can_run_on_host(store, vm, row, h, memory)]
        if affinity in ok:
            return str(affinity)
        if ok:
            return max(ok, key=lambda h: host_free_memory(store, h, ignore_scheduled=vm))
    raise XapiFailure("NO_HOSTS_AVAILABLE")


def choose_host_seeing(store: Store, srs: list[str]) -> str:
    """Xapi_vm_helpers.choose_host with assert_can_see_specified_SRs."""
    for h in _hosts(store):
        if host_live(store, h) and set(srs) <= _srs_seen_by(store, h):
            return h
    raise XapiFailure("NO_HOSTS_AVAILABLE")


# ============================================================================ domains

def _next_domid(store: Store, host: str) -> int:
    """Xen hands out increasing domain ids per host; dom0 is 0."""
    per_host = store.runtime.domids
    if host not in per_host:
        ids = [int(store.tables["VM"][v]["domid"]) for v in store.get(host, "host")["resident_VMs"]
               if v in store.tables["VM"]]
        per_host[host] = max([0, *ids])
    per_host[host] += 1
    return per_host[host]


def assert_devices_valid(store: Store, vm: str) -> None:
    """Xapi_xenops.MD.of_vbd: xenopsd needs a device number for each VBD, from
    Device_number.of_string ~hvm (hvm = the VM's domain_type); a userdevice that
    VBD.create accepted but that is no device (e.g. "-1") is INVALID_DEVICE [it]."""
    row = store.get(vm, "VM")
    hvm = row["domain_type"] == "hvm"
    for vbd in row["VBDs"]:
        vrow = store.tables["VBD"].get(vbd)
        if vrow is not None and storage.parse_device(vrow["userdevice"], hvm) is None:
            raise XapiFailure("INVALID_DEVICE", vrow["userdevice"])


def _set_devices(store: Store, row: Row, attached: bool) -> None:
    """What the xenopsd VBD/VIF events write (xapi_xenops.ml update_vbd, update_vif):
    currently_attached, the VBD's Linux device name once plugged ("3" -> "xvdd",
    "xvdb" stays "xvdb": Device_number.to_linux_device), and the VBD's and its VDI's
    allowed_operations recomputed."""
    hvm = row["domain_type"] == "hvm"
    for vbd in row["VBDs"]:
        vrow = store.tables["VBD"].get(vbd)
        if vrow is None:
            continue
        changes: dict[str, Any] = {"currently_attached": attached}
        if attached:
            changes["device"] = storage.device_name(vrow["userdevice"], hvm)
        store.update(vbd, changes)
        storage.refresh(store, vrow["VDI"])
    for vif in row["VIFs"]:
        if vif in store.tables["VIF"]:
            store.update(vif, {"currently_attached": attached})


def _republish_devices(store: Store, vm: str) -> None:
    """update_vbd_operations / update_vif_operations (message_forwarding.ml, after
    each power operation) and Xapi_vm.update_allowed_operations: the VM's VBDs', their
    VDIs' and its VIFs' allowed_operations recomputed. Like any database write of an
    unchanged value (Db_cache_impl.write_field_locked), an unchanged list is not
    written and makes no event."""
    row = store.tables["VM"].get(vm)
    if row is None:
        return
    storage.refresh_vm_storage(store, vm)
    storage.refresh(store, *row["VIFs"])


def console_location(store: Store, host: str, uuid: str) -> str:
    """xapi_xenops.ml: https://<host address>/console?uuid=<console uuid>."""
    addr = store.get(host, "host")["address"]
    if ":" in addr:
        addr = f"[{addr}]"
    return f"https://{addr}/console?uuid={uuid}"


def _destroy_consoles(store: Store, vm: str) -> None:
    for c in list(store.get(vm, "VM")["consoles"]):
        if c in store.tables["console"]:
            store.destroy(c)


def _create_consoles(store: Store, vm: str, host: str) -> None:
    """The consoles xenopsd reports for a domain: RFB (VNC), plus a VT100 text console
    for PV guests."""
    _destroy_consoles(store, vm)
    protocols = ["rfb"]
    if domain_type(store.get(vm, "VM")) in _PV_DOMAINS:
        protocols.append("vt100")
    for proto in protocols:
        uuid = store.new_uuid()
        store.create("console", {"uuid": uuid, "protocol": proto, "VM": vm, "other_config": {},
                                 "location": console_location(store, host, uuid)})


def delete_guest_metrics(store: Store, vm: str) -> None:
    """Xapi_vm_helpers.delete_guest_metrics."""
    gm = store.get(vm, "VM")["guest_metrics"]
    store.update(vm, {"guest_metrics": NULL_REF})
    if gm in store.tables["VM_guest_metrics"]:
        store.destroy(gm)


def _create_guest_metrics(store: Store, vm: str) -> None:
    """xapi_xenops.ml create_guest_metrics_if_needed: when a domain starts running, a
    guest metrics record made from what xenstore holds (nothing yet)."""
    if store.get(vm, "VM")["guest_metrics"] in store.tables["VM_guest_metrics"]:
        return
    gm = store.create("VM_guest_metrics", {
        "os_version": {}, "PV_drivers_version": {}, "PV_drivers_up_to_date": False,
        "PV_drivers_detected": False, "memory": {}, "disks": {}, "networks": {}, "other": {},
        "last_updated": now_datetime(), "other_config": {}, "live": True,
        "can_use_hotplug_vbd": "unspecified", "can_use_hotplug_vif": "unspecified",
    })
    store.update(vm, {"guest_metrics": gm})


def _mac_bytes(mac: str) -> list[int]:
    try:
        return [int(x, 16) for x in mac.split(":")][:6]
    except ValueError:
        return [0x02, 0, 0, 0, 0, 0]


def guest_networks(store: Store, row: Row) -> dict[str, str]:
    """What the guest agent reports, in xapi_guest_agent.ml's key format
    (``<device>/ip``, ``<device>/ipv4/0``, ``<device>/ipv6/0``). Addresses follow from
    the MAC, like a DHCP lease, so a VM keeps its address across reboots."""
    nets: dict[str, str] = {}
    vifs = [store.tables["VIF"][v] for v in row["VIFs"] if v in store.tables["VIF"]]
    for vif in sorted(vifs, key=lambda v: int(v["device"]) if v["device"].isdigit() else 99):
        if not vif["currently_attached"]:
            continue
        dev = vif["device"]
        b = (_mac_bytes(vif["MAC"]) + [0] * 6)[:6]
        net = store.tables["network"].get(vif["network"])
        if net is not None and net["bridge"] == "xenbr0":
            ip = f"10.0.{1 + b[4] % 4}.{2 + b[5] % 250}"
        else:
            ip = f"192.168.{10 + int(dev) if dev.isdigit() else 99}.{2 + b[5] % 250}"
        eui = [b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]]
        ip6 = "fe80::" + ":".join(f"{eui[i] << 8 | eui[i + 1]:x}" for i in range(0, 8, 2))
        nets[f"{dev}/ip"] = ip
        nets[f"{dev}/ipv4/0"] = ip
        nets[f"{dev}/ipv6/0"] = ip6
    return nets


def _guest_os(row: Row) -> Any:
    """The OS the guest agent would report: the one its template installs. VMs whose
    template the demo pool does not know (install media, generic) have no agent."""
    from xsctl.sim.seed import OS_BY_TEMPLATE

    return OS_BY_TEMPLATE.get(row["other_config"].get("base_template_name", ""))


def guest_agent_report(sim: Simulator, vm: str, domid: int) -> None:
    """The guest agent's first report, a little after boot (xapi_guest_agent.ml)."""
    store = sim.store
    with store.lock:
        row = store.tables["VM"].get(vm)
        if row is None or row["power_state"] not in ("Running", "Paused") or row["domid"] != domid:
            return
        gm = row["guest_metrics"]
        if gm not in store.tables["VM_guest_metrics"]:
            return
        os = _guest_os(row)
        if os is None:
            return
        osv = {"name": os.name, "distro": os.distro, "major": os.major, "minor": os.minor}
        if os.uname:
            osv["uname"] = os.uname
        store.update(gm, {
            "os_version": osv,
            "PV_drivers_version": {"major": "9" if os.windows else "8", "minor": "3",
                                   "micro": "3", "build": "1"},
            "PV_drivers_up_to_date": True, "PV_drivers_detected": True,
            "networks": guest_networks(store, row),
            "other": {"feature-suspend": "1", "feature-poweroff": "1", "feature-reboot": "1",
                      "feature-vcpu-hotplug": "1",
                      "has-vendor-device": "1" if os.windows else "0",
                      "platform-feature-multiprocessor-suspend": "1"},
            "last_updated": now_datetime(), "live": True,
            "can_use_hotplug_vbd": "yes", "can_use_hotplug_vif": "yes",
        })
        # the guest agent changed: XenAPI.VM.update_allowed_operations (xapi_xenops.ml
        # update_vm), the VM's and its devices' (the drivers allow hotplug now)
        store.republish(vm)
        _republish_devices(store, vm)


def guest_agent_delay(sim: Simulator) -> float:
    return sim.op_time * 2


def _schedule_guest_agent(sim: Simulator, vm: str, domid: int) -> None:
    t = threading.Timer(guest_agent_delay(sim), guest_agent_report, args=(sim, vm, domid))
    t.daemon = True
    t.name = "sim guest agent"
    t.start()
    sim.track_thread(t)


def _metrics_running(store: Store, row: Row) -> None:
    metrics = row["metrics"]
    if metrics not in store.tables["VM_metrics"]:
        return
    vcpus = int(row["VCPUs_at_startup"])
    dt = domain_type(row)
    store.update(metrics, {
        "memory_actual": int(row["memory_dynamic_max"]),
        "VCPUs_number": vcpus,
        "VCPUs_utilisation": {str(i): 0.0 for i in range(vcpus)},
        "VCPUs_CPU": {str(i): i for i in range(vcpus)},
        "VCPUs_params": dict(row["VCPUs_params"]),
        "start_time": now_datetime(), "last_updated": now_datetime(),
        "hvm": dt != "pv", "current_domain_type": dt,
        "nomigrate": _is_true(row["platform"].get("nomigrate")),
        "nested_virt": _is_true(row["platform"].get("nested-virt")),
        "state": [],
    })


def _metrics_stopped(store: Store, row: Row, keep_type: bool = False) -> None:
    metrics = row["metrics"]
    if metrics not in store.tables["VM_metrics"]:
        return
    changes: dict[str, Any] = {
        "memory_actual": 0, "VCPUs_number": 0, "VCPUs_utilisation": {}, "VCPUs_CPU": {},
        "last_updated": now_datetime(), "state": [],
    }
    if not keep_type:
        changes.update(hvm=False, current_domain_type="unspecified")
    store.update(metrics, changes)


def boot_domain(ctx: Context, vm: str, host: str, paused: bool, *, fresh_boot: bool) -> int:
    """A domain comes up on ``host`` (Xapi_xenops.start/resume and the database updates
    xenopsd's events cause). Call with the lock held; returns the domid."""
    store = ctx.store
    row = store.get(vm, "VM")
    if fresh_boot:
        delete_guest_metrics(store, vm)  # Xapi_vm.start: stale guest metrics go
    domid = _next_domid(store, host)
    row = store.update(vm, {
        "power_state": "Paused" if paused else "Running", "resident_on": host,
        "scheduled_to_be_resident_on": NULL_REF, "domid": domid, "domarch": "x64",
    })
    _metrics_running(store, row)
    _set_devices(store, row, True)
    _create_consoles(store, vm, host)
    _create_guest_metrics(store, vm)
    refresh_host_memory(store, host)
    _schedule_guest_agent(ctx.sim, vm, domid)
    return domid


def force_state_reset(store: Store, vm: str, state: str, *, checkpoint: bool = False,
                      keep_guest_metrics: bool = False) -> None:
    """Xapi_vm_lifecycle.force_state_reset_keep_current_operations plus what the end of
    the domain removes (consoles, guest metrics on halt, host memory)."""
    row = store.get(vm, "VM")
    old_host = row["resident_on"]
    changes: dict[str, Any] = {"power_state": state}
    if state == "Halted":
        changes["requires_reboot"] = False
    if state == "Halted" or (state == "Suspended" and not checkpoint):
        changes.update(resident_on=NULL_REF, scheduled_to_be_resident_on=NULL_REF, domid=-1)
    row = store.update(vm, changes)
    if state in ("Halted", "Suspended"):
        _set_devices(store, row, False)
        _destroy_consoles(store, vm)
        _metrics_stopped(store, row, keep_type=state == "Suspended")
    if state == "Halted" and not keep_guest_metrics:
        delete_guest_metrics(store, vm)
    refresh_host_memory(store, old_host)


def _alert(ctx: Context, name: str, vm: str, body: str) -> None:
    """message_forwarding.ml create_vm_message (failures to create it are ignored)."""
    uuid = ctx.store.get(vm, "VM")["uuid"]
    message.emit(ctx.sim, name, "VM", uuid, body)


def _vm_text(store: Store, vm: str) -> str:
    row = store.get(vm, "VM")
    return f"VM '{row['name_label']}' (uuid: {row['uuid']})"


def _host_text(store: Store, host: str) -> str:
    h = store.get(host, "host")
    return f"{h['name_label']} (uuid: {h['uuid']})"


# ============================================================================ lifecycle

def _vm(ctx: Context, vm: str) -> Row:
    return ctx.store.get(vm, "VM")


def _host(ctx: Context, host: str) -> Row:
    return ctx.store.get(host, "host")


def _pause(seconds: float) -> None:
    """start_delay / shutdown_delay (Xapi_vm_helpers): xapi simply sleeps."""
    if seconds > 0:
        time.sleep(seconds)


def _cancel_ops(ctx: Context, vm: str, ops: frozenset[str], timeout: float = 60.0) -> None:
    """message_forwarding.ml cancel: task.cancel every listed operation in progress on
    the VM, then wait for those tasks (hard_shutdown and hard_reboot do this)."""
    store = ctx.store
    with store.cond:
        row = store.get(vm, "VM")
        tasks = [t for t, o in row["current_operations"].items() if o in ops and t != ctx.task]
        for t in tasks:  # Client.Task.cancel, as task.cancel does it
            trow = store.tables["task"].get(t)
            if trow is not None and trow["status"] == "pending":
                key = f"DummyRef:|{store.new_uuid()}|task.cancel"
                store.update(t, {"current_operations": {**trow["current_operations"],
                                                        key: "cancel"}})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = store.tables["VM"].get(vm)
            if cur is None or not any(t in cur["current_operations"] for t in tasks):
                break
            store.cond.wait(timeout=0.2)


def _ensure_domain_type(store: Store, vm: str) -> Row:
    """Xapi_vm_helpers.ensure_domain_type_is_specified."""
    row = store.get(vm, "VM")
    if row["domain_type"] == "unspecified":
        row = store.update(vm, {"domain_type": "hvm" if row["HVM_boot_policy"] else "pv"})
    return row


def _check_start_memory(store: Store, vm: str, host: str) -> None:
    """xenopsd's own check when it builds the domain (Not_enough_memory becomes
    HOST_NOT_ENOUGH_FREE_MEMORY [needed, available] in xapi_xenops.ml)."""
    row = store.get(vm, "VM")
    needed = start_memory(row)
    avail = host_free_memory(store, host, ignore_scheduled=vm)
    if avail < needed:
        raise XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, avail)


def _clear_scheduled(store: Store, vm: str) -> None:
    row = store.tables["VM"].get(vm)
    if row is not None and row["scheduled_to_be_resident_on"] != NULL_REF:
        store.update(vm, {"scheduled_to_be_resident_on": NULL_REF})


def _start(ctx: Context, vm: str, host: str | None, paused: bool, force: bool) -> str:
    """message_forwarding.ml VM.start / start_on, then Xapi_vm.start."""
    store = ctx.store
    op = "start" if host is None else "start_on"
    with vm_operation(ctx, vm, op), _devices_marked(ctx, vm):
        with ctx.lock:
            row = _ensure_domain_type(store, vm)
            row = store.update(vm, {"memory_overhead": memory_overhead(row)})
            if host is None:
                target = row["scheduled_to_be_resident_on"]
                if target not in store.tables["host"]:
                    target = choose_host_for_vm(store, vm, row)
            else:
                assert_can_boot_here(store, vm, row, host)
                target = host
            store.update(vm, {"scheduled_to_be_resident_on": target})
        try:
            with _marked(ctx, [target], "current_operations", "vm_start"):
                with ctx.lock:
                    row = store.get(vm, "VM")
                    if row["ha_restart_priority"] == "restart":
                        store.update(vm, {"ha_always_run": True})
                    if not force and _is_true(row["platform"].get("nested-virt")) and \
                            not Constraints.of(row).pinned_at_static_max():
                        raise XapiFailure("MEMORY_CONSTRAINT_VIOLATION_MAXPIN", "nested virt")
                    assert_devices_valid(store, vm)  # Xapi_xenops.start builds the devices
                    _check_start_memory(store, vm, target)
                ctx.work(1.0)
                with ctx.lock:
                    boot_domain(ctx, vm, target, paused, fresh_boot=True)
        finally:
            with ctx.lock:
                _clear_scheduled(store, vm)
        _pause(int(store.get(vm, "VM")["start_delay"]))
    with ctx.lock:
        _republish_devices(store, vm)
    _alert(ctx, "VM_STARTED", vm,
           f"{_vm_text(store, vm)} started on host: {_host_text(store, target)}")
    return str(target)


@api("VM.start")
def start(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    _vm(ctx, vm)
    _start(ctx, vm, None, start_paused, force)


@api("VM.start_on")
def start_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    row = _vm(ctx, vm)
    hrow = _host(ctx, host)
    if row["is_control_domain"] and row["affinity"] not in (NULL_REF, host):
        raise XapiFailure("OPERATION_NOT_ALLOWED",
                          "Cannot boot a control domain on a host different from its affinity")
    if "evacuate" in hrow["current_operations"].values():
        raise XapiFailure("HOST_EVACUATE_IN_PROGRESS", host)
    _start(ctx, vm, host, start_paused, force)


def _reboot_domain(ctx: Context, vm: str) -> None:
    """A reboot: a new domain on the same host, fresh metrics and guest metrics."""
    store = ctx.store
    row = store.get(vm, "VM")
    host = row["resident_on"]
    domid = _next_domid(store, host)
    delete_guest_metrics(store, vm)
    row = store.update(vm, {"power_state": "Running", "domid": domid})
    _metrics_running(store, row)
    _create_guest_metrics(store, vm)
    _schedule_guest_agent(ctx.sim, vm, domid)


@api("VM.clean_shutdown")
def clean_shutdown(ctx: Context, vm: str) -> None:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "clean_shutdown"):
        store.update(vm, {"ha_always_run": False})
        ctx.work(0.6)
        with ctx.lock:
            force_state_reset(store, vm, "Halted")
        _pause(int(store.get(vm, "VM")["shutdown_delay"]))
    _alert(ctx, "VM_SHUTDOWN", vm, f"{_vm_text(store, vm)} shutdown")
    with ctx.lock:
        _republish_devices(store, vm)


def _discard_suspended(ctx: Context, vm: str) -> None:
    """Xapi_vm.hard_shutdown of a Suspended VM: on a host that sees its disks, destroy
    the suspend image, forget it, and reset to Halted."""
    store = ctx.store
    with ctx.lock:
        row = store.get(vm, "VM")
        choose_host_seeing(store, required_srs(store, row, with_suspend=False))
        vdi = row["suspend_VDI"]
        if vdi in store.tables["VDI"]:
            disks.destroy_vdi(store, vdi)
        store.update(vm, {"suspend_VDI": NULL_REF, "current_operations": {}})
        force_state_reset(store, vm, "Halted")


def _hard_shutdown_local(ctx: Context, vm: str) -> None:
    store = ctx.store
    store.update(vm, {"ha_always_run": False})
    ps = store.get(vm, "VM")["power_state"]
    if ps == "Suspended":
        _discard_suspended(ctx, vm)
    elif ps in ("Running", "Paused"):
        ctx.work(0.3)
        with ctx.lock:
            force_state_reset(store, vm, "Halted")
        _pause(int(store.get(vm, "VM")["shutdown_delay"]))


@api("VM.hard_shutdown")
def hard_shutdown(ctx: Context, vm: str) -> None:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "hard_shutdown"):
        _cancel_ops(ctx, vm, frozenset({"clean_shutdown", "clean_reboot", "hard_reboot",
                                        "pool_migrate", "call_plugin", "shutdown", "suspend"}))
        _hard_shutdown_local(ctx, vm)
    _alert(ctx, "VM_SHUTDOWN", vm, f"{_vm_text(store, vm)} shutdown forcibly")
    with ctx.lock:
        _republish_devices(store, vm)


@api("VM.shutdown")
def shutdown(ctx: Context, vm: str) -> None:
    """Clean shutdown, falling back to a hard one when the guest cannot do it; a
    suspended VM just loses its suspend image (message_forwarding.ml, Xapi_vm.shutdown)."""
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "shutdown"):
        if store.get(vm, "VM")["power_state"] == "Suspended":
            _discard_suspended(ctx, vm)
        else:
            store.update(vm, {"ha_always_run": False})
            ctx.work(0.6)
            with ctx.lock:
                row = store.get(vm, "VM")
                clean_ok = row["power_state"] == "Running" and _feature_error(
                    vm_facts(store, vm, row), "clean_shutdown", vm, True) is None
                if clean_ok:
                    force_state_reset(store, vm, "Halted")
            if not clean_ok:
                _hard_shutdown_local(ctx, vm)
            else:
                _pause(int(store.get(vm, "VM")["shutdown_delay"]))
    with ctx.lock:
        _republish_devices(store, vm)
    _alert(ctx, "VM_SHUTDOWN", vm, f"{_vm_text(store, vm)} shutdown")


@api("VM.clean_reboot")
def clean_reboot(ctx: Context, vm: str) -> None:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "clean_reboot"), _devices_marked(ctx, vm):
        ctx.work(0.8)
        with ctx.lock:
            _reboot_domain(ctx, vm)
    _alert(ctx, "VM_REBOOTED", vm, f"{_vm_text(store, vm)} rebooted cleanly")
    with ctx.lock:
        _republish_devices(store, vm)


@api("VM.hard_reboot")
def hard_reboot(ctx: Context, vm: str) -> None:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "hard_reboot"):
        _cancel_ops(ctx, vm, frozenset({"clean_shutdown", "clean_reboot", "pool_migrate",
                                        "call_plugin", "suspend"}))
        with _devices_marked(ctx, vm):
            ps = store.get(vm, "VM")["power_state"]
            if ps == "Suspended":
                raise XapiFailure("VM_BAD_POWER_STATE", vm, "running", "suspended")
            if ps == "Halted":
                # Xapi_vm.hard_reboot of a VM that halted meanwhile: start it
                with ctx.lock:
                    row = _ensure_domain_type(store, vm)
                    target = choose_host_for_vm(store, vm, row)
                    assert_devices_valid(store, vm)
                    _check_start_memory(store, vm, target)
                ctx.work(1.0)
                with ctx.lock:
                    boot_domain(ctx, vm, target, False, fresh_boot=True)
            else:
                ctx.work(0.5)
                with ctx.lock:
                    _reboot_domain(ctx, vm)
    _alert(ctx, "VM_REBOOTED", vm, f"{_vm_text(store, vm)} rebooted forcibly")
    with ctx.lock:
        _republish_devices(store, vm)


def choose_suspend_sr(store: Store, vm: str, row: Row) -> str:
    """Helpers.choose_suspend_sr: the VM's suspend_SR, else the pool's, else the
    host's, whichever exists and is plugged on the VM's host."""
    host = row["resident_on"]
    seen = _srs_seen_by(store, host) if host in store.tables["host"] else set()
    hrow = store.tables["host"].get(host)
    host_sr = hrow["suspend_image_sr"] if hrow is not None else NULL_REF
    for sr in (row["suspend_SR"], _pool_row(store)["suspend_image_SR"], host_sr):
        if sr in store.tables["SR"] and sr in seen:
            return str(sr)
    raise XapiFailure("VM_NO_SUSPEND_SR", vm)


def _create_suspend_image(ctx: Context, vm: str) -> str:
    """Xapi_xenops.suspend: VDI.create of a "Suspend image" of 1.26 x static_max plus
    100 MiB, fully inflated (sm-config initial_allocation), on the suspend SR; the SM
    driver rounds the size and, when it does not fit, fails with SR_BACKEND_FAILURE_44,
    which xapi turns into SR_SUSPEND_SPACE_INSUFFICIENT [sr]."""
    store = ctx.store
    row = store.get(vm, "VM")
    sr = choose_suspend_sr(store, vm, row)
    space = int(int(row["memory_static_max"]) * 1.2 * 1.05) + 104857600
    try:
        vdi = disks.new_vdi(
            store, sr, "Suspend image", space, sm=True, name_description="Suspend image",
            type="suspend", fill=1.0,
            sm_config={"vmhint": row["uuid"], "initial_allocation": str(space),
                       **({"vdi_type": "vhd"} if disks.sr_type(store, sr) in disks.VHD_TYPES
                          else {})},
        )
    except XapiFailure as e:
        if e.code == "SR_BACKEND_FAILURE_44":
            raise XapiFailure("SR_SUSPEND_SPACE_INSUFFICIENT", sr) from e
        raise
    store.update(vm, {"suspend_VDI": vdi})
    return vdi


@api("VM.suspend")
def suspend(ctx: Context, vm: str) -> None:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "suspend"):
        _set_cancellable(ctx, False)
        with ctx.lock:
            store.update(vm, {"ha_always_run": False})
            vdi = _create_suspend_image(ctx, vm)
        try:
            ctx.work(1.0)
        except XapiFailure:
            with ctx.lock:
                if vdi in store.tables["VDI"]:
                    disks.destroy_vdi(store, vdi)
                store.update(vm, {"suspend_VDI": NULL_REF})
            raise
        with ctx.lock:
            force_state_reset(store, vm, "Suspended")
    _alert(ctx, "VM_SUSPENDED", vm, f"{_vm_text(store, vm)} suspended")
    with ctx.lock:
        _republish_devices(store, vm)


def _resume(ctx: Context, vm: str, host: str | None, paused: bool) -> str:
    store = ctx.store
    op = "resume" if host is None else "resume_on"
    with vm_operation(ctx, vm, op), _devices_marked(ctx, vm, vifs=False):
        _set_cancellable(ctx, False)
        with ctx.lock:
            row = _ensure_domain_type(store, vm)
            if host is None:
                target = row["scheduled_to_be_resident_on"]
                if target not in store.tables["host"]:
                    target = choose_host_for_vm(store, vm, row)
            else:
                assert_can_boot_here(store, vm, row, host)
                target = host
            store.update(vm, {"scheduled_to_be_resident_on": target})
        try:
            with _marked(ctx, [target], "current_operations", "vm_resume"):
                with ctx.lock:
                    _check_start_memory(store, vm, target)
                ctx.work(1.0)
                with ctx.lock:
                    row = store.get(vm, "VM")
                    vdi = row["suspend_VDI"]
                    if vdi not in store.tables["VDI"]:
                        force_state_reset(store, vm, "Halted")
                        raise XapiFailure("VM_HAS_NO_SUSPEND_VDI", "VM", vm)
                    if row["ha_restart_priority"] == "restart":
                        store.update(vm, {"ha_always_run": True})
                    boot_domain(ctx, vm, target, paused, fresh_boot=False)
                    store.update(vm, {"suspend_VDI": NULL_REF})
                    disks.destroy_vdi(store, vdi)
        finally:
            with ctx.lock:
                _clear_scheduled(store, vm)
    with ctx.lock:
        _republish_devices(store, vm)
    _alert(ctx, "VM_RESUMED", vm,
           f"{_vm_text(store, vm)} resumed on host: {_host_text(store, target)}")
    return str(target)


@api("VM.resume")
def resume(ctx: Context, vm: str, start_paused: bool, force: bool) -> None:
    _vm(ctx, vm)
    _resume(ctx, vm, None, start_paused)


@api("VM.resume_on")
def resume_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> None:
    _vm(ctx, vm)
    _host(ctx, host)
    _resume(ctx, vm, host, start_paused)


def _pause_op(ctx: Context, vm: str, op: str, state: str, alert: str, word: str) -> None:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, op):
        ctx.work(0.2)
        with ctx.lock:
            store.update(vm, {"power_state": state})
    _alert(ctx, alert, vm, f"{_vm_text(store, vm)} {word}")
    with ctx.lock:
        _republish_devices(store, vm)


@api("VM.pause")
def pause(ctx: Context, vm: str) -> None:
    _pause_op(ctx, vm, "pause", "Paused", "VM_PAUSED", "paused")


@api("VM.unpause")
def unpause(ctx: Context, vm: str) -> None:
    _pause_op(ctx, vm, "unpause", "Running", "VM_UNPAUSED", "unpaused")


@api("VM.power_state_reset")
def power_state_reset(ctx: Context, vm: str) -> None:
    """Xapi_vm.power_state_reset: for VMs whose host died. Refused for control
    domains, for a live domain on this (the master) host, and when the VM's host is
    still alive."""
    store = ctx.store
    with ctx.lock:
        row = _vm(ctx, vm)
        if row["is_control_domain"]:
            raise XapiFailure("CANNOT_RESET_CONTROL_DOMAIN", vm)
        if row["power_state"] in ("Running", "Paused"):
            resident = row["resident_on"]
            if resident == ctx.sim.master_ref():
                raise XapiFailure("DOMAIN_EXISTS", vm)
            if host_live(store, resident):
                raise XapiFailure("HOST_IS_LIVE", resident)
        store.update(vm, {"current_operations": {}})
        force_state_reset(store, vm, "Halted")


@api("VM.pool_migrate")
def pool_migrate(ctx: Context, vm: str, host: str, options: dict[str, str]) -> None:
    """message_forwarding.ml VM.pool_migrate: reserve memory on the destination
    (assert_can_boot_here, so local disks give VM_REQUIRES_SR and a disabled host
    HOST_DISABLED), move the domain, and alert VM_MIGRATED."""
    store = ctx.store
    _vm(ctx, vm)
    _host(ctx, host)
    force = options.get("force") == "true"
    source = store.get(vm, "VM")["resident_on"]
    with vm_operation(ctx, vm, "pool_migrate", strict=not force):
        with ctx.lock:
            row = store.get(vm, "VM")
            source = row["resident_on"]
            assert_can_boot_here(store, vm, row, host)
            store.update(vm, {"scheduled_to_be_resident_on": host})
        try:
            with _marked(ctx, [host], "current_operations", "vm_migrate"):
                ctx.work(1.5)
                with ctx.lock:
                    domid = _next_domid(store, host)
                    store.update(vm, {"resident_on": host, "domid": domid,
                                      "scheduled_to_be_resident_on": NULL_REF})
                    _create_consoles(store, vm, host)
                    refresh_host_memory(store, source)
                    refresh_host_memory(store, host)
        finally:
            with ctx.lock:
                _clear_scheduled(store, vm)
    _alert(ctx, "VM_MIGRATED", vm,
           f"{_vm_text(store, vm)} migrated from host '{store.get(source, 'host')['name_label']}' "
           f"(uuid: {store.get(source, 'host')['uuid']}) to host "
           f"'{store.get(host, 'host')['name_label']}' (uuid: {store.get(host, 'host')['uuid']})")
    with ctx.lock:
        _republish_devices(store, vm)


# ============================================================================ memory and vCPUs

def _is_domain_zero(store: Store, vm: str, row: Row) -> bool:
    host = store.tables["host"].get(row["resident_on"])
    return bool(row["is_control_domain"]) and host is not None and host["control_domain"] == vm


def _set_limits(ctx: Context, vm: str, c: Constraints) -> None:
    """Xapi_vm.set_memory_limits after the operation check."""
    store = ctx.store
    with ctx.lock:
        row = store.get(vm, "VM")
        assert_memory_valid(store, row, c)
        row = store.update(vm, {
            "memory_static_min": c.static_min, "memory_dynamic_min": c.dynamic_min,
            "memory_target": c.target, "memory_dynamic_max": c.dynamic_max,
            "memory_static_max": c.static_max,
        })
        _after_memory_change(store, vm, row)


def _after_memory_change(store: Store, vm: str, row: Row) -> None:
    """update_memory_overhead; a running control domain needs a reboot to see it."""
    row = store.update(vm, {"memory_overhead": memory_overhead(row)})
    if row["is_control_domain"] and row["power_state"] == "Running":
        store.update(vm, {"requires_reboot": True})


@api("VM.set_memory_limits")
def set_memory_limits(ctx: Context, self: str, static_min: int, static_max: int,
                      dynamic_min: int, dynamic_max: int) -> None:
    _vm(ctx, self)
    with vm_operation(ctx, self, "changing_memory_limits"):
        _set_limits(ctx, self, Constraints(static_min, dynamic_min, dynamic_min,
                                           dynamic_max, static_max))


@api("VM.set_memory")
def set_memory(ctx: Context, self: str, value: int) -> None:
    """set_memory_limits(static_min, value, value, value)."""
    _vm(ctx, self)
    with vm_operation(ctx, self, "changing_memory_limits"):
        static_min = int(_vm(ctx, self)["memory_static_min"])
        _set_limits(ctx, self, Constraints(static_min, value, value, value, value))


def _static_range(ctx: Context, vm: str, lo: int | None, hi: int | None) -> None:
    """Xapi_vm.set_memory_static_range (static_min and static_max setters turn into it
    in the message forwarding layer, reading the other bound first)."""
    store = ctx.store
    row = _vm(ctx, vm)
    lo = int(row["memory_static_min"]) if lo is None else lo
    hi = int(row["memory_static_max"]) if hi is None else hi
    with vm_operation(ctx, vm, "changing_static_range"), ctx.lock:
        row = store.get(vm, "VM")
        c = Constraints.of(row)._replace(static_min=lo, static_max=hi)
        assert_memory_valid(store, row, c)
        row = store.update(vm, {"memory_static_min": lo, "memory_static_max": hi})
        _after_memory_change(store, vm, row)


@api("VM.set_memory_static_range")
def set_memory_static_range(ctx: Context, self: str, min: int, max: int) -> None:
    _static_range(ctx, self, min, max)


@api("VM.set_memory_static_max")
def set_memory_static_max(ctx: Context, self: str, value: int) -> None:
    _static_range(ctx, self, None, value)


@api("VM.set_memory_static_min")
def set_memory_static_min(ctx: Context, self: str, value: int) -> None:
    _static_range(ctx, self, value, None)


def _dynamic_range(ctx: Context, vm: str, lo: int | None, hi: int | None) -> None:
    """message_forwarding.ml set_memory_dynamic_range: on a running VM, first make sure
    the host can take the higher dynamic_min (HOST_NOT_ENOUGH_FREE_MEMORY in KiB), then
    Xapi_vm.set_memory_dynamic_range validates and sets (target follows min)."""
    store = ctx.store
    row = _vm(ctx, vm)
    lo = int(row["memory_dynamic_min"]) if lo is None else lo
    hi = int(row["memory_dynamic_max"]) if hi is None else hi
    with vm_operation(ctx, vm, "changing_dynamic_range"), ctx.lock:
        row = store.get(vm, "VM")
        running = row["power_state"] == "Running"
        if running:
            avail = host_free_memory(store, row["resident_on"])
            change = int(row["memory_dynamic_min"]) - lo
            if avail + change < 0:
                raise XapiFailure("HOST_NOT_ENOUGH_FREE_MEMORY", (0 - change) // 1024,
                                  avail // 1024)
        c = Constraints.of(row)._replace(dynamic_min=lo, target=lo, dynamic_max=hi)
        assert_memory_valid(store, row, c)
        row = store.update(vm, {"memory_target": lo, "memory_dynamic_min": lo,
                                "memory_dynamic_max": hi})
        if running:
            metrics = row["metrics"]
            if metrics in store.tables["VM_metrics"]:
                store.update(metrics, {"memory_actual": hi, "last_updated": now_datetime()})
            refresh_host_memory(store, row["resident_on"])


@api("VM.set_memory_dynamic_range")
def set_memory_dynamic_range(ctx: Context, self: str, min: int, max: int) -> None:
    _dynamic_range(ctx, self, min, max)


@api("VM.set_memory_dynamic_max")
def set_memory_dynamic_max(ctx: Context, self: str, value: int) -> None:
    _dynamic_range(ctx, self, None, value)


@api("VM.set_memory_dynamic_min")
def set_memory_dynamic_min(ctx: Context, self: str, value: int) -> None:
    _dynamic_range(ctx, self, value, None)


@api("VM.set_memory_target_live")
def set_memory_target_live(ctx: Context, self: str, target: int) -> None:
    """Deprecated: a no-op behind the changing_memory_live check."""
    _vm(ctx, self)
    with vm_operation(ctx, self, "changing_memory_live"):
        pass


@api("VM.wait_memory_target_live")
def wait_memory_target_live(ctx: Context, self: str) -> None:
    """The balloon driver in the simulator reaches its target at once."""
    _vm(ctx, self)
    with vm_operation(ctx, self, "awaiting_memory_live"):
        pass


VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


@api("VM.set_VCPUs_max")
def set_VCPUs_max(ctx: Context, self: str, value: int) -> None:
    """Xapi_vm.set_VCPUs_max behind the changing_VCPUs check (halted, or a running
    control domain other than dom0)."""
    store = ctx.store
    _vm(ctx, self)
    with vm_operation(ctx, self, "changing_VCPUs"), ctx.lock:
        row = store.get(self, "VM")
        if value < 1 or value < int(row["VCPUs_at_startup"]):
            raise XapiFailure("INVALID_VALUE", VCPU_RULE, value)
        row = store.update(self, {"VCPUs_max": value})
        _after_memory_change(store, self, row)


@api("VM.set_VCPUs_at_startup")
def set_VCPUs_at_startup(ctx: Context, self: str, value: int) -> None:
    """Xapi_vm.set_VCPUs_at_startup: no operation check (it only matters at the next
    boot), only dom0 is refused."""
    store = ctx.store
    with ctx.lock:
        row = _vm(ctx, self)
        if _is_domain_zero(store, self, row):
            raise XapiFailure("OPERATION_NOT_ALLOWED",
                              "set_VCPUs_at_startup is not allowed on dom0")
        if value < 1 or value > int(row["VCPUs_max"]):
            raise XapiFailure("INVALID_VALUE", VCPU_RULE, value)
        row = store.update(self, {"VCPUs_at_startup": value})
        store.update(self, {"memory_overhead": memory_overhead(row)})


@api("VM.set_VCPUs_number_live")
def set_VCPUs_number_live(ctx: Context, self: str, nvcpu: int) -> None:
    """Xapi_xenops.set_vcpus: hotplug up to VCPUs_max; VCPUs_at_startup and the
    metrics follow."""
    store = ctx.store
    _vm(ctx, self)
    with vm_operation(ctx, self, "changing_VCPUs_live"):
        ctx.work(0.2)
        with ctx.lock:
            row = store.get(self, "VM")
            if nvcpu < 1 or nvcpu > int(row["VCPUs_max"]):
                raise XapiFailure("INVALID_VALUE",
                                  "VCPU values must satisfy: 0 < VCPUs ≤ VCPUs_max", nvcpu)
            row = store.update(self, {"VCPUs_at_startup": nvcpu})
            metrics = row["metrics"]
            if metrics in store.tables["VM_metrics"]:
                store.update(metrics, {
                    "VCPUs_number": nvcpu,
                    "VCPUs_utilisation": {str(i): 0.0 for i in range(nvcpu)},
                    "VCPUs_CPU": {str(i): i for i in range(nvcpu)},
                })
            store.update(self, {"memory_overhead": memory_overhead(row)})


@api("VM.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, vm: str) -> int:
    return memory_overhead(_vm(ctx, vm))


@api("VM.set_HVM_shadow_multiplier")
def set_HVM_shadow_multiplier(ctx: Context, self: str, value: float) -> None:
    store = ctx.store
    _vm(ctx, self)
    with vm_operation(ctx, self, "changing_shadow_memory"), ctx.lock:
        if value < 1.0:
            raise XapiFailure("INVALID_VALUE", "multiplier", ocaml_float(value))
        row = store.update(self, {"HVM_shadow_multiplier": value})
        store.update(self, {"memory_overhead": memory_overhead(row)})


def _non_negative(ctx: Context, vm: str, field: str, value: int) -> None:
    _vm(ctx, vm)
    if value < 0:
        raise XapiFailure("INVALID_VALUE", f"{field} must be non-negative", value)
    ctx.store.update(vm, {field: value})


@api("VM.set_start_delay")
def set_start_delay(ctx: Context, self: str, value: int) -> None:
    _non_negative(ctx, self, "start_delay", value)


@api("VM.set_shutdown_delay")
def set_shutdown_delay(ctx: Context, self: str, value: int) -> None:
    _non_negative(ctx, self, "shutdown_delay", value)


@api("VM.set_order")
def set_order(ctx: Context, self: str, value: int) -> None:
    _non_negative(ctx, self, "order", value)


@api("VM.set_domain_type")
def set_domain_type(ctx: Context, self: str, value: str) -> None:
    _vm(ctx, self)
    if value == "unspecified":
        raise XapiFailure("INVALID_VALUE", "domain_type", value)
    ctx.store.update(self, {"domain_type": value,
                            "HVM_boot_policy": "BIOS order" if value == "hvm" else ""})


@api("VM.set_HVM_boot_policy")
def set_HVM_boot_policy(ctx: Context, self: str, value: str) -> None:
    _vm(ctx, self)
    ctx.store.update(self, {"domain_type": "hvm" if value else "pv", "HVM_boot_policy": value})


@api("VM.set_has_vendor_device")
def set_has_vendor_device(ctx: Context, self: str, value: bool) -> None:
    store = ctx.store
    with ctx.lock:
        row = _vm(ctx, self)
        if row["power_state"] != "Halted":
            raise XapiFailure("VM_BAD_POWER_STATE", self, "halted", row["power_state"].lower())
        changes: dict[str, Any] = {"has_vendor_device": value}
        if value and int(row["hardware_platform_version"]) < 1:
            changes["hardware_platform_version"] = 1
        store.update(self, changes)


@api("VM.set_actions_after_crash")
def set_actions_after_crash(ctx: Context, self: str, value: str) -> None:
    _vm(ctx, self)
    ctx.store.update(self, {"actions_after_crash": value})


@api("VM.set_suspend_VDI")
def set_suspend_VDI(ctx: Context, self: str, value: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = _vm(ctx, self)
        if row["power_state"] != "Suspended":
            raise XapiFailure("VM_BAD_POWER_STATE", self, "suspended", row["power_state"].lower())
        vdi = store.get(value, "VDI")
        if vdi["type"] == "cbt_metadata":
            raise XapiFailure("VDI_INCOMPATIBLE_TYPE", self, "CBT metadata")
        store.update(self, {"suspend_VDI": value})


# ============================================================================ clone family

_RELATION_SETS = ("VBDs", "VIFs", "consoles", "snapshots", "children", "VUSBs", "VGPUs",
                  "VTPMs", "crash_dumps", "attached_PCIs")


def gen_mac(device: int, seed: str) -> str:
    """Xapi_vif_helpers.gen_mac: MD5 chained 2*device+1 times over the VM's mac_seed,
    then forced locally administered and unicast (Record_util.mac_from_int_array)."""
    data = seed.encode()
    for _ in range(device * 2 + 1):
        data = hashlib.md5(data).digest()
    second = hashlib.md5(data).digest()
    octets = [data[0], data[1], data[2], data[3], second[1], second[2]]
    octets[0] = (octets[0] | 0x2) & ~0x1
    return ":".join(f"{b:02x}" for b in octets)


def fresh_genid(store: Store, current: str) -> str:
    """Xapi_vm_helpers.fresh_genid."""
    if current == "":
        return ""
    return f"{store.rng.getrandbits(63)}:{store.rng.getrandbits(63)}"


def copy_metrics(store: Store, vm: str) -> str:
    """Xapi_vm_helpers.copy_metrics: a new VM_metrics copied from the VM's, if any."""
    src = store.tables["VM_metrics"].get(store.get(vm, "VM")["metrics"])
    if src is None:
        return store.create("VM_metrics", {"VCPUs_utilisation": {"0": 0.0}})
    rec = {k: v for k, v in src.items() if k != "uuid"}
    return store.create("VM_metrics", rec)


def copy_guest_metrics(store: Store, vm: str) -> str:
    """Xapi_vm_helpers.copy_guest_metrics: a copy, or NULL when there is none."""
    src = store.tables["VM_guest_metrics"].get(store.get(vm, "VM")["guest_metrics"])
    if src is None:
        return NULL_REF
    return store.create("VM_guest_metrics", {k: v for k, v in src.items() if k != "uuid"})


def copy_vbd(store: Store, vbd: str, vm: str, vdi: str) -> str:
    """Xapi_vbd_helpers.copy."""
    src = store.get(vbd, "VBD")
    rec = {k: v for k, v in src.items()
           if k not in ("uuid", "VM", "VDI", "allowed_operations", "current_operations")}
    rec.update(VM=vm, VDI=vdi, empty=bool(src["empty"]) or vdi == NULL_REF, status_code=0,
               status_detail="", qos_supported_algorithms=[], runtime_properties={},
               storage_lock=False)
    if "metrics" in rec:
        rec["metrics"] = NULL_REF
    return store.create("VBD", rec)


def copy_vif(store: Store, vif: str, vm: str, preserve_mac: bool) -> str:
    """Xapi_vif_helpers.copy: a blank MAC is generated from the new VM's mac_seed."""
    src = store.get(vif, "VIF")
    rec = {k: v for k, v in src.items()
           if k not in ("uuid", "VM", "allowed_operations", "current_operations")}
    rec["VM"] = vm
    if not preserve_mac:
        seed = store.get(vm, "VM")["other_config"].get("mac_seed")
        if seed is not None and src["device"].isdigit():
            rec.update(MAC=gen_mac(int(src["device"]), seed), MAC_autogenerated=True)
    else:
        rec["MAC_autogenerated"] = False
    if "metrics" in rec:
        rec["metrics"] = NULL_REF
    return store.create("VIF", rec)


def _disk_op(store: Store, kind: str, vdi: str, sr: str | None) -> str:
    """Xapi_vm_clone.clone_single_vdi: VDI.clone, VDI.copy (onto ``sr``, else the
    disk's own SR) or VDI.snapshot. These go to the SR's SM driver, which rounds the
    size and reports a full SR as itself (SR_BACKEND_FAILURE_44), never SR_FULL."""
    if kind == "clone":
        return disks.clone_vdi(store, vdi, sm=True)
    if kind == "copy":
        target = sr if sr is not None else store.get(vdi, "VDI")["SR"]
        return disks.copy_vdi(store, vdi, target, sm=True)
    return disks.snapshot_vdi(store, vdi, sm=True)  # snapshot, checkpoint


def safe_clone_disks(store: Store, kind: str, vbds: list[str], sr: str | None
                     ) -> list[tuple[str, str, bool]]:
    """Xapi_vm_clone.safe_clone_disks: (vbd, new VDI, delete-on-error) per VBD; empty
    drives stay empty, CDs keep their ISO; on error the new disks are destroyed."""
    done: list[tuple[str, str, bool]] = []
    try:
        for vbd in vbds:
            row = store.get(vbd, "VBD")
            if row["empty"]:
                done.append((vbd, NULL_REF, False))
            elif row["type"] == "CD":
                done.append((vbd, row["VDI"], False))
            else:
                done.append((vbd, _disk_op(store, kind, row["VDI"], sr), True))
    except XapiFailure:
        for _, vdi, delete in done:
            if delete and vdi in store.tables["VDI"]:
                disks.destroy_vdi(store, vdi)
        raise
    return done


def _new_vm_record(store: Store, vm: str, kind: str, new_name: str, state: str, task: str,
                   snapshot_info: dict[str, str] | None) -> dict[str, Any]:
    """Xapi_vm_clone.copy_vm_record."""
    src = store.get(vm, "VM")
    is_snap = kind in ("snapshot", "checkpoint")
    oc = {k: v for k, v in src["other_config"].items()
          if k not in ("default_template", "xensource_internal")}
    if not is_snap:
        oc["mac_seed"] = store.new_uuid()
    if src["is_a_template"] and "base_template_name" not in oc:
        oc = {"base_template_name": src["name_label"], **oc}
    if snapshot_info is None:
        snapshot_info = ({"disk-snapshot-type": "crash_consistent",
                          "power-state-at-snapshot": src["power_state"]} if is_snap else {})
    rec = {k: v for k, v in src.items() if k not in _RELATION_SETS}
    rec.update(
        uuid="", name_label=new_name, power_state=state, allowed_operations=[],
        current_operations={task: kind}, blocked_operations={},
        is_a_template=is_snap or bool(src["is_a_template"]), is_default_template=False,
        is_a_snapshot=is_snap, snapshot_of=vm if is_snap else NULL_REF,
        snapshot_time=now_datetime() if is_snap else EPOCH, snapshot_info=snapshot_info,
        snapshot_metadata="", transportable_snapshot_id="",
        parent=src["parent"] if is_snap else NULL_REF, resident_on=NULL_REF,
        scheduled_to_be_resident_on=NULL_REF, suspend_VDI=NULL_REF, other_config=oc,
        domid=-1, domarch="", metrics=copy_metrics(store, vm),
        guest_metrics=copy_guest_metrics(store, vm), blobs={}, ha_always_run=False,
        protection_policy=NULL_REF, is_snapshot_from_vmpp=False, is_vmss_snapshot=False,
        snapshot_schedule=NULL_REF, appliance=NULL_REF, start_delay=0, shutdown_delay=0,
        order=0, suspend_SR=NULL_REF, version=0,
        generation_id=fresh_genid(store, src["generation_id"]), requires_reboot=False,
        pending_guidances=[],
    )
    for f in ("pending_guidances_recommended", "pending_guidances_full"):
        if f in rec:
            rec[f] = []
    return {k: v for k, v in rec.items() if k in store.field_names["VM"]}


def clone_vm(ctx: Context, vm: str, kind: str, new_name: str, *, sr: str | None = None,
             ignore_vdis: list[str] | None = None,
             snapshot_info: dict[str, str] | None = None) -> str:
    """Xapi_vm_clone.clone for clone / copy / snapshot / checkpoint. Call with the lock
    held, after the simulated time has passed."""
    store = ctx.store
    task = ctx.ensure_task()
    src = store.get(vm, "VM")
    ps = src["power_state"]
    if (kind == "checkpoint" and ps in ("Running", "Suspended")) or (kind in ("clone", "copy") and ps == "Suspended"):
        state = "Suspended"
    else:
        state = "Halted"
    is_snap = kind in ("snapshot", "checkpoint")
    vbds = list(src["VBDs"])
    if is_snap and ignore_vdis:
        vbds = [v for v in vbds if store.get(v, "VBD")["VDI"] not in ignore_vdis]
    cloned = safe_clone_disks(store, kind, vbds, sr)
    new: str | None = None
    try:
        new = store.create("VM", _new_vm_record(store, vm, kind, new_name, state, task,
                                                snapshot_info))
        if is_snap:
            store.update(vm, {"parent": new})
        for vbd, vdi, _ in cloned:
            nv = copy_vbd(store, vbd, new, vdi)
            nrow = store.get(nv, "VBD")
            if nrow["type"] == "Disk" and "owner" not in nrow["other_config"]:
                store.set_map_key(nv, "other_config", "owner", "")
        for vif in src["VIFs"]:
            if vif in store.tables["VIF"]:
                copy_vif(store, vif, new, preserve_mac=is_snap)
        suspend_vdi = src["suspend_VDI"]
        if suspend_vdi in store.tables["VDI"] and kind != "snapshot":
            store.update(new, {"suspend_VDI": _disk_op(store, kind, suspend_vdi, sr)})
        store.update(new, {"current_operations": {}, "memory_overhead": src["memory_overhead"]})
        force_state_reset(store, new, state, keep_guest_metrics=True)
    except XapiFailure:
        if new is not None and new in store.tables["VM"]:
            destroy_vm_records(store, new)
        for _, vdi, delete in cloned:
            if delete and vdi in store.tables["VDI"]:
                disks.destroy_vdi(store, vdi)
        raise
    return new


@api("VM.clone")
def clone(ctx: Context, vm: str, new_name: str) -> str:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "clone"):
        with ctx.lock:
            choose_host_seeing(store, required_srs(store, store.get(vm, "VM")))
        ctx.work(0.5)
        with ctx.lock:
            new = clone_vm(ctx, vm, "clone", new_name)
            # Xapi_vm.clone calls its local hard_shutdown (no operation check) on a
            # suspended clone of a snapshot: the copied memory image goes.
            if store.get(vm, "VM")["is_a_snapshot"] and \
                    store.get(new, "VM")["power_state"] == "Suspended":
                image = store.get(new, "VM")["suspend_VDI"]
                if image in store.tables["VDI"]:
                    disks.destroy_vdi(store, image)
                store.update(new, {"suspend_VDI": NULL_REF})
                force_state_reset(store, new, "Halted", keep_guest_metrics=True)
    return new


@api("VM.copy")
def copy(ctx: Context, vm: str, new_name: str, sr: str) -> str:
    """Xapi_vm.copy: full copies of the disks, onto ``sr`` or (with a null or unknown
    SR) each onto its own SR; an ISO SR is refused."""
    store = ctx.store
    _vm(ctx, vm)
    target: str | None = sr if sr in store.tables["SR"] else None
    with vm_operation(ctx, vm, "copy"):
        if target is not None and store.get(target, "SR")["content_type"] == "iso":
            raise XapiFailure("OPERATION_NOT_ALLOWED", "Cannot copy a VM's disks to an ISO SR")
        ctx.work(2.0)
        with ctx.lock:
            new = clone_vm(ctx, vm, "copy", new_name, sr=target)
    if store.get(vm, "VM")["is_a_snapshot"] and store.get(new, "VM")["power_state"] != "Halted":
        # Xapi_vm.copy goes through the API (Client.VM.hard_shutdown), so the new VM, a
        # template, meets check_template: VM_IS_TEMPLATE [new, "hard_shutdown"], as xapi
        sub = Context(ctx.sim, ctx.conn, "VM.hard_shutdown", ctx.session, None)
        try:
            hard_shutdown(sub, new)
        finally:
            sub.finish_own_task()
    return new


@api("VM.snapshot")
def snapshot(ctx: Context, vm: str, new_name: str, ignore_vdis: list[str]) -> str:
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "snapshot"):
        with ctx.lock:
            choose_host_seeing(store, required_srs(store, store.get(vm, "VM")))
        ctx.work(0.5)
        with ctx.lock:
            new = clone_vm(ctx, vm, "snapshot", new_name, ignore_vdis=ignore_vdis)
    _alert(ctx, "VM_SNAPSHOTTED", vm,
           f"{_vm_text(store, vm)} snapshotted, snapshot name: {new_name}")
    return new


def _sr_can_snapshot(store: Store, sr: str) -> bool:
    srow = store.tables["SR"].get(sr)
    if srow is None:
        return True
    for sm in store.tables["SM"].values():
        if sm["type"] == srow["type"]:
            return "VDI_SNAPSHOT" in sm["capabilities"]
    return True


@api("VM.checkpoint")
def checkpoint(ctx: Context, vm: str, new_name: str) -> str:
    """Xapi_vm_snapshot.checkpoint: a running VM is suspended (staying resident), its
    disks and memory image snapshotted, and resumed."""
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "checkpoint"):
        ps = store.get(vm, "VM")["power_state"]
        info: dict[str, str] | None = None
        if ps == "Running":
            info = {"disk-snapshot-type": "crash_consistent", "power-state-at-snapshot": "Running"}
            with ctx.lock:
                row = store.get(vm, "VM")
                for sr in required_srs(store, row, with_suspend=False):
                    srow = store.tables["SR"].get(sr)
                    if srow is not None and srow["content_type"] != "iso" and \
                            not _sr_can_snapshot(store, sr):
                        raise XapiFailure("SR_OPERATION_NOT_SUPPORTED", vm)
                _create_suspend_image(ctx, vm)
                force_state_reset(store, vm, "Suspended", checkpoint=True)
        try:
            ctx.work(1.0)
            with ctx.lock:
                new = clone_vm(ctx, vm, "checkpoint", new_name, snapshot_info=info)
        finally:
            if ps == "Running":
                with ctx.lock:
                    row = store.get(vm, "VM")
                    host = row["resident_on"]
                    vdi = row["suspend_VDI"]
                    boot_domain(ctx, vm, host, False, fresh_boot=False)
                    store.update(vm, {"suspend_VDI": NULL_REF})
                    if vdi in store.tables["VDI"]:
                        disks.destroy_vdi(store, vdi)
    _alert(ctx, "VM_CHECKPOINTED", vm,
           f"{_vm_text(store, vm)} checkpointed, snapshot name: {new_name}")
    return new


def destroy_vm_records(store: Store, vm: str) -> None:
    """Xapi_vm_helpers.destroy: the VM's VBDs, VIFs, metrics, guest metrics (and any
    consoles) go; its VDIs stay, as in xapi. Children are re-parented."""
    row = store.get(vm, "VM")
    for child in list(row["children"]):
        if child in store.tables["VM"]:
            store.update(child, {"parent": row["parent"]})
    for vbd in list(row["VBDs"]):
        if vbd in store.tables["VBD"]:
            store.destroy(vbd)
    for vif in list(row["VIFs"]):
        if vif in store.tables["VIF"]:
            store.destroy(vif)
    for c in list(row["consoles"]):
        if c in store.tables["console"]:
            store.destroy(c)
    if row["metrics"] in store.tables["VM_metrics"]:
        store.destroy(row["metrics"])
    if row["guest_metrics"] in store.tables["VM_guest_metrics"]:
        store.destroy(row["guest_metrics"])
    store.destroy(vm)


@api("VM.destroy")
def destroy(ctx: Context, self: str) -> None:
    store = ctx.store
    _vm(ctx, self)
    with vm_operation(ctx, self, "destroy"), ctx.lock:
        row = store.get(self, "VM")
        if row["other_config"].get("default_template") == "true":
            raise XapiFailure("VM_CANNOT_DELETE_DEFAULT_TEMPLATE")
        destroy_vm_records(store, self)


@api("VM.revert")
def revert(ctx: Context, snapshot: str) -> None:
    """message_forwarding.ml VM.revert and Xapi_vm_snapshot.revert: the VM is hard shut
    down if it runs, takes the snapshot's settings back (the snapshot's own record:
    snapshots made here keep no snapshot_metadata, xapi's pre-MNR path), its disks are
    replaced by clones of the snapshot's, its VIFs by the snapshot's, and it ends in the
    snapshot's power state. If the VM is gone, the revert fails as xapi's
    create_vm_from_snapshot does without metadata."""
    store = ctx.store
    snap = store.get(snapshot, "VM")
    vm = snap["snapshot_of"]
    if vm not in store.tables["VM"]:
        if snap["is_a_snapshot"]:
            raise XapiFailure("VM_REVERT_FAILED", snapshot, vm)
        vm = snapshot  # not a snapshot: the operation check below says so
    with vm_operation(ctx, snapshot, "revert"):
        sub = Context(ctx.sim, ctx.conn, "VM.reverting", ctx.session, None)
        try:
            with vm_operation(sub, vm, "reverting"):
                _set_cancellable(ctx, False)
                if store.get(vm, "VM")["power_state"] != "Halted":
                    shut = Context(ctx.sim, ctx.conn, "VM.hard_shutdown", ctx.session, None)
                    try:
                        hard_shutdown(shut, vm)
                    finally:
                        shut.finish_own_task()
                ctx.work(1.0)
                with ctx.lock:
                    try:
                        _revert_records(ctx, snapshot, vm)
                    except XapiFailure as e:
                        store.update(vm, {"current_operations": {}})
                        force_state_reset(store, vm, "Halted")
                        if e.code in ("SR_FULL", "VDI_INCOMPATIBLE_TYPE") or \
                                e.code.startswith("SR_BACKEND_FAILURE"):
                            raise
                        raise XapiFailure("VM_REVERT_FAILED", snapshot, vm) from e
        finally:
            sub.finish_own_task()
    _alert(ctx, "VM_SNAPSHOT_REVERTED", vm,
           f"{_vm_text(store, vm)} reverted to snapshot: {store.get(snapshot, 'VM')['name_label']} "
           f"(uuid {store.get(snapshot, 'VM')['uuid']})")


# xapi_vm_snapshot.ml extended_do_not_copy (with the fields that are relations here)
_REVERT_KEEP = frozenset({
    "uuid", "suspend_VDI", "power_state", "parent", "current_operations",
    "allowed_operations", "metrics", "guest_metrics", "resident_on", "domid",
    "protection_policy", "snapshot_schedule", "scheduled_to_be_resident_on", "snapshots",
    "tags", "affinity", "groups", "consoles", "VBDs", "VIFs", "VGPUs", "VUSBs", "VTPMs",
    "attached_PCIs", "is_snapshot_from_vmpp", "name_label", "is_a_snapshot",
    "is_a_template", "is_default_template", "snapshot_of", "snapshot_time",
    "transportable_snapshot_id", "children", "crash_dumps",
})


def _revert_records(ctx: Context, snapshot: str, vm: str) -> None:
    store = ctx.store
    snap = store.get(snapshot, "VM")
    # revert_vm_fields
    fields = {k: v for k, v in snap.items() if k not in _REVERT_KEEP}
    fields["ha_always_run"] = False
    store.update(vm, fields)
    row = store.get(vm, "VM")
    # revert_vbds (no SR here implements VDI.revert, so every disk is cloned)
    tables = store.tables
    snap_disk_vbds = [v for v in snap["VBDs"] if tables["VBD"][v]["type"] == "Disk"]
    snap_cd_vbds = [v for v in snap["VBDs"] if tables["VBD"][v]["type"] != "Disk"]
    snap_disks = {tables["VBD"][v]["VDI"] for v in snap_disk_vbds}
    snap_of = {tables["VDI"][d]["snapshot_of"] for d in snap_disks if d in tables["VDI"]}
    vm_vbds = list(row["VBDs"])
    vm_disk_vbds = [v for v in vm_vbds if tables["VBD"][v]["type"] == "Disk"]
    vm_cd_vbds = [v for v in vm_vbds if tables["VBD"][v]["type"] != "Disk"]
    vm_disks = {tables["VBD"][v]["VDI"] for v in vm_disk_vbds}
    without_snapshot = vm_disks - snap_of
    doomed_vdis = (vm_disks - without_snapshot) | {row["suspend_VDI"]}
    doomed_vbds = [v for v in vm_vbds
                   if tables["VBD"][v]["VDI"] in doomed_vdis | without_snapshot
                   or v in vm_cd_vbds]
    for vbd in doomed_vbds:
        if vbd in tables["VBD"]:
            store.destroy(vbd)
    for vdi in doomed_vdis:
        vrow = tables["VDI"].get(vdi)
        srow = tables["SR"].get(vrow["SR"]) if vrow is not None else None
        if vrow is not None and (srow is None or srow["content_type"] != "iso"):
            disks.destroy_vdi(store, vdi)
    previous = [tables["VDI"][tables["VBD"][v]["VDI"]]["snapshot_of"] for v in snap_disk_vbds]
    cloned = safe_clone_disks(store, "clone", snap_disk_vbds, None)
    for (_, new_vdi, _), old in zip(cloned, previous, strict=True):
        if old == NULL_REF:
            continue
        for other, vrow in list(tables["VDI"].items()):
            if vrow["snapshot_of"] == old:
                store.update(other, {"snapshot_of": new_vdi})
    cds = safe_clone_disks(store, "clone", snap_cd_vbds, None)
    suspend_vdi = NULL_REF
    if snap["suspend_VDI"] in tables["VDI"]:
        suspend_vdi = disks.clone_vdi(store, snap["suspend_VDI"], sm=True)
    for vbd, vdi, _ in [*cloned, *cds]:
        copy_vbd(store, vbd, vm, vdi)
    store.update(vm, {"suspend_VDI": suspend_vdi})
    # VIFs
    for vif in list(row["VIFs"]):
        if vif in tables["VIF"]:
            store.destroy(vif)
    for vif in snap["VIFs"]:
        copy_vif(store, vif, vm, preserve_mac=True)
    # guest metrics and metrics
    delete_guest_metrics(store, vm)
    if snap["guest_metrics"] in tables["VM_guest_metrics"]:
        store.update(vm, {"guest_metrics": copy_guest_metrics(store, snapshot)})
    old_metrics = store.get(vm, "VM")["metrics"]
    if old_metrics in tables["VM_metrics"]:
        store.destroy(old_metrics)
    if snap["metrics"] in tables["VM_metrics"]:
        store.update(vm, {"metrics": copy_metrics(store, snapshot)})
    else:
        store.update(vm, {"metrics": NULL_REF})
    store.update(vm, {"parent": snapshot, "current_operations": {}})
    force_state_reset(store, vm, snap["power_state"], keep_guest_metrics=True)


# ============================================================================ templates

@api("VM.set_is_a_template")
def set_is_a_template(ctx: Context, self: str, value: bool) -> None:
    """message_forwarding.ml / Xapi_vm_helpers.set_is_a_template: making a template
    is the make_into_template operation and drops the VM's metrics; turning a template
    into a VM stamps the metrics' install_time."""
    store = ctx.store
    _vm(ctx, self)
    if value:
        with vm_operation(ctx, self, "make_into_template"), ctx.lock:
            row = store.get(self, "VM")
            if row["metrics"] in store.tables["VM_metrics"]:
                store.destroy(row["metrics"])
            store.update(self, {"ha_always_run": False, "metrics": NULL_REF,
                                "is_a_template": True})
        return
    with ctx.lock:
        metrics = store.get(self, "VM")["metrics"]
        if metrics in store.tables["VM_metrics"]:
            store.update(metrics, {"install_time": now_datetime()})
        store.update(self, {"is_a_template": False})


_DISK_RE = re.compile(r"<disk\b([^>]*)/>")
_ATTR_RE = re.compile(r'(\w+)="([^"]*)"')
_VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump")


def provision_disks(xml: str) -> list[dict[str, str]]:
    """xapi_templates.ml disks_of_xml: <provision><disk device= size= sr= bootable=
    type=/>...</provision>; every disk is parsed (its size with Int64.of_string)
    before any is made, and anything amiss is Parse_failure."""
    text = xml.strip()
    if not (text.startswith("<provision") and text.endswith("</provision>")) and \
            text != "<provision/>":
        raise XapiFailure("INTERNAL_ERROR", "Xapi_templates.Parse_failure")
    out = []
    for m in _DISK_RE.finditer(text):
        attrs = dict(_ATTR_RE.findall(m.group(1)))
        if not {"device", "size", "sr", "bootable"} <= attrs.keys():
            raise XapiFailure("INTERNAL_ERROR", "Xapi_templates.Parse_failure")
        try:
            int(attrs["size"])
        except ValueError as e:
            raise XapiFailure("INTERNAL_ERROR", "Xapi_templates.Parse_failure") from e
        out.append(attrs)
    return out


def call_api(ctx: Context, method: str, *args: Any) -> Any:
    """Helpers.call_api_functions and Client.<method>: a call through the API as
    xapi's own code makes one (the caller's session, the argument checks, the call's
    own task). Call without holding the store lock."""
    return ctx.sim.dispatcher.call(method, [ctx.session, *args], ctx.conn)


@api("VM.provision")
def provision(ctx: Context, vm: str) -> None:
    """Xapi_vm.provision: the template becomes a VM (is_a_template false); when its
    other_config holds ``disks`` (or ``postinstall``), Xapi_templates.pre_install makes
    each disk through the API (create_disk), then the keys are dropped.

    xapi deletes the new disks only when something fails *after* pre_install: a disk
    that cannot be made leaves the disks made before it behind (and its own VDI when
    its VBD.create failed), with the VM converted and the keys still in place."""
    store = ctx.store
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "provision"):
        with ctx.lock:
            metrics = store.get(vm, "VM")["metrics"]
            if metrics in store.tables["VM_metrics"]:
                store.update(metrics, {"install_time": now_datetime()})
            row = store.update(vm, {"is_a_template": False})
            oc = row["other_config"]
            spec = provision_disks(oc["disks"]) if "disks" in oc else []
        if not spec and "postinstall" not in oc:
            return
        with ctx.lock:
            task = ctx.ensure_task()
            if task in store.tables["task"]:
                store.update(task, {"progress": 0.1})  # TaskHelper.set_progress 0.1
        for d in spec:
            _provision_disk(ctx, vm, row["uuid"], d)
        with ctx.lock:
            for key in ("disks", "postinstall"):
                store.del_map_key(vm, "other_config", key)


def _provision_disk(ctx: Context, vm: str, vm_uuid: str, d: dict[str, str]) -> str:
    """Xapi_templates.create_disk: SR.get_by_uuid of the XML's sr (xe vm-install writes
    the default SR's uuid there first; an empty or unknown one is UUID_INVALID [sr,
    value]); VDI.create, so the SR's driver rounds the size and a full SR fails as the
    driver fails (SR_BACKEND_FAILURE_44); VBD.create on the XML's device, with its
    checks (INVALID_DEVICE, DEVICE_ALREADY_EXISTS, "autodetect"); then the VDI is named
    after the VBD's userdevice. Returns the VBD."""
    store = ctx.store
    with ctx.lock:
        sr = store.uuids["SR"].get(d["sr"])
    if sr is None:
        raise XapiFailure("UUID_INVALID", "sr", d["sr"])
    vtype = d.get("type", "system")
    if vtype not in _VDI_TYPES:  # string2vdi_type fails: `system
        vtype = "system"
    vdi = call_api(ctx, "VDI.create", {
        "name_label": "", "name_description": "Created by template provisioner", "SR": sr,
        "virtual_size": int(d["size"]), "type": vtype, "sharable": False, "read_only": False,
        "other_config": {}, "xenstore_data": {}, "sm_config": {"vmhint": vm_uuid}, "tags": [],
    })
    vbd = call_api(ctx, "VBD.create", {
        "VM": vm, "VDI": vdi, "userdevice": d["device"], "bootable": d["bootable"] == "true",
        "mode": "RW", "type": "Disk", "unpluggable": vtype != "system", "empty": False,
        "qos_algorithm_type": "", "qos_algorithm_params": {}, "other_config": {"owner": ""},
        "device": "", "currently_attached": False,
    })
    device = call_api(ctx, "VBD.get_userdevice", vbd)
    call_api(ctx, "VDI.set_name_label", vdi, device)
    return str(vbd)


@api("VM.create")
def create(ctx: Context, args: dict[str, Any]) -> str:
    """Xapi_vm.create: a Halted VM (or Suspended, when given a suspend image, boot record
    and CPU flags) with fresh metrics, a mac_seed, and the computed memory overhead."""
    store = ctx.store
    for fname, value in args.items():
        f = ctx.dm.classes["VM"].fields[fname]
        if f.type.kind == "ref" and value != NULL_REF and not store.exists(value):
            raise XapiFailure("HANDLE_INVALID", f.type.name, value)
    oc = dict(args.get("other_config", {}))
    if "mac_seed" not in oc:
        oc = {"mac_seed": store.new_uuid(), **oc}
    requested = args.get("power_state", "Halted")
    suspended = requested == "Suspended"
    with ctx.lock:
        ref = store.new_ref()
        if suspended and (not args.get("last_boot_CPU_flags") or not args.get("last_booted_record")
                          or args.get("suspend_VDI", NULL_REF) == NULL_REF):
            raise XapiFailure("VM_BAD_POWER_STATE", ref, "halted", requested.lower())
        dt = args.get("domain_type", "unspecified")
        metrics = store.create("VM_metrics", {
            "VCPUs_utilisation": {"0": 0.0}, "current_domain_type": dt if suspended else "unspecified",
        })
        rec = {k: v for k, v in args.items() if k in store.field_names["VM"]}
        rec.update(
            power_state="Suspended" if suspended else "Halted",
            allowed_operations=[], current_operations={}, blocked_operations={},
            is_default_template=False, is_a_snapshot=False, snapshot_time=EPOCH,
            snapshot_of=NULL_REF, parent=NULL_REF, snapshot_info={}, snapshot_metadata="",
            transportable_snapshot_id="", resident_on=NULL_REF,
            scheduled_to_be_resident_on=NULL_REF, memory_overhead=0,
            suspend_VDI=args.get("suspend_VDI", NULL_REF) if suspended else NULL_REF,
            other_config=oc, domid=-1, domarch="", is_control_domain=False,
            metrics=metrics, guest_metrics=NULL_REF,
            last_booted_record=args.get("last_booted_record", "") if suspended else "",
            last_boot_CPU_flags=args.get("last_boot_CPU_flags", {}) if suspended else {},
            blobs={}, bios_strings={}, protection_policy=NULL_REF,
            is_snapshot_from_vmpp=False, snapshot_schedule=NULL_REF, is_vmss_snapshot=False,
            requires_reboot=False, uuid="",
            domain_type=dt if dt != "unspecified" else
            ("hvm" if args.get("HVM_boot_policy", "") else "pv"),
        )
        rec = {k: v for k, v in rec.items() if k in store.field_names["VM"]}
        store.create("VM", rec, ref=ref)
        row = store.get(ref, "VM")
        changes: dict[str, Any] = {"memory_overhead": memory_overhead(row)}
        if row["has_vendor_device"] and int(row["hardware_platform_version"]) < 1:
            changes["hardware_platform_version"] = 1
        store.update(ref, changes)
    return ref


# ============================================================================ queries

@api("VM.get_allowed_VBD_devices")
def get_allowed_VBD_devices(ctx: Context, vm: str) -> list[str]:
    """Xapi_vm.get_allowed_VBD_devices: the disk numbers of
    Xapi_vm_helpers.allowed_VBD_devices ~_type:`Disk (0..254, 0..255 for a PV control
    domain) less every device any VBD's device or userdevice names, read both as HVM
    and as PV (Device_number.of_string: "3", "xvdd" and "hdd" all take 3; "sdd" is a
    SCSI device, none of these)."""
    with ctx.lock:
        _vm(ctx, vm)
        return [str(d[1]) for d in storage.allowed_vbd_devices(ctx.store, vm, "Disk")]


@api("VM.get_allowed_VIF_devices")
def get_allowed_VIF_devices(ctx: Context, vm: str) -> list[str]:
    store = ctx.store
    row = _vm(ctx, vm)
    used = {store.tables["VIF"][v]["device"] for v in row["VIFs"] if v in store.tables["VIF"]}
    return [str(n) for n in range(16) if str(n) not in used]


@api("VM.assert_can_boot_here")
def api_assert_can_boot_here(ctx: Context, self: str, host: str) -> None:
    with ctx.lock:
        row = _vm(ctx, self)
        _host(ctx, host)
        assert_can_boot_here(ctx.store, self, row, host)


@api("VM.get_possible_hosts")
def get_possible_hosts(ctx: Context, vm: str) -> list[str]:
    """Xapi_vm_helpers.get_possible_hosts_for_vm."""
    store = ctx.store
    with ctx.lock:
        row = _vm(ctx, vm)
        if row["scheduled_to_be_resident_on"] in store.tables["host"]:
            return [row["scheduled_to_be_resident_on"]]
        out = []
        for h in _hosts(store):
            try:
                assert_can_boot_here(store, vm, row, h)
            except XapiFailure:
                continue
            out.append(h)
        return out


@api("VM.assert_operation_valid")
def api_assert_operation_valid(ctx: Context, self: str, op: str) -> None:
    with ctx.lock:
        _vm(ctx, self)
        assert_operation_valid(ctx.store, self, op)


@api("VM.update_allowed_operations")
def update_allowed_operations(ctx: Context, self: str) -> None:
    with ctx.lock:
        _vm(ctx, self)
        _republish_devices(ctx.store, self)
        ctx.store.republish(self)


@api("VM.get_boot_record")
def get_boot_record(ctx: Context, self: str) -> Row:
    _vm(ctx, self)
    with vm_operation(ctx, self, "get_boot_record"):
        return ctx.store.get(self, "VM")


@api("VM.get_cooperative")
def get_cooperative(ctx: Context, self: str) -> bool:
    _vm(ctx, self)
    return True


@api("VM.send_sysrq")
def send_sysrq(ctx: Context, vm: str, key: str) -> None:
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "send_sysrq"):
        raise XapiFailure("NOT_IMPLEMENTED", "send_sysrq")


@api("VM.send_trigger")
def send_trigger(ctx: Context, vm: str, trigger: str) -> None:
    _vm(ctx, vm)
    with vm_operation(ctx, vm, "send_trigger"):
        raise XapiFailure("NOT_IMPLEMENTED", "send_trigger")


@api("VM.maximise_memory")
def maximise_memory(ctx: Context, self: str, total: int, approximate: bool) -> int:
    """Xapi_vm.maximise_memory: the largest static_max whose start footprint (with
    the Static_max policy; 64 vCPUs when ``approximate``) fits in ``total``."""
    row = dict(_vm(ctx, self))
    if approximate:
        row["VCPUs_max"] = 64
    lo, hi = 0, max(0, total)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = Row({**row, "memory_static_max": mid, "memory_dynamic_min": mid})
        if start_memory(trial) <= total:
            lo = mid
        else:
            hi = mid - 1
    return lo
