"""VM operations validate against the cache before anything is sent."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.errors import XapiError
from xsctl.xapi.ops import vm as vmops
from xsctl.xapi.ops.resolve import resolve_host


def test_migrate_to_a_host_that_cannot_reach_the_disks_is_refused_locally(sim: Simulator) -> None:
    """dev-sandbox lives on xcp-ng-03's local storage; xapi would answer VM_REQUIRES_SR
    (xapi_vm_helpers.ml assert_can_see_SRs); the plan says so before sending."""
    with connect(sim) as c:
        c.run(vmops.start(c.cache, vmops.vm_of(c.cache, "dev-sandbox")))
        c.cache.start()
        wait_for(lambda: "pool_migrate" in (vmops.vm_of(c.cache, "dev-sandbox").allowed_operations))
        vm = vmops.vm_of(c.cache, "dev-sandbox")
        here = c.cache.get("host", vm.resident_on)
        assert here is not None and here["name_label"] == "xcp-ng-03"
        tasks = len(sim.store.all("task"))
        with pytest.raises(XapiError) as e:
            vmops.migrate(c.cache, vm, resolve_host(c.cache, "xcp-ng-01"))
        assert e.value.code == "VM_REQUIRES_SR"
        local = c.cache.get("sr", e.value.params[1])
        assert local is not None and local["type"] == "lvm" and not local["shared"]
        assert len(sim.store.all("task")) == tasks
        # a VM on shared storage can go
        plan = vmops.migrate(c.cache, vmops.vm_of(c.cache, "web-01"),
                             resolve_host(c.cache, "xcp-ng-02"))
        assert plan.calls[0].method == "VM.pool_migrate"
