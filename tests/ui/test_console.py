"""The consoles from the app: L (text) and V (graphical) on a VM, and on a host
(its control domain's). A text console suspends the app and hands the terminal
over, which Pilot's headless driver cannot do: that path is run for real under a
pseudo-terminal in test_text_console_in_the_app_under_a_terminal; here the refusals,
the connection it opens, and the graphical console's tunnel, end to end."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from tests.cli.helpers import conn_args, password_file
from tests.console_support import PtyRun, rfb_handshake, xsctl_argv
from tests.ui.harness import running, words_of
from xsctl.sim import Simulator
from xsctl.ui.modals.console import TunnelDialog
from xsctl.xapi.client import Client


async def test_refusals_say_why(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        mark = ui.writes.mark()
        for key, name, why in (
            ("L", "web-staging", "it is halted: a console is there only while it runs"),
            ("V", "k8s-node-03", "it is suspended: a console is there only while it runs"),
            ("L", "web-01", "it has no text console (an HVM guest has a graphical one: V"),
        ):
            await ui.act(key, on=name)
            toast = await ui.until_said(f"{name}", "error")
            assert why in toast.message, (key, name, toast.message)
            assert ui.app.screen is ui.main
            ui.toasts.clear()
        assert ui.writes.since(mark) == []


async def test_text_console_without_a_terminal_of_its_own(sim: Simulator,
                                                          client: Client) -> None:
    """Headless, the app cannot be suspended: it says so, after the console was
    opened through /console (the simulator saw the session's connection), and
    stays as it was."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("L", on="k8s-node-01")
        toast = await ui.until_said("Cannot open the console of k8s-node-01", "error")
        assert "cannot be handed over" in toast.message
        assert ui.app.screen is ui.main
        assert ui.said("Opening the console of k8s-node-01: Ctrl-] brings xsctl back")


async def test_graphical_console_tunnel(sim: Simulator, client: Client, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XSCTL_VNC_VIEWER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no viewer to start: the dialog says how
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("V", on="web-01")
        dialog = await ui.modal(TunnelDialog)
        tunnel = dialog.tunnel
        words = words_of(dialog)
        assert "Open graphical console of web-01" not in words  # the plan's title is shown
        assert "Graphical console of web-01" in words
        assert f"VNC at 127.0.0.1:{tunnel.port} (127.0.0.1 only)" in words
        assert f"No VNC viewer found: connect one to 127.0.0.1::{tunnel.port}" in words

        def handshake() -> str:
            with socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as s:
                return rfb_handshake(s).name

        assert await asyncio.to_thread(handshake) == "web-01"
        await ui.until(lambda: "1 connection so far" in words_of(dialog),
                       what="the dialog counting the connection")
        await ui.press("escape")
        await ui.until(lambda: ui.app.screen is ui.main, what="the dialog closed")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", tunnel.port), timeout=2).close()


async def test_host_graphical_console(sim: Simulator, client: Client, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A host's console is its control domain's (the host kind's V)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "seen"
    viewer = tmp_path / "viewer.py"
    viewer.write_text(
        "import socket, sys\n"
        "from tests.console_support import rfb_handshake\n"
        "with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as s:\n"
        "    open(sys.argv[3], 'w').write(rfb_handshake(s).name)\n")
    import sys

    monkeypatch.setenv("XSCTL_VNC_VIEWER", f"{sys.executable} {viewer} {{host}} {{port}} {out}")
    host = next(r for r, h in sim.store.all("host").items() if h["name_label"] == "xcp-ng-02")
    async with running(sim, client) as ui:
        await ui.open_vms()
        ui.main.request("host.vnc", [host], "vms")
        dialog = await ui.modal(TunnelDialog)
        assert "Started " in words_of(dialog)
        await ui.until(lambda: out.exists() and out.read_text(), timeout=15,
                       what="the viewer's handshake")
        assert out.read_text() == "Control domain on host: xcp-ng-02"
        await ui.press("escape")
        await ui.until(lambda: ui.app.screen is ui.main, what="the dialog closed")


def test_text_console_in_the_app_under_a_terminal(shared_sim: Simulator,
                                                  tmp_path: Path) -> None:
    """The whole path on a real terminal: L suspends the app, the console has the
    terminal (login, a command), Ctrl-] brings the app back as it was."""
    pw = password_file(shared_sim, tmp_path)
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30")
    run = PtyRun.start(xsctl_argv(*conn_args(shared_sim, pw)), env)
    try:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(run.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        run.expect("Virtual Machines")
        run.send(b"2")  # the VMs view, sorted by name: k8s-node-01 is the 12th row
        run.expect("25 of 25 VMs")
        run.send(b"j" * 11 + b"L")
        run.expect("Press Ctrl-] to come back to xsctl.")
        run.expect("k8s-node-01 login: ")
        run.send(b"root\rpw\r")
        run.expect("root@k8s-node-01:~# ")
        run.send(b"uname -n\r")
        assert "k8s-node-01\r\n" in run.expect("root@k8s-node-01:~# ")
        run.send(b"\x1d")
        run.expect("Console of k8s-node-01: closed")  # the app's toast: it is back
        run.send(b"q")
        assert run.wait(30) == 0
    finally:
        run.close()
