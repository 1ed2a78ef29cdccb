"""The simulated hosts' dom0 tools (xsctl/sim/dom0.py): run as the commands they
stand for (the local path of the profiling shell), they follow the simulated VMs,
and what they print reads back through the same parsers as the real tools' output,
with no line left over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_sim, vm_ref, wait_task, xenapi_session
from xsctl.profiling import oprofile, perf, sessions, tools, xenpm, xentop, xl
from xsctl.profiling.shell import Command, LocalShell
from xsctl.sim import Simulator


@pytest.fixture
def dom0(tmp_path: Path) -> Iterator[tuple[Simulator, Any, LocalShell]]:
    sim = make_sim()
    x = xenapi_session(sim)
    shell = LocalShell(tools=[str(Path(sim.host_tools(str(tmp_path / "dom0"))) / "127.0.0.1")])
    try:
        yield sim, x, shell
    finally:
        x.xenapi.session.logout()
        sim.stop()


def _top(shell: LocalShell) -> dict[str, xentop.Domain]:
    r = shell.run(Command(("xentop", "-b", "-f", "-i", "1"), timeout=30))
    assert r.ok, r.stderr
    top = xentop.parse(r.stdout)
    assert top.problems == () and top.last is not None
    return {d.name: d for d in top.last.domains}


def test_xentop_and_xl_list_follow_the_vms_on_the_host(dom0: Any) -> None:
    sim, x, shell = dom0
    doms = _top(shell)
    on_master = {sim.store.get(r, "VM")["name_label"]: sim.store.get(r, "VM")["domid"]
                 for r in sim.store.get(sim.master_ref(), "host")["resident_VMs"]
                 if sim.store.get(r, "VM")["power_state"] == "Running"}
    assert set(doms) == {"Domain-0", *(n for n in on_master if not n.startswith("Control"))}
    r = shell.run(sessions.XL_LIST)
    listed = {d.name: d.domid for d in xl.xl_domains(r.stdout)[0]}
    assert listed == {("Domain-0" if n.startswith("Control") else n): d
                      for n, d in on_master.items()}

    web = vm_ref(x, "web-01")
    wait_task(x, x.xenapi.Async.VM.pause(web))
    before = _top(shell)["web-01"]
    assert before.state == "----p-"
    after = _top(shell)["web-01"]  # a paused domain's counters stand still
    assert (after.cpu_sec, after.nettx_k, after.vbd_rd) == \
        (before.cpu_sec, before.nettx_k, before.vbd_rd)
    wait_task(x, x.xenapi.Async.VM.unpause(web))
    wait_task(x, x.xenapi.Async.VM.hard_shutdown(web))
    assert "web-01" not in _top(shell)


def test_the_first_iteration_has_no_cpu_figure_and_the_next_has(dom0: Any) -> None:
    _, _, shell = dom0
    r = shell.run(sessions.xentop_command(iterations=2, delay=1))
    top = xentop.parse(r.stdout)
    assert len(top.blocks) == 2 and top.problems == ()
    assert all(d.cpu_pct == 0.0 for d in top.blocks[0].domains)
    assert any((d.cpu_pct or 0) > 0 for d in top.blocks[1].domains)


def test_a_standing_pool_prints_the_same_every_time(tmp_path: Path) -> None:
    sim = make_sim(epoch=1_764_063_000.0, drift=False)
    try:
        shell = LocalShell(tools=[str(Path(sim.host_tools(str(tmp_path))) / "127.0.0.1")])
        cmd = Command(("xentop", "-b", "-i", "2", "-d", "1"), timeout=30)
        assert shell.run(cmd).stdout == shell.run(cmd).stdout
    finally:
        sim.stop()


def test_every_tool_prints_what_its_parser_reads_whole(dom0: Any) -> None:
    sim, x, shell = dom0
    probe = tools.probe(shell)
    assert {t.id for t in probe.offered} == {"xentop", "perf", "oprofile", "xenpm"}
    for what in ("cpufreq", "cpuidle"):
        r = shell.run(xenpm.command(what))
        p = xenpm.parse(r.stdout)
        assert p.ok and p.problems == () and p.fact("cpus") == "16", what
    web = sim.store.get(vm_ref(x, "web-01"), "VM")
    out = sessions.perf_session(shell, sessions.PerfTarget("qemu", int(web["domid"])), 1)
    assert out.ok, out.error
    (report,) = out.parsed
    assert report.problems == () and report.fact("event") == "cpu-clock"
    assert {r["command"] for r in report.tables[0].records()} == {f"qemu-dm-{web['domid']}"}
    assert not any(Path("/tmp").glob(Path(out.results[1].command.argv[-1]).name))  # removed
    status = oprofile.parse_status(shell.run(Command(("opcontrol", "--status"),
                                                     timeout=30)).stdout)
    assert status.ok and status.fact("daemon") == "not running"


def test_a_member_has_no_oprofile_and_the_probe_says_so(dom0: Any, tmp_path: Path) -> None:
    sim, _, _ = dom0
    member = LocalShell(tools=[str(Path(sim.host_tools(str(tmp_path / "m"))) / "127.0.0.2")])
    probe = tools.probe(member)
    assert not probe.has("oprofile") and probe.has("xentop")
    assert [t.id for t in probe.missing] == ["oprofile"]


def test_perf_of_a_vms_tapdisks_and_of_the_whole_host(dom0: Any) -> None:
    _, x, shell = dom0
    cache_vm = vm_ref(x, "cache-01")
    vdis = tuple(x.xenapi.VDI.get_uuid(x.xenapi.VBD.get_VDI(b))
                 for b in x.xenapi.VM.get_VBDs(cache_vm)
                 if x.xenapi.VBD.get_currently_attached(b) and not x.xenapi.VBD.get_empty(b))
    out = sessions.perf_session(shell, sessions.PerfTarget("tapdisk", None, vdis, "c"), 1)
    assert out.ok, out.error
    assert out.results[0].command.argv == ("tap-ctl", "list")
    assert "-p" in out.results[1].command.argv
    assert {r["command"] for r in out.parsed[0].tables[0].records()} == {"tapdisk"}
    host = sessions.perf_session(shell, sessions.PerfTarget(), 1)
    rows = host.parsed[0].tables[0].records()
    assert rows[0]["symbol"] == "[k] xen_hypercall_sched_op"  # a dom0 idles in Xen
    assert perf.parse_report(host.results[1].stdout).problems == ()


def test_the_tools_run_from_an_interpreter_whose_path_has_spaces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dom0 artifact's interpreter lives under the user's home, which may be
    "admin's files": the tools must not name it on a "#!" line."""
    import os
    import sys

    folder = tmp_path / "admin's files"
    folder.mkdir()
    python = folder / "py thon"
    os.symlink(sys.executable, python)
    monkeypatch.setattr(sys, "executable", str(python))
    sim = make_sim()
    try:
        shell = LocalShell(tools=[str(Path(sim.host_tools(str(tmp_path / "dom0")))
                                      / "127.0.0.1")])
        assert "Domain-0" in _top(shell)
    finally:
        sim.stop()
