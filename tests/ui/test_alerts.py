"""The Alerts view: the pool's xapi messages, live, newest first; narrowed by
priority, class and object and filtered by text; one read whole; one, a selection or
every alert of a kind dismissed, each after its plan is confirmed. Driven through
Pilot on the real app against the simulator."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.widgets import Input

from tests.conftest import xenapi_session
from tests.jsonrpc import JsonRpcClient
from tests.ui.dialogs import hits, palette
from tests.ui.harness import Ui, in_thread, running
from xsctl.sim import Simulator
from xsctl.sim.handlers.message import emit
from xsctl.ui.messages import PlanFinished
from xsctl.ui.modals.confirm import ConfirmPlan, ConfirmTyped
from xsctl.ui.modals.message import MessageScreen
from xsctl.ui.views.alerts import AlertsView
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client


def view(ui: Ui) -> AlertsView:
    return ui.main.query_one(AlertsView)


def table(ui: Ui) -> VirtualTable:
    return view(ui).table


async def open_alerts(ui: Ui) -> VirtualTable:
    await ui.open_view("alerts")
    t = table(ui)
    await ui.until(lambda: len(t.rows) == len(ui.sim.store.all("message")),
                   what="every alert listed")
    assert ui.app.focused is t
    return t


def shown(ui: Ui) -> list[tuple[str, ...]]:
    """The rows in the table's order, as their cells."""
    t = table(ui)
    return [tuple(text for text, _ in t.rows[k].cells) for k in t.order]


def message_ref(sim: Simulator, name: str, **where: Any) -> str:
    refs = [r for r, m in sim.store.all("message").items()
            if m["name"] == name and all(m[k] == v for k, v in where.items())]
    assert len(refs) == 1, (name, refs)
    return refs[0]


def names_in_sim(sim: Simulator) -> list[str]:
    return sorted(m["name"] for m in sim.store.all("message").values())


def controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})


async def test_alerts_are_listed_newest_first_and_follow_the_pool(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(160, 40)) as ui:
        t = await open_alerts(ui)
        rows = shown(ui)
        # newest first: the seeded VM_STARTED 10 minutes ago heads, the pool master
        # transition of 6 days ago ends the list
        assert rows[0][4] == "VM started" and rows[0][3] == "web-01"
        assert rows[-1][4] == "Pool master transition"
        # priorities by their names; objects by theirs (resolved from the uuid)
        crashed = next(r for r in rows if r[4] == "VM crashed")
        assert crashed[1] == "2 service loss" and crashed[2] == "VM"
        assert crashed[3] == "legacy-erp"
        assert any(r[1] == "1 data loss" and r[3] == "xcp-ng-01" and r[4] == "Alarm: cpu_usage"
                   for r in rows)
        assert any(r[2] == "SR" and r[3] == "NFS storage" for r in rows)
        assert "13 of 13 alerts" in ui.screen_text()

        # xapi raises one when a VM is shut down by another client: it comes in live,
        # at the top; one dismissed elsewhere goes
        x = await in_thread(lambda: xenapi_session(sim))
        try:
            await in_thread(lambda: x.xenapi.VM.clean_shutdown(ui.ref("web-02")))
            await ui.until(lambda: shown(ui)[0][4] == "VM shutdown"
                           and shown(ui)[0][3] == "web-02", what="the new alert on top")
            gone = message_ref(sim, "VM_CRASHED")
            await in_thread(lambda: x.xenapi.message.destroy(gone))
            await ui.until(lambda: gone not in t.rows, what="the dismissed alert gone")
        finally:
            await in_thread(lambda: x.xenapi.session.logout())
        assert len(t.rows) == len(sim.store.all("message"))

        # the ages move on with the clock, row by row (the minute tick)
        started = message_ref(sim, "VM_STARTED")
        view(ui).now = lambda: datetime.now(UTC)
        view(ui).tick()
        assert t.rows[started].cells[0][0] == "10m"
        view(ui).now = lambda: datetime.now(UTC) + timedelta(hours=1)
        view(ui).tick()
        assert t.rows[started].cells[0][0] == "1h 10m"
        assert t.rows[message_ref(sim, "POOL_MASTER_TRANSITION")].cells[0][0] == "6d 1h"

        # a renamed VM renames the rows about it
        await in_thread(lambda: sim.store.update(ui.ref("web-01"), {"name_label": "www-01"}))
        await ui.until(lambda: any(r[3] == "www-01" and r[4] == "VM started"
                                   for r in shown(ui)), what="the alert on the new name")


