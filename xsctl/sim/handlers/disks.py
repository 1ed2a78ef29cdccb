"""Storage primitives shared by the VM and storage behaviour: VDIs with their SR's
accounting kept true (physical_utilisation, virtual_allocation), the SM backends' size
rules and failure codes, and what the simulated storage holds beyond the database.

xapi's SR fields: physical_size is the capacity, physical_utilisation what VDIs really
occupy, virtual_allocation the sum of virtual sizes. In the simulator both usage fields
are always the sum over the SR's VDIs in the database.

Sizes follow the SM drivers (xapi-project/sm): VHD-based SRs round a virtual size up to
2 MiB blocks between 2 MiB and 2040 GiB (``vhdutil.validate_and_round_vhd_size``);
thick LVM allocates a whole LV for it (``lvhdutil.calcSizeVHDLV``: the size, the VHD
metadata pre-allocated for 2 TiB and one 4 KiB bitmap per 2 MiB block, rounded up to
4 MiB extents) and refuses what does not fit with ``SRNoSpace``; thin VHD files start
at their metadata size. ISO images take exactly their file size.

SM failures reach clients the way ``ocaml/xapi/sm_exec.ml`` maps them: fault 16 is
``SR_DEVICE_IN_USE []``, 24 ``VDI_IN_USE []``, 39 ``SR_NOT_EMPTY []``, anything else
``SR_BACKEND_FAILURE_<code> ["", <description [opterr=...]>, <stderr>]`` with the
texts of ``XE_SR_ERRORCODES.xml``.
"""

from __future__ import annotations

from typing import Any

from xsctl.sim.errors import XapiFailure
from xsctl.sim.runtime import Storage, StoredSr
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.wire import NULL_REF

MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
THICK_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba"})
# SR types whose disks are VHDs (LVHDSR, FileSR and their children)
VHD_TYPES = frozenset({"lvm", "lvmoiscsi", "lvmohba", "ext", "nfs", "smb", "file"})
VHD_OVERHEAD = 8 * MiB  # kept for callers of the first version; see vhd_overhead_empty
VHD_BLOCK = 2 * MiB  # vhdutil.VHD_BLOCK_SIZE
MIN_VHD = 2 * MiB  # vhdutil.MIN_VHD_SIZE
MAX_VHD = 2040 * GiB  # vhdutil.MAX_VHD_SIZE
LVM_INCREMENT = 4 * MiB  # lvhdutil.LVM_SIZE_INCREMENT
MSIZE = 2 * TiB  # lvhdutil.MSIZE: metadata pre-allocated for fast resize

# name -> (code, description), from sm's libs/sm/core/XE_SR_ERRORCODES.xml
SM_ERRORS: dict[str, tuple[int, str]] = {
    "SRInUse": (16, "The SR device is currently in use"),
    "InvalidDev": (19, "No such device"),
    "VDIInUse": (24, "The VDI is currently in use"),
    "Unimplemented": (38, "The requested method is not supported/implemented"),
    "SRNotEmpty": (39, "The SR is not empty"),
    "SRExists": (42, "The SR already exists"),
    "VDIExists": (43, "The VDI already exists"),
    "SRNoSpace": (44, "There is insufficient space"),
    "VDIUnavailable": (46, "The VDI is not available"),
    "SRUnavailable": (47, "The SR is not available"),
    "NFSVersion": (72, "Required NFS server version unsupported"),
    "NFSMount": (73, "NFS mount error"),
    "VDISize": (79, "VDI Invalid size"),
    "ConfigDeviceMissing": (90, "The request is missing the device parameter"),
    "ConfigLocationMissing": (94, "The request is missing the location parameter"),
    "ConfigTargetMissing": (95, "The request is missing the target parameter"),
    "ConfigTargetIQNMissing": (
        96, "The request is missing or has an incorrect target IQN parameter"),
    "ConfigISCSIIQNMissing": (
        97, "Unable to retrieve the host configuration ISCSI IQN parameter"),
    "ConfigServerPathMissing": (101, "The request is missing the serverpath parameter"),
    "ConfigServerMissing": (102, "The request is missing the server parameter"),
    "Rootdev": (105, "Root system device, cannot be used for VM storage"),
    "ConfigSCSIid": (107, "The SCSIid parameter is missing or incorrect"),
    "NFSTarget": (108, "Unable to detect an NFS service on this target."),
    "SMBMount": (111, "SMB mount error"),
    "ISCSITarget": (141, "Unable to connect to ISCSI service on target"),
    "ISOMountFailure": (
        222, "Could not mount the directory specified in Device Configuration"),
    "ISOLocationStringError": (
        225, "Incorrect Location string format. String must be in the format "
        "SERVER:PATH for NFS targets, or \\\\SERVER\\PATH for CIFS targets"),
    "ISOLocalPath": (226, "Invalid local path"),
}


