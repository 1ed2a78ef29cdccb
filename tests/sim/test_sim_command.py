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

from tests.cli.helpers import Run, xsctl, xsctl_process
from tests.conftest import wait_for, xenapi_session
from tests.sim.test_host_support import request
from xsctl.sim import Simulator
from xsctl.sim.simulator import free_port

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


# ---------------------------------------------------------------- sim-control's own errors


def sim_control(sim: Simulator, *args: str, token: str | None = None,
                url: str | None = None) -> Run:
    return xsctl("sim-control", url or sim.info()["control"],
                 sim.control_token if token is None else token, *args)


def one_line_error(run: Run, code: int) -> str:
    assert run.code == code, run
    assert run.out == "" and "Traceback" not in run.err, run
    lines = run.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xsctl: "), run
    return lines[0]


def faults(sim: Simulator) -> tuple[float, int, float]:
    return sim.faults.latency, sim.faults.drop_next, sim.faults.event_delay


@pytest.mark.parametrize("args,words", [
    (["latency", "-5"], "latency"), (["latency", "nan"], "latency"),
    (["latency", "inf"], "latency"), (["latency", "1e309"], "latency"),
    (["latency", "abc"], "latency"), (["latency"], "latency"),
    (["slow_events", "-0.5"], "slow_events"), (["slow_events", "-2"], "slow_events"),
    (["drop", "-1"], "drop"), (["drop", "1.5"], "drop"), (["drop", "many"], "drop"),
    (["drop", "99999999999999999999"], "drop"),
    (["restart", "-1"], "restart"), (["restart", "nan"], "restart"),
    (["master"], "master"), (["master", ""], "master"),
    (["info", "now"], "info"), (["sessions", "3"], "sessions"),
])
def test_sim_control_refuses_bad_values(sim: Simulator, args: list[str], words: str) -> None:
    """A bad value is a usage error (exit 2) in one line naming the action, and the
    simulator is left as it was."""
    before = faults(sim)
    line = one_line_error(sim_control(sim, *args), 2)
    assert words in line
    assert faults(sim) == before and sim.listeners and not sim.faults.down


def test_sim_control_refuses_a_bad_token(sim: Simulator) -> None:
    line = one_line_error(sim_control(sim, "latency", "1", token="wrong"), 2)
    assert "token" in line and "wrong" not in line
    assert sim.faults.latency == 0.0


def test_sim_control_names_an_unknown_host(sim: Simulator) -> None:
    """``master`` of a host the pool does not have: the simulator says so (exit 2)."""
    master = sim.master_ref()
    line = one_line_error(sim_control(sim, "master", "no-such-host"), 2)
    assert "no-such-host" in line
    assert sim.master_ref() == master


@pytest.mark.parametrize("url", [
    "https://no-such-host.invalid:4443/sim/control",  # the name does not resolve
    "https://127.0.0.1:{free}/sim/control",  # nothing listens there
])
def test_sim_control_cannot_reach_the_simulator(sim: Simulator, url: str) -> None:
    url = url.format(free=free_port())
    line = one_line_error(sim_control(sim, "sessions", url=url), 3)
    assert "cannot reach" in line


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/sim/control", "https://",
                                 "https://[::1/sim/control", "https://127.0.0.1:99999/x"])
def test_sim_control_refuses_a_bad_url(sim: Simulator, url: str) -> None:
    one_line_error(sim_control(sim, "sessions", url=url), 2)


def test_sim_control_master_and_restart_report_success(sim: Simulator) -> None:
    """Both drop every connection, the control request's own included in the past:
    they answer, and the CLI reports what happened."""
    x = xenapi_session(sim)
    member = next(h for h in sim.store.all("host") if h != sim.master_ref())
    address = sim.store.get(member, "host")["address"]
    done = sim_control(sim, "master", sim.store.get(member, "host")["name_label"])
    assert (done.code, done.err) == (0, "") and json.loads(done.out) == address
    assert sim.master_ref() == member
    assert sim.live_sessions() == 1
    done = sim_control(sim, "restart", "0.2")
    assert (done.code, done.err) == (0, "") and json.loads(done.out) is True
    wait_for(lambda: sim.live_sessions() == 0 and not sim.faults.down)
    assert x.handle not in sim.store.all("session")


def test_sim_control_in_a_process_prints_no_traceback(sim: Simulator) -> None:
    for args, code in ((["restart", "0"], 0), (["drop", "-1"], 2),
                       (["latency", "abc"], 2)):
        run = xsctl_process("sim-control", sim.info()["control"], sim.control_token, *args)
        assert run.code == code and "Traceback" not in run.err, run


def test_control_endpoint_refuses_bad_values_itself(sim: Simulator) -> None:
    """The simulator checks what it is sent too (a client other than the CLI)."""
    for action, args in (("latency", {"seconds": -1}), ("latency", {"seconds": "nan"}),
                         ("drop", {"count": -3}), ("drop", {"count": "x"}),
                         ("slow_events", {"seconds": float("inf")}), ("nope", {}),
                         ("master", {"host": "nowhere"}), ("restart", {"downtime": -2})):
        body = json.dumps({"token": sim.control_token, "action": action, "args": args},
                          allow_nan=True).encode()
        r = request(sim, "POST", "/sim/control", body=body,
                    headers={"Content-Type": "application/json"})
        assert r.status == 400, (action, args, r)
        assert json.loads(r.body)["error"]
    assert faults(sim) == (0.0, 0, 0.0) and not sim.faults.down
