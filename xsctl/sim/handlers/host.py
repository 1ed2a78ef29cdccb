"""host.* behaviour: maintenance mode, evacuation, power, memory, time, certificate.

Written from xapi's code (xapi-project/xen-api), never copied:

* ``ocaml/xapi/xapi_host_helpers.ml`` ``valid_operations``: allowed_operations and
  the errors of ``with_host_operation`` (``HOST_NOT_DISABLED []`` for reboot, shutdown
  and apply_updates on an enabled host; ``OTHER_OPERATION_IN_PROGRESS ["host", ref,
  op, task]`` between VM-creating and VM-removing operations; ``HOST_IS_LIVE [ref]``
  and ``HOST_POWER_ON_MODE_DISABLED []`` for power_on).
* ``ocaml/xapi/message_forwarding.ml`` (module Host): which call marks which
  operation (enable, evacuate, reboot, shutdown, power_on; disable marks none).
* ``ocaml/xapi/xapi_host.ml``: ``disable``/``enable`` (``HOST_DISABLED_UNTIL_REBOOT``
  once a shutdown or reboot is under way), ``compute_evacuation_plan_no_wlb`` (targets
  are the other enabled hosts; per VM ``NO_HOSTS_AVAILABLE``, boot checks against every
  target, pool_migrate checks, then memory bin-packing), ``evacuate`` (first error
  raised, else each VM pool-migrated), ``assert_can_evacuate`` (``CANNOT_EVACUATE_HOST
  ["code,params|..."]``), ``get_vms_which_prevent_evacuation`` (VM -> [code, params]),
  ``shutdown``/``reboot`` (return at once; the host goes down a little later, after
  ``vm_evacuation.ml ensure_no_vms`` has shut down the VMs that cannot move and moved
  the rest), ``get_servertime``/``get_server_localtime``, ``get_server_certificate``.
* ``ocaml/xapi/memory_check.ml``: ``compute_free_memory`` is the host's total less its
  own overhead and each resident or scheduled VM's dynamic_min plus overhead.
* ``xapi_host.ml`` ``set_hostname_live`` (``HOST_NAME_INVALID [reason]``, refused
  under AD authentication; a default dom0 name follows) and ``management_reconfigure``
  (``HA_IS_ENABLED``; the PIF must be usable for management, ``xapi_pif.ml
  assert_usable_for_management``; the host's address moves to the PIF's).

The control domain is never migrated or shut down by these. A TICK keeps
host_cpu.utilisation and host_metrics (memory_free, last_updated) moving, with the
same numbers /rrd_updates reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from xsctl.sim import rrd
from xsctl.sim.dispatch import HANDLERS, Context, api, new_task
from xsctl.sim.errors import XapiFailure, internal_error
from xsctl.sim.handlers import TICKS
from xsctl.sim.handlers.vm_devices import force_state_reset
from xsctl.sim.handlers.vm_lifecycle import operation_error
from xsctl.sim.handlers.vm_memory import domain_type, host_free_memory, refresh_host_memory
from xsctl.sim.handlers.vm_placement import assert_can_boot_here, host_live
from xsctl.sim.store import Store, allowed_ops, now_datetime
from xsctl.sim.wire import NULL_REF, DateTime, Row

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

HOST_OPS = ("provision", "evacuate", "shutdown", "reboot", "power_on", "vm_start",
            "vm_resume", "vm_migrate", "apply_updates", "enable")
_CREATING = ("provision", "vm_resume", "vm_migrate")
_REMOVING = ("evacuate", "reboot", "shutdown")

def _until_reboot(store: Store) -> set[str]:
    """The hosts whose Localdb says host_disabled_until_reboot."""
    return store.runtime.disabled_until_reboot


# ---------------------------------------------------------------- operations


def host_op_errors(store: Store, ref: str, row: Row) -> dict[str, XapiFailure]:
    """xapi_host_helpers.ml valid_operations: the first error set for each op wins."""
    errors: dict[str, XapiFailure] = {}

    def set_errors(code: str, params: list[str], ops: tuple[str, ...]) -> None:
        for op in ops:
            errors.setdefault(op, XapiFailure(code, *params))

    current = list(row["current_operations"].items())
    creating = next(((t, o) for t, o in current if o in _CREATING), None)
    removing = next(((t, o) for t, o in current if o in _REMOVING), None)
    for op in HOST_OPS:
        if op == "power_on":
            continue
        if op in _CREATING and removing is not None:
            set_errors("OTHER_OPERATION_IN_PROGRESS", ["host", ref, removing[1], removing[0]], (op,))
        elif op in _REMOVING and creating is not None:
            set_errors("OTHER_OPERATION_IN_PROGRESS", ["host", ref, creating[1], creating[0]], (op,))
    for busy, blocks in (("reboot", ("shutdown", "apply_updates")),
                         ("shutdown", ("reboot", "apply_updates")),
                         ("apply_updates", ("reboot", "shutdown", "enable")),
                         ("provision", ("provision",))):
        task = next((t for t, o in current if o == busy), None)
        if task is not None:
            set_errors("OTHER_OPERATION_IN_PROGRESS", ["host", ref, busy, task], blocks)
    if row["enabled"]:
        set_errors("HOST_NOT_DISABLED", [], ("reboot", "shutdown", "apply_updates"))
    metrics = store.tables["host_metrics"].get(row["metrics"])
    if metrics is not None and metrics["live"]:
        set_errors("HOST_IS_LIVE", [ref], ("power_on",))
    if row["power_on_mode"] == "":
        set_errors("HOST_POWER_ON_MODE_DISABLED", [], ("power_on",))
    return errors


@allowed_ops("host")
def host_allowed_operations(store: Store, row: Row) -> list[str]:
    ref = store.uuids["host"].get(row["uuid"], "")
    errors = host_op_errors(store, ref, row)
    return [op for op in HOST_OPS if op not in errors]


def republish(store: Store, host: str) -> None:
    """Recompute allowed_operations after a change they depend on (host_metrics.live)."""
    if store.exists(host, "host"):
        store.republish(host)


@contextmanager
def host_operation(ctx: Context, host: str, op: str) -> Iterator[str]:
    """xapi_host_helpers.ml with_host_operation: check, then mark the operation in
    current_operations for the duration."""
    store = ctx.store
    task = ctx.ensure_task()
    with ctx.lock:
        row = store.get(host, "host")
        err = host_op_errors(store, host, row).get(op)
        if err is not None:
            raise err
        store.set_map_key(host, "current_operations", task, op)
    try:
        yield task
    finally:
        with ctx.lock:
            if store.exists(host, "host"):
                store.del_map_key(host, "current_operations", task)


# ---------------------------------------------------------------- memory


def compute_free_memory(store: Store, host: str) -> int:
    return host_free_memory(store, host)


def _vm_need(row: Row) -> int:
    """Xapi_ha_vm_failover.vm_memory: what a VM needs on its evacuation target, by the
    policy of its domain type (Static_max for PVH guests, Dynamic_min for the others)."""
    policy = (row["memory_static_max"] if domain_type(row) in ("pvh", "pv_in_pvh")
              else row["memory_dynamic_min"])
    return int(policy) + int(row["memory_overhead"])


# ---------------------------------------------------------------- evacuation

Plan = dict[str, tuple[str, list[str]]]  # vm -> ("migrate", [host]) | ("error", [code, ...])


def _user_vms(store: Store, host: str) -> list[str]:
    out = []
    for vm in store.get(host, "host")["resident_VMs"]:
        row = store.tables["VM"].get(vm)
        if row is not None and not row["is_control_domain"]:
            out.append(vm)
    return out


def evacuation_plan(store: Store, host: str) -> Plan:
    """xapi_host.ml compute_evacuation_plan_no_wlb. Call with the store lock held."""
    targets = [h for h, r in sorted(store.all("host").items(), key=lambda kv: kv[1]["address"])
               if h != host and r["enabled"]]
    vms = _user_vms(store, host)
    plans: Plan = {}
    if not targets:
        return {vm: ("error", ["NO_HOSTS_AVAILABLE", vm]) for vm in vms}
    pool = next(iter(store.all("pool").values()))
    protected = vms
    if pool["ha_enabled"]:
        protected = []
        for vm in vms:
            row = store.get(vm, "VM")
            # Helpers.vm_should_always_run
            if row["ha_always_run"] and row["ha_restart_priority"] == "restart":
                protected.append(vm)
            else:
                plans[vm] = ("error", ["HOST_EVACUATE_VM_NOT_HA_PROTECTED", vm])
    migratable = []
    for vm in protected:
        row = store.get(vm, "VM")
        try:
            for target in targets:
                assert_can_boot_here(store, vm, row, target, memory=False)
        except XapiFailure as f:
            plans[vm] = ("error", [f.code, *f.params])
            continue
        migratable.append(vm)
    for vm in vms:
        err = operation_error(store, vm, "pool_migrate")
        if err is not None:
            plans[vm] = ("error", [err.code, *err.params])
    # bin-pack by memory (Xapi_ha_vm_failover.compute_evacuation_plan,
    # Binpack.biggest_fit_decreasing): biggest first, onto the target with the most
    # room. Every VM that passed the boot checks is packed, also one whose pool_migrate
    # check failed (it keeps that error, but takes its room); one left out gets
    # HOST_NOT_ENOUGH_FREE_MEMORY in place of any earlier error.
    free = {t: compute_free_memory(store, t) for t in targets}
    placed: dict[str, str] = {}
    for vm in sorted(migratable, key=lambda v: _vm_need(store.get(v, "VM")), reverse=True):
        need = _vm_need(store.get(vm, "VM"))
        best = max(targets, key=lambda t: free[t])
        if free[best] >= need:
            free[best] -= need
            placed[vm] = best
        else:
            plans[vm] = ("error", ["HOST_NOT_ENOUGH_FREE_MEMORY", vm])
    for vm, target in placed.items():
        plans.setdefault(vm, ("migrate", [target]))
    return {vm: plans[vm] for vm in vms if vm in plans}


def _errors(plans: Plan) -> dict[str, list[str]]:
    return {vm: detail for vm, (kind, detail) in plans.items() if kind == "error"}


@api("host.get_vms_which_prevent_evacuation")
def get_vms_which_prevent_evacuation(ctx: Context, self: str) -> dict[str, list[str]]:
    with ctx.lock:
        ctx.store.get(self, "host")
        return _errors(evacuation_plan(ctx.store, self))


@api("host.assert_can_evacuate")
def assert_can_evacuate(ctx: Context, host: str) -> None:
    with ctx.lock:
        ctx.store.get(host, "host")
        errors = _errors(evacuation_plan(ctx.store, host))
    if errors:
        raise XapiFailure("CANNOT_EVACUATE_HOST", "|".join(",".join(e) for e in errors.values()))


def _sub_context(ctx: Context, method: str) -> Context:
    return Context(ctx.sim, ctx.conn, method, ctx.session, None)


def migrate_vm(ctx: Context, vm: str, target: str) -> None:
    """Client.Async.VM.pool_migrate, through the VM behaviour when it is there."""
    spec = HANDLERS.get("VM.pool_migrate")
    if spec is not None:
        sub = _sub_context(ctx, "VM.pool_migrate")
        try:
            spec.fn(sub, vm, target, {"live": "true"})
        finally:
            sub.finish_own_task()
        return
    store = ctx.store
    with ctx.lock:  # the VM behaviour is missing: move the domain ourselves
        row = store.get(vm, "VM")
        source = row["resident_on"]
        store.update(vm, {"resident_on": target, "scheduled_to_be_resident_on": NULL_REF})
        for h in (source, target):
            if store.exists(h, "host"):
                refresh_host_memory(store, h)


def shutdown_vm(ctx: Context, vm: str) -> None:
    """Client.Async.VM.hard_shutdown, through the VM behaviour when it is there."""
    spec = HANDLERS.get("VM.hard_shutdown")
    if spec is not None:
        sub = _sub_context(ctx, "VM.hard_shutdown")
        try:
            spec.fn(sub, vm)
        finally:
            sub.finish_own_task()
        return
    store = ctx.store
    with ctx.lock:
        host = store.get(vm, "VM")["resident_on"]
        force_state_reset(store, vm, "Halted")
        if store.exists(host, "host"):
            refresh_host_memory(store, host)


def _run_evacuation(ctx: Context, host: str, plans: Plan) -> None:
    total = max(1, len(plans))
    for i, (vm, (_, detail)) in enumerate(plans.items()):
        try:
            migrate_vm(ctx, vm, detail[0])
        except XapiFailure as f:
            if f.code != "VM_BAD_POWER_STATE":  # xapi_host.ml assert_success
                raise
        if ctx.task is not None and ctx.store.exists(ctx.task, "task"):
            ctx.store.update(ctx.task, {"progress": round((i + 1) / total, 3)})


@api("host.evacuate", cancellable=False)
def evacuate(ctx: Context, host: str, network: str = NULL_REF,
             evacuate_batch_size: int = 0) -> None:
    store = ctx.store
    store.get(host, "host")
    if network != NULL_REF:
        store.get(network, "network")
    with host_operation(ctx, host, "evacuate"):
        with ctx.lock:
            plans = evacuation_plan(store, host)
        for _, (kind, detail) in plans.items():
            if kind == "error":
                raise XapiFailure(detail[0], *detail[1:])
        _run_evacuation(ctx, host, plans)
        with ctx.lock:
            left = _user_vms(store, host)
        if left:
            raise internal_error(f"evacuate: {len(left)} VMs are still resident on {host}")


# ---------------------------------------------------------------- maintenance mode


@api("host.disable")
def disable(ctx: Context, host: str) -> None:
    store = ctx.store
    with ctx.lock:
        if store.get(host, "host")["enabled"]:
            store.update(host, {"enabled": False})


@api("host.enable")
def enable(ctx: Context, host: str) -> None:
    store = ctx.store
    store.get(host, "host")
    with host_operation(ctx, host, "enable"), ctx.lock:
        if store.get(host, "host")["enabled"]:
            return
        if host in _until_reboot(store):
            raise XapiFailure("HOST_DISABLED_UNTIL_REBOOT", host)
        store.update(host, {"enabled": True})


# ---------------------------------------------------------------- power


def _set_live(store: Store, host: str, live: bool) -> None:
    row = store.get(host, "host")
    if store.exists(row["metrics"], "host_metrics"):
        store.update(row["metrics"], {"live": live, "last_updated": now_datetime()})
    republish(store, host)


def _ensure_no_vms(ctx: Context, host: str) -> None:
    """vm_evacuation.ml ensure_no_vms: shut down the VMs that prevent evacuation,
    evacuate the rest, then shut down whatever is still running."""
    store = ctx.store
    with ctx.lock:
        blockers = list(_errors(evacuation_plan(store, host)))
    for vm in blockers:
        try:
            shutdown_vm(ctx, vm)
        except XapiFailure:
            pass
    with ctx.lock:
        plans = {vm: p for vm, p in evacuation_plan(store, host).items() if p[0] == "migrate"}
    try:
        _run_evacuation(ctx, host, plans)
    except XapiFailure:
        pass
    with ctx.lock:
        left = [vm for vm in _user_vms(store, host)
                if store.get(vm, "VM")["power_state"] in ("Running", "Paused")]
    for vm in left:
        try:
            shutdown_vm(ctx, vm)
        except XapiFailure:
            pass


def _power_cycle(ctx: Context, host: str, op: str, marker: str) -> None:
    sim = ctx.sim
    store = ctx.store
    try:
        time.sleep(sim.op_time * 2)
        _ensure_no_vms(ctx, host)
        with ctx.lock:
            _set_live(store, host, False)
        if op == "reboot":
            time.sleep(sim.op_time * 4)
            with ctx.lock:
                _until_reboot(store).discard(host)
                _set_live(store, host, True)
                if store.exists(host, "host"):
                    store.update(host, {"enabled": True})
    finally:
        with ctx.lock:
            if store.exists(host, "host"):
                store.del_map_key(host, "current_operations", marker)
            if store.exists(marker, "task"):
                store.destroy(marker)


def _shutdown_or_reboot(ctx: Context, host: str, op: str, label: str) -> None:
    store = ctx.store
    store.get(host, "host")
    with host_operation(ctx, host, op):
        with ctx.lock:
            # shutdown_and_reboot_common: a task that outlives the call keeps the host
            # marked (xapi marks `shutdown` for reboots too), and the host cannot be
            # re-enabled until it has restarted
            marker = new_task(ctx.sim, label, ctx.session, cancellable=False)
            store.update(marker, {"name_description": label})
            store.set_map_key(host, "current_operations", marker, "shutdown")
            _until_reboot(store).add(host)
        sub = _sub_context(ctx, f"host.{op}")
        t = threading.Thread(target=_power_cycle, args=(sub, host, op, marker), daemon=True,
                             name=f"host {op}")
        t.start()
        ctx.sim.track_thread(t)


@api("host.shutdown")
def shutdown(ctx: Context, host: str) -> None:
    _shutdown_or_reboot(ctx, host, "shutdown", "Host is shutting down")


@api("host.reboot")
def reboot(ctx: Context, host: str) -> None:
    _shutdown_or_reboot(ctx, host, "reboot", "Host is rebooting")


@api("host.set_power_on_mode")
def set_power_on_mode(ctx: Context, self: str, power_on_mode: str,
                      power_on_config: dict[str, str]) -> None:
    """xapi_host.ml set_power_on_mode (then update_allowed_operations)."""
    with ctx.lock:
        ctx.store.get(self, "host")
        ctx.store.update(self, {"power_on_mode": power_on_mode,
                                "power_on_config": power_on_config})


@api("host.power_on")
def power_on(ctx: Context, host: str) -> None:
    store = ctx.store
    store.get(host, "host")
    with host_operation(ctx, host, "power_on"):
        ctx.work(2.0)
        with ctx.lock:
            _until_reboot(store).discard(host)
            _set_live(store, host, True)
            store.update(host, {"enabled": True})


# ---------------------------------------------------------------- queries


@api("host.compute_free_memory")
def host_compute_free_memory(ctx: Context, host: str) -> int:
    with ctx.lock:
        ctx.store.get(host, "host")
        return compute_free_memory(ctx.store, host)


@api("host.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, host: str) -> int:
    return int(ctx.store.get(host, "host")["memory_overhead"])


@api("host.get_servertime")
def get_servertime(ctx: Context, host: str) -> DateTime:
    ctx.store.get(host, "host")
    return now_datetime()


@api("host.get_server_localtime")
def get_server_localtime(ctx: Context, host: str) -> DateTime:
    """Date.localtime: the host's local time; xapi prints no zone suffix for it."""
    ctx.store.get(host, "host")
    return DateTime(datetime.now().strftime("%Y%m%dT%H:%M:%S"))


