"""``xsctl vm install`` on the simulator: every kind of install media, every refusal
(nothing is sent), and a failure half way with its clean-up, or with what was made
kept on request. After each, nothing the test did not mean to remove is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import conn_args, password_file, xsctl
from xsctl.sim import Simulator

GiB = 1024**3
KEPT = ("VM", "VDI", "VBD", "VIF", "SR", "network", "host")


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> list[str]:
    return conn_args(sim, password_file(sim, tmp_path))


def inventory(sim: Simulator) -> dict[str, set[str]]:
    with sim.store.lock:
        return {cls: set(sim.store.all(cls)) for cls in KEPT}


def vm_named(sim: Simulator, name: str) -> tuple[str, dict[str, Any]]:
    hits = [(r, v) for r, v in sim.store.all("VM").items() if v["name_label"] == name]
    assert len(hits) == 1, [v["name_label"] for _, v in hits]
    return hits[0]


def uuid_of(sim: Simulator, cls: str, **where: Any) -> str:
    return str(next(r["uuid"] for r in sim.store.all(cls).values()
                    if all(r[k] == v for k, v in where.items())))


def drives(sim: Simulator, vm: dict[str, Any]) -> list[tuple[str, str, int, str]]:
    """(userdevice, type, size, SR name) of each VBD."""
    out = []
    for vbd in vm["VBDs"]:
        b = sim.store.get(vbd, "VBD")
        vdi = sim.store.all("VDI").get(b["VDI"])
        sr = sim.store.get(vdi["SR"], "SR")["name_label"] if vdi else ""
        out.append((b["userdevice"], b["type"], int(vdi["virtual_size"]) if vdi else 0, sr))
    return sorted(out)


def test_install_from_an_iso_with_two_disks_started(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "deb-web",
              "--description", "new web server", "--memory", "4GiB", "--vcpus", "2",
              "--disk", "20G", "--disk", "8G@NFS storage",
              "--network", "xenbr0", "--iso", "debian-12.7.0-amd64-netinst.iso", "--start")
    assert r.code == 0, r.err
    _, vm = vm_named(sim, "deb-web")
    assert r.out.strip() == vm["uuid"]
    assert not vm["is_a_template"] and vm["power_state"] == "Running"
    assert vm["name_description"] == "new web server"
    assert int(vm["memory_static_max"]) == 4 * GiB and int(vm["VCPUs_max"]) == 2
    assert drives(sim, vm) == [("0", "Disk", 20 * GiB, "NFS storage"),
                               ("1", "Disk", 8 * GiB, "NFS storage"),
                               ("3", "CD", 661 * 1024**2, "ISO library")]
    assert vm["HVM_boot_params"]["order"] == "dcn"
    nets = [sim.store.get(sim.store.get(v, "VIF")["network"], "network")["bridge"]
            for v in vm["VIFs"]]
    assert nets == ["xenbr0"]
    assert "disks" not in vm["other_config"]  # provisioned, as xapi drops the key
    after = inventory(sim)
    for cls in KEPT:
        assert before[cls] <= after[cls], cls  # nothing that was there is gone


def test_install_from_a_network_repository(sim: Simulator, cli: list[str]) -> None:
    r = xsctl(*cli, "vm", "install", "--template", "Rocky Linux 9", "--name", "rocky-net",
              "--install-url", "http://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os/",
              "--network", "xenbr1", "--json")
    assert r.code == 0, r.err
    assert r.json()["ok"] is True
    _, vm = vm_named(sim, "rocky-net")
    assert vm["other_config"]["install-repository"].startswith("http://dl.rockylinux.org/")
    assert vm["HVM_boot_params"]["order"] == "ncd"
    assert [t for _, t, _, _ in drives(sim, vm)] == ["Disk"]  # no CD drive
    assert vm["power_state"] == "Halted"


def test_install_with_no_media_from_a_custom_template(sim: Simulator, cli: list[str]) -> None:
    """A custom template's own disks are copied (as clones) and --disk adds to them."""
    before = inventory(sim)
    r = xsctl(*cli, "vm", "install", "--template", "web-base (Debian 12)", "--name", "web-07",
              "--disk", "2G")
    assert r.code == 0, r.err
    _, vm = vm_named(sim, "web-07")
    assert drives(sim, vm) == [("0", "Disk", 20 * GiB, "NFS storage"),
                               ("1", "Disk", 2 * GiB, "NFS storage"),
                               ("3", "CD", 0, "")]
    assert vm["other_config"]["base_template_name"] == "Debian Bookworm 12"
    assert "install-repository" not in vm["other_config"]
    assert before["VM"] <= inventory(sim)["VM"]


