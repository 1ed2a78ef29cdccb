"""Finding storage before making an SR of it, as xapi does it: SR.probe_ext where the
host's driver answers it (SMAPIv3), SR.probe otherwise (XenCenter's order: probe_ext
first, SR.probe when it says SR_OPERATION_NOT_SUPPORTED).

An SMAPIv1 driver answers a probe that lacks a key by failing with the choices for
that key as XML in the failure's third parameter (sm's NFSSR, BaseISCSI,
LVHDoHBASR/devscan.py): the NFS server's exports (ConfigServerPathMissing, 101),
the iSCSI target's IQNs (ConfigTargetIQNMissing, 96), its LUNs or the HBA's LUNs
(ConfigSCSIid, 107). A complete probe answers an ``SRlist`` of the SRs already there.
:func:`probe` turns all of these into one :class:`Probe`; any other failure into a
:class:`ProbeFailed` that says in one line what is wrong and which key is missing.

Everything xapi sends here is untrusted text: XML with a DOCTYPE (entities) is
refused, unknown elements are ignored, and sizes that are not numbers are unknown.

The SR types offered (:data:`SR_KINDS`) and their device-config keys are checked
here before any call (:func:`check_device_config`).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from xsctl.xapi.errors import UsageError, XapiError, XsctlError
from xsctl.xapi.text import printable

Call = Callable[..., Any]


# ------------------------------------------------------------------ SR kinds and keys


@dataclass(frozen=True)
class Key:
    """A device-config key: what it is called in a form, and what it takes."""

    name: str
    label: str
    help: str
    example: str = ""
    required: bool = True  # to create the SR
    probe: bool = True  # needed before a probe can be sent
    secret: bool = False  # a password: masked where shown (xapi moves it to a secret)
    check: Callable[[str], str | None] | None = None  # why the text is wrong, or None


def _host(text: str) -> str | None:
    t = text.strip()
    if not t or any(c.isspace() for c in t) or "/" in t or "\\" in t:
        return "a host name or an IP address (no spaces, no path)"
    return None


def _abs_path(text: str) -> str | None:
    return None if text.startswith("/") and " " not in text.strip() else (
        "an absolute path on the server, such as /export/xen")


def _nfs_version(text: str) -> str | None:
    # NFSSR.py validate_nfsversion
    return None if text in ("", "3", "4", "4.0", "4.1") else "3, 4, 4.0 or 4.1"


def _device(text: str) -> str | None:
    devs = [d.strip() for d in text.split(",")]
    if not all(d.startswith("/dev/") and len(d) > 5 and " " not in d for d in devs):
        return "a device path such as /dev/sdb (several: comma-separated)"
    return None


def _unc(text: str) -> str | None:
    t = text.replace("\\", "/")
    if not t.startswith("//") or len([p for p in t[2:].split("/") if p]) < 2:
        return r"//server/share (or \\server\share)"
    return None


def _nfs_location(text: str) -> str | None:
    server, sep, path = text.partition(":")
    if not sep or _host(server) or _abs_path(path):
        return "server:/path, such as 10.0.0.5:/export/iso"
    return None


def _port(text: str) -> str | None:
    return None if not text or (text.isdigit() and 0 < int(text) < 65536) else (
        "a TCP port number (3260 by default)")


@dataclass(frozen=True)
class SrKind:
    """A kind of SR the New SR wizard and ``xsctl sr create`` offer."""

    id: str  # the wizard's name for it: "nfs", "iso-nfs"
    type: str  # xapi's SR type
    label: str
    content_type: str
    shared: bool  # on every host (a PBD each) or on one host
    keys: tuple[Key, ...]
    fixed: Mapping[str, str] = field(default_factory=dict)  # always in device-config
    local: bool = False  # on one host's own disk: the host is asked for
    formats: bool = False  # creating it wipes what the device or LUN holds
    note: str = ""

    def key(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)


_SERVER = Key("server", "Server", "the NFS server's name or address", "10.0.0.5",
              check=_host)
SR_KINDS: tuple[SrKind, ...] = (
    SrKind("nfs", "nfs", "NFS (virtual disks)", "user", True, (
        _SERVER,
        Key("serverpath", "Path", "the exported directory (the probe lists them)",
            "/export/xen", probe=False, check=_abs_path),
        Key("nfsversion", "NFS version", "3, 4, 4.0 or 4.1 (empty: the server's choice)",
            "", required=False, check=_nfs_version),
    )),
    SrKind("iso-nfs", "iso", "ISO library on NFS", "iso", True, (
        Key("location", "Location", "server:/path of the ISO share", "10.0.0.5:/export/iso",
            check=_nfs_location),
        Key("nfsversion", "NFS version", "3, 4, 4.0 or 4.1 (empty: the server's choice)", "",
            required=False, check=_nfs_version),
    ), fixed={"type": "nfs_iso"}),
    SrKind("iso-smb", "iso", "ISO library on SMB/CIFS", "iso", True, (
        Key("location", "Share", r"//server/share of the ISO share", "//fileserver/isos",
            check=_unc),
        Key("username", "User", "user name on the share (empty: guest)", "", required=False),
        Key("cifspassword", "Password", "that user's password", "", required=False,
            secret=True),
    ), fixed={"type": "cifs"}),
    SrKind("lvm", "lvm", "Local LVM", "user", False, (
        Key("device", "Device", "the host's disk (the whole disk is used)", "/dev/sdb",
            check=_device),
    ), local=True, formats=True),
    SrKind("ext", "ext", "Local ext (thin)", "user", False, (
        Key("device", "Device", "the host's disk (the whole disk is used)", "/dev/sdb",
            check=_device),
    ), local=True, formats=True),
    SrKind("lvmoiscsi", "lvmoiscsi", "iSCSI (LVM over iSCSI)", "user", True, (
        Key("target", "Target", "the iSCSI target's name or address", "10.0.0.7",
            check=_host),
        Key("port", "Port", "the target's TCP port (empty: 3260)", "", required=False,
            check=_port),
        Key("targetIQN", "Target IQN", "picked from the probe", probe=False),
        Key("SCSIid", "LUN", "picked from the probe (its SCSI id)", probe=False),
    ), formats=True),
    SrKind("smb", "smb", "SMB/CIFS (virtual disks)", "user", True, (
        Key("server", "Share", r"//server/share", "//fileserver/vms", check=_unc),
        Key("username", "User", "user name on the share", "", required=False),
        Key("password", "Password", "that user's password", "", required=False,
            secret=True),
    )),
    SrKind("lvmohba", "lvmohba", "Fibre Channel / HBA (LVM over HBA)", "user", True, (
        Key("SCSIid", "LUN", "picked from the probe (its SCSI id)", probe=False),
    ), formats=True),
)
KINDS_BY_ID = {k.id: k for k in SR_KINDS}
SECRET_KEY = re.compile(r"password$")  # Xapi_secret.move_passwds_to_secrets


def kind_of(sr_type: str, device_config: Mapping[str, str]) -> SrKind | None:
    """The kind an SR type and device-config make (an ISO SR on NFS or on SMB)."""
    if sr_type == "iso":
        t = device_config.get("type") or (
            "cifs" if device_config.get("location", "").replace("\\", "/").startswith("//")
            else "nfs_iso")
        return KINDS_BY_ID["iso-smb" if t == "cifs" else "iso-nfs"]
    return next((k for k in SR_KINDS if k.type == sr_type and k.id == sr_type), None)


def check_device_config(kind: SrKind, dc: Mapping[str, str], *, for_probe: bool) -> None:
    """Every key there and well formed, before anything is sent; the error names the
    key. ``for_probe``: only what a probe needs (the probe finds the rest)."""
    for k in kind.keys:
        value = dc.get(k.name, "")
        needed = k.required and (k.probe or not for_probe)
        if not value.strip():
            if needed:
                raise UsageError(f"device-config needs {k.name} ({k.help})")
            continue
        if k.check is not None:
            why = k.check(value)
            if why is not None:
                shown = "********" if k.secret else printable(value)
                raise UsageError(f"device-config {k.name}={shown}: not {why}")


def masked(dc: Mapping[str, Any]) -> dict[str, Any]:
    """device-config as it may be shown: passwords hidden."""
    return {k: ("********" if SECRET_KEY.search(k) else v) for k, v in dc.items()}


# ------------------------------------------------------------------ what a probe finds


@dataclass(frozen=True)
class FoundSr:
    uuid: str
    name_label: str = ""
    size: int | None = None
    devices: str = ""  # the devices it spans (a local SR)


@dataclass(frozen=True)
class Export:
    path: str
    access: str = ""


@dataclass(frozen=True)
class TargetIqn:
    address: str
    iqn: str


@dataclass(frozen=True)
class Lun:
    scsi_id: str
    lun: str = ""
    size: int | None = None
    vendor: str = ""
    serial: str = ""
    path: str = ""


@dataclass(frozen=True)
class Probe:
    """What a probe found. ``needs`` is the key the driver asked for, with its
    choices in ``exports``, ``iqns`` or ``luns``; "" when the probe was complete
    and ``srs`` lists the SRs already on that storage."""

    type: str
    device_config: Mapping[str, str]
    via: str  # "SR.probe_ext" or "SR.probe"
    needs: str = ""
    srs: tuple[FoundSr, ...] = ()
    exports: tuple[Export, ...] = ()
    iqns: tuple[TargetIqn, ...] = ()
    luns: tuple[Lun, ...] = ()
    options: tuple[Mapping[str, str], ...] = ()  # probe_ext: configurations to complete

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": self.type, "device_config": masked(self.device_config), "via": self.via,
            "needs": self.needs or None,
            "srs": [{"uuid": s.uuid, "name_label": s.name_label, "size": s.size,
                     "devices": s.devices} for s in self.srs],
            "exports": [{"path": e.path, "access": e.access} for e in self.exports],
            "iqns": [{"address": i.address, "iqn": i.iqn} for i in self.iqns],
            "luns": [{"scsi_id": x.scsi_id, "lun": x.lun, "size": x.size, "vendor": x.vendor,
                      "serial": x.serial, "path": x.path} for x in self.luns],
            "options": [dict(o) for o in self.options],
        }


class ProbeFailed(XsctlError):
    """A probe that found nothing to offer: one line saying why."""

    exit_code = 1

    def __init__(self, text: str, cause: XapiError | None = None) -> None:
        self.cause = cause
        super().__init__(text)


class BadXml(ValueError):
    pass


def _xml(text: str) -> ET.Element:
    """Untrusted XML: no DOCTYPE (so no entities), well formed, or BadXml."""
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise BadXml("a DOCTYPE in the probe's answer")
    try:
        return ET.fromstring(text.strip())
    except ET.ParseError as e:
        raise BadXml(str(e)) from None


def _t(el: ET.Element, tag: str) -> str:
    found = el.find(tag)
    return printable((found.text or "").strip()) if found is not None else ""


def _size(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def parse_srlist(text: str) -> tuple[FoundSr, ...]:
    """``<SRlist><SR><UUID/><Devlist/><size/></SR>...`` (sm's srlist_toxml)."""
    root = _xml(text)
    if root.tag != "SRlist":
        raise BadXml(f"<{root.tag}> where an SRlist was expected")
    out = []
    for sr in root.findall("SR"):
        uuid = _t(sr, "UUID")
        if uuid:
            out.append(FoundSr(uuid, _t(sr, "name_label"), _size(_t(sr, "size")),
                               _t(sr, "Devlist")))
    return tuple(out)


def _listing(e: XapiError) -> tuple[str, dict[str, Any]] | None:
    """The choices a failure carries: (the key asked for, fields of Probe)."""
    if len(e.params) < 3 or not e.params[2].strip():
        return None
    code = e.code.removeprefix("SR_BACKEND_FAILURE_")
    try:
        root = _xml(e.params[2])
    except BadXml:
        return None
    if code == "101" and root.tag == "nfs-exports":
        return "serverpath", {"exports": tuple(
            Export(_t(x, "Path"), _t(x, "Accesslist")) for x in root.findall("Export")
            if _t(x, "Path"))}
    if code == "96" and root.tag == "iscsi-target-iqns":
        # "*" is BaseISCSI's wildcard (every IQN of the target): offered after the real ones
        iqns = [TargetIqn(_t(x, "IPAddress"), _t(x, "TargetIQN"))
                for x in root.findall("TGT") if _t(x, "TargetIQN")]
        iqns.sort(key=lambda i: i.iqn == "*")
        return "targetIQN", {"iqns": tuple(iqns)}
    if code == "107" and root.tag == "iscsi-target":
        return "SCSIid", {"luns": tuple(
            Lun(_t(x, "SCSIid"), _t(x, "LUNid"), _size(_t(x, "size")), _t(x, "vendor"),
                _t(x, "serial")) for x in root.findall("LUN") if _t(x, "SCSIid"))}
    if code == "107" and root.tag == "Devlist":
        return "SCSIid", {"luns": tuple(
            Lun(_t(x, "SCSIid"), _t(x, "lun"), _size(_t(x, "size")), _t(x, "vendor"),
                _t(x, "serial"), _t(x, "path")) for x in root.findall("BlockDevice")
            if _t(x, "SCSIid"))}
    return None


# SR_BACKEND_FAILURE_<code> -> the device-config key it says is missing or wrong
# (sm's XE_SR_ERRORCODES.xml)
MISSING = {"90": "device", "94": "location", "95": "target", "96": "targetIQN",
           "101": "serverpath", "102": "server", "107": "SCSIid"}


def explain(e: XapiError, sr_type: str, dc: Mapping[str, str]) -> str:
    """A probe's or a create's failure in one line that says what to change."""
    code = e.code.removeprefix("SR_BACKEND_FAILURE_")
    server = printable(dc.get("server") or dc.get("target") or dc.get("location") or "")
    if code in MISSING:
        key = MISSING[code]
        given = key in dc
        return (f"device-config {key} is {'not right' if given else 'missing'} "
                f"({e.friendly}) [{e.code}]")
    if code == "108":
        return f"{server}: no NFS service answers there (is it up, and reachable from the host?) [{e.code}]"
    if code == "141":
        return f"{server}: no iSCSI service answers there (address or port wrong?) [{e.code}]"
    if code == "68":
        return f"{server}: iSCSI login refused (check the IQN, the initiator's access, CHAP) [{e.code}]"
    if code == "73":
        return f"{server}: the NFS mount failed (no such export, or no access) [{e.code}]"
    if code in ("111", "222"):
        return f"{server}: the mount failed (share name, user or password wrong?) [{e.code}]"
    if code == "97":
        return f"the host has no iSCSI initiator name (its other_config:iscsi_iqn) [{e.code}]"
    if code == "105":
        return f"{printable(dc.get('device', ''))} is the host's system disk: pick another [{e.code}]"
    if e.code == "SR_DEVICE_IN_USE":
        what = printable(dc.get("device") or dc.get("SCSIid") or "that device")
        return f"{what} is in use by another SR [{e.code}]"
    if e.code == "SR_UNKNOWN_DRIVER":
        return f"the host has no driver for SR type {printable(sr_type)} [{e.code}]"
    return e.text


def _from_ext(results: Any, sr_type: str, dc: Mapping[str, str]) -> Probe:
    """SR.probe_ext's probe_result records: {configuration, complete, sr, extra_info}."""
    srs: list[FoundSr] = []
    options: list[Mapping[str, str]] = []
    for r in results if isinstance(results, list) else []:
        if not isinstance(r, dict):
            continue
        sr = r.get("sr")
        if isinstance(sr, dict) and sr.get("uuid"):
            total = str(sr.get("total_space", ""))
            srs.append(FoundSr(printable(str(sr["uuid"])), printable(str(sr.get("name_label", ""))),
                               _size(total)))
        elif not r.get("complete"):
            conf = r.get("configuration")
            if isinstance(conf, dict):
                options.append({printable(str(k)): printable(str(v)) for k, v in conf.items()})
    return Probe(sr_type, dict(dc), "SR.probe_ext", srs=tuple(srs), options=tuple(options))


NOT_THERE = ("SR_OPERATION_NOT_SUPPORTED", "MESSAGE_METHOD_UNKNOWN")


def probe(call: Call, host: str, sr_type: str, device_config: Mapping[str, str],
          sm_config: Mapping[str, str] | None = None) -> Probe:
    """Probe ``sr_type`` storage at ``device_config`` from ``host``. ``call`` is a
    connection's ``call`` (a synchronous xapi call that raises XapiError)."""
    dc = dict(device_config)
    smc = dict(sm_config or {})
    via = "SR.probe_ext"
    try:
        try:
            return _from_ext(call("SR.probe_ext", host, dc, sr_type, smc), sr_type, dc)
        except XapiError as e:
            if e.code not in NOT_THERE:
                raise
        via = "SR.probe"
        answer = call("SR.probe", host, dc, sr_type, smc)
    except XapiError as e:
        found = _listing(e)
        if found is None:
            raise ProbeFailed(explain(e, sr_type, dc), e) from None
        key, fields = found
        return Probe(sr_type, dc, via, needs=key, **fields)
    try:
        return Probe(sr_type, dc, via, srs=parse_srlist(str(answer)))
    except BadXml as e:
        raise ProbeFailed(f"the host's answer to {via} is not what xapi sends ({e})") from None
