"""What the storage handlers share: the marking of the objects an operation works on
(message_forwarding.ml with_*_marked: a conflicting operation waits, as xapi retries
``OTHER_OPERATION_IN_PROGRESS`` with back-off in ``Helpers.retry_with_global_lock``, and
its task can be cancelled while it waits), forwarding to a host with the SR plugged
(choose_pbd_for_sr), the SM features of an SR type (sm.ml), and recomputing
allowed_operations when what they depend on changes.

The storage objects themselves: vbd (xapi_vbd.ml, xapi_vbd_helpers.ml), vdi
(xapi_vdi.ml), sr (xapi_sr.ml, xapi_sr_operations.ml), pbd (xapi_pbd.ml) and sm (the SM
drivers' checks and answers); disks holds the VDI accounting and size rules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from xsctl.sim.dispatch import Context, is_cancelling
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import Store
from xsctl.sim.wire import Row

Failure = tuple[str, list[str]]
Table = dict[str, Failure | None]

# Longest wait for a conflicting operation to finish (Helpers.Policy.standard: 2 h)
MAX_LOCK_WAIT = 7200.0


def ref_of(store: Store, cls: str, row: Row) -> str:
    """The ref of a row of ``cls`` (a row does not carry its own), by its uuid."""
    return store.uuids[cls].get(row.get("uuid", ""), "")


def power_state(store: Store, vm: str) -> str:
    """A VM's power state; a VM that is gone counts as Halted."""
    row = store.find(vm)
    return "Halted" if row is None else str(row["power_state"])


def sorted_ops(current: dict[str, str], order: list[str]) -> list[tuple[str, str]]:
    """xapi's ``List.sort_uniq`` on (task, op) compared by op: one entry per op,
    in enum order."""
    seen: dict[str, str] = {}
    for task, op in current.items():
        seen.setdefault(op, task)
    rank = {op: i for i, op in enumerate(order)}
    return sorted(((t, o) for o, t in seen.items()), key=lambda x: rank.get(x[1], 99))


def domain_type(store: Store, vm: str) -> str:
    """Helpers.domain_type: the running domain's type, else the configured one."""
    row = store.get(vm, "VM")
    if row["power_state"] != "Halted":
        m = store.find(row["metrics"])
        if m is not None and m["current_domain_type"] != "unspecified":
            return str(m["current_domain_type"])
    dt = str(row["domain_type"])
    if dt == "unspecified":
        return "hvm" if row["HVM_boot_policy"] else "pv"
    return dt


def sm_features(store: Store, typ: str) -> frozenset[str]:
    """Xapi_sr_operations.features_of_sr_internal: the SM record's features."""
    for row in store.all("SM").values():
        if row["type"] == typ:
            names = row["features"] or dict.fromkeys(row["capabilities"], 1)
            return frozenset(k.split("/")[0] for k in names)
    return frozenset()


def refresh(store: Store, *refs: str) -> None:
    """Publish rows again whose allowed_operations would now differ."""
    for ref in refs:
        row = store.find(ref)
        if row is None:
            continue
        fn = store.allowed_ops.get(store.cls_of[ref])
        if fn is not None and fn(store, row) != row["allowed_operations"]:
            store.update(ref, {})


def refresh_vm_devices(store: Store, vm: str) -> None:
    """update_vbd_operations / update_vif_operations (message_forwarding.ml, after
    each power operation) and Xapi_vm.update_allowed_operations: the VM's VBDs', their
    VDIs' and its VIFs' allowed_operations recomputed. Like any database write of an
    unchanged value (Db_cache_impl.write_field_locked), an unchanged list is not
    written and makes no event."""
    row = store.find(vm)
    if row is None:
        return
    for vbd in row["VBDs"]:
        vrow = store.find(vbd)
        if vrow is not None:
            refresh(store, vbd, vrow["VDI"])
    refresh(store, *row["VIFs"])


def check_table(table_fn: Callable[[], Table], op: str) -> None:
    err = table_fn()[op]
    if err is not None:
        raise XapiFailure(err[0], *err[1])


def plugged_pbds(store: Store, sr: str) -> list[str]:
    srow = store.find(sr)
    if srow is None:
        return []
    return [p for p in srow["PBDs"] if (r := store.find(p)) is not None and r["currently_attached"]]


# ---------------------------------------------------------------- marking


Mark = tuple[str, str, Callable[[], None]]  # (ref, op, check)


@contextmanager
def marked(ctx: Context, *marks: Mark) -> Iterator[str]:
    """with_*_marked (message_forwarding.ml): run the checks and put each op in its
    object's current_operations under the task, atomically; while another operation
    is in the way, wait (cancellably) and try again."""
    store = ctx.store
    task = ctx.ensure_task()
    deadline = time.monotonic() + MAX_LOCK_WAIT
    while True:
        with store.cond:
            try:
                for _, _, check in marks:
                    check()
            except XapiFailure as f:
                if f.code != "OTHER_OPERATION_IN_PROGRESS" or time.monotonic() > deadline:
                    raise
                trow = store.find(task)
                if trow is not None:
                    if is_cancelling(trow):
                        raise XapiFailure("TASK_CANCELLED", task) from None
                    if "cancel" not in trow["allowed_operations"] and trow["status"] == "pending":
                        store.update(task, {"allowed_operations": ["cancel"]})
                store.cond.wait(0.05)
                continue
            for ref, op, _ in marks:
                store.set_map_key(ref, "current_operations", task, op)
                _refresh_related(store, ref)
            break
    try:
        yield task
    finally:
        with ctx.lock:
            for ref, _, _ in marks:
                if store.exists(ref):
                    store.del_map_key(ref, "current_operations", task)
                    _refresh_related(store, ref)


def _refresh_related(store: Store, ref: str) -> None:
    """A VBD's operations show in its VDI's allowed_operations and the other way round."""
    row = store.find(ref)
    cls = store.cls_of.get(ref)
    if row is None:
        return
    if cls == "VBD":
        refresh(store, row["VDI"])
    elif cls == "VDI":
        refresh(store, *row["VBDs"])


def forward_sr(store: Store, sr: str) -> str:
    """message_forwarding.ml choose_pbd_for_sr: a plugged PBD (the master's first
    for a shared SR), else SR_HAS_NO_PBDS [sr]. Returns the host it runs on."""
    row = store.get(sr, "SR")
    plugged = [store.get(p, "PBD") for p in plugged_pbds(store, sr)]
    if row["shared"]:
        pool = next(iter(store.all("pool").values()))
        master = [p for p in plugged if p["host"] == pool["master"]]
        if not master:
            raise XapiFailure("SR_HAS_NO_PBDS", sr)
        return str(master[0]["host"])
    if not plugged:
        raise XapiFailure("SR_HAS_NO_PBDS", sr)
    return str(plugged[0]["host"])


def assert_managed(store: Store, vdi: str) -> None:
    if not store.get(vdi, "VDI")["managed"]:
        raise XapiFailure("VDI_NOT_MANAGED", vdi)


def internal_only() -> XapiFailure:
    """Sm.assert_session_has_internal_sr_access: only an SM plugin's session may."""
    return XapiFailure("PERMISSION_DENIED", "")
