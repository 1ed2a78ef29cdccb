"""A new VM from a template: every choice checked before any call, then the plan that
does what ``xe vm-install`` does (cli_operations.ml vm_install_real) and what the New
VM wizard adds after it.

xe vm-install clones the template (VM.copy when an SR is named: the template's own
disks then go there), writes the SR's uuid into the ``disks`` data (xapi refuses
``sr=""``: xapi_templates.ml create_disk looks the uuid up), and calls VM.provision,
which makes those disks and turns the clone into a VM. The wizard then sets memory
and vCPUs, adds disks, the CD or the install repository (other_config
install-repository), the VIFs and the boot order, and may start it.

The clone's undo removes the new VM and every disk it holds by then, so a failure at
any later step leaves nothing behind unless the user asks to keep it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import (
    NULL,
    Host,
    Pool,
    Sr,
    Vdi,
    Vm,
    as_int,
    human_bytes,
    is_guest,
    parse_size,
    vm_disks,
)
from xsctl.xapi.ops.base import Call, Plan, Result, Undo, Var, xe
from xsctl.xapi.ops.catalogue import Choice, Refused
from xsctl.xapi.ops.resolve import resolve, resolve_host, resolve_sr, resolve_template
from xsctl.xapi.ops.snapshot import vm_and_disks_undo
from xsctl.xapi.ops.template import (
    ProvisionDisk,
    install_methods,
    is_builtin,
    provision_disks,
    provision_xml,
    recommended,
)
from xsctl.xapi.ops.vm import MAX_VCPUS, MIN_MEMORY

CD_DEVICE = "3"  # where XenCenter and the HVM templates put the CD drive (IDE 1:1)
MAX_VHD = 2040 * 1024**3  # a VHD disk's limit on the VHD-based SRs (vhd-util)
_VHD_SRS = frozenset({"lvm", "ext", "nfs", "lvmoiscsi", "lvmohba", "smb", "file", "lvmofcoe"})
# the schemes each install method takes (other_config install-methods)
_METHODS = {"http": "http", "https": "http", "ftp": "ftp", "nfs": "nfs"}


@dataclass(frozen=True)
class DiskChoice:
    size: int
    sr: str  # SR ref


@dataclass(frozen=True)
class InstallSpec:
    """What the user chose: refs, sizes and texts; None is "as the template says"."""

    template: str
    name: str
    description: str = ""
    memory: int | None = None
    vcpus: int | None = None
    disks: tuple[DiskChoice, ...] | None = None
    networks: tuple[str, ...] = ()
    iso: str | None = None
    install_url: str | None = None
    home: str | None = None
    start: bool = False
    warnings: tuple[str, ...] = field(default=(), compare=False)


# ------------------------------------------------------------------ what can be chosen


def templates(cache: Cache) -> list[Vm]:
    """Templates a VM can be installed from, custom ones first, then by name."""
    out = [t for t in (Vm.get(cache, r) for r, rec in cache.snapshot("vm")
                       if rec.get("is_a_template") and not rec.get("is_a_snapshot"))
           if t is not None]
    out.sort(key=lambda t: (is_builtin(t), t.name_label.lower()))
    return out


def usable_sr_reason(cache: Cache, s: Sr, home: str | None = None) -> str | None:
    """Why new disks cannot go on ``s`` (for a VM with ``home``), or None."""
    if s.is_iso or s.type == "udev" or s.is_tools_sr:
        return "holds no disks"
    if s.allowed_operations and "vdi_create" not in s.allowed_operations:
        return "cannot create disks"
    if not s.hosts:
        return "not plugged on any host"
    if home and home not in s.hosts:
        h = Host.get(cache, home)
        return f"not reachable from {h.name_label if h else 'the home server'}"
    return None


def default_sr(cache: Cache) -> str | None:
    """The pool's default SR where it can take disks, else the first shared one that
    can, else any that can: where ``--disk SIZE`` without ``@SR`` goes."""
    pool = Pool.of(cache)
    cands: list[Sr] = [s for s in (Sr.get(cache, r) for r, _ in cache.snapshot("sr"))
                       if s is not None and usable_sr_reason(cache, s) is None]
    if pool is not None:
        for s in cands:
            if s.ref == pool.default_SR:
                return s.ref
    cands.sort(key=lambda s: (not s.shared, s.name_label.lower()))
    return cands[0].ref if cands else None


def sr_choices(cache: Cache, need: int = 0, home: str | None = None) -> list[Choice]:
    from xsctl.xapi.models import srs

    out = []
    for s in srs(cache):
        if s.is_iso or s.type == "udev" or s.is_tools_sr:
            continue
        why = usable_sr_reason(cache, s, home)
        if why is None and s.physical_size and s.free < need:
            why = f"not enough space ({human_bytes(s.free)} free)"
        out.append(Choice(s.ref, s.display_name, f"{human_bytes(s.free)} free", why))
    return out


def iso_choices(cache: Cache) -> list[Choice]:
    """The ISOs of every ISO SR (the one predicate: Sr.is_iso), by name."""
    out = []
    for ref, r in cache.snapshot("vdi"):
        v = Vdi.from_record(cache, ref, r)
        s = Sr.get(cache, v.SR)
        if s is None or not s.is_iso or s.type == "udev" or v.missing:
            continue
        why = None if s.hosts else "its SR is not plugged"
        out.append(Choice(ref, v.name_label, f"{human_bytes(v.virtual_size)} · {s.display_name}",
                          why))
    out.sort(key=lambda c: c.label.lower())
    return out


def _internal(rec: dict[str, Any]) -> bool:
    oc = rec.get("other_config") or {}
    return oc.get("is_host_internal_management_network") == "true"


def _management(cache: Cache, network: str) -> bool:
    """The network of a host's management interface: where a new VM's first VIF goes
    by default (XenCenter offers the same)."""
    pifs = (cache.get("network", network) or {}).get("PIFs") or ()
    return any((cache.get("pif", p) or {}).get("management") for p in pifs) or \
        (cache.get("network", network) or {}).get("bridge") == "xenbr0"


def network_choices(cache: Cache) -> list[Choice]:
    out = []
    for ref, r in cache.snapshot("network"):
        why = "the hosts' internal network" if _internal(r) else None
        out.append(Choice(ref, str(r.get("name_label", "")), str(r.get("bridge", "")), why))
    out.sort(key=lambda c: (c.reason is not None, c.label.lower()))
    return out


def host_choices(cache: Cache, memory: int) -> list[Choice]:
    from xsctl.xapi.models import hosts

    out = [Choice("", "None", "xapi chooses where it starts")]
    for h in hosts(cache):
        why = None
        if not h.enabled:
            why = "in maintenance"
        elif not h.live:
            why = "not responding"
        elif h.memory_free and memory > h.memory_free:
            why = f"not enough free memory ({human_bytes(h.memory_free)} free)"
        out.append(Choice(h.ref, h.name_label, f"{human_bytes(h.memory_free)} free", why))
    return out


def defaults(cache: Cache, template: str, name: str = "") -> InstallSpec:
    """The template's own choices: its memory and vCPUs, the disks it provisions (on
    the default SR), one VIF on the first guest network, no media, not started."""
    t = _template(cache, template)
    sr = default_sr(cache)
    disks: tuple[DiskChoice, ...] | None = None
    if provision_disks(t) and sr is not None:
        disks = tuple(DiskChoice(d.size, sr) for d in provision_disks(t))
    nets = [c.value for c in network_choices(cache) if c.reason is None]
    nets.sort(key=lambda n: not _management(cache, n))
    nets = nets[:1]
    return InstallSpec(template=t.ref, name=name or t.name_label, memory=t.memory_static_max,
                       vcpus=t.VCPUs_at_startup, disks=disks, networks=tuple(nets))


# ------------------------------------------------------------------ the CLI's words


def parse_disk(cache: Cache, text: str) -> DiskChoice:
    """``20G`` (on the default SR) or ``20G@NFS storage`` (an SR's name or uuid)."""
    size_text, at, sr_text = text.partition("@")
    size = parse_size(size_text, default_unit="G")
    if at and sr_text.strip():
        sr = resolve_sr(cache, sr_text.strip())
    else:
        found = default_sr(cache)
        if found is None:
            raise UsageError(f"--disk {text!r}: no SR can take new disks; name one (SIZE@SR)")
        sr = found
    return DiskChoice(size, sr)


def resolve_iso(cache: Cache, spec: str) -> str:
    """An ISO by name or uuid, among the VDIs of ISO SRs."""

    def on_iso_sr(r: dict[str, Any]) -> bool:
        s = Sr.get(cache, str(r.get("SR", NULL)))
        return s is not None and s.is_iso and s.type != "udev"

    return resolve(cache, "vdi", spec, kind="ISO", accept=on_iso_sr)


def resolve_network(cache: Cache, spec: str) -> str:
    return _by_bridge(cache, spec) or resolve(cache, "network", spec, kind="network")


def _by_bridge(cache: Cache, spec: str) -> str | None:
    hits = [ref for ref, r in cache.snapshot("network") if r.get("bridge") == spec]
    return hits[0] if len(hits) == 1 else None


def spec_from_words(cache: Cache, *, template: str, name: str, description: str = "",
                    memory: str | None = None, vcpus: str | None = None,
                    disks: Sequence[str] = (), networks: Sequence[str] = (),
                    iso: str | None = None, install_url: str | None = None,
                    home: str | None = None, start: bool = False) -> InstallSpec:
    """The CLI's options as an :class:`InstallSpec` (names resolved, sizes read)."""
    t = resolve_template(cache, template)
    mem = parse_size(memory) if memory is not None else None
    n_cpu: int | None = None
    if vcpus is not None:
        if not (vcpus.strip().isascii() and vcpus.strip().isdigit()):
            raise UsageError(f"--vcpus {vcpus!r} is not a whole number")
        n_cpu = int(vcpus)
    base = defaults(cache, t, name)
    return InstallSpec(
        template=t, name=name, description=description,
        memory=mem if mem is not None else base.memory,
        vcpus=n_cpu if n_cpu is not None else base.vcpus,
        disks=tuple(parse_disk(cache, d) for d in disks) if disks else base.disks,
        networks=tuple(resolve_network(cache, n) for n in networks),
        iso=resolve_iso(cache, iso) if iso is not None else None,
        install_url=install_url,
        home=resolve_host(cache, home) if home is not None else None, start=start)


# ------------------------------------------------------------------ the checks


def _template(cache: Cache, ref: str) -> Vm:
    t = Vm.get(cache, ref)
    if t is None or not t.is_a_template or t.is_a_snapshot:
        raise UsageError("that is not a template")
    return t


def _cd_devices(cache: Cache, t: Vm) -> list[str]:
    return [d.vbd.userdevice for d in vm_disks(cache, t) if d.vbd.type == "CD"]


def _check_url(t: Vm, url: str) -> str:
    """The URL as the template's install methods take it; why not, else."""
    if any(c.isspace() or ord(c) < 32 for c in url) or not url:
        raise UsageError("--install-url: a URL has no spaces or control characters")
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://[^/\s]+", url)
    if m is None:
        raise UsageError(f"--install-url {url!r}: not a URL (http://, https://, ftp:// or "
                         "nfs://server/path)")
    method = _METHODS.get(m.group(1).lower())
    if method is None:
        raise UsageError(f"--install-url: {m.group(1)}:// is not an install method "
                         "(http, https, ftp, nfs)")
    methods = install_methods(t)
    if method not in methods:
        says = ", ".join(methods) if methods else "none"
        raise Refused(f"{t.name_label} cannot install from a network repository by {method} "
                      f"(its install methods: {says})")
    return url


def check(cache: Cache, spec: InstallSpec) -> InstallSpec:
    """Every choice checked against the template, the hosts and the storage before
    anything is sent. Returns the spec with the warnings found; raises Refused (what
    xapi or the pool would refuse) or UsageError (what makes no sense)."""
    t = _template(cache, spec.template)
    warnings: list[str] = []
    if not spec.name.strip():
        raise UsageError("the new VM needs a name")
    if any(is_guest(r) and r.get("name_label") == spec.name for _, r in cache.snapshot("vm")):
        warnings.append(f"Another VM is already named {spec.name!r}: afterwards both can "
                        "only be told apart by UUID.")
    rec = recommended(cache, t)
    # memory: the template's least, its recommended most, and the hosts' free memory
    memory = spec.memory if spec.memory is not None else t.memory_static_max
    least = max(MIN_MEMORY, t.memory_static_min)
    if memory < least:
        raise Refused(f"{human_bytes(memory)} of memory is below {t.name_label}'s least "
                      f"({human_bytes(least)})")
    most = rec.get("memory-static-max")
    if most and memory > most:
        raise Refused(f"{human_bytes(memory)} of memory is above {t.name_label}'s limit "
                      f"({human_bytes(most)})")
    vcpus = spec.vcpus if spec.vcpus is not None else t.VCPUs_at_startup
    vmax = rec.get("vcpus-max") or MAX_VCPUS
    if not 1 <= vcpus <= vmax:
        raise Refused(f"{vcpus} vCPUs is out of {t.name_label}'s range (1 to {vmax})")
    hosts = [h for h in (Host.get(cache, r) for r, _ in cache.snapshot("host"))
             if h is not None]
    cpus = max((h.cpu_count for h in hosts), default=0)
    if cpus and vcpus > cpus:
        raise Refused(f"{vcpus} vCPUs is more than any host has ({cpus} at most): it "
                      "could never start")
    home: Host | None = None
    if spec.home:
        home = Host.get(cache, spec.home)
        if home is None:
            raise UsageError("the home server is not in the pool")
    # where it can run: the home server, or any live enabled host
    runnable = [home] if home is not None else [h for h in hosts if h.enabled and h.live]
    if home is not None and not (home.enabled and home.live):
        text = (f"The home server {home.name_label} is "
                + ("in maintenance" if not home.enabled else "not responding"))
        if spec.start:
            raise Refused(text + ": the VM could not start there")
        warnings.append(text + ".")
    total = max((h.memory_total for h in runnable), default=0)
    if total and memory > total:
        where = home.name_label if home is not None else "any host"
        raise Refused(f"{human_bytes(memory)} of memory is more than {where} has "
                      f"({human_bytes(total)}): it could never start")
    free = max((h.memory_free for h in runnable), default=0)
    if free and memory > free:
        where = home.name_label if home is not None else "any host"
        text = (f"{human_bytes(memory)} of memory is more than {where} has free "
                f"({human_bytes(free)})")
        if spec.start:
            raise Refused(text + ": it could not start")
        warnings.append(text + ": it could not start now.")
    # disks
    own = [d for d in vm_disks(cache, t) if d.vdi is not None and d.vbd.type == "Disk"]
    disks = spec.disks or ()
    max_vbds = rec.get("number-of-vbds", 255) or 255
    if len(own) + len(disks) + (1 if spec.iso else 0) > max_vbds:
        raise Refused(f"{t.name_label} takes at most {max_vbds} drives")
    need: dict[str, int] = {}
    for i, d in enumerate(disks):
        s = Sr.get(cache, d.sr)
        if s is None:
            raise UsageError(f"disk {i + 1}: its SR is not in the pool")
        why = usable_sr_reason(cache, s, spec.home)
        if why is not None:
            raise Refused(f"disk {i + 1} cannot go on {s.display_name}: it {why}")
        if d.size < 1024**2:
            raise UsageError(f"disk {i + 1}: {human_bytes(d.size)} is too small (1 MiB at least)")
        if s.type in _VHD_SRS and d.size > MAX_VHD:
            raise Refused(f"disk {i + 1}: {human_bytes(d.size)} is more than a disk on "
                          f"{s.display_name} can hold ({human_bytes(MAX_VHD)})")
        need[s.ref] = need.get(s.ref, 0) + d.size
    for ref, total in need.items():
        s = Sr.get(cache, ref)
        assert s is not None
        if s.physical_size and total > s.free:
            raise Refused(f"{s.display_name} has {human_bytes(s.free)} free; the disks on it "
                          f"need {human_bytes(total)}")
    local_hosts = {s.host_name for s in (Sr.get(cache, r) for r in need) if s and not s.shared}
    if len(local_hosts) > 1:
        raise Refused("the disks are on local storage of different hosts ("
                      + ", ".join(sorted(local_hosts)) + "): no host could start it")
    # install media
    if spec.iso and spec.install_url:
        raise UsageError("choose one install medium: an ISO or a network install URL")
    if spec.iso:
        v = cache.get("vdi", spec.iso)
        s = Sr.get(cache, str(v.get("SR", NULL))) if v else None
        if v is None or s is None or not s.is_iso or s.type == "udev":
            raise Refused("that ISO is not on an ISO SR")
        if not s.hosts:
            raise Refused(f"{s.display_name} (the ISO's SR) is not plugged on any host")
        if home is not None and home.ref not in s.hosts:
            raise Refused(f"{s.display_name} (the ISO's SR) is not reachable from "
                          f"{home.name_label}")
        methods = install_methods(t)
        if methods and "cdrom" not in methods:
            raise Refused(f"{t.name_label} does not install from a CD "
                          f"(its install methods: {', '.join(methods)})")
        if _cd_devices(cache, t):
            raise Refused(f"{t.name_label} has a CD drive of its own: insert the ISO in it "
                          "once the VM is made")
    if spec.install_url:
        _check_url(t, spec.install_url)
    if not spec.iso and not spec.install_url and not own:
        warnings.append("With no install media and no disks of the template's own, the new "
                        "VM has nothing to boot from until media is inserted.")
    # networks
    max_vifs = rec.get("number-of-vifs", 7) or 7
    if len(spec.networks) > max_vifs:
        raise Refused(f"{t.name_label} takes at most {max_vifs} network interfaces")
    for n in spec.networks:
        r = cache.get("network", n)
        if r is None:
            raise UsageError("a chosen network is not in the pool")
        if _internal(r):
            raise Refused(f"{r.get('name_label', '')} is the hosts' internal network: not for guests")
    return replace(spec, memory=memory, vcpus=vcpus, warnings=tuple(warnings))


# ------------------------------------------------------------------ the plan


def _devices(used: set[str], n: int) -> list[str]:
    """``n`` free disk positions, the CD's kept free."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        d = str(i)
        if d not in used and d != CD_DEVICE:
            out.append(d)
        i += 1
    return out


def plan(cache: Cache, spec: InstallSpec) -> Plan:
    spec = check(cache, spec)
    t = _template(cache, spec.template)
    new = Result(0)
    VM = Var("vm")
    names: dict[str, str] = {t.ref: t.name_label}
    calls: list[Call] = []
    lines: list[str] = []
    notes: list[str] = []

    def sr_uuid(ref: str) -> str:
        s = Sr.get(cache, ref)
        names[ref] = s.display_name if s else ref
        return s.uuid if s else ""

    provisioned = provision_disks(t)
    chosen = list(spec.disks or ())
    own_used = {d.vbd.userdevice for d in vm_disks(cache, t)}
    # the template's disks data is rewritten with the chosen sizes and SRs; a template
    # without it (a custom one, with disks of its own) gets the chosen disks added
    rewrite = bool(provisioned) and spec.disks is not None
    extra = chosen if not provisioned else []
    calls.append(Call("VM.clone", (t.ref, spec.name), True,
                      undo=vm_and_disks_undo(f"the new VM {spec.name!r} and its disks")))
    first_sr = sr_uuid(chosen[0].sr) if chosen and rewrite else None
    lines.append("vm=$(" + xe("vm-install", template=t.uuid, new_name_label=spec.name,
                              sr_uuid=first_sr) + ")")
    if spec.description:
        calls.append(Call("VM.set_name_description", (new, spec.description)))
        lines.append(xe("vm-param-set", uuid=VM, name_description=spec.description))
    if rewrite:
        devices = _devices(own_used, len(chosen))
        types = [d.type for d in provisioned]
        disks = [ProvisionDisk(dev, d.size, sr_uuid(d.sr), i == 0,
                               types[i] if i < len(types) else "user")
                 for i, (dev, d) in enumerate(zip(devices, chosen, strict=True))]
        calls += [Call("VM.remove_from_other_config", (new, "disks")),
                  Call("VM.add_to_other_config", (new, "disks", provision_xml(disks)))]
        same = [(d.size, d.device) for d in disks] == [(d.size, d.device) for d in provisioned]
        if not (same and len({d.sr for d in chosen}) == 1):
            notes.append("xe vm-install provisions the template's own disks on one SR; the "
                          "API calls write the chosen sizes and SRs into the new VM's disks "
                          "data before VM.provision.")
    calls.append(Call("VM.provision", (new,), True))
    memory = spec.memory or t.memory_static_max
    if memory != t.memory_static_max or memory != t.memory_dynamic_min:
        smin = min(t.memory_static_min, memory)
        calls.append(Call("VM.set_memory_limits",
                          (new, str(smin), str(memory), str(memory), str(memory))))
        lines.append(xe("vm-memory-limits-set", uuid=VM, static_min=smin, static_max=memory,
                        dynamic_min=memory, dynamic_max=memory))
    vcpus = spec.vcpus or t.VCPUs_at_startup
    if vcpus != t.VCPUs_at_startup or vcpus != t.VCPUs_max:
        # xapi checks VCPUs_at_startup <= VCPUs_max at each step
        if vcpus >= t.VCPUs_max:
            calls += [Call("VM.set_VCPUs_max", (new, str(vcpus))),
                      Call("VM.set_VCPUs_at_startup", (new, str(vcpus)))]
        else:
            calls += [Call("VM.set_VCPUs_at_startup", (new, str(vcpus))),
                      Call("VM.set_VCPUs_max", (new, str(vcpus)))]
        lines.append(xe("vm-param-set", uuid=VM, VCPUs_max=vcpus, VCPUs_at_startup=vcpus))
    for i, (dev, d) in enumerate(zip(_devices(own_used, len(extra)), extra, strict=True)):
        label = f"{spec.name} {dev}"
        vdi_step = len(calls)
        calls.append(Call("VDI.create", ({
            "name_label": label, "name_description": "", "SR": d.sr, "virtual_size": str(d.size),
            "type": "user", "sharable": False, "read_only": False, "other_config": {},
            "xenstore_data": {}, "sm_config": {}, "tags": []},), True,
            undo=Undo(f"the new disk {label!r}", (Call("VDI.destroy", (Result(vdi_step),)),))))
        calls.append(Call("VBD.create", ({
            "VM": new, "VDI": Result(vdi_step), "userdevice": dev, "bootable": False,
            "mode": "RW", "type": "Disk", "unpluggable": True, "empty": False,
            "other_config": {"owner": ""}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}, "device": "", "currently_attached": False},)))
        var = f"disk{i + 1}"
        lines.append(f"{var}=$(" + xe("vdi-create", sr_uuid=sr_uuid(d.sr), name_label=label,
                                      virtual_size=d.size, type="user") + ")")
        lines.append(xe("vbd-create", vm_uuid=VM, vdi_uuid=Var(var), device=dev, type="Disk"))
    boot_params = dict((cache.get("vm", t.ref) or {}).get("HVM_boot_params") or {})
    order = None
    if spec.iso:
        iso_name = _vdi_name(cache, spec.iso)
        names[spec.iso] = iso_name
        calls.append(Call("VBD.create", ({
            "VM": new, "VDI": spec.iso, "userdevice": CD_DEVICE, "bootable": True,
            "mode": "RO", "type": "CD", "unpluggable": True, "empty": False,
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
            "device": "", "currently_attached": False},)))
        lines.append(xe("vm-cd-add", uuid=VM, cd_name=iso_name, device=CD_DEVICE))
        order = "dcn"
    elif spec.install_url:
        calls.append(Call("VM.add_to_other_config", (new, "install-repository",
                                                     spec.install_url)))
        lines.append(xe("vm-param-set", uuid=VM,
                        **{"other-config:install-repository": spec.install_url}))
        order = "ncd"
    if order is not None and boot_params.get("order") != order:
        calls.append(Call("VM.set_HVM_boot_params", (new, {**boot_params, "order": order})))
        lines.append(xe("vm-param-set", uuid=VM, **{"HVM-boot-params:order": order}))
    for i, n in enumerate(spec.networks):
        r = cache.get("network", n) or {}
        names[n] = str(r.get("name_label", n))
        calls.append(Call("VIF.create", ({
            "device": str(i), "network": n, "VM": new, "MAC": "",
            "MTU": str(as_int(r.get("MTU"), 1500)), "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {},
            "locking_mode": "network_default", "ipv4_allowed": [], "ipv6_allowed": []},)))
        lines.append(xe("vif-create", vm_uuid=VM, network_uuid=str(r.get("uuid", "")),
                        device=i))
    home = Host.get(cache, spec.home) if spec.home else None
    if home is not None:
        names[home.ref] = home.name_label
        calls.append(Call("VM.set_affinity", (new, home.ref)))
        lines.append(xe("vm-param-set", uuid=VM, affinity=home.uuid))
    if spec.start:
        if home is not None:
            calls.append(Call("VM.start_on", (new, home.ref, False, False), True))
            lines.append(xe("vm-start", uuid=VM, on=home.name_label))
        else:
            calls.append(Call("VM.start", (new, False, False), True))
            lines.append(xe("vm-start", uuid=VM))
    return Plan(
        title=f"New VM {spec.name!r} from {t.name_label}", action="vm.install",
        targets=(t.ref,), calls=tuple(calls), xe=tuple(lines), names=names,
        notes=tuple(notes), warnings=spec.warnings)


def summary(cache: Cache, spec: InstallSpec) -> list[tuple[str, str]]:
    """The choices as a person reads them (the wizard's review page)."""
    t = _template(cache, spec.template)
    disks = ", ".join(f"{human_bytes(d.size)} on {sr_name(cache, d.sr)}"
                      for d in spec.disks or ()) or "the template's own"
    media = ("ISO " + _vdi_name(cache, spec.iso) if spec.iso else f"network install from {spec.install_url}"
             if spec.install_url else "none")
    nets = ", ".join(str((cache.get("network", n) or {}).get("name_label", n))
                     for n in spec.networks) or "none"
    home = Host.get(cache, spec.home) if spec.home else None
    return [
        ("Template", t.name_label),
        ("Name", spec.name),
        ("Description", spec.description or "-"),
        ("Install media", media),
        ("Home server", home.name_label if home else "none"),
        ("vCPUs", str(spec.vcpus or t.VCPUs_at_startup)),
        ("Memory", human_bytes(spec.memory or t.memory_static_max)),
        ("Disks", disks),
        ("Networks", nets),
        ("Start", "yes" if spec.start else "no"),
    ]


def sr_name(cache: Cache, ref: str) -> str:
    s = Sr.get(cache, ref)
    return s.display_name if s else "?"


def _vdi_name(cache: Cache, ref: str) -> str:
    r = cache.get("vdi", ref)
    return Vdi.from_record(cache, ref, r).name_label if r is not None else ref
