"""``xsctl network list``. The operations (``network create|rename|set|destroy``,
``vlan create|destroy``, ``bond create|destroy``) are generated from the catalogue
(commands/ops.py); what a network is (a NIC's, a VLAN, a bond, internal) comes from
xsctl.xapi.networks, as in the app's Networks view."""

from __future__ import annotations

import argparse
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, print_table, say
from xsctl.xapi.cache import Cache
from xsctl.xapi.networks import Network, attachments, networks
from xsctl.xapi.ops.network import CLASSES


def network_json(cache: Cache, n: Network) -> dict[str, Any]:
    """xapi's own texts (the record's), for scripts."""
    r = cache.get("network", n.ref) or {}
    return {
        "uuid": n.uuid, "name_label": r.get("name_label", ""),
        "name_description": r.get("name_description", ""), "bridge": r.get("bridge", ""),
        "MTU": n.MTU, "kind": n.kind, "management": n.management,
        "VLAN": list(n.tags), "bond_mode": list(n.bond_modes),
        "PIFs": [{"host": p.host_name, "device": p.device, "VLAN": p.VLAN,
                  "currently_attached": p.currently_attached, "management": p.management,
                  "bond_members": list(p.bond_members), "uuid": p.uuid} for p in n.pifs],
        "VIFs": [{"VM": a.vm_name, "kind": a.what, "device": a.device, "MAC": a.MAC,
                  "currently_attached": a.currently_attached}
                 for a in attachments(cache, n)],
    }


def cmd_network_list(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        nets = networks(cache)
        if args.json:
            print_json([network_json(cache, n) for n in nets])
            return 0
        rows = []
        for n in nets:
            vms = sorted({a.vm_name for a in attachments(cache, n) if a.what == "VM"},
                         key=str.lower)
            attached = sum(1 for p in n.pifs if p.currently_attached)
            rows.append([("* " if n.management else "  ") + n.display_name, n.kind_text,
                         ", ".join(n.devices) or "-",
                         ", ".join(map(str, n.tags)) or "-",
                         ", ".join(n.bond_modes) or "-", n.MTU,
                         f"{attached}/{len(n.pifs)}" if n.pifs else "-", len(vms),
                         n.bridge, n.uuid])
        print_table(["name", "kind", "nics", "vlan", "bond", "mtu", "plugged", "vms",
                     "bridge", "uuid"], rows)
        say("(* the management network)")
        return 0
