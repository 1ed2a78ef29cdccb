"""Snapshot operations: revert, delete (with or without its disks), a new VM or a new
template from a snapshot. Taking one is the VM's (``vm.snapshot``, ``vm.checkpoint``,
offered as ``xsctl snapshot create`` too).

Snapshots are VM records (is_a_snapshot); xapi gates them with their own
allowed_operations (xapi_vm_lifecycle.ml: revert, clone, copy, export, destroy).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.models import NULL, Vm, vm_disks
from xsctl.xapi.ops.base import Call, Plan, Result, Undo, xe
from xsctl.xapi.ops.catalogue import Impact, Kind, Operation, Param, ParamKind, declare
from xsctl.xapi.ops.resolve import resolve_snapshot
from xsctl.xapi.ops.vm import VM, check_allowed, explain, is_checkpoint, revert_to


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("vm")
            if r.get("is_a_snapshot")]


def _load(cache: Cache, ref: str) -> Vm | None:
    snap = Vm.get(cache, ref)
    return snap if snap is not None and snap.is_a_snapshot else None


def _resolve(cache: Cache, spec: str) -> str:
    return resolve_snapshot(cache, spec)


def _explain(snap: Any, op: str) -> XsctlError | None:
    return explain(snap, op)


SNAPSHOT = Kind(
    cls="snapshot", noun="snapshot", nouns="snapshots", resolve=_resolve, load=_load,
    name=lambda s: s.name_label, members=_members, explain=_explain,
    classes=VM.classes,
)


def _name(text: str, what: str) -> str:
    if not text.strip():
        raise UsageError(f"{what} cannot be empty")
    return text


def _of(cache: Cache, snap: Vm) -> str:
    vm = Vm.get(cache, snap.snapshot_of)
    return vm.name_label if vm is not None else "a deleted VM"


def revert(cache: Cache, snap: Vm) -> Plan:
    return revert_to(cache, snap, "snapshot.revert")


def _own_disks(cache: Cache, snap: Vm) -> tuple[list[Any], list[str]]:
    """The snapshot's disks only it uses (destroyed with it), and the names of those
    another VM or snapshot also uses (always kept)."""
    mine, shared = [], []
    for d in vm_disks(cache, snap):
        if d.vdi is None or d.vbd.type != "Disk":
            continue
        others = [v for v in d.vdi.VBDs if v != d.vbd.ref]
        if others or d.vdi.sharable:
            shared.append(d.vdi.name_label)
        else:
            mine.append(d.vdi)
    return mine, shared


def _memory_image(cache: Cache, snap: Vm) -> str | None:
    ref = str((cache.get("vm", snap.ref) or {}).get("suspend_VDI", NULL))
    return ref if ref not in ("", NULL) and cache.get("vdi", ref) is not None else None


def delete(cache: Cache, snap: Vm) -> Plan:
    """xe snapshot-uninstall: the snapshot and the disks only it uses."""
    return _delete(cache, snap, keep_disks=False)


def delete_keep_disks(cache: Cache, snap: Vm) -> Plan:
    """xe snapshot-destroy: the snapshot's record only; its disks stay in their SRs."""
    return _delete(cache, snap, keep_disks=True)


def _delete(cache: Cache, snap: Vm, keep_disks: bool) -> Plan:
    check_allowed(snap, "destroy")
    mine, shared = _own_disks(cache, snap)
    names = {snap.ref: snap.name_label}
    calls = [Call("VM.destroy", (snap.ref,), True)]
    image = _memory_image(cache, snap)
    if image is not None:
        # a checkpoint's memory is no use without it: it goes either way
        calls.append(Call("VDI.destroy", (image,), True))
        names[image] = "its memory image"
    if not keep_disks:
        calls += [Call("VDI.destroy", (v.ref,), True) for v in mine]
        names.update({v.ref: v.name_label for v in mine})
    notes = []
    if keep_disks:
        notes.append("Its disks stay in their SRs: "
                     + (", ".join(v.name_label for v in mine) or "none") + ".")
        lines = [xe("snapshot-destroy", snapshot_uuid=snap.uuid)]
    else:
        notes.append("Disks destroyed: " + (", ".join(v.name_label for v in mine) or "none")
                     + ".")
        lines = [xe("snapshot-uninstall", snapshot_uuid=snap.uuid, force=True)]
    if shared:
        notes.append(f"Kept (another VM uses them): {', '.join(shared)}.")
    return Plan(title=f"Delete snapshot {snap.name_label!r} of {_of(cache, snap)}"
                + (" (keep its disks)" if keep_disks else ""),
                action="snapshot.delete_keep_disks" if keep_disks else "snapshot.delete",
                targets=(snap.ref,), calls=tuple(calls),
                xe=tuple(lines), names=names, destructive=True, notes=tuple(notes))


