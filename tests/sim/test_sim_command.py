"""``xsctl sim`` in a subprocess, as scripts and CI use it, and ``xsctl sim-control``.

The JSON line is the contract: url, user, password, the master's certificate
fingerprint as ``SHA256:AB:CD:...`` (upper-case colon hex, xapi's own form,
certificates.ml pp_hash) and the Unix socket path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.conftest import wait_for

FINGERPRINT = re.compile(r"SHA256:([0-9A-F]{2}:){31}[0-9A-F]{2}")


def start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "xsctl", "sim", "--json", "--auth-fail-delay", "0",
         "--op-time", "0.05", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    return proc, json.loads(line)


def stop(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


def control(info: dict[str, Any], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "xsctl", "sim-control", info["control"], info["control_token"],
         *args],
        capture_output=True, text=True, timeout=30, check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[subprocess.Popen[str], dict[str, Any], str]]:
    d = f"/tmp/xsctl-{secrets.token_hex(6)}"  # no "_": XenAPI's UDS host mapping
    os.mkdir(d)
    sock = os.path.join(d, "xapi")
    proc, info = start("--unix", sock)
    try:
        yield proc, info, sock
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def test_json_line(served: tuple[subprocess.Popen[str], dict[str, Any], str]) -> None:
    _, info, sock = served
    assert {"url", "user", "password", "fingerprint", "unix"} <= set(info)
    assert info["url"].startswith("https://127.0.0.1:") and info["user"] == "root"
    assert info["unix"] == sock and os.path.exists(sock)
    assert FINGERPRINT.fullmatch(info["fingerprint"])
    host, port = info["url"][len("https://"):].split(":")
    der = ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))
    digest = hashlib.sha256(der).digest()
    assert info["fingerprint"] == "SHA256:" + ":".join(f"{b:02X}" for b in digest)


def test_clients_over_tls_and_the_unix_socket(
    served: tuple[subprocess.Popen[str], dict[str, Any], str]
) -> None:
    _, info, sock = served
    x = XenAPI.Session(info["url"], ignore_ssl=True)
    x.xenapi.login_with_password(info["user"], info["password"], "1.0", "cmd-test")
    vms = x.xenapi.VM.get_all()
    local = XenAPI.Session("http://" + sock.replace("/", "_") + "/",
                           transport=XenAPI.UDSTransport())
    local.xenapi.login_with_password("root", "")
    assert sorted(local.xenapi.VM.get_all()) == sorted(vms)
    assert control(info, "sessions") == 2
    local.xenapi.session.logout()
    x.xenapi.session.logout()
    assert control(info, "sessions") == 0


def test_sim_control_faults(served: tuple[subprocess.Popen[str], dict[str, Any], str]) -> None:
    _, info, _ = served
    x = XenAPI.Session(info["url"], ignore_ssl=True)
    x.xenapi.login_with_password(info["user"], info["password"])
    assert control(info, "latency", "0.3") == 0.3
    t0 = time.monotonic()
    x.xenapi.pool.get_all()
    assert time.monotonic() - t0 >= 0.3
    assert control(info, "latency", "0") == 0.0
    assert control(info, "slow_events", "0") == 0.0
    details = control(info, "info")
    assert details["sessions"] == 1 and details["url"] == info["url"]
    assert [h["master"] for h in details["hosts"]].count(True) == 1
    x.xenapi.session.logout()


def test_sigint_stops_cleanly(served: tuple[subprocess.Popen[str], dict[str, Any], str]) -> None:
    proc, _, sock = served
    code, out, err = stop(proc)
    assert code == 0, err
    assert out == ""  # nothing after the JSON line
    assert "Traceback" not in err
    wait_for(lambda: not os.path.exists(sock))


def test_plain_http() -> None:
    proc, info = start("--plain")
    try:
        assert info["url"].startswith("http://") and info["fingerprint"] is None
        x = XenAPI.Session(info["url"])
        x.xenapi.login_with_password(info["user"], info["password"])
        assert len(x.xenapi.pool.get_all()) == 1
        x.xenapi.session.logout()
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
