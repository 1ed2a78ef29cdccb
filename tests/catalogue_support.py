"""Walking the operation catalogue: for each operation, an object of the demo pool it
is possible on and parameter values it accepts, and the parameters ``xe`` itself
takes for each command, to check every plan's xe line against."""

from __future__ import annotations

import io
import os
import re
import shlex
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.host_settings import NO_NTP_API, NO_TIMEZONE_API
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.catalogue import Context, Operation, ParamKind

# xe's own parameters per command: ``reqd`` and ``optn`` of each entry of
# xapi-project/xen-api ocaml/xapi-cli-server/cli_frontend.ml (at e2ee48d688), plus the
# selectors every vm-* command takes (vmselectors: uuid, vm, name-label and any field)
# and, for *-param-set, the writable fields of records.ml (VCPUs-max,
# VCPUs-at-startup, name-label).
XE_PARAMS: dict[str, set[str]] = {
    # network-param-set: records.ml network fields name-label, name-description, MTU
    "network-create": {"name-label", "name-description", "MTU", "bridge", "managed"},
    "network-param-set": {"uuid", "name-label", "name-description", "MTU"},
    "network-destroy": {"uuid"},
    "pool-vlan-create": {"pif-uuid", "vlan", "network-uuid"},
    "vlan-destroy": {"uuid"},
    "bond-create": {"network-uuid", "pif-uuids", "mac", "mode", "properties:"},
    "bond-destroy": {"uuid"},
    "vm-start": {"force", "on", "paused"},
    "vm-shutdown": {"force"},
    "vm-reboot": {"force"},
    "vm-suspend": set(),
    "vm-resume": {"force", "on"},
    "vm-pause": set(),
    "vm-unpause": set(),
    "vm-migrate": {"live", "host", "host-uuid", "remote-master", "remote-username",
                   "remote-password", "remote-network", "force", "copy", "compress"},
    "vm-snapshot": {"new-name-label", "new-name-description", "ignore-vdi-uuids"},
    "snapshot-revert": {"uuid", "snapshot-uuid"},
    "vm-clone": {"new-name-label", "new-name-description"},
    "vm-copy": {"new-name-label", "new-name-description", "sr-uuid"},
    "vm-param-set": {"uuid", "name-label", "name-description", "VCPUs-max",
                     "VCPUs-at-startup"},
    "vm-memory-limits-set": {"static-min", "static-max", "dynamic-min", "dynamic-max"},
    "vm-memory-dynamic-range-set": {"min", "max"},
    "vm-vcpu-hotplug": {"new-vcpus"},
    "vm-uninstall": {"force"},
    "vm-destroy": {"uuid"},
    "vdi-destroy": {"uuid"},
    "task-cancel": {"uuid"},
    "message-destroy": {"uuid"},
    "sr-scan": {"uuid"},
    "sr-forget": {"uuid"},
    "sr-destroy": {"uuid"},
    "pbd-plug": {"uuid"},
    "pbd-unplug": {"uuid"},
    "pbd-create": {"host-uuid", "sr-uuid", "device-config:"},
    # records.ml pool fields default-SR, suspend-image-SR, crash-dump-SR (by uuid)
    "pool-param-set": {"uuid", "default-SR", "suspend-image-SR", "crash-dump-SR",
                       "name-label", "name-description"},
    "host-set-hostname-live": {"host-uuid", "host-name"},
    "pif-reconfigure-ip": {"uuid", "mode", "IP", "netmask", "gateway", "DNS"},
    "host-management-reconfigure": {"pif-uuid"},
    "pool-designate-new-master": {"host-uuid"},
    # records.ml host_record of a later xapi: ntp-mode, ntp-custom-servers, timezone;
    # other-config (a map: XenCenter's maintenance-mode marks), and param-remove of a key
    "host-param-set": {"uuid", "ntp-mode", "ntp-custom-servers", "timezone", "other-config:"},
    "host-param-remove": {"uuid", "param-name", "param-key"},
    # cli_frontend.ml bond-set-mode: uuid, mode
    "bond-set-mode": {"uuid", "mode"},
    "vdi-create": {"sr-uuid", "name-label", "virtual-size", "sm-config:", "sharable",
                   "tags:", "type"},
    "vdi-param-set": {"uuid", "name-label", "name-description"},
    "vdi-resize": {"uuid", "disk-size", "online"},
    "vdi-copy": {"uuid", "sr-uuid", "base-vdi-uuid", "into-vdi-uuid"},
    "sr-create": {"name-label", "type", "name-description", "host-uuid", "device-config:",
                  "shared", "physical-size", "content-type", "sm-config:"},
    "sr-introduce": {"name-label", "type", "uuid", "name-description", "shared",
                     "content-type"},
    "vm-checkpoint": {"new-name-label", "new-name-description"},
    "snapshot-destroy": {"uuid", "snapshot-uuid"},
    "snapshot-uninstall": {"uuid", "snapshot-uuid", "force"},
    "snapshot-clone": {"new-name-label", "uuid", "new-name-description"},
    "template-uninstall": {"template-uuid", "force"},
    "vm-install": {"new-name-label", "sr-name-label", "sr-uuid", "template",
                   "copy-bios-strings-from"},
    "vm-cd-add": {"cd-name", "device"},
    "vif-create": {"device", "network-uuid", "vm-uuid", "mac"},
    "vif-destroy": {"uuid"},
    "vif-plug": {"uuid"},
    "vif-unplug": {"uuid", "force"},
    "vif-configure-ipv4": {"uuid", "mode", "address", "gateway"},
    "vif-configure-ipv6": {"uuid", "mode", "address", "gateway"},
    # records.ml vif_record: locking-mode is set through VIF.set_locking_mode
    "vif-param-set": {"uuid", "locking-mode", "other-config:", "ipv4-allowed",
                      "ipv6-allowed"},
    "vm-cd-insert": {"cd-name"},
    "vm-cd-eject": set(),
    "vbd-plug": {"uuid", "timeout"},
    "vbd-unplug": {"uuid", "timeout", "force"},
    "vbd-destroy": {"uuid"},
    "vbd-insert": {"uuid", "vdi-uuid"},
    "vbd-eject": {"uuid"},
    # records.ml vbd_record: the writable fields, other-config among them
    "vbd-param-set": {"uuid", "userdevice", "bootable", "mode", "type", "unpluggable",
                      "other-config:", "qos_algorithm_type", "qos_algorithm_params:"},
    "vbd-create": {"vm-uuid", "device", "vdi-uuid", "bootable", "type", "mode", "unpluggable"},
    # records.ml: the template's writable fields (name-label, name-description, ...)
    "template-param-set": {"uuid", "name-label", "name-description"},
    "vm-export": {"filename", "compress", "preserve-power-state", "metadata",
                  "include-snapshots", "excluded-device-types"},
    # cli_operations.ml console: the VM selectors; console-list: records.ml's fields
    "console": {"uuid", "vm", "name-label"},
    "console-list": {"uuid", "vm-uuid", "vm-name-label", "protocol", "location", "params"},
    "vm-import": {"filename", "preserve", "sr-uuid", "force", "host-username",
                  "host-password", "type", "remote-config", "dry-run", "metadata", "url",
                  "vdi:"},
    # Host_selectors (uuid, ...); host-disable's auto-enable and host-evacuate's
    # network-uuid and batch-size, which no plan uses
    "host-disable": {"uuid", "auto-enable"},
    "host-enable": {"uuid"},
    "host-evacuate": {"uuid", "network-uuid", "batch-size"},
    "host-reboot": {"uuid"},
    "host-shutdown": {"uuid"},
    "host-power-on": {"uuid"},
}
# records.ml vm_record: the writable fields vm-param-set takes beyond XE_PARAMS, and
# the map fields it takes as FIELD:KEY=VALUE
XE_PARAMS["vm-param-set"] |= {"is-a-template", "affinity", "other-config:",
                              "HVM-boot-params:"}
