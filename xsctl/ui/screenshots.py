"""Screenshots of the real app on the demo pool, as SVG.

    python -m xsctl.ui.screenshots [--out screenshots] [SCENE ...]

Each scene starts its own simulator (seed 1, its clock fixed at EPOCH so uptimes and
alert ages read the same every time), connects a client over HTTPS, drives the app
with Textual's Pilot as a user would, and saves what is on screen. The SVG snapshot
tests render the same scenes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input, OptionList, TabbedContent

from xsctl.ui.app import XsctlApp, create_app
from xsctl.ui.views.block import BlockView
from xsctl.ui.views.disks import DisksView
from xsctl.ui.views.networks import NetworksView
from xsctl.ui.views.performance import PerformanceView
from xsctl.ui.views.storage import StorageView
from xsctl.ui.views.vms import VmsView
from xsctl.xapi.client import Client, KnownHosts, Target

EPOCH = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)

Step = Callable[[Pilot[int]], Awaitable[None]]


async def _settle(pilot: Pilot[int]) -> None:
    await pilot.pause()
    # every worker but those that run as long as their view shows: the metrics poller,
    # the profiling view's xentop
    busy = [w for w in pilot.app.workers if w.group not in ("metrics", "profiling-xentop")]
    if busy:  # an empty list would mean "all of them"
        await pilot.app.workers.wait_for_complete(busy)
    await pilot.pause()


async def _vm(pilot: Pilot[int], name: str) -> VmsView:
    await pilot.press("2")
    await _settle(pilot)
    view = pilot.app.screen.query_one(VmsView)
    key = next(k for k, r in view.table.rows.items() if r.cells[0][0] == name)
    view.table.move_to(key)
    await _settle(pilot)
    return view


async def scene_status(pilot: Pilot[int]) -> None:
    from xsctl.ui.views.status import StatusView

    await _settle(pilot)
    app = pilot.app
    if isinstance(app, XsctlApp) and app.metrics_enabled:  # the README's: live CPU figures
        view = app.screen.query_one(StatusView)
        for _ in range(200):
            if view.load:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)


async def scene_vms(pilot: Pilot[int]) -> None:
    await _vm(pilot, "db-01")


async def scene_vm_detail(pilot: Pilot[int]) -> None:
    await _vm(pilot, "db-01")
    pilot.app.screen.query_one("#vm-detail-tabs", TabbedContent).active = "tab-disks"
    await _settle(pilot)


async def _until(pilot: Pilot[int], pred: Callable[[], bool], timeout: float = 10) -> None:
    for _ in range(int(timeout * 20)):
        if pred():
            return
        await pilot.pause(0.05)
    raise TimeoutError("the screen never got there")


async def scene_confirm(pilot: Pilot[int]) -> None:
    from xsctl.ui.modals.confirm import ConfirmPlan

    await _vm(pilot, "web-01")
    await pilot.press("T")  # force shutdown: a destructive plan to confirm
    await _until(pilot, lambda: isinstance(pilot.app.screen, ConfirmPlan))
    await pilot.pause()


async def scene_filter(pilot: Pilot[int]) -> None:
    await _vm(pilot, "web-01")
    await pilot.press("slash")
    await pilot.press(*"prod")
    await pilot.press("enter")
    await _settle(pilot)


async def scene_tasks(pilot: Pilot[int]) -> None:
    view = await _vm(pilot, "web-staging")
    await pilot.press("s")
    await _settle(pilot)
    for name in ("k8s-node-03", "legacy-erp"):
        key = next(k for k, r in view.table.rows.items() if r.cells[0][0] == name)
        view.table.move_to(key)
        await pilot.press("u")
    await pilot.pause(1.5)
    await pilot.press("3")
    await pilot.pause(0.5)


async def _storage(pilot: Pilot[int], name: str) -> StorageView:
    await pilot.press("4")
    await _settle(pilot)
    view = pilot.app.screen.query_one(StorageView)
    key = next(k for k, r in view.table.rows.items() if r.cells[0][0].startswith(name))
    view.table.move_to(key)
    await _settle(pilot)
    return view


async def scene_storage(pilot: Pilot[int]) -> None:
    await _storage(pilot, "NFS storage")


async def scene_networks(pilot: Pilot[int]) -> None:
    """The Networks view, reached as a view without a number key is (the menu, the
    palette, --view), the cursor on the VLAN so that its PIFs and VMs are beside it."""
    from xsctl.ui.screens.main import MainScreen

    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    screen.action_show_view("networks")
    await _settle(pilot)
    view = screen.query_one(NetworksView)
    key = next(k for k, r in view.table.rows.items() if r.cells[0][0].startswith("DMZ"))
    view.table.move_to(key)
    await _settle(pilot)


async def scene_disks(pilot: Pilot[int]) -> None:
    await _storage(pilot, "NFS storage")
    await pilot.press("enter")  # its disks
    await _settle(pilot)
    view = pilot.app.screen.query_one(DisksView)
    key = next(k for k, r in view.table.rows.items() if r.cells[0][0] == "db-01 0")
    view.table.move_to(key)
    await _settle(pilot)


async def _hosts(pilot: Pilot[int], name: str) -> None:
    """The Hosts view (reached from the menu: it has no number key), on ``name``."""
    from xsctl.ui.screens.main import MainScreen
    from xsctl.ui.views.hosts import HostsView

    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    screen.action_show_view("hosts")
    await _settle(pilot)
    view = screen.query_one(HostsView)
    key = next(k for k, r in view.table.rows.items() if r.cells[0][0] == name)
    view.table.move_to(key)
    await _settle(pilot)


async def scene_hosts(pilot: Pilot[int]) -> None:
    await _hosts(pilot, "xcp-ng-01")


async def scene_hosts_maintenance(pilot: Pilot[int]) -> None:
    """Entering maintenance mode: dns-02 cannot move (its disk is local), marked to
    shut down; the plan says where the others go."""
    from xsctl.ui.modals.confirm import ConfirmPlan
    from xsctl.ui.modals.forms import PickMany

    await _hosts(pilot, "xcp-ng-01")
    await pilot.press("m")
    await _until(pilot, lambda: isinstance(pilot.app.screen, PickMany))
    await pilot.pause()
    await pilot.press("space", "tab", "enter")
    await _until(pilot, lambda: isinstance(pilot.app.screen, ConfirmPlan))
    await pilot.pause()


async def scene_narrow(pilot: Pilot[int]) -> None:
    await _vm(pilot, "web-01")


async def scene_narrow_menu(pilot: Pilot[int]) -> None:
    await _vm(pilot, "web-01")
    await pilot.press("f9")
    await _settle(pilot)


async def _wizard_at(pilot: Pilot[int], page: str) -> None:
    """The New SR wizard on the demo's NFS server, keys only, up to ``page``."""
    from xsctl.ui.modals.new_sr import NewSrWizard, open_new_sr
    from xsctl.ui.screens.main import MainScreen

    await _settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    open_new_sr(screen.runner)
    await _until(pilot, lambda: isinstance(pilot.app.screen, NewSrWizard))
    wiz = pilot.app.screen
    assert isinstance(wiz, NewSrWizard)

    async def at(p: str) -> None:
        await _until(pilot, lambda: wiz.page == p and wiz._probe is None)
        await pilot.pause()

    await pilot.pause()
    await pilot.press("enter")  # NFS, the first type
    await at("fields")
    await pilot.press("enter")  # the server the pool already uses: probe its exports
    await at("pick")
    if page == "pick":
        return
    await pilot.press("down", "down", "enter")  # /export/backup
    await at("found")
    await pilot.press("enter")  # create a new SR
    await at("name")
    await pilot.press("enter")
    await at("plan")


