"""Export a VM (or a snapshot or template) to an XVA file and import one, as
``xe vm-export`` and ``xe vm-import`` do: a task (task.create), then the HTTP
transfer tied to it (a :class:`~xsctl.xapi.ops.base.Transfer` step, run by
xsctl.xapi.transfer). Declared here once; the CLI's ``vm export`` / ``vm import``,
the TUI's key and dialogs, and the plans all come from these declarations."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from xsctl.xapi import transfer
from xsctl.xapi.cache import Cache, Record
from xsctl.xapi.errors import UsageError, XapiError, XsctlError
from xsctl.xapi.models import Pool, Sr, Vm, human_bytes, is_guest, srs
from xsctl.xapi.ops.base import Call, Plan, Result, Transfer, xe
from xsctl.xapi.ops.catalogue import (
    Choice,
    Context,
    Kind,
    Operation,
    Param,
    ParamKind,
    Refused,
    declare,
)
from xsctl.xapi.ops.pool import POOL
from xsctl.xapi.ops.resolve import resolve, resolve_sr
from xsctl.xapi.ops.snapshot import SNAPSHOT
from xsctl.xapi.ops.template import TEMPLATE
from xsctl.xapi.ops.vm import VM, explain
from xsctl.xapi.text import printable


def exportable(r: Record) -> bool:
    """What xapi exports: a VM, a snapshot or a template (not a control domain)."""
    return not r.get("is_control_domain")


def _resolve(cache: Cache, spec: str) -> str:
    return resolve(cache, "vm", spec, kind="VM, snapshot or template", accept=exportable)


def _load(cache: Cache, ref: str) -> Vm | None:
    r = cache.get("vm", ref)
    return Vm.get(cache, ref) if r is not None and exportable(r) else None


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("vm")
            if is_guest(r)]


def _explain(vm: Any, op: str) -> XsctlError | None:
    return explain(vm, op)


# the VM kind, widened to snapshots and templates: they export as VMs do
EXPORTABLE = Kind(
    cls="vm", noun="VM", nouns="VMs", resolve=_resolve, load=_load,
    name=lambda vm: vm.name_label, members=_members, explain=_explain, classes=VM.classes,
)


def _what(vm: Vm) -> str:
    if vm.is_a_snapshot:
        return "snapshot"
    if vm.is_a_template:
        return "template"
    return "VM"


def _file_name(ctx: Context, vm: Any) -> str:
    """``web-01.xva`` in the current folder, the name made safe for a file name."""
    name = "".join(c if c.isprintable() and c not in "/\\" else "_"
                   for c in vm.name_label).strip(". ") or vm.uuid
    return os.path.abspath(f"{name}.xva")


_COMPRESSION = {"": "fastest, the largest file", "gzip": "smaller, slower",
                "zstd": "smaller and fast, where the host has zstd"}


def _compression_choices(ctx: Context, vm: Any) -> list[Choice]:
    return [Choice(k, k or "none", v) for k, v in _COMPRESSION.items()]


def _resolve_compression(ctx: Context, vm: Any, text: str) -> str:
    t = text.strip().lower()
    if t in ("none", "false", "no"):
        return ""
    if t in ("true", "yes"):
        return "gzip"
    if t not in transfer.COMPRESSION:
        raise UsageError(f"--compress {text!r}: gzip, zstd or none")
    return t


def export(cache: Cache, vm: Vm, file: str, compress: str | None = None,
           force: bool = False) -> Plan:
    target = transfer.check_target(file, force)
    what = _what(vm)
    compression = compress or None
    warnings = (f"{target} exists: it is replaced once the export is whole.",) \
        if target.exists() else ()
    notes = [f"The file is written as {transfer.partial_path(target).name} and renamed "
             "when xapi reports the task done; a failure or a cancel removes it."]
    if vm.power_state not in ("Halted", "Suspended") and what == "VM":
        notes.append("A running VM cannot be exported: shut it down, or snapshot it and "
                     "export the snapshot.")
    return Plan(
        title=f"Export {what} {vm.name_label} to {target}", action="vm.export",
        targets=(vm.ref,),
        calls=(Call("task.create", (f"Export of {vm.name_label}", str(target))),
               Transfer("export", vm.ref, str(target), Result(0), compression, force)),
        xe=(xe("vm-export", vm=vm.uuid, filename=str(target), compress=compression),),
        names={vm.ref: vm.name_label}, warnings=warnings, notes=tuple(notes),
    )


# ------------------------------------------------------------------ import


def _sr_reason(s: Sr) -> str | None:
    if s.type == "udev" or s.is_tools_sr:
        return "cannot create disks"
    if s.is_iso:
        return "an ISO library holds no VM disks"
    if "vdi_create" not in s.allowed_operations and s.allowed_operations:
        return "cannot create disks"
    if not s.hosts:
        return "not plugged on any host"
    return None


def _sr_choices(ctx: Context, pool: Any) -> list[Choice]:
    """Every SR, the pool's default first, then those that take disks; an SR that
    cannot is listed with why (someone looking for "ISO library" learns why not)."""
    choices = [(not s.is_default, _sr_reason(s) is not None,
                Choice(s.ref, s.display_name,
                       (f"{human_bytes(s.free)} free" if s.physical_size else "")
                       + (" · default" if s.is_default else ""), _sr_reason(s)))
               for s in srs(ctx.cache)]
    return [c for *_, c in sorted(choices, key=lambda t: (t[0], t[1]))]


def _resolve_import_sr(ctx: Context, pool: Any, text: str) -> str:
    return resolve_sr(ctx.cache, text)


def import_(cache: Cache, pool: Pool, file: str, sr: str | None = None) -> Plan:
    xva = transfer.check_xva(file)
    if sr is None:
        if not pool.default_SR or cache.get("sr", pool.default_SR) is None:
            raise XapiError("DEFAULT_SR_NOT_FOUND", [pool.default_SR])
        sr = pool.default_SR
    target = Sr.get(cache, sr)
    if target is None:
        raise XapiError("HANDLE_INVALID", ["SR", sr])
    why = _sr_reason(target)
    if why is not None:
        raise Refused(f"cannot import into {target.display_name}: {why}")
    vms = ", ".join(xva.vms) or "the VM"
    warnings: list[str] = []
    if xva.disk_bytes and target.physical_size and xva.disk_bytes > target.free:
        warnings.append(f"Its disks are {human_bytes(xva.disk_bytes)} and "
                        f"{target.display_name} has {human_bytes(target.free)} free: the "
                        "import fails if they fill up.")
    notes = [f"{xva.path.name}: {human_bytes(xva.size)}"
             + (f", {xva.compression}-compressed" if xva.compression else "")
             + (f", disks of {human_bytes(xva.disk_bytes)} (virtual size)" if xva.disk_bytes
                else "") + ".",
             "If the import fails or is cancelled, xapi removes what it made."]
    path = str(Path(xva.path).resolve())
    return Plan(
        title=f"Import {printable(vms)} from {xva.path.name} into {target.display_name}",
        action="vm.import", targets=(pool.ref,),
        calls=(Call("task.create", (f"Import of {xva.path.name}", path)),
               Transfer("import", target.ref, path, Result(0))),
        xe=(xe("vm-import", filename=path, sr_uuid=target.uuid),),
        names={target.ref: target.display_name, pool.ref: xva.path.name},
        warnings=tuple(warnings), notes=tuple(notes),
    )


_FILE_HELP = "the XVA file"

def _export_op(kind: Kind, what: str) -> Operation:
    """Export, the same for each kind of VM record: a VM's, a snapshot's and a
    template's own views and CLI nouns offer it (``xsctl snapshot export``)."""
    op_id = f"{kind.cls}.export"

    def plan(cache: Cache, vm: Vm, file: str, compress: str | None = None,
             force: bool = False) -> Plan:
        return replace(export(cache, vm, file, compress, force), action=op_id)

    return Operation(
        op_id, kind, "Export to a file", "X", "export", "vm-export",
        "exported", f"Write the {what} to an XVA file", plan, allowed="export",
        params=(Param("file", ParamKind.PATH, "File", (), "the XVA file to write",
                      default=_file_name, metavar="FILE"),
                Param("compress", ParamKind.PICK, "Compression", ("--compress",),
                      "compress the file: gzip or zstd (default: none)",
                      required=False, choices=_compression_choices,
                      resolve=_resolve_compression, metavar="gzip|zstd"),
                Param("force", ParamKind.FLAG, "Replace", ("--force",),
                      "replace the file if it exists", required=False)))


declare(
    _export_op(EXPORTABLE, "VM (or a snapshot or template)"),
    _export_op(SNAPSHOT, "snapshot"),
    _export_op(TEMPLATE, "template"),
    Operation("vm.import", POOL, "Import from a file", "I", "import", "vm-import",
              "imported", "Make a VM from an XVA file, its disks on the SR you choose",
              import_, group="vm",
              params=(Param("file", ParamKind.PATH, "File", (), _FILE_HELP, metavar="FILE"),
                      Param("sr", ParamKind.PICK, "Storage", ("--sr", "--sr-uuid"),
                            "the SR for its disks (default: the pool's default SR)",
                            required=False, choices=_sr_choices,
                            resolve=_resolve_import_sr, metavar="SR"))),
)
