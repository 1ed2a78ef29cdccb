"""What xsctl derives about SRs and disks from the cache, checked against changes
made through xapi itself on the simulator."""

from __future__ import annotations

from tests.conftest import wait_for
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi import models, storage
from xsctl.xapi.models import Sr, Vdi
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.base import Call, Plan, Result, run


def _sr(c: object, name: str) -> Sr:
    cache = c.cache  # type: ignore[attr-defined]
    return next(s for s in models.srs(cache) if s.display_name == name)


def _vdi(c: object, name: str) -> Vdi:
    cache = c.cache  # type: ignore[attr-defined]
    return next(v for v in storage.disks(cache) if v.name_label == name)


def test_a_disk_whose_vbd_is_destroyed_is_an_orphan_counted_on_its_sr(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        vm = next(v for v in models.vms(c.cache) if v.power_state == "Halted")
        disk = next(d for d in models.vm_disks(c.cache, vm) if d.vdi is not None
                    and d.vbd.type == "Disk")
        assert disk.vdi is not None
        vdi = disk.vdi
        (use,) = [u for u in storage.uses(c.cache, vdi) if u.vm == vm.ref]
        assert not use.attached and use.mode == "RW"
        assert not storage.is_orphan(c.cache, vdi)
        before = storage.orphan_counts(c.cache).get(vdi.SR, 0)
        c.conn.call("VBD.destroy", disk.vbd.ref)
        wait_for(lambda: storage.orphan_counts(c.cache).get(vdi.SR, 0) == before + 1)
        now = Vdi.from_record(c.cache, vdi.ref, c.cache.get("vdi", vdi.ref) or {})
        assert storage.uses(c.cache, now) == [] and storage.is_orphan(c.cache, now)


def test_isos_and_running_disks_are_not_orphans(sim: Simulator) -> None:
    with connect(sim) as c:
        test = storage.Orphans(c.cache)
        for vdi in storage.disks(c.cache):
            if storage.is_iso_sr(c.cache, vdi.SR):
                assert not test(vdi)
            if storage.attached(c.cache, vdi):
                assert not test(vdi)
                assert all(u.power_state in ("Running", "Paused")
                           for u in storage.attached(c.cache, vdi))


def test_an_sr_unplugged_on_one_host_says_which(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        nfs = _sr(c, "NFS storage")
        assert storage.problems(c.cache, nfs) == []
        host = c.cache.get("host", nfs.pbd_hosts[0]) or {}
        # no VM of that host uses the SR while it is unplugged: shut them first
        for vm in models.vms(c.cache):
            if vm.resident_on == nfs.pbd_hosts[0] and vm.power_state == "Running":
                c.conn.call("VM.hard_shutdown", vm.ref)
        pbd = next(p for p in nfs.PBDs if (c.cache.get("pbd", p) or {}).get("host")
                   == nfs.pbd_hosts[0])
        c.conn.call("PBD.unplug", pbd)
        wait_for(lambda: storage.problems(c.cache, _sr(c, "NFS storage"))
                 == [f"unplugged on {host['name_label']}"])


def test_read_only_libraries_are_never_nearly_full(sim: Simulator) -> None:
    with connect(sim) as c:
        tools = next(s for s in models.srs(c.cache) if s.is_tools_sr)
        assert tools.usage >= storage.NEARLY_FULL
        assert storage.problems(c.cache, tools) == []


def test_local_srs_and_their_disks_are_named_by_host(sim: Simulator) -> None:
    with connect(sim) as c:
        names = {s.display_name for s in models.srs(c.cache)}
        assert {"Local storage on xcp-ng-01", "Local storage on xcp-ng-02"} <= names
        local = [v for v in storage.disks(c.cache) if v.sr_name.startswith("Local storage on ")]
        assert local


def test_plan_results_reach_inside_records(sim: Simulator) -> None:
    """A record argument may name what an earlier step made (PBD.create names the SR
    that SR.introduce made; here VBD.create names a new disk)."""
    with connect(sim) as c:
        nfs = _sr(c, "NFS storage")
        vm = next(v for v in models.vms(c.cache) if v.power_state == "Halted")
        plan = Plan(
            title="a disk, then a drive for it", action="test", targets=(),
            calls=(Call("VDI.create", ({"SR": nfs.ref, "name_label": "scratch",
                                        "virtual_size": str(2**30), "type": "user",
                                        "sharable": False, "read_only": False,
                                        "other_config": {}},)),
                   Call("VBD.create", ({"VM": vm.ref, "VDI": Result(0), "userdevice": "7",
                                        "bootable": False, "mode": "RW", "type": "Disk",
                                        "empty": False, "other_config": {},
                                        "qos_algorithm_type": "", "qos_algorithm_params": {}},)),
                   Call("VBD.get_VDI", (Result(1),))),
            xe=())
        results = run(c.conn, plan)
        assert results[2] == results[0]
        assert "<result of step 1>" in plan.steps()[1]


def test_device_config_pairs_read_as_xe_writes_them() -> None:
    p = catalogue.Param("device_config", catalogue.ParamKind.PAIRS, "Device config",
                        ("--device-config",), "")
    assert p.parse_pairs(["server=10.0.0.5", "device-config:serverpath=/export/xen",
                          "options=ro,vers=4"]) == {
        "server": "10.0.0.5", "serverpath": "/export/xen", "options": "ro,vers=4"}
    for bad in (["server"], ["=x"]):
        try:
            p.parse_pairs(bad)
        except catalogue.UsageError as e:
            assert "key=value" in str(e)
        else:
            raise AssertionError(bad)


def _index_agrees(c: object) -> storage.DiskIndex:
    """A DiskIndex kept by the cache's changes holds what a fresh one finds."""
    cache = c.cache  # type: ignore[attr-defined]
    fresh = storage.DiskIndex(cache)
    fresh.load()
    return fresh


def test_the_disk_index_follows_changes_as_a_fresh_one_would_find_them(sim: Simulator) -> None:
    with connect(sim) as c:
        index = storage.DiskIndex(c.cache)
        index.load()
        touched: list[tuple[set[str], set[str]]] = []
        c.cache.subscribe(lambda changes: touched.append(index.apply(changes.items)))
        c.cache.start()
        test = storage.Orphans(c.cache)
        assert index.orphans == {v.ref for v in storage.disks(c.cache) if test(v)}
        assert sum(n for n, _ in index.counts.values()) == len(storage.disks(c.cache))
        vm = next(v for v in models.vms(c.cache) if v.power_state == "Halted")
        disk = next(d for d in models.vm_disks(c.cache, vm) if d.vdi is not None
                    and d.vbd.type == "Disk")
        assert disk.vdi is not None
        sr = disk.vdi.SR
        before = index.orphans_on(sr), index.disks(sr)
        c.conn.call("VBD.destroy", disk.vbd.ref)
        wait_for(lambda: disk.vdi is not None and disk.vdi.ref in index.orphans)
        assert (index.orphans_on(sr), index.disks(sr)) == (before[0] + 1, before[1])
        assert any(disk.vdi.ref in d and sr in s for d, s in touched)
        # a new disk on the SR: counted, and an orphan until a VM uses it
        new = c.conn.call("VDI.create", {"SR": sr, "name_label": "scratch",
                                         "virtual_size": str(2**30), "type": "user",
                                         "sharable": False, "read_only": False,
                                         "other_config": {}})
        wait_for(lambda: index.disks(sr) == before[1] + 1)
        assert new in index.orphans
        c.conn.call("VBD.create", {"VM": vm.ref, "VDI": new, "userdevice": "7",
                                   "bootable": False, "mode": "RW", "type": "Disk",
                                   "empty": False, "other_config": {},
                                   "qos_algorithm_type": "", "qos_algorithm_params": {}})
        wait_for(lambda: new not in index.orphans)
        # the VM goes, with its VBDs: its disks are orphans now
        c.conn.call("VM.destroy", vm.ref)
        wait_for(lambda: new in index.orphans)
        fresh = _index_agrees(c)
        assert (index.orphans, index.sr_of) == (fresh.orphans, fresh.sr_of)
        assert {k: v for k, v in index.counts.items() if v != [0, 0]} == fresh.counts
        c.conn.call("VDI.destroy", new)
        wait_for(lambda: new not in index.sr_of)
        assert index.disks(sr) == fresh.disks(sr) - 1


def test_secrets_in_a_device_config_are_masked() -> None:
    shown = dict(storage.masked_config({
        "server": "filer", "cifspassword": "hunter2", "chappassword": "s3cret",
        "incoming_chappassword": "x", "password_secret": "uuid", "username": "admin",
        "CHAPPassword": "y"}))
    assert shown["server"] == "filer" and shown["username"] == "admin"
    for key in ("cifspassword", "chappassword", "incoming_chappassword", "password_secret",
                "CHAPPassword"):
        assert shown[key] == storage.MASK
    assert "hunter2" not in str(shown) and "s3cret" not in str(shown)
