"""``xsctl sr ...`` and ``xsctl vdi ...`` against the demo pool: the lists, and each
operation for real and with --dry-run, the refusals made before any call, and after
every test nothing gone that the test did not mean to delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.conftest import xenapi_session
from xsctl.sim import Simulator

GiB = 1024**3


def cli(sim: Simulator, tmp: Path, *argv: str) -> Run:
    return xsctl(*conn_args(sim, password_file(sim, tmp)), *argv)


def inventory(sim: Simulator) -> dict[str, Any]:
    """The storage the test may not lose: each SR, each disk (by uuid, with its SR)
    and each VM's VBDs (VM uuid, disk uuid)."""
    st = sim.store

    def uuid(ref: str) -> str:
        r = st.find(ref)
        return "" if r is None else str(r["uuid"])

    return {
        "srs": {r["uuid"] for r in st.all("SR").values()},
        "vdis": {r["uuid"]: uuid(r["SR"]) for r in st.all("VDI").values()},
        "vbds": {(uuid(r["VM"]), uuid(r["VDI"])) for r in st.all("VBD").values()},
    }


def only_gone(before: dict[str, Any], after: dict[str, Any], *, vdis: set[str] = frozenset(),
              srs: set[str] = frozenset()) -> None:
    """Nothing but ``vdis`` and ``srs`` (uuids) is gone; new disks may have come."""
    assert before["srs"] - after["srs"] == set(srs)
    assert set(before["vdis"]) - set(after["vdis"]) == set(vdis)
    for v, sr in before["vdis"].items():
        if v in after["vdis"]:
            assert after["vdis"][v] == sr
    lost = {b for b in before["vbds"] if b not in after["vbds"]}
    assert all(vdi in vdis for _, vdi in lost), lost


def sr_row(sim: Simulator, tmp: Path, name: str) -> dict[str, Any]:
    rows = cli(sim, tmp, "sr", "list", "--json").json()
    return next(r for r in rows if name in (r["name_label"], _shown(r)))


def _shown(r: dict[str, Any]) -> str:
    return f"{r['name_label']} on {r['PBDs'][0]['host_name']}" if r["host"] else r["name_label"]


def vdi_rows(sim: Simulator, tmp: Path, *argv: str) -> list[dict[str, Any]]:
    r = cli(sim, tmp, "vdi", "list", "--json", *argv)
    assert r.code == 0, r.err
    rows: list[dict[str, Any]] = r.json()
    return rows


def one_vdi(sim: Simulator, tmp: Path, name: str, *argv: str) -> dict[str, Any]:
    (row,) = [v for v in vdi_rows(sim, tmp, *argv) if v["name_label"] == name]
    return row


def tasks(sim: Simulator) -> int:
    return len(sim.store.all("task"))


# ------------------------------------------------------------------ lists


def test_sr_list_shows_usage_orphans_the_default_and_problems(sim: Simulator,
                                                                tmp_path: Path) -> None:
    rows = cli(sim, tmp_path, "sr", "list", "--json").json()
    by = {_shown(r): r for r in rows}
    assert by["NFS storage"]["default"] and not by["Archive"]["default"]
    assert by["Archive"]["problems"] == ["unplugged on xcp-ng-03"]
    assert by["Archive"]["orphans"] == 1 and by["Local storage on xcp-ng-01"]["orphans"] == 1
    local = by["Local storage on xcp-ng-02"]
    assert local["host"] and not local["shared"] and local["type"] == "lvm"
    assert local["physical_utilisation"] <= local["virtual_allocation"] + local["VDIs"] * GiB
    text = cli(sim, tmp_path, "sr", "list").out.splitlines()
    assert text[0].split()[:4] == ["NAME", "TYPE", "CONTENT", "WHERE"]
    assert any(line.startswith("* NFS storage") for line in text)
    assert any("Archive" in line and "unplugged on xcp-ng-03" in line for line in text)


def test_sr_show_names_a_local_sr_by_its_host(sim: Simulator, tmp_path: Path) -> None:
    r = cli(sim, tmp_path, "sr", "show", "Local storage on xcp-ng-02", "--json")
    assert r.code == 0, r.err
    shown = r.json()
    assert shown["PBDs"][0]["host_name"] == "xcp-ng-02"
    assert {d["SR"] for d in shown["disks"]} == {shown["uuid"]}
    # "Local storage" alone is every host's: the error lists them by host
    r = cli(sim, tmp_path, "sr", "show", "Local storage")
    assert r.code == 2 and "Local storage on xcp-ng-03" in r.err
    text = cli(sim, tmp_path, "sr", "show", "Archive").out
    assert "xcp-ng-03: unplugged" in text and "1 used by no VM" in text


