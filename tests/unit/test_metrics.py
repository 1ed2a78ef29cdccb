"""The metrics feed end to end: figures from every host of the pool (the members'
over their own pinned TLS, learned through the master), equal to what each host's
/rrd_updates says; one request per host per round, only while subscribed; a
subscriber that shows hosts does not download the VMs' figures."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from tests.conftest import make_sim, wait_for
from tests.unit.helpers import connect
from xsctl.config import known_hosts_file
from xsctl.sim import Simulator
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.metrics import PERIODS, Interest, MetricsFeed, MetricsUpdate, history
from xsctl.xapi.trust import KnownHosts, host_key


@pytest.fixture
def quiet_sim() -> Iterator[Simulator]:
    s = make_sim(drift=False)
    try:
        yield s
    finally:
        s.stop()


def direct(sim: Simulator, address: str, session: str, start: int,
           vm_uuids: list[str], interval: int = 5) -> dict[str, object]:
    """/rrd_updates read with http.client and nothing of xsctl's."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = http.client.HTTPSConnection(address, sim.port, context=ctx, timeout=10)
    q = [("start", str(start)), ("cf", "AVERAGE"), ("interval", str(interval)), ("host", "true"),
         ("json", "true"), ("session_id", session)] + [("vm_uuid", u) for u in vm_uuids]
    try:
        c.request("GET", "/rrd_updates?" + urlencode(q))
        r = c.getresponse()
        assert r.status == 200
        data: dict[str, object] = json.loads(r.read())
        return data
    finally:
        c.close()


def row_at(data: dict[str, object], t: int) -> dict[str, float]:
    """The values of the row for time ``t`` (a later read has newer rows too)."""
    meta = data["meta"]
    rows = data["data"]
    assert isinstance(meta, dict) and isinstance(rows, list)
    row = next(r for r in rows if int(r["t"]) == t)
    return {name: float(v) for name, v in zip(meta["legend"], row["values"], strict=True)}


def one_round(feed: MetricsFeed, interest: Interest) -> MetricsUpdate:
    got: list[MetricsUpdate] = []
    done = threading.Event()

    def take(u: MetricsUpdate) -> None:
        got.append(u)
        done.set()

    unsubscribe = feed.subscribe(take, interest)
    try:
        assert done.wait(20), "no round of metrics"
    finally:
        unsubscribe()
    return got[0]


def test_every_hosts_figures_equal_its_own_rrd_updates(quiet_sim: Simulator) -> None:
    sim = quiet_sim
    with connect(sim) as client:
        hosts = client.cache.all("host")
        assert len(hosts) == 3
        update = one_round(client.metrics, Interest(hosts=True))
        expect = {}
        for ref, h in hosts.items():
            dom0 = next(str(v["uuid"]) for v in (client.cache.get("vm", r) for r in
                        h["resident_VMs"]) if v and v["is_control_domain"])
            data = direct(sim, str(h["address"]), str(client.conn.session),
                          update.times[ref] - 60, [dom0])
            expect[str(h["uuid"])] = row_at(data, update.times[ref])
        assert not update.missing
        for uuid, values in expect.items():
            got = update.of("host", uuid)
            assert got, uuid  # every host answered, members included
            for name, v in values.items():
                kind, _obj, ds = name.split(":")[1:]
                if kind == "host":
                    assert got[ds] == pytest.approx(v), (uuid, ds)
            load = update.host_load(uuid)
            assert load is not None
            assert load.cpu == pytest.approx(values[f"AVERAGE:host:{uuid}:cpu_avg"])
            assert load.memory_total == int(values[f"AVERAGE:host:{uuid}:memory_total_kib"]
                                            * 1024)
        # the members' certificates were pinned through the master, not on trust
        pins = {p.host: p for p in KnownHosts(known_hosts_file()).entries()}
        for address in sim.addresses[1:]:
            assert pins[host_key(address, sim.port)].note == "via pool master"