async def test_filter_by_priority_class_object_and_text(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(160, 40)) as ui:
        t = await open_alerts(ui)
        everything = len(t.rows)

        # p: the most severe only, then one level more each time, then every one
        await ui.press("p")
        assert [r[1] for r in shown(ui)] == ["1 data loss"]
        await ui.press("p")
        assert {r[1] for r in shown(ui)} == {"1 data loss", "2 service loss"}
        assert "(priority 1-2)" in ui.screen_text()
        await ui.press("p", "p", "p")
        assert len(t.order) == everything

        # c: the alerts about VMs, then hosts, ...; escape widens again
        await ui.press("c")
        assert shown(ui) and {r[2] for r in shown(ui)} == {"VM"}
        await ui.press("c")
        assert shown(ui) and {r[2] for r in shown(ui)} == {"Host"}
        assert "(about Hosts)" in ui.screen_text()
        await ui.press("escape")
        assert len(t.order) == everything and view(ui).only_class is None

        # w: the alerts about the object under the cursor (xcp-ng-01: its alarm and
        # the master transition)
        t.move_to(message_ref(sim, "POOL_MASTER_TRANSITION"))
        await ui.press("w")
        assert sorted(r[4] for r in shown(ui)) == ["Alarm: cpu_usage", "Pool master transition"]
        assert "(about xcp-ng-01)" in ui.screen_text()
        await ui.press("w")
        assert len(t.order) == everything

        # /: by any word of a row, within what p, c and w keep
        await ui.press("slash")
        await ui.type("legacy")
        assert [r[3] for r in shown(ui)] == ["legacy-erp"]
        await ui.press("enter")
        assert ui.app.focused is t
        await ui.press("escape")  # the text first
        assert len(t.order) == everything
        await ui.press("slash")
        await ui.type("degraded")
        assert shown(ui) and {r[1] for r in shown(ui)} == {"3 degraded"}
        await ui.press("enter", "c", "c")  # hosts among them
        assert {(r[1], r[2]) for r in shown(ui)} == {("3 degraded", "Host")}
        await ui.press("escape", "escape")
        assert len(t.order) == everything
        assert ui.main.query_one("#alert-filter", Input).value == ""


async def test_read_one_whole(sim: Simulator, client: Client) -> None:
    ref = message_ref(sim, "MULTIPATH_PERIODIC_ALERT")
    async with running(sim, client, size=(120, 36)) as ui:
        t = await open_alerts(ui)
        t.move_to(ref)
        await ui.press("enter")
        dialog: MessageScreen = await ui.modal(MessageScreen)
        text = ui.screen_text()
        assert "Multipath periodic alert" in text
        assert "3 (Service degraded)" in text
        assert "Host xcp-ng-03" in text
        # the body whole, each of its lines
        for line in str(sim.store.get(ref, "message")["body"]).splitlines():
            assert line.split(";")[0] in text
        assert dialog.message.ref == ref
        await ui.press("escape")
        await ui.back_to_main()
        assert ref in sim.store.all("message")
        # read, then dismissed from there: through its plan
        await ui.press("enter")
        await ui.modal(MessageScreen)
        assert "x dismisses it" in ui.screen_text()
        await ui.press("x")
        await ui.modal(ConfirmPlan)
        await ui.press("y")
        await ui.until(lambda: ref not in sim.store.all("message"), what="dismissed")


async def test_dismiss_one_after_its_plan(sim: Simulator, client: Client) -> None:
    ref = message_ref(sim, "VM_CRASHED")
    async with running(sim, client) as ui:
        t = await open_alerts(ui)
        t.move_to(ref)
        await ui.press("x")
        confirm: ConfirmPlan = await ui.modal(ConfirmPlan)
        assert confirm.plans[0].steps() == [f"message.destroy(VM_CRASHED "
                                            f"{sim.store.get(ref, 'message')['uuid'][:8]})"]
        # cancelled: nothing happens
        await ui.press("escape")
        await ui.back_to_main()
        await ui.settle()
        assert ref in sim.store.all("message")
        await ui.press("x")
        await ui.modal(ConfirmPlan)
        await ui.press("y")
        await ui.until(lambda: ref not in sim.store.all("message"), what="the alert gone")
        await ui.until(lambda: ref not in t.rows, what="its row gone")
        assert "VM_CRASHED" not in names_in_sim(sim)
        assert len(sim.store.all("message")) == 12


async def test_dismiss_from_the_palette_says_alert(sim: Simulator, client: Client) -> None:
    """The palette names them as the views do: "alert: dismiss VM crashed", never
    xapi's class name."""
    ref = message_ref(sim, "VM_CRASHED")
    async with running(sim, client) as ui:
        await open_alerts(ui)
        cp = await palette(ui, "colon", "alert dismiss crashed", "alert: dismiss VM crashed")
        assert not [h for h in hits(cp) if h.startswith("message:")]
        await ui.press("enter")
        await ui.modal(ConfirmPlan)
        await ui.press("y")
        await ui.until(lambda: ref not in sim.store.all("message"), what="the alert gone")


