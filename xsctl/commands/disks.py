"""``xsctl sr list|show`` and ``vdi list|show``. The operations (``sr scan``, ``vdi
create``, ...) are generated from the catalogue (commands/ops.py); what an orphan is,
who uses a disk and what an SR's row warns about come from xsctl.xapi.storage, as in
the app's Storage and Disks views."""

from __future__ import annotations

import argparse
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_fields, print_json, print_table, say
from xsctl.xapi import models, storage
from xsctl.xapi.cache import Cache
from xsctl.xapi.models import NULL, Sr, Vdi, human_bytes
from xsctl.xapi.ops.resolve import resolve, resolve_sr

CLASSES = ["pool", "host", "SR", "PBD", "SM", "VDI", "VBD", "VM"]


def _raw(cache: Cache, cls: str, ref: str, field: str = "name_label") -> str:
    """A field as xapi holds it (JSON keeps the exact text)."""
    r = cache.get(cls, ref) if ref and ref != NULL else None
    return str(r.get(field, "")) if r else ""


# ------------------------------------------------------------------ SRs


def _pbds(cache: Cache, sr: Sr) -> list[dict[str, Any]]:
    out = []
    for p in sr.PBDs:
        r = cache.get("pbd", p)
        if r is not None:
            out.append({"uuid": str(r.get("uuid", "")),
                        "host": _raw(cache, "host", str(r.get("host")), "uuid"),
                        "host_name": _raw(cache, "host", str(r.get("host"))),
                        "currently_attached": bool(r.get("currently_attached"))})
    out.sort(key=lambda p: str(p["host_name"]).lower())
    return out


def sr_json(cache: Cache, sr: Sr, counts: dict[str, int], orphans: dict[str, int]) -> dict[str, Any]:
    r = cache.get("sr", sr.ref) or {}
    return {
        "uuid": sr.uuid,
        "name_label": str(r.get("name_label", "")),
        "name_description": str(r.get("name_description", "")),
        "type": sr.type,
        "content_type": sr.content_type,
        "shared": sr.shared,
        "host": sr.host_name or None,  # a local SR's host (its name)
        "PBDs": _pbds(cache, sr),
        "physical_size": sr.physical_size,
        "physical_utilisation": sr.physical_utilisation,
        "virtual_allocation": sr.virtual_allocation,
        "VDIs": counts.get(sr.ref, 0),
        "orphans": orphans.get(sr.ref, 0),
        "default": sr.is_default,
        "problems": storage.problems(cache, sr),
        "allowed_operations": sorted(sr.allowed_operations),
        "sm_config": dict(r.get("sm_config") or {}),
    }


def _where(cache: Cache, sr: Sr) -> str:
    return "shared" if sr.shared else (sr.host_name or "local")


def _plugged(cache: Cache, sr: Sr) -> str:
    if not sr.PBDs:
        return "-"
    if sr.shared:
        return f"{len(sr.hosts)}/{len(models.hosts(cache))}"
    return "yes" if sr.hosts else "no"


def _disk_counts(cache: Cache) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in storage.disks(cache):
        out[v.SR] = out.get(v.SR, 0) + 1
    return out


def _sorted_srs(cache: Cache) -> list[Sr]:
    return sorted(models.srs(cache), key=lambda s: (s.display_name.lower(), s.uuid))


