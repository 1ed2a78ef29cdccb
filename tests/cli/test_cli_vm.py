"""The scripting CLI on the simulator: listing, JSON output, every lifecycle command
and its refusals, dry runs, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import conn_args, password_file, xsctl
from tests.conftest import wait_for, xenapi_session
from xsctl.sim import Simulator


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> list[str]:
    return conn_args(sim, password_file(sim, tmp_path))


def state(sim: Simulator, name: str) -> str:
    return str(next(v["power_state"] for v in sim.store.all("VM").values() if v["name_label"] == name))


def test_vm_list_table(cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "list")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "POWER", "HOST"]
    names = [ln.split()[0] for ln in lines[1:]]
    assert "web-01" in names and "db-01" in names
    assert not any(n.startswith("Control") for n in names)  # no dom0
    assert "Debian" not in names  # no templates


def test_vm_list_json_uses_xapi_field_names(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "list", "--json")
    assert r.code == 0, r.err
    data = r.json()
    web = next(v for v in data if v["name_label"] == "web-01")
    assert web["power_state"] == "Running"
    assert web["uuid"] == next(v["uuid"] for v in sim.store.all("VM").values() if v["name_label"] == "web-01")
    assert web["resident_on"] in {h["uuid"] for h in sim.store.all("host").values()}
    assert web["memory_static_max"] == 2 * 1024**3 and web["VCPUs_at_startup"] == 2
    assert any(k.endswith("/ip") for k in web["networks"])
    assert len(data) == 25


def test_vm_list_filters(cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "list", "--json", "--power-state", "suspended")
    assert {v["name_label"] for v in r.json()} == {"k8s-node-03", "legacy-erp"}
    r = xsctl(*cli, "vm", "list", "--json", "--tag", "db")
    assert {v["name_label"] for v in r.json()} == {"db-01", "db-02"}
    r = xsctl(*cli, "vm", "list", "--json", "--templates")
    assert all(v["is_a_template"] for v in r.json()) and len(r.json()) > 10


def test_vm_show(cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "show", "db-01")
    assert r.code == 0, r.err
    assert "power state: Running" in r.out
    assert "disks:" in r.out and "snapshots:" in r.out and "before-upgrade" in r.out
    j = xsctl(*cli, "vm", "show", "db-01", "--json").json()
    assert len([d for d in j["disks"] if d["type"] == "Disk"]) == 2 and {s["name_label"] for s in j["snapshots"]} == {
        "before-upgrade", "nightly 2026-11-24"}


def test_names_uuids_and_prefixes(sim: Simulator, cli: list[str]) -> None:
    uuid = next(v["uuid"] for v in sim.store.all("VM").values() if v["name_label"] == "db-02")
    assert "db-02" in xsctl(*cli, "vm", "show", uuid).out
    assert "db-02" in xsctl(*cli, "vm", "show", uuid[:8]).out


def test_ambiguous_name_lists_candidates_and_changes_nothing(sim: Simulator, cli: list[str]) -> None:
    x = xenapi_session(sim)
    try:
        twin = x.xenapi.VM.get_by_name_label("web-staging")[0]
        clone = x.xenapi.VM.clone(twin, "web-staging")
    finally:
        x.xenapi.session.logout()
    tasks = len(sim.store.all("task"))
    r = xsctl(*cli, "vm", "start", "web-staging")
    assert r.code == 2
    assert "2 VMs are named 'web-staging'" in r.err
    for v in sim.store.all("VM").values():
        if v["name_label"] == "web-staging":
            assert v["uuid"] in r.err
            assert v["power_state"] == "Halted"
    assert len(sim.store.all("task")) == tasks
    assert clone


def test_unknown_vm_suggests(cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "shutdown", "web-0")
    assert r.code == 2
    assert "no VM named 'web-0'" in r.err and "web-01" in r.err


@pytest.mark.parametrize(
    "argv,name,before,after",
    [
        (["start"], "web-staging", "Halted", "Running"),
        (["shutdown"], "web-01", "Running", "Halted"),
        (["shutdown", "--force"], "ci-runner-02", "Paused", "Halted"),
        (["reboot"], "web-02", "Running", "Running"),
        (["reboot", "--force"], "web-03", "Running", "Running"),
        (["suspend"], "cache-01", "Running", "Suspended"),
        (["resume"], "k8s-node-03", "Suspended", "Running"),
        (["pause"], "monitor-01", "Running", "Paused"),
        (["unpause"], "ci-runner-02", "Paused", "Running"),
    ],
)
def test_lifecycle(sim: Simulator, cli: list[str], argv: list[str], name: str, before: str,
                   after: str) -> None:
    assert state(sim, name) == before
    r = xsctl(*cli, "vm", argv[0], name, *argv[1:])
    assert r.code == 0, r.err
    assert state(sim, name) == after
    assert sim.live_sessions() == 0


def test_start_on_and_migrate(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "start", "web-staging", "--on", "xcp-ng-03")
    assert r.code == 0, r.err
    vm = next(v for v in sim.store.all("VM").values() if v["name_label"] == "web-staging")
    assert sim.store.get(vm["resident_on"])["name_label"] == "xcp-ng-03"
    # live migration needs the guest's PV drivers, which report a moment after boot
    wait_for(lambda: "pool_migrate" in next(
        v for v in sim.store.all("VM").values() if v["name_label"] == "web-staging"
    )["allowed_operations"])
    r = xsctl(*cli, "vm", "migrate", "web-staging", "--host", "xcp-ng-01")
    assert r.code == 0, r.err
    vm = next(v for v in sim.store.all("VM").values() if v["name_label"] == "web-staging")
    assert sim.store.get(vm["resident_on"])["name_label"] == "xcp-ng-01"


def test_refusals_say_why(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "start", "web-01")
    assert r.code == 1
    assert "must be halted" in r.err and "VM_BAD_POWER_STATE" in r.err
    r = xsctl(*cli, "vm", "shutdown", "backup-01")
    assert r.code == 1 and "must be running" in r.err
    r = xsctl(*cli, "vm", "resume", "web-01")
    assert r.code == 1 and "suspended" in r.err
    r = xsctl(*cli, "vm", "migrate", "web-01", "--host", "nowhere")
    assert r.code == 2 and "no host named 'nowhere'" in r.err
    here = next(v for v in sim.store.all("VM").values() if v["name_label"] == "web-01")
    host = sim.store.get(here["resident_on"])["name_label"]
    r = xsctl(*cli, "vm", "migrate", "web-01", "--host", host)
    assert r.code == 2 and "this is where it runs" in r.err


def test_dry_run_changes_nothing(sim: Simulator, cli: list[str]) -> None:
    tasks = len(sim.store.all("task"))
    r = xsctl(*cli, "vm", "shutdown", "web-01", "--force", "--dry-run")
    assert r.code == 0, r.err
    assert "Async.VM.hard_shutdown(web-01)" in r.out
    assert "xe vm-shutdown uuid=" in r.out and "--force" in r.out
    assert state(sim, "web-01") == "Running"
    assert len(sim.store.all("task")) == tasks
    j = xsctl(*cli, "vm", "start", "web-staging", "--dry-run", "--json").json()
    assert j[0]["calls"] == ["Async.VM.start(web-staging, false, false)"]


def test_several_vms_report_each(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "shutdown", "web-01", "backup-01", "web-02")
    assert r.code == 1
    assert "web-01: shut down" in r.out and "web-02: shut down" in r.out
    assert "backup-01" in r.err and "must be running" in r.err
    assert state(sim, "web-01") == state(sim, "web-02") == "Halted"


def test_read_only_refuses_before_sending(sim: Simulator, cli: list[str]) -> None:
    tasks = len(sim.store.all("task"))
    r = xsctl(*cli, "--read-only", "vm", "shutdown", "web-01")
    assert r.code == 1 and "read-only" in r.err
    assert state(sim, "web-01") == "Running"
    assert len(sim.store.all("task")) == tasks
    assert xsctl(*cli, "--read-only", "vm", "list").code == 0


def test_host_sr_task_lists(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "host", "list")
    assert r.code == 0 and "xcp-ng-01" in r.out and "master" in r.out
    hosts = xsctl(*cli, "host", "list", "--json").json()
    assert [h["master"] for h in hosts].count(True) == 1
    srs = xsctl(*cli, "sr", "list", "--json").json()
    nfs = next(s for s in srs if s["name_label"] == "NFS storage")
    assert nfs["default"] and nfs["shared"] and nfs["physical_utilisation"] > 0
    assert xsctl(*cli, "task", "list", "--all", "--json").code == 0


def test_usage_errors_exit_2(cli: list[str]) -> None:
    assert xsctl(*cli, "vm", "frobnicate").code == 2
    assert xsctl("vm", "list").code == 2  # nothing to connect to
    assert xsctl(*cli, "vm", "migrate", "web-01").code == 2  # --host missing


def vm_named(sim: Simulator, name: str) -> dict[str, object]:
    rows = [v for v in sim.store.all("VM").values()
            if v["name_label"] == name and not v["is_a_template"]]
    assert len(rows) == 1, (name, len(rows))
    return rows[0]


def test_every_vm_operation_of_the_tui_runs_from_the_cli(sim: Simulator, cli: list[str]) -> None:
    """snapshot, revert, clone, copy, rename, set-memory, set-vcpus, destroy and resume
    --on: each changes the pool as xe's verb would."""
    r = xsctl(*cli, "vm", "snapshot", "web-staging", "--name", "before")
    assert r.code == 0 and "web-staging: snapshotted" in r.out, r.err
    snap = next(v for v in sim.store.all("VM").values()
                if v["is_a_snapshot"] and v["name_label"] == "before")
    r = xsctl(*cli, "vm", "revert", "web-staging", "--snapshot", "before")
    assert r.code == 0, r.err
    r = xsctl(*cli, "vm", "clone", "web-staging", "--new-name-label", "ws-clone")
    assert r.code == 0 and vm_named(sim, "ws-clone")["power_state"] == "Halted", r.err
    r = xsctl(*cli, "vm", "copy", "web-staging", "--name", "ws-copy", "--sr", "NFS storage")
    assert r.code == 0, r.err
    r = xsctl(*cli, "vm", "set-memory", "ws-clone", "--static-max", "3G")
    assert r.code == 0, r.err
    c = vm_named(sim, "ws-clone")
    assert int(str(c["memory_static_max"])) == int(str(c["memory_dynamic_max"])) == 3 * 1024**3
    r = xsctl(*cli, "vm", "set-vcpus", "ws-clone", "--vcpus", "3", "--max", "4")
    assert r.code == 0, r.err
    c = vm_named(sim, "ws-clone")
    assert (int(str(c["VCPUs_at_startup"])), int(str(c["VCPUs_max"]))) == (3, 4)
    r = xsctl(*cli, "vm", "rename", "ws-copy", "--name", "ws-copy-2")
    assert r.code == 0 and vm_named(sim, "ws-copy-2"), r.err
    # destroy asks: without a terminal it needs --yes, and nothing happens before
    r = xsctl(*cli, "vm", "destroy", "ws-copy-2")
    assert r.code == 2 and "--yes" in r.err and vm_named(sim, "ws-copy-2")
    r = xsctl(*cli, "vm", "destroy", "ws-copy-2", "--yes")
    assert r.code == 0, r.err
    assert not [v for v in sim.store.all("VM").values() if v["name_label"] == "ws-copy-2"]
    assert snap["snapshot_of"] in sim.store.all("VM")
    assert sim.live_sessions() == 0


def test_rename_to_a_name_in_use_warns(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "rename", "web-02", "--name", "web-01")
    assert r.code == 0
    assert "warning: Another VM is already named 'web-01'" in r.err
    r = xsctl(*cli, "vm", "show", "web-01")
    assert r.code == 2 and "2 VMs are named 'web-01'" in r.err


def test_local_srs_are_named_with_their_host(cli: list[str]) -> None:
    r = xsctl(*cli, "sr", "list")
    for h in ("xcp-ng-01", "xcp-ng-02", "xcp-ng-03"):
        assert f"Local storage on {h}" in r.out
    local = [s for s in xsctl(*cli, "sr", "list", "--json").json() if s["type"] == "lvm"]
    assert sorted(s["host"] for s in local) == ["xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
    assert {s["name_label"] for s in local} == {"Local storage"}  # xapi's own, in JSON


def test_revert_of_a_running_vm_says_it_powers_off(cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "revert", "web-01", "--snapshot", "pre-deploy", "--dry-run")
    assert r.code == 0
    assert "web-01 is running: it is powered off now and stays halted" in r.out
