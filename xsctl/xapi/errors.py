"""Errors: one type for what xapi refused (``XapiError(code, params)``), and the few
client-side failures (usage, connection, trust). Each has a sentence a person can act
on; the raw xapi code stays available for scripts and bug reports."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xsctl.xapi.text import human_bytes, printable


class XsctlError(Exception):
    """Base of everything xsctl reports to a user."""

    exit_code = 1

    @property
    def message(self) -> str:
        return str(self)


class UsageError(XsctlError):
    """Bad input from the user: an unknown or ambiguous name, a malformed size."""

    exit_code = 2


class ConnectionFailed(XsctlError):
    """The host could not be reached, or the connection dropped."""

    exit_code = 3


class OutcomeUnknown(ConnectionFailed):
    """The connection dropped during a call that changes state: xapi may or may not
    have run it. It is never sent again; the cache shows the truth after the resync."""


class ConnectionDropped(ConnectionFailed):
    """The connection dropped during a call that only reads: nothing ran, and it
    can be sent again (a login is, once)."""


class TrustError(ConnectionFailed):
    """The server's certificate is not (or no longer) the one we trust."""


class UnknownCertificate(TrustError):
    def __init__(self, host: str, fingerprint: str) -> None:
        self.host = host
        self.fingerprint = fingerprint
        super().__init__(
            f"The certificate of {host} is not yet trusted.\n"
            f"  fingerprint: {fingerprint}\n"
            "Compare it with the host's own (in dom0: openssl x509 -noout -fingerprint "
            "-sha256 -in /etc/xensource/xapi-ssl.pem), then accept it with "
            f"--accept-fingerprint {fingerprint}"
        )


class ChangedCertificate(TrustError):
    def __init__(self, host: str, pinned: str, seen: str) -> None:
        self.host = host
        self.pinned = pinned
        self.seen = seen
        super().__init__(
            f"The certificate of {host} has CHANGED. Refusing to connect.\n"
            f"  trusted:   {pinned}\n"
            f"  presented: {seen}\n"
            "If the host's certificate was replaced on purpose (xe host-reset-server-certificate "
            f"or a new install), forget the old one with: xsctl trust forget {host}"
        )


class FingerprintMismatch(TrustError):
    """--accept-fingerprint named another certificate than the one the host shows."""

    def __init__(self, host: str, seen: str, said: str) -> None:
        self.host = host
        self.seen = seen
        self.said = said
        super().__init__(
            f"The certificate of {host} is not the one --accept-fingerprint names. "
            "Refusing to connect.\n"
            f"  the server's certificate is {seen}\n"
            f"  you said                    {said}\n"
            "Check the fingerprint against the host's own (in dom0: openssl x509 -noout "
            "-fingerprint -sha256 -in /etc/xensource/xapi-ssl.pem)"
        )


class PlainHttpRefused(TrustError):
    """http:// without the user's say-so: the password would cross in clear."""


class ReadOnlyRefused(XsctlError):
    """A call that changes state, refused before it was sent (--read-only)."""

    exit_code = 1

    def __init__(self, method: str) -> None:
        self.method = method
        super().__init__(f"Refused {method}: this connection is read-only (--read-only)")


def _p(params: Sequence[str], i: int, default: str = "?") -> str:
    return params[i] if len(params) > i else default


