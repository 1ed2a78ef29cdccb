"""Connections: JSON-RPC first with XML-RPC fallback, wrong passwords, read-only,
re-login after an xapi restart, following a new pool master, no leaked sessions."""

from __future__ import annotations

import contextlib
import threading

import pytest

from tests.conftest import make_sim, wait_for
from tests.unit.helpers import connect, target
from xsctl.sim import Simulator
from xsctl.xapi.client import Client
from xsctl.xapi.errors import ConnectionFailed, ReadOnlyRefused, XapiError
from xsctl.xapi.session import Health


def test_json_rpc_is_preferred(sim: Simulator) -> None:
    with connect(sim) as c:
        assert c.conn.protocol == "JSON-RPC"
        assert "JSON-RPC" in c.conn.describe and "pinned" in c.conn.describe
        assert len([r for r in c.cache.all("vm").values() if not r["is_a_template"]]) > 20


def test_falls_back_to_xml_rpc_when_json_rpc_is_absent() -> None:
    s = make_sim(jsonrpc=False)
    try:
        with connect(s) as c:
            assert c.conn.protocol == "XML-RPC"
            # the same data, through the XenAPI package: int64 arrive as strings
            vm = next(r for r in c.cache.all("vm").values() if r["name_label"] == "web-01")
            assert vm["memory_static_max"] == str(2 * 1024**3)
        assert s.live_sessions() == 0
    finally:
        s.stop()


def test_xml_rpc_can_be_forced(sim: Simulator) -> None:
    with connect(sim, transport="xml") as c:
        assert c.conn.protocol == "XML-RPC"
        assert c.conn.call("pool.get_all")


def test_same_records_over_both_transports(sim: Simulator) -> None:
    from xsctl.xapi.models import Vm

    with connect(sim) as j, connect(sim, transport="xml") as x:
        ref = next(r for r, v in j.cache.all("vm").items() if v["name_label"] == "db-01")
        assert Vm.get(j.cache, ref) == Vm.get(x.cache, ref)


def test_wrong_password(sim: Simulator) -> None:
    with pytest.raises(XapiError) as e:
        Client.connect(target(sim), "not-the-password")
    assert e.value.code == "SESSION_AUTHENTICATION_FAILED"
    assert e.value.params[0] == sim.user
    assert "not-the-password" not in str(e.value)
    assert e.value.exit_code == 1
    assert sim.live_sessions() == 0


def test_unreachable_host_is_a_connection_error() -> None:
    from xsctl.sim.simulator import free_port
    from xsctl.xapi.client import Target

    with pytest.raises(ConnectionFailed) as e:
        Client.connect(Target(url=f"https://127.0.0.1:{free_port()}", timeout=3), "x")
    assert e.value.exit_code == 3


def test_read_only_refuses_writes_before_sending(sim: Simulator) -> None:
    with connect(sim, read_only=True) as c:
        vm = next(r for r, v in c.cache.all("vm").items() if v["name_label"] == "web-staging")
        tasks_before = len(sim.store.all("task"))
        with pytest.raises(ReadOnlyRefused):
            c.conn.call("VM.start", vm, False, False)
        with pytest.raises(ReadOnlyRefused):
            c.conn.call("Async.VM.clean_shutdown", vm)
        with pytest.raises(ReadOnlyRefused):
            c.conn.call("VM.set_name_label", vm, "renamed")
        assert len(sim.store.all("task")) == tasks_before
        assert sim.store.get(vm)["name_label"] == "web-staging"
        assert c.conn.call("VM.get_power_state", vm) == "Halted"  # reads still work
        assert "read-only" in c.conn.describe


def test_logout_on_close_and_on_errors(sim: Simulator) -> None:
    c = connect(sim)
    assert sim.live_sessions() == 1
    c.close()
    assert sim.live_sessions() == 0
    with pytest.raises(ZeroDivisionError), connect(sim):
        raise ZeroDivisionError
    assert sim.live_sessions() == 0


def test_threads_share_one_session_with_their_own_connections(sim: Simulator) -> None:
    with connect(sim, load=False) as c:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(20):
                    assert c.conn.call("VM.get_all")
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert sim.live_sessions() == 1
        assert len(c.conn.transport._all) >= 2  # type: ignore[union-attr]


def test_relogin_after_xapi_restart(sim: Simulator) -> None:
    with connect(sim, load=False) as c:
        first = c.conn.session
        states: list[Health] = []
        c.conn.on_state(lambda h, _, __: states.append(h))
        sim.restart(downtime=0.3)
        assert c.conn.call("pool.get_all")  # SESSION_INVALID -> login again
        assert c.conn.session != first
        assert Health.RECONNECTING in states and c.conn.health is Health.CONNECTED
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0


def test_follows_a_new_pool_master(sim: Simulator) -> None:
    new_master = next(h for h in sim.store.all("host") if h != sim.master_ref())
    if new_master not in sim.listeners:
        pytest.fail("no member listener")
    with connect(sim, load=False) as c:
        old_session = c.conn.session
        sim.change_master(new_master)
        assert c.conn.call("pool.get_all")
        assert c.conn.endpoint.host == sim.master_address()
        assert c.conn.session != old_session
        assert sim.live_sessions() == 1  # the old session was logged out
    assert sim.live_sessions() == 0


@pytest.mark.parametrize("transport", ["json", "xml"])
def test_dropped_connection_on_a_read_is_retried(sim: Simulator, transport: str) -> None:
    with connect(sim, load=False, transport=transport) as c:
        sim.faults.drop_next = 1
        assert c.conn.call("VM.get_all")
        assert sim.faults.drop_next == 0