VM_SELECTORS = {"uuid", "vm", "name-label"}
# (reqd) parameters that must be there
XE_REQUIRED: dict[str, set[str]] = {
    "network-create": {"name-label"},
    "network-param-set": {"uuid"},
    "network-destroy": {"uuid"},
    "pool-vlan-create": {"pif-uuid", "vlan", "network-uuid"},
    "vlan-destroy": {"uuid"},
    "bond-create": {"network-uuid", "pif-uuids"},
    "bond-destroy": {"uuid"},
    "vm-snapshot": {"new-name-label"},
    "vm-clone": {"new-name-label"},
    "vm-copy": {"new-name-label"},
    "vm-memory-limits-set": {"static-min", "static-max", "dynamic-min", "dynamic-max"},
    "vm-memory-dynamic-range-set": {"min", "max"},
    "vm-vcpu-hotplug": {"new-vcpus"},
    "vm-destroy": {"uuid"},
    "vdi-destroy": {"uuid"},
    "task-cancel": {"uuid"},
    "message-destroy": {"uuid"},
    "sr-scan": {"uuid"},
    "sr-forget": {"uuid"},
    "sr-destroy": {"uuid"},
    "pbd-plug": {"uuid"},
    "pbd-unplug": {"uuid"},
    "pbd-create": {"host-uuid", "sr-uuid"},
    "pool-param-set": {"uuid"},
    "vdi-create": {"sr-uuid", "name-label", "virtual-size"},
    "vdi-param-set": {"uuid"},
    "vdi-resize": {"uuid", "disk-size"},
    "vdi-copy": {"uuid"},
    "sr-create": {"name-label", "type"},
    "sr-introduce": {"name-label", "type", "uuid"},
    "vm-checkpoint": {"new-name-label"},
    "vm-install": {"new-name-label"},
    "vm-cd-add": {"cd-name", "device"},
    "vif-create": {"device", "network-uuid", "vm-uuid"},
    "vif-destroy": {"uuid"},
    "vif-plug": {"uuid"},
    "vif-unplug": {"uuid"},
    "vif-configure-ipv4": {"uuid", "mode"},
    "vif-configure-ipv6": {"uuid", "mode"},
    "vif-param-set": {"uuid"},
    "vm-cd-insert": {"cd-name"},
    "vbd-plug": {"uuid"},
    "vbd-unplug": {"uuid"},
    "vbd-destroy": {"uuid"},
    "vbd-insert": {"uuid", "vdi-uuid"},
    "vbd-eject": {"uuid"},
    "vbd-param-set": {"uuid"},
    "vbd-create": {"vm-uuid", "device"},
    "snapshot-clone": {"new-name-label"},
    "template-uninstall": {"template-uuid"},
    "vm-export": {"filename"},
    "host-set-hostname-live": {"host-uuid", "host-name"},
    "pif-reconfigure-ip": {"uuid", "mode"},
    "host-management-reconfigure": {"pif-uuid"},
    "pool-designate-new-master": {"host-uuid"},
    "host-param-set": {"uuid"},
    "host-param-remove": {"uuid", "param-name", "param-key"},
    "bond-set-mode": {"uuid", "mode"},
}

