"""Template operations: copy, rename, delete a custom one; and what the Templates view
and ``xsctl template list`` show of each (built-in or custom, OS family, recommended
memory and vCPUs, the disks it provisions, its install methods, the VMs made from it).

Templates are VM records (is_a_template, not is_a_snapshot). The built-in ones
(other_config default_template=true, is_default_template) come with the host and
xapi refuses to destroy them (VM_CANNOT_DELETE_DEFAULT_TEMPLATE, xapi_vm.ml destroy).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.models import NULL, Sr, Vm, human_bytes, is_guest, is_template, vm_disks
from xsctl.xapi.ops.base import Call, Plan, xe
from xsctl.xapi.ops.catalogue import (
    Context,
    Impact,
    Kind,
    Operation,
    Param,
    ParamKind,
    declare,
)
from xsctl.xapi.ops.resolve import resolve_sr, resolve_template
from xsctl.xapi.ops.vm import VM, check_allowed, copy_sr_choices, explain, name_given, same_name


def is_builtin(vm: Vm) -> bool:
    """A template that comes with the host: the one predicate for it."""
    return vm.is_default_template or vm.other_config.get("default_template") == "true"


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    return [(ref, str(r.get("name_label", ""))) for ref, r in cache.snapshot("vm")
            if r.get("is_a_template") and not r.get("is_a_snapshot")]


def _load(cache: Cache, ref: str) -> Vm | None:
    t = Vm.get(cache, ref)
    return t if t is not None and t.is_a_template and not t.is_a_snapshot else None


def _explain(t: Any, op: str) -> XsctlError | None:
    return explain(t, op)


TEMPLATE = Kind(
    cls="template", noun="template", nouns="templates", resolve=resolve_template,
    load=_load, name=lambda t: t.name_label, members=_members, explain=_explain,
    classes=VM.classes,
)


# ------------------------------------------------------------------ what a template says


@dataclass(frozen=True)
class ProvisionDisk:
    """One <disk> of a template's ``disks`` data (xapi_templates.ml): made by
    VM.provision on the SR whose uuid is written in ``sr`` first."""

    device: str
    size: int
    sr: str  # a uuid, or "" in a template (xe vm-install writes the default SR's)
    bootable: bool
    type: str


_DISK = re.compile(r"<disk\b([^>]*)/>")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


def provision_disks(vm: Vm) -> list[ProvisionDisk]:
    """The disks a template will provision; [] when it has no ``disks`` data. What
    cannot be read is left out (xapi would refuse it at provisioning)."""
    xml = vm.other_config.get("disks", "")
    out = []
    for m in _DISK.finditer(xml):
        a = dict(_ATTR.findall(m.group(1)))
        size = a.get("size", "")
        if not size.isdigit() or "device" not in a:
            continue
        out.append(ProvisionDisk(a["device"], int(size), a.get("sr", ""),
                                 a.get("bootable") == "true", a.get("type", "system")))
    return out


def provision_xml(disks: Iterable[ProvisionDisk]) -> str:
    """The ``disks`` data for these disks, in xapi_templates.ml's form."""
    body = "".join(
        f'<disk device="{d.device}" size="{d.size}" sr="{d.sr}" '
        f'bootable="{"true" if d.bootable else "false"}" type="{d.type}"/>' for d in disks)
    return f"<provision>{body}</provision>"


def install_methods(vm: Vm) -> tuple[str, ...]:
    """other_config install-methods (cdrom, nfs, http, ftp), as the built-in templates
    declare them; a custom template declares none."""
    raw = vm.other_config.get("install-methods", "")
    return tuple(m.strip() for m in raw.split(",") if m.strip())


def recommended(cache: Cache, vm: Vm) -> dict[str, int]:
    """The template's recommendations (memory-static-max, vcpus-max, number-of-vifs,
    number-of-vbds, ...) as numbers: what the New VM wizard's limits are."""
    xml = str((cache.get("vm", vm.ref) or {}).get("recommendations", ""))
    out: dict[str, int] = {}
    for m in re.finditer(r"<restriction\b([^>]*)/>", xml):
        a = dict(_ATTR.findall(m.group(1)))
        key = a.get("field") or a.get("property")
        if key and a.get("max", "").isdigit():
            out[key] = int(a["max"])
    return out


