"""A VM's network interfaces (VIFs): add one (its network, a MAC given or made by
xapi, its locking mode), remove one, plug and unplug it (hot, into a running guest
where xapi allows), and hand the guest a static IPv4 or IPv6 configuration.

The gates follow ocaml/xapi/xapi_vif_helpers.ml ``valid_operations`` (the VIF's own
allowed_operations) and the checks of xapi_vif_helpers.ml ``create``/``destroy`` and
xapi_vif.ml ``configure_ipv4``/``configure_ipv6``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from xsctl.xapi import block
from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.errors import UsageError, XapiError, XsctlError
from xsctl.xapi.models import NULL, Vif, Vm, as_int
from xsctl.xapi.ops.base import Call, Plan, Result, Undo, Var, xe
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Impact,
    Kind,
    Operation,
    Param,
    ParamKind,
    Refused,
    declare,
)
from xsctl.xapi.ops.resolve import resolve
from xsctl.xapi.ops.vm import VM
from xsctl.xapi.text import printable

LOCKING_MODES = {
    "network_default": "the network's default",
    "unlocked": "unlocked: any traffic",
    "locked": "locked: only the allowed addresses",
    "disabled": "disabled: no traffic at all",
}
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")  # Helpers.is_valid_MAC
FEATURE = "feature-static-ip-setting"
# the VM's operations during which xapi plugs and unplugs no VIF
_BLOCKING_VM_OPS = ("clean_shutdown", "hard_shutdown", "suspend", "pause")


# ------------------------------------------------------------------ the VIF kind


def vif_name(vif: Vif) -> str:
    """``web-01 VIF 0``: its VM and its device."""
    return f"{vif.vm_name} VIF {vif.device}" if vif.vm_name else f"VIF {vif.device}"


def load_vif(cache: Cache, ref: str, r: Record | None = None) -> Vif | None:
    r = r if r is not None else cache.get("vif", ref)
    if r is None:
        return None
    vm = cache.get("vm", str(r.get("VM"))) or {}
    if vm.get("is_a_template") or vm.get("is_a_snapshot"):
        return None  # a template's or snapshot's VIFs are not a VM's to act on
    return Vif.from_record(cache, ref, r)


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    out = []
    for ref, r in cache.snapshot("vif"):
        vif = load_vif(cache, ref, r)
        if vif is not None:
            out.append((ref, vif_name(vif)))
    return out


def resolve_vif(cache: Cache, vm: str, spec: str) -> str:
    """One of the VM's VIFs: its device (0), its MAC, its UUID, or the name of its
    network where only one of the VM's VIFs is on it."""
    text = spec.strip()
    vr = cache.get("vm", vm) or {}
    rows = [(ref, r) for ref in vr.get("VIFs") or () if (r := cache.get("vif", ref))]
    for ref, r in rows:
        if text == r.get("device") or text == r.get("uuid") or (
                _MAC.match(text) and text.lower() == str(r.get("MAC", "")).lower()):
            return str(ref)
    on = [ref for ref, r in rows
          if text == (cache.get("network", str(r.get("network"))) or {}).get("name_label")]
    name = printable(str(vr.get("name_label", "the VM")))
    if len(on) == 1:
        return str(on[0])
    if len(on) > 1:
        raise UsageError(f"{name} has {len(on)} VIFs on {text!r}: name one by its device")
    have = ", ".join(
        f"{r.get('device')} ({printable(str((cache.get('network', str(r.get('network'))) or {}).get('name_label', '?')))})"
        for _, r in sorted(rows, key=lambda x: as_int(x[1].get("device"), 99))) or "none"
    raise UsageError(f"{name} has no VIF {text!r} (its VIFs: {have})")


def _guest_metrics(cache: Cache, vm: Vm) -> Record:
    r = cache.get("vm", vm.ref) or {}
    return cache.get("vm_guest_metrics", str(r.get("guest_metrics", ""))) or {}


