"""``xsctl metrics HOST|VM`` against the simulator: the figures equal what the
object's host says in /rrd_updates, in the units printed; names that are not one
object, and a VM that is not running, are a clear one-line error."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import XenAPI

from tests.cli.helpers import conn_args, password_file, xsctl
from tests.unit.test_metrics import direct
from xsctl.sim import Simulator
from xsctl.xapi.perf import BLOCKS


def running_vm(x: object) -> dict[str, str]:
    recs = x.xenapi.VM.get_all_records()  # type: ignore[attr-defined]
    return next(r for r in recs.values() if r["power_state"] == "Running"
                and not r["is_control_domain"] and not r["is_a_template"])


def test_vm_json_matches_the_hosts_rrd(shared_sim: Simulator, tmp_path: Path) -> None:
    sim = shared_sim
    args = conn_args(sim, password_file(sim, tmp_path))
    x = XenAPI.Session(sim.url, ignore_ssl=True)
    x.xenapi.login_with_password(sim.user, sim.password)
    try:
        vm = running_vm(x)
        host = x.xenapi.host.get_record(vm["resident_on"])
        r = xsctl("metrics", vm["name_label"], "--json", "--since", "2h", *args)
        assert r.code == 0, r.err
        data = r.json()
        raw = direct(sim, host["address"], x.handle, data["times"][0] - 1, [vm["uuid"]],
                     interval=60)
    finally:
        x.xenapi.session.logout()
    assert data["kind"] == "vm" and data["uuid"] == vm["uuid"] and data["step"] == 60
    assert len(data["times"]) > 100
    series = {s["id"]: s for s in data["series"]}
    assert {"cpu", "memory", "disk_read", "disk_write", "iops_read", "iops_write",
            "net_rx", "net_tx"} <= set(series)
    assert series["cpu"]["unit"] == "%" and series["disk_read"]["unit"] == "MiB/s"
    legend = raw["meta"]["legend"]  # type: ignore[index]
    last = next(row for row in raw["data"] if row["t"] == data["times"][-1])  # type: ignore[union-attr]
    value = dict(zip(legend, (float(v) for v in last["values"]), strict=True))
    prefix = f"AVERAGE:vm:{vm['uuid']}:"
    cpus = [v for k, v in value.items() if k.startswith(prefix + "cpu")]
    assert series["cpu"]["values"][-1] == pytest.approx(100 * sum(cpus) / len(cpus), abs=1e-4)
    reads = sum(v for k, v in value.items()
                if k.startswith(prefix + "vbd_") and k.endswith("_read") and "_iops_" not in k)
    assert series["disk_read"]["values"][-1] == pytest.approx(reads / 1048576, abs=1e-4)
    rx = sum(v for k, v in value.items() if k.startswith(prefix + "vif_") and k.endswith("_rx"))
    assert series["net_rx"]["now"] == pytest.approx(rx / 1048576, abs=1e-4)
    known = [v for v in series["cpu"]["values"] if v is not None]
    assert series["cpu"]["max"] == pytest.approx(max(known))


def test_host_text_has_units_and_sparklines(shared_sim: Simulator, tmp_path: Path) -> None:
    sim = shared_sim
    args = conn_args(sim, password_file(sim, tmp_path))
    r = xsctl("host", "list", "--json", *args)
    host = r.json()[0]
    r = xsctl("metrics", host["address"], *args)
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].startswith(f"{host['name_label']} (host), last 10 minutes at 5 s: ")
    rows = {line.split("  ")[0].strip(): line for line in lines[2:]}
    assert {"CPU (average)", "CPU 0", "Memory used", "Network in", "Network out",
            "Disk read", "Disk write"} <= set(rows)
    assert rows["CPU (average)"].count("%") == 3
    assert "GiB" in rows["Memory used"]
    assert len(re.findall(r"\d (?:MiB|KiB|B)/s", rows["Disk read"])) == 3
    assert any(ch in BLOCKS for ch in rows["CPU 0"].split()[-1])
    r = xsctl("metrics", host["uuid"], "--json", "--since", "1w", *args)
    data = r.json()
    assert data["step"] == 3600 and data["kind"] == "host"
    cpu = next(s for s in data["series"] if s["id"] == "cpu")
    assert all(v is None or 0 <= v <= 100 for v in cpu["values"])
    assert not any(isinstance(v, float) and math.isnan(v) for v in cpu["values"])


def test_what_cannot_be_shown_is_one_line(shared_sim: Simulator, tmp_path: Path) -> None:
    sim = shared_sim
    args = conn_args(sim, password_file(sim, tmp_path))
    r = xsctl("metrics", "no-such-thing", *args)
    assert r.code == 2 and r.err.strip() == "xsctl: no host or VM named 'no-such-thing'"
    vms = xsctl("vm", "list", "--json", *args).json()
    halted = next(v for v in vms if v["power_state"] == "Halted")
    r = xsctl("metrics", halted["uuid"], *args)
    assert r.code != 0 and "is not running" in r.err and len(r.err.splitlines()) == 1
    r = xsctl("metrics", halted["uuid"], "--since", "5y", *args)
    assert r.code == 2 and "invalid choice: '5y'" in r.err
