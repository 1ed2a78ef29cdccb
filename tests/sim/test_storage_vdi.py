"""VDI behaviour over real HTTPS, through the official XenAPI client (XML-RPC) and
JSON-RPC. Sources: xapi-project/xen-api ocaml/xapi/xapi_vdi.ml
(check_operation_error, create, destroy, copy, snapshot, clone, introduce, forget),
ocaml/xapi/message_forwarding.ml (VDI marking, SR_HAS_NO_PBDS forwarding,
internal-only setters), ocaml/xapi/db_gc_util.ml (VBDs of a vanished VDI);
xapi-project/sm libs/sm/vhdutil.py, lvhdutil.py, drivers/LVHDSR.py, FileSR.py,
ISOSR.py (sizes, SRNoSpace, VDISize, VDIExists)."""

from __future__ import annotations

from typing import Any

from tests.conftest import wait_for
from tests.sim import storage_support as support
from tests.sim.storage_support import (
    Api,
    GiB,
    MiB,
    by_name,
    cd_of,
    disk_of,
    sr_named,
    sum_of_vdis,
    usage,
    vdi_record,
)
from xsctl.sim import Simulator

sim = support.sim  # fixture: the storage tests' pool
apis = support.apis  # fixture: both clients
stop_sims_at_module_end = support.stop_sims_at_module_end  # autouse fixture

NULL = "OpaqueRef:NULL"
LV_10G = 10766778368  # lvhdutil.calcSizeVHDLV(10 GiB): + 2 TiB VHD metadata + bitmaps, 4 MiB


def nfs(api: Api) -> str:
    return sr_named(api, "NFS storage")


def iso_named(api: Api, name: str) -> str:
    return str(api("VDI.get_by_name_label", name)[0])


# ---------------------------------------------------------------- create


def test_create_rounds_sizes_and_accounts(apis: list[Api]) -> None:
    """vhdutil.validate_and_round_vhd_size: 2 MiB blocks; thin VHDs start at their
    metadata size; LVHD thick allocates calcSizeVHDLV; SR usage grows by as much."""
    xml, js = apis
    sr = nfs(xml)
    before = usage(xml, sr)
    vdi = xml("VDI.create", vdi_record("thin", sr, GiB + 1, other_config={"k": "v"}))
    rec = js("VDI.get_record", vdi)
    assert int(rec["virtual_size"]) == GiB + 2 * MiB
    assert int(rec["physical_utilisation"]) < MiB
    assert (rec["SR"], rec["managed"], rec["location"]) == (sr, True, rec["uuid"])
    assert rec["sm_config"] == {"vdi_type": "vhd"} and rec["other_config"] == {"k": "v"}
    assert vdi in js("SR.get_VDIs", sr)
    after = usage(js, sr)
    assert after == (before[0] + int(rec["physical_utilisation"]), before[1] + GiB + 2 * MiB)
    local = sr_named(js, "Local storage")
    before = usage(js, local)
    thick = js("VDI.create", vdi_record("thick", local, 10 * GiB))
    assert int(xml("VDI.get_physical_utilisation", thick)) == LV_10G
    assert usage(xml, local) == (before[0] + LV_10G, before[1] + 10 * GiB)
    assert int(xml("VDI.get_virtual_size", xml("VDI.create", vdi_record("z", sr, 0)))) == 2 * MiB


