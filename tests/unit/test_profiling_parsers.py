"""The profiling parsers on every real sample in tests/samples (SOURCES.md says where
each comes from), each checked for what its text holds; then every parser on every
sample, and on generated variants (long names, spaces, n/a, sub-lines, missing
columns): never an exception, and a plain word when nothing could be read."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsctl.profiling import oprofile, perf, xenpm, xentop, xl
from xsctl.profiling.tables import Parsed

SAMPLES = Path(__file__).parent.parent / "samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def unquote_comments(text: str) -> str:
    """xentop-frag-02 was published as ``# '...'`` comments in a script."""
    return "\n".join(re.sub(r"^\s*# '(.*)'$", r"\1", ln) for ln in text.splitlines())


# ---------------------------------------------------------------- xentop


def test_xentop_screen_copy_with_summary_no_limit_and_n_a() -> None:
    top = xentop.parse(sample("xentop-b-01.txt"))
    assert top.error is None and top.problems == ()
    assert dict(top.facts)["xen_version"] == "4.9.2"
    assert dict(top.facts)["cpus"] == "8"
    dom0, guest = top.last.domains  # type: ignore[union-attr]
    assert (dom0.name, dom0.state, dom0.cpu_sec, dom0.mem_k) == ("Domain-0", "-----r", 632, 15446944)
    assert dom0.no_limit and dom0.maxmem_k is None and dom0.maxmem_pct is None
    assert (guest.name, guest.state_word, guest.maxmem_k, guest.nettx_k, guest.vbd_wsect) == \
        ("guest-01", "blocked", 1049600, 113, 31608)


def test_xentop_old_xm_top_starting_with_a_blank_line() -> None:
    top = xentop.parse(sample("xentop-b-02.txt"))
    assert [d.name for d in top.last.domains] == ["Domain-0", "virtual1"]  # type: ignore[union-attr]
    assert top.last.domains[1].mem_pct == 93.8  # type: ignore[union-attr]
    assert top.last.domains[1].netrx_k == 17270964  # type: ignore[union-attr]


def test_xentop_guest_before_domain0_and_wide_numbers() -> None:
    top = xentop.parse(sample("xentop-b-03.txt"))
    names = [d.name for d in top.last.domains]  # type: ignore[union-attr]
    assert names == ["c2214-vkge", "Domain-0"]  # sorted by name: dom0 is not first
    big = top.last.domains[0]  # type: ignore[union-attr]
    assert (big.vcpus, big.mem_k, big.maxmem_k) == (92, 754978808, 754978816)
    assert not top.last.domains[1].no_limit  # type: ignore[union-attr]


def test_xentop_repeated_header_keeps_two_vms_that_share_a_cut_name() -> None:
    top = xentop.parse(sample("xentop-b-r-04.txt"))
    assert len(top.blocks) == 1
    doms = top.last.domains  # type: ignore[union-attr]
    assert [d.name for d in doms] == ["Domain-0", "scas22dv05", "scas22dv05"]
    assert doms[1].cpu_sec == 2307282 and doms[2].cpu_sec == 327925
    assert doms[1].state == "-----r" and doms[2].state == "--b---"


def test_xentop_iterations_of_the_17_column_layout() -> None:
    top = xentop.parse(sample("xentop-b-i-06.txt"))
    assert len(top.blocks) == 8
    assert len(top.blocks[0].columns) == 17
    assert [b.domains[0].cpu_pct for b in top.blocks] == [0.6, 0.4, 11.8, 0.5, 0.6, 0.5, 0.7, 0.5]
    d = top.last.domains[0]  # type: ignore[union-attr]
    assert d.vbd_rsect is None and d.vbd_wsect is None and d.ssid == 0


def test_xentop_name_with_spaces_and_a_net_sub_line_without_header() -> None:
    top = xentop.parse(unquote_comments(sample("xentop-frag-02.txt")))
    assert top.problems == ()
    (d,) = top.last.domains  # type: ignore[union-attr]
    assert d.name == "BB - backup2"
    assert (d.cpu_sec, d.nettx_k, d.netrx_k) == (11235, 36203731, 35046295)
    assert d.sub_lines and d.sub_lines[0].startswith("Net0 RX: 482159350480bytes")


def test_xentop_as_published_with_its_comment_prefix_is_said_not_read() -> None:
    top = xentop.parse(sample("xentop-frag-02.txt"))
    # the prefix hides the Net sub-line (reported) and the quote ends the last column
    assert len(top.problems) == 1 and "Net0 RX" in top.problems[0]
    (d,) = top.last.domains  # type: ignore[union-attr]
    assert d.cpu_sec == 11235 and d.ssid is None


