"""Every operation of the catalogue is reachable in the TUI: offered (and enabled) in
the actions menu of an object it is possible on, found by the command palette under
"<kind>: <label> <name>", and bound to its key in the view that acts on its kind; the
? help lists it. An operation on the pool itself (a new SR) acts on no row: it is
started from its wizard, which must reach a plan of that operation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.catalogue_support import LATER_XAPI, every_host_state, network_objects, possible
from tests.conftest import make_sim, wait_for, xenapi_session
from tests.ui.dialogs import open_wizard, wizard_fill, wizard_page, wizard_pick
from tests.ui.harness import Ui, running, words_of
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.ui.commands import XsctlCommands
from xsctl.ui.modals.forms import PickOne
from xsctl.ui.modals.help import HelpScreen
from xsctl.ui.views.base import View
from xsctl.ui.views.networks import CREATES, NetworksView
from xsctl.ui.views.status import StatusView
from xsctl.ui.views.vms import VmsView
from xsctl.xapi.client import Client
from xsctl.xapi.ops import catalogue


# walks every operation of every kind (over a hundred) through keys, menu and palette
@pytest.mark.timeout(600)
async def test_every_operation_is_in_the_menu_the_palette_and_the_keys() -> None:
    sim = make_sim(hosts=4)  # one host off, one empty in maintenance mode
    network_objects(sim)
    x = xenapi_session(sim)
    every_host_state(x.xenapi)
    client = connect(sim)
    sim.op_time = 600.0  # a long copy: a task to cancel (the walk takes a while)
    x.xenapi.Async.VM.copy(x.xenapi.VM.get_by_name_label("backup-01")[0], "long-copy",
                           "OpaqueRef:NULL")
    wait_for(lambda: any(t["status"] == "pending" for t in sim.store.all("task").values()))
    try:
        async with running(sim, client, size=(160, 50)) as ui:
            await ui.until(lambda: client.cache.all("task"), what="the task in the cache")
            views = {v.ACTS_ON: v for v in ui.main.views if v.ACTS_ON}
            provider = XsctlCommands(ui.main)
            for op in catalogue.operations():
                if op.kind.implicit:  # no row: the next test starts it from its wizard
                    continue
                later = LATER_XAPI.get(op.id)
                found = (possible(op, client.cache) if later is None else
                         next(((r, op.kind.load(client.cache, r), {})
                               for r, _ in op.kind.members(client.cache)), None))
                assert found is not None, op.id
                ref, obj, _ = found
                name = op.kind.name(obj)
                view: View | None = views.get(op.cls)
                # the Storage and Disks views act on SRs and disks
                assert view is not None, (
                    f"no view acts on {op.kind.nouns} (ACTS_ON = {op.cls!r}): {op.id} has "
                    "no key, actions menu entry or help in the TUI")
                # its key, in the view that acts on its kind
                assert any(b.key == op.key and b.action == f"act('{op.id}')"
                           for b in view.BINDINGS), op.id
                # the actions menu on that object offers it, enabled
                await ui.open_view(view.ID)
                await ui.until(lambda v=view, r=ref: v.show_object(r),
                               what=f"{name} in {view.LABEL}")
                await ui.press("a")
                menu: PickOne[str] = await ui.modal(PickOne)
                entry = next(c for c in menu.choices if c.value == op.id)
                # one of a later xapi is there, disabled, with its reason
                assert entry.reason == later, (op.id, entry)
                await ui.press("escape")
                await ui.back_to_main()
                # the palette finds it by its words
                text = f"{op.kind.noun.lower()}: {op.label.lower()} {name}"
                hits = [h.text async for h in provider.search(text)]
                assert (text in hits) is (later is None), (op.id, hits[:5])
                # and ? lists its key
                await ui.press("question_mark")
                helped = words_of(await ui.modal(HelpScreen))
                assert f"{op.label}: {op.help}" in helped, op.id
                await ui.press("escape")
                await ui.back_to_main()
    finally:
        sim.op_time = 0.05
        x.xenapi.session.logout()
        client.close()
        sim.stop()


async def test_pool_operations_start_from_their_wizard(sim: Simulator, client: Client) -> None:
    x = xenapi_session(sim)
    try:
        forgotten = _forgotten_sr(x)
    finally:
        x.xenapi.session.logout()
    implicit = [op for op in catalogue.operations() if op.kind.implicit]
    assert {op.id for op in implicit} == {"sr.create", "sr.introduce", "vm.import",
                                          "network.create", "bond.create", "pool.rename"}
    async with running(sim, client) as ui:
        # vm.import has a key of its own in the VMs view (tests/ui/test_transfer.py),
        # pool.rename in the Status view (tests/ui/test_pool_settings.py)
        assert any(b.key == "I" and b.action == "import_vm" for b in VmsView.BINDINGS)
        # a new network and a new bond have the Networks view's keys and actions menu
        # (tests/ui/test_networks_view.py)
        for op_id in CREATES:
            op = catalogue.get(op_id)
            assert any(b.key == op.key and b.action == f"create('{op_id}')"
                       for b in NetworksView.BINDINGS), op_id
        assert any(b.key == "R" and b.action == "rename_pool" for b in StatusView.BINDINGS)
        for op in implicit:
            if op.cli_group == "sr":
                await _through_the_wizard(ui, op.id, forgotten)


def _forgotten_sr(x: Any) -> str:
    """An SR on the demo NFS server that the pool does not know (made, then forgotten):
    what the wizard's probe offers to attach."""
    master = x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0])
    sr = x.xenapi.SR.create(master, {"server": "10.0.0.5", "serverpath": "/export/backup"},
                            "0", "old", "", "nfs", "user", True, {})
    uuid: str = x.xenapi.SR.get_uuid(sr)
    for pbd in x.xenapi.SR.get_PBDs(sr):
        x.xenapi.PBD.unplug(pbd)
    x.xenapi.SR.forget(sr)
    return uuid


async def _through_the_wizard(ui: Ui, op_id: str, forgotten: str) -> None:
    """The New SR wizard reaches a plan of ``op_id``: create new, or attach the
    forgotten SR its probe finds."""
    wiz = await open_wizard(ui)
    await wizard_pick(ui, wiz, "sr-types", "nfs")
    await wizard_page(ui, wiz, "fields")
    await ui.press("enter")
    await wizard_pick(ui, wiz, "probe-choices", "/export/backup")
    await wizard_page(ui, wiz, "found")
    await wizard_pick(ui, wiz, "found-choices",
                      {"sr.create": "create", "sr.introduce": forgotten}[op_id])
    await wizard_page(ui, wiz, "name")
    await wizard_fill(ui, wiz, {"name": "walked"})
    await wizard_page(ui, wiz, "plan")
    assert wiz.plan is not None and wiz.plan.action == op_id
    while isinstance(ui.app.screen, type(wiz)):
        await ui.press("escape")
    await ui.back_to_main()
