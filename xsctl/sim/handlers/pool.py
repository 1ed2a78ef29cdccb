"""pool.* behaviour: designate_new_master and allowed_operations.

From xapi (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_pool_helpers.ml`` ``compute_valid_operations``: a blocking
  operation in progress (``designate_new_master``, ``ha_enable``, ...) disallows
  every blocking operation with its own ``..._IN_PROGRESS []`` error and every waiting
  one with ``OTHER_OPERATION_IN_PROGRESS ["pool", ref, op, task]``; with nothing in
  progress, ``ha_enable``/``tls_verification_enable`` are refused while HA is on
  (``HA_IS_ENABLED``) and ``ha_disable`` while it is off (``HA_NOT_ENABLED``).
* ``ocaml/xapi/message_forwarding.ml`` ``designate_new_master``: marks the pool
  operation; ``xapi_pool.ml designate_new_master``: nothing to do when the host is
  already the master, ``HA_IS_ENABLED`` when HA is on; otherwise the host becomes the
  master and the old one turns into a member (which now answers ``HOST_IS_SLAVE``).
  The switch happens just after the call has answered, as xapi restarts the old
  master's toolstack once the new master has committed.
"""

from __future__ import annotations

import threading
import time

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import message
from xsctl.sim.store import Store, allowed_ops
from xsctl.sim.wire import Row

BLOCKING: dict[str, str] = {
    "ha_enable": "HA_ENABLE_IN_PROGRESS",
    "ha_disable": "HA_DISABLE_IN_PROGRESS",
    "cluster_create": "CLUSTER_CREATE_IN_PROGRESS",
    "designate_new_master": "DESIGNATE_NEW_MASTER_IN_PROGRESS",
    "tls_verification_enable": "TLS_VERIFICATION_ENABLE_IN_PROGRESS",
    "configure_repositories": "CONFIGURE_REPOSITORIES_IN_PROGRESS",
    "sync_updates": "SYNC_UPDATES_IN_PROGRESS",
    "sync_bundle": "SYNC_BUNDLE_IN_PROGRESS",
    "apply_updates": "APPLY_UPDATES_IN_PROGRESS",
}
WAITING = ("cert_refresh", "exchange_certificates_on_join", "exchange_ca_certificates_on_join",
           "copy_primary_host_certs", "eject", "get_updates", "exchange_crls_on_join")


def pool_op_errors(store: Store, ref: str, row: Row) -> dict[str, XapiFailure]:
    ops: list[str] = list(store.dm.enums["pool_allowed_operations"])
    errors: dict[str, XapiFailure] = {}
    current = list(row["current_operations"].items())
    blocking = next((BLOCKING[o] for _, o in current if o in BLOCKING), None)
    waiting = next(((t, o) for t, o in current if o in WAITING), None)
    other = XapiFailure("OTHER_OPERATION_IN_PROGRESS", "pool", ref,
                        *((waiting[1], waiting[0]) if waiting else ()))
    if blocking is not None:
        for op in ops:
            errors[op] = XapiFailure(blocking) if op in BLOCKING else other
    elif waiting is not None:
        errors = dict.fromkeys(ops, other)
    elif row["ha_enabled"]:
        errors["ha_enable"] = XapiFailure("HA_IS_ENABLED")
        errors["tls_verification_enable"] = XapiFailure("HA_IS_ENABLED")
        errors["cluster_create"] = XapiFailure("INCOMPATIBLE_CLUSTER_STACK_ACTIVE",
                                               row["ha_cluster_stack"])
    else:
        errors["ha_disable"] = XapiFailure("HA_NOT_ENABLED")
    return errors


@allowed_ops("pool")
def pool_allowed_operations(store: Store, row: Row) -> list[str]:
    ref = store.uuids["pool"].get(row["uuid"], "")
    errors = pool_op_errors(store, ref, row)
    ops: list[str] = list(store.dm.enums["pool_allowed_operations"])
    return [op for op in ops if op not in errors]


@api("pool.designate_new_master")
def designate_new_master(ctx: Context, host: str) -> None:
    store = ctx.store
    sim = ctx.sim
    store.get(host, "host")
    task = ctx.ensure_task()
    with ctx.lock:
        pool = next(iter(store.all("pool")))
        err = pool_op_errors(store, pool, store.get(pool, "pool")).get("designate_new_master")
        if err is not None:
            raise err
        store.set_map_key(pool, "current_operations", task, "designate_new_master")
    try:
        if host == sim.master_ref():
            return
        if store.get(pool, "pool")["ha_enabled"]:
            raise XapiFailure("HA_IS_ENABLED")
        ctx.work(1.0)
    finally:
        with ctx.lock:
            store.del_map_key(pool, "current_operations", task)
    old = sim.master_ref()

    def switch() -> None:
        time.sleep(0.05)  # let the answer reach the client first
        with store.lock:
            if not store.exists(host, "host") or sim.master_ref() != old:
                return
            host_uuid = store.get(host, "host")["uuid"]
        sim.change_master(host)
        # xapi_pool_transition.ml consider_sending_alert: the new master says so
        message.emit(sim, "POOL_MASTER_TRANSITION", "Host", host_uuid, "")

    t = threading.Thread(target=switch, daemon=True, name="designate_new_master")
    t.start()
    sim.track_thread(t)


@api("pool.sync_database")
def sync_database(ctx: Context) -> None:
    """Every simulated host shares one database: nothing to copy."""
    ctx.work(0.5)
