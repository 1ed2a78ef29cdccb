"""Every VM action of the Virtual Machines view, driven with keys on the real app:
the simulator really changes, and the table shows it without a refresh key.
Disruptive and destructive actions show their plan (API calls and the xe line)."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input, SelectionList, Static, TabbedContent, Tabs

from tests.ui.dialogs import (
    answer_text,
    confirm_plan,
    fill,
    form_error,
    ok_button,
    pick,
    plan_shown,
)
from tests.ui.harness import Ui, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.modals.confirm import ConfirmPlan, ConfirmTyped
from xsctl.ui.modals.forms import FieldsForm, PickMany, PickOne
from xsctl.ui.views.vms import VmDetail
from xsctl.xapi.client import Client

GiB = 1024**3


def disks_of(sim: Simulator, vm: str) -> dict[str, str]:
    """VDI ref -> SR ref of a VM's hard disks, from the simulator."""
    out = {}
    for vbd in sim.store.get(vm, "VM")["VBDs"]:
        row = sim.store.get(vbd, "VBD")
        if row["type"] == "Disk" and row["VDI"] in sim.store.all("VDI"):
            out[row["VDI"]] = sim.store.get(row["VDI"], "VDI")["SR"]
    return out


def rules_of(form: FieldsForm) -> str:
    """The rules a form shows."""
    return "\n".join(text_of(w) for w in form.query(".rules").results(Static))


async def until_state(ui: Ui, name: str, state: str) -> None:
    """The simulator reached ``state`` and the row on screen says so."""
    await ui.until(lambda: ui.vm(name)["power_state"] == state, what=f"{name} {state} in the sim")
    await ui.until(lambda: f" {state}" in ui.line(name) and "⟳" not in ui.line(name),
                   what=f"{name} shown {state}")


# ---------------------------------------------------------------- power actions

# (key, VM, state after, API call, plan title, confirm dialog?): a different VM each
POWER = [
    ("s", "[lab] test-vm", "Running", "Async.VM.start", "Start [lab] test-vm", False),
    ("t", "web-01", "Halted", "Async.VM.clean_shutdown", "Shut down web-01", True),
    ("T", "web-02", "Halted", "Async.VM.hard_shutdown", "Force shut down web-02", True),
    ("b", "web-03", "Running", "Async.VM.clean_reboot", "Reboot web-03", True),
    ("B", "db-01", "Running", "Async.VM.hard_reboot", "Force reboot db-01", True),
    ("z", "db-02", "Suspended", "Async.VM.suspend", "Suspend db-02", True),
    ("u", "k8s-node-03", "Running", "Async.VM.resume", "Resume k8s-node-03", False),
    ("p", "cache-01", "Paused", "Async.VM.pause", "Pause cache-01", True),
    ("P", "ci-runner-02", "Running", "Async.VM.unpause", "Unpause ci-runner-02", False),
]


async def test_power_actions(sim: Simulator, client: Client) -> None:
    """Each power action in turn, in one session (each on its own VM): the plan shown
    where it is disruptive, the call made, the simulator's state, the row on screen."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        for key, name, after, call, title, confirm in POWER:
            domid = ui.vm(name)["domid"]
            mark = ui.writes.mark()
            await ui.act(key, on=name)
            if confirm:
                dlg = await ui.modal(ConfirmPlan)
                shown = plan_shown(dlg)
                assert f"1. {call}({name})" in shown, title
                assert f"xe vm-{call.split('.')[-1].split('_')[-1]} uuid={ui.vm(name)['uuid']}" \
                    in shown, title
                assert ui.writes.tasks(mark) == [], title  # nothing sent before the answer
                await ui.press("y")
            await ui.until_said(f"{title}: done")
            if "[" in name:  # xapi's text is never read as markup: "[lab] " stays
                def drawn(text: str = f"{title}: done") -> bool:
                    return text in ui.screen_text()

                await ui.until(drawn, what="the toast as written")
            await until_state(ui, name, after)
            assert ui.writes.tasks(mark) == [call], title
            if call.endswith("reboot"):
                assert ui.vm(name)["domid"] != domid, title  # a new domain: it rebooted
        assert not ui.errors()


async def test_force_actions_are_marked_destructive(sim: Simulator, client: Client) -> None:
    """A forced shutdown says it loses data and is drawn in red; the dialog says which
    keys answer it; left and right move between its buttons; Cancel on the right
    (escape too) sends nothing; enter on the confirm button, where the focus starts
    once the plan is on screen, runs it."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        mark = ui.writes.mark()
        await ui.act("T", on="db-01")
        dlg = await ui.modal(ConfirmPlan)
        assert "pulling the power cord" in plan_shown(dlg)
        assert "danger" in dlg.query_one("#confirm-plan").classes
        assert "enter or y: force shut down" in " ".join(text_of(w) for w in dlg.query(".hint"))
        assert ui.app.focused is dlg.query_one("#ok")
        await ui.press("right")
        assert ui.app.focused is dlg.query_one("#cancel")
        await ui.press("enter")
        await ui.back_to_main()
        await ui.settle()
        assert ui.vm("db-01")["power_state"] == "Running"
        assert ui.writes.tasks(mark) == []
        await ui.act("T", on="db-01")
        dlg = await ui.modal(ConfirmPlan)
        await ui.press("right", "left")
        assert ui.app.focused is dlg.query_one("#ok")
        await ui.press("enter")
        await ui.back_to_main()
        await until_state(ui, "db-01", "Halted")
        assert ui.writes.tasks(mark) == ["Async.VM.hard_shutdown"]
        await ui.act("T", on="db-02")
        await confirm_plan(ui, mouse=True)  # the Force shut down button, with the mouse
        await until_state(ui, "db-02", "Halted")


