"""Network operations: a new internal network, a VLAN, a bond; rename, describe and
delete a network; take a VLAN or a bond down.

xapi gives networks no allowed_operations, so every gate here is a rule of ours,
said before any call, that matches what xapi would refuse:

* ``ocaml/xapi/xapi_network.ml`` ``destroy``: ``NETWORK_CONTAINS_VIF`` while a VIF is
  attached, ``NETWORK_CONTAINS_PIF`` while a PIF is on it,
  ``CANNOT_DESTROY_SYSTEM_NETWORK`` for the host-internal management network; the VIFs
  of halted VMs go with it, so xsctl refuses while any VIF uses it and names the VMs.
  A VLAN's or a bond's network is emptied first, as ``xe network-destroy`` asks the
  user to: ``VLAN.destroy`` of each host's VLAN (xapi_vlan.ml), ``Bond.destroy`` of
  each host's bond (xapi_bond.ml).
* ``xapi_vlan.ml`` ``create`` (through ``xapi_pool.ml create_VLAN_from_PIF``, as
  XenCenter's New Network wizard and ``xe pool-vlan-create`` do): a VLAN goes on a
  NIC's or a bond's PIF, never on a VLAN or a bond member, with a tag of 0 to 4094
  not yet used on that PIF.
* ``xapi_bond.ml`` ``create``: members of one host, in no bond, untagged, at most one
  with an IP configuration. XenCenter bonds the same NICs on every host of the pool,
  one ``Bond.create`` per host on one new network; so does xsctl.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.models import NULL, Pool
from xsctl.xapi.networks import (
    BOND,
    BOND_MODES,
    INTERNAL,
    MAX_TAG,
    NIC,
    SYSTEM,
    VLAN,
    Network,
    attachments,
    networks,
)
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
from xsctl.xapi.ops.pool import POOL
from xsctl.xapi.ops.resolve import resolve
from xsctl.xapi.storage import some

CLASSES = ("pool", "host", "network", "PIF", "VLAN", "Bond", "VIF", "VM")
MIN_MTU, MAX_MTU = 68, 9216  # xapi_pif.ml assert_mtu_in_range (IPv4's least, jumbo's most)
MAX_MEMBERS = 4  # XenCenter's bond dialog takes 2 to 4 NICs


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(n.ref, n.display_name) for n in networks(cache)]


def resolve_network(cache: Cache, spec: str) -> str:
    """By name, UUID, UUID prefix, or bridge (``xenbr0``), as xe's network-uuid or
    bridge= would."""
    hits = [ref for ref, r in cache.snapshot("network") if r.get("bridge") == spec.strip()]
    if len(hits) == 1 and not any(r.get("name_label") == spec for _, r in cache.snapshot("network")):
        return hits[0]
    return resolve(cache, "network", spec, kind="network")


def _load(cache: Cache, ref: str) -> Network | None:
    return Network.get(cache, ref)


def _explain(net: Any, op: str) -> XsctlError | None:
    return None  # xapi computes no allowed_operations for networks


NETWORK = Kind(
    cls="network", noun="network", nouns="networks", resolve=resolve_network, load=_load,
    name=lambda n: n.display_name, members=_members, explain=_explain, classes=CLASSES,
)
# the pool, for what is made from nothing (an internal network, a bond): the CLI loads
# the network classes to plan them
IN_POOL = replace(POOL, classes=tuple(dict.fromkeys(POOL.classes + CLASSES)))


# ------------------------------------------------------------------ helpers


def _names(cache: Cache, net: Network | None = None) -> dict[str, str]:
    out: dict[str, str] = {}
    if net is not None:
        out[net.ref] = net.display_name
        for p in net.pifs:
            out[p.ref] = f"{p.shown_device} on {p.host_name}"
    pool = Pool.of(cache)
    if pool is not None:
        out[pool.ref] = pool.name_label or "pool"
    return out


def _users(cache: Cache, net: Network) -> list[str]:
    seen: dict[str, None] = {}
    for a in attachments(cache, net):
        seen[a.vm_name if a.what == "VM" else f"{a.what} {a.vm_name}"] = None
    return list(seen)


def _new_record(name: str, description: str, mtu: int) -> dict[str, Any]:
    return {"name_label": name, "name_description": description, "MTU": mtu,
            "other_config": {}, "tags": []}


def _new_network_step(name: str, description: str, mtu: int) -> Call:
    return Call("network.create", (_new_record(name, description, mtu),),
                undo=Undo(f"the new network {name}", (Call("network.destroy", (Result(0),)),)))


def _new_network_xe(name: str, description: str, mtu: int) -> str:
    return "net=$(" + xe("network-create", name_label=name,
                         name_description=description or None,
                         MTU=mtu if mtu != 1500 else None) + ")"


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise UsageError("Name: a value is needed")
    return name


# ------------------------------------------------------------------ create


def create(cache: Cache, pool: Pool, name: str, description: str | None,
           mtu: int | None) -> Plan:
    name = _check_name(name)
    mtu = mtu or 1500
    desc = (description or "").strip()
    return Plan(
        title=f"Create the internal network {name}", action="network.create",
        targets=(pool.ref,), calls=(Call("network.create", (_new_record(name, desc, mtu),)),),
        xe=(xe("network-create", name_label=name, name_description=desc or None,
               MTU=mtu if mtu != 1500 else None),),
        # what is reported made ("lab: created"): no call names the pool
        names={**_names(cache), pool.ref: name},
        notes=("It has no NIC: VMs on it reach only each other, on the host they run on "
               "(a VM on it can start on any host, and talks to the VMs on that host).",))


def _vlan_when(cache: Cache, net: Any) -> str | None:
    kind = net.kind
    if kind == SYSTEM:
        return "it is xapi's host-internal management network"
    if kind == INTERNAL:
        return "it is internal: a VLAN needs a NIC or a bond"
    if kind == VLAN:
        return "it is a VLAN itself: VLANs go on a NIC or a bond"
    if net.bonded:
        return "its NICs are in a bond: put the VLAN on the bond's network"
    if net.vlan_base() is None:
        return "it has no NIC a VLAN can go on"
    return None


def vlan_create(cache: Cache, net: Network, tag: int, name: str,
                description: str | None) -> Plan:
    why = _vlan_when(cache, net)
    if why is not None:
        raise Refused(why)
    name = _check_name(name)
    if not 0 <= tag <= MAX_TAG:
        raise UsageError(f"VLAN tag: {tag} is out of range (0 to {MAX_TAG})")
    base = net.vlan_base()
    assert base is not None
    on = {p.ref for p in net.pifs}
    for _, v in cache.snapshot("vlan"):
        if v.get("tagged_PIF") in on and str(v.get("tag")) == str(tag):
            untagged = cache.get("pif", str(v.get("untagged_PIF"))) or {}
            other = Network.get(cache, str(untagged.get("network")))
            where = f", as {other.display_name}" if other is not None else ""
            raise Refused(f"VLAN {tag} is on {base.device} already{where}")
    desc = (description or "").strip()
    hosts = {p.host_name for p in net.pifs}
    mtu = net.MTU or 1500
    names = _names(cache, net)
    calls = (
        _new_network_step(name, desc, mtu),
        Call("pool.create_VLAN_from_PIF", (base.ref, Result(0), tag), use_async=True),
    )
    lines = (_new_network_xe(name, desc, mtu),
             xe("pool-vlan-create", pif_uuid=base.uuid, vlan=tag, network_uuid=Var("net")))
    notes = [f"VLAN {tag} on {base.device} of every host that has {net.display_name} "
             f"({some(sorted(hosts, key=str.lower), 4)}); a new network {name} carries it."]
    # xapi_pool.ml create_VLAN_from_PIF: only the PIFs of enabled hosts get one
    off = sorted({p.host_name for p in net.pifs
                  if not (cache.get("host", p.host) or {}).get("enabled", True)}, key=str.lower)
    if off:
        notes.append(f"Not on {some(off)}, in maintenance now: xapi makes VLANs on enabled "
                     "hosts only (add it there later with xe vlan-create).")
    return Plan(title=f"Create VLAN {tag} on {net.display_name}", action="vlan.create",
                targets=(net.ref,), calls=calls, xe=lines, names=names, notes=tuple(notes))


def _physical(cache: Cache) -> list[Network]:
    return [n for n in networks(cache) if n.kind == NIC]


def _nic_choices(ctx: Context, pool: Any) -> list[Choice]:
    out = []
    every = {ref for ref, _ in ctx.cache.snapshot("host")}
    for n in _physical(ctx.cache):
        reason = None
        if n.bonded or any(p.bonded for p in n.pifs):
            reason = "it is in a bond already"
        elif {p.host for p in n.pifs} != every:
            reason = "not every host has it"
        out.append(Choice(n.ref, " / ".join(n.devices), n.display_name, reason))
    return out


def _resolve_nic(ctx: Context, pool: Any, spec: str) -> str:
    """A NIC by its device (``eth2``) or its network's name or UUID."""
    by_device = [n.ref for n in _physical(ctx.cache) if spec.strip() in n.devices]
    if len(by_device) == 1:
        return by_device[0]
    return resolve_network(ctx.cache, spec)


