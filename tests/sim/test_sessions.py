"""Sessions: login and logout, failures, pool members, the local Unix socket.

Sources: ocaml/xapi/xapi_session.ml (login_with_password: preauth over the Unix
socket, HOST_IS_SLAVE before authentication, SESSION_AUTHENTICATION_FAILED [uname,
msg]), ocaml/xapi/session_check.ml (SESSION_INVALID, HOST_IS_SLAVE for an existing
session on a member), ocaml/xapi/api_server.ml (create_thumbprint_header,
is_host_is_slave_error), ocaml/xapi/xapi_globs.ml (header names and values),
ocaml/xapi/certificates.ml (upper-case colon fingerprints), and the XenAPI package
(XenAPI.py: login spellings, transparent re-login on SESSION_INVALID, xapi_local).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import ssl
import time
from collections.abc import Iterator

import pytest
import XenAPI

from tests.conftest import make_sim, wait_for, xenapi_session
from tests.jsonrpc import JsonRpcClient, JsonRpcError
from tests.sim.wirehelp import RawHttp, Wire
from xsctl.sim import Simulator

REQ = "x-xenapi-request-host-certificate-thumbprint"
RESP = "x-xenapi-response-host-certificate-thumbprint"


@pytest.fixture(scope="module")
def ssim() -> Iterator[Simulator]:
    s = make_sim(auth_fail_delay=0.3)
    try:
        yield s
    finally:
        s.stop()


def member_url(sim: Simulator) -> str:
    urls = [u for a, u in sim.member_urls().items() if a != sim.master_address()]
    assert urls, "no member listener (127.0.0.2 not bindable?)"
    return urls[0]


def served_fingerprint(url: str, algo: str = "sha256") -> str:
    host, port = url.split("//")[1].rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port)))
    der = ssl.PEM_cert_to_DER_cert(pem)
    return ":".join(f"{b:02X}" for b in hashlib.new(algo, der).digest())


def test_login_with_2_3_and_4_arguments(ssim: Simulator) -> None:
    """xapi_session.ml / datamodel: version defaults to "1.1", originator to ""."""
    x = XenAPI.Session(ssim.url, ignore_ssl=True)
    for args in ((), ("1.0",), ("1.0", "xsctl-sessions")):
        assert x.xenapi.login_with_password(ssim.user, ssim.password, *args) is None
        handle = x.handle
        assert handle.startswith("OpaqueRef:")
        rec = x.xenapi.session.get_record(handle)
        assert rec["originator"] == (args[1] if len(args) == 2 else "")
        assert rec["this_host"] == ssim.master_ref()
        assert rec["is_local_superuser"] is True and rec["auth_user_name"] == ssim.user
        x.xenapi.session.logout()
    j = JsonRpcClient(ssim.url)
    for args in ((), ("1.0",), ("1.0", "json")):
        ref = j.call("session.login_with_password", ssim.user, ssim.password, *args)
        j.call("session.logout", ref)
    j.close()


def test_authentication_failure_after_the_delay(ssim: Simulator) -> None:
    """SESSION_AUTHENTICATION_FAILED is documented without parameters but raised
    with [uname, PAM's message], after a delay against brute force."""
    x = XenAPI.Session(ssim.url, ignore_ssl=True)
    for user, pw in ((ssim.user, "wrong"), ("admin", ssim.password)):
        t0 = time.monotonic()
        with pytest.raises(XenAPI.Failure) as e:
            x.xenapi.login_with_password(user, pw, "1.0", "bad")
        assert time.monotonic() - t0 >= ssim.auth_fail_delay
        assert e.value.details == ["SESSION_AUTHENTICATION_FAILED", user,
                                   "Authentication failure"]
    j = JsonRpcClient(ssim.url, version=1)
    with pytest.raises(JsonRpcError) as je:
        j.call("session.login_with_password", "root", "nope")
    assert je.value.details == ["SESSION_AUTHENTICATION_FAILED", "root", "Authentication failure"]
    j.close()


def test_logout_then_session_invalid(ssim: Simulator) -> None:
    for protocol in ("xmlrpc", "jsonrpc-v1", "jsonrpc-v2"):
        w = Wire(ssim, protocol)
        ref = w.login(ssim)
        assert w.call("pool.get_all", ref)
        assert w.call("session.logout", ref) == ""
        assert w.fails("pool.get_all", ref) == ["SESSION_INVALID", ref]
        assert w.fails("session.logout", ref) == ["SESSION_INVALID", ref]
        w.close()


def test_xenapi_relogs_in_transparently_on_session_invalid(ssim: Simulator) -> None:
    """XenAPI.py _parse_result: SESSION_INVALID -> log in again and retry, so a
    simulator that reports it correctly keeps old scripts working."""
    x = xenapi_session(ssim)
    first = x.handle
    ssim.store.destroy(first)  # as xapi's session GC would
    assert len(x.xenapi.pool.get_all()) == 1
    assert x.handle != first
    x.xenapi.session.logout()


def test_login_on_a_member_is_host_is_slave(ssim: Simulator) -> None:
    """xapi_session.ml: a pool member refuses logins, before checking credentials."""
    url = member_url(ssim)
    x = XenAPI.Session(url, ignore_ssl=True)
    for pw in (ssim.password, "wrong"):
        t0 = time.monotonic()
        with pytest.raises(XenAPI.Failure) as e:
            x.xenapi.login_with_password(ssim.user, pw)
        assert e.value.details == ["HOST_IS_SLAVE", ssim.master_address()]
        assert time.monotonic() - t0 < ssim.auth_fail_delay
    j = JsonRpcClient(url)
    with pytest.raises(JsonRpcError) as je:
        j.login(ssim.user, ssim.password)
    assert je.value.details == ["HOST_IS_SLAVE", ssim.master_address()]
    j.close()


def test_existing_session_on_a_member_is_host_is_slave(ssim: Simulator) -> None:
    """session_check.ml: a non-pool session used on a member -> HOST_IS_SLAVE."""
    master = Wire(ssim, "xmlrpc")
    ref = master.login(ssim)
    member = Wire(ssim, "jsonrpc-v2", url=member_url(ssim))
    assert member.fails("VM.get_all", ref) == ["HOST_IS_SLAVE", ssim.master_address()]
    assert member.fails("VM.get_all", "OpaqueRef:bad") == ["SESSION_INVALID", "OpaqueRef:bad"]
    master.call("session.logout", ref)


def test_thumbprint_header_only_with_host_is_slave(ssim: Simulator) -> None:
    """api_server.ml create_thumbprint_header: with request header
    ``sha-256:master`` (or ``sha-1:master``) a HOST_IS_SLAVE answer carries the
    master's certificate thumbprint, upper-case hex with colons; nothing else does."""
    murl = member_url(ssim)
    member, master = RawHttp(murl), RawHttp(ssim.url)
    want256 = served_fingerprint(ssim.url)
    want1 = served_fingerprint(ssim.url, "sha1")
    assert ssim.fingerprint == "SHA256:" + want256
    r = member.post_xml("session.login_with_password", ssim.user, ssim.password,
                        headers={REQ: "sha-256:master"})
    assert "HOST_IS_SLAVE" in r.text and r.headers[RESP] == want256
    r = member.post_xml("session.login_with_password", ssim.user, ssim.password,
                        headers={REQ: "sha-1:master"})
    assert r.headers[RESP] == want1
    for version in (1, 2):
        payload = {"method": "session.login_with_password", "params": [ssim.user, ssim.password],
                   "id": 1, **({"jsonrpc": "2.0"} if version == 2 else {})}
        r = member.post_json(payload, headers={REQ: "sha-256:master"})
        assert "HOST_IS_SLAVE" in r.text and r.headers[RESP] == want256
    r = member.post_xml("session.login_with_password", ssim.user, ssim.password)
    assert RESP not in r.headers
    r = member.post_xml("session.login_with_password", ssim.user, ssim.password,
                        headers={REQ: "sha-512:master"})
    assert RESP not in r.headers
    r = member.post_xml("session.login_with_password", headers={REQ: "sha-256:master"})
    assert "MESSAGE_PARAMETER_COUNT_MISMATCH" in r.text and RESP not in r.headers
    r = master.post_xml("session.login_with_password", ssim.user, "wrong",
                        headers={REQ: "sha-256:master"})
    assert "SESSION_AUTHENTICATION_FAILED" in r.text and RESP not in r.headers
    member.close()
    master.close()


def test_live_session_counter(ssim: Simulator) -> None:
    base = ssim.live_sessions()
    xs = [xenapi_session(ssim) for _ in range(3)]
    assert ssim.live_sessions() == base + 3
    assert sorted(ssim.session_originators()).count("xsctl-tests") >= 3
    for x in xs:
        x.xenapi.session.logout()
    assert ssim.live_sessions() == base


@pytest.fixture
def unix_sim() -> Iterator[Simulator]:
    # XenAPI's UDSHTTPConnection turns every "_" of the host into "/": no "_" allowed
    d = f"/tmp/xsctl-{secrets.token_hex(6)}"
    os.mkdir(d)
    s = make_sim(unix_path=os.path.join(d, "xapi"), member_listeners=False)
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_local_login_over_the_unix_socket(unix_sim: Simulator) -> None:
    """XenAPI.xapi_local(): ``Session("http://_var_lib_xcp_xapi/",
    transport=UDSTransport())``, here with the simulator's socket path; over the
    socket root is pre-authenticated (xapi_session.ml ``Context.preauth``)."""
    path = unix_sim.unix_path
    assert path is not None and "_" not in path
    x = XenAPI.Session("http://" + path.replace("/", "_") + "/", transport=XenAPI.UDSTransport())
    x.xenapi.login_with_password("root", "not the password", "1.0", "dom0-script")
    rec = x.xenapi.session.get_record(x.handle)
    assert rec["is_local_superuser"] is True and rec["originator"] == "dom0-script"
    assert len(x.xenapi.VM.get_all()) == len(unix_sim.store.all("VM"))
    assert unix_sim.live_sessions() == 1
    x.xenapi.session.logout()
    wait_for(lambda: unix_sim.live_sessions() == 0)
    assert os.path.exists(path)
    unix_sim.stop()
    assert not os.path.exists(path)
