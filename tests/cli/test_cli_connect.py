"""Connecting from the CLI: first-use trust, changed certificates, where passwords
come from (and never go), profiles, the dom0 socket, leaks and interruptions."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import keyring
import pytest

from tests.cli.helpers import conn_args, password_file, xsctl, xsctl_process
from tests.conftest import make_sim, wait_for
from xsctl.config import Config
from xsctl.sim import Simulator


def test_first_use_without_acceptance_is_refused_with_the_fingerprint(
    sim: Simulator, tmp_path: Path
) -> None:
    pw = password_file(sim, tmp_path)
    r = xsctl_process(*conn_args(sim, pw, accept=False), "vm", "list")
    assert r.code == 3
    assert sim.fingerprint in r.err and "--accept-fingerprint" in r.err
    assert sim.live_sessions() == 0


def test_accept_then_list_then_forget(sim: Simulator, tmp_path: Path) -> None:
    pw = password_file(sim, tmp_path)
    assert xsctl(*conn_args(sim, pw), "vm", "list").code == 0
    assert xsctl(*conn_args(sim, pw, accept=False), "vm", "list").code == 0  # pinned now
    pins = xsctl("trust", "list", "--json").json()
    assert pins[0]["fingerprint"] == sim.fingerprint
    assert xsctl("trust", "forget", "127.0.0.1").code == 0
    assert xsctl("trust", "list", "--json").json() == []
    assert xsctl("trust", "forget", "127.0.0.1").code == 1


def test_changed_certificate_exits_3_and_shows_both(tmp_path: Path) -> None:
    a = make_sim()
    port = a.port
    pw = password_file(a, tmp_path)
    try:
        assert xsctl(*conn_args(a, pw), "vm", "list").code == 0
        old = a.fingerprint
    finally:
        a.stop()
    b = make_sim(port=port)
    try:
        r = xsctl("--url", b.url, "--password-file", str(pw), "vm", "list")
        assert r.code == 3
        assert "CHANGED" in r.err and old in r.err and b.fingerprint in r.err
        assert "xsctl trust forget 127.0.0.1" in r.err
        assert b.live_sessions() == 0
    finally:
        b.stop()


def test_password_from_stdin(sim: Simulator) -> None:
    r = xsctl_process("--url", sim.url, "--accept-fingerprint", sim.fingerprint,
                      "--password-stdin", "vm", "list", "--json", stdin=sim.password + "\n")
    assert r.code == 0, r.err
    assert len(json.loads(r.out)) == 25


def test_password_from_the_keyring(sim: Simulator) -> None:
    keyring.set_password("xsctl", f"{sim.user}@{sim.url}", sim.password)
    r = xsctl("--url", sim.url, "--accept-fingerprint", sim.fingerprint, "vm", "list")
    assert r.code == 0, r.err


def test_no_password_and_no_terminal_is_a_usage_error(sim: Simulator) -> None:
    r = xsctl_process("--url", sim.url, "--accept-fingerprint", sim.fingerprint, "vm", "list")
    assert r.code == 2
    assert "--password-file" in r.err and sim.live_sessions() == 0


def test_wrong_password_exits_1(sim: Simulator, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("wrong\n")
    bad.chmod(0o600)
    r = xsctl("--url", sim.url, "--accept-fingerprint", sim.fingerprint,
              "--password-file", str(bad), "vm", "list")
    assert r.code == 1 and "SESSION_AUTHENTICATION_FAILED" in r.err
    assert "wrong" not in r.err.replace("wrong user name", "")


def test_profiles(sim: Simulator, tmp_path: Path, isolated_home: dict[str, str]) -> None:
    r = xsctl("profile", "add", "lab", "--url", sim.url, "--user", "root", "--default")
    assert r.code == 0, r.err
    assert xsctl("profile", "add", "lab", "--url", sim.url).code == 2  # exists
    assert xsctl("profile", "add", "bad name", "--url", sim.url).code == 2
    listed = xsctl("profile", "list", "--json").json()
    assert listed == [{"name": "lab", "url": sim.url, "user": "root", "ca_file": None, "ssh": None,
                       "read_only": False, "insecure_http": False, "profiling": False,
                       "host_tools": None, "default": True, "password_in_keyring": False}]
    keyring.set_password("xsctl", f"root@{sim.url}", sim.password)
    r = xsctl("--accept-fingerprint", sim.fingerprint, "vm", "list")  # the default profile
    assert r.code == 0, r.err
    r = xsctl("--profile", "lab", "host", "list")
    assert r.code == 0, r.err
    assert xsctl("profile", "remove", "lab", "--forget-password").code == 0
    assert keyring.get_password("xsctl", f"root@{sim.url}") is None
    assert xsctl("--profile", "lab", "vm", "list").code == 2
    config = Path(isolated_home["XDG_CONFIG_HOME"]) / "xsctl" / "config.toml"
    assert config.exists() and oct(config.stat().st_mode & 0o777) == "0o600"


def test_local_unix_socket_needs_no_password(tmp_path: Path) -> None:
    sock = str(tmp_path / "xapi.sock")
    s = make_sim(unix_path=sock)
    try:
        r = xsctl("--url", f"unix://{sock}", "vm", "list", "--json")
        assert r.code == 0, r.err
        assert len(r.json()) == 25
        assert s.live_sessions() == 0
    finally:
        s.stop()


def test_no_session_leaks_after_200_runs(sim: Simulator, tmp_path: Path) -> None:
    args = conn_args(sim, password_file(sim, tmp_path))
    for i in range(200):
        cmd = ["vm", "list"] if i % 3 else ["vm", "start", "web-01"]  # some fail
        r = xsctl(*args, *cmd)
        assert r.code in (0, 1)
    assert sim.live_sessions() == 0


def _spawn_on_pty(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "xsctl", *argv], stdin=slave, stdout=slave,
                         stderr=slave, env=dict(os.environ), start_new_session=True)
    os.close(slave)
    return p, master


def _read_until(fd: int, text: str, timeout: float = 20) -> str:
    buf = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in buf:
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {text!r} in {buf.decode(errors='replace')!r}")
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                buf += os.read(fd, 4096)
            except OSError:
                break
    return buf.decode(errors="replace")


def test_interactive_trust_password_and_keyring_offer(sim: Simulator) -> None:
    p, fd = _spawn_on_pty(["--url", sim.url, "vm", "list"])
    try:
        seen = _read_until(fd, "Trust this certificate")
        assert sim.fingerprint in seen.replace("\r\n", "")
        os.write(fd, b"y\n")
        _read_until(fd, "Password for")
        os.write(fd, sim.password.encode() + b"\n")
        _read_until(fd, "keyring?")
        os.write(fd, b"y\n")
        out = _read_until(fd, "web-01")
        assert sim.password not in out  # not echoed
        assert p.wait(20) == 0
    finally:
        os.close(fd)
        if p.poll() is None:
            p.kill()
    assert keyring.get_password("xsctl", f"root@{sim.url}") == sim.password
    assert sim.live_sessions() == 0


def test_interrupted_run_logs_out_and_password_stays_secret(
    tmp_path: Path, isolated_home: dict[str, str]
) -> None:
    slow = make_sim(op_time=30.0)
    try:
        keyring.set_password("xsctl", f"root@{slow.url}", slow.password)
        p = subprocess.Popen(
            [sys.executable, "-m", "xsctl", "--url", slow.url, "--accept-fingerprint",
             slow.fingerprint, "--verbose", "vm", "start", "web-staging"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
        )
        wait_for(lambda: any(t["status"] == "pending" for t in slow.store.all("task").values()),
                 timeout=20)
        assert slow.live_sessions() == 1
        cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
        assert slow.password.encode() not in cmdline
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=20)
        assert p.returncode == 130, err
        assert slow.live_sessions() == 0
        assert slow.password.encode() not in err
        for d in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
            for f in Path(isolated_home[d]).rglob("*"):
                if f.is_file():
                    assert slow.password.encode() not in f.read_bytes(), f
        log = Path(isolated_home["XDG_STATE_HOME"]) / "xsctl" / "xsctl.log"
        assert "logging out" in log.read_text()
    finally:
        slow.stop()


def test_sigterm_also_logs_out(tmp_path: Path) -> None:
    slow = make_sim(op_time=30.0)
    try:
        pw = password_file(slow, tmp_path)
        p = subprocess.Popen(
            [sys.executable, "-m", "xsctl", *conn_args(slow, pw), "vm", "start", "web-staging"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ),
        )
        wait_for(lambda: any(t["status"] == "pending" for t in slow.store.all("task").values()),
                 timeout=20)
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
        assert slow.live_sessions() == 0
    finally:
        slow.stop()


def test_help_everywhere() -> None:
    for argv in (["--help"], ["vm", "--help"], ["vm", "start", "--help"], ["profile", "add", "--help"],
                 ["trust", "--help"], ["host", "list", "--help"]):
        r = xsctl(*argv)
        assert r.code == 0 and "usage:" in r.out


@pytest.mark.parametrize("url", ["ftp://x", "https://", "https://h:notaport", "https://[::1"])
def test_bad_urls_are_usage_errors(url: str) -> None:
    assert xsctl("--url", url, "vm", "list").code == 2


def test_a_login_whose_connection_drops_is_retried(sim: Simulator, tmp_path: Path) -> None:
    sim.faults.drop_next = 1
    r = xsctl(*conn_args(sim, password_file(sim, tmp_path)), "vm", "list")
    assert r.code == 0, r.err
    assert sim.faults.drop_next == 0 and sim.live_sessions() == 0


def test_plain_http_only_when_asked_and_then_said_every_time(tmp_path: Path) -> None:
    plain = make_sim(tls=False)
    try:
        pw = password_file(plain, tmp_path)
        r = xsctl("--url", plain.url, "--password-file", str(pw), "vm", "list")
        assert r.code == 3 and "--insecure-http" in r.err and "unencrypted" in r.err
        assert plain.live_sessions() == 0  # refused before the password went out
        for _ in range(2):  # every run says it, not only the first
            r = xsctl("--url", plain.url, "--insecure-http", "--password-file", str(pw),
                      "vm", "list")
            assert r.code == 0, r.err
            assert f"warning: unencrypted: {plain.url} is plain HTTP" in r.err
        assert xsctl("profile", "add", "lab", "--url", plain.url).code == 2
        r = xsctl("profile", "add", "lab", "--url", plain.url, "--insecure-http")
        assert r.code == 0 and "unencrypted" in r.err
        assert "insecure_http = true" in Config().path.read_text()
        r = xsctl("--profile", "lab", "--password-file", str(pw), "host", "list")
        assert r.code == 0 and "unencrypted" in r.err
        assert plain.live_sessions() == 0
    finally:
        plain.stop()


def test_a_password_file_others_can_read_is_warned_about(sim: Simulator, tmp_path: Path) -> None:
    pw = password_file(sim, tmp_path)
    pw.chmod(0o644)
    r = xsctl(*conn_args(sim, pw), "vm", "list")
    assert r.code == 0
    assert f"warning: permissions 0644 for '{pw}' are too open" in r.err
    assert f"chmod 600 {pw}" in r.err
    pw.chmod(0o600)
    assert "warning" not in xsctl(*conn_args(sim, pw), "vm", "list").err