_FAMILIES = (("windows", "Windows"), ("debian", "Debian"), ("ubuntu", "Ubuntu"),
             ("rocky", "Rocky Linux"), ("centos", "CentOS"), ("alma", "AlmaLinux"),
             ("red hat", "Red Hat"), ("rhel", "Red Hat"), ("oracle", "Oracle Linux"),
             ("suse", "SUSE"), ("sles", "SUSE"), ("citrix", "Citrix"), ("linux", "Linux"))


def os_family(vm: Vm) -> str:
    """The OS family a template installs, from its name or the built-in template it
    descends from (base_template_name); "Other" when neither says."""
    for text in (vm.name_label, vm.other_config.get("base_template_name", "")):
        low = text.lower()
        for word, family in _FAMILIES:
            if word in low:
                return family
    if vm.other_config.get("linux_template") == "true":
        return "Linux"
    return "Other"


def made_from_counts(cache: Cache) -> dict[str, int]:
    """Template name -> how many VMs were made from it, in one pass over the VMs:
    xapi_vm_clone.ml names the template a clone came from in other_config
    base_template_name (kept from the first template in a chain)."""
    out: dict[str, int] = {}
    for _, r in cache.snapshot("vm"):
        if is_guest(r):
            name = (r.get("other_config") or {}).get("base_template_name")
            if name:
                out[name] = out.get(name, 0) + 1
    return out


def made_from(cache: Cache, vm: Vm, counts: dict[str, int] | None = None) -> int:
    """VMs made from the template (``counts`` from :func:`made_from_counts` when
    asked for many templates)."""
    counts = made_from_counts(cache) if counts is None else counts
    return counts.get(str((cache.get("vm", vm.ref) or {}).get("name_label", "")), 0)


@dataclass(frozen=True)
class TemplateDisk:
    """A disk a new VM from this template gets: one it provisions, or one of its own."""

    device: str
    size: int
    sr_name: str  # "" where the install chooses it
    provisioned: bool


def template_disks(cache: Cache, vm: Vm) -> list[TemplateDisk]:
    out = [TemplateDisk(d.device, d.size, "", True) for d in provision_disks(vm)]
    for d in vm_disks(cache, vm):
        if d.vdi is not None and d.vbd.type == "Disk":
            out.append(TemplateDisk(d.vbd.userdevice, d.vdi.virtual_size, d.vdi.sr_name, False))
    return out


def describe_disks(disks: Iterable[TemplateDisk]) -> str:
    parts = [human_bytes(d.size) + (f" on {d.sr_name}" if d.sr_name else "") for d in disks]
    return ", ".join(parts) or "none"


def template_json(cache: Cache, vm: Vm) -> dict[str, Any]:
    rec = cache.get("vm", vm.ref) or {}
    return {
        "uuid": vm.uuid,
        "name_label": str(rec.get("name_label", "")),
        "name_description": str(rec.get("name_description", "")),
        "builtin": is_builtin(vm),
        "os_family": os_family(vm),
        "memory_static_max": vm.memory_static_max,
        "memory_static_min": vm.memory_static_min,
        "VCPUs_at_startup": vm.VCPUs_at_startup,
        "VCPUs_max": vm.VCPUs_max,
        "recommendations": recommended(cache, vm),
        "disks": [{"device": d.device, "size": d.size, "provisioned": d.provisioned,
                   "SR": d.sr_name or None} for d in template_disks(cache, vm)],
        "install_methods": list(install_methods(vm)),
        "vms_made": made_from(cache, vm),
    }


# ------------------------------------------------------------------ planners


def _same_name(cache: Cache, t: Vm, name: str) -> tuple[str, ...]:
    return same_name(cache, t, name, noun="template", accept=is_template)


def _resolve_sr(ctx: Context, t: Any, text: str) -> str:
    return "" if not text.strip() else resolve_sr(ctx.cache, text)


def copy(cache: Cache, t: Vm, name: str, sr: str | None = None) -> Plan:
    """A full copy (VM.copy), of the disks too, to ``sr`` or each where it is."""
    name_given(name, "the copy's name")
    check_allowed(t, "copy")
    target = Sr.get(cache, sr) if sr else None
    names = {t.ref: t.name_label}
    if target is not None:
        names[target.ref] = target.display_name
    return Plan(
        title=f"Copy template {t.name_label} as {name!r}"
        + (f" to {target.display_name}" if target else ""),
        action="template.copy", targets=(t.ref,),
        calls=(Call("VM.copy", (t.ref, name, target.ref if target else NULL), True),),
        xe=(xe("vm-copy", uuid=t.uuid, new_name_label=name,
               sr_uuid=target.uuid if target else None),),
        names=names, warnings=_same_name(cache, t, name),
        notes=("A copy is always a custom template, even of a built-in one.",)
        if is_builtin(t) else ())