async def scene_new_sr_exports(pilot: Pilot[int]) -> None:
    await _wizard_at(pilot, "pick")


async def scene_new_sr_plan(pilot: Pilot[int]) -> None:
    await _wizard_at(pilot, "plan")


async def scene_templates(pilot: Pilot[int]) -> None:
    from xsctl.ui.views.templates import TemplatesView

    await pilot.press("6")
    await _settle(pilot)
    view = pilot.app.screen.query_one(TemplatesView)
    key = next(k for k, r in view.table.rows.items() if r.cells[0][0] == "Debian Bookworm 12")
    view.table.move_to(key)
    await _settle(pilot)


async def _wizard(pilot: Pilot[int], page: int) -> None:
    from xsctl.ui.wizard import NewVmWizard

    await scene_templates(pilot)
    await pilot.press("i")
    await _until(pilot, lambda: isinstance(pilot.app.screen, NewVmWizard))
    wiz = pilot.app.screen
    assert isinstance(wiz, NewVmWizard)
    wiz.query_one("#w-name", Input).value = "web-05"
    await _settle(pilot)
    while wiz.step < page:
        if wiz.step == 2:  # the Debian netinst ISO
            media = wiz.query_one("#w-media", OptionList)
            media.highlighted = next(i for i in range(media.option_count)
                                     if "debian-12" in str(media.get_option_at_index(i).prompt))
        wiz.action_next()
        await _settle(pilot)
    await _settle(pilot)