def sm_error(key: str, opterr: str | None = None, stderr: str = "", sr: str = "") -> XapiFailure:
    """An SM driver's ``xs_errors.XenError(key, opterr)`` as xapi reports it
    (ocaml/xapi/sm_exec.ml exec_xmlrpc)."""
    code, text = SM_ERRORS[key]
    if opterr is not None:
        text += f" [opterr={opterr}]"
    if code == 16:
        return XapiFailure("SR_DEVICE_IN_USE")
    if code == 24:
        return XapiFailure("VDI_IN_USE")
    if code == 39:
        return XapiFailure("SR_NOT_EMPTY")
    if code == 38:  # Not_implemented_in_backend (storage_smapiv1.ml)
        return XapiFailure("SR_OPERATION_NOT_SUPPORTED", sr)
    return XapiFailure(f"SR_BACKEND_FAILURE_{code}", "", text, stderr)


# ---------------------------------------------------------------- sizes


def _roundup(quantum: int, n: int) -> int:
    return -(-n // quantum) * quantum


def vhd_round(size: int) -> int:
    """vhdutil.validate_and_round_vhd_size: SR_BACKEND_FAILURE_79 out of range."""
    if size < 0 or size > MAX_VHD:
        raise sm_error(
            "VDISize", f"VDI size must be between 1 MB and {MAX_VHD // MiB} MB")
    return _roundup(VHD_BLOCK, max(size, MIN_VHD))


def vhd_overhead_empty(virtual_size: int) -> int:
    """vhdutil.calcOverheadEmpty: footer, header and BAT of an empty VHD."""
    size_mb = virtual_size // MiB
    overhead = _roundup(512, 3 * 1024 + (size_mb // 2) * 4)
    return _roundup(4096, overhead + (size_mb // 2) // 8)


def lv_size_for(virtual_size: int) -> int:
    """lvhdutil.calcSizeVHDLV: the LV a thick-provisioned VHD of this size takes."""
    bitmaps = -(-virtual_size // VHD_BLOCK) * 4096
    return _roundup(LVM_INCREMENT, virtual_size + vhd_overhead_empty(MSIZE) + bitmaps)


def sr_type(store: Store, sr: str) -> str:
    t: str = store.get(sr, "SR")["type"]
    return t


def is_thick(store: Store, sr: str) -> bool:
    row = store.get(sr, "SR")
    return row["type"] in THICK_TYPES and row["sm_config"].get("allocation", "thick") == "thick"


def round_size(store: Store, sr: str, virtual_size: int) -> int:
    """The virtual size the SR's driver really gives a new or resized disk."""
    if sr_type(store, sr) in VHD_TYPES:
        return vhd_round(virtual_size)
    if virtual_size < 0:
        raise sm_error("VDISize", "size must not be negative")
    return virtual_size


def physical_for(store: Store, sr: str, virtual_size: int, fill: float = 0.0) -> int:
    """What a new VDI of ``virtual_size`` occupies on ``sr`` (``fill``: fraction written)."""
    if is_thick(store, sr):
        return lv_size_for(virtual_size)
    written = int(virtual_size * fill)
    if sr_type(store, sr) in VHD_TYPES:
        return written + vhd_overhead_empty(virtual_size) + 512
    return written


def free_space(store: Store, sr: str) -> int:
    row = store.get(sr, "SR")
    return int(row["physical_size"]) - int(row["physical_utilisation"])


def check_space(store: Store, sr: str, needed: int, *, sm: bool = False) -> None:
    """Refuse ``needed`` more bytes that do not fit on ``sr``: SR_FULL [requested,
    maximum] as documented for the VM operations, or with ``sm=True`` the SM driver's
    own failure (LVHDSR._ensureSpaceAvailable: SR_BACKEND_FAILURE_44), which is what
    real storage calls report."""
    row = store.get(sr, "SR")
    if row["content_type"] == "iso" or row["type"] in ("udev", "iso"):
        return
    if int(row["physical_size"]) < 0:  # introduced, not scanned yet
        return
    if needed > free_space(store, sr):
        if sm:
            raise sm_error("SRNoSpace")
        raise XapiFailure("SR_FULL", needed, free_space(store, sr))


def account(store: Store, sr: str, physical: int, virtual: int) -> None:
    """Add (or, with negative numbers, remove) usage on ``sr``."""
    if sr == NULL_REF or not store.exists(sr, "SR"):
        return
    row = store.get(sr, "SR")
    store.update(
        sr,
        {
            "physical_utilisation": max(0, int(row["physical_utilisation"]) + physical),
            "virtual_allocation": max(0, int(row["virtual_allocation"]) + virtual),
        },
    )


def recompute_usage(store: Store, sr: str) -> None:
    """Set the SR's usage to the sum over its VDIs (after scans and forgets)."""
    row = store.get(sr, "SR")
    phys = virt = 0
    for v in row["VDIs"]:
        vrow = store.find(v)
        if vrow is not None:
            phys += int(vrow["physical_utilisation"])
            virt += int(vrow["virtual_size"])
    if (row["physical_utilisation"], row["virtual_allocation"]) != (phys, virt):
        store.update(sr, {"physical_utilisation": phys, "virtual_allocation": virt})


# ---------------------------------------------------------------- VDIs


def new_vdi(
    store: Store, sr: str, name_label: str, virtual_size: int, *, sm: bool = False,
    **fields: Any,
) -> str:
    """A new managed VDI on ``sr`` with usage accounted. ``sm=True``: sizes are rounded
    and checked as the SR's driver does and a full SR fails as the driver fails."""
    fill = float(fields.pop("fill", 0.0))
    if sm:
        virtual_size = round_size(store, sr, virtual_size)
    physical = int(fields.pop("physical_utilisation", physical_for(store, sr, virtual_size, fill)))
    check_space(store, sr, physical, sm=sm)
    typ = sr_type(store, sr)
    rec: dict[str, Any] = {
        "name_label": name_label,
        "name_description": "",
        "SR": sr,
        "virtual_size": virtual_size,
        "physical_utilisation": physical,
        "type": "user",
        "sharable": False,
        "read_only": False,
        "managed": True,
        "location": store.new_uuid(),
        "sm_config": {"vdi_type": "vhd"} if typ in VHD_TYPES else {},
        "other_config": {},
        "on_boot": "persist",
    }
    rec.update(fields)
    if "uuid" not in fields and typ in VHD_TYPES and "location" not in fields:
        # LVHD and FileSR name a disk after its uuid
        rec["uuid"] = rec["location"]
    ref = store.create("VDI", rec)
    account(store, sr, physical, virtual_size)
    return ref


def create_vdi(store: Store, sr: str, name_label: str, virtual_size: int, **fields: Any) -> str:
    """A new managed VDI on ``sr`` with usage accounted; SR_FULL if it does not fit.
    Call with the store lock held."""
    return new_vdi(store, sr, name_label, virtual_size, **fields)


def clone_vdi(store: Store, vdi: str, name_label: str | None = None, **fields: Any) -> str:
    """VDI.clone: a copy-on-write child on the same SR (only new blocks use space)."""
    src = store.get(vdi, "VDI")
    sm = bool(fields.pop("sm", False))
    return _same_contents(store, vdi, new_vdi(
        store, src["SR"], name_label if name_label is not None else src["name_label"],
        int(src["virtual_size"]), sm=sm,
        physical_utilisation=physical_for(store, src["SR"], int(src["virtual_size"]), 0.0),
        name_description=src["name_description"], type=src["type"],
        sharable=src["sharable"], read_only=fields.pop("read_only", False),
        other_config=dict(src["other_config"]), xenstore_data=dict(src["xenstore_data"]),
        sm_config=dict(src["sm_config"]), on_boot=src["on_boot"],
        allow_caching=src["allow_caching"], tags=list(src["tags"]), **fields,
    ))


def copy_contents(store: Store, src: str, dst: str) -> None:
    """``dst`` reads as ``src`` does (vdi_data.py)."""
    row = store.get(src, "VDI")
    store.runtime.storage.contents.copy(src, str(row["uuid"]), dst, int(row["virtual_size"]))


def _same_contents(store: Store, src: str, dst: str) -> str:
    """A clone, snapshot or copy reads as its source did."""
    copy_contents(store, src, dst)
    return dst


def snapshot_vdi(store: Store, vdi: str, **fields: Any) -> str:
    """VDI.snapshot: a point-in-time child marked is_a_snapshot."""
    return clone_vdi(
        store, vdi, is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now_datetime(), **fields
    )


def copy_vdi(store: Store, vdi: str, sr: str, name_label: str | None = None, **fields: Any) -> str:
    """VDI.copy: a full copy onto ``sr`` (uses as much space as the source does)."""
    src = store.get(vdi, "VDI")
    sm = bool(fields.pop("sm", False))
    used = int(src["physical_utilisation"])
    if is_thick(store, sr):
        used = lv_size_for(int(src["virtual_size"]))
    elif is_thick(store, src["SR"]):
        used = int(int(src["virtual_size"]) * 0.5)
    return _same_contents(store, vdi, new_vdi(
        store, sr, name_label if name_label is not None else src["name_label"],
        int(src["virtual_size"]), sm=sm, physical_utilisation=used,
        name_description=src["name_description"], type=src["type"], sharable=src["sharable"],
        other_config=dict(src["other_config"]), xenstore_data=dict(src["xenstore_data"]),
        tags=list(src["tags"]), **fields,
    ))


def destroy_vdi(store: Store, vdi: str) -> None:
    """Remove a VDI and give its space back. The caller checks VDI_IN_USE first."""
    row = store.get(vdi, "VDI")
    store.destroy(vdi)
    store.runtime.storage.contents.drop(vdi)
    account(store, row["SR"], -int(row["physical_utilisation"]), -int(row["virtual_size"]))


def resize_vdi(store: Store, vdi: str, new_size: int) -> None:
    """VDI.resize as the VHD drivers do it: round up, never shrink
    (SR_BACKEND_FAILURE_79 "shrinking not allowed"), thick SRs allocate the growth
    (SR_BACKEND_FAILURE_44 when it does not fit)."""
    row = store.get(vdi, "VDI")
    sr = row["SR"]
    old = int(row["virtual_size"])
    new_size = round_size(store, sr, new_size)
    if new_size < old:
        raise sm_error("VDISize", "shrinking not allowed")
    if is_thick(store, sr):
        grow_phys = lv_size_for(new_size) - int(row["physical_utilisation"])
    else:
        grow_phys = 0
    check_space(store, sr, grow_phys, sm=True)
    store.update(vdi, {"virtual_size": new_size,
                       "physical_utilisation": int(row["physical_utilisation"]) + grow_phys})
    account(store, sr, grow_phys, new_size - old)


def vdi_in_use(store: Store, vdi: str) -> bool:
    """Attached to a running domain through any of its VBDs."""
    for vbd in store.get(vdi, "VDI")["VBDs"]:
        row = store.find(vbd)
        if row is not None and row["currently_attached"]:
            return True
    return False


def default_sr(store: Store) -> str:
    """The pool's default SR, or DEFAULT_SR_NOT_FOUND [sr] when it is unset or gone
    (ocaml/xapi/importexport.ml get_default_sr; used by VM import)."""
    pool = next(iter(store.all("pool").values()))
    sr: str = pool["default_SR"]
    if not store.exists(sr, "SR"):
        raise XapiFailure("DEFAULT_SR_NOT_FOUND", sr)
    return sr


# ---------------------------------------------------------------- what storage holds
#
# The database says which SRs and VDIs xapi knows; storage can hold more: an SR that
# was forgotten is still on its disk or share, a forgotten VDI is still in its SR, and
# the demo NFS server has ISOs nobody has scanned yet. SR.scan, SR.probe and PBD.plug
# after SR.introduce look here.


# ISO shares of the demo NFS server that hold images nobody has scanned yet
DEMO_SHARE_EXTRAS: dict[str, list[tuple[str, int]]] = {
    "10.0.0.5:/export/iso": [("debian-13.2.0-amd64-netinst.iso", 784 * MiB)],
}


def where_of(typ: str, host: str, device_config: dict[str, str]) -> tuple[str, ...]:
    """Where an SR of ``typ`` lives, from a PBD's device_config."""
    dc = device_config
    if typ == "nfs":
        return ("nfs", dc.get("server", ""), dc.get("serverpath", "").rstrip("/"))
    if typ == "smb":
        return ("smb", dc.get("server", ""))
    if typ == "iso":
        return ("iso", dc.get("location", "") + "/" + dc.get("iso_path", "").strip("/"))
    if typ == "lvmoiscsi":
        return ("iscsi", dc.get("target", ""), dc.get("targetIQN", ""), dc.get("SCSIid", ""))
    if typ == "lvmohba":
        return ("hba", dc.get("SCSIid", ""))
    return (typ, host, dc.get("device", dc.get("location", "")))


def world(store: Store) -> Storage:
    """What the simulator's storage holds (its Runtime's)."""
    return store.runtime.storage


def share_files(store: Store, location: str) -> dict[str, dict[str, Any]]:
    """The images an ISO share holds: those the ISO SRs on it know, those they forgot,
    and the demo server's unscanned extras (location -> VDI image)."""
    files: dict[str, dict[str, Any]] = {}
    for name, size in DEMO_SHARE_EXTRAS.get(location, []):
        files[name] = {
            "name_label": name, "virtual_size": size, "physical_utilisation": size,
            "read_only": True, "location": name, "sm_config": {}, "type": "user",
        }
    w = world(store)
    for row in store.all("SR").values():
        if row["type"] != "iso" or not row["PBDs"]:
            continue
        pbd = store.find(row["PBDs"][0])
        if pbd is None or pbd["device_config"].get("location") != location:
            continue
        for v in row["VDIs"]:
            vrow = store.find(v)
            if vrow is not None and not vrow["sm_config"].get("created"):
                files[vrow["location"]] = {
                    k: vrow[k] for k in ("name_label", "virtual_size", "physical_utilisation",
                                         "read_only", "location", "type")
                } | {"sm_config": {}}
        files.update(w.ghost_vdis.get(row["uuid"], {}))
    return files


def stored_sr(store: Store, sr: str) -> StoredSr:
    """The storage side of a database SR (recorded the first time it is needed)."""
    w = world(store)
    row = store.get(sr, "SR")
    s = w.srs.get(row["uuid"])
    if s is None:
        host, dc = NULL_REF, {}
        for pbd in row["PBDs"]:
            prow = store.get(pbd, "PBD")
            host, dc = prow["host"], prow["device_config"]
            break
        s = w.srs[row["uuid"]] = StoredSr(
            uuid=row["uuid"], type=row["type"], where=where_of(row["type"], host, dc),
            name_label=row["name_label"], name_description=row["name_description"],
            content_type=row["content_type"], capacity=max(0, int(row["physical_size"])),
        )
    return s


def vdi_image(store: Store, vdi: str) -> dict[str, Any]:
    """What storage keeps of a VDI, to find it again on a scan."""
    row = store.get(vdi, "VDI")
    keep = ("uuid", "name_label", "name_description", "virtual_size", "physical_utilisation",
            "type", "sharable", "read_only", "location", "sm_config", "is_a_snapshot",
            "snapshot_time", "is_tools_iso")
    image = {k: row[k] for k in keep}
    snap_of = store.find(row["snapshot_of"]) if row["snapshot_of"] != NULL_REF else None
    image["snapshot_of_uuid"] = snap_of["uuid"] if snap_of is not None else ""
    return image


def forget_to_storage(store: Store, vdi: str) -> None:
    """A VDI leaves the database but stays on storage (VDI.forget, SR.forget)."""
    row = store.get(vdi, "VDI")
    sr_uuid = store.get(row["SR"], "SR")["uuid"]
    stored_sr(store, row["SR"])
    world(store).ghost_vdis.setdefault(sr_uuid, {})[row["location"]] = vdi_image(store, vdi)


# ---------------------------------------------------------------- guests writing
#
# A thin-provisioned disk (a VHD file on ext, nfs, smb or file SRs) takes space only
# as its guest writes. Storage knows at once; xapi's records learn it when the SR's
# driver next reads the VHDs: SR.scan and SR.update set each VDI's
# physical_utilisation and the SR's from what is on storage (FileSR.scan,
# FileVDI.load reading the VHD's physical size).

THIN_TYPES = frozenset({"ext", "nfs", "smb", "file"})
FILL_RATE = 64 * 1024  # bytes a running guest writes per second to each of its disks


def fill(store: Store, seconds: float) -> None:
    """``seconds`` of running guests writing to their RW disks on thin SRs, each up
    to its virtual size (plus the VHD's metadata) and no further than its SR's free
    space. Call with the store lock held."""
    w = world(store)
    pending_on: dict[str, int] = {}
    for vdi, n in w.written.items():
        row = store.find(vdi)
        if row is not None:
            pending_on[row["SR"]] = pending_on.get(row["SR"], 0) + n
    for vmrow in store.all("VM").values():
        if vmrow["power_state"] != "Running":
            continue
        for vbd in vmrow["VBDs"]:
            b = store.find(vbd)
            if b is None or not b["currently_attached"] or b["mode"] != "RW" or b["empty"]:
                continue
            row = store.find(b["VDI"])
            if row is None or not store.exists(row["SR"], "SR"):
                continue
            sr = row["SR"]
            if sr_type(store, sr) not in THIN_TYPES:
                continue
            size = int(row["virtual_size"])
            pending = w.written.get(b["VDI"], 0)
            room = size + vhd_overhead_empty(size) - int(row["physical_utilisation"]) - pending
            free = free_space(store, sr) - pending_on.get(sr, 0)
            add = min(room, free, int(FILL_RATE * seconds))
            if add > 0:
                w.written[b["VDI"]] = pending + add
                pending_on[sr] = pending_on.get(sr, 0) + add


def read_written(store: Store, sr: str) -> None:
    """The driver reading its VHDs (SR.scan, SR.update): what guests wrote shows in
    the VDIs' physical_utilisation, then in the SR's."""
    w = world(store)
    for vdi in store.get(sr, "SR")["VDIs"]:
        n = w.written.pop(vdi, 0)
        row = store.find(vdi)
        if n and row is not None:
            store.update(vdi, {"physical_utilisation": int(row["physical_utilisation"]) + n})
    recompute_usage(store, sr)