def vm_and_disks_undo(what: str) -> Undo:
    """Remove a VM the plan made, with every disk it holds by then (those a clone
    or provisioning gave it): the VM first, as xe vm-uninstall does."""

    def expand(conn: Any, vm: Any) -> list[Call]:
        vdis = []
        for vbd in conn.call("VM.get_VBDs", vm):
            rec = conn.call("VBD.get_record", vbd)
            if rec.get("type") == "Disk" and rec.get("VDI") not in ("", NULL):
                vdis.append(str(rec["VDI"]))
        image = conn.call("VM.get_suspend_VDI", vm)
        if image not in ("", NULL):
            vdis.append(str(image))
        return [Call("VM.destroy", (vm,))] + [Call("VDI.destroy", (v,)) for v in vdis]

    return Undo(what, expand=expand)


def new_vm(cache: Cache, snap: Vm, name: str) -> Plan:
    """xe vm-install from a snapshot (cli_operations.ml vm_install_real): VM.clone
    (each disk on its snapshot's SR), then VM.provision, which makes it a VM."""
    _name(name, "the new VM's name")
    check_allowed(snap, "clone")
    notes = [f"The new VM gets {snap.name_label!r}'s disks as they were (fast clones, "
             "on the same SRs) and its settings; it is halted."]
    if is_checkpoint(cache, snap):
        notes.append("The checkpoint's memory is not kept: the new VM boots afresh.")
    return Plan(
        title=f"New VM {name!r} from snapshot {snap.name_label!r}", action="snapshot.new_vm",
        targets=(snap.ref,),
        calls=(Call("VM.clone", (snap.ref, name), True,
                    undo=vm_and_disks_undo(f"the new VM {name!r} and its disks")),
               Call("VM.provision", (Result(0),), True)),
        xe=(xe("vm-install", template=snap.uuid, new_name_label=name),),
        names={snap.ref: snap.name_label}, notes=tuple(notes))


def new_template(cache: Cache, snap: Vm, name: str) -> Plan:
    """xe snapshot-clone: VM.clone of a snapshot is a template (xapi_vm_clone.ml
    keeps is_a_template, drops is_a_snapshot)."""
    _name(name, "the template's name")
    check_allowed(snap, "clone")
    return Plan(
        title=f"New template {name!r} from snapshot {snap.name_label!r}",
        action="snapshot.new_template", targets=(snap.ref,),
        calls=(Call("VM.clone", (snap.ref, name), True),),
        xe=(xe("snapshot-clone", uuid=snap.uuid, new_name_label=name),),
        names={snap.ref: snap.name_label},
        notes=("New VMs can then be installed from it (xsctl vm install --template).",))


_NAME_FLAGS = ("--name", "--new-name-label")

