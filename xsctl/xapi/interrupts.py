"""Signals that end a run (Ctrl-C, ``kill``, a closed terminal or ssh session) and the
few moments they must wait.

xapi keeps a session until it times out, so a run that dies between the login and the
logout leaks one. Python raises KeyboardInterrupt wherever the main thread happens to
be; two spots cannot take it: the login call, whose session the server creates even
when the client stops listening, and the logout call. Those run with the signals
deferred: the signal is noted and acted on once the session is safely recorded (or
logged out).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

# SIGINT: Ctrl-C. SIGTERM: kill, systemd, a CI timeout. SIGHUP: the terminal window or
# the ssh session closed.
INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

Handler = Callable[[int, FrameType | None], Any]


class Interrupted(KeyboardInterrupt):
    """A run ended by a signal; the exit status is 128 + the signal, as shells report."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(e: KeyboardInterrupt) -> int:
    return e.exit_code if isinstance(e, Interrupted) else 128 + signal.SIGINT


class _Raiser:
    """The command line's handler: the first signal raises Interrupted where the main
    thread is; later ones are noted only, so that the clean-up the first one started
    (a logout) is not cut short in its turn. Every clean-up step is bounded by a
    socket timeout."""

    def __init__(self) -> None:
        self.fired: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.fired is not None:
            return
        self.fired = signum
        raise Interrupted(signum)


def install() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise Interrupted (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    raiser = _Raiser()
    for s in INTERRUPTS:
        signal.signal(s, raiser)


class Held:
    """The signals that arrived while deferred, in order."""

    def __init__(self) -> None:
        self.pending: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.pending.append(signum)


@contextlib.contextmanager
def deferred() -> Iterator[Held]:
    """Hold SIGINT, SIGTERM and SIGHUP for the duration of the block, then hand the
    first one that came to the handler that was there before.

    Only signals that a Python handler catches are held (a default action would kill
    the process at once anyway), and only in the main thread, the one Python runs
    signal handlers in: in any other thread this does nothing."""
    held = Held()
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    before: dict[int, Handler] = {}
    try:
        for sig in INTERRUPTS:
            h = signal.getsignal(sig)
            if callable(h):
                before[sig] = h
                signal.signal(sig, held)
        yield held
    finally:
        for signum, h in before.items():
            signal.signal(signum, h)
        if held.pending and held.pending[0] in before:
            first = held.pending[0]
            # called here rather than re-raised, so that its KeyboardInterrupt comes
            # out of this block and not at some later line
            before[first](first, None)