# Friendly text for the codes people meet most. Written for xsctl (xsconsole's table
# showed which codes matter). Params are xapi's, as datamodel.json lists them.
_FRIENDLY: dict[str, Callable[[Sequence[str]], str]] = {
    "SESSION_AUTHENTICATION_FAILED": lambda p: f"Login failed for user {_p(p, 0)}: wrong user name or password",
    "SESSION_INVALID": lambda p: "The session is no longer valid (xapi restarted or the session timed out)",
    "HOST_IS_SLAVE": lambda p: f"This host is a pool member; the pool master is {_p(p, 0)}",
    "HANDLE_INVALID": lambda p: f"The {_p(p, 0)} no longer exists",
    "UUID_INVALID": lambda p: f"No {_p(p, 0)} has UUID {_p(p, 1)}",
    "VM_BAD_POWER_STATE": lambda p: f"The VM must be {either(_p(p, 1))} for this, but it is {_p(p, 2)}",
    "OPERATION_NOT_ALLOWED": lambda p: f"Not allowed: {_p(p, 0)}",
    "OTHER_OPERATION_IN_PROGRESS": lambda p: f"Another operation ({_p(p, 2)}) is in progress on this {_p(p, 0)}; wait for it to finish",
    "OPERATION_BLOCKED": lambda p: f"This operation is blocked on the VM: {_p(p, 1, 'blocked_operations is set')}",
    "VM_IS_TEMPLATE": lambda p: f"That is a template; {_p(p, 1)} works on VMs only",
    "VM_IS_SNAPSHOT": lambda p: f"That is a snapshot; {_p(p, 1)} works on VMs only",
    "VM_LACKS_FEATURE": lambda p: "The VM's guest agent does not support this (no PV drivers): use the force variant",
    "VM_LACKS_FEATURE_SHUTDOWN": lambda p: "The VM's guest agent cannot shut it down cleanly: use force shutdown",
    "VM_REQUIRES_SR": lambda p: "The VM needs a storage repository that the chosen host cannot reach",
    "VM_MIGRATE_FAILED": lambda p: f"Migration failed: {_p(p, 3, '')}",
    "HOST_NOT_ENOUGH_FREE_MEMORY": lambda p: f"Not enough free memory on the host (needs {_mib(_p(p, 0))}, has {_mib(_p(p, 1))})",
    "NO_HOSTS_AVAILABLE": lambda p: "No host in the pool can run this VM now (memory, storage or maintenance)",
    "HOST_DISABLED": lambda p: "That host is disabled (maintenance mode)",
    "HOST_OFFLINE": lambda p: "That host is offline",
    # xapi_host_helpers.ml valid_operations, xapi_host.ml
    "HOST_NOT_DISABLED": lambda p: "The host must be disabled (in maintenance mode) first",
    "HOST_NOT_LIVE": lambda p: "The host is not running",
    "HOST_IS_LIVE": lambda p: "The host is running already",
    "HOST_POWER_ON_MODE_DISABLED": lambda p: "The host has no power-on mode: xapi cannot wake it",
    "HOST_DISABLED_UNTIL_REBOOT": lambda p: "The host stays disabled until it has rebooted",
    "HOST_EVACUATE_VM_NOT_HA_PROTECTED": lambda p: "HA is on and the VM is not protected: xapi moves only protected VMs off a host",
    # assert_can_evacuate: "code,params|code,params|..." for each VM that cannot move
    "CANNOT_EVACUATE_HOST": lambda p: "Some VMs cannot leave the host ("
    + ", ".join(sorted({e.split(",")[0] for e in _p(p, 0, "").split("|") if e})) + ")",
    "MEMORY_CONSTRAINT_VIOLATION": lambda p: "The memory settings break xapi's rules (static min <= dynamic min <= dynamic max <= static max)",
    "MEMORY_CONSTRAINT_VIOLATION_ORDER": lambda p: "Memory must satisfy static min <= dynamic min <= dynamic max <= static max",
    "MEMORY_CONSTRAINT_VIOLATION_MAXPIN": lambda p: f"Dynamic memory must equal static max here ({_p(p, 0)})",
    "INVALID_VALUE": lambda p: f"Invalid value: {_p(p, 0)} {_p(p, 1, '')}".rstrip(),
    "VALUE_NOT_SUPPORTED": lambda p: f"{_p(p, 0)} = {_p(p, 1)} is not supported: {_p(p, 2, '')}",
    "SR_FULL": lambda p: f"Not enough space on the storage repository (needs {_mib(_p(p, 0))}, {_mib(_p(p, 1))} free)",
    "SR_HAS_PBD": lambda p: "The storage repository is still attached to hosts: detach (unplug) it first",
    "SR_NOT_EMPTY": lambda p: "The storage repository still holds disks",
    "SR_UNKNOWN_DRIVER": lambda p: f"Unknown storage type {_p(p, 0)}",
    "SR_BACKEND_FAILURE": lambda p: f"The storage backend failed: {_p(p, 1, '')} {_p(p, 2, '')}".rstrip(),
    "VDI_IN_USE": lambda p: "The disk is in use by a running VM: detach it first",
    "VDI_READONLY": lambda p: "The disk is read-only",
    "VDI_IS_A_PHYSICAL_DEVICE": lambda p: "The disk is a physical device",
    "VDI_HAS_RRDS": lambda p: "The disk holds xapi's performance archives",
    "VDI_IS_SHARABLE": lambda p: "The disk is sharable (it cannot be snapshotted)",
    "VDI_NOT_MANAGED": lambda p: "The disk is not managed by xapi",
    "VDI_INCOMPATIBLE_TYPE": lambda p: f"Not possible on a disk of type {_p(p, 1)}",
    "VDI_CBT_ENABLED": lambda p: "Changed block tracking is on for the disk",
    "VDI_TOO_SMALL": lambda p: f"The destination disk is too small (needs {_mib(_p(p, 1))})",
    "VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION": lambda p: "The disk is reset on boot (on-boot=reset), which this does not allow",
    "SR_OPERATION_NOT_SUPPORTED": lambda p: "The storage type does not support this",
    "SR_HAS_NO_PBDS": lambda p: "The storage repository is not plugged into any host",
    "SR_NOT_SHARABLE": lambda p: "The storage repository is local to another host",
    "SR_INDESTRUCTIBLE": lambda p: "The storage repository is marked indestructible",
    "PBD_EXISTS": lambda p: "That host already has a PBD for the storage repository",
    "VBD_NOT_EMPTY": lambda p: "The drive already holds a disc: eject it first",
    "VBD_IS_EMPTY": lambda p: "The drive is empty",
    "VBD_NOT_REMOVABLE_MEDIA": lambda p: "Only CD drives can insert or eject media",
    "VBD_NOT_UNPLUGGABLE": lambda p: "The disk is marked not unpluggable (hot-unplug is blocked)",
    "VBD_CDS_MUST_BE_READONLY": lambda p: "CD drives must be read-only",
    "DEVICE_ALREADY_ATTACHED": lambda p: "The device is already attached",
    "DEVICE_ALREADY_DETACHED": lambda p: "The device is already detached",
    "DEVICE_ALREADY_EXISTS": lambda p: f"Device position {_p(p, 0)} is already used on this VM",
    # xapi_xenops.ml: the guest refused to let go of the device (it is mounted or
    # open), or did not answer in time
    "DEVICE_DETACH_REJECTED": lambda p: f"The guest refused to release the device ({_p(p, 2, 'it is in use')}): stop using it in the guest, or force the detach",
    "DEVICE_DETACH_TIMEOUT": lambda p: "The guest did not release the device in time (is it still in use?)",
    "DEVICE_ATTACH_TIMEOUT": lambda p: "The guest did not take the device in time",
    "DEVICE_NOT_ATTACHED": lambda p: "The device is not attached",
    "VM_MISSING_PV_DRIVERS": lambda p: "The guest has no PV drivers, which hot-plugging a device needs",
    "DISK_VBD_MUST_BE_READWRITE_FOR_HVM": lambda p: "An HVM guest takes disks read-write only",
    "VBD_TRAY_LOCKED": lambda p: "The guest has locked the drive's tray: eject it from inside the guest",
    "VM_NO_EMPTY_CD_VBD": lambda p: "The VM has no empty CD drive",
    "INVALID_DEVICE": lambda p: f"{_p(p, 0)} is not a device position",
    # xapi_vif.ml configure_ipv4/ipv6, xapi_vif_helpers.ml create (Helpers.parse_cidr)
    "INVALID_CIDR_ADDRESS_SPECIFIED": lambda p: f"The {_p(p, 0, 'address')} is not an address with its prefix length (10.0.9.7/24)",
    "ADDRESS_VIOLATES_LOCKING_CONSTRAINT": lambda p: f"{_p(p, 0)} is not among the addresses this locked VIF allows",
    "MAC_INVALID": lambda p: f"{_p(p, 0)!r} is not a MAC address (six hex pairs)",
    "DEFAULT_SR_NOT_FOUND": lambda p: "The pool has no default storage repository",
    "TASK_CANCELLED": lambda p: "The task was cancelled",
    "MESSAGE_METHOD_UNKNOWN": lambda p: f"The host does not know {_p(p, 0)} (older xapi?)",
    "MESSAGE_PARAMETER_COUNT_MISMATCH": lambda p: f"{_p(p, 0)}: wrong number of parameters (host expects {_p(p, 1)})",
    "RBAC_PERMISSION_DENIED": lambda p: f"Your role does not allow {_p(p, 0)}",
    "PERMISSION_DENIED": lambda p: f"Permission denied: {_p(p, 0)}",
    "LICENCE_RESTRICTION": lambda p: f"Not allowed by the host's licence: {_p(p, 0)}",
    "ONLY_PROVISION_TEMPLATE": lambda p: "Only templates can be provisioned",
    "INTERNAL_ERROR": lambda p: f"xapi internal error: {_p(p, 0)}",
    # import.ml with_error_handling: what a damaged or foreign XVA file gets
    "IMPORT_ERROR_PREMATURE_EOF": lambda p: "The file ends too early: it is truncated or damaged; nothing was imported",
    "IMPORT_ERROR_SOME_CHECKSUMS_FAILED": lambda p: "Some disk data in the file fails its checksum: the file is damaged; nothing was imported",
    "IMPORT_ERROR_UNEXPECTED_FILE": lambda p: f"The file is not a VM export (it should hold {_p(p, 0)}, it holds {_p(p, 1)}); nothing was imported",
    "IMPORT_INCOMPATIBLE_VERSION": lambda p: "The file comes from a newer xapi than this pool's; nothing was imported",
    "IMPORT_ERROR": lambda p: f"The import failed: {_p(p, 0)}",
    "CLIENT_ERROR": lambda p: "The transfer's connection broke off",
    # networks: xapi_network.ml, xapi_vlan.ml, xapi_bond.ml, xapi_pif.ml
    "NETWORK_CONTAINS_VIF": lambda p: "VMs' network interfaces (VIFs) are attached to the network: unplug or move them first",
    "NETWORK_CONTAINS_PIF": lambda p: "Hosts' interfaces (PIFs) are still on the network: remove its VLANs or bonds first",
    "CANNOT_DESTROY_SYSTEM_NETWORK": lambda p: "That is xapi's own network; it cannot be deleted",
    "NETWORK_ALREADY_CONNECTED": lambda p: "The host already reaches that network through another interface",
    "NETWORK_UNMANAGED": lambda p: "xapi does not manage that network",
    "VLAN_TAG_INVALID": lambda p: f"VLAN tag {_p(p, 0)} is not possible: tags are 0 to 4094",
    "PIF_VLAN_EXISTS": lambda p: f"{_p(p, 0)} already has a VLAN with that tag, or is tagged itself",
    "PIF_IS_VLAN": lambda p: "That interface is a VLAN: VLANs go on a NIC or a bond",
    "PIF_IS_PHYSICAL": lambda p: "That interface is a NIC, not a VLAN",
    "CANNOT_ADD_VLAN_TO_BOND_SLAVE": lambda p: "That NIC is in a bond: put the VLAN on the bond",
    "PIF_UNMANAGED": lambda p: "xapi does not manage that interface",
    "PIF_IS_MANAGEMENT_INTERFACE": lambda p: "That interface carries the host's management connection",
    "PIF_ALREADY_BONDED": lambda p: "A chosen NIC is in a bond already",
    "PIF_BOND_NEEDS_MORE_MEMBERS": lambda p: "A bond needs NICs to join",
    "PIF_CANNOT_BOND_CROSS_HOST": lambda p: "The NICs of a bond must be on one host",
    "PIF_BOND_MORE_THAN_ONE_IP": lambda p: "More than one of the NICs has an IP configuration; a bond keeps one",
    "INCOMPATIBLE_PIF_PROPERTIES": lambda p: "The NICs have different settings (properties); a bond needs them equal",
    "HA_CANNOT_CHANGE_BOND_STATUS_OF_MGMT_IFACE": lambda p: "HA is on: the management interface's bond cannot change",
    "PIF_DEVICE_NOT_FOUND": lambda p: "A host has no NIC of that name",
    # host and PIF settings (xapi_host.ml, xapi_pif.ml, xapi_pool.ml)
    "HOST_NAME_INVALID": lambda p: f"That hostname is not valid: {_p(p, 0)}",
    "INVALID_IP_ADDRESS_SPECIFIED": lambda p: f"The {_p(p, 0)} is not a valid IP address",
    "PIF_IS_MANAGEMENT_IFACE": lambda p: "That interface is the management interface: it needs an IP configuration",
    "PIF_HAS_NO_NETWORK_CONFIGURATION": lambda p: "That interface has no IP configuration: give it one first",
    "CANNOT_PLUG_BOND_SLAVE": lambda p: "That interface is part of a bond: use the bond",
    "HA_IS_ENABLED": lambda p: "HA is on: disable HA first",
    "REDO_LOG_IS_ENABLED": lambda p: "The pool's redo log is on: disable it first",
}


