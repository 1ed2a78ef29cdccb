"""``xsctl snapshot`` and ``xsctl template`` on the simulator: the snapshot tree with
checkpoints, revert (halted, or resumed from memory), delete with or without disks,
new VM and template from a snapshot; template list, copy, rename, delete and its
refusals, and a VM converted into a template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import conn_args, password_file, xsctl
from tests.cli.test_cli_install import KEPT, inventory, vm_named
from xsctl.sim import Simulator


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> list[str]:
    return conn_args(sim, password_file(sim, tmp_path))


def disks_of(sim: Simulator, vm: dict[str, Any]) -> set[str]:
    return {sim.store.get(b, "VBD")["VDI"] for b in vm["VBDs"]
            if sim.store.get(b, "VBD")["type"] == "Disk"}


def test_snapshot_tree_with_a_checkpoint(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "snapshot", "create", "db-01", "--name", "with-memory", "--memory")
    assert r.code == 0, r.err
    r = xsctl(*cli, "snapshot", "list", "db-01")
    assert r.code == 0, r.err
    rows = [ln for ln in r.out.splitlines()[1:]]
    # oldest first, each under the one before; "Now" under the newest
    assert rows[0].startswith("before-upgrade ") and " disks " in rows[0]
    assert rows[1].startswith("└─ nightly 2026-11-24")
    assert rows[2].startswith("   └─ with-memory") and "disks+memory" in rows[2]
    assert rows[3].startswith("      └─ ▶ Now")
    j = xsctl(*cli, "snapshot", "list", "db-01", "--json").json()
    cp = next(s for s in j if s["name_label"] == "with-memory")
    assert cp["checkpoint"] is True and cp["current"] is True and cp["depth"] == 2
    assert cp["parent"] == next(s["uuid"] for s in j if s["name_label"].startswith("nightly"))
    every = xsctl(*cli, "snapshot", "list", "--json").json()
    assert {s["vm"] for s in every} == {"db-01", "web-01", "legacy-erp"}


def test_revert_to_a_checkpoint_resumes_the_vm(sim: Simulator, cli: list[str]) -> None:
    assert xsctl(*cli, "snapshot", "create", "web-01", "--name", "cp", "--memory").code == 0
    r = xsctl(*cli, "snapshot", "revert", "cp", "--dry-run")
    assert "resumed from the checkpoint's memory" in r.out
    assert "Async.VM.resume(web-01, false, false)" in r.out
    r = xsctl(*cli, "snapshot", "revert", "cp", "--yes")
    assert r.code == 0, r.err
    _, vm = vm_named(sim, "web-01")
    assert vm["power_state"] == "Running"
    # a snapshot of disks alone: the running VM is powered off and stays halted
    r = xsctl(*cli, "snapshot", "revert", "pre-deploy", "--dry-run")
    assert "it is powered off now and stays halted" in r.out
    assert xsctl(*cli, "snapshot", "revert", "pre-deploy", "--yes").code == 0
    _, vm = vm_named(sim, "web-01")
    assert vm["power_state"] == "Halted"
    tree = xsctl(*cli, "snapshot", "list", "web-01", "--json").json()
    assert [s["name_label"] for s in tree if s["current"]] == ["pre-deploy"]


def test_destroy_a_snapshot_with_and_without_its_disks(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    ref, snap = vm_named(sim, "before-upgrade")
    mine = disks_of(sim, snap)
    r = xsctl(*cli, "snapshot", "destroy", "before-upgrade", "--keep-disks", "--yes")
    assert r.code == 0, r.err
    assert ref not in sim.store.all("VM") and mine <= set(sim.store.all("VDI"))
    ref2, snap2 = vm_named(sim, "pre-deploy")
    mine2 = disks_of(sim, snap2)
    r = xsctl(*cli, "snapshot", "destroy", "pre-deploy", "--yes")
    assert r.code == 0, r.err
    assert ref2 not in sim.store.all("VM") and not mine2 & set(sim.store.all("VDI"))
    after = inventory(sim)
    assert before["VM"] - after["VM"] == {ref, ref2}
    assert before["VDI"] - after["VDI"] == mine2
    # the snapshot's VM is untouched
    _, web = vm_named(sim, "web-01")
    assert web["power_state"] == "Running"


def test_new_vm_and_new_template_from_a_snapshot(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    r = xsctl(*cli, "snapshot", "new-vm", "last known good", "--name", "erp-restored")
    assert r.code == 0, r.err
    _, vm = vm_named(sim, "erp-restored")
    assert not vm["is_a_template"] and not vm["is_a_snapshot"]
    assert vm["power_state"] == "Halted" and disks_of(sim, vm)
    r = xsctl(*cli, "snapshot", "new-template", "last known good", "--name", "erp-tmpl")
    assert r.code == 0, r.err
    _, t = vm_named(sim, "erp-tmpl")
    assert t["is_a_template"] and not t["is_a_snapshot"]
    listed = xsctl(*cli, "template", "list", "--custom", "--json").json()
    assert "erp-tmpl" in {x["name_label"] for x in listed}
    after = inventory(sim)
    for cls in KEPT:
        assert before[cls] <= after[cls]


def test_template_list_tells_built_in_from_custom(cli: list[str]) -> None:
    data = xsctl(*cli, "template", "list", "--json").json()
    deb = next(t for t in data if t["name_label"] == "Debian Bookworm 12")
    assert deb["builtin"] and deb["os_family"] == "Debian"
    assert deb["disks"] == [{"device": "0", "size": 10 * 1024**3, "provisioned": True,
                             "SR": None}]
    assert deb["install_methods"] == ["cdrom", "nfs", "http", "ftp"]
    assert deb["recommendations"]["vcpus-max"] == 32 and deb["vms_made"] >= 1
    web = next(t for t in data if t["name_label"] == "web-base (Debian 12)")
    assert not web["builtin"] and web["disks"][0]["SR"] == "NFS storage"
    table = xsctl(*cli, "template", "list", "--builtin")
    assert "web-base" not in table.out and "built-in" in table.out


def test_template_delete_refusals_and_a_custom_delete(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    r = xsctl(*cli, "template", "destroy", "Windows 11", "--yes")
    assert r.code == 1 and "built-in template" in r.err and "cannot be deleted" not in r.out
    r = xsctl(*cli, "template", "destroy", "web-01", "--yes")
    assert r.code == 2 and "no template named 'web-01'" in r.err
    r = xsctl(*cli, "template", "destroy", "web-base (Debian 12)")  # not on a terminal
    assert r.code == 2 and "add --yes" in r.err
    assert inventory(sim) == before
    ref, t = vm_named(sim, "web-base (Debian 12)")
    mine = disks_of(sim, t)
    r = xsctl(*cli, "template", "destroy", "web-base (Debian 12)", "--yes")
    assert r.code == 0, r.err
    after = inventory(sim)
    assert before["VM"] - after["VM"] == {ref} and before["VDI"] - after["VDI"] == mine


def test_template_copy_and_rename(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "template", "copy", "Debian Bookworm 12", "--name", "deb-mine")
    assert r.code == 0, r.err
    _, t = vm_named(sim, "deb-mine")
    assert t["is_a_template"] and not t["is_default_template"]
    assert "default_template" not in t["other_config"]
    r = xsctl(*cli, "template", "rename", "deb-mine", "--name", "deb-custom")
    assert r.code == 0, r.err
    vm_named(sim, "deb-custom")
    # the copy is a custom template: it can be deleted
    assert xsctl(*cli, "template", "destroy", "deb-custom", "--yes").code == 0


def test_convert_a_halted_vm_into_a_template(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "make-template", "web-01", "--yes")
    assert r.code == 1 and "running" in r.err  # web-01 runs
    halted = next(v["name_label"] for v in sim.store.all("VM").values()
                  if v["power_state"] == "Halted" and not v["is_a_template"]
                  and not v["is_control_domain"])
    r = xsctl(*cli, "vm", "make-template", halted, "--yes")
    assert r.code == 0, r.err
    _, t = vm_named(sim, halted)
    assert t["is_a_template"]
    names = {x["name_label"] for x in xsctl(*cli, "template", "list", "--json").json()}
    assert halted in names
    assert halted not in {v["name_label"] for v in xsctl(*cli, "vm", "list", "--json").json()}