@api("host.get_server_certificate")
def get_server_certificate(ctx: Context, host: str) -> str:
    ctx.store.get(host, "host")
    cert = ctx.sim.certs.get(host)
    if cert is None:
        raise internal_error("Certificates.get_server_certificate: no certificate")
    return cert.cert_pem.decode("ascii")


_DS_TEXT = {
    "cpu_avg": ("Average physical CPU usage", "(fraction)"),
    "loadavg": ("Domain0 loadavg", ""),
    "memory_total_kib": ("Total amount of memory in the host", "KiB"),
    "memory_free_kib": ("Total amount of free memory", "KiB"),
}


def _host_sources(ctx: Context, host: str) -> list[tuple[str, float, float]]:
    """(name, max, value now) of the host's data sources, from the /rrd_updates model."""
    ctx.store.get(host, "host")
    obj = rrd.collect(ctx.store, host, True, [])[0]
    t = rrd.last_update()
    return [(ds.name, ds.max, ds.series([t], rrd.STEP, "AVERAGE")[0]) for ds in obj.sources]


@api("host.get_data_sources")
def get_data_sources(ctx: Context, host: str) -> list[dict[str, object]]:
    """xapi_host.ml get_data_sources (rrdd_helper.ml to_API_data_source)."""
    out: list[dict[str, object]] = []
    for name, top, value in _host_sources(ctx, host):
        if name.startswith("cpu") and name[3:].isdigit():
            text, units = f"Physical cpu usage for cpu {name[3:]}", "(fraction)"
        elif name.startswith("pif_"):
            dev, _, way = name[4:].rpartition("_")
            text = f"Bytes per second {'received' if way == 'rx' else 'sent'} on physical interface {dev}"
            units = "B/s"
        else:
            text, units = _DS_TEXT.get(name, (name, ""))
        out.append({"name_label": name, "name_description": text, "enabled": True,
                    "standard": True, "units": units, "min": 0.0, "max": top, "value": value})
    return out


