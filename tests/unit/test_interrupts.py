"""Signals at the worst moments: no session is left behind.

xapi creates a session whether or not the client still listens for the answer, so a
Ctrl-C during the login call, or just after it, leaked one. The signals here are real
(``pthread_kill`` on the main thread, where Python runs its handlers), sent by the
simulator's own database hook at the moment it creates the session, that is while the
client waits for the login's answer."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import make_sim, wait_for
from tests.unit.helpers import connect, target
from xsctl.sim import Simulator
from xsctl.xapi import interrupts
from xsctl.xapi.client import Client
from xsctl.xapi.session import closed_on_exit

MAIN = threading.main_thread().ident


def interrupt_main() -> None:
    assert MAIN is not None
    signal.pthread_kill(MAIN, signal.SIGINT)


class OnLogin:
    """Runs ``action`` when the simulator creates a session (the login's answer is
    not sent yet), and counts the sessions created."""

    def __init__(self, sim: Simulator, action: Callable[[], None] | None) -> None:
        self.sim = sim
        self.action = action
        self.created = 0

    def __call__(self, cls: str, op: str, ref: str, row: Any) -> None:
        if cls == "session" and op == "add":
            self.created += 1
            if self.action is not None and self.created == 1:
                self.action()


@pytest.fixture
def slow_sim() -> Iterator[Simulator]:
    s = make_sim()
    s.faults.latency = 0.3  # every call takes this long: room to land in
    try:
        yield s
    finally:
        s.stop()


def watch(sim: Simulator, action: Callable[[], None] | None) -> OnLogin:
    hook = OnLogin(sim, action)
    sim.store.watchers.append(hook)
    return hook


def test_deferred_holds_a_signal_until_the_block_ends() -> None:
    seen: list[int] = []

    def handler(signum: int, frame: object) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGTERM, handler)
    try:
        with interrupts.deferred() as held:
            os.kill(os.getpid(), signal.SIGTERM)
            wait_for(lambda: held.pending)  # arrived, and held
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)


def test_an_interrupt_during_the_login_call_logs_its_session_out(slow_sim: Simulator) -> None:
    hook = watch(slow_sim, interrupt_main)
    with pytest.raises(KeyboardInterrupt):
        Client.connect(target(slow_sim), slow_sim.password)
    assert hook.created == 1  # the server did make the session the interrupt met
    wait_for(lambda: slow_sim.live_sessions() == 0)


def test_an_interrupt_just_after_the_login_logs_out(slow_sim: Simulator) -> None:
    """Most of the leaks: the login has answered, the client is learning the pool's
    members (one more call, slowed down by the latency)."""
    timer: list[threading.Timer] = []

    def soon() -> None:  # half-way through the next call's latency
        timer.append(threading.Timer(slow_sim.faults.latency / 2, interrupt_main))
        timer[0].start()

    hook = watch(slow_sim, soon)
    with pytest.raises(KeyboardInterrupt):
        Client.connect(target(slow_sim), slow_sim.password)
    assert hook.created == 1
    assert slow_sim.live_sessions() == 0


def test_a_scope_closes_what_any_thread_opened_in_it(sim: Simulator) -> None:
    """The command line's safety net: a connection made in a worker thread (the TUI's
    connect screen) and never handed over is logged out when the run ends."""
    made: list[Client] = []
    with closed_on_exit():
        t = threading.Thread(target=lambda: made.append(connect(sim, load=False)))
        t.start()
        t.join()
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0
    assert made[0].conn.health.value == "closed"


def test_a_scope_waits_for_a_login_under_way(slow_sim: Simulator) -> None:
    started = threading.Event()
    hook = watch(slow_sim, started.set)
    with closed_on_exit():
        t = threading.Thread(target=lambda: connect(slow_sim, load=False), daemon=True)
        t.start()
        started.wait(10)  # the server is making the session; the answer is not back
    assert hook.created == 1
    assert slow_sim.live_sessions() == 0
    t.join(10)


def test_close_is_not_cut_short_by_a_signal(slow_sim: Simulator) -> None:
    """A second Ctrl-C while logging out (slowly) does not stop the logout."""
    c = connect(slow_sim, load=False)
    timer = threading.Timer(slow_sim.faults.latency / 2, interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        c.close()
    timer.join()
    assert slow_sim.live_sessions() == 0

