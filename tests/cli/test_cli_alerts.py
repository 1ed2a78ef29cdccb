"""``xsctl alert list|show|dismiss`` run for real against the simulator: listing
newest first with filters, reading one whole, dismissing one, several in one call,
every one a filter keeps (its count typed or --yes), every one of a kind; bad input
is one line and changes nothing; hostile text prints clean, JSON stays exact."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.jsonrpc import JsonRpcClient
from xsctl.sim import Simulator
from xsctl.sim.handlers.message import emit

Alert = Callable[..., Run]


@pytest.fixture
def run(sim: Simulator, tmp_path: Path) -> Alert:
    conn = conn_args(sim, password_file(sim, tmp_path))

    def alert(*argv: str, stdin: str = "") -> Run:
        return xsctl("alert", *argv, *conn, stdin=stdin)

    return alert


def uuid_of(sim: Simulator, name: str) -> str:
    found = [m["uuid"] for m in sim.store.all("message").values() if m["name"] == name]
    assert len(found) == 1, (name, found)
    return str(found[0])


def names(sim: Simulator) -> list[str]:
    return sorted(str(m["name"]) for m in sim.store.all("message").values())


def controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})


def test_list_newest_first_with_filters(sim: Simulator, run: Alert) -> None:
    r = run("list")
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    assert lines[0].split() == ["PRIORITY", "WHEN", "CLASS", "OBJECT", "ALERT", "UUID"]
    assert len(lines) == 1 + len(sim.store.all("message"))
    assert "5 info" in lines[1] and "web-01" in lines[1] and "VM started" in lines[1]
    assert "Pool master transition" in lines[-1]
    assert any("2 service loss" in x and "legacy-erp" in x and "VM crashed" in x for x in lines)

    data = run("list", "--json").json()
    assert data[0]["uuid"] == uuid_of(sim, "VM_STARTED")
    crashed = next(m for m in data if m["name"] == "VM_CRASHED")
    assert crashed["priority"] == 2 and crashed["priority_name"] == "Service-loss imminent"
    assert crashed["class"] == "VM" and crashed["object"] == "legacy-erp"

    def listed(*filters: str) -> list[str]:
        r = run("list", "--json", *filters)
        assert r.code == 0, r.err
        return sorted(m["name"] for m in r.json())

    assert listed("--priority", "1") == ["ALARM"]
    assert listed("--priority", "1-2") == ["ALARM", "VM_CRASHED"]
    assert listed("--priority", "1,4") == ["ALARM", "POOL_MASTER_TRANSITION"]
    assert listed("--class", "sr") == ["ALARM"]
    assert listed("--object", "xcp-ng-01") == ["ALARM", "POOL_MASTER_TRANSITION"]
    assert listed("--name", "vm_started") == ["VM_STARTED"]
    assert listed("--class", "Host", "--priority", "3") == [
        "BOND_STATUS_CHANGED", "HOST_CLOCK_SKEW_DETECTED", "MULTIPATH_PERIODIC_ALERT"]


def test_bad_input_is_one_line_and_changes_nothing(sim: Simulator, run: Alert) -> None:
    before = names(sim)
    for argv, said in [
        (("list", "--priority", "7"), "out of range"),
        (("list", "--priority", "high"), "is not 1 to 5"),
        (("list", "--object", "nosuch"), "no VM, host, SR, pool or disk named 'nosuch'"),
        (("dismiss",), "name the alerts to dismiss, or give --all"),
        (("dismiss", "--priority", "5"), "--priority chooses alerts with --all"),
        (("dismiss", "--all", uuid_of(sim, "VM_CRASHED")), "not both"),
        (("dismiss", "00000000-dead"), "no alert with UUID"),
        (("show", "zzzz"), "no alert with UUID"),
        (("dismiss", "--all", "--every-kind"), "--all does not go with --every-kind"),
    ]:
        r = run(*argv)
        assert r.code == 2, (argv, r.out, r.err)
        assert said in r.err and len(r.err.strip().splitlines()) == 1, (argv, r.err)
        assert "Traceback" not in r.err
    assert names(sim) == before


def test_show_reads_one_whole(sim: Simulator, run: Alert) -> None:
    uuid = uuid_of(sim, "MULTIPATH_PERIODIC_ALERT")
    r = run("show", uuid[:8])
    assert r.code == 0, r.err
    assert "priority: 3 (Service degraded)" in r.out
    assert "about: Host xcp-ng-03" in r.out
    assert "Unhealthy paths:" in r.out and "current=1; max=2" in r.out


def test_dismiss_one_and_several(sim: Simulator, run: Alert) -> None:
    crashed = uuid_of(sim, "VM_CRASHED")
    r = run("dismiss", crashed, "--dry-run")
    assert r.code == 0 and "message.destroy(VM_CRASHED" in r.out
    assert f"xe message-destroy uuid={crashed}" in r.out
    assert "VM_CRASHED" in names(sim)  # a dry run changes nothing

    r = run("dismiss", crashed[:8])
    assert r.code == 0, r.err
    assert "VM_CRASHED" not in names(sim)

    # several: one plan, one message.destroy_many
    two = [uuid_of(sim, "VM_PAUSED"), uuid_of(sim, "VM_REBOOTED")]
    plan = run("dismiss", *two, "--dry-run", "--json").json()
    assert len(plan) == 1 and plan[0]["calls"][0].startswith("message.destroy_many([")
    r = run("dismiss", *two, "--json")
    assert r.code == 0, r.err
    assert {d["uuid"] for d in r.json()} == set(two)
    assert "VM_PAUSED" not in names(sim) and "VM_REBOOTED" not in names(sim)
    assert len(names(sim)) == 10


def test_dismiss_all_a_filter_keeps(sim: Simulator, run: Alert) -> None:
    for _ in range(20):
        emit(sim, "VM_STARTED", "VM", next(iter(sim.store.uuids["VM"])), "VM started.")
    # 26 informational ones now: typing their count confirms, --yes does too
    r = run("dismiss", "--all", "--priority", "5")
    assert r.code == 2 and "add --yes" in r.err  # not a terminal: never assumed
    assert names(sim).count("VM_STARTED") == 21
    dry = run("dismiss", "--all", "--priority", "5", "--dry-run")
    assert dry.code == 0 and "Dismiss 26 alerts" in dry.out
    assert "… 26 in all]" in dry.out  # the call names a few, and the count
    assert "the same message-destroy for each of the other 23 alerts" in dry.out
    r = run("dismiss", "--all", "--priority", "5", "--yes")
    assert r.code == 0, r.err
    assert "26 alerts: dismissed" in r.out
    assert all(m["priority"] != 5 for m in sim.store.all("message").values())
    assert len(names(sim)) == 7
    # nothing left to match: said, not an error
    r = run("dismiss", "--all", "--priority", "5", "--yes")
    assert r.code == 0 and "no alert matches" in r.err


def test_dismiss_every_alert_of_a_kind(sim: Simulator, run: Alert) -> None:
    vm = next(iter(sim.store.uuids["VM"]))
    emit(sim, "VM_CRASHED", "VM", vm, "VM crashed.")
    one = sorted(m["uuid"] for m in sim.store.all("message").values()
                 if m["name"] == "VM_CRASHED")[0]
    r = run("dismiss", one, "--every-kind", "--dry-run")
    assert r.code == 0 and "Dismiss every VM_CRASHED alert (2)" in r.out
    r = run("dismiss", one, "--every-kind", stdin="2\n")
    assert r.code == 2 and "add --yes" in r.err  # stdin is not a terminal
    r = run("dismiss", one, "--every-kind", "--yes")
    assert r.code == 0, r.err
    assert "VM_CRASHED" not in names(sim) and len(names(sim)) == 12


def test_hostile_text_prints_clean(sim: Simulator, run: Alert) -> None:
    j = JsonRpcClient(sim.url)
    j.login(sim.user, sim.password)
    try:
        web = j("VM.get_by_name_label", "web-01")[0]
        j("VM.set_name_label", web, "evil\x1b]0;PWNED\x07")
        # xapi refuses C0 controls in an alert (Encodings.UTF8_XML), not C1 ones
        j("message.create", "EVIL\u202e", 1, "VM", j("VM.get_uuid", web),
          "body\x9b2J [b]x[/b]\nline two")
    finally:
        j.logout()
        j.close()
    uuid = next(m["uuid"] for m in sim.store.all("message").values()
                if str(m["name"]).startswith("EVIL"))
    for argv in (("list",), ("show", uuid), ("dismiss", uuid, "--dry-run")):
        r = run(*argv)
        assert r.code == 0, (argv, r.err)
        assert not controls(r.out) and "\u202e" not in r.out, (argv, r.out)
    shown = run("show", uuid).out
    assert "evil]0;PWNED" in shown and "body2J [b]x[/b]" in shown and "line two" in shown
    data = run("list", "--json", "--priority", "1").json()
    evil = next(m for m in data if m["uuid"] == uuid)
    assert evil["body"] == "body\x9b2J [b]x[/b]\nline two"  # exact in JSON
    assert evil["object"] == "evil\x1b]0;PWNED\x07"


def test_read_only_refuses_dismissing(sim: Simulator, run: Alert) -> None:
    before = names(sim)
    for argv in (("dismiss", uuid_of(sim, "VM_CRASHED")), ("dismiss", "--all", "--yes")):
        r = run(*argv, "--read-only")
        assert r.code == 1 and "read-only" in r.err, (argv, r.err)
    assert names(sim) == before