@api("host.query_data_source")
def query_data_source(ctx: Context, host: str, data_source: str) -> float:
    for name, _, value in _host_sources(ctx, host):
        if name == data_source:
            return value
    raise internal_error(f'Rrd_interface.Rrdd_error(Datasource_missing("{data_source}"))')


# ---------------------------------------------------------------- metric drift


def drift(sim: Simulator, now: float | None = None) -> None:
    """Host CPUs follow the same load /rrd_updates reports; host_metrics follows
    what the host's domains use."""
    store = sim.store
    for host in list(store.all("host")):
        if not store.exists(host, "host") or not host_live(store, host):
            continue
        loads = rrd.host_cpu_now(store, host, now)
        with store.lock:
            row = store.get(host, "host")
            for cpu_ref in row["host_CPUs"]:
                cpu = store.tables["host_cpu"].get(cpu_ref)
                if cpu is None:
                    continue
                n = int(cpu["number"])
                value = round(loads[n], 4) if n < len(loads) else 0.0
                if cpu["utilisation"] != value:
                    store.update(cpu_ref, {"utilisation": value})
            refresh_host_memory(store, host)
            if store.exists(row["metrics"], "host_metrics"):
                store.update(row["metrics"], {"last_updated": now_datetime()})


TICKS.append(drift)


