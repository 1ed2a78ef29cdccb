"""The SM drivers (xapi-project/sm ``libs/sm/drivers``: LVHDSR, EXTSR, NFSSR, ISOSR,
LVHDoISCSISR, SMBSR, udevSR): the device_config keys each needs, what each finds on
the storage it names, its probe output and its size rules; and how xapi reports
their failures (sm_exec.ml, via disks.sm_error).

The simulated storage world: NFS server ``10.0.0.5`` exports ``/export/xen``,
``/export/iso`` and ``/export/backup``; any other server answers with one export,
``/export``; servers named ``*.invalid`` or in 203.0.113.0/24 (TEST-NET-3) do not
answer. Every host has local disks ``/dev/sda`` (the system disk), ``/dev/sdb``,
``/dev/sdc`` and ``/dev/nvme0n1``. Every reachable iSCSI target offers the IQN
``iqn.2024-09.com.example:storage`` with two LUNs (the demo's SAN is ``10.0.0.7``;
``10.0.0.6`` is the NFS server of its Archive SR).
Every host sees the same two Fibre Channel LUNs through one HBA (``host1``, qla2xxx).
"""

from __future__ import annotations

import ipaddress
import xml.dom.minidom
from collections.abc import Callable
from hashlib import sha1
from typing import Any

from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks
from xsctl.sim.handlers.disks import GiB, MiB, TiB, sm_error
from xsctl.sim.store import Store


def _host_of(server: str) -> str:
    """The host part of "nas", "nas:/path", "//nas/share" or "\\\\nas\\share"."""
    s = server.replace("\\", "/").lstrip("/").split(",")[0]
    s = s.split("/")[0]
    if s.startswith("["):
        return s[1:].split("]")[0]
    return s.split(":")[0] if s.count(":") == 1 else s


def reachable(server: str) -> bool:
    host = _host_of(server)
    if host.endswith(".invalid") or not host:
        return False
    try:
        return ipaddress.ip_address(host) not in ipaddress.ip_network("203.0.113.0/24")
    except ValueError:
        return True


NFS_EXPORTS = {"10.0.0.5": {"/export/xen": 4 * TiB, "/export/iso": 500 * GiB,
                            "/export/backup": 8 * TiB}}
ISCSI_IQN = "iqn.2024-09.com.example:storage"
HOST_DISKS = {"/dev/sda": 1 * TiB, "/dev/sdb": 2 * TiB, "/dev/sdc": 4 * TiB,
              "/dev/nvme0n1": 1 * TiB}
# the Fibre Channel LUNs every host sees: (SCSIid, path, vendor, serial, size, LUN id)
HBA_LUNS = [
    ("360a98000534b4f50476f2f4a4b6c3730", "/dev/sdd", "NETAPP", "SKOPGo/JKlc0", 1 * TiB, 0),
    ("360a98000534b4f50476f2f4a4b6c3731", "/dev/sde", "NETAPP", "SKOPGo/JKlc1", 4 * TiB, 1),
]
HBA_ADAPTER = {"host": "host1", "name": "qla2xxx",
               "manufacturer": "QLogic Fibre Channel HBA Driver", "id": "1"}
HBA_FC_HOST = {"node_name": "0x20000024ff3a1b2c", "port_name": "0x21000024ff3a1b2c",
               "port_state": "Online", "speed": "8 Gbit",
               "supported_speeds": "2 Gbit, 4 Gbit, 8 Gbit"}
SMB_CAPACITY = 2 * TiB
ISO_CAPACITY = 500 * GiB


def _exports(server: str) -> dict[str, int]:
    return NFS_EXPORTS.get(server, {"/export": 2 * TiB})


def _luns(target: str) -> list[tuple[int, str, int]]:
    """(LUN id, SCSIid, size) offered by an iSCSI target."""
    out = []
    for lun, size in ((0, 1 * TiB), (1, 2 * TiB)):
        digest = sha1(f"{target}/{lun}".encode()).hexdigest()[:24]
        out.append((lun, "36001405" + digest, size))
    return out


def _pretty(root: str, build: Callable[[xml.dom.minidom.Document, Any], None]) -> str:
    """minidom's toprettyxml, as the SM drivers print their XML."""
    dom = xml.dom.minidom.Document()
    element = dom.createElement(root)
    dom.appendChild(element)
    build(dom, element)
    return dom.toprettyxml()


def _add(dom: xml.dom.minidom.Document, parent: Any, name: str, text: str) -> None:
    e = dom.createElement(name)
    parent.appendChild(e)
    e.appendChild(dom.createTextNode(text))


def srlist(entries: list[tuple[str, dict[str, str]]]) -> str:
    def build(dom: xml.dom.minidom.Document, el: Any) -> None:
        for uuid, extra in entries:
            sr = dom.createElement("SR")
            el.appendChild(sr)
            _add(dom, sr, "UUID", uuid)
            for k, v in extra.items():
                _add(dom, sr, k, v)

    return _pretty("SRlist", build)