def rename(cache: Cache, t: Vm, name: str) -> Plan:
    name_given(name, "the name")
    if name == t.name_label:
        raise UsageError(f"{t.name_label} already has that name")
    notes: tuple[str, ...] = ()
    if is_builtin(t):
        notes = ("A built-in template may get its name back when the host is updated.",)
    return Plan(
        title=f"Rename template {t.name_label} to {name!r}", action="template.rename",
        targets=(t.ref,), calls=(Call("VM.set_name_label", (t.ref, name)),),
        xe=(xe("template-param-set", uuid=t.uuid, name_label=name),),
        names={t.ref: t.name_label}, warnings=_same_name(cache, t, name), notes=notes)


def _deletable(cache: Cache, t: Any) -> str | None:
    if is_builtin(t):
        return ("it is a built-in template (it comes with the host): only custom ones "
                "can be deleted")
    return None


def delete(cache: Cache, t: Vm) -> Plan:
    """xe template-uninstall: the template and the disks only it uses. The VMs made
    from it are independent of it (their disks are their own)."""
    why = _deletable(cache, t)
    if why is not None:
        from xsctl.xapi.ops.catalogue import Refused

        raise Refused(why)
    check_allowed(t, "destroy")
    mine, shared = [], []
    for d in vm_disks(cache, t):
        if d.vdi is None or d.vbd.type != "Disk":
            continue
        if [v for v in d.vdi.VBDs if v != d.vbd.ref] or d.vdi.sharable:
            shared.append(d.vdi.name_label)
        else:
            mine.append(d.vdi)
    names = {t.ref: t.name_label, **{v.ref: v.name_label for v in mine}}
    notes = ["Disks destroyed: " + (", ".join(v.name_label for v in mine) or "none") + "."]
    if shared:
        notes.append(f"Kept (another VM uses them): {', '.join(shared)}.")
    n = made_from(cache, t)
    if n:
        notes.append(f"The {n} VM(s) made from it stay as they are.")
    return Plan(
        title=f"Delete template {t.name_label}", action="template.delete", targets=(t.ref,),
        calls=(Call("VM.destroy", (t.ref,), True),
               *(Call("VDI.destroy", (v.ref,), True) for v in mine)),
        xe=(xe("template-uninstall", template_uuid=t.uuid, force=True),),
        names=names, destructive=True, confirm_text=t.name_label, notes=tuple(notes))


_NAME_FLAGS = ("--name", "--new-name-label")

declare(
    Operation("template.copy", TEMPLATE, "Copy", "C", "copy", "vm-copy", "copied",
              "A full copy of the template, to the same or another SR", copy,
              allowed="copy",
              params=(Param("name", ParamKind.TEXT, "Name of the copy", _NAME_FLAGS,
                            "the copy's name",
                            default=lambda c, t: f"{t.name_label} (copy)", metavar="NAME"),
                      Param("sr", ParamKind.PICK, "Storage", ("--sr", "--sr-uuid"),
                            "copy the disks to this SR (default: where they are)",
                            required=False, choices=copy_sr_choices, resolve=_resolve_sr,
                            metavar="SR"))),
    Operation("template.rename", TEMPLATE, "Rename", "r", "rename", "template-param-set",
              "renamed", "Change the template's name", rename,
              params=(Param("name", ParamKind.TEXT, "New name", _NAME_FLAGS, "the new name",
                            default=lambda c, t: t.name_label, metavar="NAME"),)),
    Operation("template.delete", TEMPLATE, "Delete", "delete", "destroy",
              "template-uninstall", "deleted",
              "Delete a custom template and the disks only it uses", delete,
              when=_deletable, impact=Impact.DESTRUCTIVE, footer=True),
)


def template_limits(cache: Cache, t: Vm) -> tuple[int, int, int]:
    """(most memory, most vCPUs, most VIFs) a VM from this template may have."""
    rec = recommended(cache, t)
    return (rec.get("memory-static-max", 2**40 * 4), rec.get("vcpus-max", 0) or 0,
            rec.get("number-of-vifs", 7) or 7)
