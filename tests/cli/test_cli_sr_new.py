"""``xsctl sr probe``, ``sr create`` and ``sr introduce`` run for real against the
demo pool: what each probe finds (table and JSON), a create and an attach that leave
their SR and PBDs in the simulator's database, dry runs that send nothing, and the
refusals (a bad device-config, an unreachable NFS server, a disk in use, the system
disk), each one line, with nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.conftest import xenapi_session
from xsctl.sim import Simulator

NFS = ["--device-config", "server=10.0.0.5"]


@pytest.fixture
def run(sim: Simulator, tmp_path: Path) -> Iterator[Any]:
    conn = conn_args(sim, password_file(sim, tmp_path))
    before = {c: set(sim.store.all(c)) for c in ("SR", "PBD", "VDI")}

    def go(*argv: str) -> Run:
        return xsctl(*argv[:2], *conn, *argv[2:])

    yield go
    for c, refs in before.items():  # nothing the test did not mean to delete is gone
        assert refs <= set(sim.store.all(c)), c


def _srs(sim: Simulator, name: str) -> list[tuple[str, Any]]:
    return [(r, row) for r, row in sim.store.all("SR").items() if row["name_label"] == name]


def test_probe_walks_nfs_iscsi_and_hba(run: Any) -> None:
    r = run("sr", "probe", "--type", "nfs", *NFS)
    assert r.code == 0, r.err
    assert r.out.split()[:2] == ["EXPORT", "ACCESS"] and "/export/backup" in r.out
    assert "serverpath=EXPORT" in r.err
    r = run("sr", "probe", "--type", "nfs", *NFS, "--device-config", "serverpath=/export/xen",
            "--json")
    found = r.json()
    assert found["needs"] is None and found["via"] == "SR.probe"
    assert [s["in_pool"] for s in found["srs"]] == ["NFS storage"]
    r = run("sr", "probe", "--type", "lvmoiscsi", "--device-config", "target=10.0.0.7",
            "--json")
    assert r.json()["needs"] == "targetIQN"
    assert r.json()["iqns"][0] == {"address": "10.0.0.7",
                                   "iqn": "iqn.2024-09.com.example:storage"}
    r = run("sr", "probe", "--type", "lvmoiscsi", "--device-config", "target=10.0.0.7",
            "--device-config", "targetIQN=iqn.2024-09.com.example:storage")
    assert r.code == 0 and "LIO-ORG" in r.out and "SCSIid=ID" in r.err
    r = run("sr", "probe", "--type", "lvmohba", "--json")
    luns = r.json()["luns"]
    assert [x["path"] for x in luns] == ["/dev/sdd", "/dev/sde"]
    assert luns[1]["size"] == 4 * 1024**4


def test_create_dry_run_then_for_real(run: Any, sim: Simulator) -> None:
    tasks = len(sim.store.all("task"))
    argv = ["sr", "create", "--type", "nfs", *NFS, "--device-config",
            "serverpath=/export/backup", "--name", "Backups", "--shared"]
    r = run(*argv, "--dry-run", "--json")
    plan = r.json()[0]
    assert plan["action"] == "sr.create" and plan["calls"][0].startswith("Async.SR.create(")
    assert "device-config:serverpath=/export/backup" in plan["xe"][0]
    assert len(sim.store.all("task")) == tasks and not _srs(sim, "Backups")
    r = run(*argv)
    assert r.code == 0 and r.out == "Backups: created\n", r.err
    [(_, row)] = _srs(sim, "Backups")
    assert row["shared"] and len(row["PBDs"]) == 3
    # the probe now finds it, in the pool
    found = run("sr", "probe", "--type", "nfs", *NFS, "--device-config",
                "serverpath=/export/backup", "--json").json()
    assert [s["in_pool"] for s in found["srs"]] == ["Backups"]


def test_a_local_disk_needs_yes(run: Any, sim: Simulator) -> None:
    argv = ["sr", "create", "--type", "ext", "--device-config", "device=/dev/nvme0n1",
            "--name", "fast", "--host", "xcp-ng-03"]
    r = run(*argv)
    assert r.code == 2 and "add --yes" in r.err and not _srs(sim, "fast")
    r = run(*argv, "--yes")
    assert r.code == 0, r.err
    [(_, row)] = _srs(sim, "fast")
    host = sim.store.get(sim.store.get(row["PBDs"][0], "PBD")["host"], "host")
    assert row["type"] == "ext" and host["name_label"] == "xcp-ng-03"


def test_introduce_attaches_a_forgotten_sr(run: Any, sim: Simulator) -> None:
    x = xenapi_session(sim)
    try:
        master = x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0])
        sr = x.xenapi.SR.create(master, {"server": "10.0.0.5", "serverpath": "/export/backup"},
                                "0", "old", "", "nfs", "user", True, {})
        uuid = x.xenapi.SR.get_uuid(sr)
        for pbd in x.xenapi.SR.get_PBDs(sr):
            x.xenapi.PBD.unplug(pbd)
        x.xenapi.SR.forget(sr)
    finally:
        x.xenapi.session.logout()
    found = run("sr", "probe", "--type", "nfs", *NFS, "--device-config",
                "serverpath=/export/backup", "--json").json()
    assert found["srs"] == [{"uuid": uuid, "name_label": "", "size": None, "devices": "",
                             "in_pool": None}]
    argv = ["sr", "introduce", "--uuid", uuid, "--type", "nfs", *NFS, "--device-config",
            "serverpath=/export/backup", "--name", "old again", "--shared"]
    plan = run(*argv, "--dry-run", "--json").json()[0]
    assert [c.split("(")[0] for c in plan["calls"]] == (
        ["SR.introduce"] + ["PBD.create"] * 3 + ["Async.PBD.plug"] * 3)
    assert plan["xe"][0].startswith("xe sr-introduce") and "xe pbd-plug" in plan["xe"][-1]
    r = run(*argv)
    assert r.code == 0, r.err
    [(_, row)] = _srs(sim, "old again")
    assert row["uuid"] == uuid
    assert all(sim.store.get(p, "PBD")["currently_attached"] for p in row["PBDs"])
    r = run(*argv)
    assert r.code == 1 and "already in the pool, as old again" in r.err


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["sr", "probe", "--type", "nfs"], 2, "device-config needs server"),
    (["sr", "probe", "--type", "nfs", "--device-config", "server"], 2, "is not key=value"),
    (["sr", "probe", "--type", "zfs", *NFS], 2, "--type: one of"),
    (["sr", "probe", "--type", "lvmoiscsi", "--device-config", "target=10.0.0.7",
      "--device-config", "port=99999"], 2, "device-config port=99999: not a TCP port"),
    (["sr", "probe", "--type", "nfs", "--device-config", "server=nas.invalid"], 1,
     "nas.invalid: no NFS service answers there"),
    (["sr", "probe", "--type", "nfs", "--device-config", "server=203.0.113.9",
      "--device-config", "serverpath=/x"], 1, "no NFS service answers"),
    (["sr", "create", "--type", "nfs", *NFS, "--name", "x"], 2,
     "device-config needs serverpath"),
    (["sr", "create", "--type", "lvm", "--device-config", "device=sdb", "--name", "x",
      "--yes"], 2, "device-config device=sdb: not a device path"),
    (["sr", "create", "--type", "lvm", "--device-config", "device=/dev/sdb", "--name", "x",
      "--shared", "--yes"], 2, "cannot be shared"),
    (["sr", "create", "--type", "lvm", "--device-config", "device=/dev/sda", "--name", "x",
      "--yes"], 1, "Root system device"),
    (["sr", "create", "--type", "nfs", "--device-config", "server=nas.invalid",
      "--device-config", "serverpath=/x", "--name", "x"], 1, "SR_BACKEND_FAILURE_108"),
    (["sr", "introduce", "--uuid", "nope", "--type", "nfs", *NFS, "--device-config",
      "serverpath=/export/xen", "--name", "x"], 2, "is not an SR's UUID"),
])
def test_refusals_are_one_line_and_change_nothing(run: Any, sim: Simulator, argv: list[str],
                                                  code: int, says: str) -> None:
    srs = len(sim.store.all("SR"))
    r = run(*argv)
    assert r.code == code, (r.code, r.err)
    assert says in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err
    assert len(sim.store.all("SR")) == srs


def test_a_disk_in_use_is_refused_before_any_call(run: Any, sim: Simulator) -> None:
    """The demo's local SR is on /dev/disk/by-id/...-part3 of each host; a disk an SR
    made by xsctl uses is named with the SR that holds it."""
    r = run("sr", "create", "--type", "lvm", "--device-config", "device=/dev/sdb",
            "--name", "one", "--host", "xcp-ng-01", "--yes")
    assert r.code == 0, r.err
    tasks = len(sim.store.all("task"))
    r = run("sr", "create", "--type", "ext", "--device-config", "device=/dev/sdc,/dev/sdb",
            "--name", "two", "--host", "xcp-ng-01", "--yes")
    assert r.code == 1 and "/dev/sdb is in use by one on xcp-ng-01" in r.err
    assert len(sim.store.all("task")) == tasks and not _srs(sim, "two")
    # another host's /dev/sdb is free
    r = run("sr", "create", "--type", "lvm", "--device-config", "device=/dev/sdb",
            "--name", "two", "--host", "xcp-ng-02", "--yes")
    assert r.code == 0, r.err