def test_dry_run_shows_the_plan_and_changes_nothing(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "dry",
              "--disk", "12G", "--iso", "debian-12.7.0-amd64-netinst.iso", "--network", "xenbr0",
              "--start", "--dry-run")
    assert r.code == 0, r.err
    calls = [ln.split(". ", 1)[1] for ln in r.out.splitlines() if ln[:5].strip().rstrip(".").isdigit()]
    assert [c.split("(")[0] for c in calls] == [
        "Async.VM.clone", "VM.remove_from_other_config", "VM.add_to_other_config",
        "Async.VM.provision", "VBD.create", "VM.set_HVM_boot_params", "VIF.create",
        "Async.VM.start"]
    assert 'size="12884901888"' in r.out and "vm=$(xe vm-install template=" in r.out
    assert 'xe vm-cd-add uuid="$vm" cd-name=debian-12.7.0-amd64-netinst.iso device=3' in r.out
    assert "If a step fails, what was made is removed: the new VM 'dry' and its disks." in r.out
    assert inventory(sim) == before
    j = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "dry",
              "--dry-run", "--json")
    assert j.json()["undo_on_failure"] == ["the new VM 'dry' and its disks"]


def _free_between(sim: Simulator) -> int:
    """A memory size that fits in a host but in no host's free memory."""
    hosts = list(sim.store.all("host").values())
    free = max(int(sim.store.get(h["metrics"], "host_metrics")["memory_free"]) for h in hosts)
    total = max(int(sim.store.get(h["metrics"], "host_metrics")["memory_total"]) for h in hosts)
    assert free + GiB < total
    return (free // GiB + 1) * GiB


REFUSALS: list[tuple[str, list[str], int, str]] = [
    ("memory below the template's least", ["--memory", "128M"], 1, "below Debian Bookworm 12's least"),
    ("memory above the template's limit", ["--memory", "2000G"], 1, "above Debian Bookworm 12's limit"),
    ("memory above every host's", ["--memory", "1000G"], 1, "could never start"),
    ("vCPUs above the template's", ["--vcpus", "33"], 1, "out of Debian Bookworm 12's range (1 to 32)"),
    ("vCPUs above every host's", ["--vcpus", "30"], 1, "more than any host has"),
    ("no vCPUs", ["--vcpus", "0"], 1, "out of Debian Bookworm 12's range"),
    ("a disk on an ISO SR", ["--disk", "10G@ISO library"], 1, "holds no disks"),
    ("a disk bigger than the SR's free space", ["--disk", "3000G"], 1, "more than a disk on"),
    ("disks bigger than the SR's free space", ["--disk", "2000G", "--disk", "2000G",
                                               "--disk", "2000G"], 1, "NFS storage has"),
    ("a tiny disk", ["--disk", "0"], 2, "too small"),
    ("an ISO that is not on an ISO SR", ["--iso", "web-01 0"], 2, "no ISO named"),
    ("both an ISO and a URL", ["--iso", "debian-12.7.0-amd64-netinst.iso", "--install-url",
                               "http://deb.debian.org/debian"], 2, "choose one install medium"),
    ("a URL of no install method", ["--install-url", "gopher://x/y"], 2, "not an install method"),
    ("not a URL", ["--install-url", "deb.debian.org"], 2, "not a URL"),
    ("the hosts' internal network", ["--network", "Host internal management network"], 1,
     "internal network"),
    ("an unknown network", ["--network", "nope"], 2, "no network named"),
    ("an unknown home server", ["--home", "xcp-ng-99"], 2, "no host named"),
    ("an empty name", ["--name", " "], 2, "needs a name"),
]


@pytest.mark.parametrize("why,extra,code,text", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_every_refusal_sends_nothing(sim: Simulator, cli: list[str], why: str,
                                     extra: list[str], code: int, text: str) -> None:
    before = inventory(sim)
    args = ["--template", "Debian Bookworm 12", "--name", "refused", *extra]
    r = xsctl(*cli, "vm", "install", *args)
    assert r.code == code, (why, r.err)
    assert text in r.err, (why, r.err)
    assert "Traceback" not in r.err
    assert inventory(sim) == before


def test_refusals_of_the_template_and_the_home_server(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    r = xsctl(*cli, "vm", "install", "--template", "Windows 11", "--name", "w",
              "--install-url", "http://example.com/win")
    assert r.code == 1 and "cannot install from a network repository by http" in r.err
    r = xsctl(*cli, "vm", "install", "--template", "web-base (Debian 12)", "--name", "w",
              "--iso", "debian-12.7.0-amd64-netinst.iso")
    assert r.code == 1 and "has a CD drive of its own" in r.err
    r = xsctl(*cli, "vm", "install", "--template", "no such template", "--name", "w")
    assert r.code == 2 and "no template named" in r.err
    # a disk on one host's local storage, and a home server that cannot reach it
    hosts = {h["name_label"]: ref for ref, h in sim.store.all("host").items()}
    local = next(s["uuid"] for s in sim.store.all("SR").values() if s["type"] == "lvm" and any(
        sim.store.get(p, "PBD")["host"] == hosts["xcp-ng-02"] for p in s["PBDs"]))
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "w",
              "--disk", f"10G@{local}", "--home", "xcp-ng-01")
    assert r.code == 1 and "not reachable from xcp-ng-01" in r.err, r.err
    # more than any host has free, started: refused; not started: a warning
    big = f"{_free_between(sim) // GiB}G"
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "w",
              "--memory", big, "--start")
    assert r.code == 1 and "it could not start" in r.err, r.err
    assert inventory(sim) == before
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "w-big",
              "--memory", big, "--iso", "debian-12.7.0-amd64-netinst.iso")
    assert r.code == 0 and "warning:" in r.err and "could not start now" in r.err
    assert vm_named(sim, "w-big")[1]["power_state"] == "Halted"