@pytest.mark.parametrize("transport", ["json", "xml"])
def test_dropped_connection_on_a_write_is_reported_not_resent(sim: Simulator,
                                                              transport: str) -> None:
    """A write whose connection drops must not be sent again: it may have run. (Python's
    xmlrpc.client would resend it once; the XML-RPC transport turns that off.)"""
    with connect(sim, transport=transport) as c:
        vm = next(r for r, v in c.cache.all("vm").items() if v["name_label"] == "web-staging")
        sim.faults.drop_next = 1
        with pytest.raises(ConnectionFailed) as e:
            c.conn.call("VM.set_name_label", vm, "x")
        assert "may or may not have run" in str(e.value)
        # the connection itself recovered
        assert c.conn.call("VM.get_name_label", vm) == "web-staging"


def test_latency_does_not_break_calls(sim: Simulator) -> None:
    with connect(sim, load=False, timeout=5) as c:
        sim.faults.latency = 0.2
        assert c.conn.call("pool.get_all")


def test_timeout_is_enforced(sim: Simulator) -> None:
    with connect(sim, load=False, timeout=1) as c:
        sim.faults.latency = 2.5
        with pytest.raises(ConnectionFailed):
            c.conn.call("host.get_all")
        sim.faults.latency = 0
        wait_for(lambda: c.conn.call("host.get_all"))


@pytest.mark.parametrize("transport", ["json", "xml"])
def test_a_connection_dropped_during_login_is_retried_once(sim: Simulator,
                                                           transport: str) -> None:
    """As XenCenter does: a login whose connection drops before the answer is sent
    again once, on a fresh connection (nothing was created: the call never ran)."""
    sim.faults.drop_next = 1
    with connect(sim, load=False, transport=transport) as c:
        assert c.conn.session is not None
        assert sim.faults.drop_next == 0
        assert sim.live_sessions() == 1
    sim.faults.drop_next = 2  # twice in a row: the host really is in trouble
    with pytest.raises(ConnectionFailed) as e:
        connect(sim, load=False, transport=transport)
    assert e.value.exit_code == 3 and "dropped during session.login_with_password" in str(e.value)
    assert sim.live_sessions() == 0


def test_a_certificate_changed_mid_session_stops_everything_and_says_so(
        sim: Simulator) -> None:
    """The pool master comes back from a restart with another certificate than the
    pinned one (reinstalled, or someone in the middle; here the pin changes, which is
    the same to the client): the connection stops for good, and its state listener
    gets the ChangedCertificate with both fingerprints, for the app's dialog. Nothing
    is tried again: with the host gone as well, a call still answers with the
    certificate change, not with "refused", so no socket was opened."""
    from xsctl.config import known_hosts_file
    from xsctl.xapi import metrics
    from xsctl.xapi.errors import ChangedCertificate
    from xsctl.xapi.trust import KnownHosts, host_key

    client = connect(sim).watch()
    states: list[tuple[Health, str, object]] = []
    client.conn.on_state(lambda h, text, err: states.append((h, text, err)))
    other = "SHA256:" + ":".join(["AB"] * 32)
    KnownHosts(known_hosts_file()).add(host_key("127.0.0.1", sim.port), other)
    sim.restart(downtime=0.1)
    wait_for(lambda: client.conn.health is Health.UNTRUSTED, timeout=20)
    health, text, err = states[-1]
    assert health is Health.UNTRUSTED and "CHANGED" in text
    assert isinstance(err, ChangedCertificate)
    assert (err.pinned, err.seen) == (other, sim.fingerprint)
    assert client.conn.trust_failure is err
    wait_for(lambda: not client.cache.running)
    assert sim.live_sessions() == 0
    sim.stop()
    with pytest.raises(ChangedCertificate):
        client.conn.call("pool.get_all")
    with pytest.raises(ChangedCertificate):
        metrics.fetch(client.conn, "OpaqueRef:x", "127.0.0.1", 0)
    assert client.conn.health is Health.UNTRUSTED
    client.close()
    assert client.conn.health is Health.CLOSED


def _relay_on_ipv6_loopback(port: int) -> int:
    """A TCP relay on [::1] to the simulator (which listens on IPv4): the way to reach
    it through an IPv6 address with a zone id. Returns the relay's port."""
    import socket

    srv = socket.socket(socket.AF_INET6)
    srv.bind(("::1", 0))
    srv.listen()

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while True:
            c, _ = srv.accept()
            u = socket.create_connection(("127.0.0.1", port))
            threading.Thread(target=pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=pipe, args=(u, c), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    relay_port: int = srv.getsockname()[1]
    return relay_port


def test_an_ipv6_url_with_a_zone_id_connects(sim: Simulator) -> None:
    """RFC 6874 writes the zone of fe80::1%eth0 as %25 in a URL: it is decoded for the
    socket (here zone 1, the loopback interface, on ::1) and kept in the URL."""
    from xsctl.xapi.client import Target

    port = _relay_on_ipv6_loopback(sim.port)
    t = Target(url=f"https://[::1%251]:{port}", accept_fingerprint=sim.fingerprint)
    with Client.connect(t, sim.password) as c:
        assert c.conn.endpoint.host == "::1%1"
        assert c.conn.endpoint.url == f"https://[::1%251]:{port}"
        assert sim.live_sessions() == 1
    assert sim.live_sessions() == 0
