"""Fault injection and transport options of the simulator.

What xapi does in each case: a restart loses every session (xapi_session.ml keeps
them in the database, but a restarted toolstack on a new master or after a DB reset
does not know them; clients get SESSION_INVALID, which XenAPI.py answers by logging
in again) and the in-memory deletion lists behind event tokens
(db_cache_types.ml Table.deleted, xapi_message.ml ``deleted``); a master change
(pool.designate_new_master) turns the old master into a member that answers
HOST_IS_SLAVE [new master] (xapi_session.ml, session_check.ml); ports 443 (TLS,
its own certificate per host) and 80 (plain) serve the same API (protocol.md 1.1, 8).
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from tests.conftest import make_sim, wait_for, xenapi_session
from tests.jsonrpc import JsonRpcClient
from tests.sim.wirehelp import RawHttp, Wire
from xsctl.sim import Simulator, certs

CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, xmlrpc.client.ProtocolError,
                     ssl.SSLError, OSError)


@pytest.fixture
def fsim() -> Iterator[Simulator]:
    s = make_sim()
    try:
        yield s
    finally:
        s.stop()


def test_latency_is_added_to_every_call(fsim: Simulator) -> None:
    x = xenapi_session(fsim)
    fsim.faults.latency = 0.3
    t0 = time.monotonic()
    x.xenapi.pool.get_all()
    assert time.monotonic() - t0 >= 0.3
    fsim.faults.latency = 0.0
    t0 = time.monotonic()
    x.xenapi.pool.get_all()
    assert time.monotonic() - t0 < 0.3
    x.xenapi.session.logout()


def test_dropped_connection_mid_call(fsim: Simulator) -> None:
    """The request is read and the connection closed without an answer. CPython's
    xmlrpc.client Transport.request sends it once more on a new connection when the
    server disconnects (so XenAPI rides over one drop, and a non-idempotent call may
    run twice against a real xapi); a second drop reaches the caller."""
    x = xenapi_session(fsim)
    fsim.faults.drop_next = 1
    assert len(x.xenapi.pool.get_all()) == 1
    assert fsim.faults.drop_next == 0
    fsim.faults.drop_next = 2
    with pytest.raises(CONNECTION_ERRORS):
        x.xenapi.pool.get_all()
    assert fsim.faults.drop_next == 0
    assert len(x.xenapi.pool.get_all()) == 1
    raw = RawHttp(fsim.url)
    fsim.faults.drop_next = 1
    with pytest.raises(CONNECTION_ERRORS):
        raw.post_json({"method": "system.listMethods", "params": [], "id": 1})
    raw.close()
    x.xenapi.session.logout()


def test_restart(fsim: Simulator) -> None:
    """Every connection drops (a blocked event.from too), every session is invalid,
    deletions made while down are unknown to old tokens, a new login works, and
    XenAPI's re-login makes it invisible to simple scripts."""
    w = Wire(fsim, "jsonrpc-v2")
    ref = w.login(fsim)
    x = xenapi_session(fsim)
    net = w.call("network.create", ref, {"name_label": "doomed", "name_description": "",
                                         "other_config": {}})
    token = w.call("event.from", ref, ["network"], "", 5.0)["token"]
    waiter = JsonRpcClient(fsim.url)
    waiter.session = ref
    outcome: dict[str, Any] = {}

    def block() -> None:
        try:
            outcome["value"] = waiter("event.from", ["network"], token, 30.0)
        except CONNECTION_ERRORS as e:
            outcome["error"] = e

    t = threading.Thread(target=block, daemon=True)
    t.start()
    wait_for(lambda: len(fsim.store.cond._waiters) >= 1)  # type: ignore[attr-defined]

    restarting = threading.Thread(
        target=fsim.restart,
        kwargs={"downtime": 0.5, "while_down": lambda s: s.store.destroy(net)},
        daemon=True,
    )
    restarting.start()
    wait_for(lambda: fsim.faults.down)
    with pytest.raises(CONNECTION_ERRORS):  # xapi is down: connections are refused/dropped
        RawHttp(fsim.url).post_xml("system.listMethods")
    t.join(10)
    assert "error" in outcome, outcome
    restarting.join(10)
    assert not fsim.faults.down
    assert fsim.live_sessions() == 0
    w2 = Wire(fsim, "jsonrpc-v2")
    assert w2.fails("pool.get_all", ref) == ["SESSION_INVALID", ref]
    ref2 = w2.login(fsim)
    assert fsim.live_sessions() == 1
    # the deletion happened while xapi was down: an old token does not learn of it
    batch = w2.call("event.from", ref2, ["network"], token, 0.3)
    assert batch["events"] == []
    assert net not in w2.call("network.get_all", ref2)
    old = x.handle
    # XenAPI's kept-alive TLS connection died with the restart: its next call fails
    # (an SSL EOF on send is not one of the errors xmlrpc.client retries), the one
    # after reconnects, meets SESSION_INVALID and logs in again by itself
    with pytest.raises(CONNECTION_ERRORS):
        x.xenapi.pool.get_all()
    assert len(x.xenapi.pool.get_all()) == 1
    assert x.handle != old
    x.xenapi.session.logout()
    w2.call("session.logout", ref2)


