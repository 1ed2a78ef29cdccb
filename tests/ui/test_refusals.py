"""Refusals: an action that allowed_operations does not allow shows why (a toast with
the friendly text and xapi's code, or the actions menu's disabled entry with its
reason) and sends nothing: no task appears in the simulator, no VM changes."""

from __future__ import annotations

from tests.ui.dialogs import confirm_plan
from tests.ui.harness import running, text_of
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.ui.modals.forms import PickOne
from xsctl.xapi.client import Client

# (key, VM, what the toast says)
REFUSED = [
    ("s", "web-01", "Cannot start web-01", "The VM must be halted for this, but it is running"),
    ("S", "web-01", "Cannot start on host web-01", "The VM must be halted for this"),
    ("u", "web-01", "Cannot resume web-01", "The VM must be suspended for this"),
    ("P", "web-staging", "Cannot unpause web-staging", "The VM must be paused for this"),
    ("z", "k8s-node-03", "Cannot suspend k8s-node-03", "The VM must be running for this"),
    ("t", "ci-runner-02", "Cannot shut down ci-runner-02", "The VM must be running for this"),
    ("b", "web-staging", "Cannot reboot web-staging", "The VM must be running for this"),
    ("m", "web-staging", "Cannot migrate to host web-staging", "The VM must be running for this"),
    ("c", "web-01", "Cannot clone web-01", "The VM must be halted or suspended for this"),
    ("C", "web-01", "Cannot copy web-01", "The VM must be halted or suspended for this"),
    ("delete", "db-02", "Cannot delete db-02", "The VM must be halted or suspended for this"),
]


async def test_refused_actions_say_why_and_send_nothing(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        mark = ui.writes.mark()
        for key, name, title, why in REFUSED:
            await ui.act(key, on=name)
            toast = await ui.until_said(title, "error")
            assert why in toast.message, (key, toast.message)
            assert "VM_BAD_POWER_STATE" in toast.message, (key, toast.message)
            assert ui.app.screen is ui.main, key  # no dialog was opened
        # revert needs a snapshot: dev-sandbox has none
        await ui.act("v", on="dev-sandbox")
        toast = await ui.until_said("Cannot revert to a snapshot dev-sandbox", "error")
        assert toast.message == "it has no snapshots"
        assert ui.app.screen is ui.main
        await ui.settle()
        assert ui.writes.since(mark) == []
        assert ui.writes.tasks(mark) == []


async def test_blocked_operation_is_refused_with_its_reason(sim: Simulator,
                                                            client: Client) -> None:
    """Not a power-state rule: blocked_operations takes clean_shutdown out of
    allowed_operations, and the app follows what the simulator says."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        ref = ui.ref("web-02")
        sim.store.update(ref, {"blocked_operations": {"clean_shutdown": "change-freeze"}})
        await ui.until(lambda: "clean_shutdown" not in (client.cache.get("vm", ref) or {}).get(
            "allowed_operations", ["clean_shutdown"]), what="the blocked operation in the cache")
        mark = ui.writes.mark()
        await ui.act("t", on="web-02")
        toast = await ui.until_said("Cannot shut down web-02", "error")
        assert "This operation is blocked on the VM: change-freeze" in toast.message
        assert "OPERATION_BLOCKED" in toast.message
        # the actions menu shows the same reason on a disabled entry
        await ui.press("a")
        menu: PickOne[str] = await ui.modal(PickOne)
        shutdown = next(c for c in menu.choices if c.value == "vm.shutdown")
        assert shutdown.reason == "This operation is blocked on the VM: change-freeze"
        assert "Shut down  [t]  — This operation is blocked on the VM: change-freeze" in text_of(
            menu.query_one("#choices"))
        await ui.press("escape")
        await ui.back_to_main()
        await ui.settle()
        assert ui.writes.since(mark) == []
        assert ui.vm("web-02")["power_state"] == "Running"
        # unblocked, the same key works
        sim.store.update(ref, {"blocked_operations": {}})
        await ui.until(lambda: "clean_shutdown" in (client.cache.get("vm", ref) or {}).get(
            "allowed_operations", []), what="the operation allowed again")
        await ui.press("t")
        await confirm_plan(ui)
        await ui.until(lambda: ui.vm("web-02")["power_state"] == "Halted", what="web-02 halted")


async def test_read_only_connection_sends_nothing(sim: Simulator) -> None:
    client = connect(sim, read_only=True)
    try:
        async with running(sim, client) as ui:
            await ui.until(lambda: "READ-ONLY" in text_of(ui.main.query_one("#conn-header")),
                           what="READ-ONLY in the header")
            await ui.open_vms()
            mark = ui.writes.mark()
            await ui.act("s", on="web-staging")
            toast = await ui.until_said("Start web-staging: refused", "error")
            assert "read-only" in toast.message
            await ui.act("t", on="web-01")
            await confirm_plan(ui)
            await ui.until_said("Shut down web-01: refused", "error")
            await ui.settle()
            assert ui.writes.tasks(mark) == []
            assert not ui.writes.touched(ui.ref("web-01"), mark)
            assert ui.vm("web-staging")["power_state"] == "Halted"
    finally:
        client.close()