async def test_dismiss_a_selection_in_one_call(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        t = await open_alerts(ui)
        await ui.press("p", "p", "p")  # priorities 1 to 3: the alarms, the crash, ...
        marked = list(t.order)
        assert len(marked) == 6
        await ui.press("ctrl+a", "x")
        confirm: ConfirmPlan = await ui.modal(ConfirmPlan)
        assert len(confirm.plans) == 1  # one plan, one call, not six
        assert confirm.plans[0].steps()[0].startswith("message.destroy_many([")
        await ui.press("y")
        await ui.until(lambda: not set(marked) & set(sim.store.all("message")),
                       what="the marked alerts gone")
        await ui.until(lambda: len(t.rows) == 7, what="their rows gone")
        # what is left: priorities 4 and 5 only
        assert {m["priority"] for m in sim.store.all("message").values()} == {4, 5}
        await ui.settle()
        ran = {m.plan.title for m in ui.messages if isinstance(m, PlanFinished)}
        assert ran == {"Dismiss 6 alerts (5 kinds)"}


async def test_dismiss_every_alert_of_a_kind(sim: Simulator, client: Client) -> None:
    web = [sim.store.get(r, "VM")["uuid"] for r, v in sim.store.all("VM").items()
           if v["name_label"] in ("web-02", "web-03")]
    for uuid in web:
        emit(sim, "VM_STARTED", "VM", uuid, "VM started.")
    assert names_in_sim(sim).count("VM_STARTED") == 3
    async with running(sim, client) as ui:
        t = await open_alerts(ui)
        t.move_to(message_ref(sim, "VM_STARTED", obj_uuid=web[0]))
        await ui.press("X")
        typed: ConfirmTyped = await ui.modal(ConfirmTyped)
        assert typed.plan.title == "Dismiss every VM_STARTED alert (3)"
        await ui.type("2")  # the wrong count does not confirm
        await ui.press("enter")
        assert isinstance(ui.app.screen, ConfirmTyped)
        ui.app.screen.query_one("#typed", Input).value = ""
        await ui.type("3")
        await ui.press("enter")
        await ui.until(lambda: "VM_STARTED" not in names_in_sim(sim), what="every one gone")
        await ui.until(lambda: not any(r[4] == "VM started" for r in shown(ui)),
                       what="their rows gone")
        assert len(names_in_sim(sim)) == 12  # the 12 others stay


async def test_hostile_text_never_reaches_the_screen(sim: Simulator, client: Client) -> None:
    # an alert is an XML file to xapi: C0 controls are refused, C1 ones (CSI, OSC) and
    # the bidi overrides are kept; markup must stay text
    body = "first [red]line[/red]\x9d0;retitled\x9c\nsecond \u202eline\x9b2J end"
    name = "evil\x1b]0;PWNED\x07[b]vm[/b]"
    async with running(sim, client, size=(160, 40)) as ui:
        ref = ui.ref("db-02")
        uuid = sim.store.get(ref, "VM")["uuid"]
        j = JsonRpcClient(sim.url)
        await in_thread(lambda: j.login(sim.user, sim.password))
        try:
            await in_thread(lambda: j("VM.set_name_label", ref, name))
            await in_thread(lambda: j("message.create", "EVIL[b]_ALERT", 1, "VM", uuid, body))
        finally:
            await in_thread(j.logout)
            j.close()
        t = await open_alerts(ui)
        evil = message_ref(sim, "EVIL[b]_ALERT")
        t.move_to(evil)
        await ui.handled()
        text = ui.screen_text()
        assert not controls(text), controls(text)
        assert "evil]0;PWNED[b]vm[/b]" in text  # the row's object and the detail
        assert "first [red]line[/red]0;retitled" in text  # markup stays text
        await ui.press("enter")
        await ui.modal(MessageScreen)
        text = ui.screen_text()
        assert not controls(text), controls(text)
        assert "second line2J end" in text
        await ui.press("escape")
        await ui.back_to_main()
        # its plan names it without the codes either
        await ui.press("x")
        await ui.modal(ConfirmPlan)
        text = ui.screen_text()
        assert not controls(text) and "EVIL[b]_ALERT" in text
        await ui.press("y")
        await ui.until(lambda: evil not in sim.store.all("message"), what="dismissed")


async def test_thousands_of_alerts(sim: Simulator, client: Client) -> None:
    """A pool keeps up to 10,000 (xapi_globs.ml message_limit): the view lists them all
    and narrows them at once (timed in tests/benchmarks/bench_alerts.py)."""
    vms = [r["uuid"] for r in sim.store.all("VM").values()
           if not r["is_a_template"] and not r["is_control_domain"]]
    for i in range(3000):
        emit(sim, "VM_STARTED" if i % 3 else "VM_SHUTDOWN", "VM", vms[i % len(vms)],
             f"VM {i} started.")
    async with running(sim, client) as ui:
        t = await open_alerts(ui)
        assert len(t.rows) == 3013
        await ui.press("slash")
        await ui.type("shutdown")
        assert len(t.order) == 1001  # a thousand made here, the web-staging one seeded
        await ui.press("enter", "escape", "p", "p")
        assert len(t.order) == 2
