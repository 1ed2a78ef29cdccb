"""``xsctl host list``, ``host settings``, ``pool show``, ``task list``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, print_table
from xsctl.xapi import models
from xsctl.xapi.host_settings import Setting, pool_settings, settings
from xsctl.xapi.models import human_bytes, human_duration
from xsctl.xapi.ops.resolve import resolve_host


def cmd_host_list(args: argparse.Namespace) -> int:
    with open_client(args, ["pool", "host", "host_metrics", "VM"]) as client:
        cache = client.cache
        hosts = models.hosts(cache)

        def guests(h: models.Host) -> int:
            return sum(1 for r in h.resident_VMs
                       if not (cache.get("vm", r) or {}).get("is_control_domain"))

        if args.json:
            print_json([
                {"uuid": h.uuid, "name_label": h.name_label, "address": h.address,
                 "enabled": h.enabled, "master": h.is_master,
                 "memory_total": h.memory_total, "memory_free": h.memory_free,
                 "cpu_count": h.cpu_count, "software_version": h.product,
                 "resident_VMs": guests(h)}
                for h in hosts
            ])
            return 0
        now = datetime.now(UTC)
        print_table(
            ["name", "address", "role", "state", "memory used", "cpus", "vms", "uptime", "version"],
            [[h.name_label, h.address, "master" if h.is_master else "member",
              "enabled" if h.enabled else "maintenance",
              f"{human_bytes(h.memory_used)}/{human_bytes(h.memory_total)}", h.cpu_count,
              guests(h),
              human_duration((now - h.boot_time).total_seconds()) if h.boot_time else "-",
              h.product] for h in hosts],
        )
        return 0


def _print_settings(rows: list[Setting], json: bool) -> None:
    if json:
        print_json({s.key: s.value for s in rows})
    else:
        print_table(["setting", "value"], [[s.label, s.value] for s in rows])


def cmd_pool_show(args: argparse.Namespace) -> int:
    with open_client(args, ["pool", "host", "SR"]) as client:
        _print_settings(pool_settings(client.cache), args.json)
        return 0


def cmd_host_settings(args: argparse.Namespace) -> int:
    with open_client(args, ["host", "PIF", "network"]) as client:
        ref = resolve_host(client.cache, args.host)
        _print_settings(settings(client.cache, ref), args.json)
        return 0


def cmd_task_list(args: argparse.Namespace) -> int:
    with open_client(args, ["host", "task"]) as client:
        tasks = models.tasks(client.cache)
        if not args.all:
            tasks = [t for t in tasks if t.pending]
        if args.json:
            print_json([
                {"uuid": t.uuid, "name_label": t.name_label, "status": t.status,
                 "progress": t.progress,
                 "created": t.created.isoformat() if t.created else None,
                 "finished": t.finished.isoformat() if t.finished else None,
                 "error_info": list(t.error_info)}
                for t in tasks
            ])
            return 0
        print_table(
            ["name", "status", "progress", "created", "uuid"],
            [[t.name_label, t.status, f"{t.progress * 100:.0f}%",
              t.created.strftime("%H:%M:%S") if t.created else "-", t.uuid] for t in tasks],
        )
        return 0