def test_a_failure_half_way_removes_what_was_made(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    # the network interface fails: the VM, its provisioned disks and its CD drive
    # are there by then
    assert sim.control("fail", {"method": "VIF.create"}) == {"VIF.create": 1}
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "half",
              "--disk", "10G", "--disk", "4G", "--network", "xenbr0", "--network", "xenbr1",
              "--iso", "debian-12.7.0-amd64-netinst.iso")
    assert r.code == 1
    assert "step 7 (VIF.create) failed" in r.err, r.err
    assert "injected fault" in r.err
    assert "Removed: the new VM 'half' and its disks." in r.err
    assert not [v for v in sim.store.all("VM").values() if v["name_label"] == "half"]
    assert inventory(sim) == before  # no VM, disk, drive or interface is left
    assert not sim.faults.fail_calls


def test_a_failure_removes_an_added_disk_and_the_vm(sim: Simulator, cli: list[str]) -> None:
    before = inventory(sim)
    sim.faults.fail_next("VBD.create")  # the added disk's drive
    r = xsctl(*cli, "vm", "install", "--template", "k8s-node-template", "--name", "k8s-new",
              "--disk", "5G", "--network", "xenbr0")
    assert r.code == 1, r.err
    assert ("Removed: the new disk 'k8s-new 1'; the new VM 'k8s-new' and its disks."
            in r.err), r.err
    assert inventory(sim) == before


def test_keep_on_failure_keeps_what_was_made_and_says_so(sim: Simulator,
                                                         cli: list[str]) -> None:
    before = inventory(sim)
    sim.faults.fail_next("VM.start")
    r = xsctl(*cli, "vm", "install", "--template", "Debian Bookworm 12", "--name", "kept",
              "--network", "xenbr0", "--start", "--keep-on-failure", "--json")
    assert r.code == 1
    out = r.json()
    assert out["ok"] is False and out["failed_step"] == 6
    assert out["left"] == ["the new VM 'kept' and its disks"] and out["removed"] == []
    assert "Left behind (kept as asked): the new VM 'kept' and its disks." in r.err
    ref, vm = vm_named(sim, "kept")
    assert vm["power_state"] == "Halted" and len(vm["VIFs"]) == 1
    after = inventory(sim)
    for cls in KEPT:
        assert before[cls] <= after[cls]
    assert after["VM"] - before["VM"] == {ref}