async def scene_new_vm_media(pilot: Pilot[int]) -> None:
    await _wizard(pilot, 2)


async def scene_new_vm_disks(pilot: Pilot[int]) -> None:
    await _wizard(pilot, 5)


async def scene_new_vm_review(pilot: Pilot[int]) -> None:
    await _wizard(pilot, 8)


async def scene_snapshots(pilot: Pilot[int]) -> None:
    await pilot.press("7")
    await _settle(pilot)


async def _block(pilot: Pilot[int], vm: str) -> BlockView:
    await pilot.press("8")
    await _settle(pilot)
    view = pilot.app.screen.query_one(BlockView)
    key = next(k for k in view.table.order if view.table.rows[k].cells[0][0] == vm)
    view.table.move_to(key)
    await _settle(pilot)
    return view


async def scene_block(pilot: Pilot[int]) -> None:
    await _block(pilot, "monitor-01")


async def scene_attach(pilot: Pilot[int]) -> None:
    from textual.widgets import Input

    from xsctl.ui.modals.attach import AttachDialog

    await _block(pilot, "web-01")
    await pilot.press("A")
    # the dialog is awaited by the action's worker: no waiting for every worker here
    await _until(pilot, lambda: isinstance(pilot.app.screen, AttachDialog))
    await pilot.pause()
    size = pilot.app.screen.query_one("#attach-size", Input)
    size.value = "5G"
    await _until(pilot, lambda: "5 GiB" in str(
        pilot.app.screen.query_one("#attach-plan").render()))
    await pilot.pause()


async def scene_vm_disks(pilot: Pilot[int]) -> None:
    view = await _vm(pilot, "monitor-01")
    view.detail_open = True
    view.apply_detail()
    pilot.app.screen.query_one("#vm-detail-tabs", TabbedContent).active = "tab-disks"
    await _settle(pilot)
    pilot.app.screen.query_one("#vm-disk-table").focus()
    await _settle(pilot)


async def scene_profiling(pilot: Pilot[int]) -> None:
    from xsctl.ui.views.profiling import ProfilingView

    await pilot.press("0")
    view = pilot.app.screen.query_one(ProfilingView)
    # xentop's second iteration, the first with CPU figures; then it is held there
    await _until(pilot, lambda: view.block is not None and view.block_index >= 1, timeout=20)
    view.stop_xentop.set()
    await pilot.press("home")
    await _settle(pilot)


async def scene_alerts(pilot: Pilot[int]) -> None:
    from xsctl.ui.screens.main import MainScreen
    from xsctl.ui.views.alerts import AlertsView

    await _settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MainScreen)
    screen.action_show_view("alerts")  # from the menu: no number key is left for it
    await _settle(pilot)
    view = screen.query_one(AlertsView)
    key = next(k for k, r in view.table.rows.items() if r.cells[4][0] == "Alarm: cpu_usage")
    view.table.move_to(key)
    await _settle(pilot)


# the scenes of the Profiling view, which the profile must allow (the demo's does)
PROFILING = frozenset({"profiling", "profiling-80x24"})

# name -> (terminal size, steps, operation time in the simulator)
async def _graphs(pilot: Pilot[int], kind: str) -> None:
    view = pilot.app.screen.query_one(PerformanceView)
    await _until(pilot, lambda: view.hist is not None and view.hist.kind == kind)
    await _settle(pilot)
    await pilot.pause(0.1)  # the graphs' first layout


async def scene_performance_host(pilot: Pilot[int]) -> None:
    await pilot.press("9")
    await _graphs(pilot, "host")


async def scene_performance_vm(pilot: Pilot[int]) -> None:
    await _vm(pilot, "web-01")
    await pilot.press("f")
    await _graphs(pilot, "vm")


async def scene_cpu_vms(pilot: Pilot[int]) -> None:
    view = await _vm(pilot, "db-01")
    await _until(pilot, lambda: view.rows is not None and
                 sum(bool(t) for t in view.rows.trails.values()) >= 10)
    await _settle(pilot)


async def scene_cpu_status(pilot: Pilot[int]) -> None:
    from xsctl.ui.views.status import StatusView

    view = pilot.app.screen.query_one(StatusView)
    await _until(pilot, lambda: len(view.trails) == 3 and all(view.trails.values()))
    await _settle(pilot)


# scenes whose figures come from the RRDs: the simulator's RRD clock is fixed at EPOCH
FIXED_RRD = frozenset({"performance-host", "performance-vm", "cpu-vms-80x24",
                       "cpu-status-80x24"})