# values of parameters the walk cannot make up (where the storage is): the demo's NFS
# server has an export no SR uses, and an SR that is not in the pool has a fresh UUID
SAMPLES: dict[str, dict[str, Any]] = {
    "sr.create": {"type": "nfs", "device_config": {"server": "10.0.0.5",
                                                   "serverpath": "/export/backup"}},
    "sr.introduce": {"type": "nfs", "uuid": "0f6ad3f4-3c55-4d3c-9e0a-1b2c3d4e5f60",
                     "device_config": {"server": "10.0.0.5", "serverpath": "/export/backup"}},
    "vlan.create": {"tag": 300},
    "host.set_ntp": {"ntp": "0.pool.ntp.org"},
    "host.set_timezone": {"timezone": "Europe/London"},
    # optional texts left out: the MAC made by xapi, no static address
    "vm.vif-add": {"mac": None, "ipv4": None, "ipv4_gateway": None},
    "vif.configure-ipv4": {"address": "10.0.9.7/24", "gateway": "10.0.9.1"},
    "vif.configure-ipv6": {"address": "2001:db8::7/64", "gateway": ""},
}
# Operations on an API later than the simulator's xapi (24.19): no object of the demo
# pool allows them, and each says why; the walks check that reason instead of a plan
# (tests/unit/test_host_settings.py plans them on a later xapi's host record).
LATER_XAPI: dict[str, str] = {"host.set_ntp": NO_NTP_API, "host.set_timezone": NO_TIMEZONE_API}


