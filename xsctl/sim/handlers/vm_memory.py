"""VM memory: the sizes xapi computes (ocaml/xapi-idl/memory/memory.ml overheads,
memory_check.ml start and free memory), the constraints a VM's memory settings obey
(vm_memory_constraints.ml, xapi_vm_memory_constraints.ml), and the memory and vCPU
setters of xapi_vm.ml with their message_forwarding.ml checks.

Written from xapi's own code (xapi-project/xen-api), never copied.
"""

from __future__ import annotations

from typing import NamedTuple

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.vm_lifecycle import get_vm, is_true, pool_row, vm_operation
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.wire import Row, ocaml_float

MiB = 1024**2


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
    restrictions: dict[str, str] = pool_row(store)["restrictions"]
    return restrictions.get("restrict_dmc") != "true"


def _nested_virt(store: Store, row: Row) -> bool:
    metrics = store.tables["VM_metrics"].get(row["metrics"])
    if metrics is not None:
        return bool(metrics["nested_virt"])
    return is_true(row["platform"].get("nested-virt"))


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
    get_vm(ctx, self)
    with vm_operation(ctx, self, "changing_memory_limits"):
        _set_limits(ctx, self, Constraints(static_min, dynamic_min, dynamic_min,
                                           dynamic_max, static_max))


@api("VM.set_memory")
def set_memory(ctx: Context, self: str, value: int) -> None:
    """set_memory_limits(static_min, value, value, value)."""
    get_vm(ctx, self)
    with vm_operation(ctx, self, "changing_memory_limits"):
        static_min = int(get_vm(ctx, self)["memory_static_min"])
        _set_limits(ctx, self, Constraints(static_min, value, value, value, value))


def _static_range(ctx: Context, vm: str, lo: int | None, hi: int | None) -> None:
    """Xapi_vm.set_memory_static_range (static_min and static_max setters turn into it
    in the message forwarding layer, reading the other bound first)."""
    store = ctx.store
    row = get_vm(ctx, vm)
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
    row = get_vm(ctx, vm)
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
    get_vm(ctx, self)
    with vm_operation(ctx, self, "changing_memory_live"):
        pass


@api("VM.wait_memory_target_live")
def wait_memory_target_live(ctx: Context, self: str) -> None:
    """The balloon driver in the simulator reaches its target at once."""
    get_vm(ctx, self)
    with vm_operation(ctx, self, "awaiting_memory_live"):
        pass


VCPU_RULE = "VCPU values must satisfy: 0 < VCPUs_at_startup ≤ VCPUs_max"


@api("VM.set_VCPUs_max")
def set_VCPUs_max(ctx: Context, self: str, value: int) -> None:
    """Xapi_vm.set_VCPUs_max behind the changing_VCPUs check (halted, or a running
    control domain other than dom0)."""
    store = ctx.store
    get_vm(ctx, self)
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
        row = get_vm(ctx, self)
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
    get_vm(ctx, self)
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
    return memory_overhead(get_vm(ctx, vm))


@api("VM.set_HVM_shadow_multiplier")
def set_HVM_shadow_multiplier(ctx: Context, self: str, value: float) -> None:
    store = ctx.store
    get_vm(ctx, self)
    with vm_operation(ctx, self, "changing_shadow_memory"), ctx.lock:
        if value < 1.0:
            raise XapiFailure("INVALID_VALUE", "multiplier", ocaml_float(value))
        row = store.update(self, {"HVM_shadow_multiplier": value})
        store.update(self, {"memory_overhead": memory_overhead(row)})


@api("VM.maximise_memory")
def maximise_memory(ctx: Context, self: str, total: int, approximate: bool) -> int:
    """Xapi_vm.maximise_memory: the largest static_max whose start footprint (with
    the Static_max policy; 64 vCPUs when ``approximate``) fits in ``total``."""
    row = dict(get_vm(ctx, self))
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
