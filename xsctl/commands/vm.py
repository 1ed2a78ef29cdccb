"""``xsctl vm list`` and ``vm show``. The operations (``vm start``, ``vm snapshot``,
...) are generated from the catalogue (commands/ops.py)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_fields, print_json, print_table, say
from xsctl.xapi import models
from xsctl.xapi.cache import Cache
from xsctl.xapi.models import NULL, Vm, human_bytes, human_duration
from xsctl.xapi.ops import vm as vmops

VM_CLASSES = ["pool", "host", "VM", "VM_metrics", "VM_guest_metrics"]
SHOW_CLASSES = [*VM_CLASSES, "VBD", "VDI", "SR", "VIF", "network"]


def _uuid(cache: Cache, cls: str, ref: str) -> str:
    r = cache.get(cls, ref) if ref and ref != NULL else None
    return str(r.get("uuid", "")) if r else ""


def vm_json(cache: Cache, vm: Vm) -> dict[str, Any]:
    """xapi's field names and exact values (names as xapi holds them, escape codes and
    all: JSON escapes them; only text for people is made printable)."""
    rec = cache.get("vm", vm.ref) or {}
    gm = cache.get("vm_guest_metrics", str(rec.get("guest_metrics", ""))) or {}
    return {
        "uuid": vm.uuid,
        "name_label": str(rec.get("name_label", "")),
        "name_description": str(rec.get("name_description", "")),
        "power_state": vm.power_state,
        "resident_on": _uuid(cache, "host", vm.resident_on),
        "VCPUs_max": vm.VCPUs_max,
        "VCPUs_at_startup": vm.VCPUs_at_startup,
        "memory_static_max": vm.memory_static_max,
        "memory_dynamic_max": vm.memory_dynamic_max,
        "memory_dynamic_min": vm.memory_dynamic_min,
        "memory_static_min": vm.memory_static_min,
        "tags": list(vm.tags),
        "networks": dict(gm.get("networks") or {}),
        "os_version": dict(gm.get("os_version") or {}),
        "allowed_operations": sorted(vm.allowed_operations),
        "is_a_template": vm.is_a_template,
        "is_a_snapshot": vm.is_a_snapshot,
    }


def _raw(cache: Cache, cls: str, ref: str) -> str:
    return str((cache.get(cls, ref) or {}).get("name_label", ""))


def cmd_list(args: argparse.Namespace) -> int:
    with open_client(args, VM_CLASSES) as client:
        cache = client.cache
        rows = models.vms(cache, templates=args.templates, snapshots=args.snapshots)
        if args.templates and not args.all:
            rows = [v for v in rows if v.is_a_template and not v.is_a_snapshot]
        if args.snapshots and not args.all:
            rows = [v for v in rows if v.is_a_snapshot]
        if args.power_state:
            want = args.power_state.lower()
            rows = [v for v in rows if v.power_state.lower() == want]
        if args.host:
            rows = [v for v in rows if args.host in (v.host_name, v.resident_on)]
        if args.tag:
            rows = [v for v in rows if args.tag in v.tags]
        if args.json:
            print_json([vm_json(cache, v) for v in rows])
            return 0
        print_table(
            ["name", "power", "host", "vcpus", "memory", "ips", "os", "uuid"],
            [
                [v.name_label, v.power_state, v.host_name or "-", v.vcpus,
                 human_bytes(v.memory), ",".join(ip for ip in v.ips if ":" not in ip) or "-",
                 v.os_version or "-", v.uuid]
                for v in rows
            ],
        )
        return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_client(args, SHOW_CLASSES) as client:
        cache = client.cache
        out: list[dict[str, Any]] = []
        for spec in args.vm:
            vm = vmops.vm_of(cache, spec)
            disks = models.vm_disks(cache, vm)
            vifs = models.vm_vifs(cache, vm)
            if args.json:
                d = vm_json(cache, vm)
                d["disks"] = [
                    {"userdevice": x.vbd.userdevice, "device": x.vbd.device, "type": x.vbd.type,
                     "mode": x.vbd.mode, "currently_attached": x.vbd.currently_attached,
                     "VDI": x.vdi.uuid if x.vdi else None,
                     "name_label": _raw(cache, "vdi", x.vdi.ref) if x.vdi else None,
                     "virtual_size": x.vdi.virtual_size if x.vdi else 0,
                     "SR": _raw(cache, "sr", x.vdi.SR) if x.vdi else None}
                    for x in disks
                ]
                d["VIFs"] = [{"device": v.device, "MAC": v.MAC,
                              "network": _raw(cache, "network", v.network),
                              "currently_attached": v.currently_attached} for v in vifs]
                d["snapshots"] = [
                    {"uuid": s.uuid, "name_label": _raw(cache, "vm", s.ref),
                     "snapshot_time": s.snapshot_time.isoformat() if s.snapshot_time else None}
                    for s in models.snapshots_of(cache, vm)
                ]
                out.append(d)
                continue
            uptime = "-"
            if vm.start_time is not None:
                uptime = human_duration((datetime.now(UTC) - vm.start_time).total_seconds())
            print_fields([
                ("name", vm.name_label),
                ("uuid", vm.uuid),
                ("description", vm.name_description or "-"),
                ("power state", vm.power_state),
                ("host", vm.host_name or "-"),
                ("uptime", uptime),
                ("os", vm.os_version or "-"),
                ("ips", ", ".join(vm.ips) or "-"),
                ("vcpus", f"{vm.VCPUs_at_startup} (max {vm.VCPUs_max})"),
                ("memory", f"static {human_bytes(vm.memory_static_min)}–{human_bytes(vm.memory_static_max)}, "
                           f"dynamic {human_bytes(vm.memory_dynamic_min)}–{human_bytes(vm.memory_dynamic_max)}"),
                ("tags", ", ".join(vm.tags) or "-"),
                ("allowed", " ".join(sorted(vm.allowed_operations)) or "-"),
            ])
            lines = ["disks:"]
            for x in disks:
                size = human_bytes(x.vdi.virtual_size) if x.vdi else ""
                where = f" on {x.vdi.sr_name}" if x.vdi else ""
                state = "attached" if x.vbd.currently_attached else "detached"
                lines.append(f"  {x.vbd.userdevice:>2} {x.vbd.type:<4} {x.label} {size}{where} "
                             f"({x.vbd.mode}, {state})")
            lines.append("networks:")
            lines += [f"  {v.device:>2} {v.MAC} {v.network_name}" for v in vifs]
            snaps = models.snapshots_of(cache, vm)
            if snaps:
                lines.append("snapshots:")
                for s in snaps:
                    when = s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else ""
                    lines.append(f"  {s.name_label}  {when}  {s.uuid}")
            say("\n".join(lines) + "\n")
        if args.json:
            print_json(out if len(out) != 1 else out[0])
        return 0
