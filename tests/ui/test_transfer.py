"""Export and import in the TUI: X on a VM asks the compression and the file and
writes it; I (or the palette's "vm: import from a file") asks the SR, shown with
its free space, and the file, and makes the VM; a foreign file is refused in the
form, before anything is sent; cancelling the task in the Tasks view stops an
export and leaves no file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.widgets import Input

from tests.cli.test_cli_transfer import CLASSES, data_vm
from tests.conftest import xenapi_session
from tests.sim.test_transfer import export as raw_export
from tests.ui.dialogs import answer_text, confirm_plan, fill, form_error, pick
from tests.ui.harness import running
from xsctl.sim import Simulator
from xsctl.sim.vdi_data import CHUNK
from xsctl.ui.commands import XsctlCommands
from xsctl.ui.modals.forms import FieldsForm, PickOne
from xsctl.xapi.client import Client


@pytest.fixture(autouse=True)
def nothing_lost(sim: Simulator) -> Iterator[None]:
    """Whatever a test makes, it removes nothing that was there before it."""
    before = {c: set(sim.store.all(c)) for c in CLASSES}
    yield
    for c in CLASSES:
        assert not before[c] - set(sim.store.all(c)), c


@pytest.fixture
def files(tmp_path: Path) -> Path:
    d = tmp_path / "files"  # tmp_path holds the app's config
    d.mkdir()
    return d


def squeeze(text: str) -> str:
    """The text without its spaces and line breaks (a dialog wraps long paths)."""
    return "".join(text.split())


def guests(sim: Simulator) -> set[str]:
    return {r for r, row in sim.store.all("VM").items()
            if not row["is_a_template"] and not row["is_a_snapshot"]
            and not row["is_control_domain"]}


async def test_export_then_import_from_the_vm_view(sim: Simulator, client: Client,
                                                   files: Path) -> None:
    out = files / "backup.xva"
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.act("X", on="backup-01")
        comp: PickOne[str] = await ui.modal(PickOne)
        assert [c.label for c in comp.choices] == ["none", "gzip", "zstd"]
        await pick(ui, "gzip")
        form: FieldsForm = await ui.modal(FieldsForm)
        assert form.query_one("#f-file", Input).value.endswith("/backup-01.xva")
        await answer_text(ui, str(out))
        shown = squeeze(await confirm_plan(ui))
        assert squeeze("GET /export?ref=backup-01&task_id=<result of step 1>"
                       f"&use_compression=gzip > {out}") in shown
        assert "xevm-exportvm=" in shown and squeeze(f"filename={out} compress=gzip") in shown
        await ui.until_said(f"Export VM backup-01 to {out}: done", timeout=20)
        assert out.read_bytes()[:2] == b"\x1f\x8b"
        assert sorted(p.name for p in files.iterdir()) == ["backup.xva"]

        before = guests(sim)
        await ui.press("I")
        dlg: PickOne[str] = await ui.modal(PickOne)
        nfs = next(c for c in dlg.choices if c.label == "NFS storage")
        assert "free" in nfs.detail
        iso = next(c for c in dlg.choices if c.label == "ISO library")
        assert iso.reason == "an ISO library holds no VM disks"
        await pick(ui, "NFS storage")
        form = await ui.modal(FieldsForm)
        # a file that is not an export is refused as it is typed, nothing sent
        await fill(ui, form, file=str(Path(__file__)))
        await ui.press("enter")
        await ui.until(lambda: "is not an XVA export" in form_error(form), what="the refusal")
        assert guests(sim) == before
        await fill(ui, form, file=str(out))
        await ui.press("enter")
        shown = squeeze(await confirm_plan(ui))
        assert squeeze(f"PUT /import?sr_id=NFS storage&task_id=<result of step 1> < {out}") \
            in shown and squeeze(f"xe vm-import filename={out} sr-uuid=") in shown
        await ui.until_said("Import backup-01 from backup.xva into NFS storage: done — as "
                           "backup-01 (", timeout=20)
        new = guests(sim) - before
        assert len(new) == 1
        (vm,) = new
        assert sim.store.get(vm, "VM")["name_label"] == "backup-01"
        assert ui.errors() == []


async def test_import_from_the_palette(sim: Simulator, client: Client, files: Path) -> None:
    x = xenapi_session(sim)
    try:
        out = files / "w.xva"
        out.write_bytes(raw_export(sim, x.handle, "uuid=" + x.xenapi.VM.get_uuid(
            x.xenapi.VM.get_by_name_label("web-staging")[0])).body)
    finally:
        x.xenapi.session.logout()
    async with running(sim, client) as ui:
        await ui.open_vms()
        provider = XsctlCommands(ui.main)
        hits = [h async for h in provider.search("vm: import")]
        hit = next(h for h in hits if h.text == "vm: import from a file")
        before = guests(sim)
        hit.command()
        await pick(ui, "NFS storage")
        await answer_text(ui, str(out))
        await confirm_plan(ui)
        await ui.until(lambda: len(guests(sim) - before) == 1, what="the imported VM",
                       timeout=20)


async def test_cancelling_the_task_stops_the_export(sim: Simulator, client: Client,
                                                    files: Path) -> None:
    x = xenapi_session(sim)
    try:
        data_vm(sim, x, {n: bytes([n]) * CHUNK for n in range(1, 8)})
    finally:
        x.xenapi.session.logout()
    out = files / "half.xva"
    async with running(sim, client) as ui:
        await ui.open_vms()
        await ui.until(lambda: "data-vm" in ui.names(), what="the data VM's row")
        sim.op_time = 40.0  # each disk takes 10 s to stream: time to cancel in
        try:
            await ui.act("X", on="data-vm")
            await pick(ui, "none")
            await answer_text(ui, str(out))
            await confirm_plan(ui)
            await ui.until(lambda: any(p.name.startswith(".half.xva.partial")
                                       for p in files.iterdir()), what="the partial file")
            (task,) = [r for r, t in sim.store.all("task").items()
                       if t["name_label"] == "Export of data-vm" and t["status"] == "pending"]
            tasks = ui.main.view("tasks")
            await ui.press(tasks.KEY)
            await ui.until(lambda: tasks.show_object(task), what="the export's row")
            # cancellable once the disks stream (stream_vdi.ml), as the app learns it
            await ui.until(lambda: "cancel" in (client.cache.get("task", task) or {}).get(
                "allowed_operations", ()), what="the task cancellable in the cache")
            # the transfer reports once its first MiB is in (within a disk's 10 s)
            await ui.until(lambda: task in tasks.rates, what="the transfer's first figures",
                           timeout=15)
            # its row shows the rate (and the time left once xapi tells the progress),
            # cut to the column's width: "pending · 3.5 MiB/…", or "pending · 350.2 Mi…"
            # when the first MiB came at once
            await ui.until(lambda: re.search(r"pending · [0-9][0-9.]* [KMGTPB]",
                                             ui.screen_text()), what="the rate in the task's row")
            tasks.table.focus()  # the keys go to the task's row
            await ui.handled()
            await ui.press("x")
            await ui.until_said("The task was cancelled", timeout=20)
        finally:
            sim.op_time = 0.05
        assert sorted(p.name for p in files.iterdir()) == []
        assert sim.store.get(ui.ref("data-vm"), "VM")["current_operations"] == {}


async def test_leaving_the_app_mid_export_cancels_it(sim: Simulator, client: Client,
                                                   files: Path) -> None:
    """q during an export: the transfer is cancelled before the app lets go of the
    connection, so neither a partial file nor a running task is left."""
    x = xenapi_session(sim)
    try:
        data_vm(sim, x, {n: bytes([n]) * CHUNK for n in range(1, 8)})
    finally:
        x.xenapi.session.logout()
    out = files / "half.xva"
    sim.op_time = 40.0  # each disk takes 10 s to stream
    try:
        async with running(sim, client) as ui:
            await ui.open_vms()
            await ui.until(lambda: "data-vm" in ui.names(), what="the data VM's row")
            await ui.act("X", on="data-vm")
            await pick(ui, "none")
            await answer_text(ui, str(out))
            await confirm_plan(ui)
            await ui.until(lambda: any(files.iterdir()), what="the partial file")
            await ui.press("q")
    finally:
        sim.op_time = 0.05
    assert sorted(p.name for p in files.iterdir()) == []
    assert not any(t["status"] == "pending" and t["name_label"] == "Export of data-vm"
                   for t in sim.store.all("task").values())
