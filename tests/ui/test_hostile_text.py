"""What xapi sends is untrusted: a VM named with terminal escape codes (and markup),
a guest that reports them in its OS name and addresses, an alert whose body carries
them. No control character reaches the screen, in any view, pane or dialog; the
text around them stays, markup brackets included."""

from __future__ import annotations

import unicodedata

from textual.widgets import TabbedContent

from tests.jsonrpc import JsonRpcClient
from tests.ui.harness import Ui, in_thread, running
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan
from xsctl.ui.modals.message import MessageScreen
from xsctl.ui.views.status import StatusView
from xsctl.xapi.client import Client

NAME = "evil\x1b]0;PWNED\x07\x1b[2J[b]x[/b]\x9b1m"
SHOWN = "evil]0;PWNED[2J[b]x[/b]1m"
OS = "Debian\x1b[31m 12\x1b[0m"
IP = "10.9.8.7\x1b[H"
# an alert is an XML file to xapi (Encodings.UTF8_XML): it refuses C0 controls but
# keeps the C1 ones, OSC and CSI among them
BODY = "first line\x9d0;retitled\x9c\nsecond line\x9b2J end"


def controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})


def screen(ui: Ui) -> str:
    text = ui.screen_text()
    assert not controls(text), controls(text)
    return text


async def hostile(ui: Ui, sim: Simulator) -> str:
    """web-01 renamed, its guest reporting escape codes, an alert about it."""
    ref = ui.ref("web-01")
    sim.set_guest_metrics(ref, os_version={"name": OS, "distro": "debian"},
                          networks={"0/ip": IP, "0/ipv4/0": IP})
    # JSON-RPC: XML cannot carry these characters at all
    j = JsonRpcClient(sim.url)
    await in_thread(lambda: j.login(sim.user, sim.password))
    try:
        uuid = sim.store.get(ref, "VM")["uuid"]
        await in_thread(lambda: j("VM.set_name_label", ref, NAME))
        await in_thread(lambda: j("message.create", "EVIL_ALERT", 1, "VM", uuid, BODY))
    finally:
        await in_thread(j.logout)
        j.close()
    return ref


async def test_escape_codes_never_reach_the_screen(sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(160, 50)) as ui:
        ref = await hostile(ui, sim)
        await ui.until(lambda: "Evil alert" in ui.screen_text(), what="the alert shown")
        text = screen(ui)  # Status: the alert's first line, the VM named in "On"
        assert "first line0;retitled" in text
        # the alert read whole
        status = ui.main.query_one(StatusView)
        alerts = status.query_one("#status-alerts")
        alerts.focus()
        key = next(k for k, r in alerts.rows.items() if r.cells[2][0] == "Evil alert")
        alerts.move_to(key)
        await ui.press("enter")
        await ui.modal(MessageScreen)
        text = screen(ui)
        assert "first line0;retitled" in text and "second line2J end" in text
        await ui.press("escape")
        await ui.back_to_main()
        # the VM table and every tab of the detail pane
        await ui.open_vms()
        await ui.until(lambda: ref in ui.table.rows and SHOWN in ui.table.rows[ref].cells[0][0],
                       what="the new name in the table")
        ui.table.move_to(ref)
        await ui.handled()
        text = screen(ui)
        assert SHOWN in text and "Debian[31m 12[0m" in text and "10.9.8.7[H" in text
        tabs = ui.vms_view.query_one(TabbedContent)
        for tab in ("tab-general", "tab-resources", "tab-disks", "tab-network",
                    "tab-snapshots"):
            tabs.active = tab
            await ui.handled()
            screen(ui)
        # a plan that names it, in its confirm dialog
        await ui.press("t")
        await ui.modal(ConfirmPlan)
        text = screen(ui)
        assert f"Shut down {SHOWN}" in text
        await ui.press("escape")
        await ui.back_to_main()
        # the events feed, where the rename shows from -> to
        await ui.press("3")
        await ui.until(lambda: "name_label: web-01 →" in ui.screen_text(), what="the rename")
        assert SHOWN in screen(ui)
        # and the SVG the screenshot script would save
        svg = ui.app.export_screenshot()
        assert not controls(svg.replace("\n", ""))



async def test_escape_codes_never_reach_the_hosts_networks_vifs_and_alerts(
        sim: Simulator, client: Client) -> None:
    """A host, a network and a VM named with escape codes (and an alert about the VM),
    in the views that list them: the Hosts view and its detail, the Networks view, the
    Network Interfaces view and the Alerts view."""
    async with running(sim, client, size=(160, 50)) as ui:
        ref = await hostile(ui, sim)
        host = sim.store.get(ref, "VM")["resident_on"]
        net = next(r for r, row in sim.store.all("network").items()
                   if row["name_label"] == "Pool-wide network associated with eth1")
        j = JsonRpcClient(sim.url)
        await in_thread(lambda: j.login(sim.user, sim.password))
        try:
            await in_thread(lambda: j("host.set_name_label", host, NAME + "-host"))
            await in_thread(lambda: j("network.set_name_label", net, NAME + "-net"))
        finally:
            await in_thread(j.logout)
            j.close()
        for vid, shown in (("hosts", SHOWN + "-host"), ("networks", SHOWN + "-net"),
                           ("vifs", SHOWN), ("alerts", SHOWN)):
            await ui.open_view(vid)
            await ui.until(lambda s=shown: s in ui.screen_text(), what=f"{shown!r} in {vid}")
            screen(ui)
            view = ui.main.view(vid)
            view.show_object(host if vid == "hosts" else net if vid == "networks" else ref)
            await ui.press("d")  # the detail pane, then back
            await ui.handled()
            screen(ui)
            await ui.press("d")
            await ui.handled()
