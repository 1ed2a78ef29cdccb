"""/rrd_updates, /host_rrd and /vm_rrd over HTTPS with plain http.client.

Checked against ocaml/xcp-rrdd/bin/rrdd/rrdd_http_handler.ml (query arguments, JSON
negotiation, headers), ocaml/libs/xapi-rrd/lib/rrd_updates.ml (xport XML and JSON,
newest-first rows, meta), ocaml/libs/xapi-rrd/lib/rrd.ml (find_best_rras, full RRD
XML), ocaml/xapi/rrdd_proxy.ml (400 without start, /vm_rrd forwarding) and
ocaml/xapi/xapi_http.ml (authentication).
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import re
import ssl
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import XenAPI

from tests.conftest import make_sim, vm_ref, wait_for
from tests.sim.test_host_support import Reply, basic, get, hosts_by_address
from xsctl.sim import Simulator
from xsctl.sim.rrd import f_to_s

LEGEND = re.compile(r"^(AVERAGE|MIN|MAX|LAST):(vm|host):[0-9a-f-]{36}:[A-Za-z0-9_]+$")
HOST_DS = {f"cpu{i}" for i in range(16)} | {
    "cpu_avg", "loadavg", "memory_total_kib", "memory_free_kib",
    "pif_eth0_rx", "pif_eth0_tx", "pif_eth1_rx", "pif_eth1_tx"}


def without_sr_io(names: Iterable[str]) -> set[str]:
    """The host's data sources less the per-SR ones (which SRs its VMs use varies)."""
    return {n for n in names if not n.startswith("io_throughput_")}


@dataclass
class Xport:
    start: int
    step: int
    end: int
    legend: list[str]
    rows: list[tuple[int, list[str]]]


def parse_xml(body: bytes) -> Xport:
    text = body.decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<xport><meta><start>')
    root = ET.fromstring(text.split("\n", 1)[1])
    meta = root.find("meta")
    assert meta is not None
    legend = [e.text or "" for e in meta.iterfind("legend/entry")]
    rows = []
    for row in root.iterfind("data/row"):
        t = int(row.findtext("t") or "0")
        rows.append((t, [v.text or "" for v in row.iterfind("v")]))
    x = Xport(int(meta.findtext("start") or 0), int(meta.findtext("step") or 0),
              int(meta.findtext("end") or 0), legend, rows)
    assert int(meta.findtext("rows") or -1) == len(rows)
    assert int(meta.findtext("columns") or -1) == len(legend)
    assert all(len(vals) == len(legend) for _, vals in rows)
    return x


def parse_json(body: bytes) -> Xport:
    doc = json.loads(body)
    assert list(doc) == ["meta", "data"]
    meta = doc["meta"]
    assert list(meta) == ["start", "step", "end", "rows", "columns", "legend"]
    rows = [(d["t"], d["values"]) for d in doc["data"]]
    assert all(isinstance(t, int) for t, _ in rows)
    assert all(isinstance(v, str) for _, vals in rows for v in vals)
    assert meta["rows"] == len(rows) and meta["columns"] == len(meta["legend"])
    return Xport(meta["start"], meta["step"], meta["end"], meta["legend"], rows)


def column(x: Xport, name_re: str) -> list[str]:
    idx = [i for i, e in enumerate(x.legend) if re.search(name_re, e)]
    assert len(idx) == 1, (name_re, idx)
    return [vals[idx[0]] for _, vals in x.rows]


@pytest.fixture(scope="module")
def pool() -> Iterator[tuple[Simulator, Any]]:
    """One demo pool and a logged-in XenAPI session for the read-only tests."""
    s = make_sim()
    x = XenAPI.Session(s.url, ignore_ssl=True)
    x.xenapi.login_with_password(s.user, s.password, "1.0", "xsctl-tests")
    try:
        yield s, x
    finally:
        x.xenapi.session.logout()
        s.stop()


def updates(sim: Simulator, session: str, query: str, **kw: Any) -> Reply:
    return get(sim, f"/rrd_updates?session_id={session}&{query}", **kw)