def test_xentop_joined_to_vms_through_xl_list_ids() -> None:
    top = xentop.parse(sample("xentop-b-01.txt"))
    doms, problems, header = xl.xl_domains(sample("xl-list-01.txt"))
    assert header and problems.done() == ()
    vms = {0: xentop.VmOnHost("OpaqueRef:dom0", "Control domain on host: h", True),
           4: xentop.VmOnHost("OpaqueRef:g", "guest-01")}
    rows = xentop.join(top.last, doms, vms)  # type: ignore[arg-type]
    assert [(r.domid, r.vm.ref if r.vm else None, r.how) for r in rows] == \
        [(0, "OpaqueRef:dom0", "domid"), (4, "OpaqueRef:g", "domid")]


def test_xentop_cut_names_that_collide_are_told_apart_by_vcpus_memory_and_time() -> None:
    top = xentop.parse(sample("xentop-b-r-04.txt"))
    # the two VMs' full names (xm uptime in the same fixture) with their figures
    doms = [xl.XlDomain("Domain-0", 0, 8951, 4, "r-----", 11436672.0),
            xl.XlDomain("scas22dv0508m", 7, 51204, 68, "-b----", 327925.4),
            xl.XlDomain("scas22dv0507m", 6, 65540, 68, "r-----", 2307282.1)]
    vms = {6: xentop.VmOnHost("OpaqueRef:a", "scas22dv0507m"),
           7: xentop.VmOnHost("OpaqueRef:b", "scas22dv0508m")}
    rows = xentop.join(top.last, doms, vms)  # type: ignore[arg-type]
    assert [r.domid for r in rows] == [0, 6, 7]
    assert [r.vm.name for r in rows[1:]] == ["scas22dv0507m", "scas22dv0508m"]  # type: ignore[union-attr]


def test_xentop_same_name_same_figures_is_ambiguous_not_guessed() -> None:
    top = xentop.parse(sample("xentop-b-r-04.txt"))
    same = [xl.XlDomain("Domain-0", 0, 8951, 4, "r-----", 0.0),
            xl.XlDomain("scas22dv05", 6, 1, 68, "r-----", None),
            xl.XlDomain("scas22dv05", 7, 1, 68, "r-----", None)]
    rows = xentop.join(top.last, same, {})  # type: ignore[arg-type]
    assert [r.how for r in rows] == ["domid", "ambiguous", "ambiguous"]


def test_xentop_rates_come_from_counters_and_skip_one_that_went_back() -> None:
    d1 = xentop.Domain("a", "--b---", nettx_k=100, netrx_k=100, vbd_rd=10, vbd_wr=10)
    d2 = xentop.Domain("a", "--b---", nettx_k=300, netrx_k=100, vbd_rd=5, vbd_wr=10)
    rates = xentop.Rates()
    assert rates.update(0, [xentop.Row(d1, 1, None, "domid")]) == {"domid:1": (None, None)}
    assert rates.update(2, [xentop.Row(d2, 1, None, "domid")]) == {"domid:1": (100.0, None)}


def test_xentop_stream_hands_on_each_iteration_as_the_next_begins() -> None:
    got: list[str] = []
    stream = xentop.Stream(got.append)
    for line in sample("xentop-b-i-06.txt").splitlines():
        stream.feed(line)
    assert len(got) == 7  # the 8th is still open
    stream.flush()
    assert len(got) == 8 and all(xentop.parse(b).last for b in got)


# ---------------------------------------------------------------- xl


def test_xl_list_with_tabs_in_its_header() -> None:
    p = xl.parse_xl_list(sample("xl-list-01.txt"))
    assert p.ok and p.problems == ()
    assert p.tables[0].records()[1] == {"name": "guest-01", "domid": 4, "mem": 1024,
                                        "vcpus": 2, "state": "-b----", "time": 7.7}


@pytest.mark.parametrize("name", ["xl-info-01.txt", "xm-info-03.txt"])
def test_xl_info_splits_on_the_first_colon_and_reports_the_echoed_command(name: str) -> None:
    p = xl.parse_xl_info(sample(name))
    facts = dict(p.facts)
    assert p.ok and facts["machine"] in ("aarch64", "x86_64")
    assert len(p.problems) == 1 and "info" in p.problems[0]  # the command line echoed
    assert ":" in facts["xen_changeset"] or facts["xen_changeset"] == "unavailable"


# ---------------------------------------------------------------- perf


