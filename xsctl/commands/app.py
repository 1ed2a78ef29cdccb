"""Opening the terminal UI from the command line: on a pool (``xsctl``,
``xsctl --profile P``) or on the embedded demo pool (``xsctl demo``). It lives with
the commands because it reads their options; the UI package never sees argparse."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from xsctl.xapi import interrupts
from xsctl.xapi.client import Client, Target
from xsctl.xapi.trust import KnownHosts

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp


class Ending:
    """The signal that ended the app, if one did."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def code(self, app: XsctlApp) -> int:
        return 128 + self.signum if self.signum is not None else app.return_code or 0


@contextlib.contextmanager
def exit_on_signals(app: XsctlApp) -> Iterator[Ending]:
    """SIGHUP (the terminal or the ssh session closed), SIGTERM and a SIGINT from
    ``kill`` end the app the ordinary way, so that its caller logs out. The terminal
    is in raw mode, so Ctrl-C itself is a key, not a signal."""
    ending = Ending()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if ending.signum is None:
            ending.signum = signum
        if signum == signal.SIGHUP:
            _terminal_gone()
        try:
            loop = asyncio.get_running_loop()  # the handler runs on the app's thread
        except RuntimeError:  # the app is not running (yet, or any more)
            raise interrupts.Interrupted(signum) from None
        loop.call_soon_threadsafe(lambda: app.exit(None, 128 + signum))

    if threading.current_thread() is not threading.main_thread():
        yield ending
        return
    before = {s: signal.getsignal(s) for s in interrupts.INTERRUPTS}
    for s in interrupts.INTERRUPTS:
        signal.signal(s, on_signal)
    try:
        yield ending
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def _terminal_gone() -> None:
    """The terminal hung up: what the app still writes on its way out (restoring the
    terminal's modes, the last frame) goes nowhere. Left on the dead terminal, those
    writes fail in Textual's output thread and its shutdown waits for them forever,
    and the logout that follows it never comes."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)


def run_app(args: argparse.Namespace) -> int:
    app = app_for(args)
    try:
        with exit_on_signals(app) as ending:
            app.run()
    finally:
        if app.client is not None:
            app.client.close()
    return ending.code(app)


def app_for(args: argparse.Namespace) -> XsctlApp:
    """The app ``xsctl [--profile P | --url U]`` opens (the tests drive this one)."""
    from xsctl.commands.connect import password_for, target_from_args
    from xsctl.config import Config
    from xsctl.ui.app import create_app
    from xsctl.xapi.errors import UsageError

    Config()  # a broken config.toml is said here, in one line, not inside the app
    target: Target | None = None
    password: str | None = None
    if getattr(args, "url", None) or getattr(args, "profile", None):
        target = target_from_args(args)
        if getattr(args, "password_file", None) or getattr(args, "password_stdin", False):
            password, _ = password_for(args, target)
    else:
        try:
            target = None if not getattr(args, "read_only", False) else target_from_args(args)
        except UsageError:
            target = None
    return create_app(None, target=target, password=password,
                      view=getattr(args, "view", None))


def demo_client(known: Path, vms: int | None = None, seed: int = 1,
                op_time: float = 1.0) -> tuple[object, Client]:
    """Start the simulator in this process and a client on it (its certificate is
    pinned in ``known``, a throw-away known_hosts, never in the user's). The demo
    profile allows the Profiling view, whose host tools are the simulator's dom0s,
    written next to ``known``."""
    from xsctl.sim import Simulator

    sim = Simulator(seed=seed, vms=vms, op_time=op_time, auth_fail_delay=1.0).start()
    try:
        tools = sim.host_tools(str(known.parent / "dom0"))
        target = Target(url=sim.url, user=sim.user, accept_fingerprint=sim.fingerprint,
                        profiling=True, host_tools=tools)
        client = Client.connect(target, sim.password, known=KnownHosts(known))
    except BaseException:
        sim.stop()
        raise
    return sim, client


def run_demo(vms: int | None = None, seed: int = 1, view: str | None = None) -> int:
    """The demo pool in this process; its throw-away folder (the pin of the
    simulator's certificate) is removed however the demo ends."""
    from xsctl.ui.app import create_app

    folder = tempfile.mkdtemp(prefix="xsctl-demo-")
    try:
        sim, client = demo_client(Path(folder) / "known_hosts", vms, seed)
        try:
            app = create_app(client, view=view)
            with exit_on_signals(app) as ending:
                app.run()
            return ending.code(app)
        finally:
            client.close()
            sim.stop()  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
