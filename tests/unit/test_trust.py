"""Trust on first use, pins, a changed certificate, CA verification, and the pool
master's pin learned from xapi's thumbprint header on HOST_IS_SLAVE."""

from __future__ import annotations

import pytest

from tests.conftest import make_sim
from tests.unit.helpers import connect, target
from xsctl.config import known_hosts_file
from xsctl.sim import Simulator
from xsctl.xapi.client import Client
from xsctl.xapi.errors import (
    ChangedCertificate,
    FingerprintMismatch,
    UnknownCertificate,
    UsageError,
)
from xsctl.xapi.trust import KnownHosts, host_key, normalize_fingerprint, probe_fingerprint


def test_fingerprint_forms_normalise() -> None:
    fp = "SHA256:" + ":".join(["AB"] * 32)
    assert normalize_fingerprint(fp) == fp
    assert normalize_fingerprint("ab" * 32) == fp
    assert normalize_fingerprint("sha-256:" + ":".join(["ab"] * 32)) == fp
    with pytest.raises(UsageError):
        normalize_fingerprint("SHA256:nope")


def test_unknown_certificate_is_refused_with_its_fingerprint(sim: Simulator) -> None:
    with pytest.raises(UnknownCertificate) as e:
        Client.connect(target(sim, accept_fingerprint=None), sim.password)
    assert e.value.fingerprint == sim.fingerprint
    assert sim.fingerprint in str(e.value)
    assert sim.live_sessions() == 0  # refused before the login was sent
    assert KnownHosts(known_hosts_file()).entries() == []


def test_probe_matches_the_simulator(sim: Simulator) -> None:
    assert probe_fingerprint("127.0.0.1", sim.port) == sim.fingerprint


def test_accepting_pins_and_later_connections_need_nothing(sim: Simulator) -> None:
    with connect(sim) as c:
        assert c.conn.fingerprint == sim.fingerprint
    pins = KnownHosts(known_hosts_file()).entries()
    assert [(p.host, p.fingerprint) for p in pins] == [(host_key("127.0.0.1", sim.port), sim.fingerprint)]
    with connect(sim, accept_fingerprint=None) as c:
        assert c.cache.all("vm")


def test_interactive_confirmation_pins(sim: Simulator) -> None:
    seen: list[tuple[str, str]] = []

    def confirm(host: str, fp: str) -> bool:
        seen.append((host, fp))
        return True

    c = Client.connect(target(sim, accept_fingerprint=None), sim.password, confirm=confirm)
    c.close()
    assert seen == [(host_key("127.0.0.1", sim.port), sim.fingerprint)]
    assert KnownHosts(known_hosts_file()).get(seen[0][0]) == sim.fingerprint


def test_wrong_accepted_fingerprint_is_refused(sim: Simulator) -> None:
    """Not "has CHANGED": nothing was pinned; the user gave another fingerprint."""
    other = "SHA256:" + ":".join(["00"] * 32)
    with pytest.raises(FingerprintMismatch) as e:
        Client.connect(target(sim, accept_fingerprint=other), sim.password)
    assert (e.value.seen, e.value.said) == (sim.fingerprint, other)
    assert f"the server's certificate is {sim.fingerprint}" in str(e.value)
    assert f"you said                    {other}" in str(e.value)
    assert "CHANGED" not in str(e.value)
    assert e.value.exit_code == 3
    assert sim.live_sessions() == 0


def test_changed_certificate_refuses_and_shows_both() -> None:
    first = make_sim()
    port = first.port
    try:
        connect(first).close()
        old = first.fingerprint
    finally:
        first.stop()
    second = make_sim(port=port)  # "reinstalled": same address, new certificate
    try:
        with pytest.raises(ChangedCertificate) as e:
            Client.connect(target(second, accept_fingerprint=None), second.password)
        assert e.value.pinned == old and e.value.seen == second.fingerprint
        assert old in str(e.value) and second.fingerprint in str(e.value)
        assert "xsctl trust forget" in str(e.value)
        assert second.live_sessions() == 0
        # forgetting the pin lets the new certificate be accepted
        gone = KnownHosts(known_hosts_file()).forget("127.0.0.1")
        assert [p.fingerprint for p in gone] == [old]
        connect(second).close()
    finally:
        second.stop()


def test_ca_file_verification(sim: Simulator, tmp_path: object) -> None:
    import pathlib

    ca = pathlib.Path(str(tmp_path)) / "ca.pem"
    ca.write_bytes(sim.certs[sim.master_ref()].cert_pem)
    with connect(sim, accept_fingerprint=None, ca_file=str(ca)) as c:
        assert "CA" in c.conn.describe
    assert KnownHosts(known_hosts_file()).entries() == []  # no pins with a CA


def test_ca_file_rejects_another_certificate(sim: Simulator, tmp_path: object) -> None:
    import pathlib

    from xsctl.xapi.errors import ConnectionFailed

    member = next(h for h in sim.certs if h != sim.master_ref())
    ca = pathlib.Path(str(tmp_path)) / "ca.pem"
    ca.write_bytes(sim.certs[member].cert_pem)
    with pytest.raises(ConnectionFailed):
        Client.connect(target(sim, accept_fingerprint=None, ca_file=str(ca)), sim.password)
    assert sim.live_sessions() == 0


def test_host_is_slave_redirect_learns_the_masters_pin(sim: Simulator) -> None:
    """xapi answers a login on a member with HOST_IS_SLAVE [master]; with the request
    header sha-256:master it also sends the master's thumbprint
    (ocaml/xapi/api_server.ml create_thumbprint_header), over the member's trusted
    connection, so the client can pin the master without asking again."""
    member = next(h for h in sim.info()["hosts"] if not h["master"])
    if not member["url"]:
        pytest.fail("the simulator has no member listener on this machine")
    c = Client.connect(
        target(sim, accept_fingerprint=member["fingerprint"]).__class__(
            url=member["url"], user=sim.user, accept_fingerprint=member["fingerprint"]
        ),
        sim.password,
    )
    try:
        assert c.conn.endpoint.host == sim.master_address()
        assert c.conn.fingerprint == sim.fingerprint
        pins = {p.host: p for p in KnownHosts(known_hosts_file()).entries()}
        master_pin = pins[host_key(sim.master_address(), sim.port)]
        assert master_pin.fingerprint == sim.fingerprint
        assert "pool-master-via" in master_pin.note
        assert set(c.conn.members) == set(sim.addresses)
    finally:
        c.close()
    assert sim.live_sessions() == 0