def cmd_sr_list(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        srs = _sorted_srs(cache)
        counts = _disk_counts(cache)
        orphans = storage.orphan_counts(cache)
        if args.json:
            print_json([sr_json(cache, s, counts, orphans) for s in srs])
            return 0
        print_table(
            ["name", "type", "content", "where", "plugged", "size", "used", "allocated",
             "free", "use%", "disks", "orphans", "problems", "uuid"],
            [[("* " if s.is_default else "  ") + s.display_name, s.type, s.content_type,
              _where(cache, s), _plugged(cache, s), human_bytes(s.physical_size),
              human_bytes(s.physical_utilisation), human_bytes(s.virtual_allocation),
              human_bytes(s.free), f"{s.usage * 100:.0f}%" if s.physical_size > 0 else "-",
              counts.get(s.ref, 0), orphans.get(s.ref, 0) or "-",
              "; ".join(storage.problems(cache, s)) or "-", s.uuid] for s in srs],
        )
        say("(* the pool's default SR)")
        return 0


def cmd_sr_show(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        counts = _disk_counts(cache)
        orphans = storage.orphan_counts(cache)
        out = []
        for spec in args.sr:
            sr = Sr.get(cache, resolve_sr(cache, spec))
            assert sr is not None
            if args.json:
                d = sr_json(cache, sr, counts, orphans)
                d["disks"] = [vdi_json(cache, v, storage.Orphans(cache))
                              for v in storage.disks(cache, sr.ref)]
                out.append(d)
                continue
            pbds = _pbds(cache, sr)
            print_fields([
                ("name", sr.display_name + (" (the pool's default)" if sr.is_default else "")),
                ("uuid", sr.uuid),
                ("description", sr.name_description or "-"),
                ("type", f"{sr.type}, {sr.content_type or '-'} content, "
                         + ("shared" if sr.shared else f"local to {sr.host_name or '-'}")),
                ("size", human_bytes(sr.physical_size)),
                ("used", f"{human_bytes(sr.physical_utilisation)} "
                         f"({sr.usage * 100:.0f}%), {human_bytes(sr.free)} free"),
                ("allocated", f"{human_bytes(sr.virtual_allocation)} (virtual sizes)"),
                ("disks", f"{counts.get(sr.ref, 0)}, {orphans.get(sr.ref, 0)} used by no VM"),
                ("problems", "; ".join(storage.problems(cache, sr)) or "-"),
                ("allowed", " ".join(sorted(sr.allowed_operations)) or "-"),
            ])
            lines = ["PBDs:"] + [
                f"  {p['host_name']}: {'plugged' if p['currently_attached'] else 'unplugged'}"
                for p in pbds] if pbds else ["PBDs: none"]
            say("\n".join(lines) + "\n")
        if args.json:
            print_json(out if len(out) != 1 else out[0])
        return 0


# ------------------------------------------------------------------ disks


def _flags(v: Vdi) -> str:
    f = [name for on, name in ((v.is_a_snapshot, "snapshot"), (v.sharable, "sharable"),
                              (v.read_only, "read-only"), (v.missing, "missing"),
                              (bool(v.snapshots), "has-snapshots")) if on]
    return ",".join(f) or "-"


def vdi_json(cache: Cache, v: Vdi, orphan: storage.Orphans) -> dict[str, Any]:
    r = cache.get("vdi", v.ref) or {}
    return {
        "uuid": v.uuid,
        "name_label": str(r.get("name_label", "")),
        "name_description": str(r.get("name_description", "")),
        "SR": _raw(cache, "sr", v.SR, "uuid"),
        "SR_name": v.sr_name,
        "virtual_size": v.virtual_size,
        "physical_utilisation": v.physical_utilisation,
        "type": v.type,
        "sharable": v.sharable,
        "read_only": v.read_only,
        "is_a_snapshot": v.is_a_snapshot,
        "snapshot_of": _raw(cache, "vdi", v.snapshot_of, "uuid") or None,
        "snapshots": [_raw(cache, "vdi", s, "uuid") for s in v.snapshots],
        "missing": v.missing,
        "orphan": orphan(v),
        "VBDs": [{"VM": _raw(cache, "vm", u.vm, "uuid"),
                  "VM_name": _raw(cache, "vm", u.vm), "userdevice": u.device,
                  "mode": u.mode, "currently_attached": u.attached,
                  "power_state": u.power_state, "is_a_snapshot": u.is_snapshot}
                 for u in storage.uses(cache, v)],
        "allowed_operations": sorted(v.allowed_operations),
    }


def _used_by(cache: Cache, v: Vdi) -> str:
    names = []
    for u in storage.uses(cache, v):
        names.append(u.vm_name + (" (snapshot)" if u.is_snapshot else ""))
    return ", ".join(names) or "-"


def _attached(cache: Cache, v: Vdi) -> str:
    now = storage.attached(cache, v)
    return ", ".join(u.vm_name for u in now) if now else "no"


def _snapshot_of(cache: Cache, v: Vdi) -> str:
    return _raw(cache, "vdi", v.snapshot_of) if v.snapshot_of != NULL else "-"


def cmd_vdi_list(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        sr = resolve_sr(cache, args.sr) if args.sr else None
        orphan = storage.Orphans(cache)
        rows = storage.disks(cache, sr)
        if args.orphans:
            rows = [v for v in rows if orphan(v)]
        if args.json:
            print_json([vdi_json(cache, v, orphan) for v in rows])
            return 0
        print_table(
            ["name", "size", "physical", "type", "flags", "sr", "used by", "attached",
             "snapshot of", "uuid"],
            [[v.name_label, human_bytes(v.virtual_size), human_bytes(v.physical_utilisation),
              v.type, _flags(v), v.sr_name, _used_by(cache, v) if not orphan(v) else "no VM",
              _attached(cache, v), _snapshot_of(cache, v), v.uuid] for v in rows],
        )
        return 0


def cmd_vdi_show(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        cache = client.cache
        orphan = storage.Orphans(cache)
        out = []
        for spec in args.vdi:
            ref = resolve(cache, "vdi", spec, kind="disk")
            r = cache.get("vdi", ref) or {}
            v = Vdi.from_record(cache, ref, r)
            if args.json:
                out.append(vdi_json(cache, v, orphan))
                continue
            print_fields([
                ("name", v.name_label),
                ("uuid", v.uuid),
                ("description", v.name_description or "-"),
                ("SR", v.sr_name),
                ("size", f"{human_bytes(v.virtual_size)} ({v.virtual_size} bytes)"),
                ("physical", human_bytes(v.physical_utilisation)),
                ("type", v.type),
                ("flags", _flags(v)),
                ("snapshot of", _snapshot_of(cache, v)),
                ("snapshots", ", ".join(_raw(cache, "vdi", s) for s in v.snapshots) or "-"),
                ("allowed", " ".join(sorted(v.allowed_operations)) or "-"),
            ])
            lines = ["used by:"] if storage.uses(cache, v) else [
                "used by: no VM" + (" (an orphan)" if orphan(v) else "")]
            for u in storage.uses(cache, v):
                what = "snapshot" if u.is_snapshot else u.power_state.lower()
                lines.append(f"  {u.vm_name} ({what}): disk {u.device}, {u.mode}, "
                             + ("attached" if u.attached else "not attached"))
            say("\n".join(lines) + "\n")
        if args.json:
            print_json(out if len(out) != 1 else out[0])
        return 0