def _mode_choices(ctx: Context, pool: Any) -> list[Choice]:
    backends = {str((r.get("software_version") or {}).get("network_backend", ""))
                for _, r in ctx.cache.snapshot("host")}
    lacp = ("LACP needs the openvswitch network backend" if "bridge" in backends else None)
    words = {"balance-slb": "both NICs carry traffic, by source MAC; no switch setup",
             "active-backup": "one NIC carries traffic, the other takes over",
             "lacp": "802.3ad: the switch must be set up for it"}
    return [Choice(m, m, words[m], lacp if m == "lacp" else None) for m in BOND_MODES]


def _resolve_mode(ctx: Context, pool: Any, spec: str) -> str:
    m = spec.strip().lower()
    if m not in BOND_MODES:
        raise UsageError(f"bond mode: {spec!r} is not one of {', '.join(BOND_MODES)}")
    return m


def bond_create(cache: Cache, pool: Pool, nics: frozenset[str], mode: str | None,
                name: str) -> Plan:
    name = _check_name(name)
    mode = mode or "active-backup"
    if mode not in BOND_MODES:
        raise UsageError(f"bond mode: {mode!r} is not one of {', '.join(BOND_MODES)}")
    if not 2 <= len(nics) <= MAX_MEMBERS:
        raise Refused(f"a bond joins 2 to {MAX_MEMBERS} NICs ({len(nics)} chosen)")
    nets = [n for r in sorted(nics) if (n := Network.get(cache, r)) is not None]
    if len(nets) != len(nics):
        raise Refused("a chosen NIC is no longer in the pool")
    names = _names(cache)
    hosts = sorted({p.host for n in nets for p in n.pifs},
                   key=lambda h: str((cache.get("host", h) or {}).get("name_label", "")))
    calls: list[Call] = [_new_network_step(name, "", 1500)]
    lines = [_new_network_xe(name, "", 1500)]
    warnings: list[str] = []
    for host in hosts:
        pifs = []
        for n in nets:
            on = [p for p in n.pifs if p.host == host]
            if not on:
                raise Refused(f"{n.display_name} has no NIC on "
                              f"{(cache.get('host', host) or {}).get('name_label', host)}")
            pifs.append(on[0])
        ips = [p for p in pifs if p.ip_mode not in ("", "None")]
        if len(ips) > 1:
            raise Refused(f"{ips[0].host_name}: {ips[0].device} and {ips[1].device} both have "
                          "an IP configuration (a bond keeps one)")
        for p in pifs:
            names[p.ref] = f"{p.device} on {p.host_name}"
            if p.management:
                warnings.append(f"The management interface of {p.host_name} ({p.device}) moves "
                                "onto the bond: its connection drops for a moment.")
        i = len(calls)
        calls.append(Call("Bond.create", (Result(0), [p.ref for p in pifs], "", mode, {}),
                          use_async=True,
                          undo=Undo(f"the bond on {pifs[0].host_name}",
                                    (Call("Bond.destroy", (Result(i),)),))))
        lines.append(xe("bond-create", network_uuid=Var("net"),
                        pif_uuids=",".join(p.uuid for p in pifs), mode=mode))
    devices = " + ".join(n.devices[0] for n in nets)
    notes = (f"{devices} join in a {mode} bond on each host "
             f"({len(hosts)}); their VMs move onto the bond's network, {name}.",)
    names[pool.ref] = name  # what is reported made; no call names the pool
    return Plan(title=f"Bond {devices} ({mode})", action="bond.create", targets=(pool.ref,),
                calls=tuple(calls), xe=tuple(lines), names=names,
                warnings=tuple(dict.fromkeys(warnings)), disruptive=bool(warnings),
                notes=notes)