def test_xml_xport(pool: tuple[Simulator, Any]) -> None:
    """rrd_updates.ml xml_of/create, rrdd_http_handler.ml headers."""
    sim, x = pool
    start = int(time.time()) - 300
    r = updates(sim, x.handle, f"start={start}&host=true&cf=AVERAGE&interval=5")
    assert r.status == 200
    assert [k for k, _ in r.raw_headers] == [
        "Connection", "Content-Length", "Cache-Control", "content-type",
        "Access-Control-Allow-Origin", "Access-Control-Allow-Headers"]
    assert r.headers["content-type"] == "text/xml"
    assert r.headers["connection"] == "keep-alive"
    assert int(r.headers["content-length"]) == len(r.body)
    u = parse_xml(r.body)
    assert u.step == 5
    assert u.start == (start // 5 + 1) * 5
    assert u.end == u.rows[0][0]
    times = [t for t, _ in u.rows]
    assert times == sorted(times, reverse=True)  # newest first
    assert all(a - b == 5 for a, b in itertools.pairwise(times))
    assert min(times) >= start and len(times) in (60, 61)
    assert all(LEGEND.match(e) for e in u.legend)
    assert u.legend[0].startswith("AVERAGE:host:")


def test_json_forms(pool: tuple[Simulator, Any]) -> None:
    """rrd_updates.ml json_of_t: same content, values as strings; the Accept header
    decides when it names json or xml, else the json query key."""
    sim, x = pool
    q = "start=-60&host=true"
    as_xml = parse_xml(updates(sim, x.handle, q).body)
    r = updates(sim, x.handle, q + "&json=true")
    assert r.headers["content-type"] == "application/json"
    assert parse_json(r.body).legend == as_xml.legend
    for accept, want_json in [("application/json", True), ("*/*", True),
                              ("text/xml", False), ("application/json;q=0.2, text/xml", False),
                              ("text/html", False)]:
        r = updates(sim, x.handle, q, headers={"Accept": accept})
        assert (r.headers["content-type"] == "application/json") is want_json, accept
    r = updates(sim, x.handle, q + "&json", headers={"Accept": "text/xml"})
    assert r.headers["content-type"] == "text/xml"
    r = updates(sim, x.handle, q + "&json", headers={"Accept": "text/html"})
    assert r.headers["content-type"] == "application/json"


def test_start_is_required(pool: tuple[Simulator, Any]) -> None:
    """rrdd_proxy.ml: without start, 400 with headers only and the connection closes."""
    sim, x = pool
    r = updates(sim, x.handle, "host=true")
    assert (r.status, r.reason, r.body) == (400, "Bad Request", b"")
    assert r.raw_headers == [("Connection", "close"), ("Cache-Control", "no-cache, no-store")]


def test_authentication(pool: tuple[Simulator, Any]) -> None:
    """xapi_http.ml: session_id in the query or a cookie, or HTTP Basic; otherwise
    401 with the handler's realm; an unknown scheme is a 500."""
    sim, x = pool
    r = get(sim, "/rrd_updates?start=-10")
    assert r.status == 401 and r.reason == "Unauthorised"
    assert r.headers["www-authenticate"] == 'Basic realm="get_rrd_updates"'
    assert b"HTTP 401 unauthorised" in r.body
    assert get(sim, "/rrd_updates?start=-10&session_id=OpaqueRef:bad").status == 401
    cookie = {"Cookie": f"session_id={x.handle}"}
    assert get(sim, "/rrd_updates?start=-10&host=true", headers=cookie).status == 200
    sessions = sim.live_sessions()
    assert get(sim, "/rrd_updates?start=-10&host=true",
               headers=basic(sim.user, sim.password)).status == 200
    # the Basic-auth session is logged out once the reply has gone
    wait_for(lambda: sim.live_sessions() == sessions)
    assert get(sim, "/rrd_updates?start=-10", headers=basic(sim.user, "wrong")).status == 401
    r = get(sim, "/rrd_updates?start=-10", headers={"Authorization": "Bearer abc"})
    assert r.status == 500 and b"Unknown authorization header" in r.body


def test_archive_choice(pool: tuple[Simulator, Any]) -> None:
    """rrd.ml find_best_rras: the first archive that holds start with enough steps
    per row; start=0 falls back to the longest (one row per day for a year)."""
    sim, x = pool
    now = int(time.time())
    cases = [(f"start={now - 600}&interval=60", 60), (f"start={now - 3 * 86400}", 3600),
             ("start=-60&interval=3600", 3600), (f"start={now - 30 * 86400}", 86400)]
    for q, step in cases:
        u = parse_xml(updates(sim, x.handle, q + "&host=true").body)
        assert u.step == step, q
    u = parse_xml(updates(sim, x.handle, "start=0&host=true").body)
    assert (u.step, len(u.rows), u.start) == (86400, 366, 86400)


def test_consolidation_functions(sim: Simulator) -> None:
    """rrdd_monitor.ml create_rras, rrd.ml find_best_rras: Only AVERAGE archives exist unless create_min_max_in_new_VM_RRDs is set, and
    then MIN/MAX only for the archives coarser than 5 s; asking for a missing CF is
    rrdd's No_RRA_Available: a 500."""
    x = XenAPI.Session(sim.url, ignore_ssl=True)
    x.xenapi.login_with_password(sim.user, sim.password)
    r = updates(sim, x.handle, "start=-60&host=true&cf=MIN")
    assert r.status == 500 and b"No_RRA_Available" in r.body
    pool_ref = x.xenapi.pool.get_all()[0]
    x.xenapi.pool.add_to_other_config(pool_ref, "create_min_max_in_new_VM_RRDs", "true")
    u = parse_xml(updates(sim, x.handle, "start=-600&interval=60&host=true").body)
    host_cols = [e for e in u.legend if ":host:" in e and ":io_throughput_" not in e]
    assert [e.split(":")[0] for e in host_cols] == (
        ["AVERAGE"] * len(HOST_DS) + ["MIN"] * len(HOST_DS) + ["MAX"] * len(HOST_DS))
    avg, lo, hi = (column(u, f"^{cf}:host:.*:cpu_avg$") for cf in ("AVERAGE", "MIN", "MAX"))
    assert all(float(a) <= float(b) <= float(c) for a, b, c in zip(lo, avg, hi, strict=True))
    u = parse_xml(updates(sim, x.handle, "start=-60&interval=5&host=true&cf=MIN").body)
    assert u.step == 60 and {e.split(":")[0] for e in u.legend} == {"MIN"}
    u = parse_xml(updates(sim, x.handle, "start=-60&host=true&cf=BOGUS").body)
    assert u.step == 5  # an unknown cf means all of them
    x.xenapi.session.logout()


def test_host_sr_throughput_is_its_vms_disk_traffic(pool: tuple[Simulator, Any]) -> None:
    """xcp-rrdd-iostat: io_throughput_{read,write}_<SR uuid[:8]> on the host, in MiB/s,
    the sum of the resident VMs' vbd_<dev>_{read,write} (bytes/s) on that SR; IOPS
    are positive whenever bytes move."""
    sim, x = pool
    _, host = hosts_by_address(x)[0]
    u = parse_xml(updates(sim, x.handle, "start=-30&host=true", address=host["address"]).body)
    t_row = u.rows[0][1]
    by_name = dict(zip(u.legend, t_row, strict=True))
    sums: dict[str, float] = {}
    for vm in host["resident_VMs"]:
        v = x.xenapi.VM.get_record(vm)
        if v["is_control_domain"] or v["power_state"] != "Running":
            continue
        for b in v["VBDs"]:
            vbd = x.xenapi.VBD.get_record(b)
            if not vbd["currently_attached"] or vbd["empty"]:
                continue
            sr8 = x.xenapi.SR.get_uuid(x.xenapi.VDI.get_SR(vbd["VDI"]))[:8]
            for op in ("read", "write"):
                rate = float(by_name[f"AVERAGE:vm:{v['uuid']}:vbd_{vbd['device']}_{op}"])
                iops = float(by_name[f"AVERAGE:vm:{v['uuid']}:vbd_{vbd['device']}_iops_{op}"])
                assert (rate > 0) == (iops > 0)
                sums[f"{op}_{sr8}"] = sums.get(f"{op}_{sr8}", 0.0) + rate / 1048576
    assert sums
    for key, want in sums.items():
        got = float(by_name[f"AVERAGE:host:{host['uuid']}:io_throughput_{key}"])
        assert got == pytest.approx(want, rel=1e-9)


def test_each_host_serves_its_own_vms(pool: tuple[Simulator, Any]) -> None:
    """rrdd_http_handler.ml get_host_stats: Only the RRDs held by the host whose listener got the request."""
    sim, x = pool
    for _h, rec in hosts_by_address(x):
        want = set()
        for vm in rec["resident_VMs"]:
            v = x.xenapi.VM.get_record(vm)
            if not v["is_control_domain"] and v["power_state"] in ("Running", "Paused"):
                want.add(v["uuid"])
        u = parse_xml(updates(sim, x.handle, "start=-20", address=rec["address"]).body)
        assert {e.split(":")[2] for e in u.legend} == want
        u = parse_xml(updates(sim, x.handle, "start=-20&host=true", address=rec["address"]).body)
        host_ds = {e.split(":")[3] for e in u.legend if e.split(":")[1] == "host"}
        assert {e.split(":")[2] for e in u.legend if ":host:" in e} == {rec["uuid"]}
        assert without_sr_io(host_ds) == HOST_DS


def test_data_sources_follow_the_store(pool: tuple[Simulator, Any]) -> None:
    """rrdd_http_handler.ml get_host_stats."""
    sim, x = pool
    vm = vm_ref(x, "db-01")
    rec = x.xenapi.VM.get_record(vm)
    metrics = x.xenapi.VM_metrics.get_record(rec["metrics"])
    host = x.xenapi.host.get_record(rec["resident_on"])
    u = parse_xml(updates(sim, x.handle, f"start=-30&host=true&vm_uuid={rec['uuid']}",
                          address=host["address"]).body)
    names = [e.split(":")[3] for e in u.legend if f":vm:{rec['uuid']}:" in e]
    vcpus = int(metrics["VCPUs_number"])
    assert names[:vcpus] == [f"cpu{i}" for i in range(vcpus)]
    vifs = sorted(x.xenapi.VIF.get_device(v) for v in rec["VIFs"]
                  if x.xenapi.VIF.get_currently_attached(v))
    vbds = sorted(x.xenapi.VBD.get_device(b) for b in rec["VBDs"]
                  if x.xenapi.VBD.get_currently_attached(b) and not x.xenapi.VBD.get_empty(b))
    assert {n for n in names if n.startswith("vif_")} == {
        f"vif_{d}_{k}" for d in vifs for k in ("rx", "tx")}
    assert {n for n in names if n.startswith("vbd_")} == {
        f"vbd_{d}_{k}" for d in vbds
        for k in ("read", "write", "iops_read", "iops_write")}
    assert {"memory", "memory_target", "memory_internal_free"} <= set(names)
    assert set(column(u, ":vm:.*:memory$")) == {f_to_s(float(metrics["memory_actual"]))}
    hm = x.xenapi.host_metrics.get_record(host["metrics"])
    assert set(column(u, ":host:.*:memory_total_kib$")) == {
        f_to_s(int(hm["memory_total"]) / 1024)}
    for name in [f"cpu{i}" for i in range(vcpus)] + ["cpu_avg"]:
        for v in column(u, f":{name}$") if name == "cpu_avg" else column(
                u, f":vm:.*:{name}$"):
            assert 0.0 <= float(v) <= 1.0
    paused = x.xenapi.VM.get_record(vm_ref(x, "ci-runner-02"))
    paused_host = x.xenapi.host.get_address(paused["resident_on"])
    u = parse_xml(updates(sim, x.handle, f"start=-30&vm_uuid={paused['uuid']}",
                          address=paused_host).body)
    assert set(column(u, ":cpu0$")) == {"0.0"}


def test_vm_uuid_filter_and_determinism(pool: tuple[Simulator, Any]) -> None:
    """rrdd_http_handler.ml uuids_filter_of."""
    sim, x = pool
    a, b = (x.xenapi.VM.get_uuid(vm_ref(x, n)) for n in ("web-01", "mail-01"))
    master = hosts_by_address(x)[0][1]["address"]
    resident = {x.xenapi.VM.get_uuid(v) for v in x.xenapi.host.get_resident_VMs(
        x.xenapi.host.get_by_uuid(hosts_by_address(x)[0][1]["uuid"]))}
    wanted = {a, b} & resident
    q = f"start={int(time.time()) - 1800}&interval=60&vm_uuid={a}&vm_uuid={b}"
    first = parse_xml(updates(sim, x.handle, q, address=master).body)
    assert {e.split(":")[2] for e in first.legend} == wanted
    second = parse_xml(updates(sim, x.handle, q, address=master).body)
    again = dict(second.rows)
    same = [(vals, again[t]) for t, vals in first.rows if t in again]
    assert len(same) >= 25 and all(v1 == v2 for v1, v2 in same)


def test_no_rrd_at_all_is_a_500(pool: tuple[Simulator, Any]) -> None:
    """rrd_updates.ml create_multi: No_RRA_Available."""
    sim, x = pool
    r = updates(sim, x.handle, "start=-10&vm_uuid=00000000-0000-4000-8000-000000000000")
    assert r.status == 500 and r.reason == "Internal Error"


def test_fresh_vm_has_nan_history(sim: Simulator) -> None:
    """rrd.ml: a fresh RRD holds NaN."""
    x = XenAPI.Session(sim.url, ignore_ssl=True)
    x.xenapi.login_with_password(sim.user, sim.password)
    vm = vm_ref(x, "web-staging")
    x.xenapi.VM.start(vm, False, False)
    rec = x.xenapi.VM.get_record(vm)
    address = x.xenapi.host.get_address(rec["resident_on"])
    u = parse_xml(updates(sim, x.handle, f"start=-600&vm_uuid={rec['uuid']}",
                          address=address).body)
    cpu = column(u, ":cpu0$")
    assert cpu[-1] == "NaN" and cpu[-10:] == ["NaN"] * 10
    x.xenapi.session.logout()


def test_keep_alive(pool: tuple[Simulator, Any]) -> None:
    """rrdd_http_handler.ml get_rrd_updates_handler: keep_alive."""
    sim, x = pool
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=10)
    for _ in range(2):
        conn.request("GET", f"/rrd_updates?session_id={x.handle}&start=-10&host=true")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read()
    conn.close()


