"""The New SR wizard, driven by keys on the demo pool: every SR type through its
probe to a plan that runs (its SR and PBDs are in the simulator's database after),
attaching an SR a probe finds, and the refusals (a field wrong before any call, an
NFS server that does not answer, a disk in use, the system disk). Each test checks
that no SR, PBD or VDI it did not mean to remove is gone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from textual.widgets import Input, OptionList

from tests.conftest import xenapi_session
from tests.ui.dialogs import open_wizard, wizard_fill, wizard_page, wizard_pick
from tests.ui.harness import Ui, running, text_of, words_of
from xsctl.sim import Simulator
from xsctl.ui.modals.new_sr import NewSrWizard
from xsctl.xapi.client import Client
from xsctl.xapi.probe import SR_KINDS

NFS = "10.0.0.5"


def _records(sim: Simulator) -> dict[str, set[str]]:
    return {cls: set(sim.store.all(cls)) for cls in ("SR", "PBD", "VDI")}


@pytest.fixture
def kept(sim: Simulator) -> Iterator[dict[str, set[str]]]:
    """Nothing the test did not mean to delete is gone at its end."""
    before = _records(sim)
    yield before
    after = _records(sim)
    for cls, refs in before.items():
        assert refs <= after[cls], f"{cls} gone: {refs - after[cls]}"


async def _finish(ui: Ui, wiz: NewSrWizard, name: str, confirm: bool = False) -> None:
    await wizard_page(ui, wiz, "name")
    await wizard_fill(ui, wiz, {"name": name})
    await wizard_page(ui, wiz, "plan")
    if confirm:
        await ui.type(name)
        await ui.press("enter")
    else:
        await ui.press("enter")
    await ui.back_to_main()


def _sr(sim: Simulator, name: str) -> tuple[str, Any]:
    found = [(r, row) for r, row in sim.store.all("SR").items() if row["name_label"] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def _pbds(sim: Simulator, sr: str) -> list[Any]:
    return [sim.store.get(p, "PBD") for p in sim.store.get(sr, "SR")["PBDs"]]


async def _until_sr(ui: Ui, name: str) -> tuple[str, Any]:
    await ui.until(lambda: any(row["name_label"] == name and row["PBDs"] and all(
        p["currently_attached"] for p in _pbds(ui.sim, r))
        for r, row in ui.sim.store.all("SR").items()), timeout=10, what=f"SR {name}")
    await ui.until_said("done")
    return _sr(ui.sim, name)


# ---------------------------------------------------------------- each type


async def test_nfs_through_the_exports_probe(sim: Simulator, client: Client,
                                             kept: dict[str, set[str]]) -> None:
    async with running(sim, client, size=(80, 24)) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "nfs")
        await wizard_page(ui, wiz, "fields")
        # the server the pool's NFS SR is on is offered: a first try finds something
        assert wiz.query_one("#f-server").value == NFS
        await ui.press("enter")
        await wizard_page(ui, wiz, "pick")
        assert "exports these" in words_of(wiz)
        await wizard_pick(ui, wiz, "probe-choices", "/export/backup")
        await wizard_page(ui, wiz, "found")
        await wizard_pick(ui, wiz, "found-choices", "create")
        await wizard_page(ui, wiz, "name")
        await wizard_fill(ui, wiz, {"name": "Backups", "description": "nightly"})
        await wizard_page(ui, wiz, "plan")
        shown = words_of(wiz)
        assert "SR.create" in shown and "xe sr-create" in shown
        assert "device-config:serverpath=/export/backup" in shown
        mark = ui.writes.mark()
        await ui.press("enter")
        await ui.back_to_main()
        ref, row = await _until_sr(ui, "Backups")
        assert row["type"] == "nfs" and row["shared"] and row["name_description"] == "nightly"
        assert len(_pbds(sim, ref)) == 3
        assert _pbds(sim, ref)[0]["device_config"] == {"server": NFS,
                                                       "serverpath": "/export/backup"}
        assert "Async.SR.create" in ui.writes.tasks(mark)


async def test_iscsi_target_then_iqn_then_lun(sim: Simulator, client: Client,
                                              kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "lvmoiscsi")
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"target": "10.0.0.7"})
        await wizard_page(ui, wiz, "pick")
        assert wiz.found is not None and wiz.found.needs == "targetIQN"
        await wizard_pick(ui, wiz, "probe-choices", "iqn.2024-09.com.example:storage")
        await wizard_page(ui, wiz, "pick")
        assert wiz.found.needs == "SCSIid" and len(wiz.found.luns) == 2
        lun = wiz.found.luns[1]
        await wizard_pick(ui, wiz, "probe-choices", lun.scsi_id)
        await wizard_page(ui, wiz, "found")
        assert wiz.found.srs == ()
        await wizard_pick(ui, wiz, "found-choices", "create")
        # creating formats the LUN: the plan asks for the name typed
        await _finish(ui, wiz, "SAN", confirm=True)
        ref, row = await _until_sr(ui, "SAN")
        assert row["type"] == "lvmoiscsi" and len(_pbds(sim, ref)) == 3
        assert _pbds(sim, ref)[0]["device_config"]["SCSIid"] == lun.scsi_id


async def test_hba_lun_from_the_probe(sim: Simulator, client: Client,
                                      kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "lvmohba")
        await wizard_page(ui, wiz, "pick")
        luns = wiz.found.luns if wiz.found else ()
        assert [x.path for x in luns] == ["/dev/sdd", "/dev/sde"]
        await wizard_pick(ui, wiz, "probe-choices", luns[0].scsi_id)
        await wizard_page(ui, wiz, "found")
        await wizard_pick(ui, wiz, "found-choices", "create")
        await _finish(ui, wiz, "FC", confirm=True)
        _, row = await _until_sr(ui, "FC")
        assert row["type"] == "lvmohba" and row["shared"]
        # the LUN is taken now: the next probe no longer offers it
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "lvmohba")
        await wizard_page(ui, wiz, "pick")
        assert [x.path for x in wiz.found.luns] == ["/dev/sde"]
        await ui.press("escape", "escape")
        await ui.back_to_main()


@pytest.mark.parametrize("kind", ["lvm", "ext"])
async def test_local_disk_on_a_chosen_host(kind: str, sim: Simulator, client: Client,
                                           kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        host = next(r for r, h in sim.store.all("host").items()
                    if h["name_label"] == "xcp-ng-02")
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", kind)
        await wizard_page(ui, wiz, "host")
        await wizard_pick(ui, wiz, "sr-hosts", host)
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"device": "/dev/sdc"})
        await wizard_page(ui, wiz, "found")
        await wizard_pick(ui, wiz, "found-choices", "create")
        await _finish(ui, wiz, f"Local {kind}", confirm=True)
        ref, row = await _until_sr(ui, f"Local {kind}")
        assert row["type"] == kind and not row["shared"]
        assert [p["host"] for p in _pbds(sim, ref)] == [host]


@pytest.mark.parametrize(("kind", "fields", "location"), [
    ("iso-nfs", {"location": f"{NFS}:/export/iso"}, f"{NFS}:/export/iso"),
    ("iso-smb", {"location": "//fileserver/isos", "username": "bob",
                 "cifspassword": "s3cret"}, "//fileserver/isos"),
])
async def test_iso_library(kind: str, fields: dict[str, str], location: str, sim: Simulator,
                           client: Client, kept: dict[str, set[str]]) -> None:
    """The ISO driver has no probe (no SR_PROBE): the fields make the SR."""
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", kind)
        await wizard_page(ui, wiz, "fields")
        assert "has no probe" in words_of(wiz)
        await wizard_fill(ui, wiz, fields)
        await wizard_page(ui, wiz, "name")
        await wizard_fill(ui, wiz, {"name": f"ISOs {kind}"})
        await wizard_page(ui, wiz, "plan")
        shown = words_of(wiz)
        assert "s3cret" not in shown  # a password never shows
        await ui.press("enter")
        await ui.back_to_main()
        ref, row = await _until_sr(ui, f"ISOs {kind}")
        assert row["content_type"] == "iso"
        assert _pbds(sim, ref)[0]["device_config"]["location"] == location


async def test_smb_probe_then_create(sim: Simulator, client: Client,
                                     kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "smb")
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"server": "//fileserver/vms", "username": "bob",
                              "password": "pw"})
        await wizard_page(ui, wiz, "found")
        await wizard_pick(ui, wiz, "found-choices", "create")
        await _finish(ui, wiz, "SMB VMs")
        ref, row = await _until_sr(ui, "SMB VMs")
        assert row["type"] == "smb" and len(_pbds(sim, ref)) == 3


def test_every_kind_is_tested() -> None:
    tested = {"nfs", "lvmoiscsi", "lvmohba", "lvm", "ext", "iso-nfs", "iso-smb", "smb"}
    assert {k.id for k in SR_KINDS} == tested


# ---------------------------------------------------------------- attach


async def test_attach_an_sr_the_probe_finds(sim: Simulator, client: Client,
                                            kept: dict[str, set[str]]) -> None:
    """An NFS SR forgotten from the pool is found by the probe and attached: its
    record, a PBD per host, plugged; its disks are back."""
    x = xenapi_session(sim)
    try:
        sr = x.xenapi.SR.create(x.xenapi.pool.get_master(x.xenapi.pool.get_all()[0]),
                                {"server": NFS, "serverpath": "/export/backup"}, "0", "Old",
                                "", "nfs", "user", True, {})
        uuid = x.xenapi.SR.get_uuid(sr)
        x.xenapi.VDI.create({"SR": sr, "name_label": "kept-disk", "virtual_size": str(2**30),
                             "type": "user", "sharable": False, "read_only": False,
                             "other_config": {}, "name_description": ""})
        for pbd in x.xenapi.SR.get_PBDs(sr):
            x.xenapi.PBD.unplug(pbd)
        x.xenapi.SR.forget(sr)
    finally:
        x.xenapi.session.logout()
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "nfs")
        await wizard_page(ui, wiz, "fields")
        await ui.press("enter")
        await wizard_pick(ui, wiz, "probe-choices", "/export/backup")
        await wizard_page(ui, wiz, "found")
        await wizard_pick(ui, wiz, "found-choices", uuid)
        await wizard_page(ui, wiz, "name")
        await wizard_fill(ui, wiz, {"name": "Old again"})
        await wizard_page(ui, wiz, "plan")
        shown = words_of(wiz)
        assert "SR.introduce" in shown and "PBD.create" in shown and "xe pbd-plug" in shown
        await ui.press("enter")
        await ui.back_to_main()
        ref, row = await _until_sr(ui, "Old again")
        assert row["uuid"] == uuid and len(_pbds(sim, ref)) == 3
        await ui.until(lambda: [sim.store.get(v, "VDI")["name_label"]
                                for v in sim.store.get(ref, "SR")["VDIs"]] == ["kept-disk"],
                       what="its disk scanned back")


async def test_an_sr_in_the_pool_is_not_offered(sim: Simulator, client: Client,
                                                kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "nfs")
        await wizard_page(ui, wiz, "fields")
        await ui.press("enter")
        await wizard_pick(ui, wiz, "probe-choices", "/export/xen")
        await wizard_page(ui, wiz, "found")
        option = wiz.query_one("#found-choices", OptionList).get_option_at_index(1)
        assert "already in the pool as NFS storage" in str(option.prompt)
        assert option.disabled
        await ui.press("escape", "escape", "escape", "escape")
        await ui.back_to_main()


# ---------------------------------------------------------------- refusals


async def test_fields_are_checked_before_any_call(sim: Simulator, client: Client,
                                                  kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "nfs")
        await wizard_page(ui, wiz, "fields")
        mark = ui.writes.mark()
        await wizard_fill(ui, wiz, {"server": "nas with space"})
        await ui.until(lambda: "device-config server=" in text_of(wiz.query_one("#error")),
                       what="the error")
        await wizard_fill(ui, wiz, {"server": "10.0.0.5", "nfsversion": "5"})
        await ui.until(lambda: "nfsversion" in text_of(wiz.query_one("#error")),
                       what="the nfsversion error")
        assert wiz.page == "fields" and ui.writes.tasks(mark) == []
        await ui.press("escape", "escape")
        await ui.back_to_main()


async def test_unreachable_nfs_server(sim: Simulator, client: Client,
                                      kept: dict[str, set[str]]) -> None:
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "nfs")
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"server": "nas.invalid"})
        await ui.until(lambda: "no NFS service answers" in text_of(wiz.query_one("#error")),
                       what="the probe's failure")
        assert wiz.page == "fields"
        # what was typed stays, to be corrected
        await wizard_page(ui, wiz, "fields")
        assert wiz.query_one("#f-server", Input).value == "nas.invalid"
        await ui.press("escape", "escape")
        await ui.back_to_main()


async def test_a_disk_in_use_and_the_system_disk(sim: Simulator, client: Client,
                                                 kept: dict[str, set[str]]) -> None:
    host = next(r for r, h in sim.store.all("host").items() if h["name_label"] == "xcp-ng-01")
    async with running(sim, client) as ui:
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "lvm")
        await wizard_pick(ui, wiz, "sr-hosts", host)
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"device": "/dev/sdb"})
        await wizard_pick(ui, wiz, "found-choices", "create")
        await _finish(ui, wiz, "First", confirm=True)
        await _until_sr(ui, "First")
        # the same disk again: the probe finds the SR on it, in the pool: no create
        wiz = await open_wizard(ui)
        await wizard_pick(ui, wiz, "sr-types", "lvm")
        await wizard_pick(ui, wiz, "sr-hosts", host)
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"device": "/dev/sdb"})
        await wizard_page(ui, wiz, "found")
        create = wiz.query_one("#found-choices", OptionList).get_option_at_index(0)
        assert create.disabled and "in use by First" in str(create.prompt)
        # the system disk: xapi's driver refuses it, and the toast says why
        await ui.press("escape")
        await wizard_page(ui, wiz, "fields")
        await wizard_fill(ui, wiz, {"device": "/dev/sda"})
        await wizard_pick(ui, wiz, "found-choices", "create")
        await _finish(ui, wiz, "Root", confirm=True)
        toast = await ui.until_said("failed", "error", timeout=10)
        assert "Root system device" in toast.message
        assert not [r for r in sim.store.all("SR").values() if r["name_label"] == "Root"]


async def test_the_palette_opens_it(sim: Simulator, client: Client) -> None:
    from xsctl.ui.commands import XsctlCommands

    async with running(sim, client, size=(80, 24)) as ui:
        await ui.press("ctrl+p")
        await ui.type("new sr")
        await ui.until(lambda: "sr: new SR" in ui.screen_text(), what="the palette's hit")
        hits = [h.text async for h in XsctlCommands(ui.main).search("new sr")]
        assert hits[0] == "sr: new SR…"
        await ui.press("enter")
        wiz = await ui.modal(NewSrWizard)
        await wizard_page(ui, wiz, "type")
        await ui.press("escape")
        await ui.back_to_main()
