"""Sessions expire as xapi's session timeout makes them (Db_gc_util.timeout_sessions,
Xapi_session.destroy_db_session): the next call with the session fails with
SESSION_INVALID [session], over both protocols, and so does an event.from waiting with
it. Then what a client does with it: xsctl's Connection logs in again, exactly once,
leaves no session behind, and its cache reads everything afresh."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.cli.helpers import xsctl
from tests.conftest import make_sim, wait_for
from tests.sim.wirehelp import PROTOCOLS, Wire
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi.cache import Changes
from xsctl.xapi.session import Health


@pytest.fixture(params=PROTOCOLS)
def wire(sim: Simulator, request: pytest.FixtureRequest) -> Iterator[Wire]:
    """Calls exactly as sent, without XenAPI's own re-login on SESSION_INVALID."""
    w = Wire(sim, request.param)
    try:
        yield w
    finally:
        w.close()


def test_an_expired_session_is_invalid(sim: Simulator, wire: Wire) -> None:
    session, other = wire.login(sim), wire.login(sim)
    assert sim.expire_sessions(session) == [session]
    assert wire.fails("pool.get_all", session) == ["SESSION_INVALID", session]
    assert wire.fails("session.logout", session) == ["SESSION_INVALID", session]
    assert wire.call("pool.get_all", other)  # the others are untouched
    assert sim.expire_sessions() == [other] and sim.live_sessions() == 0
    assert wire.fails("VM.get_all", other) == ["SESSION_INVALID", other]


def test_a_waiting_event_from_ends_with_session_invalid(sim: Simulator, wire: Wire) -> None:
    session = wire.login(sim)

    def expire_once_it_waits() -> None:
        wait_for(sim.waiting_event_calls)
        sim.expire_sessions(session)

    token = wire.call("event.from", session, ["vm"], "", 0.0)["token"]
    t = threading.Thread(target=expire_once_it_waits, daemon=True)
    t.start()
    assert wire.fails("event.from", session, ["vm"], token, 30.0) == [
        "SESSION_INVALID", session]
    t.join(5)
    assert sim.waiting_event_calls() == []


def test_session_timeout(wire: Wire) -> None:
    """With a session timeout, a session unused for longer expires: its next call
    finds it gone, and the periodic sweep removes it without one. A timeout of 0
    expires a session at its first use after login."""
    s = make_sim(session_timeout=0.0)
    w = Wire(s, wire.protocol)
    try:
        session = w.login(s)
        assert w.fails("pool.get_all", session) == ["SESSION_INVALID", session]
        assert s.live_sessions() == 0
        session = w.login(s)
        assert s.expire_idle_sessions() == [session] and s.live_sessions() == 0
    finally:
        w.close()
        s.stop()
    s = make_sim(session_timeout=3600.0)
    w = Wire(s, wire.protocol)
    try:
        session = w.login(s)
        assert w.call("pool.get_all", session) and s.expire_idle_sessions() == []
        w.call("session.logout", session)
    finally:
        w.close()
        s.stop()


def test_sim_control_expire(sim: Simulator, wire: Wire) -> None:
    x, y = wire.login(sim), wire.login(sim)
    control = sim.info()["control"]
    run = xsctl("sim-control", control, sim.control_token, "expire", x)
    assert (run.code, run.err) == (0, "") and run.json() == [x]
    assert wire.fails("pool.get_all", x) == ["SESSION_INVALID", x]
    run = xsctl("sim-control", control, sim.control_token, "expire", x)
    assert run.code == 2 and run.err.startswith("xsctl: no session") and "Traceback" not in run.err
    run = xsctl("sim-control", control, sim.control_token, "expire")
    assert (run.code, run.json()) == (0, [y]) and sim.live_sessions() == 0


# ---------------------------------------------------------------- the client


def test_client_logs_in_again_after_session_invalid_and_resyncs(sim: Simulator) -> None:
    """Connection.call meets SESSION_INVALID, logs in again (a new session, the
    generation moves on by one) and retries; the cache sees the new generation and
    reads everything again; the expired session is gone and no other is left."""
    states: list[tuple[Health, str]] = []
    with connect(sim) as c:
        conn, cache = c.conn, c.cache
        conn.on_state(lambda h, why: states.append((h, why)))
        batches: list[Changes] = []
        cache.subscribe(batches.append)
        cache.start()
        wait_for(sim.waiting_event_calls)  # the cache's long-poll waits with the session
        old, generation = conn.session, conn.generation
        assert list(sim.store.all("session")) == [old]

        assert sim.expire_sessions() == [old]  # the long-poll ends with SESSION_INVALID
        # the generation moves on at the login, the health once the retried call is
        # answered: wait for both
        wait_for(lambda: conn.generation == generation + 1
                 and bool(states) and states[-1][0] is Health.CONNECTED)
        assert conn.session != old and list(sim.store.all("session")) == [conn.session]
        assert (Health.RECONNECTING, "session expired or xapi restarted") in states

        vm = next(r for r, v in sim.store.all("VM").items() if v["name_label"] == "web-staging")
        resyncs = sum(b.resync for b in batches)
        sim.store.update(vm, {"name_label": "renamed after the expiry"})
        wait_for(lambda: cache.get("vm", vm)["name_label"] == "renamed after the expiry")
        assert sum(b.resync for b in batches) == resyncs + 1  # read afresh, once

        # a plain call meets it as well, and goes through after one re-login
        assert sim.expire_sessions() == [conn.session]
        assert conn.call("VM.get_name_label", vm) == "renamed after the expiry"
        assert conn.generation == generation + 2
        assert list(sim.store.all("session")) == [conn.session]
    assert sim.live_sessions() == 0


@pytest.mark.parametrize("transport", ["json", "xml"])
def test_a_call_after_expiry_goes_through(sim: Simulator, transport: str) -> None:
    with connect(sim, load=False, transport=transport) as c:
        generation = c.conn.generation
        sim.expire_sessions()
        assert c.conn.call("pool.get_all")
        assert c.conn.generation == generation + 1 and sim.live_sessions() == 1
    assert sim.live_sessions() == 0