# ------------------------------------------------------------------ rename, describe


def rename(cache: Cache, net: Network, name: str) -> Plan:
    name = _check_name(name)
    return Plan(title=f"Rename {net.display_name} to {name}", action="network.rename",
                targets=(net.ref,), calls=(Call("network.set_name_label", (net.ref, name)),),
                xe=(xe("network-param-set", uuid=net.uuid, name_label=name),),
                names=_names(cache, net))


def describe(cache: Cache, net: Network, description: str | None) -> Plan:
    text = (description or "").strip()
    return Plan(title=f"Set the description of {net.display_name}", action="network.set",
                targets=(net.ref,),
                calls=(Call("network.set_name_description", (net.ref, text)),),
                xe=(xe("network-param-set", uuid=net.uuid, name_description=text),),
                names=_names(cache, net))


# ------------------------------------------------------------------ delete


def _management_on(net: Any) -> str:
    hosts = sorted({p.host_name for p in net.pifs if p.management}, key=str.lower)
    return (f"the management interface of {some(hosts)} is on it: move it first "
            "(Hosts view, I)")


def _destroy_when(cache: Cache, net: Any) -> str | None:
    kind = net.kind
    if kind == SYSTEM:
        return "it is xapi's host-internal management network"
    if net.management:
        return _management_on(net)
    if kind == NIC:
        return "it is a NIC's own network: it goes when the NIC does"
    users = _users(cache, net)
    if users:
        return (f"it has VIFs of {some(users)}: remove them, or move them to another "
                "network, first")
    return None


