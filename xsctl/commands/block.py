"""``xsctl block-list VM``, and what the CLI does around an inspection attach (a
disk attached to a control domain to look inside it): it holds the disk until the
user lets go (Enter, Ctrl-C, the end of standard input), then detaches it, as the app
does when it exits; ``--keep`` leaves it attached. A run that was killed leaves its
tagged device behind: the next inspection attach from this machine removes it first.

The operations themselves (block-attach, block-detach, cd-insert, ...) are generated
from the catalogue (commands/ops.py, xsctl/xapi/ops/block.py)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_json, print_table, say, warn
from xsctl.xapi import block, interrupts
from xsctl.xapi.cache import Cache
from xsctl.xapi.client import Client
from xsctl.xapi.errors import XsctlError
from xsctl.xapi.models import NULL, Vbd, Vm, human_bytes, vm_disks
from xsctl.xapi.ops import block as block_ops

CLASSES = ["pool", "host", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VDI", "SR", "PBD"]


def _raw(cache: Cache, cls: str, ref: str, field: str = "name_label") -> str:
    r = cache.get(cls, ref) if ref and ref != NULL else None
    return str(r.get(field, "")) if r else ""


def device_json(cache: Cache, vbd: Vbd) -> dict[str, Any]:
    vdi = cache.get("vdi", vbd.VDI) if not vbd.empty else None
    sr = str(vdi.get("SR")) if vdi else NULL
    return {
        "uuid": _raw(cache, "vbd", vbd.ref, "uuid"),
        "position": vbd.userdevice,
        "device": vbd.device or None,
        "type": vbd.type,
        "disk": str(vdi.get("name_label", "")) if vdi else None,
        "disk_uuid": str(vdi.get("uuid", "")) if vdi else None,
        "size": int(vdi.get("virtual_size", 0)) if vdi else None,
        "sr": _raw(cache, "sr", sr) or None,
        "mode": vbd.mode,
        "bootable": vbd.bootable,
        "plugged": vbd.currently_attached,
        "empty": vbd.empty,
        "inspection": vbd.other_config.get(block.TAG),
    }


def cmd_block_list(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        vm = Vm.get(cache, block_ops.resolve_vm_or_dom0(cache, args.vm))
        assert vm is not None
        disks = vm_disks(cache, vm)
        if args.json:
            print_json([device_json(cache, d.vbd) for d in disks])
            return 0
        rows = []
        for d in disks:
            vdi = d.vdi
            rows.append([d.vbd.userdevice, d.vbd.device or "-",
                         d.label + ("" if d.vbd.type == "Disk" else f" ({d.vbd.type})"),
                         human_bytes(vdi.virtual_size) if vdi else "",
                         vdi.sr_name if vdi else "", d.vbd.mode,
                         "yes" if d.vbd.currently_attached else "no",
                         "yes" if d.vbd.bootable else "",
                         "inspection" if block.TAG in d.vbd.other_config else ""])
        if not rows:
            say(f"{vm.name_label} has no block devices")
            return 0
        print_table(["Position", "Device", "Disk", "Size", "SR", "Mode", "Plugged", "Boot",
                     ""], rows)
        return 0


# ------------------------------------------------------------------ inspection


def clean_stale(client: Client) -> list[str]:
    """Detach what an interrupted run of this machine left attached to a control
    domain; returns what was detached (a failure is reported, not raised). The cache
    is read again after, so that what is planned next sees the disks free."""
    cache = client.cache
    done = []
    for vbd in block.stale(cache):
        name = block_ops.device_name(cache, vbd)
        try:
            client.run(block_ops.release(cache, vbd))
            done.append(name)
        except XsctlError as e:
            warn(f"could not detach {name}, left by an interrupted run: {e}")
    if done:
        client.load()
    return done


def inspecting(client: Client, op_id: str, specs: Sequence[str]) -> bool:
    """Whether the command attaches a disk to a control domain: then what an
    interrupted run left is cleaned up before it is planned (it would hold the same
    disk, or the position the new device takes)."""
    if op_id == "vdi.inspect":
        return True
    if op_id != "vm.block-attach":
        return False
    for spec in specs:
        try:
            ref = block_ops.resolve_vm_or_dom0(client.cache, spec)
        except XsctlError:
            continue
        if (client.cache.get("vm", ref) or {}).get("is_control_domain"):
            return True
    return False


def _fetch(client: Client, ref: str) -> dict[str, Any] | None:
    """The VBD's record as xapi has it now (the CLI's cache is read once, at the
    start, before the VBD was made)."""
    try:
        return dict(client.conn.call("VBD.get_record", ref))
    except XsctlError:
        return None


def hold(client: Client, plan: Any, results: list[Any], args: argparse.Namespace) -> None:
    """The disk is attached: say where, wait for the user, then detach it. Ctrl-C is
    one way to let go; another signal (kill, a closed terminal) ends the run once the
    disk is detached. The wait starts before the path is printed, so that a signal
    sent by whoever read it finds the detach armed."""
    cache = client.cache
    made = block_ops.made_vbds(plan, results)[0]
    try:
        record = _fetch(client, made)
        vbd = Vbd.from_record(made, record) if record is not None else None
        if vbd is not None and args.json:
            print_json({**device_json(cache, vbd), "uuid": str((record or {}).get("uuid", "")),
                        "path": block.dom0_path(vbd)})
        elif vbd is not None:
            say(f"{block.dom0_path(vbd)} in {_raw(cache, 'vm', vbd.VM)} "
                f"({'read-only' if vbd.mode == 'RO' else 'read-write'})")
        sys.stdout.flush()
        if sys.stdin.isatty():
            sys.stderr.write("Attached until you press Enter or Ctrl-C (--keep leaves it "
                             "attached).\n")
        sys.stdin.readline()
    except KeyboardInterrupt as e:
        if isinstance(e, interrupts.Interrupted) and e.signum != signal.SIGINT:
            raise
    finally:
        current = _fetch(client, made)
        if current is not None:
            client.run(block_ops.release(cache, Vbd.from_record(made, current)))
            sys.stderr.write("Detached.\n")
