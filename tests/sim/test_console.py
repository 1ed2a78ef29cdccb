"""CONNECT /console as xapi answers it (console.ml, xapi_http.ml, http_svr.ml), and
the console records that come and go with a domain."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import make_sim, vm_ref, wait_task, xenapi_session
from tests.console_support import rfb_full_update, rfb_handshake
from tests.sim.wirehelp import unverified
from xsctl.sim import Simulator


def connect(sim: Simulator, query: str, *, address: str | None = None,
            headers: dict[str, str] | None = None,
            unix: str | None = None) -> tuple[socket.socket, bytes, bytes]:
    """CONNECT /console?QUERY; the socket, the answer's head and what followed it."""
    if unix is not None:
        s: socket.socket = socket.socket(socket.AF_UNIX)
        s.connect(unix)
    else:
        u = urlsplit(sim.url_for(address or sim.master_address()))
        raw = socket.create_connection((u.hostname, u.port), timeout=10)
        s = unverified().wrap_socket(raw, server_hostname=u.hostname)
    s.settimeout(10)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"CONNECT /console?{query} HTTP/1.0\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return s, head, rest


def read_all(s: socket.socket, first: bytes) -> bytes:
    data = first
    try:
        while chunk := s.recv(4096):
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


def read_until(s: socket.socket, first: bytes, text: bytes) -> bytes:
    data = first
    while text not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    return data


@pytest.fixture
def xs(sim: Simulator) -> Iterator[tuple[Simulator, Any]]:
    x = xenapi_session(sim)
    try:
        yield sim, x
    finally:
        x.xenapi.session.logout()


def consoles(x: Any, vm: str) -> dict[str, dict[str, Any]]:
    return {r["protocol"]: {**r, "ref": c} for c in x.xenapi.VM.get_consoles(vm)
            for r in [x.xenapi.console.get_record(c)]}


def test_records_follow_the_domain(xs: tuple[Simulator, Any]) -> None:
    _sim, x = xs
    hvm, pvh = vm_ref(x, "web-staging"), vm_ref(x, "k8s-node-01")
    assert x.xenapi.VM.get_consoles(hvm) == []  # halted: no domain, no console
    assert set(consoles(x, pvh)) == {"rfb", "vt100"}
    wait_task(x, x.xenapi.Async.VM.start(hvm, False, False))
    made = consoles(x, hvm)
    assert set(made) == {"rfb"}  # an HVM guest: its screen only
    host = x.xenapi.VM.get_resident_on(hvm)
    addr = x.xenapi.host.get_address(host)
    assert made["rfb"]["location"] == f"https://{addr}/console?uuid={made['rfb']['uuid']}"
    wait_task(x, x.xenapi.Async.VM.hard_shutdown(hvm))
    assert x.xenapi.VM.get_consoles(hvm) == []
    assert made["rfb"]["ref"] not in x.xenapi.console.get_all()
    for h in x.xenapi.host.get_all():  # create_misc.ml: a control domain has both
        dom0 = x.xenapi.host.get_control_domain(h)
        got = consoles(x, dom0)
        assert set(got) == {"rfb", "vt100"}
        assert got["vt100"]["location"].endswith(f"/console?ref={dom0}")


def test_text_console_through_connect(xs: tuple[Simulator, Any]) -> None:
    sim, x = xs
    vm = vm_ref(x, "k8s-node-01")
    c = consoles(x, vm)["vt100"]
    addr = urlsplit(c["location"]).hostname
    s, head, rest = connect(sim, f"ref={c['ref']}", address=addr,
                            headers={"Cookie": f"session_id={x._session}"})
    with s:
        assert head.decode() == ("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n"
                                 "Cache-Control: no-cache, no-store")
        read_until(s, rest, b"k8s-node-01 login: ")
        s.sendall(b"root\r\n")  # CR LF is one Enter
        read_until(s, b"", b"Password: ")
        s.sendall(b"hunter2\r")
        out = read_until(s, b"", b"root@k8s-node-01:~# ")
        assert b"hunter2" not in out  # a password is not echoed
        s.sendall(b"hostnmae\x7f\x7f\x7fame\r")  # backspace edits the line
        out = read_until(s, b"", b"root@k8s-node-01:~# ")
        assert b"\r\nk8s-node-01\r\n" in out
        s.sendall(b"xl list\r")
        out = read_until(s, b"", b"# ")
        assert b"-bash: xl: command not found" in out  # a guest has no xl


def test_vm_ref_and_uuid_mean_the_rfb_console(xs: tuple[Simulator, Any]) -> None:
    sim, x = xs
    vm = vm_ref(x, "k8s-node-01")
    addr = x.xenapi.host.get_address(x.xenapi.VM.get_resident_on(vm))
    uuid = x.xenapi.VM.get_uuid(vm)
    rfb_uuid = consoles(x, vm)["rfb"]["uuid"]
    for query in (f"ref={vm}", f"uuid={uuid}", f"uuid={rfb_uuid}"):
        s, head, rest = connect(sim, f"{query}&session_id={x._session}", address=addr)
        with s:
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert rest == b""
            init = rfb_handshake(s)
            assert (init.version, init.security, init.result) == (b"RFB 003.008\n", [1], 0)
            assert init.name == "k8s-node-01"
            n, got = rfb_full_update(s, init.width, init.height)
            assert n == 1 and got == init.width * init.height * 4


