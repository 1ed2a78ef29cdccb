"""The metrics feed end to end: figures from every host of the pool (the members'
over their own pinned TLS, learned through the master), equal to what each host's
/rrd_updates says; one request per host per round, only while subscribed; a
subscriber that shows hosts does not download the VMs' figures."""

from __future__ import annotations

import http.client
import itertools
import json
import ssl
import threading
import time
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


def test_an_object_new_to_a_host_comes_with_its_last_minutes(quiet_sim: Simulator) -> None:
    """A sparkline's first round: the objects a host was not asked for before come with
    ``history`` seconds of rows; those it was come with the rows since its last answer."""
    sim = quiet_sim
    with connect(sim) as client:
        feed = client.metrics
        vms = {str(r["name_label"]): r for r in client.cache.all("vm").values()}
        web, db = (str(vms[n]["uuid"]) for n in ("web-01", "db-01"))
        assert vms["web-01"]["resident_on"] != vms["db-01"]["resident_on"]
        first = feed.round(False, frozenset({web}), 300)
        assert len(first.recent[("vm", web)].times) >= 60  # 5 min of 5 s rows
        assert feed.requests == 1 and not first.missing  # web-01's host alone
        again = feed.round(False, frozenset({web}), 300)
        assert len(again.recent.get(("vm", web), first.recent[("vm", web)]).times) < 60
        more = feed.round(False, frozenset({web, db}), 300)
        assert len(more.recent[("vm", db)].times) >= 60
        assert len(more.recent[("vm", web)].times) < 60
        assert feed.requests == 4  # one request per host per round, whatever is new
        rows = more.recent[("vm", db)]
        assert rows.times == sorted(rows.times) and "cpu0" in rows.series
        # the newest of the rows is the value the round reports
        assert more.of("vm", db)["cpu0"] == rows.series["cpu0"][-1]


def test_one_request_per_host_per_round_and_none_while_nothing_is_shown(
        quiet_sim: Simulator) -> None:
    sim = quiet_sim
    with connect(sim) as client:
        feed = client.metrics
        feed.interval = 0.1
        running = sorted((str(r["uuid"]), str(r["resident_on"]))
                         for r in client.cache.all("vm").values()
                         if r["power_state"] == "Running" and not r["is_control_domain"])
        host_of = dict(running)
        seen: list[tuple[int, set[str], set[str]]] = []  # requests so far, hosts, VMs

        def take(u: MetricsUpdate) -> None:
            seen.append((feed.requests, set(u.times) | set(u.missing),
                         {uuid for kind, uuid in u.recent if kind == "vm"}))

        sub = feed.subscribe(take, Interest(hosts=False, vms=frozenset(), history=300))
        try:
            # subscribed, nothing shown: the thread turns and asks nothing
            wait_for(lambda: feed.turns >= 3)
            assert feed.requests == 0 and not seen
            # a table scrolled three times
            for n in (0, 4, 8):
                shown = frozenset(u for u, _ in running[n:n + 4])
                sub.want(Interest(hosts=False, vms=shown, history=300))
                wait_for(lambda s=shown: seen and seen[-1][2] == s, timeout=20)
            # each round: one request to each host holding a VM shown, and no other
            before = 0
            for requests, hosts, vms in seen:
                assert requests - before == len(hosts) == len({host_of[v] for v in vms})
                before = requests
        finally:
            sub()
        wait_for(lambda: not feed.running)


def test_a_feed_started_again_reads_the_finest_archive() -> None:
    """Hidden for a quarter of an hour, shown again: the first round is the last
    minutes at 5 s, not the rows since the old answer (which only the 60 s archive
    holds, rrd.ml find_best_rras)."""
    sim = make_sim(drift=False, rrd_time=float((int(time.time()) // 5) * 5))
    try:
        with connect(sim) as client:
            feed = client.metrics
            feed.interval = 0.1
            want = Interest(hosts=True, history=300)
            one_round(feed, want)
            wait_for(lambda: not feed.running)
            assert sim.rrd_time is not None
            sim.rrd_time += 900
            update = one_round(feed, want)
            for h in client.cache.all("host").values():
                times = update.recent[("host", str(h["uuid"]))].times
                assert len(times) >= 60
                assert {b - a for a, b in itertools.pairwise(times)} == {5}
    finally:
        sim.stop()
