"""The Storage and Disks views on the simulator: the SR table's facts and warnings
kept live from changes made through xapi, the default SR marked, enter on an SR
opening its disks, orphans found by the filter, snapshots under their parents,
hostile names shown as text, and both lists readable at 80x24."""

from __future__ import annotations

import unicodedata
from typing import Any

from tests.conftest import xenapi_session
from tests.jsonrpc import JsonRpcClient
from tests.ui.harness import Ui, in_thread, running, text_of
from xsctl.sim import Simulator
from xsctl.ui.views.disks import DisksView
from xsctl.ui.views.storage import StorageView
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client


def storage_view(ui: Ui) -> StorageView:
    return ui.main.query_one(StorageView)


def disks_view(ui: Ui) -> DisksView:
    return ui.main.query_one(DisksView)


def cells(table: VirtualTable, ref: str) -> dict[str, str]:
    """A row's cells by column key."""
    return {c.key: text for c, (text, _) in zip(table.columns, table.rows[ref].cells,
                                                strict=True)}


def shown_names(table: VirtualTable) -> list[str]:
    return [table.rows[k].cells[0][0] for k in table.order]


def line_of(table: VirtualTable, ref: str) -> str:
    """The row as drawn now (it must be in view)."""
    y = table.order.index(ref) - table.scroll_offset.y + 1
    assert 1 <= y < table.scrollable_content_region.height, f"{ref} is not in view"
    return table.render_line(y).text


def pane(view: StorageView | DisksView) -> str:
    """What the detail pane shows (its title and body, all of it)."""
    return "\n".join(text_of(w) for w in view.detail.query(".side-detail-title, .side-detail-body"))


async def open_storage(ui: Ui) -> VirtualTable:
    await ui.press("4")
    assert ui.main.current_view == "storage"
    table = storage_view(ui).table
    assert ui.app.focused is table
    await ui.until(lambda: table.rows, what="the SR rows")
    return table


async def open_disks(ui: Ui) -> VirtualTable:
    await ui.press("5")
    assert ui.main.current_view == "disks"
    table = disks_view(ui).table
    await ui.until(lambda: table.rows, what="the disk rows")
    return table


def sim_disks(sim: Simulator, sr: str) -> set[str]:
    """The disks xapi shows of an SR (its hidden chain leaves are not)."""
    return {ref for ref in sim.store.get(sr, "SR")["VDIs"]
            if sim.store.get(ref, "VDI")["managed"]}


def pool_default(sim: Simulator) -> str:
    return str(next(iter(sim.store.all("pool").values()))["default_SR"])


class Xapi:
    """A second, independent client (the official XenAPI package), as another admin."""

    def __init__(self, sim: Simulator) -> None:
        self.session: Any = None
        self.sim = sim

    async def __aenter__(self) -> Any:
        self.session = await in_thread(lambda: xenapi_session(self.sim))
        return self.session.xenapi

    async def __aexit__(self, *exc: object) -> None:
        await in_thread(self.session.xenapi.session.logout)


async def test_every_sr_with_its_facts_and_the_default_marked_live(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(200, 50)) as ui:
        table = await open_storage(ui)
        srs = sim.store.all("SR")
        assert set(table.rows) == set(srs)
        nfs = ui.sr_named("NFS storage")
        row = cells(table, nfs)
        assert row["name"] == "NFS storage (default)" and pool_default(sim) == nfs
        assert (row["type"], row["content"], row["shared"]) == ("nfs", "user", "shared")
        assert row["plugged"] == "3/3 hosts"
        assert row["size"] == "4 TiB" and row["disks"] == str(len(sim_disks(sim, nfs)))
        assert row["orphans"] == "–" and row["warn"] == ""
        rec = srs[nfs]
        # thin provisioning: allocated is what the disks were promised, not what they use
        assert int(rec["virtual_allocation"]) != int(rec["physical_utilisation"])
        assert row["alloc"] != row["used"]
        local = next(r for r, s in srs.items() if s["type"] == "lvm")
        host = ui.host_name(sim.store.get(sim.store.get(local, "SR")["PBDs"][0], "PBD")["host"])
        assert cells(table, local)["name"] == f"Local storage on {host}"
        assert cells(table, local)["shared"] == "local"
        assert "(default)" not in cells(table, local)["name"]
        # the detail pane, beside the table at this width
        table.move_to(nfs)
        await ui.handled()
        detail = pane(storage_view(ui))
        assert "Hosts (PBDs)" in detail and "serverpath" in detail and "/export/xen" in detail
        assert "scan" in detail  # its allowed operations
        # another admin makes a local SR the default: the mark moves
        async with Xapi(sim) as x:
            pool = await in_thread(lambda: x.pool.get_all()[0])
            await in_thread(lambda: x.pool.set_default_SR(pool, local))
            await ui.until(lambda: cells(table, local)["name"].endswith("(default)"),
                           what="the new default marked")
            assert cells(table, nfs)["name"] == "NFS storage"
            await in_thread(lambda: x.pool.set_default_SR(pool, nfs))