def test_rfb_3_3_client(xs: tuple[Simulator, Any]) -> None:
    """RFB 3.3 (the minimum consoles.md asks viewers to support): the server picks
    the security type and says it in four bytes."""
    sim, x = xs
    vm = vm_ref(x, "web-01")
    addr = x.xenapi.host.get_address(x.xenapi.VM.get_resident_on(vm))
    s, head, _ = connect(sim, f"ref={vm}&session_id={x._session}", address=addr)
    with s:
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert s.recv(12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.003\n")
        assert s.recv(4) == b"\x00\x00\x00\x01"
        s.sendall(b"\x00")
        width, height = int.from_bytes(s.recv(2), "big"), int.from_bytes(s.recv(2), "big")
        assert (width, height) == (640, 400)


def test_errors_as_xapi_gives_them(xs: tuple[Simulator, Any]) -> None:
    sim, x = xs
    sid = x._session
    running = vm_ref(x, "k8s-node-01")
    addr = x.xenapi.host.get_address(x.xenapi.VM.get_resident_on(running))
    vt = consoles(x, running)["vt100"]["ref"]

    def ask(query: str, **kw: Any) -> tuple[str, bytes, str]:
        s, head, rest = connect(sim, query, **kw)
        with s:
            body = read_all(s, rest)
        return head.split(b"\r\n", 1)[0].decode(), head, body.decode()

    # no credentials, a dead session: 401 with the handler's realm
    for q in (f"ref={vt}", f"ref={vt}&session_id=OpaqueRef:dead"):
        status, head, body = ask(q, address=addr)
        assert status == "HTTP/1.1 401 Unauthorised"
        assert b'WWW-Authenticate: Basic realm="connect_console"' in head
    # neither ref nor uuid; a ref that is no VM or console; an unknown uuid: 500
    for q, extra in ((f"session_id={sid}", "Console.Failure"),
                     (f"ref=OpaqueRef:nope&session_id={sid}", "Console.Failure"),
                     (f"uuid=nope&session_id={sid}",
                      "Db_exn.Read_missing_uuid(&quot;console&quot;, &quot;&quot;, "
                      "&quot;nope&quot;)")):
        status, _, body = ask(q, address=addr)
        assert status == "HTTP/1.1 500 Internal Error"
        assert body.endswith(f"<h1> Additional information </h1>{extra}</body></html>")
    # a VM that is not running has no console; one running elsewhere is not served here
    halted = vm_ref(x, "web-staging")
    other = next(a for a in sim.addresses if a != addr)
    for q, where in ((f"ref={halted}", addr), (f"ref={vt}", other)):
        status, _, body = ask(f"{q}&session_id={sid}", address=where)
        assert status == "HTTP/1.1 500 Internal Error" and "Console.Failure" in body
    # a path no CONNECT handler serves: the default callback's 403
    u = urlsplit(sim.url_for(addr))
    raw = socket.create_connection((u.hostname, u.port), timeout=10)
    with unverified().wrap_socket(raw, server_hostname=u.hostname) as t:
        t.sendall(b"CONNECT /elsewhere HTTP/1.0\r\n\r\n")
        assert read_all(t, b"").startswith(b"HTTP/1.0 403 Forbidden")


def test_basic_auth(xs: tuple[Simulator, Any]) -> None:
    sim, x = xs
    vm = vm_ref(x, "k8s-node-02")
    vt = consoles(x, vm)["vt100"]["ref"]
    addr = x.xenapi.host.get_address(x.xenapi.VM.get_resident_on(vm))
    basic = base64.b64encode(f"{sim.user}:{sim.password}".encode()).decode()
    s, head, rest = connect(sim, f"ref={vt}", address=addr,
                            headers={"Authorization": f"Basic {basic}"})
    with s:
        assert head.startswith(b"HTTP/1.1 200 OK")
        read_until(s, rest, b"login: ")


def test_unix_socket_is_trusted() -> None:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "xapi")
        sim = make_sim(unix_path=path)
        try:
            x = xenapi_session(sim)
            dom0 = x.xenapi.host.get_control_domain(sim_master(sim, x))
            vt = consoles(x, dom0)["vt100"]["ref"]
            x.xenapi.session.logout()
            s, head, rest = connect(sim, f"ref={vt}", unix=path)
            with s:
                assert head.startswith(b"HTTP/1.1 200 OK")
                read_until(s, rest, b"xcp-ng-01 login: ")
        finally:
            sim.stop()


def sim_master(sim: Simulator, x: Any) -> str:
    return str(x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0]))


def test_the_stream_ends_with_the_domain(xs: tuple[Simulator, Any]) -> None:
    """A shut-down VM's console closes, as xapi's proxy ends when the domain's does."""
    sim, x = xs
    vm = vm_ref(x, "k8s-node-02")
    c = consoles(x, vm)["vt100"]
    addr = urlsplit(c["location"]).hostname
    s, head, rest = connect(sim, f"ref={c['ref']}&session_id={x._session}", address=addr)
    with s:
        assert head.startswith(b"HTTP/1.1 200 OK")
        read_until(s, rest, b"login: ")
        wait_task(x, x.xenapi.Async.VM.hard_shutdown(vm))
        s.settimeout(5)
        assert s.recv(4096) == b""  # the end of the stream (a timeout would raise)