declare(
    Operation("snapshot.revert", SNAPSHOT, "Revert to this snapshot", "v", "revert",
              "snapshot-revert", "reverted to the snapshot",
              "Return the VM to the snapshot; changes since are lost (a running VM is "
              "powered off, or resumed from a checkpoint's memory)", revert,
              allowed="revert", impact=Impact.DESTRUCTIVE, footer=True),
    Operation("snapshot.delete", SNAPSHOT, "Delete with its disks", "delete", "destroy",
              "snapshot-uninstall", "deleted",
              "Delete the snapshot and the disks only it uses", delete, allowed="destroy",
              impact=Impact.DESTRUCTIVE, footer=True),
    Operation("snapshot.delete_keep_disks", SNAPSHOT, "Delete, keep its disks", "D",
              "destroy", "snapshot-destroy", "deleted",
              "Delete the snapshot's record; its disks stay in their SRs",
              delete_keep_disks, allowed="destroy", impact=Impact.DESTRUCTIVE,
              flag="--keep-disks"),
    Operation("snapshot.new_vm", SNAPSHOT, "New VM from snapshot", "i", "new-vm",
              "vm-install", "made into a new VM",
              "Install a new, halted VM from the snapshot", new_vm, allowed="clone",
              params=(Param("name", ParamKind.TEXT, "Name of the new VM", _NAME_FLAGS,
                            "the new VM's name",
                            default=lambda c, s: f"{s.name_label} (VM)", metavar="NAME"),)),
    Operation("snapshot.new_template", SNAPSHOT, "New template from snapshot", "T",
              "new-template", "snapshot-clone", "made into a template",
              "Make a template from the snapshot", new_template, allowed="clone",
              params=(Param("name", ParamKind.TEXT, "Template name", _NAME_FLAGS,
                            "the template's name",
                            default=lambda c, s: f"{s.name_label} (template)",
                            metavar="NAME"),)),
)


# ------------------------------------------------------------------ the tree


@dataclass(frozen=True)
class TreeNode:
    """A row of a VM's snapshot tree: a snapshot, or (``snap`` None) "Now", the VM as
    it is, under the snapshot it was last taken from or reverted to."""

    snap: Vm | None
    depth: int
    checkpoint: bool = False
    current: bool = False  # the snapshot "Now" hangs under (VM.parent)
    last: bool = True  # the last of its siblings (for the tree's lines)
    path: tuple[bool, ...] = ()  # for each ancestor level: was that ancestor the last


def snapshot_tree(cache: Cache, vm: Vm) -> list[TreeNode]:
    """xapi links snapshots through VM.parent (xapi_vm_clone.ml: a new snapshot's
    parent is the VM's, then the VM's parent becomes the snapshot; a revert sets the
    VM's parent to the snapshot). Pre-order, oldest first; a parent that is gone (or
    unknown) puts a snapshot at the root, as XenCenter does."""
    snaps = {s.ref: s for s in (Vm.get(cache, r) for r in vm.snapshots) if s is not None}
    parent = {ref: str((cache.get("vm", ref) or {}).get("parent", NULL)) for ref in snaps}
    here = str((cache.get("vm", vm.ref) or {}).get("parent", NULL))
    children: dict[str, list[str]] = {}
    for ref in snaps:
        p = parent[ref] if parent[ref] in snaps else NULL
        children.setdefault(p, []).append(ref)

    def when(ref: str | None) -> Any:
        assert ref is not None
        t = snaps[ref].snapshot_time
        return (t.timestamp() if t else 0.0, snaps[ref].name_label)

    out: list[TreeNode] = []

    def walk(at: str, depth: int, path: tuple[bool, ...]) -> None:
        kids: list[str | None] = sorted(children.get(at, []), key=when)
        if (at == here and at != NULL) or (at == NULL and here not in snaps):
            kids.append(None)  # "Now"
        for i, ref in enumerate(kids):
            last = i == len(kids) - 1
            if ref is None:
                out.append(TreeNode(None, depth, last=last, path=path))
                continue
            s = snaps[ref]
            out.append(TreeNode(s, depth, is_checkpoint(cache, s), ref == here, last, path))
            walk(ref, depth + 1, (*path, last))

    walk(NULL, 0, ())
    return out


def tree_prefix(node: TreeNode) -> str:
    """The tree's lines before a row: ``│ ├─ ``."""
    if node.depth == 0:
        return ""
    lead = "".join("   " if last else "│  " for last in node.path[1:])
    return lead + ("└─ " if node.last else "├─ ")
