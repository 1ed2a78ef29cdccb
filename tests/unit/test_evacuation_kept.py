"""The evacuation plan is worked out once while nothing it reads changes: entering
maintenance mode asks for it twice (the VMs to mark, then the plan), which at 10,000
VMs cost the UI thread most of a second each time. A change in the pool, seen by the
cache, gives a new answer; a caller narrowing its copy does not touch the kept one."""

from __future__ import annotations

from tests.conftest import wait_for, xenapi_session
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.models import Host, hosts
from xsctl.xapi.ops.host import evacuation
from xsctl.xapi.ops.resolve import resolve_host


def _host(c: object, name: str) -> Host:
    from xsctl.xapi.client import Client

    assert isinstance(c, Client)
    h = Host.get(c.cache, resolve_host(c.cache, name))
    assert h is not None
    return h


def test_kept_while_nothing_changes_and_worked_out_again_after(sim: Simulator) -> None:
    with connect(sim) as c:
        c.cache.start()
        host = _host(c, "xcp-ng-01")
        first = evacuation(c.cache, host)
        assert first.moves, "the demo's first host has VMs that can move"
        first.blocked = {}  # what a caller that narrows its copy does
        first.moves.clear()
        again = evacuation(c.cache, host)
        assert again.moves and again.moves is not first.moves
        moved = sorted(again.moves)[0]

        # the VM stops: the cache sees it, and the next answer no longer moves it
        x = xenapi_session(sim)
        try:
            x.xenapi.VM.hard_shutdown(moved)
            wait_for(lambda: moved not in _host(c, "xcp-ng-01").resident_VMs)
            host = _host(c, "xcp-ng-01")
            assert moved not in evacuation(c.cache, host).moves
            # a change elsewhere (the host's own record the same): no host left to take them
            for other in x.xenapi.host.get_all():
                if other != host.ref:
                    x.xenapi.host.disable(other)
            wait_for(lambda: not any(h.enabled for h in hosts(c.cache) if h.ref != host.ref))
        finally:
            x.xenapi.session.logout()
        assert _host(c, "xcp-ng-01").resident_VMs == host.resident_VMs
        ev = evacuation(c.cache, host)
        assert not ev.moves
        assert set(ev.blocked.values()) == {"no other host is enabled to take it"}

        # another client's cache never gets this one's answer
        with connect(sim) as other:
            mine = evacuation(c.cache, host)
            theirs = evacuation(other.cache, _host(other, "xcp-ng-01"))
            assert theirs.moves == mine.moves and theirs is not mine


def test_a_big_host_plan_names_some_moves_and_counts_the_rest() -> None:
    """A host of hundreds of VMs: the plan names MOVES_SHOWN of the moves and counts
    the others, rather than a note of thousands of names."""
    from datetime import UTC, datetime

    from tests.conftest import make_sim
    from xsctl.xapi.ops import catalogue
    from xsctl.xapi.ops.catalogue import Context
    from xsctl.xapi.ops.host import MOVES_SHOWN, SHUT_DOWN

    sim = make_sim(vms=400)
    try:
        with connect(sim) as c:
            host = max(hosts(c.cache), key=lambda h: len(h.resident_VMs))
            ctx = Context(c.cache, datetime.now(UTC))
            ev = evacuation(c.cache, host)
            assert len(ev.moves) > MOVES_SHOWN
            blocked = frozenset(ch.value for ch in catalogue.choices(SHUT_DOWN, ctx, host)
                                if ch.reason is None)
            plan = catalogue.prepare(catalogue.get("host.enter_maintenance"), ctx, host,
                                     {"shut_down": blocked})
            (note,) = [n for n in plan.notes if n.startswith("Live-migrated")]
            assert note.count(" → ") == MOVES_SHOWN
            assert note.endswith(f"; and {len(ev.moves) - MOVES_SHOWN} more.")
    finally:
        sim.stop()
