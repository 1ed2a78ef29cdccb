"""Opening the app on a busy pool: changes keep arriving while the screens compose."""

from __future__ import annotations

import threading

from tests.ui.harness import driving
from tests.ui.test_connect import save_profile, xsctl_app
from xsctl import secrets
from xsctl.sim import Simulator
from xsctl.xapi.client import Target, ensure_trusted


async def test_changes_while_connecting_from_a_profile(sim: Simulator) -> None:
    """The connect screen hands its new client to the main screen while events flow:
    nothing is lost and nothing fails."""
    save_profile(sim)
    ensure_trusted(Target(url=sim.url, accept_fingerprint=sim.fingerprint), None)
    secrets.set_password(sim.user, sim.url, sim.password)
    ref = next(r for r, row in sim.store.all("VM").items() if row["name_label"] == "web-01")
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            sim.store.update(ref, {"name_label": f"web-01-{n}"})
            stop.wait(0.001)
        sim.store.update(ref, {"name_label": "web-01-final"})

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        async with driving(xsctl_app("--profile", "lab"), sim) as ui:  # type: ignore[arg-type]
            await ui.until_main()
            await ui.pilot.pause(0.2)
            stop.set()
            t.join()
            await ui.press("2")
            await ui.until(lambda: ui.table.rows[ref].cells[0][0] == "web-01-final",
                           what="the last name")
            assert not ui.errors()
    finally:
        stop.set()
        t.join()