def hotplug_error(cache: Cache, vm: Vm) -> XsctlError | None:
    """Why a VIF cannot be plugged into or out of the running guest, or None
    (xapi_vif_helpers.ml valid_operations: an HVM guest must have PV drivers, or say
    it can hot-plug VIFs; PV and PVH guests always can)."""
    if not block.runs_hvm(cache, vm):
        return None
    gm = _guest_metrics(cache, vm)
    said = str(gm.get("can_use_hotplug_vif") or "unspecified")
    if said == "no":
        return XapiError("OPERATION_NOT_ALLOWED", ["VM states it does not support VIF hotplug."],
                         said=f"{vm.name_label}'s guest says it cannot hot-plug network "
                              "interfaces")
    pv = gm.get("PV_drivers_version") or {}
    if said == "yes" or gm.get("PV_drivers_detected") or (isinstance(pv, dict) and "major" in pv):
        return None
    return XapiError("VM_MISSING_PV_DRIVERS", [vm.ref],
                     said=f"{vm.name_label} has no PV drivers, which hot-plugging a network "
                          "interface needs")


def check_vif(cache: Cache, vif: Any, op: str) -> XsctlError | None:
    """The error xapi would raise for ``op`` not in the VIF's allowed_operations
    (xapi_vif_helpers.ml valid_operations, in its order), or None."""
    if op in vif.allowed_operations:
        return None
    if vif.current_operations:
        return XapiError("OTHER_OPERATION_IN_PROGRESS",
                         ["VIF", vif.ref, vif.current_operations[0], ""])
    vm = Vm.get(cache, vif.VM)
    if vm is None:
        return XapiError("HANDLE_INVALID", ["VM", vif.VM])
    if vm.is_control_domain and op == "plug":
        return XapiError("OPERATION_NOT_ALLOWED", ["Control domain does not support hotplug"])
    power = vm.power_state
    if power == "Running":
        if op == "plug" and vif.currently_attached:
            return XapiError("DEVICE_ALREADY_ATTACHED", [vif.ref])
        if op == "unplug" and not vif.currently_attached:
            return XapiError("DEVICE_ALREADY_DETACHED", [vif.ref])
    else:
        return XapiError("VM_BAD_POWER_STATE", [vif.VM, "running", power.lower()])
    for busy in vm.current_operations.values():
        if busy in _BLOCKING_VM_OPS:
            return XapiError("OPERATION_NOT_ALLOWED",
                             [f"Current operation on VM:{vm.ref} is {busy}"],
                             said=f"{vm.name_label} is {vm.doing}")
    err = hotplug_error(cache, vm)
    if err is not None:
        return err
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op} is not possible now"])


def _explain_vif(vif: Any, op: str) -> XsctlError | None:
    """Without the pool at hand: only what the VIF itself says."""
    if op in vif.allowed_operations:
        return None
    return XapiError("OPERATION_NOT_ALLOWED", [f"{op} is not possible now"])


# a network's PIFs say which hosts have it (a running VM's must)
CLASSES = (*VM.classes, "PIF")
VM_NET = replace(VM, classes=CLASSES)

VIF = Kind(
    cls="vif", noun="VIF", nouns="VIFs",
    resolve=lambda cache, spec: resolve(cache, "vif", spec, kind="VIF"),
    load=load_vif, name=vif_name, members=_members, explain=_explain_vif,
    classes=CLASSES, check=check_vif, parent=VM, resolve_in=resolve_vif,
    spec_help="the VIF: its device (0), its MAC, or its network's name",
)


def _vm_of(cache: Cache, vif: Vif) -> Vm:
    vm = Vm.get(cache, vif.VM)
    if vm is None:
        raise XapiError("HANDLE_INVALID", ["VM", vif.VM])
    return vm


def _uuid(cache: Cache, cls: str, ref: str) -> str:
    return str((cache.get(cls, ref) or {}).get("uuid", ref))