def test_perf_report_stdio_with_samples_column() -> None:
    p = perf.parse_report(sample("perf-report-01.txt"))
    assert p.ok and p.problems == ()
    assert p.fact("event") == "cycles" and p.fact("samples") == "115K"
    t = p.tables[0]
    assert [c.label for c in t.columns] == ["Overhead", "Samples", "Command", "Shared Object",
                                            "Symbol"]
    assert t.rows[1] == (15.51, 17949, "natural_perf", "natural_perf",
                         "[.] c8::natural::divide_modulus")
    assert len(t.rows) == 7


def test_perf_report_children_self_and_a_call_graph_under_the_row() -> None:
    p = perf.parse_report(sample("perf-report-02.txt"))
    assert p.ok and p.problems == ()
    assert p.fact("samples") == "102" and p.fact("event") == "cpu-clock"
    assert p.tables[0].rows == ((30.39, 0.0, "ls", "[kernel.kallsyms]", "[k] ret_from_exception"),)
    assert int(p.fact("call_graph_lines") or 0) > 5


def test_perf_report_tui_copied_from_a_xen_dom0() -> None:
    p = perf.parse_report(sample("perf-report-05.txt"))
    assert p.ok and p.problems == ()
    rows = p.tables[0].records()
    assert rows[0]["symbol"] == "[k] xen_hypercall_sched_op" and rows[0]["children"] == 91.85
    assert rows[1]["command"] == "kworker/u24:8-k"
    assert {r["shared_object"] for r in rows} == {"[kernel.kallsyms]", "[dm_thin_pool]"}


def test_perf_top_keeps_the_last_refresh_with_rows() -> None:
    p = perf.parse_report(sample("perf-top-01.txt"))
    assert p.tool == "perf top" and p.ok
    assert p.tables[0].rows[0] == (2.73, "[kernel]", "[k] __schedule")
    assert len(p.tables[0].rows) == 7


def test_perf_stat_with_counters_not_supported_in_a_vm() -> None:
    p = perf.parse_stat(sample("perf-stat-01.txt"))
    assert p.ok and p.problems == ()
    recs = {r["event"]: r for r in p.tables[0].records()}
    assert recs["task-clock (msec)"]["value"] == 11478.833177
    assert recs["stalled-cycles-frontend"]["value"] == "<not supported>"
    assert recs["branches"]["running"] == 100.0 and recs["page-faults"]["running"] is None
    assert p.fact("elapsed_s") == "5.739110466"


def test_tapdisk_pids_by_the_vms_disks() -> None:
    text = ("pid=7000 minor=0 state=0 args=vhd:/var/run/sr-mount/s/aaaa.vhd\n"
            "pid=7001 minor=1 state=0 args=vhd:/var/run/sr-mount/s/bbbb.vhd\n"
            "garbage line\npid=x minor=2\n")
    assert perf.tapdisk_pids(text, {"bbbb"}) == [7001]


# ---------------------------------------------------------------- OProfile


def test_opreport_hierarchy_of_images_per_application() -> None:
    p = oprofile.parse_report(sample("opreport-01.txt"))
    assert p.ok and p.problems == ()
    assert "Counted CPU_CLK_UNHALTED events" in (p.fact("event") or "")  # wrapped line joined
    recs = p.tables[0].records()
    assert recs[0] == {"image": "cc1", "within": None, "samples": 370812, "percent": 90.0945}
    assert recs[2] == {"image": "libc-2.5.so", "within": "cc1", "samples": 37858,
                       "percent": 10.2095}
    assert recs[5]["within"] == "genksyms"


def test_opreport_symbols_of_xen_with_a_column_pair_per_thread() -> None:
    p = oprofile.parse_report(sample("opreport-l-02.txt"))
    assert p.ok and p.problems == ()
    t = p.tables[0]
    assert t.title == "Symbols" and len([c for c in t.columns if c.unit == "%"]) == 3
    assert t.rows[0] == (32, 91.4286, 15, 93.75, 0, 0.0, "xen-syms-2.6.18-53.1.14.el5.debug",
                         "pit_read_counter")
    assert t.rows[1][-1] == "(no symbols)"
    assert any("could not be found" in v for k, v in p.facts if k == "note")


def test_opreport_timer_mode_with_a_symbol_holding_spaces() -> None:
    p = oprofile.parse_report(sample("opreport-l-03.txt"))
    assert p.ok and "timer" in (p.fact("mode") or "")
    syms = p.tables[0].values("symbol_name")
    assert "Query_cache::insert_into_free_memory_sorted_list(Query_cache_block*, " \
           "Query_cache_block**)" in syms


