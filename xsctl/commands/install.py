"""``xsctl vm install``, ``xsctl template list`` and ``xsctl snapshot list``. The other
template and snapshot verbs are generated from the catalogue (commands/ops.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, print_table, say, warn
from xsctl.xapi import models
from xsctl.xapi.models import Vm, human_bytes
from xsctl.xapi.ops import install
from xsctl.xapi.ops.base import PlanFailed
from xsctl.xapi.ops.snapshot import snapshot_tree, tree_prefix
from xsctl.xapi.ops.template import (
    describe_disks,
    install_methods,
    is_builtin,
    made_from,
    os_family,
    template_disks,
    template_json,
)
from xsctl.xapi.ops.vm import VM, vm_of

CLASSES = VM.classes


def add_install(vs: Any, leaf: Any) -> None:
    p = leaf(vs, "install", cmd_install,
             "make a new VM from a template, as xe vm-install does, then its memory, "
             "vCPUs, disks, install media and networks (xe vm-install)", dry_run=True)
    p.add_argument("--template", required=True, metavar="TEMPLATE",
                   help="the template's name or UUID")
    p.add_argument("--name", "--new-name-label", required=True, metavar="NAME",
                   help="the new VM's name")
    p.add_argument("--description", default="", metavar="TEXT", help="its description")
    p.add_argument("--memory", metavar="SIZE", help="memory, as 4GiB or 512M "
                   "(default: the template's)")
    p.add_argument("--vcpus", metavar="N", help="vCPUs (default: the template's)")
    p.add_argument("--disk", action="append", default=[], metavar="SIZE[@SR]",
                   help="a disk of SIZE on SR (default SR: the pool's). Repeat for several. "
                   "They replace the disks a built-in template provisions; a template with "
                   "disks of its own keeps those and gets these added")
    p.add_argument("--network", action="append", default=[], metavar="NETWORK",
                   help="a network interface on NETWORK (name, UUID or bridge); repeat "
                   "for several. Default: none")
    p.add_argument("--iso", metavar="ISO", help="install from this ISO (on an ISO SR)")
    p.add_argument("--install-url", metavar="URL",
                   help="network install from this repository (http, ftp, nfs), where "
                   "the template supports it")
    p.add_argument("--home", metavar="HOST", help="the home server it starts on")
    p.add_argument("--start", action="store_true", help="start it when made")
    p.add_argument("--keep-on-failure", action="store_true",
                   help="if a step fails, keep what was made (default: remove it)")


def cmd_install(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        spec = install.spec_from_words(
            cache, template=args.template, name=args.name, description=args.description,
            memory=args.memory, vcpus=args.vcpus, disks=args.disk, networks=args.network,
            iso=args.iso, install_url=args.install_url, home=args.home, start=args.start)
        plan = install.plan(cache, spec)
        if args.dry_run:
            if args.json:
                print_json(plan.as_dict())
            else:
                say(plan.describe() + "\n")
            return 0
        for w in plan.warnings:
            warn(f"warning: {w}")
        progress = None
        if sys.stderr.isatty():
            def progress(step: int, fraction: float) -> None:
                sys.stderr.write(f"\rstep {step + 1}/{len(plan.calls)} "
                                 f"{plan.calls[step].method}: {int(fraction * 100):3d}%\033[K")
                sys.stderr.flush()
        try:
            results = client.run(plan, progress, keep_on_failure=args.keep_on_failure)
        except PlanFailed as e:
            if progress is not None:
                sys.stderr.write("\r\033[K")
            if args.json:
                print_json({"ok": False, "error": e.details, "failed_step": e.step + 1,
                            "removed": e.removed, "left": e.left})
            raise
        finally:
            if progress is not None:
                sys.stderr.write("\r\033[K")
        vm_ref = str(results[0])
        uuid = str(client.conn.call("VM.get_uuid", vm_ref))
        if args.json:
            print_json({"ok": True, "uuid": uuid, "name_label": spec.name})
        else:
            say(uuid)
        return 0


def cmd_template_list(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        rows = [t for t in install.templates(cache)
                if not (args.custom and is_builtin(t)) and not (args.builtin and not is_builtin(t))]
        if args.json:
            print_json([template_json(cache, t) for t in rows])
            return 0
        print_table(
            ["name", "kind", "os", "memory", "vcpus", "disks", "install", "vms", "uuid"],
            [[t.name_label, "built-in" if is_builtin(t) else "custom", os_family(t),
              human_bytes(t.memory_static_max), t.VCPUs_at_startup,
              describe_disks(template_disks(cache, t)),
              ",".join(install_methods(t)) or "-", made_from(cache, t), t.uuid]
             for t in rows])
        return 0


def _snap_json(cache: Any, node: Any, vm: Vm) -> dict[str, Any]:
    s = node.snap
    rec = cache.get("vm", s.ref) or {}
    parent = cache.get("vm", str(rec.get("parent", "")))
    return {"uuid": s.uuid, "name_label": str(rec.get("name_label", "")),
            "snapshot_of": vm.uuid, "vm": str((cache.get("vm", vm.ref) or {}).get("name_label")),
            "snapshot_time": s.snapshot_time.isoformat() if s.snapshot_time else None,
            "checkpoint": node.checkpoint, "current": node.current,
            "parent": str(parent.get("uuid")) if parent and parent.get("is_a_snapshot") else None,
            "depth": node.depth}


def cmd_snapshot_list(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        vms = ([vm_of(cache, args.vm)] if args.vm
               else [v for v in models.vms(cache) if v.snapshots])
        out: list[dict[str, Any]] = []
        lines: list[list[Any]] = []
        for vm in vms:
            for node in snapshot_tree(cache, vm):
                if node.snap is None:
                    if args.vm:
                        lines.append([tree_prefix(node) + "▶ Now", vm.name_label, "", "", ""])
                    continue
                s = node.snap
                if args.json:
                    out.append(_snap_json(cache, node, vm))
                    continue
                when = s.snapshot_time.strftime("%Y-%m-%d %H:%M") if s.snapshot_time else "-"
                lines.append([tree_prefix(node) + s.name_label, vm.name_label, when,
                              "disks+memory" if node.checkpoint else "disks", s.uuid])
        if args.json:
            print_json(out)
            return 0
        print_table(["snapshot", "vm", "taken", "holds", "uuid"], lines)
        return 0
