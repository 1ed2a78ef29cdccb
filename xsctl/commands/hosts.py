"""``xsctl host list|show``. The operations (``host enter-maintenance``, ``reboot``,
``power-on``, ...) are generated from the catalogue (commands/ops.py); what a host
is made of comes from xsctl.xapi.hosts, as in the app's Hosts view."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from xsctl.commands.connect import open_client
from xsctl.commands.output import print_fields, print_json, print_table, say
from xsctl.xapi import hosts as facts
from xsctl.xapi import models
from xsctl.xapi.cache import Cache
from xsctl.xapi.models import human_bytes, human_duration
from xsctl.xapi.ops.host import HOST, returning
from xsctl.xapi.ops.resolve import resolve_host


def _guests(cache: Cache, h: models.Host) -> int:
    return sum(1 for r in h.resident_VMs
               if not (cache.get("vm", r) or {}).get("is_control_domain"))


def cmd_host_list(args: argparse.Namespace) -> int:
    with open_client(args, ["pool", "host", "host_metrics", "VM"]) as client:
        cache = client.cache
        hosts = models.hosts(cache)
        if args.json:
            print_json([
                {"uuid": h.uuid, "name_label": h.name_label, "address": h.address,
                 "enabled": h.enabled, "state": facts.state(h), "master": h.is_master,
                 "memory_total": h.memory_total, "memory_free": h.memory_free,
                 "cpu_count": h.cpu_count, "software_version": h.product,
                 "resident_VMs": _guests(cache, h)}
                for h in hosts
            ])
            return 0
        now = datetime.now(UTC)
        print_table(
            ["name", "address", "role", "state", "memory used", "cpus", "vms", "uptime", "version"],
            [[h.name_label, h.address, "master" if h.is_master else "member",
              facts.state(h),
              f"{human_bytes(h.memory_used)}/{human_bytes(h.memory_total)}", h.cpu_count,
              _guests(cache, h),
              human_duration((now - h.boot_time).total_seconds()) if h.boot_time else "-",
              h.product] for h in hosts],
        )
        return 0


def host_json(cache: Cache, h: models.Host, now: datetime) -> dict[str, Any]:
    r = cache.get("host", h.ref) or {}
    cpu = facts.cpus(cache, h)
    mem = facts.memory(cache, h)
    mgmt = facts.management(cache, h)
    vms = [v for v in (cache.get("vm", ref) for ref in h.resident_VMs)
           if v is not None and not v.get("is_control_domain")]
    return {
        "uuid": h.uuid, "name_label": str(r.get("name_label", "")),
        "hostname": h.hostname, "address": h.address, "master": h.is_master,
        "enabled": h.enabled, "live": h.live, "state": facts.state(h),
        # the VMs that left it in maintenance mode, which exit-maintenance offers back
        "bring_back": [{"name_label": b.name, "uuid": str((cache.get("vm", b.vm) or {})
                                                        .get("uuid", "")), "how": b.how}
                       for b in returning(cache, h)],
        "uptime": int((now - h.boot_time).total_seconds()) if h.boot_time else None,
        "software_version": dict(r.get("software_version") or {}),
        "power_on_mode": h.power_on_mode,
        "cpu": {"model": cpu.model, "sockets": cpu.sockets, "cpu_count": cpu.cores,
                "speed_mhz": cpu.speed_mhz, "vendor": cpu.vendor},
        "memory": {"total": mem.total, "free": mem.free, "vms": mem.vms, "dom0": mem.dom0,
                   "overhead": mem.xen},
        "resident_VMs": sorted(str(v.get("name_label", "")) for v in vms),
        "nics": [{"device": n.device, "network": n.network, "MAC": n.MAC, "VLAN": n.VLAN,
                  "physical": n.physical, "carrier": n.carrier, "speed": n.speed,
                  "duplex": n.duplex, "vendor": n.vendor, "model": n.model,
                  "management": n.management} for n in facts.nics(cache, h)],
        "management": None if mgmt is None else {
            "device": mgmt.device, "network": mgmt.network, "mode": mgmt.mode,
            "IP": mgmt.IP, "netmask": mgmt.netmask, "gateway": mgmt.gateway,
            "DNS": list(mgmt.DNS)},
        "allowed_operations": sorted(h.allowed_operations),
    }


def cmd_host_show(args: argparse.Namespace) -> int:
    with open_client(args, list(HOST.classes)) as client:
        cache = client.cache
        now = datetime.now(UTC)
        out = []
        for spec in args.host:
            h = models.Host.get(cache, resolve_host(cache, spec))
            assert h is not None
            if args.json:
                out.append(host_json(cache, h, now))
                continue
            cpu = facts.cpus(cache, h)
            mem = facts.memory(cache, h)
            mgmt = facts.management(cache, h)
            vms = sorted(str((cache.get("vm", ref) or {}).get("name_label", ""))
                         for ref in h.resident_VMs
                         if not (cache.get("vm", ref) or {}).get("is_control_domain"))
            print_fields([
                ("name", h.name_label),
                ("uuid", h.uuid),
                ("address", h.address),
                ("role", "master" if h.is_master else "member"),
                ("state", facts.state(h)),
                ("uptime", human_duration((now - h.boot_time).total_seconds())
                 if h.boot_time and h.live else "-"),
                ("version", f"{h.product} (xapi {h.version})"),
                ("cpus", cpu.text()),
                ("memory", f"{human_bytes(mem.total)}: {human_bytes(mem.free)} free, "
                           f"{human_bytes(mem.vms)} VMs, {human_bytes(mem.dom0)} dom0"),
                ("vms", ", ".join(vms) or "-"),
                ("management", "-" if mgmt is None else
                 f"{mgmt.device} {mgmt.mode} {mgmt.IP}/{mgmt.netmask} gw {mgmt.gateway or '-'} "
                 f"dns {','.join(mgmt.DNS) or '-'}"),
                ("power-on", h.power_on_mode or "disabled"),
                *([("bring-back", ", ".join(f"{b.name} ({b.how})" for b in back))]
                  if (back := returning(cache, h)) else []),
            ])
            say("NICs:\n" + "\n".join(
                f"  {n.device}: {n.link()}, {n.MAC}, {n.vendor or '-'} ({n.network or '-'})"
                for n in facts.nics(cache, h, physical_only=True)) + "\n")
        if args.json:
            print_json(out if len(out) != 1 else out[0])
        return 0
