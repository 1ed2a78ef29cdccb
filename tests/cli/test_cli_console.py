"""xsctl console: a text console on a real terminal (a pty) through the real
/console path, the graphical one through the local tunnel, and the refusals."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.cli.helpers import conn_args, password_file, xsctl
from tests.console_support import PtyRun, rfb_full_update, rfb_handshake, xsctl_argv
from xsctl.sim import Simulator


def test_text_console_login_command_escape_and_terminal_restored(
        shared_sim: Simulator, tmp_path: Path) -> None:
    pw = password_file(shared_sim, tmp_path)
    run = PtyRun.start(xsctl_argv("console", "k8s-node-01", *conn_args(shared_sim, pw)))
    try:
        before = run.attrs()
        run.expect("Press Ctrl-] to end it.")
        run.expect("k8s-node-01 login: ")
        assert run.attrs() != before  # raw while the console has the terminal
        run.send(b"root\r")
        run.expect("Password: ")
        run.send(b"secret\r")
        run.expect("root@k8s-node-01:~# ")
        run.send(b"uname -n\r")
        out = run.expect("root@k8s-node-01:~# ")
        assert "k8s-node-01\r\n" in out
        run.send(b"\x1d")
        assert run.wait() == 0
        assert "Console closed." in run.seen.decode()
        assert run.attrs() == before  # the terminal is as it was
    finally:
        run.close()


def test_host_text_console_is_its_control_domain(shared_sim: Simulator, tmp_path: Path) -> None:
    pw = password_file(shared_sim, tmp_path)
    run = PtyRun.start(xsctl_argv("console", "xcp-ng-02", *conn_args(shared_sim, pw)))
    try:
        run.expect("xcp-ng-02 login: ")
        run.send(b"root\rpw\r")
        run.expect("[root@xcp-ng-02 ~]# ")
        run.send(b"xl list\r")
        out = run.expect("[root@xcp-ng-02 ~]# ")
        assert "Domain-0" in out and "k8s-node-01" in out  # k8s-node-01 runs there
        run.send(b"exit\r")
        run.expect("xcp-ng-02 login: ")  # getty again, as a real console does
        run.send(b"\x1d")
        assert run.wait() == 0
    finally:
        run.close()


def test_sigterm_during_a_console_restores_the_terminal(shared_sim: Simulator,
                                                         tmp_path: Path) -> None:
    pw = password_file(shared_sim, tmp_path)
    run = PtyRun.start(xsctl_argv("console", "k8s-node-02", *conn_args(shared_sim, pw)))
    try:
        before = run.attrs()
        run.expect("login: ")
        run.proc.send_signal(signal.SIGTERM)
        run.wait()
        assert run.attrs() == before
    finally:
        run.close()


def test_refusals(shared_sim: Simulator, tmp_path: Path) -> None:
    conn = conn_args(shared_sim, password_file(shared_sim, tmp_path))
    r = xsctl("console", "web-01", *conn, "--dry-run")
    assert r.code == 1
    assert "web-01" in r.err and "no text console" in r.err and "--vnc" in r.err
    r = xsctl("console", "web-staging", *conn, "--vnc", "--dry-run")
    assert r.code == 1 and "halted" in r.err and "only while it runs" in r.err
    r = xsctl("console", "k8s-node-03", *conn, "--dry-run")
    assert r.code == 1 and "suspended" in r.err
    r = xsctl("console", "no-such-thing", *conn, "--dry-run")
    assert r.code == 2 and "nor is it a host" in r.err
    r = xsctl("console", "k8s-node-01", *conn)  # stdin is not a terminal here
    assert r.code == 2 and "needs a terminal" in r.err
    r = xsctl("console", "web-01", *conn, "--port", "5901")
    assert r.code == 2 and "--port is for --vnc" in r.err
    r = xsctl("vm", "console", "web-staging", *conn)  # the catalogue's own command
    assert r.code == 1 and "halted" in r.err
    for r in (xsctl("console", "web-01", *conn, "--vnc", "--read-only"),
              xsctl("vm", "console", "web-01", "--vnc", *conn, "--read-only")):
        assert r.code != 0 and "read-only" in r.err.lower(), r.err


def test_dry_run_shows_the_connect_and_the_xe_line(shared_sim: Simulator,
                                                    tmp_path: Path) -> None:
    conn = conn_args(shared_sim, password_file(shared_sim, tmp_path))
    r = xsctl("console", "k8s-node-01", *conn, "--dry-run")
    assert r.code == 0, r.err
    assert "Text console of k8s-node-01" in r.out
    assert "CONNECT https://127.0.0.2" in r.out and "/console?ref=k8s-node-01 (vt100)" in r.out
    assert "xe console uuid=" in r.out and "Ctrl-]" in r.out
    r = xsctl("console", "xcp-ng-01", *conn, "--vnc", "--port", "5999", "--dry-run", "--json")
    assert r.code == 0, r.err
    [plan] = r.json()
    assert plan["action"] == "host.vnc"
    assert "listen on 127.0.0.1:5999" in plan["calls"][0]
    r = xsctl("vm", "console", "web-01", "--vnc", *conn, "--dry-run")
    assert r.code == 0 and "Graphical console of web-01" in r.out, r.err


def _address(run: PtyRun) -> tuple[str, int]:
    line = run.expect("(VNC; 127.0.0.1 only)")
    host, _, port = line.rsplit(": ", 1)[1].split(" ")[0].rpartition(":")
    return host, int(port)


def test_vnc_tunnel_carries_an_rfb_handshake(shared_sim: Simulator, tmp_path: Path) -> None:
    pw = password_file(shared_sim, tmp_path)
    env = {k: v for k, v in __import__("os").environ.items() if k != "XSCTL_VNC_VIEWER"}
    env["PATH"] = str(tmp_path)  # no VNC viewer to be found: the address is printed
    run = PtyRun.start(xsctl_argv("console", "web-01", "--vnc", *conn_args(shared_sim, pw)),
                       env)
    try:
        host, port = _address(run)
        assert host == "127.0.0.1"
        run.expect("No VNC viewer found")
        for _ in range(2):  # each viewer connection is a console connection of its own
            with socket.create_connection((host, port), timeout=10) as s:
                init = rfb_handshake(s)
                assert init.version == b"RFB 003.008\n"
                assert init.security == [1] and init.result == 0
                assert init.name == "web-01" and init.bpp == 32
                n, got = rfb_full_update(s, init.width, init.height)
                assert n == 1 and got == init.width * init.height * 4
        run.proc.send_signal(signal.SIGINT)
        assert run.wait() == 0
        try:
            socket.create_connection((host, port), timeout=2).close()
            raise AssertionError("the tunnel still listens")
        except ConnectionRefusedError:
            pass
    finally:
        run.close()


def test_vnc_starts_the_configured_viewer_and_ends_with_it(shared_sim: Simulator,
                                                           tmp_path: Path) -> None:
    """The viewer (here a small RFB client) is started on the tunnel's address; the
    tunnel ends when it does."""
    import os
    import sys

    pw = password_file(shared_sim, tmp_path)
    out = tmp_path / "viewer.txt"
    probe = tmp_path / "viewer.py"
    probe.write_text(
        "import socket, sys\n"
        "from tests.console_support import rfb_handshake\n"
        "host, port = sys.argv[1], int(sys.argv[2])\n"
        "with socket.create_connection((host, port), timeout=10) as s:\n"
        "    init = rfb_handshake(s)\n"
        "open(sys.argv[3], 'w').write(f'{init.name} {init.width}x{init.height}')\n")
    env = dict(os.environ)
    env["XSCTL_VNC_VIEWER"] = f"{sys.executable} {probe} {{host}} {{port}} {out}"
    run = PtyRun.start(xsctl_argv("console", "xcp-ng-01", "--vnc", *conn_args(shared_sim, pw)),
                       env)
    try:
        _address(run)
        run.expect("Started ")
        assert run.wait() == 0
        assert out.read_text().startswith("Control domain on host: xcp-ng-01 640x400")
    finally:
        run.close()


def test_in_dom0_through_the_unix_socket(tmp_path: Path) -> None:
    """In dom0 the local socket is used (no password): the consoles of the VMs of
    this host open; another host's VM is refused with where to go instead."""
    import tempfile

    from tests.conftest import make_sim

    with tempfile.TemporaryDirectory() as d:  # a short path: sockets have a limit
        path = f"{d}/xapi"
        sim = make_sim(unix_path=path)
        try:
            run = PtyRun.start(xsctl_argv("console", "xcp-ng-01", "--url", f"unix://{path}"))
            try:
                run.expect("xcp-ng-01 login: ")
                run.send(b"root\rx\r")
                run.expect("[root@xcp-ng-01 ~]# ")
                run.send(b"hostname\r")
                assert "xcp-ng-01\r\n" in run.expect("[root@xcp-ng-01 ~]# ")
                run.send(b"\x1d")
                assert run.wait() == 0
            finally:
                run.close()
            run = PtyRun.start(xsctl_argv("console", "k8s-node-01", "--url", f"unix://{path}"))
            try:
                assert run.wait() == 1
                assert ("k8s-node-01 runs on 127.0.0.2, which serves its console"
                        in run.seen.decode())
            finally:
                run.close()
        finally:
            sim.stop()