def _where(vif: Vif) -> str:
    return f"{vif.vm_name} VIF {vif.device} ({vif.network_name or 'no network'})"


# ------------------------------------------------------------------ devices and networks


def allowed_devices(cache: Cache, vm: Vm) -> list[str]:
    """VM.get_allowed_VIF_devices, worked out from the cache as
    Xapi_vm_helpers.allowed_VIF_devices does: 0 to 6 up to xapi 25.28, 0 to 15 from
    25.29.0 (where a domain's grant frames follow its devices), less the devices the
    VM's VIFs name."""
    pool = next(iter(cache.all("pool").values()), {})
    master = cache.get("host", str(pool.get("master", NULL))) or {}
    version = str((master.get("software_version") or {}).get("xapi", ""))
    try:
        newer = tuple(int(p) for p in version.split(".")[:2]) >= (25, 29)
    except ValueError:
        newer = False
    used = {str(r.get("device")) for ref in vm.VIFs if (r := cache.get("vif", ref))}
    return [str(n) for n in range(16 if newer else 7) if str(n) not in used]


def _is_internal_management(r: Record) -> bool:
    oc = r.get("other_config") or {}
    return str(oc.get("is_host_internal_management_network", "")).lower() == "true"


def network_reason(cache: Cache, vm: Vm, r: Record) -> str | None:
    """Why a VIF of ``vm`` cannot go on this network now, or None."""
    if _is_internal_management(r):
        return "the hosts' internal management network, not for guests"
    pifs = [p for ref in r.get("PIFs") or () if (p := cache.get("pif", ref))]
    # xapi_network_attach_helpers.ml: the running VM's host must have it
    if (vm.power_state in ("Running", "Paused") and pifs
            and not any(str(p.get("host")) == vm.resident_on for p in pifs)):
        return f"not on {vm.host_name or 'its host'}, where the VM runs"
    return None


def _network_choices(ctx: Context, vm: Vm) -> list[Choice]:
    out = []
    for ref, r in sorted(ctx.cache.snapshot("network"),
                         key=lambda x: str(x[1].get("name_label", "")).lower()):
        bridge = printable(str(r.get("bridge", "")))
        out.append(Choice(ref, printable(str(r.get("name_label", ""))) or bridge,
                          f"{bridge}, MTU {r.get('MTU', '')}", network_reason(ctx.cache, vm, r)))
    return out


def _resolve_network(ctx: Context, vm: Any, text: str) -> str:
    t = text.strip()
    for ref, r in ctx.cache.snapshot("network"):
        if t and t == r.get("bridge"):
            return str(ref)
    return resolve(ctx.cache, "network", t, kind="network")


def _locking_choices(ctx: Context, obj: Any) -> list[Choice]:
    return [Choice(k, k.replace("_", " "), v) for k, v in LOCKING_MODES.items()]


def _resolve_locking(ctx: Context, obj: Any, text: str) -> str:
    t = text.strip().lower().replace("-", "_").replace(" ", "_")
    if t in LOCKING_MODES:
        return t
    raise UsageError(f"locking mode {text!r}: one of {', '.join(LOCKING_MODES)}")


def _first_device(ctx: Context, vm: Vm) -> str:
    free = allowed_devices(ctx.cache, vm)
    return free[0] if free else ""


# ------------------------------------------------------------------ static IP settings


def static_ip_reason(vm: Vm) -> str | None:
    """Why xapi would refuse a static IP setting for the VM's VIFs (xapi_vif.ml
    assert_has_feature_static_ip_setting: VM_LACKS_FEATURE), or None."""
    if vm.static_ip_setting:
        return None
    if vm.power_state not in ("Running", "Paused"):
        return (f"{vm.name_label}'s guest agent has not said whether it takes a static "
                "address (start the VM first)")
    return (f"{vm.name_label}'s guest agent does not take static addresses "
            f"({FEATURE}: the Windows management agent does)")