def test_opreport_two_events_e_notation_and_program_output_mixed_in() -> None:
    p = oprofile.parse_report(sample("operf-opreport-07.txt"))
    assert p.ok
    recs = p.tables[0].records()
    assert recs[3]["percent_1"] == pytest.approx(5.3e-04) and recs[3]["samples_2"] == 0
    assert [c.label for c in p.tables[0].columns][2:4] == ["Samples CPU_CLK_UNHALTED",
                                                          "% CPU_CLK_UNHALTED"]
    # the program's own lines and the shell's are reported, not read as rows
    assert any("Profiler started" in x for x in p.problems)


def test_opcontrol_status_and_what_operf_and_opcontrol_said() -> None:
    chunks = {c.split("\n", 1)[0]: c.split("\n", 1)[1] if "\n" in c else ""
              for c in sample("opcontrol-status-01.txt").split("\n$ ")}
    status = oprofile.parse_status(chunks["sudo opcontrol --status"])
    assert status.ok and status.fact("daemon") == "not running"
    assert status.fact("vmlinux file") == "" and status.fact("Session-dir") == "/var/lib/oprofile"
    refused = oprofile.parse_messages("operf", chunks["$ sudo operf -l"])
    assert not refused.ok and "does not support your processor type" in (refused.error or "")
    assert "PMU" in (refused.error or "")
    start = oprofile.parse_messages("opcontrol", chunks["sudo opcontrol --start"])
    assert "does not seem to be valid" in (start.error or "")


# ---------------------------------------------------------------- xenpm


def test_xenpm_p_states_with_the_current_one_marked() -> None:
    p = xenpm.parse(sample("xenpm-get-cpufreq-states-01.txt"))
    assert p.tool == "xenpm get-cpufreq-states" and p.problems == ()
    recs = p.tables[0].records()
    assert len(recs) == 24 and p.fact("cpus") == "8"
    assert recs[2] == {"cpu": 0, "state": "P2", "mhz": 1400, "current": "*", "transitions": 130,
                       "residency": 4205}
    assert {r["cpu"] for r in recs} == {0, 2, 4, 6, 8, 10, 12, 14}  # even ids only
    assert [r["state"] for r in recs if r["current"] and r["cpu"] == 10] == ["P0"]


def test_xenpm_c_states_indented_by_the_mail() -> None:
    p = xenpm.parse(sample("xenpm-get-cpuidle-states-03.txt"))
    assert p.tool == "xenpm get-cpuidle-states" and p.problems == ()
    assert p.fact("max_cstate") == "C0" and p.fact("cpus") == "22"
    recs = p.tables[0].records()
    assert recs[0] == {"cpu": 0, "state": "C0", "transitions": 0, "residency": 3769835}
    assert recs[-1] == {"cpu": 21, "state": "C1", "transitions": 1, "residency": 3769845}


# ---------------------------------------------------------------- every parser, every sample

PARSERS: dict[str, Callable[[str], object]] = {
    "xentop": xentop.parse,
    "xl list": xl.parse_xl_list,
    "xl info": xl.parse_xl_info,
    "perf report": perf.parse_report,
    "perf stat": perf.parse_stat,
    "opreport": oprofile.parse_report,
    "opcontrol --status": oprofile.parse_status,
    "operf": lambda t: oprofile.parse_messages("operf", t),
    "xenpm": xenpm.parse,
}
ALL = sorted(p.name for p in SAMPLES.glob("*.txt"))


def _verdict(result: object) -> tuple[bool, str | None]:
    if isinstance(result, xentop.Xentop):
        return result.error is None, result.error
    assert isinstance(result, Parsed)
    return result.ok, result.error


@pytest.mark.parametrize("name", ALL)
def test_every_parser_on_every_sample_reads_it_or_says_why_not(name: str) -> None:
    text = sample(name)
    for tool, parse in PARSERS.items():
        ok, error = _verdict(parse(text))
        if not ok:
            assert error and "\n" not in error and len(error) < 300, (tool, error)


def test_the_parsers_say_so_for_nothing_at_all() -> None:
    for tool, parse in PARSERS.items():
        ok, error = _verdict(parse(""))
        assert (not ok and error) or tool == "operf", tool


# ---------------------------------------------------------------- generated variants

NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\x00\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                min_size=1, max_size=60).filter(lambda s: s.strip() == s and s.strip())
COUNT = st.integers(0, 10**12)