def test_hosts_only_means_no_vm_figures_and_one_request_per_host(quiet_sim: Simulator) -> None:
    sim = quiet_sim
    with connect(sim) as client:
        feed = client.metrics
        before = feed.requests
        update = one_round(feed, Interest(hosts=True))
        assert feed.requests - before == len(client.cache.all("host"))
        guests = {str(r["uuid"]) for r in client.cache.all("vm").values()
                  if not r["is_control_domain"]}
        assert not {uuid for kind, uuid in update.values if kind == "vm"} & guests
        # asking for one VM brings that VM's figures, from the host it runs on
        web = next(r for r in client.cache.all("vm").values() if r["name_label"] == "web-01")
        update = one_round(feed, Interest(hosts=False, vms=frozenset({str(web["uuid"])})))
        assert "cpu0" in update.of("vm", str(web["uuid"]))
        # nobody subscribed: the thread ends and no request is made
        wait_for(lambda: not feed.running)
        n = feed.requests
        assert not feed.running and feed.requests == n


def test_a_member_with_another_certificate_gives_no_figures(quiet_sim: Simulator) -> None:
    """A member whose certificate is not the one pinned: its figures are missing (and
    say why), the others still come."""
    sim = quiet_sim
    with connect(sim) as client:
        wrong = "SHA256:" + ":".join(["AB"] * 32)
        KnownHosts(known_hosts_file()).add(host_key(sim.addresses[1], sim.port), wrong)
        update = one_round(client.metrics, Interest(hosts=True))
        member = next(ref for ref, h in client.cache.all("host").items()
                      if h["address"] == sim.addresses[1])
        assert member in update.missing and wrong in update.missing[member]
        assert not update.of("host", str(client.cache.all("host")[member]["uuid"]))
        assert len(update.values) >= 2  # the master's and the other member's


@pytest.mark.parametrize("name", ["10m", "2h", "1w", "1y"])
def test_history_of_a_vm_is_its_hosts_archive_for_the_period(
        shared_sim: Simulator, name: str) -> None:
    """Each period reads the archive xapi keeps at that resolution, from the VM's own
    host, and gives the same figures as that host's /rrd_updates."""
    sim = shared_sim
    period = PERIODS[name]
    with connect(sim) as client:
        ref, vm = next((r, v) for r, v in client.cache.all("vm").items()
                       if v["power_state"] == "Running" and not v["is_control_domain"])
        host = client.cache.get("host", vm["resident_on"])
        assert host is not None
        h = history(client.conn, client.cache, "vm", ref, period)
        direct_data = direct(sim, host["address"], client.conn.session or "",
                             -(period.seconds - period.step), [vm["uuid"]],
                             interval=period.step)
    assert h.step == period.step
    assert len(h.times) > 100 and h.times == sorted(h.times)
    assert h.times[-1] - h.times[0] <= period.seconds
    assert {"cpu0", "memory"} <= set(h.series)
    assert all(len(v) == len(h.times) for v in h.series.values())
    t = h.times[-1]
    want = row_at(direct_data, t)
    assert h.series["memory"][-1] == want[f"AVERAGE:vm:{vm['uuid']}:memory"]


def test_history_of_a_host_and_of_a_halted_vm(shared_sim: Simulator) -> None:
    with connect(shared_sim) as client:
        href, host = next(iter(client.cache.all("host").items()))
        h = history(client.conn, client.cache, "host", href, PERIODS["10m"])
        assert h.uuid == host["uuid"] and "cpu_avg" in h.series and "cpu0" in h.series
        assert len(h.times) == 120 and h.times[1] - h.times[0] == 5
        halted = next(r for r, v in client.cache.all("vm").items()
                      if v["power_state"] == "Halted" and not v["is_a_template"])
        with pytest.raises(XsctlError, match="is not running"):
            history(client.conn, client.cache, "vm", halted, PERIODS["10m"])
