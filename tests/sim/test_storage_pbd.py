"""PBD behaviour over real HTTPS, through the official XenAPI client (XML-RPC) and
JSON-RPC. Sources: xapi-project/xen-api ocaml/xapi/xapi_pbd.ml (create_common,
plug, unplug, destroy, check_sharing_constraint, get_active_vdis_by_pbd),
ocaml/xapi/message_forwarding.ml (PBD marking of the SR, set_device_config)."""

from __future__ import annotations

from tests.conftest import wait_for
from tests.sim import storage_support as support
from tests.sim.storage_support import (
    Api,
    GiB,
    by_name,
    sr_named,
    vbd_record,
    vdi_record,
)
from xsctl.sim import Simulator

sim = support.sim  # fixture: the storage tests' pool
apis = support.apis  # fixture: both clients
stop_sims_at_module_end = support.stop_sims_at_module_end  # autouse fixture

BACKUP = {"server": "10.0.0.5", "serverpath": "/export/backup"}


def hosts(api: Api) -> list[str]:
    return sorted(api("host.get_all"), key=lambda h: api("host.get_address", h))


def new_nfs(api: Api) -> str:
    master = api("pool.get_master", api("pool.get_all")[0])
    return str(api("SR.create", master, BACKUP, 0, "Backups", "", "nfs", "user", True, {}))


def pbd_on(api: Api, sr: str, host: str) -> str:
    return next(p for p in api("SR.get_PBDs", sr) if api("PBD.get_host", p) == host)


def test_create_rules(apis: list[Api]) -> None:
    """xapi_pbd.ml create_common: one PBD per host (PBD_EXISTS [sr, host, pbd]); no
    SRmaster key (VALUE_NOT_SUPPORTED); created unplugged, other_config not kept."""
    xml, js = apis
    intro = xml("SR.introduce", "", "bare", "", "nfs", "user", True, {})
    h0, h1, _ = hosts(xml)
    pbd = xml("PBD.create", {"host": h0, "SR": intro, "device_config": BACKUP,
                             "other_config": {"k": "v"}})
    rec = js("PBD.get_record", pbd)
    assert (rec["currently_attached"], rec["other_config"], rec["SR"]) == (False, {}, intro)
    assert js("SR.get_PBDs", intro) == [pbd] and pbd in js("host.get_PBDs", h0)
    for api in apis:
        assert api.fails("PBD.create", {"host": h0, "SR": intro, "device_config": {}}) == [
            "PBD_EXISTS", intro, h0, pbd]
        assert api.fails("PBD.create", {"host": h1, "SR": intro,
                                        "device_config": {"SRmaster": "true"}}) == [
            "VALUE_NOT_SUPPORTED", "SRmaster", "true", "This key is for internal use only"]
        assert api.fails("PBD.create", {"host": h1, "SR": "OpaqueRef:no",
                                        "device_config": {}}) == [
            "HANDLE_INVALID", "SR", "OpaqueRef:no"]
        assert api.fails("PBD.set_device_config", pbd, {}) == ["PERMISSION_DENIED", ""]


def test_plug_unplug_destroy(apis: list[Api]) -> None:
    """xapi_pbd.ml: plug and unplug are idempotent; destroy of an attached PBD is
    OPERATION_NOT_ALLOWED ["PBD is currently attached"]; SR.PBDs and host.PBDs follow."""
    xml, js = apis
    sr = new_nfs(xml)
    h = hosts(xml)[2]
    pbd = pbd_on(xml, sr, h)
    for api in apis:
        assert api.fails("PBD.destroy", pbd) == [
            "OPERATION_NOT_ALLOWED", "PBD is currently attached"]
    js("PBD.plug", pbd)  # already plugged: nothing to do
    assert xml.run_async("PBD.unplug", pbd)["status"] == "success"
    assert js("PBD.get_currently_attached", pbd) is False
    xml("PBD.unplug", pbd)
    assert js.run_async("PBD.plug", pbd)["status"] == "success"
    assert xml("PBD.get_currently_attached", pbd) is True
    js("PBD.unplug", pbd)
    xml("PBD.destroy", pbd)
    assert pbd not in js("SR.get_PBDs", sr) and pbd not in js("host.get_PBDs", h)
    assert xml.fails("PBD.get_record", pbd) == ["HANDLE_INVALID", "PBD", pbd]