def _teardown(net: Network) -> tuple[list[Call], list[str]]:
    """What empties a VLAN's or a bond's network: VLAN.destroy or Bond.destroy of
    each host's."""
    calls: list[Call] = []
    lines: list[str] = []
    for p in net.pifs:
        if p.vlan != NULL:
            calls.append(Call("VLAN.destroy", (p.vlan,)))
            lines.append(xe("vlan-destroy", uuid=p.uuid))
        elif p.bond != NULL:
            calls.append(Call("Bond.destroy", (p.bond,), use_async=True))
            lines.append(xe("bond-destroy", uuid=p.bond_uuid))
    return calls, lines


def destroy(cache: Cache, net: Network) -> Plan:
    why = _destroy_when(cache, net)
    if why is not None:
        raise Refused(why)
    calls, lines = _teardown(net)
    calls.append(Call("network.destroy", (net.ref,)))
    lines.append(xe("network-destroy", uuid=net.uuid))
    names = _names(cache, net)
    notes = []
    if net.kind == VLAN:
        notes.append(f"VLAN {', '.join(map(str, net.tags))} is removed from each host first.")
    if net.kind == BOND:
        notes.append("Each host's bond is taken apart first: its NICs carry their own "
                     "networks again.")
    for p in net.pifs:
        if p.bond != NULL:
            names[p.bond] = f"the bond on {p.host_name}"
        if p.vlan != NULL:
            names[p.vlan] = f"VLAN {p.VLAN} on {p.host_name}"
    return Plan(title=f"Delete the network {net.display_name}", action="network.destroy",
                targets=(net.ref,), calls=tuple(calls), xe=tuple(lines), names=names,
                destructive=True, notes=tuple(notes))


def _vlan_destroy_when(cache: Cache, net: Any) -> str | None:
    if net.kind != VLAN:
        return "it is not a VLAN"
    if net.management:
        return _management_on(net)
    return None


