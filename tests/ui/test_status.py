"""The Status view: pool and master, the connection and its certificate fingerprint,
each host, VM counts by power state, SRs with their usage, the latest alerts; all of
it following the simulator live."""

from __future__ import annotations

from collections import Counter

from tests.conftest import xenapi_session
from tests.ui.harness import Ui, in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.xapi.client import Client


def shown(ui: Ui, widget_id: str) -> str:
    return text_of(ui.main.query_one(widget_id))


async def test_status_view_shows_the_pool_and_follows_it(sim: Simulator, client: Client) -> None:
    # wide enough for the hosts' addresses beside their CPU sparkline
    async with running(sim, client, size=(150, 50)) as ui:
        assert ui.main.current_view == "status"
        pool = shown(ui, "#status-pool")
        assert "Demo pool" in pool
        assert "Master       xcp-ng-01 (127.0.0.1)" in pool
        assert f"JSON-RPC to {sim.url} (TLS, certificate pinned)" in pool
        # the whole fingerprint, folded onto a second line at this width, never cut
        folded = "".join(pool.split("Certificate")[1].split()).replace(":", "")
        assert sim.fingerprint.replace(":", "") in folded

        hosts = shown(ui, "#status-hosts").splitlines()
        assert [h.split()[0] for h in hosts[1:]] == ["xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
        assert hosts[1].split()[1:3] == ["master", "enabled"] and "127.0.0.1" in hosts[1]
        assert hosts[2].split()[1:3] == ["member", "enabled"] and "127.0.0.2" in hosts[2]
        for h in sim.store.all("host").values():
            row = next(line for line in hosts if line.split()[0] == h["name_label"])
            guests = [v for v in h["resident_VMs"]
                      if not sim.store.get(v, "VM")["is_control_domain"]]
            assert f" {len(guests)} " in row + " "
            assert "GiB" in row and "/" in row and "%" in row

        counts = Counter(r["power_state"] for r in sim.store.all("VM").values()
                         if not (r["is_a_template"] or r["is_control_domain"]))
        vms = shown(ui, "#status-vms")
        for state in ("Running", "Paused", "Suspended", "Halted"):
            assert f"{state} {counts[state]} " in vms
        assert f"{sum(counts.values())} VMs" in vms

        srs = shown(ui, "#status-srs")
        assert "NFS storage (default)" in srs
        for line in srs.splitlines()[1:]:
            assert "%" in line and "·" in line  # a usage bar and its figure
        # every host has its own "Local storage": each is named with its host
        for h in ("xcp-ng-01", "xcp-ng-02", "xcp-ng-03"):
            assert f"Local storage on {h}" in srs
        assert "XCP-ng Tools" not in srs and "DVD drives" not in srs

        alerts = shown(ui, "#status-alerts").splitlines()
        assert alerts[0].split()[:5] == ["When", "▲", "Priority", "Alert", "Message"]
        assert len(alerts) - 1 == len(sim.store.all("message"))
        # priorities in xapi's and XenCenter's words (1 data-loss imminent ... 5 informational)
        assert any("1 data loss" in a and "Alarm: cpu_usage" in a and "Host xcp-ng-01" in a
                   for a in alerts)
        assert any("2 service loss" in a and "VM crashed" in a and "VM legacy-erp" in a
                   for a in alerts)

        # and it follows the pool: a host into maintenance, a VM shut down by another
        # client, and the alert xapi raised for it
        host3 = next(r for r, h in sim.store.all("host").items() if h["name_label"] == "xcp-ng-03")
        web01 = ui.ref("web-01")
        other = await in_thread(lambda: xenapi_session(sim))
        try:
            await in_thread(lambda: other.xenapi.host.disable(host3))
            await in_thread(lambda: other.xenapi.VM.hard_shutdown(web01))
        finally:
            await in_thread(lambda: other.xenapi.session.logout())
        await ui.until(lambda: any(line.startswith(" xcp-ng-03") and "disabled" in line
                                   for line in shown(ui, "#status-hosts").splitlines()),
                       what="xcp-ng-03 disabled")
        await ui.until(lambda: any("VM shutdown" in a and "VM web-01" in a
                                   for a in shown(ui, "#status-alerts").splitlines()),
                       what="the new alert")
        counts = Counter(r["power_state"] for r in sim.store.all("VM").values()
                         if not (r["is_a_template"] or r["is_control_domain"]))
        await ui.until(lambda: f"Halted {counts['Halted']} " in shown(ui, "#status-vms"),
                       what="the new count")