def test_host_rrd(pool: tuple[Simulator, Any]) -> None:
    """rrd.ml xml_to_output: version, step, lastupdate, the data sources, then each
    archive with its rows oldest first; HTTP/1.0 and the connection closes."""
    sim, x = pool
    r = get(sim, f"/host_rrd?session_id={x.handle}")
    assert r.status == 200 and r.headers["connection"] == "close"
    text = r.body.decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<rrd><version>0003</version>')
    root = ET.fromstring(text.split("\n", 1)[1])
    assert root.findtext("step") == "5"
    assert abs(int(root.findtext("lastupdate") or 0) - time.time()) < 10
    assert without_sr_io(d.findtext("name") or "" for d in root.iterfind("ds")) == HOST_DS
    rras = root.findall("rra")
    assert [(a.findtext("cf"), a.findtext("pdp_per_row")) for a in rras] == [
        ("AVERAGE", "1"), ("AVERAGE", "12"), ("AVERAGE", "720"), ("AVERAGE", "17280")]
    assert [len(a.findall("database/row")) for a in rras] == [120, 120, 168, 366]
    doc = json.loads(get(sim, f"/host_rrd?session_id={x.handle}&json").body)
    assert doc["version"] == "0003" and len(doc["rra"][0]["database"]) == 120