PICKS: dict[str, int] = {"bond.create": 2}


def network_objects(sim: Any) -> None:
    """What the network operations act on beyond the demo pool's: an internal network
    to delete, and on each host two more NICs (eth2, eth3: hardware no call makes),
    bonded, so that a bond can be taken apart while eth0 and eth1 can still be."""
    from tests.conftest import xenapi_session
    from xsctl.sim.wire import NULL_REF

    st = sim.store
    st.create("network", {"name_label": "walk-lab", "bridge": "xapi7", "MTU": 1500,
                          "other_config": {}, "managed": True})
    nets = {dev: st.create("network", {"name_label": f"Pool-wide network associated with "
                                                     f"{dev}", "bridge": f"xenbr{dev[-1]}",
                                       "MTU": 1500, "other_config": {}, "managed": True})
            for dev in ("eth2", "eth3")}
    bond_net = st.create("network", {"name_label": "walk-bond", "bridge": "xapi8",
                                     "MTU": 1500, "other_config": {}, "managed": True})
    x = xenapi_session(sim)
    for host in list(st.all("host")):
        members = [st.create("PIF", {"device": dev, "network": net, "host": host,
                                     "MAC": f"02:00:00:00:0{i}:{len(st.all('PIF')):02x}",
                                     "MTU": 1500, "VLAN": -1, "physical": True,
                                     "currently_attached": True, "managed": True,
                                     "ip_configuration_mode": "None",
                                     "bond_slave_of": NULL_REF, "properties": {"gro": "on"}})
                   for i, (dev, net) in enumerate(nets.items())]
        x.xenapi.Bond.create(bond_net, members, "", "active-backup", {})
    x.xenapi.session.logout()


def sample_xva() -> Path:
    """The smallest XVA an import accepts as a file: ova.xml naming no object, then
    the end of the archive (written once, in the temporary folder)."""
    path = Path(tempfile.gettempdir()) / f"xsctl-walk-{os.getpid()}.xva"
    if not path.exists():
        xml = (b"<value><struct><member><name>version</name><value><struct><member><name>"
               b"export_vsn</name><value>2</value></member></struct></value></member>"
               b"<member><name>objects</name><value><array><data/></array></value></member>"
               b"</struct></value>")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            info = tarfile.TarInfo("ova.xml")
            info.size = len(xml)
            tf.addfile(info, io.BytesIO(xml))
        path.write_bytes(buf.getvalue())
    return path


def check_xe_line(line: str) -> None:
    """An ``xe`` command line whose every parameter is one ``xe`` takes."""
    # ``xe vbd-unplug ... || xe vbd-unplug ... --force``: the second if the first fails
    if " || " in line:
        for part in line.split(" || "):
            check_xe_line(part)
        return
    # ``pbd=$(xe pbd-create ...)``: a command whose output (a uuid) a later line uses
    m = re.fullmatch(r"[a-z_][a-z0-9_]*=\$\((.*)\)", line)
    if m:
        line = m.group(1)
    words = shlex.split(line)
    assert words[0] == "xe", line
    cmd = words[1]
    assert cmd in XE_PARAMS, f"unknown xe command in {line!r}"
    allowed = XE_PARAMS[cmd] | (VM_SELECTORS if cmd.startswith("vm-") else set())
    given = set()
    for w in words[2:]:
        name = w[2:] if w.startswith("--") else w.split("=", 1)[0]
        if ":" in name:  # a map parameter: device-config:server=...
            name = name.split(":", 1)[0] + ":"
        assert "=" in w or w.startswith("--"), f"{w!r} in {line!r}"
        assert name in allowed, f"xe {cmd} takes no {name!r} ({line!r})"
        given.add(name)
    missing = XE_REQUIRED.get(cmd, set()) - given
    assert not missing, f"xe {cmd} needs {missing} ({line!r})"