# ------------------------------------------------------------ hostname, management interface
# xapi_host.ml set_hostname_live, management_reconfigure, get_management_interface


def _hostname_error(hostname: str) -> str | None:
    """xapi_host.ml set_hostname_live's checks, as its HOST_NAME_INVALID reasons:
    letters, digits, dots and hyphens, not starting or ending with a hyphen."""
    if not hostname:
        return "hostname empty"
    if len(hostname) > 255:
        return "hostname is too long"
    ok = all(c.isascii() and (c.isalnum() or c in "-.") for c in hostname)
    if not ok or hostname[0] == "-" or hostname[-1] == "-":
        return "hostname contains invalid characters"
    return None


@api("host.set_hostname_live")
def set_hostname_live(ctx: Context, host: str, hostname: str) -> None:
    store = ctx.store
    with ctx.lock:
        row = store.get(host, "host")
        if row["external_auth_type"] == "AD":
            # the AD plugin cannot follow a hostname change
            raise XapiFailure("AUTH_ALREADY_ENABLED", row["external_auth_type"],
                              row["external_auth_service_name"])
        why = _hostname_error(hostname)
        if why is not None:
            raise XapiFailure("HOST_NAME_INVALID", why)
        store.update(host, {"hostname": hostname})
        # helpers.ml update_domain_zero_name: a default dom0 name follows the hostname
        stem = "Control domain on host: "
        dom0 = store.tables["VM"].get(row["control_domain"])
        if dom0 is not None and str(dom0["name_label"]).startswith(stem):
            store.update(row["control_domain"], {"name_label": stem + hostname})