def test_unplug_refused_while_disks_are_attached(apis: list[Api]) -> None:
    """xapi_pbd.ml unplug: VDI_IN_USE [vdis...] for the SR's disks attached to VMs
    resident on the PBD's host; other hosts' PBDs unplug fine."""
    xml, js = apis
    sr = new_nfs(xml)
    vm = by_name(xml, "VM", "web-02")
    host = xml("VM.get_resident_on", vm)
    vdi = xml("VDI.create", vdi_record("data", sr, GiB))
    vdi2 = js("VDI.create", vdi_record("logs", sr, GiB))
    for v in (vdi, vdi2):
        js("VBD.plug", js("VBD.create", vbd_record(vm, v)))
    pbd = pbd_on(xml, sr, host)
    for api in apis:
        err = api.fails("PBD.unplug", pbd)
        assert err[0] == "VDI_IN_USE" and sorted(err[1:]) == sorted([vdi, vdi2])
    for other in hosts(xml):
        if other != host:
            xml("PBD.unplug", pbd_on(xml, sr, other))
    isos = sr_named(js, "ISO library")
    web01 = by_name(js, "VM", "web-01")  # has an ISO in its drive
    iso_pbd = pbd_on(js, isos, js("VM.get_resident_on", web01))
    cd_iso = js("VBD.get_VDI", next(v for v in js("VM.get_VBDs", web01)
                                if js("VBD.get_type", v) == "CD"))
    assert cd_iso in js.fails("PBD.unplug", iso_pbd)


def test_plug_of_a_local_sr_elsewhere(apis: list[Api]) -> None:
    """xapi_pbd.ml check_sharing_constraint: a non-shared SR attached on one host is
    SR_NOT_SHARABLE [sr, host] on another."""
    xml, js = apis
    h0, h1, _ = hosts(xml)
    local = sr_named(xml, "Local storage", 0)
    dc = xml("PBD.get_device_config", xml("SR.get_PBDs", local)[0])
    pbd = js("PBD.create", {"host": h1, "SR": local, "device_config": dc})
    for api in apis:
        assert api.fails("PBD.plug", pbd) == ["SR_NOT_SHARABLE", local, h0]


def test_unplug_updates_sr_and_vdi_operations(apis: list[Api]) -> None:
    """Xapi_sr_operations: once no PBD is attached the SR may be forgotten (and, when
    empty, destroyed); xapi_vdi.ml: resize needs a plugged PBD (SR_HAS_NO_PBDS)."""
    xml, js = apis
    sr = new_nfs(js)
    vdi = js("VDI.create", vdi_record("d", sr, GiB))
    assert "forget" not in xml("SR.get_allowed_operations", sr)
    for pbd in xml("SR.get_PBDs", sr):
        js("PBD.unplug", pbd)
    ops = xml("SR.get_allowed_operations", sr)
    assert "forget" in ops and "destroy" not in ops
    assert "resize" not in js("VDI.get_allowed_operations", vdi)
    xml("PBD.plug", xml("SR.get_PBDs", sr)[0])
    assert "resize" in js("VDI.get_allowed_operations", vdi)


def test_unplug_waits_for_vdi_operations(apis: list[Api], sim: Simulator) -> None:
    """message_forwarding.ml with_unplug_locks: a VDI operation in progress holds the
    unplug back (OTHER_OPERATION_IN_PROGRESS, retried) until it ends."""
    xml, js = apis
    sr = new_nfs(xml)
    vdi = xml("VDI.create", vdi_record("d", sr, GiB))
    pbd = pbd_on(xml, sr, hosts(xml)[0])
    sim.op_time = 1.0
    snap_task = js("Async.VDI.snapshot", vdi, {})
    wait_for(lambda: xml("VDI.get_current_operations", vdi))
    unplug_task = xml("Async.PBD.unplug", pbd)
    wait_for(lambda: "cancel" in js("task.get_allowed_operations", unplug_task))
    assert xml("PBD.get_currently_attached", pbd) is True
    sim.op_time = 0.01
    assert js.wait(snap_task)["status"] == "success"
    assert xml.wait(unplug_task)["status"] == "success"
    assert js("PBD.get_currently_attached", pbd) is False