def xentop_row(name: str, full: bool, v: dict[str, object]) -> str:
    """A row as xentop.c prints it (print_name, print_state, ... with their widths)."""
    shown = f"{name:>10}" if full else f"{name[:10]:>10}"
    maxk = f"{'no limit':>10}" if v["maxmem"] is None else f"{v['maxmem']:>10}"
    maxp = f"{'n/a':>9}" if v["maxmem"] is None else f"{v['maxpct']:>9.1f}"
    vbd = (lambda x: f"{x:>8}") if v["vbd"] else (lambda x: f"{'-':>8}")
    return " ".join([shown, str(v["state"]), f"{v['cpu']:>10}", f"{v['pct']:>6.1f}",
                     f"{v['mem']:>10}", f"{v['mempct']:>6.1f}", maxk, maxp, f"{v['vcpus']:>5}",
                     f"{v['nets']:>4}", f"{v['tx']:>8}", f"{v['rx']:>8}", f"{v['vbds']:>4}",
                     vbd(0), vbd(v["rd"]), vbd(v["wr"]), f"{v['rd']:>10}", f"{v['wr']:>10}",
                     f"{0:>4}"])


HEADER = ("      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS "
          "NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID")
VALUES = st.fixed_dictionaries({
    "state": st.sampled_from(["-----r", "--b---", "----p-", "---c--", "d-----"]),
    "cpu": COUNT, "pct": st.floats(0, 9999, allow_nan=False), "mem": COUNT,
    "mempct": st.floats(0, 100, allow_nan=False), "maxmem": st.none() | COUNT,
    "maxpct": st.floats(0, 100, allow_nan=False), "vcpus": st.integers(1, 512),
    "nets": st.integers(0, 8), "tx": COUNT, "rx": COUNT, "vbds": st.integers(0, 16),
    "vbd": st.booleans(), "rd": COUNT, "wr": COUNT,
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, VALUES, st.booleans(), st.sampled_from(["", "-v", "-n", "-x"]))
def test_xentop_reads_back_any_name_and_figures(name: str, v: dict[str, object], full: bool,
                                                sub: str) -> None:
    lines = [HEADER, xentop_row(name, full, v)]
    lines += {"": [], "-v": ["VCPUs(sec):   0:       1234s   1:         12s"],
              "-n": ["Net0 RX: 12345678bytes     1234pkts        0err        0drop  TX: "
                     "1bytes        1pkts        0err        0drop"],
              "-x": ["VBD BlkBack 51712 [ca: 0] OO:        -   RD:        -   WR:        -   "
                     "RSECT:          -   WSECT:          -"]}[sub]
    top = xentop.parse("\n".join(lines))
    assert top.error is None and top.problems == ()
    (d,) = top.last.domains  # type: ignore[union-attr]
    assert d.name == (name if full else name[:10]).strip()
    assert (d.state, d.cpu_sec, d.mem_k, d.vcpus, d.nettx_k, d.netrx_k) == \
        (v["state"], v["cpu"], v["mem"], v["vcpus"], v["tx"], v["rx"])
    assert d.no_limit == (v["maxmem"] is None)
    assert d.vbd_rd == (v["rd"] if v["vbd"] else None)
    assert len(d.sub_lines) == (1 if sub else 0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(
    [HEADER, "  Domain-0 -----r 1 0.0 1 1.0 no limit n/a 1 0 0 0 0 0 0 0 0 0 0",
     "  Domain-0 -----r 1 0.0 1", "x" * 300, "-----r", "NAME STATE", " n/a n/a n/a",
     "VBD BlkTap 1 [ 0: 0] OO: - RD: - WR: -", "        5:          3s", "", "\t\t",
     "Mem: 1k total, 1k used, 0k free    CPUs: 1 @ 1MHz", "\x1b[2J", "no limit"]),
    max_size=12), st.text(max_size=80))
def test_xentop_never_raises_on_lines_in_any_order(lines: list[str], noise: str) -> None:
    top = xentop.parse("\n".join([*lines, noise]))
    assert top.error is not None or top.last is not None


GENERIC = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)


@settings(max_examples=100, deadline=None)
@given(GENERIC)
def test_no_parser_raises_on_any_text(text: str) -> None:
    for parse in PARSERS.values():
        _verdict(parse(text))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(sample("perf-report-01.txt").splitlines()
                                + sample("opreport-l-02.txt").splitlines()
                                + sample("xenpm-get-cpufreq-states-01.txt").splitlines()[:12]),
                max_size=25))
def test_shuffled_real_lines_never_raise(lines: list[str]) -> None:
    text = "\n".join(lines)
    for parse in PARSERS.values():
        _verdict(parse(text))