def test_vm_rrd(pool: tuple[Simulator, Any]) -> None:
    """rrdd_proxy.ml get_vm_rrd_forwarder: 400 without uuid; the full RRD where the VM
    runs; a 302 to that host elsewhere; nothing for a VM that never ran."""
    sim, x = pool
    assert get(sim, f"/vm_rrd?session_id={x.handle}").status == 400
    rec = x.xenapi.VM.get_record(vm_ref(x, "web-02"))
    owner = x.xenapi.host.get_address(rec["resident_on"])
    path = f"/vm_rrd?session_id={x.handle}&uuid={rec['uuid']}"
    r = get(sim, path, address=owner)
    assert r.status == 200
    root = ET.fromstring(r.body.decode().split("\n", 1)[1])
    assert "cpu0" in {d.findtext("name") for d in root.iterfind("ds")}
    elsewhere = next(h["address"] for _, h in hosts_by_address(x) if h["address"] != owner)
    r = get(sim, path, address=elsewhere)
    assert r.status == 302 and r.headers["location"] == sim.url_for(owner) + path
    halted = x.xenapi.VM.get_uuid(vm_ref(x, "backup-01"))
    assert get(sim, f"/vm_rrd?session_id={x.handle}&uuid={halted}").status == 404


def test_value_format() -> None:
    """rrd_utils.ml f_to_s."""
    assert [f_to_s(v) for v in (0.0, 0.1, 1.0, 268435456.0, 1e20, math.nan, math.inf,
                                -math.inf, 1 / 3)] == [
        "0.0", "0.1", "1", "268435456", "1e+20", "NaN", "Infinity", "-Infinity",
        "0.333333333333333"]
