"""``xsctl sr probe``: what xapi finds on some storage (an NFS server's exports, an
iSCSI target's IQNs and LUNs, an HBA's LUNs, the SRs already there), as a table or
JSON, with the next step on standard error. ``sr create`` and ``sr introduce`` come
from the catalogue (xapi/ops/sr_new.py)."""

from __future__ import annotations

import argparse
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, print_table, warn
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import Pool, Sr
from xsctl.xapi.ops.resolve import resolve_host
from xsctl.xapi.ops.sr_new import TYPES
from xsctl.xapi.probe import Probe, check_device_config, kind_of, masked, probe
from xsctl.xapi.text import human_bytes

_DC = ("--device-config",)


def add_probe(sub: Any, leaf: Any) -> None:
    p = leaf(sub, "probe", cmd_probe, "what xapi finds on some storage: exports, IQNs, "
             "LUNs, existing SRs (xe sr-probe)")
    p.add_argument("--type", required=True, metavar="TYPE",
                   help="the SR type: " + ", ".join(TYPES))
    p.add_argument("--device-config", dest="device_config", action="append", default=[],
                   metavar="KEY=VALUE", help="a device-config key (repeat for each)")
    p.add_argument("--host", metavar="HOST", help="probe from this host (default: the master)")


def _pairs(items: list[str]) -> dict[str, str]:
    from xsctl.xapi.ops.sr_new import _DC as param

    return param.parse_pairs(items)


def _size(n: int | None) -> str:
    return human_bytes(n) if n is not None else "-"


def cmd_probe(args: argparse.Namespace) -> int:
    sr_type = args.type.strip().lower()
    dc = _pairs(args.device_config)
    kind = kind_of(sr_type, dc) if sr_type in TYPES else None
    if kind is None:
        raise UsageError(f"--type: one of {', '.join(TYPES)} (not {args.type!r})")
    dc = {**kind.fixed, **dc}
    check_device_config(kind, dc, for_probe=True)
    with open_client(args, ["pool", "host", "SR", "PBD", "SM"]) as client:
        cache = client.cache
        if args.host:
            host = resolve_host(cache, args.host)
        else:
            pool = Pool.of(cache)
            if pool is None:
                raise UsageError("no pool in view to probe from")
            host = pool.master
        found = probe(client.conn.call, host, sr_type, dc)
        in_pool = {str(r.get("uuid")): ref for ref, r in cache.snapshot("sr")}

        def pool_name(uuid: str) -> str | None:
            s = Sr.get(cache, in_pool[uuid]) if uuid in in_pool else None
            return s.display_name if s else None

        if args.json:
            out = found.as_dict()
            for s in out["srs"]:
                s["in_pool"] = pool_name(s["uuid"])
            print_json(out)
            return 0
        _print(found, pool_name)
        return 0


def _print(found: Probe, pool_name: Any) -> None:
    dc = " ".join(f"--device-config {k}={v}" for k, v in masked(found.device_config).items())
    if found.needs == "serverpath":
        print_table(["export", "access"], [[e.path, e.access] for e in found.exports])
        warn(f"next: xsctl sr probe --type {found.type} {dc} --device-config serverpath=EXPORT")
    elif found.needs == "targetIQN":
        print_table(["iqn", "address"], [[i.iqn, i.address] for i in found.iqns])
        warn(f"next: xsctl sr probe --type {found.type} {dc} --device-config targetIQN=IQN")
    elif found.needs == "SCSIid":
        print_table(["lun", "scsi id", "size", "vendor", "serial", "path"],
                    [[x.lun, x.scsi_id, _size(x.size), x.vendor, x.serial, x.path or "-"]
                     for x in found.luns])
        if not found.luns:
            warn("no LUN is free: every one is used by an SR of the pool")
        else:
            warn(f"next: xsctl sr probe --type {found.type} {dc} --device-config SCSIid=ID")
    elif found.srs:
        print_table(["sr uuid", "name", "size", "devices", "in this pool"],
                    [[s.uuid, s.name_label or "-", _size(s.size), s.devices or "-",
                      pool_name(s.uuid) or "no"] for s in found.srs])
        if any(pool_name(s.uuid) is None for s in found.srs):
            warn(f"attach one: xsctl sr introduce --uuid UUID --type {found.type} {dc} "
                 "--name NAME [--shared]")
    else:
        kind = kind_of(found.type, found.device_config)
        shared = "" if kind is not None and kind.local else "[--shared] "
        warn(f"no SR there yet: xsctl sr create --type {found.type} {dc} --name NAME "
             f"{shared}makes one")
    for o in found.options:
        warn("possible device-config: " + " ".join(f"{k}={v}" for k, v in o.items()))