def _host_disks(store: Store, host: str) -> dict[str, int]:
    disks_ = dict(HOST_DISKS)
    hrow = store.find(host)
    if hrow is not None:
        for pbd in hrow["PBDs"]:
            dev = store.get(pbd, "PBD")["device_config"].get("device")
            if dev:
                for d in dev.split(","):
                    disks_.setdefault(d, 1 * TiB)
    return disks_


def scsi_ids_in_use(store: Store, exclude_sr: str = "") -> set[str]:
    """util.test_SCSIid: LUNs named by a PBD of another SR of the pool."""
    return {str(p["device_config"]["SCSIid"]) for p in store.all("PBD").values()
            if p["SR"] != exclude_sr and p["device_config"].get("SCSIid")}


def hba_devlist(store: Store) -> str:
    """devscan.scan as LVHDoHBASR.load prints it without a SCSIid: a BlockDevice per
    LUN no SR of the pool uses, then the adapters with their fc_host parameters."""
    used = scsi_ids_in_use(store)

    def build(dom: xml.dom.minidom.Document, el: Any) -> None:
        for scsi, path, vendor, serial, size, lun in HBA_LUNS:
            if scsi in used:
                continue
            d = dom.createElement("BlockDevice")
            el.appendChild(d)
            for k, v in (("path", path), ("numpaths", "1"), ("SCSIid", scsi),
                         ("vendor", vendor), ("serial", serial), ("size", str(size)),
                         ("adapter", HBA_ADAPTER["id"]), ("channel", "0"), ("id", "0"),
                         ("lun", str(lun)), ("hba", HBA_ADAPTER["name"])):
                _add(dom, d, k, v)
        a = dom.createElement("Adapter")
        el.appendChild(a)
        for k in ("host", "name", "manufacturer", "id"):
            _add(dom, a, k, HBA_ADAPTER[k])
        fc = dom.createElement("fc_host")
        a.appendChild(fc)
        for k, v in HBA_FC_HOST.items():
            _add(dom, fc, k, v)

    return _pretty("Devlist", build)


def _devices_in_use(store: Store, host: str, exclude_sr: str = "") -> set[str]:
    """util.test_hostPBD_devs: devices named by other SRs' PBDs on this host."""
    out: set[str] = set()
    hrow = store.find(host)
    if hrow is None:
        return out
    for pbd in hrow["PBDs"]:
        prow = store.get(pbd, "PBD")
        if prow["SR"] != exclude_sr and "device" in prow["device_config"]:
            out.update(prow["device_config"]["device"].split(","))
    return out