def check_cidr(kind: str, text: str) -> str:
    """An address with its prefix length (10.0.9.7/24), as xapi's Helpers.parse_cidr
    accepts it; a clear one-line error otherwise."""
    t = text.strip()
    version = 4 if kind == "ipv4" else 6
    example = "10.0.9.7/24" if version == 4 else "2001:db8::7/64"
    if "/" not in t:
        raise UsageError(f"{t!r} has no prefix length: write it as {example}")
    try:
        iface = ipaddress.ip_interface(t)
    except ValueError:
        raise UsageError(f"{t!r} is not an IPv{version} address with its prefix length "
                         f"(as {example})") from None
    if iface.version != version:
        raise UsageError(f"{t!r} is an IPv{iface.version} address, not IPv{version}")
    return t


def check_gateway(kind: str, text: str) -> str:
    t = text.strip()
    if not t:
        return ""
    version = 4 if kind == "ipv4" else 6
    try:
        addr = ipaddress.ip_address(t)
    except ValueError:
        raise UsageError(f"gateway {t!r} is not an IPv{version} address") from None
    if addr.version != version:
        raise UsageError(f"gateway {t!r} is an IPv{addr.version} address, not IPv{version}")
    return t


# ------------------------------------------------------------------ add


def _vm_when(cache: Cache, vm: Any) -> str | None:
    """VIFs change on a running, paused or halted VM; not on a suspended one (its
    saved state expects the devices it had) or while it is busy."""
    if vm.is_control_domain:
        return "a control domain's interfaces are the host's to manage"
    if vm.power_state == "Suspended":
        return "it is suspended: resume it or shut it down first"
    if vm.busy:
        return f"it is {vm.doing}"
    if not allowed_devices(cache, vm):
        return "it has as many VIFs as xapi allows"
    return None