def _mib(v: str) -> str:
    try:
        return human_bytes(int(v))
    except ValueError:
        return v


def either(states: str) -> str:
    """xapi lists the states an operation needs as "halted, suspended"."""
    parts = [s.strip() for s in states.split(",") if s.strip()]
    return parts[0] if len(parts) <= 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def friendly(code: str, params: Sequence[str]) -> str:
    """The sentence for ``code``; xapi's params are untrusted text (names, backend
    output), so the sentence is made safe for a terminal."""
    fn = _FRIENDLY.get(code)
    if fn is None and code.startswith("SR_BACKEND_FAILURE_"):
        fn = _FRIENDLY["SR_BACKEND_FAILURE"]
    if fn is None:
        return printable(code.replace("_", " ").capitalize())
    return printable(fn(params))


class XapiError(XsctlError):
    """xapi refused a call: ``code`` and ``params`` exactly as xapi sent them."""

    exit_code = 1

    def __init__(self, code: str, params: Sequence[object] = (), *, method: str = "",
                 said: str | None = None) -> None:
        self.code = code
        self.params = [str(p) for p in params]
        self.method = method
        # the sentence where xsctl can say more than the table (which VM has the
        # disk attached): a gate explaining a refusal before anything is sent
        self.said = said
        super().__init__(self.text)

    @property
    def friendly(self) -> str:
        if self.said is not None:
            return printable(self.said)
        return friendly(self.code, self.params)

    @property
    def text(self) -> str:
        raw = printable(" ".join([self.code, *self.params]))
        return f"{self.friendly} [{raw}]"

    @property
    def details(self) -> list[str]:
        """The ErrorDescription list, as the XenAPI package exposes it."""
        return [self.code, *self.params]

    def __reduce__(self) -> tuple[object, ...]:
        return (XapiError, (self.code, self.params))