class Driver:
    """What the SM driver of an SR type checks and answers (the SMAPIv1 plugins)."""

    def __init__(self, store: Store, typ: str, host: str, dc: dict[str, str]) -> None:
        self.store, self.typ, self.host, self.dc = store, typ, host, dc

    # --- load(): the device_config keys every command needs

    def load(self) -> None:
        dc, t = self.dc, self.typ
        if t in ("lvm", "ext") and "device" not in dc:
            raise sm_error("ConfigDeviceMissing")
        if t in ("nfs", "smb") and "server" not in dc:
            raise sm_error("ConfigServerMissing")
        if t in ("iso", "file", "udev") and "location" not in dc:
            raise sm_error("ConfigLocationMissing")
        if t == "iso" and "legacy_mode" not in dc:
            self._iso_location()
        if t == "lvmoiscsi":
            self._iscsi_load()
        if t == "lvmohba":
            if not dc.get("SCSIid"):
                raise sm_error("ConfigSCSIid", stderr=hba_devlist(self.store))
            if dc["SCSIid"] not in {lun[0] for lun in HBA_LUNS}:
                raise sm_error("ConfigSCSIid")

    def _iso_location(self) -> None:
        loc, kind = self.dc["location"], self.dc.get("type")
        if kind is None:
            return
        if kind == "cifs":
            ok = loc.startswith("//") or loc.startswith("\\")
            if not ok or not loc.replace("\\", "/").strip("/"):
                raise sm_error("ISOLocationStringError")
        elif ":" not in loc:
            raise sm_error("ISOLocationStringError")

    def _iscsi_load(self) -> None:
        dc = self.dc
        if not dc.get("target"):
            raise sm_error("ConfigTargetMissing")
        hrow = self.store.find(self.host)
        iqn = dc.get("localIQN") or (hrow["other_config"].get("iscsi_iqn") if hrow else None)
        if not iqn:
            raise sm_error("ConfigISCSIIQNMissing")
        target = dc["target"].split(",")[0]
        if not dc.get("targetIQN"):
            if not reachable(target):
                raise sm_error("ISCSITarget")

            def build(dom: xml.dom.minidom.Document, el: Any) -> None:
                for i, (addr, q) in enumerate(((target, ISCSI_IQN), (target, "*"))):
                    tgt = dom.createElement("TGT")
                    el.appendChild(tgt)
                    _add(dom, tgt, "Index", str(i))
                    _add(dom, tgt, "IPAddress", addr)
                    _add(dom, tgt, "TargetIQN", q)

            raise sm_error("ConfigTargetIQNMissing", stderr=_pretty("iscsi-target-iqns", build))
        if not reachable(target):
            raise sm_error("ISCSITarget")
        if dc["targetIQN"] not in (ISCSI_IQN, "*"):
            raise XapiFailure(
                "SR_BACKEND_FAILURE_68", "",
                "ISCSI login failed - check access settings for the initiator on the "
                "storage, if CHAP is used verify CHAP credentials", "")
        if "SCSIid" not in dc:
            def build(dom: xml.dom.minidom.Document, el: Any) -> None:
                for lun, scsi, size in _luns(target):
                    e = dom.createElement("LUN")
                    el.appendChild(e)
                    _add(dom, e, "vendor", "LIO-ORG")
                    _add(dom, e, "serial", scsi[-12:])
                    _add(dom, e, "LUNid", str(lun))
                    _add(dom, e, "size", str(size))
                    _add(dom, e, "SCSIid", scsi)

            raise sm_error("ConfigSCSIid", stderr=_pretty("iscsi-target", build))
        if dc["SCSIid"] not in {s for _, s, _ in _luns(target)}:
            raise sm_error("ConfigSCSIid")

    # --- reachability and capacity

    def _nfs_target(self, scan: bool) -> tuple[str, str]:
        server = self.dc["server"]
        if not reachable(server):
            raise sm_error("NFSTarget")
        if "serverpath" not in self.dc:
            stderr = ""
            if scan:
                def build(dom: xml.dom.minidom.Document, el: Any) -> None:
                    for path in _exports(server):
                        e = dom.createElement("Export")
                        el.appendChild(e)
                        _add(dom, e, "Target", server)
                        _add(dom, e, "Path", path)
                        _add(dom, e, "Accesslist", "*")

                stderr = _pretty("nfs-exports", build)
            raise sm_error("ConfigServerPathMissing", stderr=stderr)
        path = self.dc["serverpath"].rstrip("/") or "/"
        if server in NFS_EXPORTS and path not in NFS_EXPORTS[server]:
            raise sm_error("NFSMount", "mount failed with return code 32")
        return server, path

    def capacity(self) -> int:
        """Check the storage is there and return its size (SR.create, PBD.plug)."""
        t, dc = self.typ, self.dc
        if t == "nfs":
            server, path = self._nfs_target(scan=True)
            return _exports(server).get(path, 2 * TiB)
        if t == "smb":
            if not reachable(dc["server"]):
                raise sm_error("SMBMount", "mount failed with return code 113")
            return SMB_CAPACITY
        if t == "iso":
            if "legacy_mode" in dc:
                return 0
            loc = dc["location"]
            if not reachable(loc):
                kind = dc.get("type", "nfs_iso" if ":/" in loc else "cifs")
                raise sm_error("NFSTarget" if kind == "nfs_iso" else "ISOMountFailure")
            return ISO_CAPACITY
        if t in ("lvm", "ext"):
            have = _host_disks(self.store, self.host)
            total = 0
            for dev in dc["device"].split(","):
                if dev not in have:
                    raise sm_error("InvalidDev", f"Device {dev} does not exist")
                total += have[dev]
            return total - 12 * MiB if t == "lvm" else int(total * 0.98)
        if t == "lvmoiscsi":
            target = dc["target"].split(",")[0]
            return next(size for _, s, size in _luns(target) if s == dc["SCSIid"]) - 12 * MiB
        if t == "lvmohba":
            return next(lun[4] for lun in HBA_LUNS if lun[0] == dc["SCSIid"]) - 12 * MiB
        return 0

    def create_checks(self, sr_uuid: str) -> None:
        """sr_create beyond load(): devices not in use, not the system disk; a LUN
        no other SR uses (LVHDoISCSISR/LVHDoHBASR create: util.test_SCSIid)."""
        if self.typ in ("lvmoiscsi", "lvmohba") and self.dc["SCSIid"] in scsi_ids_in_use(
                self.store):
            raise sm_error("SRInUse")
        if self.typ in ("lvm", "ext"):
            used = _devices_in_use(self.store, self.host)
            for dev in self.dc["device"].split(","):
                if dev in used:
                    raise sm_error("SRInUse")
            for dev in self.dc["device"].split(","):
                if dev in ("/dev/sda", "/dev/sda1", "/dev/sda2"):
                    raise sm_error("Rootdev", f"Device {dev} contains core system files, "
                                              "please use another device")

    def where(self) -> tuple[str, ...]:
        return disks.where_of(self.typ, self.host, self.dc)


def driver(store: Store, typ: str, host: str, dc: dict[str, str]) -> Driver:
    """Storage_access.bind: SR_UNKNOWN_DRIVER [type] when no SM plugin has it."""
    if not any(r["type"] == typ for r in store.all("SM").values()):
        raise XapiFailure("SR_UNKNOWN_DRIVER", typ)
    return Driver(store, typ, host, dc)


def assert_no_srmaster(dc: dict[str, str]) -> None:
    """Xapi_pbd.assert_no_srmaster_key."""
    if "SRmaster" in dc:
        raise XapiFailure("VALUE_NOT_SUPPORTED", "SRmaster", dc["SRmaster"],
                          "This key is for internal use only")
