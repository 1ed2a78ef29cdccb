"""The pool and the host settings in the TUI: the Status view's pool keys (r renames
the pool, W makes the host under the cursor the master, the app following it), and
the host settings run as the palette runs them, each with its plan, the management
interface moving with the app following it, and a bad value refused in the form
with nothing sent."""

from __future__ import annotations

from textual.widgets import Input

from tests.ui.dialogs import confirm_plan, fill, form_error, pick, plan_shown
from tests.ui.harness import Ui, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.forms import FieldsForm
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client


def pool_text(ui: Ui) -> str:
    return text_of(ui.main.query_one("#status-pool"))


def pool_row(sim: Simulator) -> dict[str, object]:
    return dict(next(iter(sim.store.all("pool").values())))


async def test_R_renames_the_pool_from_the_status_view(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(120, 50)) as ui:
        assert "HA           off" in pool_text(ui)
        await ui.press("1", "R")
        form: FieldsForm = await ui.modal(FieldsForm)
        assert form.query_one("#f-name", Input).value == "Demo pool"
        assert form.query_one("#f-description", Input).value == "Simulated XCP-ng pool"
        await fill(ui, form, name="Lab pool")
        await ui.press("enter")
        await ui.back_to_main()
        await ui.until(lambda: pool_row(sim)["name_label"] == "Lab pool", what="renamed")
        await ui.until(lambda: "Pool         Lab pool" in pool_text(ui), what="shown")
        assert pool_row(sim)["name_description"] == "Simulated XCP-ng pool"


async def test_w_makes_a_new_master_and_the_app_follows_it(sim: Simulator,
                                                            client: Client) -> None:
    async with running(sim, client, size=(120, 50)) as ui:
        hosts = ui.main.query_one("#status-hosts", VirtualTable)
        await ui.press("1", "tab")
        assert ui.app.focused is hosts
        await ui.press("down")
        assert hosts.targets() == [next(r for r, h in sim.store.all("host").items()
                                        if h["name_label"] == "xcp-ng-02")]
        await ui.press("W")
        dlg = await ui.modal(ConfirmPlan)
        shown = " ".join(plan_shown(dlg).split())  # as read, not as folded
        assert "Async.pool.designate_new_master(xcp-ng-02)" in shown
        assert "xe pool-designate-new-master host-uuid=" in shown
        assert "this connection moves to 127.0.0.2 by itself" in shown
        await confirm_plan(ui)
        await ui.until(lambda: sim.master_address() == "127.0.0.2", what="the new master")
        await ui.until(lambda: "Master       xcp-ng-02 (127.0.0.2)" in pool_text(ui),
                       timeout=15, what="the new master shown")
        await ui.until(lambda: "https://127.0.0.2:" in pool_text(ui), timeout=15,
                       what="the connection at the new master")
        # the event feed goes on against the new master
        sim.store.update(next(iter(sim.store.all("pool"))), {"name_label": "after"})
        await ui.until(lambda: "Pool         after" in pool_text(ui), timeout=15,
                       what="a change seen through the new master")


async def test_a_bad_hostname_is_refused_in_the_form_then_a_good_one_runs(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        master = sim.master_ref()
        ui.main.request("host.set_hostname", [master], "status")
        form: FieldsForm = await ui.modal(FieldsForm)
        assert form.query_one("#f-hostname", Input).value == "xcp-ng-01"
        mark = ui.writes.mark()
        await fill(ui, form, hostname="lab_01")
        await ui.press("enter")
        assert isinstance(ui.app.screen, FieldsForm)  # not applied
        assert form_error(form) == ("Hostname: 'lab_01' may hold only letters, digits, dots "
                                    "and hyphens, and not start or end with a hyphen")
        await fill(ui, form, hostname="lab-01")
        await ui.press("enter")
        dlg = await ui.modal(ConfirmPlan)
        assert "host.set_hostname_live(xcp-ng-01, 'lab-01')" in plan_shown(dlg)
        assert ui.writes.since(mark) == []  # nothing sent before the confirmation
        await confirm_plan(ui)
        await ui.until(lambda: sim.store.get(master, "host")["hostname"] == "lab-01",
                       what="the new hostname")


async def test_management_interface_moves_and_the_app_follows_it(sim: Simulator,
                                                                 client: Client) -> None:
    async with running(sim, client, size=(120, 50)) as ui:
        master = sim.master_ref()
        ui.main.request("host.management", [master], "status")
        await pick(ui, "eth1 (Pool-wide network associated with eth1)")
        await pick(ui, "Static")
        form: FieldsForm = await ui.modal(FieldsForm)
        assert form.query_one("#f-ip", Input).value == "10.0.0.11"  # the current one
        mark = ui.writes.mark()
        await fill(ui, form, ip="127.0.0.9", netmask="255.0.255.0", gateway="")
        await ui.press("enter")
        assert form_error(form) == ("Netmask: 255.0.255.0 is not a netmask (its ones must "
                                    "come first, as in 255.255.255.0)")
        await fill(ui, form, ip="127.0.0.300", netmask="255.0.0.0")
        await ui.press("enter")
        assert form_error(form) == "IP address: '127.0.0.300' is not an IPv4 address"
        assert ui.writes.since(mark) == []
        await fill(ui, form, ip="127.0.0.9")
        await ui.press("enter")
        dlg = await ui.modal(ConfirmPlan)
        shown = " ".join(plan_shown(dlg).split())  # as read, not as folded
        assert "PIF.reconfigure_ip(eth1, 'Static', '127.0.0.9', '255.0.0.0', ''" in shown
        assert "host.management_reconfigure(eth1)" in shown
        assert "xe host-management-reconfigure pif-uuid=" in shown
        assert "this connection moves with it" in shown
        await confirm_plan(ui)
        await ui.until(lambda: sim.master_address() == "127.0.0.9", what="the move")
        # the master's new address (a host event redraws the pool part), and the
        # connection there
        await ui.until(lambda: "xcp-ng-01 (127.0.0.9)" in pool_text(ui)
                       and "https://127.0.0.9:" in pool_text(ui),
                       what="the master's new address and the connection there")
        sim.store.update(next(iter(sim.store.all("pool"))), {"name_label": "moved"})
        await ui.until(lambda: "Pool         moved" in pool_text(ui), timeout=15,
                       what="a change seen at the new address")
        assert not ui.errors()


async def test_the_master_line_follows_its_host(sim: Simulator, client: Client) -> None:
    """The master's name and address are the host's: a change to the host alone
    redraws the pool part."""
    async with running(sim, client, size=(120, 50)) as ui:
        sim.store.update(sim.master_ref(), {"name_label": "lab-master"})
        await ui.until(lambda: "Master       lab-master (127.0.0.1)" in pool_text(ui),
                       what="the master's new name")