# and those that show the metrics feed's figures: the feed runs (its rounds bring the
# same rows again while the RRD clock stands still)
FEED = frozenset({"cpu-vms-80x24", "cpu-status-80x24"})


SCENES: dict[str, tuple[tuple[int, int], Step, float]] = {
    "status": ((160, 45), scene_status, 0.05),
    "vms": ((160, 45), scene_vms, 0.05),
    "vm-detail": ((160, 45), scene_vm_detail, 0.05),
    "confirm": ((160, 45), scene_confirm, 0.05),
    "filter": ((160, 45), scene_filter, 0.05),
    "tasks": ((160, 45), scene_tasks, 4.0),
    # wider: the table keeps its columns beside the detail pane
    "storage": ((200, 50), scene_storage, 0.05),
    "disks": ((200, 50), scene_disks, 0.05),
    "hosts": ((200, 50), scene_hosts, 0.05),
    "hosts-maintenance": ((100, 36), scene_hosts_maintenance, 0.05),
    "networks": ((160, 40), scene_networks, 0.05),
    # "new-sr": the New SR wizard, added with it
    "narrow-80x24": ((80, 24), scene_narrow, 0.05),
    "narrow-80x24-menu": ((80, 24), scene_narrow_menu, 0.05),
    "new-sr-exports": ((80, 24), scene_new_sr_exports, 0.05),
    "new-sr-plan": ((80, 24), scene_new_sr_plan, 0.05),
    "templates": ((160, 45), scene_templates, 0.05),
    "new-vm-media": ((100, 30), scene_new_vm_media, 0.05),
    "new-vm-disks": ((100, 30), scene_new_vm_disks, 0.05),
    "new-vm-review": ((100, 30), scene_new_vm_review, 0.05),
    "snapshots": ((120, 30), scene_snapshots, 0.05),
    "block": ((140, 36), scene_block, 0.05),
    "attach": ((100, 36), scene_attach, 0.05),
    "alerts": ((160, 36), scene_alerts, 0.05),
    "vm-disks": ((120, 30), scene_vm_disks, 0.05),
    "profiling": ((160, 45), scene_profiling, 0.05),
    "profiling-80x24": ((80, 24), scene_profiling, 0.05),
    "performance-host": ((80, 24), scene_performance_host, 0.05),
    "performance-vm": ((80, 24), scene_performance_vm, 0.05),
    "cpu-vms-80x24": ((80, 24), scene_cpu_vms, 0.05),
    "cpu-status-80x24": ((80, 24), scene_cpu_status, 0.05),
}


async def render(scene: str, known_hosts: Path | None = None, live: bool = False) -> str:
    """The SVG of one scene. ``live``: with metrics from /rrd_updates (the README's
    pictures); the snapshot tests keep them off, as their figures move with the wall
    clock. The certificate is pinned in ``known_hosts``, else in a throw-away folder."""
    if known_hosts is None:
        with tempfile.TemporaryDirectory(prefix="xsctl-shots-") as tmp:
            return await render(scene, Path(tmp) / "known_hosts", live)
    from xsctl.sim import Simulator

    size, steps, op_time = SCENES[scene]
    sim = Simulator(seed=1, epoch=EPOCH.timestamp(), op_time=op_time, auth_fail_delay=0.0,
                    password="demo", drift=False,
                    rrd_time=EPOCH.timestamp() if scene in FIXED_RRD else None).start()
    known = known_hosts
    target = Target(url=sim.url, user=sim.user, accept_fingerprint=sim.fingerprint)
    if scene in PROFILING:
        target.profiling = True
        target.host_tools = sim.host_tools(str(known.parent / "dom0"))
    client = Client.connect(target, sim.password, known=KnownHosts(known))
    try:
        client.load()  # as the connect screen hands it over: the first frame shows the pool
        app: XsctlApp = create_app(client, metrics=live or scene in FEED, clock=lambda: EPOCH)
        app.animation_level = "none"  # a tab underline caught mid-slide is not a view
        async with app.run_test(size=size) as pilot:
            await _settle(pilot)
            await steps(pilot)
            return app.export_screenshot(title=f"xsctl: {scene}")
    finally:
        client.close()
        sim.stop()


async def write_all(out: Path, scenes: list[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for scene in scenes:
        path = out / f"{scene}.svg"
        path.write_text(await render(scene, live=True), encoding="utf-8")
        written.append(path)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="screenshots", help="folder for the SVGs")
    ap.add_argument("scenes", nargs="*", choices=[*SCENES, []], help="scenes (default: all)")
    args = ap.parse_args()
    for p in asyncio.run(write_all(Path(args.out), args.scenes or list(SCENES))):
        print(p)


if __name__ == "__main__":
    main()