async def test_start_on_a_host_and_migrate_to_another(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        mark = ui.writes.mark()
        await ui.act("S", on="web-staging")
        dlg = await pick(ui, "xcp-ng-03")
        assert [c.label for c in dlg.choices] == ["xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
        await until_state(ui, "web-staging", "Running")
        assert ui.host_name(ui.vm("web-staging")["resident_on"]) == "xcp-ng-03"
        assert ui.cells("web-staging")[2] == "xcp-ng-03"
        assert ui.writes.tasks(mark) == ["Async.VM.start_on"]

        assert ui.host_name(ui.vm("web-01")["resident_on"]) == "xcp-ng-01"
        mark = ui.writes.mark()
        await ui.act("m", on="web-01")
        menu: PickOne[str] = await ui.modal(PickOne)
        here = next(c for c in menu.choices if c.label == "xcp-ng-01")
        assert here.reason == "this is where it runs"
        await pick(ui, "xcp-ng-02")
        shown = await confirm_plan(ui)
        assert "Async.VM.pool_migrate(web-01, xcp-ng-02, {live: 'true'})" in shown
        assert "xe vm-migrate" in shown and "host=xcp-ng-02" in shown
        await ui.until(lambda: ui.cells("web-01")[2] == "xcp-ng-02", what="the row's new host")
        assert ui.host_name(ui.vm("web-01")["resident_on"]) == "xcp-ng-02"
        assert ui.vm("web-01")["power_state"] == "Running"
        assert ui.writes.tasks(mark) == ["Async.VM.pool_migrate"]


# ---------------------------------------------------------------- snapshots, copies


async def test_snapshot_then_revert(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        ref = ui.ref("web-staging")
        await ui.act("n", on="web-staging")
        prompt: FieldsForm = await ui.modal(FieldsForm)
        assert prompt.query_one("#f-name", Input).value.startswith("web-staging 2026-11-25")
        await answer_text(ui, "pre-upgrade")

        def snaps() -> list[str]:
            return [r for r, row in sim.store.all("VM").items()
                    if row["is_a_snapshot"] and row["snapshot_of"] == ref]

        snap = (await ui.until(snaps, what="a snapshot in the sim"))[0]
        assert sim.store.get(snap, "VM")["name_label"] == "pre-upgrade"
        await ui.until_said("done")
        detail = ui.vms_view.query_one(VmDetail)
        # at 120 columns the detail pane opens with d; its tabs are reached with keys
        await ui.press("d", "tab")
        assert isinstance(ui.app.focused, Tabs)
        await ui.press("right", "right", "right", "right")
        assert detail.query_one(TabbedContent).active == "tab-snapshots"
        await ui.until(lambda: "pre-upgrade" in text_of(detail.query_one("#detail-snapshots")),
                       what="the snapshot in the detail pane")
        assert "pre-upgrade" not in ui.names()  # snapshots are not VMs in the table

        # change the VM, then revert: its disks are replaced by the snapshot's
        before = set(disks_of(sim, ref))
        mark = ui.writes.mark()
        await ui.act("v", on="web-staging")
        await pick(ui, "pre-upgrade")
        dlg = await ui.modal(ConfirmPlan)
        shown = plan_shown(dlg)
        assert "Async.VM.revert(pre-upgrade)" in shown
        assert "xe snapshot-revert snapshot-uuid=" in shown
        assert "disks since the snapshot are lost" in shown
        assert "powered off" not in shown  # it is halted: nothing to power off
        await confirm_plan(ui)
        await ui.until(lambda: "Async.VM.revert" in ui.writes.tasks(mark), what="the revert")
        await ui.until_said("Revert web-staging to snapshot 'pre-upgrade': done")
        after = set(disks_of(sim, ref))
        assert after and after.isdisjoint(before)


async def test_clone(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("c", on="web-staging")
        prompt: FieldsForm = await ui.modal(FieldsForm)
        assert prompt.query_one("#f-name", Input).value == "web-staging-clone"
        await answer_text(ui)
        await ui.until(lambda: "web-staging-clone" in ui.vm_names(), what="the clone in the sim")
        await ui.until(lambda: "web-staging-clone" in ui.names(), what="the clone's row")
        assert ui.vm("web-staging-clone")["power_state"] == "Halted"
        assert ui.cursor_name == "web-staging"  # the cursor stays where it was


async def test_copy_to_another_sr_and_to_the_same_storage(sim: Simulator,
                                                           client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        original = disks_of(sim, ui.ref("backup-01"))
        for target, name in (("NFS storage", "backup-nfs"),
                             ("Same storage as the original", "backup-same")):
            await ui.act("C", on="backup-01")
            dlg = await pick(ui, target)
            assert dlg.choices[0].label == "Same storage as the original"
            assert "ISO library" not in [c.label for c in dlg.choices]
            # three hosts' "Local storage" told apart by their host
            assert "Local storage on xcp-ng-02" in [c.label for c in dlg.choices]
            await answer_text(ui, name)
            where = " to NFS storage" if target == "NFS storage" else ""
            await ui.until_said(f"Copy backup-01 as '{name}'{where}: done", timeout=10)
            def listed(copy_name: str = name) -> bool:
                return copy_name in ui.names()

            await ui.until(listed, what="the copy's row")
            copy = disks_of(sim, ui.ref(name))
            assert len(copy) == len(original) and set(copy).isdisjoint(original)
            if target == "NFS storage":
                assert set(copy.values()) == {ui.sr_named("NFS storage")}
            else:
                assert sorted(copy.values()) == sorted(original.values())


async def test_rename(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        ref = ui.ref("dev-sandbox")
        await ui.act("r", on="dev-sandbox")
        await answer_text(ui, "dev-playground")
        await ui.until(lambda: sim.store.get(ref, "VM")["name_label"] == "dev-playground",
                       what="the new name in the sim")
        await ui.until(lambda: ui.table.rows[ref].cells[0][0] == "dev-playground",
                       what="the new name on screen")
        assert ui.table.cursor_key == ref  # re-sorted, and the cursor followed it
        assert ui.line("dev-playground").strip().startswith("dev-playground")


# ---------------------------------------------------------------- memory and vCPUs


async def test_edit_memory_and_vcpus(sim: Simulator, client: Client) -> None:
    """A halted VM: static and dynamic memory (e), vCPUs and their max (E). A running
    one: only the dynamic range (static max and vCPUs max are fixed while it runs)."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("e", on="web-staging")
        form: FieldsForm = await ui.modal(FieldsForm)
        assert "static min ≤ dynamic min ≤ dynamic max ≤ static max" in rules_of(form)
        await fill(ui, form, static_max="4G", dynamic_min="3G", dynamic_max="4G")
        assert form_error(form) == ""
        await ui.pilot.click("#ok")
        await ui.back_to_main()
        await ui.until(lambda: int(ui.vm("web-staging")["memory_static_max"]) == 4 * GiB,
                       what="memory set")
        await ui.act("E", on="web-staging")
        form = await ui.modal(FieldsForm)
        await fill(ui, form, vcpus_max="4", vcpus="3")
        await ui.press("enter")
        await ui.back_to_main()
        await ui.until(lambda: ui.vm("web-staging")["VCPUs_at_startup"] == 3, what="vCPUs set")
        vm = ui.vm("web-staging")
        assert int(vm["memory_dynamic_min"]) == 3 * GiB
        assert int(vm["memory_dynamic_max"]) == 4 * GiB
        assert int(vm["VCPUs_max"]) == 4
        await ui.until(lambda: ui.cells("web-staging")[3:5] == ("3", "4 GiB"),
                       what="the row's new vCPUs and memory")

        await ui.act("e", on="web-01")
        form = await ui.modal(FieldsForm)
        assert form.query_one("#f-static_max", Input).disabled  # fixed while it runs
        await fill(ui, form, dynamic_min="1G")
        await ui.press("enter")  # Apply, from the keyboard this time
        await ui.back_to_main()
        await ui.until(lambda: int(ui.vm("web-01")["memory_dynamic_min"]) == GiB,
                       what="the dynamic range set")
        assert int(ui.vm("web-01")["memory_static_max"]) == 2 * GiB
        assert ui.vm("web-01")["power_state"] == "Running"
        await ui.act("E", on="web-01")
        form = await ui.modal(FieldsForm)
        assert form.query_one("#f-vcpus_max", Input).disabled


# (key, field, value, what the form says): each breaks one rule
INVALID = [
    ("e", "dynamic_min", "3G", "static min <= dynamic min <= dynamic max"),  # > dynamic max
    ("e", "static_max", "1G", "static min <= dynamic min <= dynamic max"),  # < dynamic max
    ("e", "dynamic_max", "lots", "lots"),  # not a size
    ("e", "static_max", "9" * 400, "size"),  # 400 digits: refused, no overflow
    ("E", "vcpus", "0", "out of range"),
    ("E", "vcpus_max", "1", "above the maximum"),  # below the 2 at startup
    ("E", "vcpus", "٣", "not a whole number"),  # an Arabic-Indic digit
]


async def test_invalid_resources_are_refused_in_the_form(sim: Simulator,
                                                         client: Client) -> None:
    """Each invalid value in turn: the form says which rule it breaks as it is typed,
    Apply keeps the form open, the rules stay shown; nothing reaches the simulator."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        before = dict(ui.vm("web-staging"))
        mark = ui.writes.mark()
        for key, field, value, says in INVALID:
            await ui.act(key, on="web-staging")
            form: FieldsForm = await ui.modal(FieldsForm)
            box = form.query_one(f"#f-{field}", Input)
            good = box.value
            await fill(ui, form, **{field: value})
            problem = form_error(form)
            assert says.lower() in problem.lower(), (field, value, problem)
            await ui.press("enter")  # Apply refused: the form stays open, the rule shown
            assert ui.app.screen is form, field
            assert form_error(form) == problem
            assert "Rules:" in rules_of(form)
            await fill(ui, form, **{field: good})  # put right again: the error goes
            assert form_error(form) == "", field
            await ui.press("escape")
            await ui.back_to_main()
        await ui.settle()
        assert not ui.writes.touched(ui.ref("web-staging"), mark)
        assert ui.writes.tasks(mark) == []
        after = ui.vm("web-staging")
        for k in ("memory_static_max", "memory_dynamic_min", "memory_dynamic_max",
                  "VCPUs_max", "VCPUs_at_startup"):
            assert after[k] == before[k]


async def test_vcpus_above_max_on_a_running_vm_says_so(sim: Simulator,
                                                       client: Client) -> None:
    """The form blames the real problem (4 vCPUs above a max of 2), not the power
    state, and its message is wrapped whole at 80 columns."""
    async with running(sim, client, size=(80, 24)) as ui:
        await ui.press("2")
        await ui.act("E", on="web-01")
        form: FieldsForm = await ui.modal(FieldsForm)
        await fill(ui, form, vcpus="4")
        problem = form_error(form)
        assert "above web-01's maximum of 2" in problem
        assert "power" not in problem.lower() and "halted for this" not in problem
        shown = " ".join(text_of(form.query_one("#error")).split())
        assert shown == " ".join(problem.split())  # all of it on screen, wrapped


# ---------------------------------------------------------------- delete


async def test_delete_keeping_one_disk(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        await ui.open_vms()
        ref = ui.ref("backup-01")
        disks = disks_of(sim, ref)
        assert len(disks) == 2
        await ui.act("delete", on="backup-01")
        chooser: PickMany = await ui.modal(PickMany)
        offered = [c.value for c in chooser.choices]
        assert set(offered) == set(disks)
        keep = offered[0]
        await ui.press("space")  # mark the first disk: kept
        assert chooser.query_one(SelectionList).selected == [keep]
        await ui.pilot.click("#ok")
        dlg: ConfirmTyped = await ui.modal(ConfirmTyped)
        shown = plan_shown(dlg)
        assert "1. Async.VM.destroy(backup-01)" in shown
        gone = offered[1]
        assert f"Async.VDI.destroy({sim.store.get(gone, 'VDI')['name_label']})" in shown
        assert "xe vm-destroy uuid=" in shown and "xe vdi-destroy uuid=" in shown
        assert "Disks kept:" in shown
        button = ok_button(dlg)
        assert button.disabled
        await ui.type("backup-0")
        assert button.disabled  # not yet the exact name
        await ui.type("1x")
        assert button.disabled
        await ui.press("backspace")
        assert not button.disabled
        mark = ui.writes.mark()
        await ui.pilot.click("#ok")
        await ui.back_to_main()
        await ui.until(lambda: ref not in sim.store.all("VM"), what="the VM gone from the sim")
        await ui.until(lambda: ref not in ui.table.rows, what="the row gone")
        await ui.until(lambda: gone not in sim.store.all("VDI"), what="the other disk destroyed")
        assert keep in sim.store.all("VDI")  # the kept disk survives
        assert ui.writes.tasks(mark)[:2] == ["Async.VM.destroy", "Async.VDI.destroy"]
        assert "backup-01" not in ui.names()


# ---------------------------------------------------------------- cancel changes nothing


async def _escape_pick(ui: Ui) -> None:
    await ui.modal(PickOne)
    await ui.press("escape")


async def _escape_prompt(ui: Ui) -> None:
    await ui.modal(FieldsForm)
    await ui.press("escape")


async def _cancel_confirm(ui: Ui) -> None:
    await ui.modal(ConfirmPlan)
    await ui.pilot.click("#cancel")


async def _escape_confirm(ui: Ui) -> None:
    await ui.modal(ConfirmPlan)
    await ui.press("escape")


async def _escape_disks(ui: Ui) -> None:
    await ui.modal(PickMany)
    await ui.press("escape")


async def _escape_typed(ui: Ui) -> None:
    await ui.modal(PickMany)
    await ui.pilot.click("#ok")
    await ui.modal(ConfirmTyped)
    await ui.type("web-staging")
    await ui.press("escape")


async def _escape_resources(ui: Ui) -> None:
    form: FieldsForm = await ui.modal(FieldsForm)
    await fill(ui, form, vcpus="1")
    await ui.press("escape")


async def _migrate_then_cancel(ui: Ui) -> None:
    await pick(ui, "xcp-ng-03")
    await _escape_confirm(ui)


async def _copy_then_escape(ui: Ui) -> None:
    await pick(ui, "NFS storage")
    await _escape_prompt(ui)


CANCELS: list[tuple[str, str, Any]] = [
    ("t", "web-01", _cancel_confirm),
    ("z", "web-01", _escape_confirm),
    ("m", "web-01", _escape_pick),
    ("m", "web-01", _migrate_then_cancel),
    ("S", "web-staging", _escape_pick),
    ("n", "web-staging", _escape_prompt),
    ("c", "web-staging", _escape_prompt),
    ("C", "web-staging", _copy_then_escape),
    ("r", "web-staging", _escape_prompt),
    ("v", "web-01", _escape_pick),
    ("E", "web-staging", _escape_resources),
    ("delete", "web-staging", _escape_disks),
    ("delete", "web-staging", _escape_typed),
]


async def test_cancel_or_escape_changes_nothing(sim: Simulator, client: Client) -> None:
    """Every dialog of every action, answered with escape or Cancel, one after the
    other in one session: nothing is written to the simulator, the cursor stays."""
    async with running(sim, client) as ui:
        await ui.open_vms()
        for key, name, answer in CANCELS:
            what = f"{key} on {name}, {answer.__name__.strip('_')}"
            before = dict(ui.vm(name))
            names = ui.vm_names()
            mark = ui.writes.mark()
            await ui.act(key, on=name)
            await answer(ui)
            await ui.back_to_main()
            await ui.settle()
            assert ui.writes.since(mark) == [], what
            assert ui.vm(name) == before, what
            assert ui.vm_names() == names, what
            assert ui.cursor_name == name, what
        assert not ui.said("done")
        assert not ui.errors()
