"""Ending a run with a signal, at random moments, logs out: SIGINT (Ctrl-C), SIGTERM
(kill) and SIGHUP (the terminal or the ssh session closed), in the CLI and in the
TUI. A small sample of tests/benchmarks/bench_sessions.py, which runs 260."""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import conn_args, password_file
from tests.conftest import make_sim, wait_for
from xsctl.sim import Simulator

LATENCY = 0.2


class SignalOnLogin:
    """The simulator's database hook: when it creates the run's session (the login's
    answer is not sent yet), signal the run at once or ``delay`` seconds later."""

    def __init__(self, sig: int, delay: float) -> None:
        self.sig = sig
        self.delay = delay
        self.proc: subprocess.Popen[str] | None = None
        self.sent = threading.Event()

    def __call__(self, cls: str, op: str, ref: str, row: Any) -> None:
        if cls != "session" or op != "add" or self.sent.is_set():
            return
        self.sent.set()
        if self.delay == 0:
            self.fire()
        else:
            threading.Timer(self.delay, self.fire).start()

    def fire(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(self.sig)


@pytest.fixture
def slow_sim() -> Any:
    s = make_sim()
    s.faults.latency = LATENCY
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_at_a_random_moment_leaves_no_session(
        slow_sim: Simulator, tmp_path: Path, sig: int) -> None:
    """Once during the login call, once at a random moment of what follows (learning
    the pool, loading the cache, printing), with latency on every call."""
    args = conn_args(slow_sim, password_file(slow_sim, tmp_path))
    rnd = random.Random(sig)
    for delay in (0.0, rnd.uniform(0.0, 8 * LATENCY)):
        hook = SignalOnLogin(sig, delay)
        slow_sim.store.watchers.append(hook)
        try:
            p = subprocess.Popen([sys.executable, "-m", "xsctl", *args, "vm", "list"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ))
            hook.proc = p
            _, err = p.communicate(timeout=30)
        finally:
            slow_sim.store.watchers.remove(hook)
        assert hook.sent.is_set()
        assert "Traceback" not in err
        if p.returncode != 0:  # the run may have ended before a late signal
            assert p.returncode == 128 + sig, err
            assert "xsctl: interrupted" in err
        wait_for(lambda: slow_sim.live_sessions() == 0, timeout=5)


def on_a_terminal(argv: list[str], env: dict[str, str] | None = None,
                  ) -> tuple[subprocess.Popen[bytes], int]:
    """``xsctl ARGV`` with a pseudo-terminal as its controlling terminal: closing the
    master side is closing the terminal window (the kernel sends SIGHUP)."""
    master, slave = os.openpty()
    # the child takes the terminal itself, then becomes xsctl (same process): a
    # preexec_fn would run between fork and exec, unsafe with the simulator's threads
    take_tty = ("import fcntl, os, sys, termios; os.setsid(); "
                "fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
                "os.execv(sys.executable, [sys.executable, '-m', 'xsctl', *sys.argv[1:]])")
    p = subprocess.Popen([sys.executable, "-c", take_tty, *argv], stdin=slave, stdout=slave,
                         stderr=slave, env=env or dict(os.environ))
    os.close(slave)
    return p, master


class Terminal:
    """The user's side of the pseudo-terminal: reads what the program writes (it
    must not block on a full terminal) until it is closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if select.select([self.fd], [], [], 0.05)[0]:
                try:
                    if not os.read(self.fd, 65536):
                        return
                except OSError:
                    return

    def close(self) -> None:
        """Close the window. (A read blocked in another thread would keep the file
        open, and the hang-up with it, until the program next wrote something.)"""
        if self._stop.is_set():
            return
        self._stop.set()
        self._reader.join()
        os.close(self.fd)


def test_closing_the_terminal_logs_the_cli_out(tmp_path: Path) -> None:
    slow = make_sim(op_time=30.0)
    try:
        p, fd = on_a_terminal([*conn_args(slow, password_file(slow, tmp_path)),
                               "vm", "start", "web-staging"])
        term = Terminal(fd)
        wait_for(lambda: any(t["status"] == "pending"
                             for t in slow.store.all("task").values()), timeout=20)
        assert slow.live_sessions() == 1
        term.close()  # the terminal is gone
        assert p.wait(20) == 128 + signal.SIGHUP
        assert slow.live_sessions() == 0
    finally:
        if p.poll() is None:
            p.kill()
        slow.stop()


def test_closing_the_terminal_logs_the_tui_out(sim: Simulator, tmp_path: Path) -> None:
    p, fd = on_a_terminal(conn_args(sim, password_file(sim, tmp_path)))
    term = Terminal(fd)
    try:
        wait_for(lambda: sim.live_sessions() == 1, timeout=30)
        term.close()
        assert p.wait(20) == 128 + signal.SIGHUP
        assert sim.live_sessions() == 0
    finally:
        term.close()
        if p.poll() is None:
            p.kill()


@pytest.mark.parametrize("how", ["hangup", "sigint", "sigterm"])
def test_the_demo_removes_its_folder(tmp_path: Path, how: str) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    p, fd = on_a_terminal(["demo"], env)
    term = Terminal(fd)
    try:
        folder = wait_for(lambda: next(tmp.glob("xsctl-demo-*/known_hosts"), None),
                          timeout=30).parent
        if how == "hangup":
            term.close()
        else:
            p.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
        assert p.wait(20) == 128 + {"hangup": signal.SIGHUP, "sigint": signal.SIGINT,
                                    "sigterm": signal.SIGTERM}[how]
        assert not folder.exists()
        assert list(tmp.iterdir()) == []
    finally:
        term.close()
        if p.poll() is None:
            p.kill()
