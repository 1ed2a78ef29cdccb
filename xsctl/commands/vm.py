"""``xsctl vm ...``: list, show and the lifecycle, with xe's words."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_fields, print_json, print_table
from xsctl.xapi import models
from xsctl.xapi.cache import Cache
from xsctl.xapi.client import Client
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import NULL, Vm, human_bytes, human_duration
from xsctl.xapi.ops import vm as vmops
from xsctl.xapi.ops.base import Plan

VM_CLASSES = ["pool", "host", "VM", "VM_metrics", "VM_guest_metrics"]
SHOW_CLASSES = [*VM_CLASSES, "VBD", "VDI", "SR", "VIF", "network"]


def _uuid(cache: Cache, cls: str, ref: str) -> str:
    r = cache.get(cls, ref) if ref and ref != NULL else None
    return str(r.get("uuid", "")) if r else ""


def vm_json(cache: Cache, vm: Vm) -> dict[str, Any]:
    rec = cache.get("vm", vm.ref) or {}
    gm = cache.get("vm_guest_metrics", str(rec.get("guest_metrics", ""))) or {}
    return {
        "uuid": vm.uuid,
        "name_label": vm.name_label,
        "name_description": vm.name_description,
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
                     "name_label": x.vdi.name_label if x.vdi else None,
                     "virtual_size": x.vdi.virtual_size if x.vdi else 0,
                     "SR": x.vdi.sr_name if x.vdi else None}
                    for x in disks
                ]
                d["VIFs"] = [{"device": v.device, "MAC": v.MAC, "network": v.network_name,
                              "currently_attached": v.currently_attached} for v in vifs]
                d["snapshots"] = [
                    {"uuid": s.uuid, "name_label": s.name_label,
                     "snapshot_time": s.snapshot_time.isoformat() if s.snapshot_time else None}
                    for s in (Vm.get(cache, r) for r in vm.snapshots) if s
                ]
                out.append(d)
                continue
            uptime = "-"
            if vm.start_time is not None:
                from datetime import UTC, datetime

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
            print("disks:")
            for x in disks:
                size = human_bytes(x.vdi.virtual_size) if x.vdi else ""
                where = f" on {x.vdi.sr_name}" if x.vdi else ""
                state = "attached" if x.vbd.currently_attached else "detached"
                print(f"  {x.vbd.userdevice:>2} {x.vbd.type:<4} {x.label} {size}{where} ({x.vbd.mode}, {state})")
            print("networks:")
            for v in vifs:
                print(f"  {v.device:>2} {v.MAC} {v.network_name}")
            if vm.snapshots:
                print("snapshots:")
                for r in vm.snapshots:
                    s = Vm.get(cache, r)
                    if s:
                        when = s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else ""
                        print(f"  {s.name_label}  {when}  {s.uuid}")
            print()
        if args.json:
            print_json(out if len(out) != 1 else out[0])
        return 0


def _progress_printer(label: str) -> Callable[[int, float], None] | None:
    if not sys.stderr.isatty():
        return None

    def show(step: int, fraction: float) -> None:
        sys.stderr.write(f"\r{label}: {int(fraction * 100):3d}%")
        sys.stderr.flush()

    return show


def run_plans(
    args: argparse.Namespace, client: Client, make: Callable[[Cache, str], Plan], done: str
) -> int:
    """Plan for every named VM first, then run each; report per VM."""
    failures = 0
    results: list[dict[str, Any]] = []
    for spec in args.vm:
        try:
            plan = make(client.cache, spec)
        except XsctlError as e:
            if len(args.vm) == 1 and not args.json:
                raise
            failures += 1
            sys.stderr.write(f"xsctl: {spec}: {e}\n")
            results.append({"vm": spec, "ok": False, "error": getattr(e, "details", [str(e)])})
            continue
        name = plan.names.get(plan.targets[0], spec)
        if args.dry_run:
            if args.json:
                results.append(plan.as_dict())
            else:
                print(plan.describe())
                print()
            continue
        try:
            progress = _progress_printer(plan.title)
            client.run(plan, progress)
            if progress is not None:
                sys.stderr.write("\r\033[K")
            if not args.json:
                print(f"{name}: {done}")
            results.append({"vm": name, "ok": True})
        except XsctlError as e:
            if sys.stderr.isatty():
                sys.stderr.write("\r\033[K")
            if len(args.vm) == 1 and not args.json:
                raise
            failures += 1
            sys.stderr.write(f"xsctl: {name}: {e}\n")
            results.append({"vm": name, "ok": False, "error": getattr(e, "details", [str(e)])})
    if args.json:
        print_json(results)
    return 1 if failures else 0


def lifecycle(make: Callable[[argparse.Namespace, Cache, str], Plan], done: str,
              ) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        with open_client(args, VM_CLASSES) as client:
            return run_plans(args, client, lambda cache, spec: make(args, cache, spec), done)

    return cmd


cmd_start = lifecycle(lambda a, c, s: vmops.start(c, s, a.on, a.paused), "started")
cmd_shutdown = lifecycle(lambda a, c, s: vmops.shutdown(c, s, a.force), "shut down")
cmd_reboot = lifecycle(lambda a, c, s: vmops.reboot(c, s, a.force), "rebooted")
cmd_suspend = lifecycle(lambda a, c, s: vmops.suspend(c, s), "suspended")
cmd_resume = lifecycle(lambda a, c, s: vmops.resume(c, s, a.on), "resumed")
cmd_pause = lifecycle(lambda a, c, s: vmops.pause(c, s), "paused")
cmd_unpause = lifecycle(lambda a, c, s: vmops.unpause(c, s), "unpaused")
cmd_migrate = lifecycle(lambda a, c, s: vmops.migrate(c, s, a.host), "migrated")
