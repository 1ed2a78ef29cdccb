"""``xsctl host settings``, ``pool show``, ``task list``."""

from __future__ import annotations

import argparse

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, print_table
from xsctl.xapi import models
from xsctl.xapi.host_settings import Setting, pool_settings, settings
from xsctl.xapi.ops.resolve import resolve_host


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
