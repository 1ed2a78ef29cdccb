"""The Profiling view, driven with keys on the real app over a real simulator whose
hosts' dom0 tools run here (the demo's way): offered only where the profile allows
it, a live xentop whose rows are the VMs (pause the busiest from there), perf,
OProfile and xenpm sessions with their tables and raw text, a typed command shown
verbatim before it runs, and escape stopping what runs on the host."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from textual.widgets import Button, Input, OptionList, Select, Tabs

from tests.ui.dialogs import confirm_plan
from tests.ui.harness import Ui, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmText
from xsctl.ui.modals.forms import PickOne
from xsctl.ui.views import profiling
from xsctl.ui.views.profiling import ProfilingView, ResultPane
from xsctl.xapi.client import Client


@pytest.fixture(autouse=True)
def quick_xentop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiling, "XENTOP_DELAY", 1)


@pytest.fixture
def allowed(client: Client, sim: Simulator, tmp_path: Path) -> Client:
    assert client.target is not None
    client.target.profiling = True
    client.target.host_tools = sim.host_tools(str(tmp_path / "dom0"))
    return client


@pytest.fixture
async def ui(sim: Simulator, allowed: Client) -> AsyncIterator[Ui]:
    async with running(sim, allowed, size=(120, 36)) as ui:
        yield ui


def view(ui: Ui) -> ProfilingView:
    return ui.main.query_one(ProfilingView)


def names(ui: Ui) -> list[str]:
    t = view(ui).table
    return [t.rows[k].cells[0][0] for k in t.order]


def cell(ui: Ui, name: str, col: int) -> str:
    t = view(ui).table
    key = next(k for k in t.order if t.rows[k].cells[0][0] == name)
    return t.rows[key].cells[col][0]


async def xentop_live(ui: Ui, cpu: bool = True) -> ProfilingView:
    """Open the view and wait for xentop's rows; with ``cpu``, for its second
    iteration (the first has no CPU figures)."""
    await ui.press("0")
    v = view(ui)
    await ui.until(lambda: v.block is not None and v.block_index >= (1 if cpu else 0),
                   timeout=15, what="xentop's rows")
    await ui.handled()
    return v


def status(ui: Ui) -> str:
    return text_of(view(ui).query_one("#profiling-status"))


async def test_offered_only_where_the_profile_allows_it(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        assert "profiling" not in [c.ID for c in ui.main.view_classes]
        assert not ui.main.query(ProfilingView)


async def test_xentop_sorted_the_busiest_vm_paused_from_its_row_and_left(
        ui: Ui, sim: Simulator) -> None:
    keys = [c.KEY for c in ui.main.view_classes]
    numbered = [k for k in keys if k]
    # last of the numbered ones, after 1 to 9; the views without a key come after it
    assert numbered[-1] == "0" and numbered[:-1] == sorted(numbered[:-1])
    assert keys == numbered + [""] * (len(keys) - len(numbered))
    menu = ui.main.query_one("#menu", OptionList)
    shown = [str(menu.get_option_at_index(i).prompt) for i in range(menu.option_count)]
    at = shown.index("0  Profiling")
    assert at == len(numbered) - 1 and shown[at - 1].startswith(max(numbered[:-1]))
    v = await xentop_live(ui)
    assert sorted(names(ui)) == ["Domain-0", "cache-01", "dns-02", "web-01"]
    assert all(r.how == "domid" for r in v.rows.values())
    cpu = [float(cell(ui, n, profiling.CPU)) for n in names(ui)]
    assert cpu == sorted(cpu, reverse=True)
    web = next(r for r in v.rows.values() if r.label == "web-01")
    assert web.vm is not None and sim.store.get(web.vm.ref, "VM")["name_label"] == "web-01"
    assert "xcp-ng-01 · its simulated dom0, run here" in text_of(
        v.query_one("#profiling-host"))
    tabs = v.query_one("#profiling-tools", Tabs)
    assert [str(t.label) for t in tabs.query("Tab")] == \
        ["xentop", "perf", "OProfile", "xenpm", "Run a command"]
    assert "4 domains · CPU% ▼ (o sorts)" in status(ui)

    # o: memory, network, disk, name, and back to CPU, the numbers biggest first
    seen = []
    for _ in range(5):
        await ui.press("o")
        seen.append((profiling.COLUMNS[v.table.sort_column].label, v.table.sort_reverse))
    assert seen == [("Memory", True), ("Net/s", True), ("Disk/s", True), ("Name", False),
                    ("CPU%", True)]

    # the busiest VM is the top row (dom0 may lead: then the next): pause it from here
    await ui.press("g")
    busiest = names(ui)[0]
    if busiest == "Domain-0":
        await ui.press("down")
        busiest = names(ui)[1]
    await ui.press("p")
    plan = await confirm_plan(ui)
    assert f"Async.VM.pause({busiest})" in plan
    await ui.until(lambda: ui.vm(busiest)["power_state"] == "Paused", what="paused in the sim")
    await ui.until(lambda: cell(ui, busiest, 2) == "paused", timeout=10, what="paused in xentop")
    assert v.table.rows[v.table.cursor_key].cells[0][0] == busiest  # type: ignore[index]
    assert cell(ui, busiest, profiling.CPU) == "0.0"

    # dom0 has no VM actions: said, and nothing sent
    v.table.move_to(next(k for k, r in v.rows.items() if r.vm is not None and r.vm.control))
    mark = ui.writes.mark()
    await ui.press("t")
    await ui.until_said("Domain-0 is the host's control domain")
    assert ui.writes.tasks(mark) == []

    # leaving the view stops xentop on the host
    await ui.press("2")
    await ui.until(lambda: not any(w.group == "profiling-xentop" and w.is_running
                                   for w in ui.app.workers), timeout=5, what="xentop stopped")


async def test_perf_symbols_raw_text_and_escape_stopping_a_long_one(ui: Ui) -> None:
    v = await xentop_live(ui, cpu=False)
    await ui.press("right_square_bracket")
    assert v.pane == "perf"
    v.query_one("#perf-seconds", Input).value = "1"
    v.query_one("#perf-seconds", Input).focus()
    await ui.press("enter")
    pane = v.query_one("#result-perf", ResultPane)
    await ui.until(lambda: pane.tables, timeout=15, what="perf's report")
    await ui.handled()
    assert [c.label for c in pane.tables[0].columns] == \
        ["Overhead", "Samples", "Command", "Shared Object", "Symbol"]
    assert "xen_hypercall_sched_op" in text_of(pane.table)
    assert "the whole host, 1 s: done" in status(ui)
    await ui.press("R")
    assert pane.raw and "$ perf record -a -o /tmp/xsctl-perf-" in pane.raw_text
    await ui.press("R")
    assert not pane.raw and pane.table.display

    # a long recording: escape stops it, on the host too, and stays in the view
    v.query_one("#perf-seconds", Input).value = "300"
    v.query_one("#perf-seconds", Input).focus()
    await ui.press("enter")
    await ui.until(lambda: "recording 300 s" in status(ui), timeout=10)
    start = time.monotonic()
    await ui.press("escape")
    await ui.until(lambda: v.job is None, timeout=10, what="perf stopped")
    assert time.monotonic() - start < 8
    assert status(ui).endswith("stopped")
    assert ui.main.current_view == "profiling"
    assert not list(Path("/tmp").glob(Path(pane.raw_text.split(" -o ")[1].split()[0]).name))


async def test_a_typed_command_is_shown_as_it_runs_then_run(ui: Ui, tmp_path: Path) -> None:
    v = await xentop_live(ui, cpu=False)
    v._open("run")
    await ui.handled()
    line = v.query_one("#run-line", Input)
    line.focus()
    canary = tmp_path / "canary"
    line.value = f'printf "%s|" "$(touch {canary})" "a b"'
    await ui.press("enter")
    dlg = await ui.modal(ConfirmText)
    shown = dlg.body.plain  # what the dialog shows, before it is folded to its width
    assert f"\n\nprintf '%s|' '$(touch {canary})' 'a b'\n\n" in shown
    assert "on xcp-ng-01 (simulated dom0 here)" in shown
    await ui.press("y")
    pane = v.query_one("#result-run", ResultPane)
    await ui.until(lambda: pane.raw_text, timeout=10, what="the command's output")
    assert f"$(touch {canary})|a b|" in pane.raw_text and not canary.exists()
    line.value = "xl list"
    line.focus()
    await ui.press("enter")
    await ui.modal(ConfirmText)
    await ui.press("y")
    await ui.until(lambda: pane.tables and pane.tables[0].title == "Domains", timeout=10)


async def test_another_host_has_its_own_domains_and_tools(ui: Ui) -> None:
    v = await xentop_live(ui, cpu=False)
    await ui.press("h")
    picker = await ui.modal(PickOne)
    await ui.press("down", "enter")  # xcp-ng-02
    await ui.back_to_main()
    del picker
    await ui.until(lambda: v.block is not None and "db-01" in names(ui), timeout=15,
                   what="xcp-ng-02's domains")
    tabs = v.query_one("#profiling-tools", Tabs)
    assert "OProfile" not in [str(t.label) for t in tabs.query("Tab")]
    assert "not on this host: OProfile" in text_of(v.query_one("#profiling-host"))


async def test_xentop_goes_on_under_a_dialog(ui: Ui) -> None:
    """A real terminal hides the view under a dialog (the compositor's Hide, which
    Pilot's headless screen does not send): xentop must go on, or the row under the
    cursor would never show the pause the dialog confirmed."""
    from textual import events

    v = await xentop_live(ui, cpu=False)
    v.post_message(events.Hide())
    await ui.handled()
    n = v.block_index
    await ui.until(lambda: v.block_index >= n + 2, timeout=10, what="xentop going on")


async def test_oprofile_passive_domains_and_xenpm_from_their_forms(ui: Ui, sim: Simulator
                                                                   ) -> None:
    v = await xentop_live(ui, cpu=False)
    v._open("oprofile")
    await ui.handled()
    v.query_one("#op-mode", Select).value = "passive"
    await ui.handled()
    assert not v.query_one("#op-xen-row").has_class("hidden")
    for field, value in (("seconds", "1"), ("domains", "web-01"),
                         ("xen", "/boot/xen-syms-4.17.5"), ("images", "/boot/vmlinux-web")):
        v.query_one(f"#op-{field}", Input).value = value
    v.query_one("#op-go", Button).press()
    pane = v.query_one("#result-oprofile", ResultPane)
    await ui.until(lambda: len(pane.tables) == 2, timeout=20, what="opreport's two tables")
    await ui.handled()
    images = pane.tables[0] if pane.tables[0].title == "Images" else pane.tables[1]
    assert {"domain1-kernel", "domain1-apps", "xen-syms-4.17.5"} <= set(images.values("image"))
    web = sim.store.get(ui.ref("web-01"), "VM")
    assert web["domid"] == 1
    assert f"--passive-domains={web['domid']}" in pane.raw_text
    first = pane.index
    await ui.press("right_curly_bracket")
    assert pane.index == (first + 1) % 2
    # a bad path is refused before anything runs
    v.query_one("#op-xen", Input).value = "../xen"
    runs = len(pane.raw_text)
    v.query_one("#op-go", Button).press()
    await ui.until_said("an absolute path in dom0 is needed", severity="error")
    assert len(pane.raw_text) == runs

    v._open("xenpm")
    await ui.handled()
    v.query_one("#xenpm-what", Select).value = "cpuidle"
    v.query_one("#xenpm-go", Button).press()
    xpane = v.query_one("#result-xenpm", ResultPane)
    await ui.until(lambda: xpane.tables, timeout=10, what="xenpm's table")
    assert xpane.tables[0].title == "C-states (idle)"
    assert xpane.table.sort_column == len(xpane.table.columns)  # as printed: CPU 0 first
    assert xpane.table.rows[xpane.table.order[0]].cells[0][0] == "0"
