"""``xsctl profiling ...`` run for real against the simulator: its hosts' dom0 tools
run here (a profile's host_tools, the local path) or through a real OpenSSH server
on loopback (the ssh path, with the profile's ssh and XSCTL_SSH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import password_file, xsctl
from tests.conftest import REPO, alive, wait_for
from tests.sshd import ALIAS
from xsctl.config import Config, Profile
from xsctl.sim import Simulator


@pytest.fixture
def demo(sim: Simulator, tmp_path: Path) -> list[str]:
    """A default profile on ``sim`` whose hosts' dom0 are its simulated ones; the
    options every call adds."""
    cfg = Config()
    cfg.add(Profile(name="demo", url=sim.url, profiling=True,
                    host_tools=sim.host_tools(str(tmp_path / "dom0"))))
    cfg.save()
    return ["--password-file", str(password_file(sim, tmp_path)),
            "--accept-fingerprint", sim.fingerprint]


def test_tools_on_the_master_and_on_a_member(demo: list[str]) -> None:
    r = xsctl("profiling", "tools", "xcp-ng-01", "--json", *demo)
    assert r.code == 0, r.err
    doc = r.json()
    assert {t["tool"]: t["available"] for t in doc["tools"]} == \
        {"xentop": True, "perf": True, "oprofile": True, "xenpm": True}
    assert "xl" in doc["found"] and "simulated dom0" in doc["where"]
    member = xsctl("profiling", "tools", "127.0.0.2", *demo)  # by its address
    assert member.code == 0, member.err
    assert [ln.split()[:2] for ln in member.out.splitlines() if ln.startswith("oprofile")] == \
        [["oprofile", "no"]]


def test_xentop_joins_domains_to_vms_by_domid(sim: Simulator, demo: list[str]) -> None:
    r = xsctl("profiling", "xentop", "xcp-ng-01", "--json", *demo)
    assert r.code == 0, r.err
    doc = r.json()
    (parsed,) = doc["parsed"]
    rows = parsed["tables"][0]["rows"]
    by_name = {row["vm"]: row for row in rows}
    for name in ("web-01", "cache-01", "dns-02"):
        ref = next(k for k, v in sim.store.all("VM").items() if v["name_label"] == name)
        vm = sim.store.get(ref, "VM")
        assert by_name[name]["domid"] == vm["domid"] and by_name[name]["join"] == "domid"
        assert by_name[name]["vm_uuid"] == vm["uuid"]
    dom0 = next(row for row in rows if row["control"])
    assert dom0["name"] == "Domain-0" and dom0["domid"] == 0
    assert [c["argv"][0] for c in doc["commands"]] == ["xl", "xentop"]
    plain = xsctl("profiling", "xentop", "xcp-ng-01", "--sort", "name", *demo)
    names = [ln.split()[0] for ln in plain.out.splitlines()[1:]]
    assert names == ["cache-01", "Domain-0", "dns-02", "web-01"]


def test_a_hostile_vm_name_is_printable_and_exact_in_json(sim: Simulator,
                                                          demo: list[str]) -> None:
    ref = next(k for k, v in sim.store.all("VM").items() if v["name_label"] == "web-01")
    hostile = "[prod] web \x1b]0;PWNED\x07 01"
    with sim.store.lock:
        sim.store.update(ref, {"name_label": hostile})
    doc = xsctl("profiling", "xentop", "xcp-ng-01", "--json", *demo).json()
    rows = doc["parsed"][0]["tables"][0]["rows"]
    row = next(r for r in rows if r["vm_uuid"] == sim.store.get(ref, "VM")["uuid"])
    assert row["vm"] == hostile and row["join"] == "domid"
    plain = xsctl("profiling", "xentop", "xcp-ng-01", *demo)
    assert "\x1b" not in plain.out and "[prod] web ]0;PWNED 01" in plain.out


def test_perf_of_a_vms_qemu(sim: Simulator, demo: list[str]) -> None:
    r = xsctl("profiling", "perf", "xcp-ng-01", "--vm", "web-01", "--seconds", "1", "--json",
              "--raw", *demo)
    assert r.code == 0, r.err
    doc = r.json()
    argvs = [c["argv"] for c in doc["commands"]]
    assert argvs[0][:2] == ["pgrep", "-f"] and argvs[1][:3] == ["perf", "record", "-p"]
    assert argvs[2][:2] == ["perf", "report"] and argvs[3][:2] == ["rm", "-f"]
    assert "$ perf record -p" in doc["raw"]
    rows = doc["parsed"][0]["tables"][0]["rows"]
    assert rows and {r["command"] for r in rows} == {"qemu-dm-1"}
    halted = xsctl("profiling", "perf", "xcp-ng-01", "--vm", "backup-01", "--seconds", "1",
                   *demo)
    assert halted.code == 2 and "backup-01 has no domain on this host (it is not running)" \
        in halted.err
    # db-01's domain ID on xcp-ng-02 is some other VM's on xcp-ng-01: refused, not profiled
    elsewhere = xsctl("profiling", "perf", "xcp-ng-01", "--vm", "db-01", *demo)
    assert elsewhere.code == 2 and "(it runs on xcp-ng-02)" in elsewhere.err


def test_oprofile_status_operf_refused_and_passive_domains(demo: list[str]) -> None:
    status = xsctl("profiling", "oprofile", "xcp-ng-01", *demo)
    assert status.code == 0 and "not running" in status.out
    operf = xsctl("profiling", "oprofile", "xcp-ng-01", "--mode", "operf", "--seconds", "1",
                  *demo)
    assert operf.code == 1 and "does not support your processor type" in operf.err
    passive = xsctl("profiling", "oprofile", "xcp-ng-01", "--mode", "passive", "--seconds", "1",
                    "--domain", "web-01", "--image", "/boot/vmlinux-guest",
                    "--xen", "/boot/xen-syms-4.17.5", "--json", *demo)
    assert passive.code == 0, passive.err
    doc = passive.json()
    argvs = [c["argv"] for c in doc["commands"]]
    daemon = next(a for a in argvs if "--start-daemon" in a)
    assert "--passive-domains=1" in daemon and "--passive-images=/boot/vmlinux-guest" in daemon
    assert "--xen=/boot/xen-syms-4.17.5" in daemon
    images = {r["image"] for r in doc["parsed"][0]["tables"][0]["rows"]}
    assert {"domain1-kernel", "domain1-apps", "xen-syms-4.17.5"} <= images
    assert argvs[-1][:2] == ["rm", "-rf"]
    bad = xsctl("profiling", "oprofile", "xcp-ng-01", "--mode", "passive", "--domain",
                "web-01", *demo)
    assert bad.code == 2 and "hypervisor's symbols" in bad.err


def test_xenpm_states(demo: list[str]) -> None:
    r = xsctl("profiling", "xenpm", "xcp-ng-03", "--states", "cpuidle", "--json", *demo)
    assert r.code == 0, r.err
    (p,) = r.json()["parsed"]
    assert p["tool"] == "xenpm get-cpuidle-states" and p["facts"]["cpus"] == "16"


def test_run_shows_the_line_first_and_runs_it_word_by_word(demo: list[str],
                                                           tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    dry = xsctl("profiling", "run", "xcp-ng-01", *demo, "--dry-run", "--", "printf", "%s\\n",
                f"$(touch {canary})")
    assert dry.code == 0 and dry.out == ""
    assert f"would run on xcp-ng-01 (simulated dom0 here): printf '%s\\n' '$(touch {canary})'" \
        in dry.err
    r = xsctl("profiling", "run", "xcp-ng-01", *demo, "--", "printf", "%s\\n",
              f"$(touch {canary})")
    assert r.code == 0 and r.out == f"$(touch {canary})\n"
    assert not canary.exists()
    one = xsctl("profiling", "run", "xcp-ng-01", *demo, "--", "xl list")  # one word: a line
    assert one.code == 0 and "Domains:" in one.out and "Domain-0" in one.out
    none = xsctl("profiling", "run", "xcp-ng-01", *demo, "--")
    assert none.code == 2 and "no command" in none.err
    late = xsctl("profiling", "run", "xcp-ng-01", "--dry-run", "rm", "x", *demo)
    assert late.code == 2 and "options go before --" in late.err


def test_usage_errors_change_nothing(demo: list[str]) -> None:
    r = xsctl("profiling", "xentop", "no-such-host", *demo)
    assert r.code == 2 and "no host named 'no-such-host'" in r.err
    r = xsctl("profiling", "perf", "xcp-ng-01", "--seconds", "0", *demo)
    assert r.code == 2 and "1 to 3600 seconds" in r.err


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_ctrl_c_stops_the_command_in_dom0(sim: Simulator, demo: list[str], tmp_path: Path,
                                          where: str, request: pytest.FixtureRequest) -> None:
    env = {**os.environ, "PYTHONPATH": REPO}
    args = list(demo)
    if where == "ssh":
        sshd = request.getfixturevalue("sshd")
        cfg = Config()
        cfg.add(Profile(name="viassh", url=sim.url, profiling=True, ssh=ALIAS))
        cfg.save()
        env["XSCTL_SSH"] = sshd.program
        args += ["--profile", "viassh"]
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xsctl", "profiling", "run", "xcp-ng-01", *args, "--",
         "sh", "-c", f"echo $$ > {pidfile}; exec sleep 300"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20)
    pid = int(pidfile.read_text())
    assert alive(pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    wait_for(lambda: not alive(pid), timeout=5)


def test_xentop_through_ssh(sim: Simulator, demo: list[str], sshd: Any,
                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sshd.use_tools(Path(sim.host_tools(str(tmp_path / "remote"))) / "127.0.0.1")
    cfg = Config()
    cfg.add(Profile(name="viassh", url=sim.url, profiling=True, ssh=ALIAS))
    cfg.save()
    monkeypatch.setenv("XSCTL_SSH", sshd.program)
    r = xsctl("profiling", "xentop", "xcp-ng-01", "--profile", "viassh", "--json", *demo)
    assert r.code == 0, r.err
    doc = r.json()
    assert doc["where"] == f"on xcp-ng-01 (ssh {ALIAS})"
    assert {row["vm"] for row in doc["parsed"][0]["tables"][0]["rows"]} >= {"web-01", "dns-02"}
    # a member is reached at its own address, which no server answers here
    member = xsctl("profiling", "xenpm", "xcp-ng-02", "--profile", "viassh", *demo)
    assert member.code == 1 and "ssh could not connect on xcp-ng-02" in member.err
