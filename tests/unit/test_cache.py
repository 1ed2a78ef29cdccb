"""The live cache: start-up, event-driven updates, coalescing, resync after an xapi
restart or a master change, and prompt shutdown."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.conftest import make_sim, wait_for, xenapi_session
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.cache import Cache, Changes
from xsctl.xapi.models import Vm


def _ref(sim: Simulator, name: str) -> str:
    return next(r for r, v in sim.store.all("VM").items() if v["name_label"] == name)


def test_both_start_up_strategies_read_the_same(sim: Simulator) -> None:
    with connect(sim, load=False) as c:
        by_records = Cache(c.conn, strategy="records")
        by_events = Cache(c.conn, strategy="event")
        by_records.load()
        by_events.load()
        for cls in by_records.classes:
            if cls in ("task", "session"):
                continue
            assert by_records.all(cls).keys() == by_events.all(cls).keys(), cls
        assert len(by_records.all("vm")) == len(sim.store.all("VM"))


def test_the_first_load_tells_listeners_every_object_is_new(sim: Simulator) -> None:
    with connect(sim, load=False) as c:
        got: list[Changes] = []
        c.cache.subscribe(got.append)
        changes = c.cache.load()
        assert got == [changes] and changes.resync and changes
        everything = {(cls, ref) for cls in c.cache.classes for ref in c.cache.all(cls)}
        assert len(everything) > 100
        assert {(ch.cls, ch.ref) for ch in changes.items} == everything
        assert len(changes.items) == len(everything)
        assert all(ch.op == "add" and ch.old is None and ch.new is c.cache.get(ch.cls, ch.ref)
                   for ch in changes.items)
        # read again, with one VM renamed meanwhile: only that difference
        vm = _ref(sim, "web-staging")
        sim.store.update(vm, {"name_label": "renamed"})
        again = c.cache.load()
        assert again.resync
        vms = [ch for ch in again.items if ch.cls == "vm"]
        assert [(ch.op, ch.ref) for ch in vms] == [("mod", vm)]
        assert vms[0].changed_fields()["name_label"] == ("web-staging", "renamed")


def test_changes_reach_listeners_without_polling(sim: Simulator) -> None:
    with connect(sim, load=False) as c:
        cache = Cache(c.conn, ["VM"])
        got: list[Changes] = []
        cache.subscribe(got.append)
        cache.start()
        # no VM changed: the cache's one event.from waits on the server, for long
        [left] = wait_for(sim.waiting_event_calls)
        assert left > 10 and cache.batches == 0
        x = xenapi_session(sim)
        try:
            vm = _ref(sim, "web-staging")
            x.xenapi.VM.set_name_label(vm, "web-staging-2")
            wait_for(lambda: cache.get("vm", vm)["name_label"] == "web-staging-2")
            mods = [ch for b in got for ch in b.items if ch.ref == vm]
            assert mods and mods[-1].op == "mod"
            assert mods[-1].changed_fields()["name_label"] == ("web-staging", "web-staging-2")
        finally:
            x.xenapi.session.logout()
            cache.stop()


def test_several_changes_coalesce_and_backrefs_follow(sim: Simulator) -> None:
    with connect(sim) as c:
        cache = c.cache
        got: list[Changes] = []
        cache.subscribe(got.append)
        cache.start()
        vm = _ref(sim, "web-staging")
        with sim.store.lock:  # one burst, as xapi batches a busy second
            for i in range(5):
                sim.store.update(vm, {"name_description": f"step {i}"})
        wait_for(lambda: cache.get("vm", vm)["name_description"] == "step 4")
        vm_changes = [ch for b in got for ch in b.items if ch.ref == vm]
        assert len(vm_changes) == 1  # five writes, one event with the last snapshot
        # a new VBD: the VBD appears and the VM's VBDs set follows
        sr = sim.store.get(sim.store.all("pool")[next(iter(sim.store.all("pool")))]["default_SR"])
        assert sr
        cd_before = list(cache.get("vm", vm)["VBDs"])
        new = sim.store.create("VBD", {"VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "5",
                                       "type": "CD", "mode": "RO", "empty": True})
        wait_for(lambda: cache.get("vbd", new) is not None and new in cache.get("vm", vm)["VBDs"])
        assert len(cache.get("vm", vm)["VBDs"]) == len(cd_before) + 1
        sim.store.destroy(new)
        wait_for(lambda: cache.get("vbd", new) is None and new not in cache.get("vm", vm)["VBDs"])


def test_resynchronises_after_xapi_restart(sim: Simulator) -> None:
    """After a restart every session is invalid and xapi no longer knows what was
    deleted meanwhile: the cache logs in again and re-reads everything."""
    with connect(sim) as c:
        cache = c.cache
        got: list[Changes] = []
        health: list[bool] = []
        cache.subscribe(got.append)
        cache.on_health(lambda fresh, why: health.append(fresh))
        cache.start()
        gone = _ref(sim, "[lab] test-vm")
        renamed = _ref(sim, "dev-sandbox")

        def while_down(s: Simulator) -> None:
            s.store.destroy(gone)
            s.store.update(renamed, {"name_label": "dev-sandbox-renamed"})

        sim.restart(downtime=0.5, while_down=while_down)
        wait_for(lambda: cache.get("vm", gone) is None, timeout=15)
        wait_for(lambda: cache.get("vm", renamed)["name_label"] == "dev-sandbox-renamed")
        assert cache.fresh
        dels = [ch for b in got for ch in b.items if ch.op == "del" and ch.ref == gone]
        assert dels and dels[0].old is not None and dels[0].old["name_label"] == "[lab] test-vm"
        assert any(b.resync for b in got)
        # events flow again after the resync
        sim.store.update(renamed, {"name_label": "back"})
        wait_for(lambda: cache.get("vm", renamed)["name_label"] == "back")
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0


def test_follows_a_master_change_while_watching(sim: Simulator) -> None:
    with connect(sim) as c:
        cache = c.cache
        cache.start()
        new_master = next(h for h in sim.store.all("host") if h != sim.master_ref())
        sim.change_master(new_master)
        vm = _ref(sim, "web-staging")
        sim.store.update(vm, {"name_label": "after-master-change"})
        wait_for(lambda: cache.get("vm", vm)["name_label"] == "after-master-change", timeout=15)
        assert c.conn.endpoint.host == sim.master_address()
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0


def test_stale_while_disconnected_then_fresh(sim: Simulator) -> None:
    with connect(sim, timeout=3) as c:
        cache = c.cache
        states: list[tuple[bool, str]] = []
        cache.on_health(lambda f, why: states.append((f, why)))
        cache.start()
        sim.faults.down = True
        for lsts in sim.listeners.values():
            for lst in lsts:
                lst.server.drop_all()
        wait_for(lambda: not cache.fresh, timeout=10)
        assert cache.stale_since is not None
        sim.faults.down = False
        wait_for(lambda: cache.fresh, timeout=15)
        assert states[-1][0] is True


def test_stop_interrupts_the_long_poll(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        wait_for(sim.waiting_event_calls)  # blocked in event.from
        t = time.monotonic()
        c.cache.stop()
        assert time.monotonic() - t < 2.0
        assert not c.cache.running
        assert c.conn.call("pool.get_all")  # the connection is still usable


def test_models_read_both_wire_forms(sim: Simulator) -> None:
    with connect(sim) as j, connect(sim, transport="xml") as x:
        ref = _ref(sim, "db-01")
        vm = Vm.get(j.cache, ref)
        assert vm == Vm.get(x.cache, ref)
        assert vm is not None
        assert vm.power_state == "Running" and vm.host_name.startswith("xcp-ng-")
        assert vm.memory == 16 * 1024**3 and vm.vcpus == 8
        assert vm.ips[0].startswith("10.0.") and vm.os_version.startswith("Rocky")
        assert len(vm.snapshots) == 2 and "prod" in vm.tags


@pytest.mark.parametrize("text,expected", [
    ("2G", 2 * 1024**3), ("2048M", 2 * 1024**3), ("2 GiB", 2 * 1024**3),
    ("1.5G", int(1.5 * 1024**3)), ("512", 512 * 1024**2), ("1T", 1024**4),
])
def test_parse_size(text: str, expected: int) -> None:
    from xsctl.xapi.models import parse_size

    assert parse_size(text) == expected


def test_parse_size_rejects_garbage() -> None:
    from xsctl.xapi.errors import UsageError
    from xsctl.xapi.models import parse_size

    for bad in ("", "lots", "2X", "-1G"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_guest_ips_order() -> None:
    from xsctl.xapi.models import guest_ips

    nets = {"1/ip": "192.168.1.5", "0/ipv6/0": "fe80::1", "0/ip": "10.0.0.5",
            "0/ipv4/0": "10.0.0.5", "1/ipv4/0": "192.168.1.5"}
    assert guest_ips(nets) == ("10.0.0.5", "192.168.1.5", "fe80::1")


def test_event_listener_errors_do_not_kill_the_thread(sim: Simulator) -> None:
    with connect(sim) as c:
        cache = c.cache
        seen = threading.Event()

        def bad(_: Any) -> None:
            raise RuntimeError("listener bug")

        cache.subscribe(bad)
        cache.subscribe(lambda ch: seen.set())
        cache.start()
        vm = _ref(sim, "web-staging")
        sim.store.update(vm, {"name_label": "x"})
        assert seen.wait(5)
        sim.store.update(vm, {"name_label": "y"})
        wait_for(lambda: cache.get("vm", vm)["name_label"] == "y")


def test_many_vms_load(sim: Simulator) -> None:
    big = make_sim(vms=300)
    try:
        with connect(big) as c:
            assert len([r for r in c.cache.all("vm").values()
                        if not r["is_a_template"] and not r["is_control_domain"]]) == 300
    finally:
        big.stop()


def test_versions_follow_the_classes_that_change() -> None:
    """The VM view skips a rebuild while the versions of what its rows are built from
    have not moved; a change elsewhere (the pool row event.inject touches) must not
    move them."""
    cache = Cache(None, ["pool", "VM", "host"])  # type: ignore[arg-type]
    cache.apply([{"class": "VM", "ref": "OpaqueRef:v", "operation": "add",
                  "snapshot": {"name_label": "a"}}])
    vm, pool = cache.version("vm"), cache.version("pool")
    cache.apply([{"class": "pool", "ref": "OpaqueRef:p", "operation": "mod",
                  "snapshot": {"name_label": "p"}}])
    assert cache.version("vm") == vm and cache.version("pool") > pool
    assert cache.version("VM", "host") == vm
    cache.apply([{"class": "VM", "ref": "OpaqueRef:v", "operation": "del"}])
    assert cache.version("vm") > vm


def test_load_leaves_the_collector_on(sim: Simulator) -> None:
    """The load pauses the cyclic collector and freezes what it read; whatever
    happens, collection is on afterwards, and stopping the cache unfreezes."""
    import gc

    with connect(sim, load=False) as c:
        c.conn.call = _fail  # type: ignore[method-assign]
        with pytest.raises(RuntimeError):
            c.cache.load()
        assert gc.isenabled()
    with connect(sim) as c:
        assert gc.isenabled() and gc.get_freeze_count() > 0
        c.cache.stop()
        assert gc.get_freeze_count() == 0


def _fail(*_: Any, **__: Any) -> Any:
    raise RuntimeError("no answer")


@pytest.mark.parametrize("text", [
    "20241130T12:34:56Z", "2024-11-30T12:34:56Z", "20241130T12:34:56.5Z",
    "20241130T12:34:56", "19700101T00:00:00Z", "20241340T12:00:00Z", "garbage", "",
    "2024W011T12:34:56Z", "20241130T24:00:00Z", "20241130T12:34:5xZ", "20240229T12:00:00Z",
    "20230229T12:00:00Z",
])
def test_parse_time_fast_path_agrees_with_strptime(text: str) -> None:
    from datetime import UTC, datetime

    from xsctl.xapi.models import parse_time

    expected = None
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S.%fZ",
                "%Y-%m-%dT%H:%M:%S.%fZ", "%Y%m%dT%H:%M:%S"):
        try:
            dt = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        expected = None if dt.year <= 1970 else dt
        break
    assert parse_time(text) == expected