def test_vdi_list_finds_the_orphans_and_says_who_uses_each_disk(sim: Simulator,
                                                               tmp_path: Path) -> None:
    orphans = vdi_rows(sim, tmp_path, "--orphans")
    assert sorted(v["name_label"] for v in orphans) == ["old-web 0", "scratch"]
    assert all(v["orphan"] and v["VBDs"] == [] for v in orphans)
    archive = vdi_rows(sim, tmp_path, "--sr", "Archive")
    assert [v["name_label"] for v in archive] == ["old-web 0"]
    snap = next(v for v in vdi_rows(sim, tmp_path) if v["is_a_snapshot"])
    assert snap["snapshot_of"] and snap["VBDs"][0]["is_a_snapshot"]
    running = next(v for v in vdi_rows(sim, tmp_path, "--sr", "NFS storage")
                   if any(b["currently_attached"] for b in v["VBDs"]))
    text = cli(sim, tmp_path, "vdi", "show", running["uuid"]).out
    assert "attached" in text and running["VBDs"][0]["VM_name"] in text
    lines = cli(sim, tmp_path, "vdi", "list", "--orphans").out.splitlines()
    assert len(lines) == 3 and all("no VM" in line for line in lines[1:])


# ------------------------------------------------------------------ disks


def test_a_disk_is_created_grown_copied_renamed_and_deleted(sim: Simulator,
                                                            tmp_path: Path) -> None:
    before = inventory(sim)
    dry = cli(sim, tmp_path, "vdi", "create", "NFS storage", "--name", "data", "--size",
              "10GiB", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()[0]["calls"][0].startswith("VDI.create(")
    assert inventory(sim) == before
    r = cli(sim, tmp_path, "vdi", "create", "NFS storage", "--name", "data", "--size",
            "10GiB", "--json")
    assert r.code == 0 and r.json() == [{"sr": "NFS storage", "ok": True}], r.err
    disk = one_vdi(sim, tmp_path, "data")
    assert disk["virtual_size"] == 10 * GiB and disk["orphan"]

    r = cli(sim, tmp_path, "vdi", "resize", disk["uuid"], "--size", "20G")
    assert r.code == 0, r.err
    assert one_vdi(sim, tmp_path, "data")["virtual_size"] == 20 * GiB

    r = cli(sim, tmp_path, "vdi", "copy", disk["uuid"], "--sr", "Local storage on xcp-ng-02")
    assert r.code == 0, r.err
    copies = [v for v in vdi_rows(sim, tmp_path) if v["name_label"] == "data"]
    assert len(copies) == 2
    copy = next(v for v in copies if v["uuid"] != disk["uuid"])
    assert copy["SR_name"] == "Local storage on xcp-ng-02"
    assert copy["virtual_size"] == 20 * GiB

    r = cli(sim, tmp_path, "vdi", "rename", copy["uuid"], "--name", "data copy")
    assert r.code == 0, r.err
    assert one_vdi(sim, tmp_path, "data copy")["uuid"] == copy["uuid"]

    # deleting asks for the name on a terminal; a script says --yes
    r = cli(sim, tmp_path, "vdi", "destroy", disk["uuid"])
    assert r.code == 2 and "--yes" in r.err
    for uuid in (disk["uuid"], copy["uuid"]):
        r = cli(sim, tmp_path, "vdi", "destroy", uuid, "--yes", "--json")
        assert r.code == 0 and r.json()[0]["ok"], r.err
    only_gone(before, inventory(sim))


def test_deleting_a_disk_says_who_used_it(sim: Simulator, tmp_path: Path) -> None:
    before = inventory(sim)
    halted = next(v for v in vdi_rows(sim, tmp_path, "--sr", "NFS storage")
                  if v["VBDs"] and all(b["power_state"] == "Halted" for b in v["VBDs"])
                  and not v["is_a_snapshot"])
    vm = halted["VBDs"][0]["VM_name"]
    plan = cli(sim, tmp_path, "vdi", "destroy", halted["uuid"], "--dry-run", "--json").json()[0]
    assert any(f"Used by {vm} (halted" in n for n in plan["notes"]), plan
    orphan = one_vdi(sim, tmp_path, "old-web 0")
    plan = cli(sim, tmp_path, "vdi", "destroy", orphan["uuid"], "--dry-run", "--json").json()[0]
    assert "No VM uses it." in plan["notes"]
    r = cli(sim, tmp_path, "vdi", "destroy", halted["uuid"], "--yes")
    assert r.code == 0, r.err
    after = inventory(sim)
    only_gone(before, after, vdis={halted["uuid"]})
    assert (halted["VBDs"][0]["VM"], halted["uuid"]) not in after["vbds"]


def test_disk_refusals_are_made_before_any_call(sim: Simulator, tmp_path: Path) -> None:
    before = inventory(sim)
    n = tasks(sim)
    # the SR is full: a thick SR takes the whole size at once
    r = cli(sim, tmp_path, "vdi", "create", "Local storage on xcp-ng-01", "--name", "big",
            "--size", "1000G")
    assert r.code == 1 and "too full" in r.err and "SR_FULL" in r.err
    # in use: a running VM has it attached
    running = next(v for v in vdi_rows(sim, tmp_path, "--sr", "NFS storage")
                   if any(b["currently_attached"] for b in v["VBDs"]))
    vm = next(b["VM_name"] for b in running["VBDs"] if b["currently_attached"])
    r = cli(sim, tmp_path, "vdi", "destroy", running["uuid"], "--yes")
    assert r.code == 1 and f"{vm} (running) has it attached" in r.err and "VDI_IN_USE" in r.err
    r = cli(sim, tmp_path, "vdi", "resize", running["uuid"], "--size", "2T")
    assert r.code == 1 and "cannot resize it live" in r.err
    # shrinking, in the driver's words
    orphan = one_vdi(sim, tmp_path, "old-web 0")
    r = cli(sim, tmp_path, "vdi", "resize", orphan["uuid"], "--size", "8G")
    assert r.code == 1 and "shrinking not allowed" in r.err
    r = cli(sim, tmp_path, "vdi", "resize", orphan["uuid"], "--size", "3000G")
    assert r.code == 1 and "2040 GiB" in r.err
    # an ISO library cannot take a copy
    r = cli(sim, tmp_path, "vdi", "copy", orphan["uuid"], "--sr", "ISO library")
    assert r.code == 2 and "an ISO library" in r.err
    assert tasks(sim) == n
    assert inventory(sim) == before


def test_a_disk_attached_to_a_running_vm_is_planned_to_grow_online_where_the_sr_can(
        sim: Simulator, tmp_path: Path) -> None:
    """xapi lists resize_online only where the SR's driver has VDI_RESIZE_ONLINE (the
    simulated xapi's datamodel removed the call, as xapi did from Inverness until it
    came back for such drivers): the plan is VDI.resize_online then, and xe's
    online=true."""
    st = sim.store
    running = next(v for v in vdi_rows(sim, tmp_path, "--sr", "NFS storage")
                   if any(b["currently_attached"] for b in v["VBDs"]))
    with st.lock:
        for ref, row in st.all("SM").items():
            if row["type"] == "nfs":
                st.update(ref, {"features": {**row["features"], "VDI_RESIZE_ONLINE": 1}})
        st.refresh_allowed("VDI")
    plan = cli(sim, tmp_path, "vdi", "resize", running["uuid"], "--size", "100G", "--dry-run",
               "--json").json()[0]
    assert plan["calls"][0].startswith("Async.VDI.resize_online(")
    assert plan["xe"][0].endswith("online=true")
    assert "keeps running" in " ".join(plan["notes"])


# ------------------------------------------------------------------ SRs


def test_repair_detach_reattach_scan_and_set_default(sim: Simulator, tmp_path: Path) -> None:
    before = inventory(sim)
    r = cli(sim, tmp_path, "sr", "plug", "Archive", "--json")
    assert r.code == 0, r.err
    assert all(p["currently_attached"] for p in sr_row(sim, tmp_path, "Archive")["PBDs"])
    assert sr_row(sim, tmp_path, "Archive")["problems"] == []
    r = cli(sim, tmp_path, "sr", "plug", "Archive")
    assert r.code == 1 and "plugged on every host" in r.err

    r = cli(sim, tmp_path, "sr", "unplug", "Archive")
    assert r.code == 0, r.err
    row = sr_row(sim, tmp_path, "Archive")
    assert not any(p["currently_attached"] for p in row["PBDs"])
    assert row["problems"] == ["detached"]
    r = cli(sim, tmp_path, "sr", "scan", "Archive")
    assert r.code == 1 and "detached" in r.err
    r = cli(sim, tmp_path, "sr", "plug", "Archive")
    assert r.code == 0, r.err
    r = cli(sim, tmp_path, "sr", "scan", "Archive")
    assert r.code == 0, r.err

    r = cli(sim, tmp_path, "sr", "set-default", "Archive")
    assert r.code == 0, r.err
    pool = next(iter(sim.store.all("pool").values()))
    archive = sim.store.uuids["SR"][sr_row(sim, tmp_path, "Archive")["uuid"]]
    assert (pool["default_SR"], pool["suspend_image_SR"], pool["crash_dump_SR"]) == (
        archive, archive, archive)
    r = cli(sim, tmp_path, "sr", "set-default", "Archive")
    assert r.code == 1 and "default already" in r.err
    only_gone(before, inventory(sim))


def test_repair_gives_a_host_without_a_pbd_one(sim: Simulator, tmp_path: Path) -> None:
    x = xenapi_session(sim)
    try:
        sr = x.xenapi.SR.get_by_name_label("Archive")[0]
        pbd = next(p for p in x.xenapi.SR.get_PBDs(sr)
                   if not x.xenapi.PBD.get_currently_attached(p))
        x.xenapi.PBD.destroy(pbd)
        plan = cli(sim, tmp_path, "sr", "plug", "Archive", "--dry-run", "--json").json()[0]
        assert [c.split("(")[0] for c in plan["calls"]] == ["PBD.create", "Async.PBD.plug"]
        assert plan["xe"][0].startswith("pbd1=$(xe pbd-create host-uuid=")
        r = cli(sim, tmp_path, "sr", "plug", "Archive")
        assert r.code == 0, r.err
        pbds = x.xenapi.SR.get_PBDs(sr)
        assert len(pbds) == 3 and all(x.xenapi.PBD.get_currently_attached(p) for p in pbds)
        configs = {str(sorted(x.xenapi.PBD.get_device_config(p).items())) for p in pbds}
        assert len(configs) == 1
    finally:
        x.xenapi.session.logout()


def test_detach_forget_and_destroy_refused_while_a_running_vm_uses_the_sr(
        sim: Simulator, tmp_path: Path) -> None:
    before = inventory(sim)
    n = tasks(sim)
    r = cli(sim, tmp_path, "sr", "unplug", "NFS storage")
    assert r.code == 1 and "are running with disks on it: shut them down first" in r.err
    r = cli(sim, tmp_path, "sr", "destroy", "Local storage on xcp-ng-01", "--yes")
    assert r.code == 1 and "dns-02 is not halted and uses it" in r.err
    r = cli(sim, tmp_path, "sr", "forget", "ISO library")
    assert r.code == 1 and "not halted" in r.err
    r = cli(sim, tmp_path, "sr", "destroy", "ISO library", "--yes")
    assert r.code == 1
    r = cli(sim, tmp_path, "sr", "destroy", "XCP-ng Tools", "--yes")
    assert r.code == 1 and "tools ISO library" in r.err
    assert tasks(sim) == n
    assert inventory(sim) == before


def test_forget_unplugs_first_and_keeps_the_data(sim: Simulator, tmp_path: Path) -> None:
    before = inventory(sim)
    archive = sr_row(sim, tmp_path, "Archive")
    plan = cli(sim, tmp_path, "sr", "forget", "Archive", "--dry-run", "--json").json()[0]
    assert [c.split("(")[0] for c in plan["calls"]] == [
        "Async.PBD.unplug", "Async.PBD.unplug", "Async.SR.forget"]
    assert "The data stays on the storage" in plan["notes"][0]
    r = cli(sim, tmp_path, "sr", "forget", "Archive")
    assert r.code == 0, r.err
    gone = {v for v, sr in before["vdis"].items() if sr == archive["uuid"]}
    only_gone(before, inventory(sim), vdis=gone, srs={archive["uuid"]})
    # the disks are still on the storage: the SR's storage keeps them
    stored = sim.runtime.storage.ghost_vdis[archive["uuid"]]
    assert {d["name_label"] for d in stored.values()} == {"old-web 0"}


@pytest.mark.parametrize("detached", [False, True])
def test_destroy_deletes_the_disks_then_the_sr(sim: Simulator, tmp_path: Path,
                                               detached: bool) -> None:
    if detached:
        assert cli(sim, tmp_path, "sr", "unplug", "Archive").code == 0
    before = inventory(sim)
    archive = sr_row(sim, tmp_path, "Archive")
    plan = cli(sim, tmp_path, "sr", "destroy", "Archive", "--dry-run", "--json").json()[0]
    steps = [c.split("(")[0] for c in plan["calls"]]
    unplugs = ["Async.PBD.unplug"] * (1 if detached else 2)
    assert steps == (["Async.PBD.plug"] if detached else []) + [
        "Async.VDI.destroy", *unplugs, "Async.SR.destroy"]
    assert plan["destructive"] and "deleted for good: 1 disk(s) (old-web 0)" in plan["notes"][0]
    r = cli(sim, tmp_path, "sr", "destroy", "Archive")
    assert r.code == 2 and "--yes" in r.err
    assert inventory(sim) == before
    r = cli(sim, tmp_path, "sr", "destroy", "Archive", "--yes", "--json")
    assert r.code == 0 and r.json()[0]["ok"], r.err
    gone = {v for v, sr in before["vdis"].items() if sr == archive["uuid"]}
    only_gone(before, inventory(sim), vdis=gone, srs={archive["uuid"]})
    assert archive["uuid"] not in sim.runtime.storage.ghost_vdis
