"""What the block attach tests share: the promise that no disk is ever lost (the
simulator holds, after each test, every VDI it held before), a record of the calls a
run made (from the tasks it left in the simulator), the state a refusal must leave
alone, and the simulator's own ways of making a guest that lacks its PV drivers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from xsctl.sim import Simulator
from xsctl.xapi.block import TAG

GiB = 1024**3


@pytest.fixture(autouse=True)
def new_disks(request: pytest.FixtureRequest) -> Iterator[set[str]]:
    """Autouse where a test uses ``sim``: after the test the simulator holds every VDI
    it held before, plus exactly the disks the test says it made (``new_disks.add``)."""
    made: set[str] = set()
    if "sim" not in request.fixturenames:
        yield made
        return
    sim: Simulator = request.getfixturevalue("sim")
    before = {r: row["name_label"] for r, row in sim.store.all("VDI").items()}
    yield made
    after = {r: row["name_label"] for r, row in sim.store.all("VDI").items()}
    lost = sorted(before[r] for r in before.keys() - after.keys())
    assert not lost, f"disks lost: {lost}"
    extra = after.keys() - before.keys()
    assert extra == made, (f"disks made: {sorted(after[r] for r in extra)}; "
                           f"the test says: {sorted(after.get(r, r) for r in made)}")


def vm_named(sim: Simulator, name: str) -> str:
    refs = [r for r, row in sim.store.all("VM").items()
            if row["name_label"] == name and not row["is_a_template"]
            and not row["is_a_snapshot"]]
    assert len(refs) == 1, (name, refs)
    return refs[0]


def vdi_named(sim: Simulator, name: str) -> str:
    refs = [r for r, row in sim.store.all("VDI").items() if row["name_label"] == name]
    assert len(refs) == 1, (name, refs)
    return refs[0]


def sr_named(sim: Simulator, name: str) -> str:
    refs = [r for r, row in sim.store.all("SR").items() if row["name_label"] == name]
    assert len(refs) == 1, (name, refs)
    return refs[0]


def device(sim: Simulator, vm: str, position: str) -> dict[str, Any] | None:
    """The VM's VBD at ``position`` (its record, with ``ref``), or None."""
    store = sim.store
    for ref in store.get(vm, "VM")["VBDs"]:
        row = store.get(ref, "VBD")
        if row["userdevice"] == position:
            return {"ref": ref, **row}
    return None


def device_at(sim: Simulator, vm: str, position: str) -> dict[str, Any]:
    d = device(sim, vm, position)
    assert d is not None, (vm, position)
    return d


def devices_of(sim: Simulator, vdi: str) -> list[dict[str, Any]]:
    """The VBDs that connect the disk, each with its VM's name."""
    store = sim.store
    return [{"ref": v, "vm": store.get(store.get(v, "VBD")["VM"], "VM")["name_label"],
             **store.get(v, "VBD")} for v in store.get(vdi, "VDI")["VBDs"]]


def inspection_vbds(sim: Simulator) -> list[dict[str, Any]]:
    """The VBDs an inspection attach made (tagged), with their refs."""
    return [{"ref": r, **row} for r, row in sim.store.all("VBD").items()
            if TAG in row["other_config"]]


def new_disk(sim: Simulator, x: Any, name: str, *, size: int = GiB, sr: str = "NFS storage",
             **extra: Any) -> str:
    """A disk made through xapi (VDI.create) for a test; sharable and read_only
    only at creation, as xapi's VDI.set_sharable is the SM's alone."""
    rec = {"name_label": name, "name_description": "", "SR": sr_named(sim, sr),
           "virtual_size": str(size), "type": "user", "sharable": False, "read_only": False,
           "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []}
    rec.update(extra)
    return str(x.xenapi.VDI.create(rec))


def without_pv_drivers(sim: Simulator, vm_name: str) -> str:
    """The running guest reports no PV drivers (its agent says nothing of them and
    nothing of hot-plug), as an HVM guest booted from an install ISO does."""
    vm = vm_named(sim, vm_name)
    sim.set_guest_metrics(vm, PV_drivers_version={}, PV_drivers_detected=False,
                          can_use_hotplug_vbd="unspecified")
    return vm


def state(sim: Simulator) -> dict[str, Any]:
    """What a refused command must leave as it was: every VBD and VDI and what
    they say about attachment, and each VM's devices."""
    store = sim.store
    with store.lock:
        return {
            "VBD": {r: (row["VM"], row["VDI"], row["userdevice"], row["mode"],
                        row["currently_attached"], row["empty"], row["bootable"],
                        dict(row["other_config"]))
                    for r, row in store.all("VBD").items()},
            "VDI": {r: (row["SR"], row["virtual_size"], row["read_only"], row["sharable"],
                        sorted(row["VBDs"]))
                    for r, row in store.all("VDI").items()},
            "VM": {r: (row["power_state"], sorted(row["VBDs"]))
                   for r, row in store.all("VM").items()},
        }


@dataclass
class Calls:
    """The asynchronous calls made while it watched: (method, status, error code),
    in the order they finished. xsctl runs every call that touches a guest's device
    (plug, unplug, insert, eject) through Async.*, so each leaves a task."""

    done: list[tuple[str, str, str]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def __call__(self, cls: str, op: str, ref: str, row: Any) -> None:
        if cls != "task" or row["status"] in ("pending", "cancelling") or ref in self._seen:
            return
        self._seen.add(ref)
        label = str(row["name_label"]).removeprefix("Async.")
        code = str(row["error_info"][0]) if row["error_info"] else ""
        self.done.append((label, str(row["status"]), code))


@contextlib.contextmanager
def calls(sim: Simulator) -> Iterator[Calls]:
    seen = Calls()
    sim.store.watchers.append(seen)
    try:
        yield seen
    finally:
        with contextlib.suppress(ValueError):
            sim.store.watchers.remove(seen)