def add(cache: Cache, vm: Vm, network: str, device: str | None, mac: str | None,
        locking_mode: str | None, ipv4: str | None, ipv4_gateway: str | None) -> Plan:
    """VIF.create on the first free device (or the one given), then VIF.plug where the
    VM runs and can take it hot, then VIF.configure_ipv4 for a static address. The
    new VIF is removed should the plug fail."""
    why = _vm_when(cache, vm)
    if why is not None:
        raise Refused(why)
    net = cache.get("network", network)
    if net is None:
        raise XapiError("HANDLE_INVALID", ["network", network])
    net_name = printable(str(net.get("name_label", ""))) or str(net.get("bridge", ""))
    reason = network_reason(cache, vm, net)
    if reason is not None:
        raise Refused(f"{net_name}: {reason}")
    free = allowed_devices(cache, vm)
    dev = (device or "").strip() or free[0]
    if dev not in free:
        taken = dev.isdigit() and any(
            (cache.get("vif", v) or {}).get("device") == dev for v in vm.VIFs)
        if taken:
            raise XapiError("DEVICE_ALREADY_EXISTS", [dev],
                            said=f"{vm.name_label} has a VIF at device {dev} already; free: "
                                 f"{', '.join(free)}")
        raise UsageError(f"device {dev!r}: one of {', '.join(free)} (xapi allows "
                         f"{len(free) + len(vm.VIFs)} VIFs)")
    given = (mac or "").strip()
    if given and not _MAC.match(given):
        raise UsageError(f"MAC {given!r} is not six hex pairs (as 02:16:3e:4a:5b:6c)")
    if given and int(given[:2], 16) & 1:
        raise UsageError(f"MAC {given!r} is a multicast address: its first octet must be even")
    mode = locking_mode or "network_default"
    address = (ipv4 or "").strip()
    gateway = (ipv4_gateway or "").strip()
    if gateway and not address:
        raise UsageError("a gateway goes with a static address (--ipv4 10.0.9.7/24)")
    if address:
        check_cidr("ipv4", address)
        check_gateway("ipv4", gateway)
        why = static_ip_reason(vm)
        if why is not None:
            raise Refused(why)
    record = {"device": dev, "network": network, "VM": vm.ref, "MAC": given,
              "MTU": str(as_int(net.get("MTU"), 1500)), "other_config": {},
              "qos_algorithm_type": "", "qos_algorithm_params": {}, "locking_mode": mode,
              "ipv4_allowed": [], "ipv6_allowed": []}
    names = {vm.ref: vm.name_label, network: net_name}
    calls: list[Call] = [Call("VIF.create", (record,), undo=Undo(
        f"the new VIF {dev} of {vm.name_label}", (Call("VIF.destroy", (Result(0),)),)))]
    running = vm.power_state == "Running"
    later = running or bool(address) or mode != "network_default"  # lines use its uuid
    lines = [("vif=$(" if later else "")
             + xe("vif-create", vm_uuid=vm.uuid, network_uuid=str(net.get("uuid", "")),
                  device=dev, mac=given or None)
             + (")" if later else "")]
    if mode != "network_default":  # xe vif-create takes no locking mode
        lines.append(xe("vif-param-set", uuid=Var("vif"), locking_mode=mode))
    notes: list[str] = []
    warnings: list[str] = []
    if not given:
        notes.append("xapi makes its MAC from the VM's mac_seed (the same for this device "
                     "every time).")
    if running:
        err = hotplug_error(cache, vm)
        if err is None:
            calls.append(Call("VIF.plug", (Result(0),), True))
            lines.append(xe("vif-plug", uuid=Var("vif")))
            notes.append(f"Hot-plugged: {vm.name_label} sees the new interface at once.")
        else:
            warnings.append(f"{err.friendly if isinstance(err, XapiError) else err}: the VIF "
                            "is plugged at the VM's next boot, not now.")
    elif vm.power_state == "Paused":
        notes.append("The VM is paused: the VIF is plugged at its next boot (or plug it "
                     "once it runs).")
    else:
        notes.append(f"{vm.name_label} is halted: the VIF is plugged when it starts.")
    if address:
        calls.append(Call("VIF.configure_ipv4", (Result(0), "Static", address, gateway)))
        lines.append(xe("vif-configure-ipv4", uuid=Var("vif"), mode="static",
                        address=address, gateway=gateway or None))
        notes.append(f"The guest agent sets {address} on it"
                     + (f", gateway {gateway}." if gateway else "."))
    title = f"Add a VIF to {vm.name_label} on {net_name} (device {dev})"
    return Plan(title=title, action="vm.vif-add", targets=(vm.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names, notes=tuple(notes), warnings=tuple(warnings))


# ------------------------------------------------------------------ remove, plug, unplug


def _remove_when(cache: Cache, vif: Any) -> str | None:
    vm = Vm.get(cache, vif.VM)
    if vm is None:
        return "its VM is gone"
    if vm.busy:
        return f"{vm.name_label} is {vm.doing}"
    if vif.current_operations:
        return f"it is busy ({vif.current_operations[0]})"
    if vif.currently_attached and vm.power_state == "Paused":
        return "the VM is paused: unpause it first (xapi keeps a plugged VIF of a paused VM)"
    if vif.currently_attached and vm.power_state == "Running":
        err = check_vif(cache, vif, "unplug")
        if err is not None:
            return err.friendly if isinstance(err, XapiError) else str(err)
    return None


def remove(cache: Cache, vif: Vif) -> Plan:
    """Unplug it from the running guest first (xapi refuses to destroy a VIF attached
    to a running VM), then VIF.destroy."""
    why = _remove_when(cache, vif)
    if why is not None:
        raise Refused(why)
    vm = _vm_of(cache, vif)
    uuid = _uuid(cache, "vif", vif.ref)
    plugged = vif.currently_attached and vm.power_state == "Running"
    calls: list[Call] = []
    lines: list[str] = []
    if plugged:
        calls.append(Call("VIF.unplug", (vif.ref,), True))
        lines.append(xe("vif-unplug", uuid=uuid))
    calls.append(Call("VIF.destroy", (vif.ref,)))
    lines.append(xe("vif-destroy", uuid=uuid))
    notes = ["The network stays; only this interface of the VM goes."]
    if plugged:
        notes.append(f"{vm.name_label} loses the interface now"
                     + (f" (and {', '.join(vif.ips)})." if vif.ips else "."))
    return Plan(title=f"Remove {_where(vif)}", action="vif.destroy", targets=(vif.ref,),
                calls=tuple(calls), xe=tuple(lines),
                names={vif.ref: vif_name(vif), vm.ref: vm.name_label},
                disruptive=plugged, notes=tuple(notes))


def _simple(cache: Cache, vif: Vif, op: str, verb: str, note: str,
            disruptive: bool = False) -> Plan:
    err = check_vif(cache, vif, op)
    if err is not None:
        raise err
    vm = _vm_of(cache, vif)
    return Plan(title=f"{verb} {_where(vif)}", action=f"vif.{op}", targets=(vif.ref,),
                calls=(Call(f"VIF.{op}", (vif.ref,), True),),
                xe=(xe(f"vif-{op}", uuid=_uuid(cache, "vif", vif.ref)),),
                names={vif.ref: vif_name(vif), vm.ref: vm.name_label},
                disruptive=disruptive, notes=(note,))


def plug(cache: Cache, vif: Vif) -> Plan:
    return _simple(cache, vif, "plug", "Plug",
                   "The guest sees the interface at once (activate).")


def unplug(cache: Cache, vif: Vif) -> Plan:
    return _simple(cache, vif, "unplug", "Unplug",
                   "The guest loses the interface until it is plugged again or the VM "
                   "restarts; the VIF stays configured.", True)


def _set_locking_choices(ctx: Context, vif: Any) -> list[Choice]:
    return [replace(c, reason="its mode now") if c.value == vif.locking_mode else c
            for c in _locking_choices(ctx, vif)]


def set_locking(cache: Cache, vif: Vif, locking_mode: str) -> Plan:
    """VIF.set_locking_mode (xapi_vif.ml): what passes the VIF, at once where it is
    plugged (xapi updates the switch rules of a running VIF)."""
    if locking_mode not in LOCKING_MODES:
        raise UsageError(f"locking mode {locking_mode!r}: one of {', '.join(LOCKING_MODES)}")
    if locking_mode == vif.locking_mode:
        raise Refused(f"it is {locking_mode.replace('_', ' ')} already")
    vm = _vm_of(cache, vif)
    r = cache.get("vif", vif.ref) or {}
    allowed = [*(r.get("ipv4_allowed") or ()), *(r.get("ipv6_allowed") or ())]
    net = cache.get("network", vif.network) or {}
    default = str(net.get("default_locking_mode") or "unlocked")
    notes = {"network_default": f"The network's default applies: {default}.",
             "unlocked": "Any traffic passes.",
             "locked": "Only traffic from the allowed addresses passes: "
                       + (", ".join(printable(str(a)) for a in allowed) if allowed
                          else "none is set"),
             "disabled": "No traffic passes at all."}
    warnings = []
    stops = locking_mode == "disabled" or (locking_mode == "locked" and not allowed) or (
        locking_mode == "network_default" and default == "disabled")
    if stops and vif.currently_attached:
        warnings.append(f"{printable(vm.name_label)} loses its traffic on this interface now.")
    return Plan(title=f"Set the locking mode of {_where(vif)} to "
                      f"{locking_mode.replace('_', ' ')}",
                action="vif.set-locking-mode", targets=(vif.ref,),
                calls=(Call("VIF.set_locking_mode", (vif.ref, locking_mode)),),
                xe=(xe("vif-param-set", uuid=_uuid(cache, "vif", vif.ref),
                       locking_mode=locking_mode),),
                names={vif.ref: vif_name(vif), vm.ref: vm.name_label},
                notes=(notes[locking_mode],), warnings=tuple(warnings),
                disruptive=stops and vif.currently_attached)


# ------------------------------------------------------------------ configure IP


def _ip_when(cache: Cache, vif: Any) -> str | None:
    vm = Vm.get(cache, vif.VM)
    if vm is None:
        return "its VM is gone"
    return static_ip_reason(vm)


def _mode_choices(ctx: Context, vif: Any) -> list[Choice]:
    return [Choice("Static", "static", "this address, set by the guest agent"),
            Choice("None", "none", "no static address: the guest's own (DHCP)")]


def _resolve_mode(ctx: Context, vif: Any, text: str) -> str:
    t = text.strip().lower()
    if t in ("static", "none"):
        return t.capitalize()
    if t == "dhcp":
        return "None"
    raise UsageError(f"mode {text!r}: static or none")


def _configure(kind: str, cache: Cache, vif: Vif, mode: str | None, address: str | None,
               gateway: str | None) -> Plan:
    why = _ip_when(cache, vif)
    if why is not None:
        raise Refused(why)
    addr = (address or "").strip()
    gw = (gateway or "").strip()
    mode = mode or ("Static" if addr else None)
    if mode is None:
        raise UsageError(f"give --address (a static IP{kind[-1]} address) or --mode none")
    if mode == "Static":
        if not addr:
            raise UsageError("a static setting needs --address "
                             + ("10.0.9.7/24" if kind == "ipv4" else "2001:db8::7/64"))
        check_cidr(kind, addr)
        check_gateway(kind, gw)
    else:
        addr, gw = "", ""
    vm = _vm_of(cache, vif)
    uuid = _uuid(cache, "vif", vif.ref)
    label = "IPv4" if kind == "ipv4" else "IPv6"
    title = (f"Set {label} {addr}" + (f" via {gw}" if gw else "") + f" on {_where(vif)}"
             if mode == "Static" else f"Clear the static {label} setting of {_where(vif)}")
    notes = ["The guest agent applies it"
             + (" now." if vif.currently_attached and vm.power_state == "Running"
                else " when the VIF is next plugged.")]
    if mode == "Static" and kind == "ipv4" and vif.ips:
        notes.append(f"The guest reports {', '.join(vif.ips)} on it now.")
    return Plan(title=title, action=f"vif.configure-{kind}", targets=(vif.ref,),
                calls=(Call(f"VIF.configure_{kind}", (vif.ref, mode, addr, gw)),),
                xe=(xe(f"vif-configure-{kind}", uuid=uuid, mode=mode.lower(),
                       address=addr or None, gateway=gw or None),),
                names={vif.ref: vif_name(vif), vm.ref: vm.name_label}, notes=tuple(notes))


def configure_ipv4(cache: Cache, vif: Vif, mode: str | None, address: str | None,
                   gateway: str | None) -> Plan:
    return _configure("ipv4", cache, vif, mode, address, gateway)


def configure_ipv6(cache: Cache, vif: Vif, mode: str | None, address: str | None,
                   gateway: str | None) -> Plan:
    return _configure("ipv6", cache, vif, mode, address, gateway)


def _ip_params(kind: str) -> tuple[Param, ...]:
    example = "10.0.9.7/24" if kind == "ipv4" else "2001:db8::7/64"
    return (
        Param("mode", ParamKind.PICK, "Mode", ("--mode",),
              "static or none (default: static when --address is given)", required=False,
              choices=_mode_choices, resolve=_resolve_mode, metavar="MODE"),
        Param("address", ParamKind.TEXT, "Address", ("--address",),
              f"the address with its prefix length ({example})", required=False,
              metavar="CIDR"),
        Param("gateway", ParamKind.TEXT, "Gateway", ("--gateway",),
              "the default gateway (optional)", required=False, metavar="ADDRESS"),
    )


# ------------------------------------------------------------------ the declarations


_RULES_IP = ("The guest's agent sets the address (it states feature-static-ip-setting: the "
             "Windows management agent does). Mode none hands the interface back to the "
             "guest's own configuration.")

declare(
    Operation("vm.vif-add", VM_NET, "Add VIF", "w", "create", "vif-create", "VIF added",
              "Add a network interface to the VM, hot-plugged where it runs", add,
              when=_vm_when, group="vif", also=("vm vif-add",),
              rules="The device is the first free one (xapi allows 0-6 before 25.29, "
                    "0-15 since). An empty MAC is made by xapi from the VM's mac_seed. "
                    "A static IPv4 address needs a guest agent that takes one.",
              params=(Param("network", ParamKind.PICK, "Network", ("--network",),
                            "the network: its name, bridge (xenbr0) or UUID",
                            choices=_network_choices, resolve=_resolve_network,
                            metavar="NETWORK"),
                      Param("device", ParamKind.TEXT, "Device", ("--device",),
                            "the device number (default: the first free one)",
                            required=False, default=_first_device, metavar="N"),
                      Param("mac", ParamKind.TEXT, "MAC", ("--mac",),
                            "the MAC address (default: made by xapi)", required=False,
                            metavar="MAC", note="empty: made by xapi"),
                      Param("locking_mode", ParamKind.PICK, "Locking mode",
                            ("--locking-mode",),
                            "network_default, unlocked, locked or disabled "
                            "(default: network_default)", required=False,
                            choices=_locking_choices, resolve=_resolve_locking,
                            metavar="MODE"),
                      Param("ipv4", ParamKind.TEXT, "Static IPv4", ("--ipv4",),
                            "a static IPv4 address for the guest (10.0.9.7/24)",
                            required=False, metavar="CIDR", fixed=static_ip_reason),
                      Param("ipv4_gateway", ParamKind.TEXT, "IPv4 gateway",
                            ("--ipv4-gateway",), "its gateway (optional)",
                            required=False, metavar="ADDRESS", fixed=static_ip_reason))),
    Operation("vif.destroy", VIF, "Remove", "x", "destroy", "vif-destroy", "removed",
              "Unplug the VIF if plugged, then remove it; the network stays",
              remove, when=_remove_when, impact=Impact.DISRUPTIVE, footer=True),
    Operation("vif.plug", VIF, "Plug (activate)", "p", "plug", "vif-plug", "plugged",
              "Plug the VIF into the running guest", plug, allowed="plug"),
    Operation("vif.unplug", VIF, "Unplug (deactivate)", "u", "unplug", "vif-unplug",
              "unplugged", "Unplug the VIF from the running guest; it stays configured",
              unplug, allowed="unplug", impact=Impact.DISRUPTIVE),
    Operation("vif.set-locking-mode", VIF, "Locking mode", "l", "set-locking-mode",
              "vif-param-set", "locking mode set",
              "Set what traffic the VIF lets through (network default, unlocked, locked, "
              "disabled)", set_locking,
              params=(Param("locking_mode", ParamKind.PICK, "Locking mode",
                            ("--locking-mode",),
                            "network_default, unlocked, locked or disabled",
                            choices=_set_locking_choices, resolve=_resolve_locking,
                            metavar="MODE"),)),
    Operation("vif.configure-ipv4", VIF, "Static IPv4", "i", "configure-ipv4",
              "vif-configure-ipv4", "IPv4 configured",
              "Give the guest a static IPv4 address on this VIF (or clear it)",
              configure_ipv4, when=_ip_when, rules=_RULES_IP, params=_ip_params("ipv4")),
    Operation("vif.configure-ipv6", VIF, "Static IPv6", "I", "configure-ipv6",
              "vif-configure-ipv6", "IPv6 configured",
              "Give the guest a static IPv6 address on this VIF (or clear it)",
              configure_ipv6, when=_ip_when, rules=_RULES_IP, params=_ip_params("ipv6")),
)