def _management_pif(store: Store, host: str) -> str | None:
    return next((r for r, p in store.all("PIF").items()
                 if p["host"] == host and p["management"]), None)


@api("host.get_management_interface")
def get_management_interface(ctx: Context, host: str) -> str:
    with ctx.lock:
        ctx.store.get(host, "host")
        pif = _management_pif(ctx.store, host)
    if pif is None:
        raise internal_error("Not_found")
    return pif


@api("host.management_reconfigure")
def management_reconfigure(ctx: Context, pif: str) -> None:
    """Move the host's management interface to ``pif``: its address becomes the
    host's, and the connection moves with it (message_forwarding.ml tolerates the
    connection loss)."""
    store = ctx.store
    with ctx.lock:
        row = store.get(pif, "PIF")
        pool = next(iter(store.all("pool").values()))
        if pool["ha_enabled"]:
            raise XapiFailure("HA_IS_ENABLED")
        host = str(row["host"])
        if row["managed"]:
            # xapi_pif.ml assert_usable_for_management
            if row["bond_slave_of"] != NULL_REF:
                raise XapiFailure("CANNOT_PLUG_BOND_SLAVE", pif)
            if row["primary_address_type"] == "IPv4" and row["ip_configuration_mode"] == "None":
                raise XapiFailure("PIF_HAS_NO_NETWORK_CONFIGURATION", pif)
            if row["primary_address_type"] == "IPv6" and row["ipv6_configuration_mode"] == "None":
                raise XapiFailure("PIF_HAS_NO_V6_NETWORK_CONFIGURATION", pif)
            current = _management_pif(store, host)
            if current is not None and (store.get(current, "PIF")["primary_address_type"]
                                        != row["primary_address_type"]):
                raise XapiFailure("PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE")
        if row["management"]:
            return  # already the management PIF: nothing to do
        # Xapi_network.attach_internal, then update_management_flags
        for ref, p in store.all("PIF").items():
            if p["host"] == host and p["management"]:
                store.update(ref, {"management": False, "disallow_unplug": False})
        changes: dict[str, object] = {"management": True, "disallow_unplug": True,
                                      "currently_attached": True}
        store.update(pif, changes)
        address = str(row["IP"])
    if address:
        ctx.sim.move_host(host, address)