async def test_an_unplugged_pbd_makes_the_row_warn_and_plugging_it_clears_it(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        table = await open_storage(ui)
        nfs = ui.sr_named("NFS storage")
        pbd = sim.store.get(nfs, "SR")["PBDs"][1]
        host = sim.store.get(pbd, "PBD")["host"]
        async with Xapi(sim) as x:
            # xapi refuses to unplug an SR a running VM of that host uses: shut them
            for vm, r in list(sim.store.all("VM").items()):
                if r["resident_on"] == host and r["power_state"] == "Running" \
                        and not r["is_control_domain"]:
                    await in_thread(lambda vm=vm: x.VM.hard_shutdown(vm))
            await in_thread(lambda: x.PBD.unplug(pbd))
            warn = f"⚠ unplugged on {ui.host_name(host)}"
            await ui.until(lambda: cells(table, nfs)["warn"] == warn, what="the warning")
            assert cells(table, nfs)["plugged"] == "2/3 hosts"
            assert warn in line_of(table, nfs)  # drawn, not only in the row's data
            assert "with warnings" in text_of(storage_view(ui).query_one("#sr-status"))
            await in_thread(lambda: x.PBD.plug(pbd))
            await ui.until(lambda: cells(table, nfs)["warn"] == "", what="the warning gone")


async def test_enter_on_an_sr_opens_its_disks_and_escape_shows_every_sr(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        table = await open_storage(ui)
        local = max((r for r, s in sim.store.all("SR").items() if s["type"] == "lvm"),
                    key=lambda r: len(sim_disks(sim, r)))
        table.move_to(local)
        await ui.press("enter")
        assert ui.main.current_view == "disks"
        view = disks_view(ui)
        assert ui.app.focused is view.table
        await ui.until(lambda: view.table.rows, what="the disks")
        assert set(view.table.order) == sim_disks(sim, local) and len(view.table.order) > 1
        await ui.handled()
        top = ui.screen_text().splitlines()[1]  # the line under the header
        assert f"SR {cells(table, local)['name']}" in top
        # a text filter works within the SR's disks
        await ui.press("slash")
        name = view.table.rows[view.table.order[0]].cells[0][0]
        await ui.type(name)
        await ui.press("enter")
        assert view.table.order and set(view.table.order) <= sim_disks(sim, local)
        await ui.press("escape")  # the text filter first
        assert set(view.table.order) == sim_disks(sim, local)
        await ui.press("escape")  # then the SR's
        assert len(view.table.order) == len(view.table.rows) > len(sim_disks(sim, local))
        assert "Every SR" in ui.screen_text().splitlines()[1]
        await ui.press("escape")  # then back to the menu
        assert ui.main.query_one("#menu").has_focus


async def test_the_orphans_filter_finds_a_disk_whose_vbd_was_destroyed(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        storage = await open_storage(ui)
        disks = await open_disks(ui)
        view = disks_view(ui)
        await ui.press("exclamation_mark")
        assert view.orphans_only
        before = set(disks.order)  # the demo's own orphans
        assert all(cells(disks, k)["users"] == "none: orphaned" for k in before)
        assert "orphans only" in ui.screen_text().splitlines()[1]
        vm = next(r for r, v in sim.store.all("VM").items()
                  if v["name_label"] == "backup-01" and not v["is_a_snapshot"])
        vbd = next(b for b in sim.store.get(vm, "VM")["VBDs"]
                   if sim.store.get(b, "VBD")["type"] == "Disk")
        vdi = sim.store.get(vbd, "VBD")["VDI"]
        sr = sim.store.get(vdi, "VDI")["SR"]
        on_sr = sum(1 for k in before if sim.store.get(k, "VDI")["SR"] == sr)
        async with Xapi(sim) as x:
            await in_thread(lambda: x.VBD.destroy(vbd))
        await ui.until(lambda: set(disks.order) == before | {vdi}, what="the orphan shown")
        disks.move_to(vdi)
        await ui.handled()
        assert cells(disks, vdi)["users"] == "none: orphaned"
        assert cells(storage, sr)["orphans"] == str(on_sr + 1)
        assert f"{len(before) + 1} orphaned" in text_of(view.query_one("#disk-status"))
        await ui.press("d")  # its detail: no VBD, said so
        detail = pane(view)
        assert "Used by no VM" in detail and "Orphaned" in detail
        await ui.press("exclamation_mark")  # every disk again
        assert len(disks.order) == len(disks.rows)


async def test_snapshots_sit_under_their_parents(sim: Simulator, client: Client) -> None:
    async with running(sim, client) as ui:
        disks = await open_disks(ui)
        vdis = sim.store.all("VDI")
        parent = next(r for r, v in vdis.items()
                      if v["name_label"] == "db-01 0" and not v["is_a_snapshot"])
        snaps = list(vdis[parent]["snapshots"])
        assert len(snaps) == 2
        row = cells(disks, parent)
        assert row["snapshots"] == "2 snapshots"
        at = disks.order.index(parent)
        assert set(disks.order[at + 1:at + 3]) == set(snaps)  # right under it
        for s in snaps:
            assert cells(disks, s)["name"] == "└ db-01 0"
            assert cells(disks, s)["snapshots"].startswith("snapshot of db-01 0")
            assert "(snapshot)" in cells(disks, s)["users"]  # used by the snapshot VM
        # renaming the parent renames it in its snapshots' rows
        async with Xapi(sim) as x:
            await in_thread(lambda: x.VDI.set_name_label(parent, "db-01 system"))
        await ui.until(lambda: all(cells(disks, s)["snapshots"].startswith(
            "snapshot of db-01 system") for s in snaps), what="the parent's new name")


NAME = "evil\x1b]0;PWNED\x07\x1b[2J[b]x[/b]\x9b1m"
SHOWN = "evil]0;PWNED[2J[b]x[/b]1m"


def controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})


async def test_hostile_names_and_secrets_are_shown_as_text_or_not_at_all(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(200, 50)) as ui:
        storage = await open_storage(ui)
        nfs = ui.sr_named("NFS storage")
        vdi = next(r for r, v in sim.store.all("VDI").items() if v["name_label"] == "web-01 0"
                   and not v["is_a_snapshot"])
        host = next(iter(sim.store.all("host")))
        j = JsonRpcClient(sim.url)  # JSON-RPC: XML cannot carry these characters
        await in_thread(lambda: j.login(sim.user, sim.password))
        try:
            await in_thread(lambda: j("SR.set_name_label", nfs, NAME))
            await in_thread(lambda: j("VDI.set_name_label", vdi, NAME))
            # an SMB SR introduced with its password in the device_config
            smb = await in_thread(lambda: j("SR.introduce", "", "[red]smb[/red]", "", "smb",
                                            "user", True, {}))
            await in_thread(lambda: j("PBD.create", {
                "host": host, "SR": smb, "other_config": {},
                "device_config": {"server": "//filer/share", "username": "admin",
                                  "cifspassword": "hunter2"}}))
        finally:
            await in_thread(j.logout)
            j.close()
        await ui.until(lambda: smb in storage.rows and nfs in storage.rows
                       and SHOWN in storage.rows[nfs].cells[0][0], what="the new names")
        text = ui.screen_text()
        assert not controls(text) and SHOWN in text and "[red]smb[/red]" in text
        assert cells(storage, smb)["warn"] == "⚠ detached"  # a PBD, never plugged
        storage.move_to(smb)
        await ui.handled()
        detail = pane(storage_view(ui))
        assert "cifspassword" in detail and "hunter2" not in detail and "••••••" in detail
        assert "//filer/share" in detail
        assert "hunter2" not in ui.app.export_screenshot()
        disks = await open_disks(ui)
        await ui.until(lambda: SHOWN in cells(disks, vdi)["name"], what="the disk renamed")
        disks.move_to(vdi)
        await ui.handled()
        text = ui.screen_text()
        assert not controls(text) and text.count(SHOWN) >= 3  # row, its SR, the pane
        assert not controls(ui.app.export_screenshot().replace("\n", ""))


async def test_at_80x24_names_stay_whole_and_the_detail_takes_the_table_s_place(
        sim: Simulator, client: Client) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        storage = await open_storage(ui)
        shown = {c.key for c in (storage.columns[i] for i in storage._shown)}
        assert {"name", "usage", "warn"} <= shown
        assert "content" not in shown  # the least needed went first
        warned = 0
        for ref in storage.order:
            name, warn = storage.rows[ref].cells[0][0], cells(storage, ref)["warn"]
            assert name in line_of(storage, ref), name  # never cut
            assert warn in line_of(storage, ref), warn  # nor a warning (the demo's Archive)
            warned += bool(warn)
        assert warned
        await ui.press("d")
        view = storage_view(ui)
        assert view.detail.display and not storage.display
        assert "Hosts (PBDs)" in ui.screen_text()
        await ui.until(lambda: ui.app.focused is view.detail, what="the pane focused")
        await ui.press("escape")
        await ui.until(lambda: storage.display and ui.app.focused is storage,
                       what="back to the table")
        disks = await open_disks(ui)
        shown = {c.key for c in (disks.columns[i] for i in disks._shown)}
        assert {"name", "size", "users"} <= shown
        for ref in disks.order[: disks.scrollable_content_region.height - 1]:
            name = disks.rows[ref].cells[0][0]
            assert name in line_of(disks, ref), name
        # the filter's key in the footer (redrawn once the focus moved)
        await ui.until(lambda: "! Orphans" in ui.screen_text().splitlines()[-1],
                       what="the footer")
