"""A simulator's state lives on its Simulator: running one leaves no trace in the
modules of ``xsctl.sim`` (no table keyed by the store, no process-wide memo), so the
simulators a test run makes share nothing and each one's state goes with it."""

from __future__ import annotations

import importlib
import itertools
import pkgutil
import sys
import types
import weakref
from collections import OrderedDict, deque
from typing import Any

import xsctl.sim
from tests.conftest import make_sim, vm_ref, xenapi_session
from tests.sim.test_host_support import fail, get
from xsctl.sim import Simulator

# the packaged datamodel file, read and parsed once: constant
DATAMODEL_CACHES = frozenset({"xsctl.sim.datamodel.load", "xsctl.sim.datamodel.parse_type"})
CONTAINERS = (dict, list, set, deque, OrderedDict, weakref.WeakKeyDictionary,
              weakref.WeakValueDictionary)


def sim_modules() -> list[Any]:
    for info in pkgutil.walk_packages(xsctl.sim.__path__, "xsctl.sim."):
        importlib.import_module(info.name)
    return [m for name, m in sorted(sys.modules.items())
            if name == "xsctl.sim" or name.startswith("xsctl.sim.")]


def module_state() -> dict[str, Any]:
    """What can change in each module's namespace: its containers (by content), the
    memos of its functions (by size), its counters, and which object each other
    global names."""
    out: dict[str, Any] = {}
    for mod in sim_modules():
        for name, value in vars(mod).items():
            if name.startswith("__"):
                continue
            if getattr(value, "__module__", mod.__name__) != mod.__name__ and callable(value):
                continue  # imported from elsewhere: seen in its own module
            key = f"{mod.__name__}.{name}"
            if isinstance(value, (weakref.WeakKeyDictionary, weakref.WeakValueDictionary)):
                out[key] = len(value)
            elif isinstance(value, CONTAINERS):
                out[key] = (len(value), repr(value) if len(value) < 10_000 else None)
            elif isinstance(value, itertools.count):
                out[key] = repr(value)
            elif callable(getattr(value, "cache_info", None)):
                if key not in DATAMODEL_CACHES:
                    out[key] = value.cache_info().currsize
            elif not isinstance(value, (type, types.ModuleType, types.FunctionType)):
                out[key] = id(value)  # a global bound again
    return out


def workload(sim: Simulator, blocked: str) -> None:
    """Touch every part of the simulator that keeps state of its own: domains and
    allowed operations (VM.start), alerts, RRDs, an export (ids, checksums, disk
    data), storage (SR.scan, VDI.forget), event.next, a host disabled until reboot."""
    x = xenapi_session(sim)
    try:
        vm = vm_ref(x, "backup-01")
        x.xenapi.VM.add_to_blocked_operations(vm, blocked, "not today")
        x.xenapi.VM.start(vm, False, False)
        x.xenapi.VM.hard_shutdown(vm)
        host = x.xenapi.host.get_all()[0]
        uuid = x.xenapi.host.get_uuid(host)
        x.xenapi.message.create("ALARM", "1", "Host", uuid, "body")
        assert get(sim, f"/rrd_updates?session_id={x.handle}&start=-10&host=true").status == 200
        assert get(sim, f"/export?session_id={x.handle}&ref={vm}").status == 200
        sr = next(r for r, rec in x.xenapi.SR.get_all_records().items()
                  if rec["type"] == "nfs")
        x.xenapi.SR.scan(sr)
        vdi = next(v for v in x.xenapi.SR.get_VDIs(sr) if not x.xenapi.VDI.get_VBDs(v))
        x.xenapi.VDI.forget(vdi)
        x.xenapi.event.register(["vm"])
        x.xenapi.VM.set_name_description(vm, "touched")
        assert x.xenapi.event.next()
        x.xenapi.event.unregister(["vm"])
        member = next(h for h in x.xenapi.host.get_all() if h != sim.master_ref())
        for v in x.xenapi.host.get_resident_VMs(member):
            if not x.xenapi.VM.get_is_control_domain(v):
                x.xenapi.VM.hard_shutdown(v)
        x.xenapi.host.disable(member)
        x.xenapi.host.shutdown(member)
        assert fail(x.xenapi.host.enable, member) == ["HOST_DISABLED_UNTIL_REBOOT", member]
    finally:
        x.xenapi.session.logout()


def test_running_simulators_leaves_module_state_alone() -> None:
    warm = make_sim()
    try:
        workload(warm, "clone")  # imports, the datamodel and its types load once
    finally:
        warm.stop()
    before = module_state()
    # other seeds (other uuids) and other facts, or a memo would only hit
    for seed, blocked in ((2, "copy"), (3, "snapshot")):
        s = make_sim(seed=seed)
        try:
            workload(s, blocked)
            after = module_state()
        finally:
            s.stop()
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k))
        assert changed == [], f"module state that a simulator changed: {changed}"
