"""A dropped connection and its recovery while the app runs: the header shows the
loss at once (and the stale banner while the data cannot be trusted), the app
reconnects by itself and says so, and the table is current again, including what
changed while it was away."""

from __future__ import annotations

import asyncio

from tests.ui.harness import Ui, in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.messages import HealthChanged
from xsctl.xapi.client import Client


def header(ui: Ui) -> str:
    return text_of(ui.main.query_one("#conn-header"))


def banner(ui: Ui) -> str | None:
    b = ui.main.query_one("#stale-banner")
    return text_of(b) if b.display else None


async def test_xapi_restart_is_shown_and_recovered(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        assert "● live" in header(ui) and banner(ui) is None
        await ui.go_to("web-03")
        ref = ui.ref("web-03")
        staging = ui.ref("web-staging")

        def while_down(s: Simulator) -> None:
            # changes xapi makes while the app cannot hear about them
            s.store.update(ref, {"name_label": "web-03-renamed"})
            s.store.update(staging, {"name_description": "changed while down"})

        restart = asyncio.ensure_future(in_thread(
            lambda: sim.restart(downtime=1.5, while_down=while_down)))
        try:
            await ui.until(lambda: "● live" not in header(ui), what="the header showing the loss")
            lost = header(ui)
            assert "reconnecting" in lost or "connection lost" in lost
            assert "since 09:30:00" in lost  # the frozen clock: when it went
            await ui.until(lambda: banner(ui), what="the stale banner")
            assert "Not live since" in (banner(ui) or "")
            assert "Reconnecting by itself" in (banner(ui) or "")
            assert ui.main.query_one("#conn-header").has_class("-reconnecting") or \
                ui.main.query_one("#conn-header").has_class("-lost")
        finally:
            await restart
        await ui.until(lambda: "● live" in header(ui), timeout=15, what="live again")
        await ui.until(lambda: banner(ui) is None, what="the banner gone")
        said = await ui.until_said("Reconnected: live again (lost at 09:30:00)")
        assert said.severity == "information"
        assert len(ui.said("Reconnected")) == 1
        assert not ui.errors()
        # the table is current: the rename made while down shows, on the same row
        await ui.until(lambda: ui.table.rows[ref].cells[0][0] == "web-03-renamed",
                       what="the rename made while down")
        assert ui.cursor_name == "web-03-renamed"
        assert (client.cache.get("vm", staging) or {}).get("name_description") == \
            "changed while down"
        health = [m for m in ui.messages if isinstance(m, HealthChanged)]
        assert any(not (m.connected and m.fresh) for m in health)
        assert health[-1].connected and health[-1].fresh
        # and it works again: an action goes through
        await ui.act("s", on="web-staging")
        await ui.until(lambda: ui.vm("web-staging")["power_state"] == "Running",
                       what="a start after the reconnection")


async def test_dropped_connections_recover(sim: Simulator, client: Client) -> None:
    """Every connection cut at once (listeners' drop_all), xapi itself still up: the
    app carries on by itself and follows events again, with no error shown."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        for lsts in sim.listeners.values():
            for lst in lsts:
                lst.server.drop_all()
        ref = ui.ref("web-01")
        sim.store.update(ref, {"name_label": "web-01-after"})
        await ui.until(lambda: ui.table.rows[ref].cells[0][0] == "web-01-after", timeout=10,
                       what="an event after the drop")
        await ui.until(lambda: "● live" in header(ui) and banner(ui) is None, what="live")
        assert not ui.errors()


async def test_a_certificate_that_changes_mid_session_stops_and_says_so(
        sim: Simulator, client: Client) -> None:
    """The host presents another certificate after a restart: the app stops (no
    endless reconnecting), shows both fingerprints in the changed-certificate dialog,
    and the header and banner say it stopped, also at 80 columns."""
    from textual.widgets import Static

    from xsctl.config import known_hosts_file
    from xsctl.ui.modals.trust import TrustCertificate
    from xsctl.xapi.trust import KnownHosts, host_key

    async with running(sim, client, size=(80, 24)) as ui:
        wrong = "SHA256:" + ":".join(["AB"] * 32)
        key = host_key("127.0.0.1", sim.port)
        KnownHosts(known_hosts_file()).add(key, wrong)  # as if the host's key were replaced
        await in_thread(lambda: sim.restart(downtime=0.2))
        dlg = await ui.modal(TrustCertificate, timeout=15)
        # folded at 80 columns, never cut
        shown = "".join("".join(text_of(w) for w in dlg.query(Static)).split())
        assert wrong in shown and sim.fingerprint in shown
        assert dlg.changed_from == wrong and dlg.fingerprint == sim.fingerprint
        await ui.press("escape")
        await ui.back_to_main()
        assert "✖ stopped: certificate changed" in header(ui)
        assert "trust forget" in (banner(ui) or "")
        logins = len(sim.store.all("session"))
        await asyncio.sleep(1.5)  # a reconnecting client would have tried again by now
        assert len(sim.store.all("session")) == logins
        assert "✖ stopped" in header(ui)
