"""VM allowed operations, as ocaml/xapi/xapi_vm_lifecycle.ml has them:
``allowed_power_states``, ``is_allowed_concurrently``, ``check_operation_error`` (in
its order) and ``update_allowed_operations``; and Xapi_vm_helpers.with_vm_operation,
which checks an operation and marks it while it runs (message_forwarding.ml).

Written from xapi's own code (xapi-project/xen-api), never copied.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from xsctl.sim.dispatch import Context, api, is_cancelling
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.storage import refresh_vm_devices
from xsctl.sim.handlers.vm_guest import has_pv_drivers
from xsctl.sim.store import Store, allowed_ops
from xsctl.sim.wire import Row

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
PV_DOMAINS = frozenset({"pv", "pv_in_pvh", "pvh"})


def is_true(v: str | None) -> bool:
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


def pool_row(store: Store) -> Row:
    return next(iter(store.tables["pool"].values()))


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
        booted_pv = metrics["current_domain_type"] in PV_DOMAINS
    else:
        nomigrate = is_true(platform.get("nomigrate"))
        nested = is_true(platform.get("nested-virt"))
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
            reset and is_true(vdi["sm_config"].get("caching"))
        )
    is_dom0 = False
    if row["is_control_domain"]:
        host = tables["host"].get(row["resident_on"])
        is_dom0 = host is not None and host["control_domain"] == ref
    pool_oc = pool_row(store)["other_config"] if tables["pool"] else {}
    return Facts(
        power_state=ps,
        is_template=bool(row["is_a_template"]),
        is_snapshot=bool(row["is_a_snapshot"]),
        default_template=bool(row["is_default_template"])
        or is_true(row["other_config"].get("default_template")),
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
        system_domain=is_true(row["other_config"].get("is_system_domain")),
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


def feature_error(f: Facts, op: str, ref: str, strict: bool) -> XapiFailure | None:
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
    err = feature_error(f, op, ref, strict)
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


def task_cancelling(ctx: Context) -> bool:
    task = ctx.task
    if task is None:
        return False
    row = ctx.store.tables["task"].get(task)
    return row is not None and is_cancelling(row)


def set_cancellable(ctx: Context, cancellable: bool) -> None:
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
    set_cancellable(ctx, True)
    deadline = time.monotonic() + wait
    with store.cond:
        while True:
            err = operation_error(store, vm, op, strict)
            if err is None:
                break
            if err.code != "OTHER_OPERATION_IN_PROGRESS" or time.monotonic() >= deadline:
                raise err
            if task_cancelling(ctx):
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


def get_vm(ctx: Context, vm: str) -> Row:
    """The VM's row; HANDLE_INVALID [VM, ref] when there is none."""
    return ctx.store.get(vm, "VM")


def get_host(ctx: Context, host: str) -> Row:
    return ctx.store.get(host, "host")


@api("VM.assert_operation_valid")
def api_assert_operation_valid(ctx: Context, self: str, op: str) -> None:
    with ctx.lock:
        get_vm(ctx, self)
        assert_operation_valid(ctx.store, self, op)


@api("VM.update_allowed_operations")
def update_allowed_operations(ctx: Context, self: str) -> None:
    with ctx.lock:
        get_vm(ctx, self)
        refresh_vm_devices(ctx.store, self)
        ctx.store.republish(self)
