"""``xsctl host ...`` against the demo pool: the list and the detail, maintenance
mode with VMs that can move and one that cannot, a reboot refused then allowed, power
on, each refusal one line that changes nothing, and --dry-run sending nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.catalogue_support import check_xe_line
from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.conftest import wait_for, xenapi_session
from xsctl.sim import Simulator


def cli(sim: Simulator, tmp: Path, *argv: str) -> Run:
    return xsctl(*conn_args(sim, password_file(sim, tmp)), *argv)


def host_ref(sim: Simulator, name: str) -> str:
    return next(r for r, h in sim.store.all("host").items() if h["name_label"] == name)


def vm_ref(sim: Simulator, name: str) -> str:
    return next(r for r, v in sim.store.all("VM").items()
                if v["name_label"] == name and not v["is_a_template"]
                and not v["is_a_snapshot"])


def vm_ref_of_uuid(sim: Simulator, uuid: str) -> str:
    return next(r for r, v in sim.store.all("VM").items() if v["uuid"] == uuid)


def state(sim: Simulator) -> dict[str, Any]:
    """What a refusal must leave as it was: each host's enabled flag and each VM's
    power state and host."""
    st = sim.store
    return {"hosts": {r: h["enabled"] for r, h in st.all("host").items()},
            "vms": {r: (v["power_state"], v["resident_on"]) for r, v in st.all("VM").items()}}


def refused(r: Run, *fragments: str) -> None:
    """Exit 1 and one line on stderr that says why."""
    assert r.code == 1, (r.code, r.out, r.err)
    line = r.err.strip()
    assert "\n" not in line, line
    assert "Traceback" not in line
    for f in fragments:
        assert f in line, (f, line)


def test_list_keeps_its_columns_and_show_tells_the_hardware(sim: Simulator,
                                                            tmp_path: Path) -> None:
    r = cli(sim, tmp_path, "host", "list")
    assert r.code == 0, r.err
    header = r.out.splitlines()[0].split()
    assert header == ["NAME", "ADDRESS", "ROLE", "STATE", "MEMORY", "USED", "CPUS", "VMS",
                      "UPTIME", "VERSION"]
    assert "xcp-ng-01  127.0.0.1  master  enabled" in r.out
    rows = cli(sim, tmp_path, "host", "list", "--json").json()
    assert {h["name_label"] for h in rows} == {"xcp-ng-01", "xcp-ng-02", "xcp-ng-03"}
    assert set(rows[0]) == {"uuid", "name_label", "address", "enabled", "state", "master",
                            "memory_total", "memory_free", "cpu_count", "software_version",
                            "resident_VMs"}
    r = cli(sim, tmp_path, "host", "show", "xcp-ng-02")
    assert r.code == 0, r.err
    assert "Intel(R) Xeon(R) Silver 4214 CPU @ 2.20GHz: 1 socket, 16 CPUs" in r.out
    assert "eth0 Static 10.0.0.12/255.255.255.0 gw 10.0.0.1 dns 10.0.0.1" in r.out
    assert "eth1: up, 10 Gbit/s full duplex" in r.out
    d = cli(sim, tmp_path, "host", "show", "127.0.0.3", "--json").json()
    assert d["name_label"] == "xcp-ng-03" and d["master"] is False
    assert d["cpu"]["sockets"] == 1 and d["cpu"]["cpu_count"] == 16
    assert d["memory"]["dom0"] == 4 * 1024**3
    assert d["management"]["IP"] == "10.0.0.13" and d["management"]["DNS"] == ["10.0.0.1"]
    assert {n["device"] for n in d["nics"] if n["physical"]} == {"eth0", "eth1"}
    assert all(n["carrier"] and n["speed"] == 10000 for n in d["nics"])
    assert "dns-01" in d["resident_VMs"]


def test_maintenance_mode_with_vms_that_can_and_cannot_move(sim: Simulator,
                                                            tmp_path: Path) -> None:
    host = host_ref(sim, "xcp-ng-01")
    before = state(sim)
    r = cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01")
    refused(r, "xcp-ng-01: it has VMs that cannot move: dns-02 (its disk is on Local "
            "storage on xcp-ng-01, which xcp-ng-02 cannot reach)", "--shut-down")
    assert state(sim) == before
    # the plan, without sending anything
    tasks = len(sim.store.all("task"))
    plan = cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01", "--shut-down",
               "dns-02", "--dry-run", "--json").json()[0]
    uuid = {v: sim.store.get(vm_ref(sim, v), "VM")["uuid"] for v in ("web-01", "cache-01",
                                                                      "dns-02")}
    assert plan["calls"][0] == "host.disable(xcp-ng-01)"
    # marked as XenCenter marks it, with the VMs that leave (those that move, then
    # those shut down), before anything moves
    assert plan["calls"][1:3] == [
        "host.remove_from_other_config(xcp-ng-01, 'MAINTENANCE_MODE')",
        "host.add_to_other_config(xcp-ng-01, 'MAINTENANCE_MODE', 'true')"]
    migrated = ",".join(sorted((uuid["web-01"], uuid["cache-01"]),
                               key=lambda u: vm_ref_of_uuid(sim, u)))
    assert plan["calls"][4] == ("host.add_to_other_config(xcp-ng-01, "
                                f"'MAINTENANCE_MODE_EVACUATED_VMS_MIGRATED', '{migrated}')")
    assert plan["calls"][6] == ("host.add_to_other_config(xcp-ng-01, "
                                f"'MAINTENANCE_MODE_EVACUATED_VMS_HALTED', '{uuid['dns-02']}')")
    assert plan["calls"][7:] == ["Async.VM.clean_shutdown(dns-02)",
                                 "host.assert_can_evacuate(xcp-ng-01)",
                                 "Async.host.evacuate(xcp-ng-01)"]
    for line in plan["xe"]:
        check_xe_line(line)
    assert plan["undo_on_failure"] == ["xcp-ng-01's MAINTENANCE_MODE mark removed",
                                       "xcp-ng-01 enabled again"]
    moves = dict(m.split(" → ") for m in plan["notes"][0].split("now): ")[1].rstrip(".")
                 .split("; "))
    assert set(moves) == {"web-01", "cache-01"}
    assert len(sim.store.all("task")) == tasks and state(sim) == before
    # a VM that can move is not one to shut down
    r = cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01", "--shut-down", "web-01")
    assert r.code == 2 and "\n" not in r.err.strip(), r.err
    r = cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01", "--shut-down", "dns-02")
    assert r.code == 0, r.err
    assert r.out.strip() == "xcp-ng-01: is in maintenance mode"
    assert not sim.store.get(host, "host")["enabled"]
    assert sim.store.get(vm_ref(sim, "dns-02"), "VM")["power_state"] == "Halted"
    for vm, target in moves.items():  # where the plan said xapi would put them
        row = sim.store.get(vm_ref(sim, vm), "VM")
        assert row["power_state"] == "Running"
        assert sim.store.get(row["resident_on"], "host")["name_label"] == target
    listed = {h["name_label"]: h for h in cli(sim, tmp_path, "host", "list", "--json").json()}
    assert listed["xcp-ng-01"]["enabled"] is False and listed["xcp-ng-01"]["resident_VMs"] == 0
    shown = cli(sim, tmp_path, "host", "show", "xcp-ng-01", "--json").json()
    assert shown["state"] == "maintenance"
    assert {b["name_label"]: b["how"] for b in shown["bring_back"]} == {
        "dns-02": "started here", **{v: f"migrated back from {t}" for v, t in moves.items()}}
    text = cli(sim, tmp_path, "host", "show", "xcp-ng-01").out
    assert "dns-02 (started here)" in text
    # in maintenance already: refused, one line
    refused(cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01"),
            "xcp-ng-01: it is in maintenance mode already")
    # leaving it: a VM that moved and the one shut down are brought back, named
    plan = cli(sim, tmp_path, "host", "exit-maintenance", "xcp-ng-01", "--bring-back",
               "web-01", "--bring-back", "dns-02", "--dry-run", "--json").json()[0]
    assert plan["calls"][:2] == ["host.enable(xcp-ng-01)",
                                 "host.remove_from_other_config(xcp-ng-01, 'MAINTENANCE_MODE')"]
    assert plan["calls"][2:4] == [
        "Async.VM.start_on(dns-02, xcp-ng-01, false, false)",
        "Async.VM.pool_migrate(web-01, xcp-ng-01, {live: 'true'})"]
    assert "1 VM(s) that were moved off it stay where they are." in plan["notes"]
    for line in plan["xe"]:
        check_xe_line(line)
    # a VM that was never on it is not one to bring back
    r = cli(sim, tmp_path, "host", "exit-maintenance", "xcp-ng-01", "--bring-back", "db-02")
    assert r.code == 2 and "not one of the choices" in r.err, r.err
    assert not sim.store.get(host, "host")["enabled"]
    r = cli(sim, tmp_path, "host", "exit-maintenance", "xcp-ng-01", "--bring-back", "web-01",
            "--bring-back", "dns-02")
    assert r.code == 0 and r.out.strip() == "xcp-ng-01: enabled", r.err
    assert sim.store.get(host, "host")["enabled"]
    for vm in ("web-01", "dns-02"):
        row = sim.store.get(vm_ref(sim, vm), "VM")
        assert row["power_state"] == "Running" and row["resident_on"] == host
    assert sim.store.get(vm_ref(sim, "cache-01"), "VM")["resident_on"] != host
    assert not [k for k in sim.store.get(host, "host")["other_config"]
                if k.startswith("MAINTENANCE_MODE")]
    refused(cli(sim, tmp_path, "host", "enable", "xcp-ng-01"), "it is enabled already")


def test_reboot_refused_while_vms_run_then_allowed(sim: Simulator, tmp_path: Path) -> None:
    host = host_ref(sim, "xcp-ng-02")
    metrics = sim.store.get(host, "host")["metrics"]
    before = state(sim)
    refused(cli(sim, tmp_path, "host", "reboot", "xcp-ng-02"),
            "xcp-ng-02: it runs 7 VMs (ci-runner-01, db-01, k8s-node-01 and 4 more): "
            "evacuate it first", "--evacuate")
    refused(cli(sim, tmp_path, "host", "reboot", "xcp-ng-02", "--evacuate"),
            "ci-runner-01 (its disk is on Local storage on xcp-ng-02")
    assert state(sim) == before
    r = cli(sim, tmp_path, "host", "reboot", "xcp-ng-02", "--evacuate", "--shut-down",
            "ci-runner-01")
    assert r.code == 0, r.err
    assert r.out.strip() == "xcp-ng-02: is rebooting"
    wait_for(lambda: not sim.store.get(metrics, "host_metrics")["live"], timeout=10)
    wait_for(lambda: sim.store.get(metrics, "host_metrics")["live"]
             and sim.store.get(host, "host")["enabled"]
             and not sim.store.get(host, "host")["current_operations"], timeout=10)
    assert all(sim.store.get(v, "VM")["is_control_domain"]
               for v in sim.store.get(host, "host")["resident_VMs"])
    # empty now: a plain reboot is allowed (disable, then reboot)
    plan = cli(sim, tmp_path, "host", "reboot", "xcp-ng-02", "--dry-run", "--json").json()[0]
    assert plan["calls"] == ["host.disable(xcp-ng-02)", "host.reboot(xcp-ng-02)"]
    assert plan["xe"][-1].startswith("xe host-reboot uuid=")


def test_shutdown_then_power_on(sim: Simulator, tmp_path: Path) -> None:
    host = host_ref(sim, "xcp-ng-03")
    metrics = sim.store.get(host, "host")["metrics"]
    refused(cli(sim, tmp_path, "host", "power-on", "xcp-ng-03"), "xcp-ng-03: it is running")
    x = xenapi_session(sim)
    try:
        x.xenapi.host.disable(host)
        for vm in x.xenapi.host.get_vms_which_prevent_evacuation(host):
            x.xenapi.VM.hard_shutdown(vm)
        x.xenapi.host.evacuate(host)
    finally:
        x.xenapi.session.logout()
    r = cli(sim, tmp_path, "host", "shutdown", "xcp-ng-03")
    assert r.code == 0 and r.out.strip() == "xcp-ng-03: is shutting down", r.err
    wait_for(lambda: not sim.store.get(metrics, "host_metrics")["live"]
             and not sim.store.get(host, "host")["current_operations"], timeout=10)
    shown = cli(sim, tmp_path, "host", "show", "xcp-ng-03", "--json").json()
    assert shown["state"] == "off" and shown["power_on_mode"] == ""
    refused(cli(sim, tmp_path, "host", "power-on", "xcp-ng-03"),
            "xcp-ng-03: it has no power-on mode set")
    refused(cli(sim, tmp_path, "host", "enable", "xcp-ng-03"), "it is powered off")
    x = xenapi_session(sim)
    try:
        x.xenapi.host.set_power_on_mode(host, "wake-on-lan", {})
    finally:
        x.xenapi.session.logout()
    r = cli(sim, tmp_path, "host", "power-on", "xcp-ng-03")
    assert r.code == 0 and r.out.strip() == "xcp-ng-03: is powered on", r.err
    assert sim.store.get(metrics, "host_metrics")["live"]
    assert sim.store.get(host, "host")["enabled"]


def test_xapi_refuses_first_what_the_plan_did_not_foresee(sim: Simulator,
                                                          tmp_path: Path) -> None:
    """web-01 gets a VIF on a network with no PIF that only its host sees (xapi's
    VM_REQUIRES_NETWORK, which the cache's prediction does not model): the plan's
    first call, host.assert_can_evacuate, fails and nothing changes."""
    host = host_ref(sim, "xcp-ng-01")
    x = xenapi_session(sim)
    try:
        x.xenapi.VM.clean_shutdown(vm_ref(sim, "dns-02"))
        net = x.xenapi.network.create({"name_label": "private", "name_description": "",
                                       "MTU": "1500", "other_config": {}})
        x.xenapi.VIF.create({"device": "3", "network": net, "VM": vm_ref(sim, "web-01"),
                             "MAC": "", "MTU": "1500", "other_config": {},
                             "qos_algorithm_type": "", "qos_algorithm_params": {}})
    finally:
        x.xenapi.session.logout()
    before = state(sim)
    plan = cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01", "--dry-run",
               "--json").json()[0]
    assert plan["calls"][0] == "host.assert_can_evacuate(xcp-ng-01)"
    r = cli(sim, tmp_path, "host", "enter-maintenance", "xcp-ng-01")
    assert r.code == 1 and "Traceback" not in r.err, r.err
    assert "Some VMs cannot leave the host (VM_REQUIRES_NETWORK)" in r.err
    assert state(sim) == before
    assert sim.store.get(host, "host")["enabled"]
