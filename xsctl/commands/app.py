"""Opening the terminal UI from the command line: on a pool (``xsctl``,
``xsctl --profile P``) or on the embedded demo pool (``xsctl demo``). It lives with
the commands because it reads their options; the UI package never sees argparse."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from xsctl.xapi.client import Client, Target
from xsctl.xapi.trust import KnownHosts

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp


def run_app(args: argparse.Namespace) -> int:
    app = app_for(args)
    try:
        app.run()
    finally:
        if app.client is not None:
            app.client.close()
    return app.return_code or 0


def app_for(args: argparse.Namespace) -> XsctlApp:
    """The app ``xsctl [--profile P | --url U]`` opens (the tests drive this one)."""
    from xsctl.commands.connect import password_for, target_from_args
    from xsctl.ui.app import create_app
    from xsctl.xapi.errors import UsageError

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


def demo_client(vms: int | None = None, seed: int = 1, op_time: float = 1.0,
                known: Path | None = None) -> tuple[object, Client]:
    """Start the simulator in this process and a client on it (its certificate is
    pinned in a throw-away known_hosts, never in the user's)."""
    from xsctl.sim import Simulator

    sim = Simulator(seed=seed, vms=vms, op_time=op_time, auth_fail_delay=1.0).start()
    known = known or Path(tempfile.mkdtemp(prefix="xsctl-demo-")) / "known_hosts"
    target = Target(url=sim.url, user=sim.user, accept_fingerprint=sim.fingerprint)
    client = Client.connect(target, sim.password, known=KnownHosts(known))
    return sim, client


def run_demo(vms: int | None = None, seed: int = 1, view: str | None = None) -> int:
    from xsctl.ui.app import create_app

    sim, client = demo_client(vms, seed)
    try:
        app = create_app(client, view=view)
        app.run()
        return app.return_code or 0
    finally:
        client.close()
        sim.stop()  # type: ignore[attr-defined]