def vlan_destroy(cache: Cache, net: Network) -> Plan:
    why = _vlan_destroy_when(cache, net)
    if why is not None:
        raise Refused(why)
    calls = [Call("VLAN.destroy", (p.vlan,)) for p in net.pifs if p.vlan != NULL]
    lines = [xe("vlan-destroy", uuid=p.uuid) for p in net.pifs if p.vlan != NULL]
    names = _names(cache, net)
    for p in net.pifs:
        if p.vlan != NULL:
            names[p.vlan] = f"VLAN {p.VLAN} on {p.host_name}"
    running = [a.vm_name for a in attachments(cache, net) if a.currently_attached]
    notes = [f"The network {net.display_name} stays, internal to each host "
             "(xsctl network destroy removes it)."]
    if running:
        notes.append(f"Running VMs lose the VLAN: {some(running, 5)}.")
    return Plan(title=f"Remove VLAN {', '.join(map(str, net.tags))} ({net.display_name})",
                action="vlan.destroy", targets=(net.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names, disruptive=bool(running), notes=tuple(notes))


def _bond_destroy_when(cache: Cache, net: Any) -> str | None:
    return None if net.kind == BOND else "it is not a bond"


def bond_destroy(cache: Cache, net: Network) -> Plan:
    why = _bond_destroy_when(cache, net)
    if why is not None:
        raise Refused(why)
    bonds = [p for p in net.pifs if p.bond != NULL]
    names = _names(cache, net)
    for p in bonds:
        names[p.bond] = f"the bond on {p.host_name}"
    warnings = [f"The management interface of {p.host_name} moves back to "
                f"{p.bond_members[0] if p.bond_members else 'a member'}: its connection "
                "drops for a moment." for p in bonds if p.management]
    return Plan(title=f"Take apart the bond {net.display_name}", action="bond.destroy",
                targets=(net.ref,),
                calls=tuple(Call("Bond.destroy", (p.bond,), use_async=True) for p in bonds),
                xe=tuple(xe("bond-destroy", uuid=p.bond_uuid) for p in bonds), names=names,
                warnings=tuple(warnings), disruptive=True,
                notes=(f"The network {net.display_name} stays, with no NIC; the VMs on it "
                       "move to the first member's network on their host.",))


def _set_mode_choices(ctx: Context, net: Any) -> list[Choice]:
    """The modes, the one every host's bond has now said so."""
    now = set(net.bond_modes)
    return [replace(c, reason="its mode now") if c.reason is None and now == {c.value} else c
            for c in _mode_choices(ctx, net)]


def bond_set_mode(cache: Cache, net: Network, mode: str) -> Plan:
    why = _bond_destroy_when(cache, net)
    if why is not None:
        raise Refused(why)
    if mode not in BOND_MODES:
        raise UsageError(f"bond mode: {mode!r} is not one of {', '.join(BOND_MODES)}")
    bonds = [p for p in net.pifs if p.bond != NULL and p.bond_mode != mode]
    if not bonds:
        raise Refused(f"its bonds are in {mode} mode already")
    names = _names(cache, net)
    for p in bonds:
        names[p.bond] = f"the bond on {p.host_name}"
    running = [a.vm_name for a in attachments(cache, net) if a.currently_attached]
    notes = [f"On {some(sorted({p.host_name for p in bonds}, key=str.lower), 4)}: "
             f"{', '.join(sorted({p.bond_mode for p in bonds}))} → {mode}. The properties "
             "the new mode keeps stay; the others take its defaults."]
    warnings = []
    if mode == "lacp":
        warnings.append("The switch ports of the bonded NICs must be set up for LACP "
                        "(802.3ad) first, or the bond carries no traffic.")
    if running or net.management:
        notes.append("Traffic on it may pause a moment while each bond changes.")
    return Plan(title=f"Set the bond {net.display_name} to {mode}", action="bond.set_mode",
                targets=(net.ref,),
                calls=tuple(Call("Bond.set_mode", (p.bond, mode)) for p in bonds),
                xe=tuple(xe("bond-set-mode", uuid=p.bond_uuid, mode=mode) for p in bonds),
                names=names, notes=tuple(notes), warnings=tuple(warnings),
                disruptive=bool(running) or net.management)


# ------------------------------------------------------------------ declarations

_NAME = Param("name", ParamKind.TEXT, "Name", ("--name",), "the new network's name",
              metavar="NAME")
_DESC = Param("description", ParamKind.TEXT, "Description", ("--description",),
              "what it is for", required=False, metavar="TEXT",
              default=lambda ctx, o: "")
_MTU = Param("mtu", ParamKind.COUNT, "MTU", ("--mtu",), "the largest packet, in bytes (1500)",
             required=False, minimum=MIN_MTU, maximum=MAX_MTU, metavar="BYTES",
             default=lambda ctx, o: "1500")
_TAG = Param("tag", ParamKind.COUNT, "VLAN tag", ("--tag",),
             f"the 802.1Q tag, 0 to {MAX_TAG}", minimum=0, maximum=MAX_TAG, metavar="TAG")
_NICS = Param("nics", ParamKind.PICK_MANY, "NICs", ("--nic",),
              "a NIC to bond, by device (eth2) or its network's name; 2 to 4",
              choices=_nic_choices, resolve=_resolve_nic, metavar="NIC",
              note="The NICs to join (2 to 4); every host bonds the same ones")
_MODE = Param("mode", ParamKind.PICK, "Bond mode", ("--mode",),
              "balance-slb, active-backup or lacp (active-backup)", required=False,
              choices=_mode_choices, resolve=_resolve_mode, metavar="MODE")

declare(
    Operation("network.create", IN_POOL, "New internal network", "n", "create",
              "network-create", "created",
              "Create a network with no NIC: VMs on it reach each other on their host",
              create, group="network", params=(_NAME, _DESC, _MTU)),
    Operation("bond.create", IN_POOL, "New bond", "b", "create", "bond-create", "created",
              "Join NICs in a bond on every host, on a new network", bond_create,
              group="bond", impact=Impact.DISRUPTIVE, params=(_NICS, _MODE, _NAME)),
    Operation("network.rename", NETWORK, "Rename", "r", "rename", "network-param-set",
              "renamed", "Give the network a new name", rename,
              params=(Param("name", ParamKind.TEXT, "Name", ("--name",), "the new name",
                            metavar="NAME", default=lambda ctx, n: n.name_label),)),
    Operation("network.set", NETWORK, "Describe", "e", "set", "network-param-set", "changed",
              "Set the network's description", describe,
              params=(Param("description", ParamKind.TEXT, "Description",
                            ("--description",), "the new description (none: cleared)",
                            required=False,
                            metavar="TEXT", default=lambda ctx, n: n.name_description),)),
    Operation("vlan.create", NETWORK, "Add a VLAN", "v", "create", "pool-vlan-create",
              "given a VLAN", "Create a VLAN on this NIC or bond of every host, on a new "
              "network", vlan_create, when=_vlan_when, group="vlan",
              params=(_TAG, _NAME, _DESC),
              rules=f"The tag is 0 to {MAX_TAG}, not yet used on the NIC."),
    Operation("network.destroy", NETWORK, "Delete", "delete", "destroy", "network-destroy",
              "deleted", "Delete the network (a VLAN's or a bond's is taken down first)",
              destroy, when=_destroy_when, impact=Impact.DESTRUCTIVE, footer=True),
    Operation("vlan.destroy", NETWORK, "Remove the VLAN", "V", "destroy", "vlan-destroy",
              "VLAN removed", "Remove the VLAN from every host; the network stays",
              vlan_destroy, when=_vlan_destroy_when, group="vlan",
              impact=Impact.DISRUPTIVE),
    Operation("bond.set_mode", NETWORK, "Change the bond mode", "M", "set-mode",
              "bond-set-mode", "bond mode changed",
              "Set the bond's mode on every host (balance-slb, active-backup, lacp)",
              bond_set_mode, when=_bond_destroy_when, group="bond",
              params=(Param("mode", ParamKind.PICK, "Bond mode", ("--mode",),
                            "balance-slb, active-backup or lacp", choices=_set_mode_choices,
                            resolve=_resolve_mode, metavar="MODE"),)),
    Operation("bond.destroy", NETWORK, "Take the bond apart", "B", "destroy",
              "bond-destroy", "bond taken apart",
              "Take the bond apart on every host; the network stays", bond_destroy,
              when=_bond_destroy_when, group="bond", impact=Impact.DISRUPTIVE),
)