def test_create_failures(apis: list[Api]) -> None:
    """LVHDSR._ensureSpaceAvailable: SR_BACKEND_FAILURE_44; vhdutil: _79 out of range;
    xapi_vdi.ml create: cbt_metadata refused; a missing record field is INTERNAL_ERROR;
    Xapi_sr_operations: drivers without VDI_CREATE are SR_OPERATION_NOT_SUPPORTED."""
    for api in apis:
        local = sr_named(api, "Local storage")
        assert api.fails("VDI.create", vdi_record("big", local, 2040 * GiB)) == [
            "SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]
        text = "VDI Invalid size [opterr=VDI size must be between 1 MB and 2088960 MB]"
        assert api.fails("VDI.create", vdi_record("huge", nfs(api), 2041 * GiB)) == [
            "SR_BACKEND_FAILURE_79", "", text, ""]
        assert api.fails("VDI.create", vdi_record("neg", nfs(api), -1)) == [
            "SR_BACKEND_FAILURE_79", "", text, ""]
        assert api.fails("VDI.create", vdi_record("c", nfs(api), GiB, type="cbt_metadata")) == [
            "VDI_INCOMPATIBLE_TYPE", "", "cbt_metadata"]
        rec = vdi_record("x", nfs(api), GiB)
        del rec["sharable"]
        err = api.fails("VDI.create", rec)
        assert err[0] == "INTERNAL_ERROR" and "sharable" in err[1]
        for name in ("DVD drives", "XCP-ng Tools"):
            sr = sr_named(api, name)
            assert api.fails("VDI.create", vdi_record("x", sr, GiB)) == [
                "SR_OPERATION_NOT_SUPPORTED", sr]
        assert api.fails("VDI.create", vdi_record("x", "OpaqueRef:none", GiB)) == [
            "HANDLE_INVALID", "SR", "OpaqueRef:none"]


def test_create_iso_image(apis: list[Api]) -> None:
    """ISOSR.py ISOVDI.create: exact size, read-write, named by sm_config path or
    <uuid>.img, sm_config created; an existing file is SR_BACKEND_FAILURE_43."""
    xml, js = apis
    sr = sr_named(xml, "ISO library")
    a = xml("VDI.create", vdi_record("upload", sr, 700 * MiB + 5))
    rec = js("VDI.get_record", a)
    assert int(rec["virtual_size"]) == 700 * MiB + 5 and rec["read_only"] is False
    assert rec["location"] == rec["uuid"] + ".img" and "created" in rec["sm_config"]
    b = js("VDI.create", vdi_record("named", sr, MiB, sm_config={"path": "tools.iso"}))
    assert xml("VDI.get_location", b) == "tools.iso"
    assert xml.fails("VDI.create", vdi_record("again", sr, MiB,
                                              sm_config={"path": "tools.iso"})) == [
        "SR_BACKEND_FAILURE_43", "", "The VDI already exists", ""]
    assert sum_of_vdis(js, sr) == usage(js, sr)


def test_async_create_returns_the_ref(apis: list[Api]) -> None:
    """Async.VDI.create: task.result is the XML-RPC fragment of the new ref."""
    for api in apis:
        rec = api.run_async("VDI.create", vdi_record("a", nfs(api), GiB))
        assert rec["status"] == "success"
        ref = rec["result"].removeprefix("<value>").removesuffix("</value>")
        assert api("VDI.get_name_label", ref) == "a"


def test_no_plugged_pbd_is_sr_has_no_pbds(apis: list[Api], sim: Simulator) -> None:
    """message_forwarding.ml choose_pbd_for_sr: SR_HAS_NO_PBDS [sr] for create, and the
    forwarded setters (VDI.set_name_label)."""
    xml, js = apis
    sr = sr_named(xml, "Local storage", 1)
    vdi = xml("SR.get_VDIs", sr)[0]
    pbd = xml("SR.get_PBDs", sr)[0]
    for vbd in xml("VDI.get_VBDs", vdi):
        sim.store.update(vbd, {"currently_attached": False})
    xml("PBD.unplug", pbd)
    for api in apis:
        assert api.fails("VDI.create", vdi_record("x", sr, GiB)) == ["SR_HAS_NO_PBDS", sr]
        assert api.fails("VDI.set_name_label", vdi, "x") == ["SR_HAS_NO_PBDS", sr]
        assert api.fails("VDI.resize", vdi, 100 * GiB) == ["SR_HAS_NO_PBDS", sr]
    assert "resize" not in js("VDI.get_allowed_operations", vdi)
    js("PBD.plug", pbd)
    js("VDI.set_name_label", vdi, "renamed")
    assert xml("VDI.get_name_label", vdi) == "renamed"


# ---------------------------------------------------------------- destroy


def test_destroy_refused_while_attached(apis: list[Api]) -> None:
    """xapi_vdi.ml check_operation_error: VDI_IN_USE [vdi, "destroy"]."""
    for api in apis:
        _, _, vdi = disk_of(api, "web-01")
        assert api.fails("VDI.destroy", vdi) == ["VDI_IN_USE", vdi, "destroy"]
        assert "destroy" not in api("VDI.get_allowed_operations", vdi)


def test_destroy_takes_halted_vms_vbds_along(apis: list[Api]) -> None:
    """xapi_vdi.ml destroy: the VDI's VBDs (of halted VMs) are destroyed with it; the
    SR's usage drops by the VDI's."""
    xml, js = apis
    vm, vbd, vdi = disk_of(xml, "web-staging")
    sr = xml("VDI.get_SR", vdi)
    rec = xml("VDI.get_record", vdi)
    before = usage(xml, sr)
    js("VDI.destroy", vdi)
    assert xml.fails("VBD.get_record", vbd) == ["HANDLE_INVALID", "VBD", vbd]
    assert vbd not in js("VM.get_VBDs", vm) and vdi not in js("SR.get_VDIs", sr)
    assert usage(js, sr) == (before[0] - int(rec["physical_utilisation"]),
                             before[1] - int(rec["virtual_size"]))
    assert usage(js, sr) == sum_of_vdis(js, sr)
    _, _, vdi2 = disk_of(js, "dev-sandbox")
    assert js.run_async("VDI.destroy", vdi2)["status"] == "success"
    assert xml.fails("VDI.get_uuid", vdi2) == ["HANDLE_INVALID", "VDI", vdi2]


def test_destroy_suspend_image_clears_suspend_vdi(apis: list[Api]) -> None:
    """xapi_vdi.ml destroy: VMs whose suspend_VDI it was get OpaqueRef:NULL."""
    for api, name in zip(apis, ("k8s-node-03", "legacy-erp"), strict=True):
        vm = by_name(api, "VM", name)
        suspend = api("VM.get_suspend_VDI", vm)
        assert api("VDI.get_type", suspend) == "suspend"
        api("VDI.destroy", suspend)
        assert api("VM.get_suspend_VDI", vm) == NULL


def test_destroy_iso_physical_device_and_tools(apis: list[Api]) -> None:
    """An image on an ISO SR can go (ISOSR has VDI_DELETE); the tools ISO and a DVD
    drive cannot (xapi_vdi.ml check_destroy, Xapi_sr_operations sm features)."""
    xml, js = apis
    iso = iso_named(xml, "SERVER_EVAL_x64FRE_en-us.iso")  # in no drive
    xml("VDI.destroy", iso)
    tools = iso_named(js, "guest-tools.iso")
    dvd = js("VDI.get_by_name_label", "DVD drive 0")[0]
    for api in apis:
        assert api.fails("VDI.destroy", tools) == [
            "SR_OPERATION_NOT_SUPPORTED", api("VDI.get_SR", tools)]
        assert api.fails("VDI.destroy", dvd) == [
            "SR_OPERATION_NOT_SUPPORTED", api("VDI.get_SR", dvd)]


def test_unmanaged_vdi_cannot_be_destroyed(apis: list[Api], sim: Simulator) -> None:
    """Xapi_vdi_helpers.assert_managed: VDI_NOT_MANAGED [vdi]."""
    vdi = apis[0]("VDI.create", vdi_record("u", nfs(apis[0]), GiB))
    sim.store.update(vdi, {"managed": False})
    for api in apis:
        assert api.fails("VDI.destroy", vdi) == ["VDI_NOT_MANAGED", vdi]


# ---------------------------------------------------------------- resize


def test_resize(apis: list[Api]) -> None:
    """xapi_vdi.ml resize: VDI_IN_USE [vdi, "resize"] while attached; the VHD drivers
    round up, refuse to shrink (SR_BACKEND_FAILURE_79) and thick SRs allocate the
    growth (SR_BACKEND_FAILURE_44 when it does not fit). resize_online is a removed
    message."""
    xml, js = apis
    _, _, attached = disk_of(xml, "web-01")
    sr = nfs(xml)
    vdi = xml("VDI.create", vdi_record("r", sr, GiB))
    for api in apis:
        assert api.fails("VDI.resize", attached, 100 * GiB) == ["VDI_IN_USE", attached, "resize"]
        assert api.fails("VDI.resize", vdi, GiB // 2) == [
            "SR_BACKEND_FAILURE_79", "", "VDI Invalid size [opterr=shrinking not allowed]", ""]
        assert api.fails("VDI.resize_online", vdi, 2 * GiB) == ["MESSAGE_REMOVED"]
    before = usage(js, sr)
    js("VDI.resize", vdi, 3 * GiB + 1)
    assert int(xml("VDI.get_virtual_size", vdi)) == 3 * GiB + 2 * MiB
    assert usage(xml, sr)[1] == before[1] + 2 * GiB + 2 * MiB
    local = sr_named(xml, "Local storage")
    thick = xml("VDI.create", vdi_record("t", local, GiB))
    p0 = int(xml("VDI.get_physical_utilisation", thick))
    before = usage(xml, local)
    assert js.run_async("VDI.resize", thick, 10 * GiB)["status"] == "success"
    assert int(js("VDI.get_physical_utilisation", thick)) == LV_10G
    assert usage(js, local) == (before[0] + LV_10G - p0, before[1] + 9 * GiB)
    assert usage(js, local) == sum_of_vdis(js, local)
    failed = xml.run_async("VDI.resize", thick, 2000 * GiB)
    assert failed["error_info"] == ["SR_BACKEND_FAILURE_44", "", "There is insufficient space", ""]


# ---------------------------------------------------------------- snapshot, clone


def test_snapshot_and_clone(apis: list[Api]) -> None:
    """xapi_vdi.ml snapshot/clone: live on an attached disk; the new VDI copies the
    name, type and other_config; a snapshot has is_a_snapshot and snapshot_of, and
    appears in the original's snapshots."""
    xml, js = apis
    _, _, vdi = disk_of(xml, "web-01")
    src = xml("VDI.get_record", vdi)
    sr = src["SR"]
    snap = xml("VDI.snapshot", vdi, {})
    rec = js("VDI.get_record", snap)
    assert (rec["is_a_snapshot"], rec["snapshot_of"], rec["SR"]) == (True, vdi, sr)
    assert (rec["name_label"], rec["type"]) == (src["name_label"], src["type"])
    assert rec["snapshot_time"] != "19700101T00:00:00Z"
    assert snap in js("VDI.get_snapshots", vdi)
    clone = js("VDI.clone", vdi, {})
    rec = xml("VDI.get_record", clone)
    assert (rec["is_a_snapshot"], rec["snapshot_of"]) == (False, NULL)
    assert int(rec["virtual_size"]) == int(src["virtual_size"])
    assert usage(xml, sr) == sum_of_vdis(xml, sr)
    result = js.run_async("VDI.snapshot", vdi, {})
    assert result["status"] == "success" and result["result"].startswith("<value>OpaqueRef:")


def test_snapshot_and_clone_refusals(apis: list[Api], sim: Simulator) -> None:
    """Xapi_sr_operations / xapi_vdi.ml feature checks: ISO SRs have neither
    VDI_SNAPSHOT nor VDI_CLONE (SR_OPERATION_NOT_SUPPORTED [sr]); a sharable VDI cannot
    be snapshot (VDI_IS_SHARABLE); on_boot=reset forbids snapshot and copy."""
    xml, js = apis
    iso = iso_named(xml, "alpine-virt-3.20.3-x86_64.iso")
    iso_sr = xml("VDI.get_SR", iso)
    shared = xml("VDI.create", vdi_record("s", nfs(xml), GiB))
    sim.store.update(shared, {"sharable": True})
    _, _, halted = disk_of(xml, "ci-runner-03")
    js("VDI.set_on_boot", halted, "reset")
    for api in apis:
        assert api.fails("VDI.snapshot", iso, {}) == ["SR_OPERATION_NOT_SUPPORTED", iso_sr]
        assert api.fails("VDI.clone", iso, {}) == ["SR_OPERATION_NOT_SUPPORTED", iso_sr]
        assert api.fails("VDI.snapshot", shared, {}) == ["VDI_IS_SHARABLE", shared]
        assert api.fails("VDI.snapshot", halted, {}) == [
            "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"]
        assert api.fails("VDI.copy", halted, nfs(api), NULL, NULL) == [
            "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION"]


# ---------------------------------------------------------------- copy


def test_copy_to_another_sr(apis: list[Api]) -> None:
    """xapi_vdi.ml copy: a new read-write VDI on the target SR, metadata copied, usage
    on the target only; an ISO attached read-only can be copied."""
    xml, js = apis
    _, _, vdi = disk_of(xml, "web-staging")
    local = sr_named(xml, "Local storage", 2)
    before = usage(xml, local)
    new = js("VDI.copy", vdi, local, NULL, NULL)
    rec = xml("VDI.get_record", new)
    src = xml("VDI.get_record", vdi)
    assert (rec["SR"], rec["name_label"], rec["read_only"]) == (local, src["name_label"], False)
    assert int(rec["virtual_size"]) == int(src["virtual_size"])
    assert usage(xml, local) == (before[0] + int(rec["physical_utilisation"]),
                                 before[1] + int(rec["virtual_size"]))
    iso = iso_named(js, "debian-12.7.0-amd64-netinst.iso")  # in web-01's drive
    copy = xml("VDI.copy", iso, nfs(xml), NULL, NULL)
    assert js("VDI.get_read_only", copy) is False
    assert usage(js, nfs(js)) == sum_of_vdis(js, nfs(js))


def test_copy_into_existing(apis: list[Api]) -> None:
    """xapi_vdi.ml copy into_vdi: VDI_TOO_SMALL [dst, size], VDI_READONLY [dst];
    VDI_IN_USE [vdi, "copy"] from a disk attached read-write."""
    xml, js = apis
    _, _, src = disk_of(xml, "web-staging")
    size = int(xml("VDI.get_virtual_size", src))
    small = xml("VDI.create", vdi_record("small", nfs(xml), GiB))
    big = xml("VDI.create", vdi_record("big", nfs(xml), size))
    iso = iso_named(xml, "alpine-virt-3.20.3-x86_64.iso")
    _, _, attached = disk_of(xml, "web-01")
    for api in apis:
        assert api.fails("VDI.copy", src, NULL, NULL, small) == [
            "VDI_TOO_SMALL", small, str(size)]
        assert api.fails("VDI.copy", src, NULL, NULL, iso) == ["VDI_READONLY", iso]
        assert api.fails("VDI.copy", attached, nfs(api), NULL, NULL) == [
            "VDI_IN_USE", attached, "copy"]
    assert js("VDI.copy", src, NULL, NULL, big) == big
    assert int(xml("VDI.get_physical_utilisation", big)) >= int(
        xml("VDI.get_physical_utilisation", src))


def test_async_copy_cancelled_leaves_nothing(apis: list[Api], sim: Simulator) -> None:
    """xapi_vdi.ml copy: on failure the VDI it created is destroyed again."""
    xml, js = apis
    _, _, vdi = disk_of(xml, "web-staging")
    local = sr_named(xml, "Local storage", 2)
    before_vdis, before = set(xml("SR.get_VDIs", local)), usage(xml, local)
    sim.op_time = 3.0
    task = js("Async.VDI.copy", vdi, local, NULL, NULL)
    wait_for(lambda: len(xml("SR.get_VDIs", local)) > len(before_vdis))
    wait_for(lambda: float(js("task.get_progress", task)) > 0)
    xml("task.cancel", task)
    rec = js.wait(task)
    assert (rec["status"], rec["error_info"]) == ("cancelled", ["TASK_CANCELLED", task])
    assert set(js("SR.get_VDIs", local)) == before_vdis and usage(js, local) == before
    assert xml("VDI.get_current_operations", vdi) == {}


# ---------------------------------------------------------------- introduce, forget, update


def test_introduce(apis: list[Api]) -> None:
    """xapi_vdi.ml introduce: only drivers with VDI_INTRODUCE (udev here); a taken
    location is LOCATION_NOT_UNIQUE [sr, location]."""
    xml, js = apis
    removable = sr_named(xml, "Removable storage")
    args: list[Any] = ["", "USB stick", "", removable, "user", False, False, {},
                       "/dev/xapi/block/sdb", {}, {}, True, 16 * GiB, 16 * GiB, NULL, False,
                       "19700101T00:00:00Z", NULL]
    vdi = xml("VDI.introduce", *args)
    rec = js("VDI.get_record", vdi)
    assert (rec["name_label"], rec["location"], rec["SR"]) == (
        "USB stick", "/dev/xapi/block/sdb", removable)
    assert int(rec["virtual_size"]) == 16 * GiB
    for api in apis:
        assert api.fails("VDI.introduce", *args) == [
            "LOCATION_NOT_UNIQUE", removable, "/dev/xapi/block/sdb"]
        sr = nfs(api)
        other = list(args)
        other[3] = sr
        assert api.fails("VDI.introduce", *other) == ["SR_OPERATION_NOT_SUPPORTED", sr]


def test_forget_then_scan_finds_it_again(apis: list[Api]) -> None:
    """xapi_vdi.ml forget removes the record only (VDI_IN_USE [vdi, "forget"] while
    attached); db_gc_util.ml gc_VBDs drops disk VBDs and empties CD drives; SR.scan
    finds the disk again under its uuid."""
    xml, js = apis
    _, _, attached = disk_of(xml, "web-01")
    for api in apis:
        assert api.fails("VDI.forget", attached) == ["VDI_IN_USE", attached, "forget"]
    _vm, vbd, vdi = disk_of(xml, "win-build-01")
    uuid, sr = xml("VDI.get_uuid", vdi), xml("VDI.get_SR", vdi)
    before = usage(xml, sr)
    js("VDI.forget", vdi)
    assert xml.fails("VBD.get_record", vbd)[0] == "HANDLE_INVALID"
    assert usage(xml, sr) == sum_of_vdis(xml, sr) != before
    _vm2, cd = cd_of(js, "backup-01")
    iso = js("VBD.get_VDI", cd)
    xml("VDI.forget", iso)
    assert (js("VBD.get_empty", cd), js("VBD.get_VDI", cd)) == (True, NULL)
    xml("SR.scan", sr)
    back = js("VDI.get_by_uuid", uuid)
    assert js("VDI.get_SR", back) == sr and usage(js, sr) == before
    js("SR.scan", js("VDI.get_SR", back))  # nothing more to find
    assert usage(xml, sr) == before


def test_update_and_setters(apis: list[Api]) -> None:
    """xapi_vdi.ml update needs VDI_UPDATE; message_forwarding.ml: set_read_only and
    set_sharable are for SM plugins only (PERMISSION_DENIED [""]); set_on_boot needs
    halted VMs (VM_BAD_POWER_STATE [vm, "halted", actual])."""
    xml, _js = apis
    vm, _, attached = disk_of(xml, "web-01")
    iso = iso_named(xml, "Rocky-9.4-x86_64-minimal.iso")  # in no drive
    for api in apis:
        _, _, vdi = disk_of(api, "web-staging")
        assert api("VDI.update", vdi) in ("", None)
        assert api.fails("VDI.update", iso) == ["SR_OPERATION_NOT_SUPPORTED",
                                                api("VDI.get_SR", iso)]
        assert api.fails("VDI.set_read_only", vdi, True) == ["PERMISSION_DENIED", ""]
        assert api.fails("VDI.set_sharable", vdi, True) == ["PERMISSION_DENIED", ""]
        assert api.fails("VDI.set_on_boot", attached, "reset") == [
            "VM_BAD_POWER_STATE", vm, "halted", "running"]
        api("VDI.set_name_description", vdi, f"via {api}")
        assert api("VDI.get_name_description", vdi) == f"via {api}"
        api("VDI.set_on_boot", vdi, "reset")
        assert api("VDI.get_on_boot", vdi) == "reset"
        api("VDI.set_on_boot", vdi, "persist")


def test_allowed_operations(apis: list[Api]) -> None:
    """xapi_vdi.ml update_allowed_operations: pre-Ely ops minus blocked/force_unlock,
    filtered by check_operation_error and the SR's driver features."""
    for api in apis:
        _, _, running = disk_of(api, "web-01")
        assert sorted(api("VDI.get_allowed_operations", running)) == ["clone", "snapshot"]
        _, _, halted = disk_of(api, "web-staging")
        assert sorted(api("VDI.get_allowed_operations", halted)) == [
            "clone", "copy", "destroy", "forget", "generate_config", "resize", "snapshot",
            "update"]
        iso = iso_named(api, "AlmaLinux-9.4-x86_64-boot.iso")  # in no drive
        assert sorted(api("VDI.get_allowed_operations", iso)) == ["copy", "destroy", "forget"]
        inserted = iso_named(api, "alpine-virt-3.20.3-x86_64.iso")  # k8s-node-01's drive
        assert api("VDI.get_allowed_operations", inserted) == ["copy"]
