"""SR behaviour over real HTTPS, through the official XenAPI client (XML-RPC) and
JSON-RPC. Sources: xapi-project/xen-api ocaml/xapi/xapi_sr.ml (create, introduce,
forget, destroy, scan, probe, set_shared), ocaml/xapi/xapi_sr_operations.ml
(valid_operations), ocaml/xapi/message_forwarding.ml (SR.destroy/forget checks,
forwarding), ocaml/xapi/sm.ml and sm_exec.ml (probe support, SM failure mapping),
ocaml/xapi/storage_access.ml (SR_UNKNOWN_DRIVER); xapi-project/sm
libs/sm/drivers/{LVHDSR,EXTSR,NFSSR,ISOSR,LVHDoISCSISR,SMBSR}.py, libs/sm/BaseISCSI.py,
libs/sm/nfs.py, libs/sm/lvutil.py, libs/sm/core/XE_SR_ERRORCODES.xml."""

from __future__ import annotations

import xml.dom.minidom
from typing import Any

from tests.sim import storage_support as support
from tests.sim.storage_support import (
    Api,
    GiB,
    MiB,
    by_name,
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

TiB = 1024**4
NULL = "OpaqueRef:NULL"
BACKUP = {"server": "10.0.0.5", "serverpath": "/export/backup"}


def hosts(api: Api) -> list[str]:
    return sorted(api("host.get_all"), key=lambda h: api("host.get_address", h))


def master(api: Api) -> str:
    return str(api("pool.get_master", api("pool.get_all")[0]))


def create(api: Api, typ: str, dc: dict[str, str], shared: bool = False,
           host: str | None = None, content_type: str = "user", name: str = "new") -> Any:
    return api("SR.create", host or master(api), dc, 0, name, "", typ, content_type, shared, {})


def xml_of(text: str) -> xml.dom.minidom.Document:
    return xml.dom.minidom.parseString(text)


def texts(doc: xml.dom.minidom.Document, tag: str) -> list[str]:
    return [e.firstChild.data for e in doc.getElementsByTagName(tag)  # type: ignore[union-attr]
            if e.firstChild is not None]


def unplug_all(api: Api, sr: str) -> None:
    for pbd in api("SR.get_PBDs", sr):
        api("PBD.unplug", pbd)


# ---------------------------------------------------------------- create


def test_create_shared_nfs(apis: list[Api]) -> None:
    """xapi_sr.ml create: shared -> a PBD on every host, master first, all plugged;
    the SR is empty and sized by the export."""
    xml, js = apis
    sr = create(xml, "nfs", BACKUP, shared=True, name="Backups")
    rec = js("SR.get_record", sr)
    assert (rec["type"], rec["shared"], rec["content_type"]) == ("nfs", True, "user")
    assert int(rec["physical_size"]) == 8 * TiB and usage(js, sr) == (0, 0)
    pbds = [js("PBD.get_record", p) for p in rec["PBDs"]]
    assert sorted(p["host"] for p in pbds) == sorted(hosts(js))
    assert all(p["currently_attached"] and p["device_config"] == BACKUP for p in pbds)
    assert "vdi_create" in rec["allowed_operations"]
    assert "destroy" not in rec["allowed_operations"]
    vdi = xml("VDI.create", vdi_record("d", sr, GiB))
    assert xml("VDI.get_SR", vdi) == sr


def test_create_local_lvm(apis: list[Api]) -> None:
    """LVHDSR.create on one host's disk: one PBD, thick allocation, the disk's size;
    the same disk again is SR_DEVICE_IN_USE [] (SRInUse, fault 16)."""
    xml, js = apis
    h = hosts(xml)[1]
    sr = create(xml, "lvm", {"device": "/dev/sdb"}, host=h, name="Fast")
    rec = js("SR.get_record", sr)
    assert [js("PBD.get_host", p) for p in rec["PBDs"]] == [h]
    assert rec["sm_config"]["allocation"] == "thick" and rec["shared"] is False
    assert int(rec["physical_size"]) == 2 * TiB - 12 * MiB
    for api in apis:
        assert api.fails("SR.create", h, {"device": "/dev/sdb"}, 0, "again", "", "lvm",
                         "user", False, {}) == ["SR_DEVICE_IN_USE"]
    other = create(js, "ext", {"device": "/dev/sdb"}, host=hosts(js)[2])
    assert js("SR.get_type", other) == "ext"


def test_create_device_config_errors(apis: list[Api], sim: Simulator) -> None:
    """The drivers' load()/create() checks, as SR_BACKEND_FAILURE_<code> ["", text,
    stderr] (sm_exec.ml); nothing is left behind."""
    srs_before = len(apis[0]("SR.get_all"))
    pbds_before = len(apis[0]("PBD.get_all"))
    cases: list[tuple[str, dict[str, str], list[str]]] = [
        ("lvm", {}, ["SR_BACKEND_FAILURE_90", "", "The request is missing the device parameter", ""]),
        ("ext", {}, ["SR_BACKEND_FAILURE_90", "", "The request is missing the device parameter", ""]),
        ("lvm", {"device": "/dev/sdz"}, [
            "SR_BACKEND_FAILURE_19", "", "No such device [opterr=Device /dev/sdz does not exist]", ""]),
        ("lvm", {"device": "/dev/sda"}, [
            "SR_BACKEND_FAILURE_105", "", "Root system device, cannot be used for VM storage "
            "[opterr=Device /dev/sda contains core system files, please use another device]", ""]),
        ("nfs", {"serverpath": "/x"}, [
            "SR_BACKEND_FAILURE_102", "", "The request is missing the server parameter", ""]),
        ("nfs", {"server": "nas.invalid", "serverpath": "/x"}, [
            "SR_BACKEND_FAILURE_108", "", "Unable to detect an NFS service on this target.", ""]),
        ("nfs", {"server": "10.0.0.5", "serverpath": "/nope"}, [
            "SR_BACKEND_FAILURE_73", "", "NFS mount error [opterr=mount failed with return code 32]", ""]),
        ("iso", {}, ["SR_BACKEND_FAILURE_94", "", "The request is missing the location parameter", ""]),
        ("smb", {}, ["SR_BACKEND_FAILURE_102", "", "The request is missing the server parameter", ""]),
        ("smb", {"server": "//203.0.113.9/share"}, [
            "SR_BACKEND_FAILURE_111", "", "SMB mount error [opterr=mount failed with return code 113]", ""]),
        ("lvmoiscsi", {}, ["SR_BACKEND_FAILURE_95", "", "The request is missing the target parameter", ""]),
        ("zfs", {}, ["SR_UNKNOWN_DRIVER", "zfs"]),
        ("nfs", {**BACKUP, "SRmaster": "true"}, [
            "VALUE_NOT_SUPPORTED", "SRmaster", "true", "This key is for internal use only"]),
    ]
    for api in apis:
        for typ, dc, expected in cases:
            assert api.fails("SR.create", master(api), dc, 0, "x", "", typ, "user", True,
                             {}) == expected, (typ, dc)
        err = api.fails("SR.create", master(api), {"server": "10.0.0.5"}, 0, "x", "", "nfs",
                        "user", True, {})
        assert err[:3] == ["SR_BACKEND_FAILURE_101", "", "The request is missing the serverpath parameter"]
        exports = xml_of(err[3])
        assert texts(exports, "Path") == ["/export/xen", "/export/iso", "/export/backup"]
        iso_bad = {"location": "isos", "type": "nfs_iso"}
        assert api.fails("SR.create", master(api), iso_bad, 0, "x", "", "iso", "iso", True,
                         {})[0] == "SR_BACKEND_FAILURE_225"
        assert api.fails("SR.create", "OpaqueRef:nohost", {"device": "/dev/sdb"}, 0, "x", "",
                         "lvm", "user", False, {}) == ["HANDLE_INVALID", "host",
                                                       "OpaqueRef:nohost"]
    assert len(apis[1]("SR.get_all")) == srs_before
    assert len(apis[1]("PBD.get_all")) == pbds_before


def test_create_iscsi_walks_the_probe_answers(apis: list[Api]) -> None:
    """BaseISCSI.load / LVHDoISCSISR.create_iscsi_sessions: without targetIQN the IQNs
    are printed (SR_BACKEND_FAILURE_96), without SCSIid the LUNs (_107); a wrong IQN is
    a login failure (_68); with all of them the SR is made on the LUN."""
    xml, js = apis
    dc = {"target": "10.0.0.6"}
    err = xml.fails("SR.create", master(xml), dc, 0, "x", "", "lvmoiscsi", "user", True, {})
    assert err[:3] == ["SR_BACKEND_FAILURE_96", "",
                       "The request is missing or has an incorrect target IQN parameter"]
    iqn = next(i for i in texts(xml_of(err[3]), "TargetIQN") if i != "*")
    dc["targetIQN"] = "iqn.wrong"
    assert js.fails("SR.create", master(js), dc, 0, "x", "", "lvmoiscsi", "user", True,
                    {})[0] == "SR_BACKEND_FAILURE_68"
    dc["targetIQN"] = iqn
    err = js.fails("SR.create", master(js), dc, 0, "x", "", "lvmoiscsi", "user", True, {})
    assert err[:3] == ["SR_BACKEND_FAILURE_107", "", "The SCSIid parameter is missing or incorrect"]
    luns = xml_of(err[3])
    scsi = texts(luns, "SCSIid")[1]
    size = int(texts(luns, "size")[1])
    dc["SCSIid"] = scsi
    sr = create(xml, "lvmoiscsi", dc, shared=True, name="SAN")
    assert int(js("SR.get_physical_size", sr)) == size - 12 * MiB
    assert len(js("SR.get_PBDs", sr)) == 3
    probe = xml_of(xml("SR.probe", master(xml), dc, "lvmoiscsi", {}))
    assert texts(probe, "UUID") == [js("SR.get_uuid", sr)]


def test_create_hba_from_the_devlist(apis: list[Api]) -> None:
    """LVHDoHBASR.load without a SCSIid prints devscan's Devlist (a BlockDevice per
    LUN no SR uses, then the adapter with its fc_host parameters) in
    SR_BACKEND_FAILURE_107; a LUN an SR uses is refused (SR_DEVICE_IN_USE) and no
    longer listed; a probe with the SCSIid finds the SR on it."""
    xml, js = apis
    err = xml.fails("SR.probe", master(xml), {}, "lvmohba", {})
    assert err[:3] == ["SR_BACKEND_FAILURE_107", "", "The SCSIid parameter is missing or incorrect"]
    doc = xml_of(err[3])
    assert doc.documentElement.tagName == "Devlist"
    assert texts(doc, "path") == ["/dev/sdd", "/dev/sde"]
    assert texts(doc, "name") == ["qla2xxx"] and texts(doc, "port_state") == ["Online"]
    scsi = texts(doc, "SCSIid")[0]
    assert js.fails("SR.create", master(js), {"SCSIid": "nope"}, 0, "x", "", "lvmohba",
                    "user", True, {})[0] == "SR_BACKEND_FAILURE_107"
    sr = create(js, "lvmohba", {"SCSIid": scsi}, shared=True, name="FC")
    assert int(xml("SR.get_physical_size", sr)) == int(texts(doc, "size")[0]) - 12 * MiB
    assert xml.fails("SR.create", master(xml), {"SCSIid": scsi}, 0, "y", "", "lvmohba",
                     "user", True, {}) == ["SR_DEVICE_IN_USE"]
    left = xml_of(js.fails("SR.probe", master(js), {}, "lvmohba", {})[3])
    assert texts(left, "path") == ["/dev/sde"]
    found = xml_of(xml("SR.probe", master(xml), {"SCSIid": scsi}, "lvmohba", {}))
    assert texts(found, "UUID") == [js("SR.get_uuid", sr)]


def test_create_iso_and_smb(apis: list[Api]) -> None:
    """ISOSR.create: an ISO SR on the demo share sees every image there at once (the
    first plug scans); SMBSR.create on a reachable server."""
    xml, js = apis
    iso = create(xml, "iso", {"location": "10.0.0.5:/export/iso", "type": "nfs_iso"},
                 shared=True, content_type="iso", name="More ISOs")
    assert js("SR.get_sm_config", iso) == {"iso_type": "nfs_iso"}
    names = sorted(js("VDI.get_name_label", v) for v in js("SR.get_VDIs", iso))
    assert "debian-13.2.0-amd64-netinst.iso" in names and len(names) == 11
    assert usage(js, iso) == sum_of_vdis(js, iso)
    cifs = create(js, "iso", {"location": "//fileserver/isos", "type": "cifs"},
                  shared=True, content_type="iso")
    assert xml("SR.get_VDIs", cifs) == []
    smb = create(xml, "smb", {"server": "//fileserver/vms", "username": "u", "password": "p"},
                 shared=True)
    assert int(js("SR.get_physical_size", smb)) == 2 * TiB


def test_async_create(apis: list[Api]) -> None:
    """Async.SR.create: a task with the new SR's ref; a failure lands in error_info."""
    for i, api in enumerate(apis):
        dc = {"server": "nas.example.com", "serverpath": f"/srv/{i}"}
        rec = api.run_async("SR.create", master(api), dc, 0, "async", "", "nfs", "user",
                            True, {})
        ref = rec["result"].removeprefix("<value>").removesuffix("</value>")
        assert api("SR.get_name_label", ref) == "async"
        rec = api.run_async("SR.create", master(api), {}, 0, "x", "", "nfs", "user", True, {})
        assert rec["status"] == "failure" and rec["error_info"][0] == "SR_BACKEND_FAILURE_102"


# ---------------------------------------------------------------- probe


def test_probe(apis: list[Api]) -> None:
    """xapi_sr.ml probe returns the driver's XML: NFSSR lists SR uuids under the path,
    LVHDSR the VGs on the device (lvutil.srlist_toxml); drivers without SR_PROBE are
    SR_BACKEND_FAILURE (sm.ml sr_probe); probe_ext refuses SMAPIv1 answers."""
    for api in apis:
        nfs = sr_named(api, "NFS storage")
        doc = xml_of(api("SR.probe", master(api), {"server": "10.0.0.5",
                                                  "serverpath": "/export/xen"}, "nfs", {}))
        assert doc.documentElement.tagName == "SRlist"
        assert texts(doc, "UUID") == [api("SR.get_uuid", nfs)]
        empty = xml_of(api("SR.probe", master(api), BACKUP, "nfs", {}))
        assert texts(empty, "UUID") == []
        local = sr_named(api, "Local storage", 0)
        dev = api("PBD.get_device_config", api("SR.get_PBDs", local)[0])["device"]
        doc = xml_of(api("SR.probe", api("PBD.get_host", api("SR.get_PBDs", local)[0]),
                         {"device": dev}, "lvm", {}))
        assert texts(doc, "UUID") == [api("SR.get_uuid", local)]
        assert texts(doc, "Devlist") == [dev]
        assert api.fails("SR.probe", master(api), {"location": "x:/y"}, "iso", {}) == [
            "SR_BACKEND_FAILURE", "Operation 'sr_probe' not supported by this SR type", "", ""]
        assert api.fails("SR.probe", master(api), {}, "lvm", {})[0] == "SR_BACKEND_FAILURE_90"
        assert api.fails("SR.probe", master(api), {}, "btrfs", {}) == [
            "SR_UNKNOWN_DRIVER", "btrfs"]
        assert api.fails("SR.probe_ext", master(api), BACKUP, "nfs", {}) == [
            "SR_OPERATION_NOT_SUPPORTED"]
        assert api.fails("SR.probe", "OpaqueRef:x", BACKUP, "nfs", {}) == [
            "HANDLE_INVALID", "host", "OpaqueRef:x"]
        rec = api.run_async("SR.probe", master(api), BACKUP, "nfs", {})
        assert rec["status"] == "success" and "SRlist" in rec["result"]


# ---------------------------------------------------------------- scan, update


def test_scan_finds_new_iso(apis: list[Api]) -> None:
    """ISOSR scan (SR.ScanRecord): an image on the share without a record gets one;
    usage stays the sum of the VDIs."""
    xml, js = apis
    sr = sr_named(xml, "ISO library")
    assert len(xml("SR.get_VDIs", sr)) == 10
    assert xml.run_async("SR.scan", sr)["status"] == "success"
    new = js("VDI.get_by_name_label", "debian-13.2.0-amd64-netinst.iso")
    assert len(new) == 1
    rec = js("VDI.get_record", new[0])
    assert (rec["SR"], rec["read_only"], int(rec["virtual_size"])) == (sr, True, 784 * MiB)
    assert usage(js, sr) == sum_of_vdis(js, sr)
    js("SR.scan", sr)
    assert len(xml("SR.get_VDIs", sr)) == 11


def test_update_names_and_shared(apis: list[Api]) -> None:
    """xapi_sr.ml set_shared: unsharing with several PBDs is SR_HAS_MULTIPLE_PBDS [pbds];
    set_name_* and update are forwarded to a plugged PBD; set_physical_size is for SM
    plugins (PERMISSION_DENIED); SR.make is deprecated."""
    xml, js = apis
    nfs = sr_named(xml, "NFS storage")
    for api in apis:
        err = api.fails("SR.set_shared", nfs, False)
        assert err[0] == "SR_HAS_MULTIPLE_PBDS"
        assert sorted(err[1:]) == sorted(api("SR.get_PBDs", nfs))
        api("SR.set_name_label", nfs, f"NFS ({api})")
        assert api("SR.get_name_label", nfs) == f"NFS ({api})"
        api("SR.set_name_description", nfs, "d")
        assert api("SR.update", nfs) in ("", None)
        assert api.fails("SR.set_physical_size", nfs, "1") == ["PERMISSION_DENIED", ""]
        assert api.fails("SR.make", master(api), {}, "0", "", "", "nfs", "user", {}) == [
            "MESSAGE_DEPRECATED"]
        assert set(api("SR.get_supported_types")) >= {"lvm", "ext", "nfs", "iso", "lvmoiscsi",
                                                      "smb", "udev"}
    local = sr_named(xml, "Local storage", 0)
    js("SR.set_shared", local, True)
    assert xml("SR.get_shared", local) is True
    xml("SR.set_shared", local, False)


def test_sr_usage_is_the_sum_of_its_vdis(apis: list[Api]) -> None:
    """Every SR's physical_utilisation and virtual_allocation is its VDIs' sum."""
    xml, js = apis
    for sr in xml("SR.get_all"):
        assert usage(xml, sr) == sum_of_vdis(xml, sr), xml("SR.get_name_label", sr)
    nfs = sr_named(js, "NFS storage")
    a = js("VDI.create", vdi_record("a", nfs, 5 * GiB))
    xml("VDI.snapshot", a, {})
    js("VDI.resize", a, 7 * GiB)
    xml("VDI.copy", a, sr_named(xml, "Local storage", 2), NULL, NULL)
    xml("VDI.destroy", a)
    for sr in js("SR.get_all"):
        assert usage(js, sr) == sum_of_vdis(js, sr)


# ---------------------------------------------------------------- forget, destroy, introduce


def test_forget_and_destroy_need_unplugged_pbds(apis: list[Api]) -> None:
    """message_forwarding.ml SR.forget/destroy: SR_HAS_PBD [sr] while a PBD is
    attached; Xapi_sr_operations: SR_NOT_EMPTY [] with managed VDIs in it."""
    xml, js = apis
    nfs = sr_named(xml, "NFS storage")
    isos = sr_named(xml, "ISO library")
    for api in apis:
        assert api.fails("SR.forget", nfs) == ["SR_HAS_PBD", nfs]
        assert api.fails("SR.destroy", nfs) == ["SR_HAS_PBD", nfs]
    for pbd in xml("SR.get_PBDs", isos):
        for vdi in xml("SR.get_VDIs", isos):
            for vbd in xml("VDI.get_VBDs", vdi):
                if xml("VBD.get_currently_attached", vbd):
                    xml("VBD.eject", vbd)
        js("PBD.unplug", pbd)
    ops = xml("SR.get_allowed_operations", isos)
    assert "forget" in ops and "destroy" not in ops
    for api in apis:
        assert api.fails("SR.destroy", isos) == ["SR_NOT_EMPTY"]


def test_destroy_an_empty_sr(apis: list[Api]) -> None:
    """xapi_sr.ml destroy/really_forget: the SR, its PBDs and unmanaged VDIs go."""
    xml, js = apis
    sr = create(xml, "nfs", BACKUP, shared=True)
    pbds = xml("SR.get_PBDs", sr)
    unplug_all(js, sr)
    assert "destroy" in js("SR.get_allowed_operations", sr)
    assert xml.run_async("SR.destroy", sr)["status"] == "success"
    assert js.fails("SR.get_record", sr) == ["HANDLE_INVALID", "SR", sr]
    for p in pbds:
        assert xml.fails("PBD.get_record", p)[0] == "HANDLE_INVALID"
    assert texts(xml_of(js("SR.probe", master(js), BACKUP, "nfs", {})), "UUID") == []


def test_destroy_refusals(apis: list[Api]) -> None:
    """SR_HAS_NO_PBDS [sr] without PBDs, SR_INDESTRUCTIBLE [sr]
    (xapi_sr.ml assert_sr_not_indestructible), SR_NOT_EMPTY from the driver while
    forgotten disks remain (FileSR.delete)."""
    xml, js = apis
    intro = xml("SR.introduce", "", "bare", "", "nfs", "user", True, {})
    for api in apis:
        assert api.fails("SR.destroy", intro) == ["SR_HAS_NO_PBDS", intro]
    sr = create(js, "nfs", BACKUP, shared=True)
    vdi = js("VDI.create", vdi_record("d", sr, GiB))
    xml("VDI.forget", vdi)
    unplug_all(xml, sr)
    assert js.fails("SR.destroy", sr) == ["SR_NOT_EMPTY"]
    xml("SR.add_to_other_config", sr, "indestructible", "true")
    assert js.fails("SR.destroy", sr) == ["SR_INDESTRUCTIBLE", sr]


def test_forget_introduce_and_reattach(apis: list[Api]) -> None:
    """xapi_sr.ml forget keeps the SR on storage; introduce makes a bare record
    (sizes -1, SR_UUID_EXISTS for a known uuid); PBD.create + PBD.plug reattach it and
    the first plug's scan brings its disks back with their uuids."""
    xml, js = apis
    sr = create(xml, "nfs", BACKUP, shared=True, name="Backups")
    a = xml("VDI.create", vdi_record("alpha", sr, 3 * GiB))
    snap = js("VDI.snapshot", a, {})
    uuids = {xml("VDI.get_uuid", v): xml("VDI.get_name_label", v) for v in (a, snap)}
    uuid = xml("SR.get_uuid", sr)
    unplug_all(js, sr)
    js("SR.forget", sr)
    assert xml.fails("SR.get_record", sr) == ["HANDLE_INVALID", "SR", sr]
    assert xml.fails("VDI.get_record", a)[0] == "HANDLE_INVALID"
    assert texts(xml_of(xml("SR.probe", master(xml), BACKUP, "nfs", {})), "UUID") == [uuid]
    new = js("SR.introduce", uuid, "Backups", "", "NFS", "user", True, {})
    rec = xml("SR.get_record", new)
    assert (rec["type"], int(rec["physical_size"]), int(rec["physical_utilisation"])) == (
        "nfs", -1, -1)
    assert xml.fails("SR.introduce", uuid, "x", "", "nfs", "user", True, {}) == [
        "SR_UUID_EXISTS", uuid]
    for h in hosts(js):
        pbd = js("PBD.create", {"host": h, "SR": new, "device_config": BACKUP})
        xml("PBD.plug", pbd)
    found = {js("VDI.get_uuid", v): js("VDI.get_name_label", v) for v in js("SR.get_VDIs", new)}
    assert found == uuids
    back = js("VDI.get_by_uuid", next(u for u, n in uuids.items() if n == "alpha"))
    snap_back = next(v for v in js("SR.get_VDIs", new) if v != back)
    assert js("VDI.get_snapshot_of", snap_back) == back
    assert int(xml("SR.get_physical_size", new)) == 8 * TiB
    assert usage(xml, new) == sum_of_vdis(xml, new)


def test_introduce_unknown_sr_cannot_be_plugged(apis: list[Api]) -> None:
    """NFSSR.attach: a uuid that is not on the export fails to mount
    (SR_BACKEND_FAILURE_73); a PBD without the server is _102; an SR type no driver
    has is SR_UNKNOWN_DRIVER (storage_access.ml bind)."""
    _xml, _js = apis
    for i, api in enumerate(apis):
        sr = api("SR.introduce", f"1234567{i}-0000-4000-8000-000000000000", "ghost", "", "nfs",
                 "user", True, {})
        pbd = api("PBD.create", {"host": master(api), "SR": sr, "device_config": BACKUP})
        err = api.fails("PBD.plug", pbd)
        assert err[0] == "SR_BACKEND_FAILURE_73" and err[1] == ""
        bare = api("PBD.create", {"host": hosts(api)[1], "SR": sr, "device_config": {}})
        assert api.fails("PBD.plug", bare)[:3] == [
            "SR_BACKEND_FAILURE_102", "", "The request is missing the server parameter"]
        odd = api("SR.introduce", "", "odd", "", "zfs", "user", False, {})
        opbd = api("PBD.create", {"host": master(api), "SR": odd, "device_config": {}})
        assert api.fails("PBD.plug", opbd) == ["SR_UNKNOWN_DRIVER", "zfs"]
        assert api("PBD.get_currently_attached", opbd) is False


def test_allowed_operations_follow_the_driver(apis: list[Api]) -> None:
    """Xapi_sr_operations.valid_operations: SM features gate vdi_* ops (the tools SR
    loses vdi_create/vdi_destroy), attached PBDs forbid destroy and forget."""
    for api in apis:
        nfs = set(api("SR.get_allowed_operations", sr_named(api, "NFS storage")))
        assert {"vdi_create", "vdi_destroy", "vdi_snapshot", "vdi_resize", "scan",
                "pbd_create", "unplug"} <= nfs
        assert not nfs & {"destroy", "forget", "vdi_introduce"}
        iso = set(api("SR.get_allowed_operations", sr_named(api, "ISO library")))
        assert {"vdi_create", "vdi_destroy"} <= iso and not iso & {"vdi_snapshot", "vdi_resize"}
        tools = set(api("SR.get_allowed_operations", sr_named(api, "XCP-ng Tools")))
        assert not tools & {"vdi_create", "vdi_destroy"}
        udev = set(api("SR.get_allowed_operations", sr_named(api, "Removable storage")))
        assert "vdi_introduce" in udev and "vdi_create" not in udev


def test_default_sr_not_found_on_import(apis: list[Api], sim: Simulator) -> None:
    """importexport.ml get_default_sr: an import without an SR when pool.default_SR is
    unset fails with DEFAULT_SR_NOT_FOUND [ref]; disks.default_sr is the same rule for
    the simulator's other users."""
    import http.client
    import ssl

    from xsctl.sim.handlers import disks

    xml, js = apis
    pool = xml("pool.get_all")[0]
    assert disks.default_sr(sim.store) == sr_named(xml, "NFS storage")
    js("pool.set_default_SR", pool, NULL)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=10)
    conn.request("PUT", f"/import?session_id={js.client.session}", body=b"",
                 headers={"Content-Length": "0"})
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
    conn.close()
    assert resp.status == 500 and "DEFAULT_SR_NOT_FOUND" in body
    try:
        disks.default_sr(sim.store)
    except Exception as e:  # an XapiFailure
        assert getattr(e, "code", "") == "DEFAULT_SR_NOT_FOUND"
        assert getattr(e, "params", []) == [NULL]
    else:
        raise AssertionError("default_sr found an SR")


def test_running_vms_see_their_disks_srs(apis: list[Api]) -> None:
    """Xapi_vm_helpers.assert_can_see_SRs: a running VM's disks are on SRs plugged on
    its host; PBD.unplug there would be refused (xapi_pbd.ml unplug, VDI_IN_USE)."""
    for api in apis:
        vm, _, vdi = disk_of(api, "web-01")
        sr = api("VDI.get_SR", vdi)
        host = api("VM.get_resident_on", vm)
        pbd = next(p for p in api("SR.get_PBDs", sr) if api("PBD.get_host", p) == host)
        assert api("PBD.get_currently_attached", pbd) is True
        err = api.fails("PBD.unplug", pbd)
        assert err[0] == "VDI_IN_USE" and vdi in err[1:]
        assert by_name(api, "VM", "web-01") == vm
