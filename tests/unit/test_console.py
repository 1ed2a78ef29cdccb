"""The console client against the simulator: which console, xapi's refusals said for
people, the tunnel, and the VNC viewer it starts."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_task, xenapi_session
from tests.console_support import rfb_handshake
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi import console
from xsctl.xapi.client import Client
from xsctl.xapi.errors import UsageError


def _vm(client: Client, name: str) -> str:
    return next(ref for ref, r in client.cache.snapshot("vm") if r.get("name_label") == name)


def test_refusals_of_xapi_said_for_people(sim: Simulator) -> None:
    client = connect(sim)
    try:
        vm = _vm(client, "k8s-node-02")
        info = console.pick(client.cache, vm, "vt100")
        # the VM stops between the plan and the connection: xapi's 500
        x = xenapi_session(sim)
        try:
            wait_task(x, x.xenapi.Async.VM.hard_shutdown(vm))
        finally:
            x.xenapi.session.logout()
        with pytest.raises(console.ConsoleError, match=r"could not open the console \(HTTP "
                           r"500\): the VM must be running"):
            console.open_stream(client.conn, info)
        # a session xapi no longer knows (401): logged in again, as for any call
        master = next(r for r, h in client.cache.snapshot("host")
                      if h.get("address") == sim.master_address())
        dom0 = str(client.cache.get("host", master)["control_domain"])
        here = console.pick(client.cache, dom0, "vt100")
        old = client.conn.session
        sim.control("expire", {"session": old})
        stream = console.open_stream(client.conn, here)
        try:
            assert client.conn.session != old
            stream.sock.settimeout(10)
            assert b"login: " in stream.recv() + stream.recv()
        finally:
            stream.close()
    finally:
        client.close()


def test_tunnel_reports_a_console_it_cannot_open(sim: Simulator) -> None:
    client = connect(sim)
    try:
        vm = _vm(client, "web-01")
        info = console.pick(client.cache, vm, "rfb")
        with console.Tunnel(lambda: console.open_stream(client.conn, info)) as tunnel:
            with socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as s:
                assert rfb_handshake(s).name == "web-01"
            x = xenapi_session(sim)
            try:
                wait_task(x, x.xenapi.Async.VM.hard_shutdown(vm))
            finally:
                x.xenapi.session.logout()
            with socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as s:
                s.settimeout(10)
                assert s.recv(12) == b""  # closed: no console behind it
            assert tunnel.connections == 1
            assert len(tunnel.errors) == 1 and "HTTP 500" in str(tunnel.errors[0])
    finally:
        client.close()


def test_tunnel_listens_on_loopback_only() -> None:
    with console.Tunnel(lambda: (_ for _ in ()).throw(AssertionError)) as tunnel:
        assert tunnel.host == "127.0.0.1"
        assert tunnel.listener.getsockname()[0] == "127.0.0.1"
    with pytest.raises(UsageError, match="not a TCP port"):
        console.Tunnel(lambda: (_ for _ in ()).throw(AssertionError), port=70000)


def test_viewer_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(console.VIEWER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert console.viewer_command("127.0.0.1", 5901) is None
    # the first known viewer on PATH, each given the address its own way
    for name, want in (("remmina", ["-c", "vnc://127.0.0.1:5901"]),
                       ("vncviewer", ["127.0.0.1::5901"])):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
        assert console.viewer_command("127.0.0.1", 5901) == [str(exe), *want]
    # a configured one: fields filled in, else the address added
    assert console.viewer_command("127.0.0.1", 5901, "gvncviewer {host}:{port}") == [
        "gvncviewer", "127.0.0.1:5901"]
    assert console.viewer_command("127.0.0.1", 5901, "my viewer --fast") == [
        "my", "viewer", "--fast", "127.0.0.1::5901"]
    monkeypatch.setenv(console.VIEWER_ENV, f"{sys.executable} -c pass {{address}}")
    assert console.viewer_command("127.0.0.1", 5901)[-1] == "127.0.0.1::5901"
    for bad in ("viewer {display}", "viewer 'unclosed"):
        with pytest.raises(UsageError):
            console.viewer_command("127.0.0.1", 5901, bad)