def every_host_state(x: Any) -> None:
    """Bring a pool of four hosts (``make_sim(hosts=4)``) to where every host
    operation has a host to act on: the fourth powered off, with a power-on mode to
    wake it by; the second empty and in maintenance mode (enable, reboot, shut down);
    the first and third as the demo has them (disable, maintenance, evacuation; the
    paused VM stays on the third), with the VMs moved off the others (migrate still
    has a target)."""
    from tests.conftest import wait_for

    hosts = sorted(x.host.get_all_records().items(), key=lambda kv: kv[1]["name_label"])
    assert len(hosts) == 4, "every_host_state needs a pool of four hosts"
    off, empty = hosts[3][0], hosts[1][0]
    for h in (off, empty):
        x.host.disable(h)
    for h in (off, empty):
        for vm in x.host.get_vms_which_prevent_evacuation(h):
            x.VM.hard_shutdown(vm)
        x.host.evacuate(h)
    x.host.set_power_on_mode(off, "wake-on-lan", {})
    x.host.shutdown(off)
    metrics = x.host.get_metrics(off)
    wait_for(lambda: not x.host_metrics.get_live(metrics)
             and not x.host.get_current_operations(off))


def context(cache: Cache) -> Context:
    return Context(cache, datetime(2026, 11, 25, 9, 30, tzinfo=UTC))


def sample(op: Operation, ctx: Context, obj: Any) -> dict[str, Any] | None:
    """Parameter values ``op`` accepts on ``obj``, or None if it needs a choice that
    cannot be made here."""
    values: dict[str, Any] = {}
    for p in op.params:
        if p.name in SAMPLES.get(op.id, {}):
            values[p.name] = SAMPLES[op.id][p.name]
        elif p.kind is ParamKind.FLAG:
            values[p.name] = False
        elif p.kind is ParamKind.PICK_MANY:
            # the fewest an operation takes (a bond joins two NICs)
            ok = [c.value for c in catalogue.choices(p, ctx, obj) if c.reason is None]
            values[p.name] = frozenset(ok[:PICKS.get(op.id, 0)])
        elif p.kind is ParamKind.PICK:
            ok = [c for c in catalogue.choices(p, ctx, obj) if c.reason is None and c.value]
            if not ok:
                if not p.required:
                    values[p.name] = None
                    continue
                return None
            values[p.name] = ok[0].value
        elif p.kind is ParamKind.PATH and p.default is None:
            values[p.name] = str(sample_xva())  # a file to read: an import's
        elif p.name == "name":
            values[p.name] = "renamed by the walk"
        elif p.default is None and not p.required:
            values[p.name] = None  # left out (a console's local port: any free one)
        else:
            assert p.default is not None, (op.id, p.name)
            values[p.name] = p.parse(p.default(ctx, obj))
    return values


def possible(op: Operation, cache: Cache) -> tuple[str, Any, dict[str, Any]] | None:
    """The first object (ref, model, values) ``op`` can be planned on, else None."""
    ctx = context(cache)
    for ref, _ in sorted(op.kind.members(cache), key=lambda m: m[1]):
        obj = op.kind.load(cache, ref)
        if obj is None or catalogue.why_not(op, cache, obj) is not None:
            continue
        values = sample(op, ctx, obj)
        if values is None:
            continue
        # a form's sizes start at the current ones, which a resize refuses: grown
        grown = {k: v * 2 if next(p for p in op.params if p.name == k).kind
                 is ParamKind.SIZE else v for k, v in values.items()}
        # the VMs that cannot move off a host: every one it offers, marked
        marked = {p.name: frozenset(c.value for c in catalogue.choices(p, ctx, obj)
                                    if c.reason is None)
                  for p in op.params if p.kind is ParamKind.PICK_MANY and not p.required}
        for tried in (values, grown, {**values, **marked}):
            try:
                catalogue.prepare(op, ctx, obj, tried)
            except Exception:
                continue
            return ref, obj, tried
    return None