def test_master_change(fsim: Simulator) -> None:
    x = xenapi_session(fsim)
    old_master, old_address = fsim.master_ref(), fsim.master_address()
    new_master = next(h for h in fsim.store.all("host") if h != old_master)
    new_address = fsim.store.get(new_master, "host")["address"]
    fsim.change_master(new_master)
    assert fsim.master_address() == new_address
    with pytest.raises(XenAPI.Failure) as e:
        XenAPI.Session(fsim.url, ignore_ssl=True).xenapi.login_with_password(
            fsim.user, fsim.password)
    assert e.value.details == ["HOST_IS_SLAVE", new_address]
    # the old master's xapi restarted as a member: kept-alive connections died
    with pytest.raises(CONNECTION_ERRORS):
        x.xenapi.pool.get_all()
    with pytest.raises(XenAPI.Failure) as e:  # the old session, on the old master
        x.xenapi.pool.get_all()
    assert e.value.details == ["HOST_IS_SLAVE", new_address]
    y = xenapi_session(fsim, fsim.url_for(new_address))
    pool = y.xenapi.pool.get_all()[0]
    assert y.xenapi.pool.get_master(pool) == new_master
    assert y.xenapi.host.get_address(new_master) == new_address != old_address
    y.xenapi.session.logout()


def test_slow_event_from(fsim: Simulator) -> None:
    j = JsonRpcClient(fsim.url)
    j.login(fsim.user, fsim.password)
    fsim.faults.event_delay = 0.4
    t0 = time.monotonic()
    batch = j("event.from", ["pool"], "", 5.0)
    assert time.monotonic() - t0 >= 0.4 and len(batch["events"]) == 1
    fsim.faults.event_delay = 0.0
    j.logout()
    j.close()


def test_tls_with_a_given_certificate(tmp_path: Path) -> None:
    """The master serves the certificate it is given (xapi-ssl.pem), and the
    simulator's fingerprint is that certificate's."""
    cert = certs.generate("pool-master.example", ["127.0.0.1"])
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.cert_pem)
    key_file.write_bytes(cert.key_pem)
    os.chmod(key_file, 0o600)
    s = make_sim(cert_file=str(cert_file), key_file=str(key_file), member_listeners=False)
    try:
        served = ssl.get_server_certificate(("127.0.0.1", s.port))
        assert ssl.PEM_cert_to_DER_cert(served) == cert.der
        assert s.fingerprint == "SHA256:" + cert.sha256
        x = XenAPI.Session(s.url, ignore_ssl=True)
        x.xenapi.login_with_password(s.user, s.password)
        x.xenapi.session.logout()
    finally:
        s.stop()


def test_plain_http_and_an_extra_http_port() -> None:
    plain = make_sim(tls=False, member_listeners=False)
    both = make_sim(http_port=0, member_listeners=False)
    try:
        assert plain.url.startswith("http://") and plain.info()["fingerprint"] is None
        x = xenapi_session(plain)
        assert len(x.xenapi.pool.get_all()) == 1
        x.xenapi.session.logout()
        assert both.url.startswith("https://") and both.http_port
        http_url = both.info()["http_url"]
        assert http_url == f"http://127.0.0.1:{both.http_port}"
        y = xenapi_session(both, http_url)
        z = JsonRpcClient(both.url)
        z.session = y.handle  # one pool behind both ports
        assert z("pool.get_all") == y.xenapi.pool.get_all()
        y.xenapi.session.logout()
        z.close()
    finally:
        plain.stop()
        both.stop()
