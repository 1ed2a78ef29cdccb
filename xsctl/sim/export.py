"""VM export over HTTP: ``GET /export`` (ocaml/xapi/export.ml, stream_vdi.ml
send_one), the stream xva describes.

HTTP behaviour (xapi's, from export.ml and xapi_http.ml):

* ``/export?uuid=|ref=&use_compression=&preserve_power_state=&task_id=``: ``401`` for
  bad credentials; an unknown uuid is a ``500`` naming ``UUID_INVALID``; a VM whose disks
  this host cannot see is redirected (``302``) to a host that can; a running VM is
  refused with ``500`` and the task fails with ``VM_BAD_POWER_STATE [vm, "halted,
  suspended", "running"]``; otherwise ``HTTP/1.0 200`` with ``task-id`` and
  ``Content-Disposition: attachment; filename="export.xva"``, the stream, and the
  connection closes. The VM carries ``export`` in current_operations meanwhile; the
  task's progress follows the bytes of disk streamed; its result stays empty.
"""

from __future__ import annotations

import contextlib
import gzip
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from xsctl.sim import http_common as hc
from xsctl.sim.dispatch import fail_task
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers.vm_lifecycle import operation_error
from xsctl.sim.handlers.vm_placement import choose_host_seeing, required_srs, srs_seen_by
from xsctl.sim.wire import NULL_REF, DateTime, xml_value
from xsctl.sim.xva import (
    BLOCK,
    CHUNK,
    cancel_requested,
    cancellable,
    check_cancel,
    checksum,
    end_task,
    padding,
    progress,
    succeed,
    tar_header,
    task_for,
    vdi_chunks,
    version_of,
)

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator

# ---------------------------------------------------------------- ova.xml

_HOST_BLANK: dict[str, Any] = {
    "PIFs": [], "PBDs": [], "PGPUs": [], "PCIs": [], "host_CPUs": [], "license_params": {},
    "blobs": {}, "external_auth_type": "", "external_auth_service_name": "",
    "external_auth_configuration": {}, "metrics": NULL_REF, "patches": [], "crashdumps": [],
    "logging": {}, "supported_bootloaders": [], "cpu_configuration": {}, "other_config": {},
    "capabilities": [], "software_version": {}, "sched_policy": "", "ha_statefiles": [],
    "ha_network_peers": [], "tags": [],
}


@dataclass
class Export:
    ova_xml: str
    vdis: list[tuple[str, str, int]]  # (id, vdi ref, size), in id order


def build_export(sim: Simulator, vm: str, preserve_power_state: bool) -> Export:
    """export.ml update_table + make_all + vm_metadata. Call with the store lock held."""
    store = sim.store
    dm = sim.dm
    table: dict[str, str] = {}

    def add(ref: str) -> None:
        if ref != NULL_REF and store.exists(ref) and ref not in table:
            rt = store.runtime
            with rt.export_ids_lock:
                table[ref] = f"Ref:{next(rt.export_ids)}"

    def add_vdi(vdi: str) -> None:
        add(vdi)
        if store.exists(vdi, "VDI"):
            add(store.get(vdi, "VDI")["SR"])

    row = store.get(vm, "VM")
    add(vm)
    for vif in row["VIFs"]:
        if store.exists(vif, "VIF"):
            add(vif)
            add(store.get(vif, "VIF")["network"])
    for vbd in row["VBDs"]:
        if store.exists(vbd, "VBD"):
            add(vbd)
            vrow = store.get(vbd, "VBD")
            if not vrow["empty"]:
                add_vdi(vrow["VDI"])
    if preserve_power_state and row["power_state"] == "Suspended":
        add_vdi(row["suspend_VDI"])
    add(row["metrics"])
    add(row["guest_metrics"])
    add(row["resident_on"])
    add(row["affinity"])

    def lookup(ref: str) -> str:
        return table.get(ref, NULL_REF)

    def snapshot(cls: str, ref: str) -> dict[str, Any]:
        rec = dict(store.get(ref, cls))
        out: dict[str, Any] = {}
        for fname, value in rec.items():
            fdef = dm.classes[cls].fields.get(fname)
            if fdef is None:
                continue
            kind = fdef.type.kind
            if kind == "ref":
                out[fname] = lookup(value)
            elif kind == "set" and fdef.type.inner is not None and fdef.type.inner.kind == "ref":
                out[fname] = [lookup(x) for x in value if x in table]
            else:
                out[fname] = value
        if "current_operations" in out:
            out["current_operations"] = {}
        if "allowed_operations" in out:
            out["allowed_operations"] = []
        return out

    objects: dict[str, list[dict[str, Any]]] = {c: [] for c in (
        "host", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VIF", "network", "VDI", "SR")}
    for ref, ext in table.items():
        cls = store.cls_of[ref]
        if cls not in objects:
            continue
        snap = snapshot(cls, ref)
        if cls == "VM":
            snap.update(
                power_state=row["power_state"] if preserve_power_state else "Halted",
                suspend_VDI=lookup(row["suspend_VDI"]) if preserve_power_state else NULL_REF,
                is_a_snapshot=False, snapshot_of=NULL_REF, snapshots=[],
                snapshot_time=DateTime("19700101T00:00:00Z"), transportable_snapshot_id="",
                parent=NULL_REF, crash_dumps=[], consoles=[], protection_policy=NULL_REF,
                blobs={},
            )
        elif cls in ("VBD", "VIF"):
            if not preserve_power_state:
                snap["currently_attached"] = False
            snap["metrics"] = NULL_REF
        elif cls == "network":
            snap["PIFs"] = []
        elif cls == "SR":
            snap["PBDs"] = []
        elif cls == "host":
            snap.update({k: v for k, v in _HOST_BLANK.items() if k in snap})
        snap = {k: v for k, v in snap.items() if k in dm.classes[cls].fields}
        objects[cls].append({"class": cls, "id": ext, "snapshot": snap})
    header = {"version": version_of(sim),
              "objects": [o for objs in objects.values() for o in objs]}
    vdis: list[tuple[str, str, int]] = []
    vdi_refs: list[str] = []
    for vbd in row["VBDs"]:
        vbd_row = store.tables["VBD"].get(vbd)
        if vbd_row is not None and vbd_row["type"] != "CD" and not vbd_row["empty"]:
            vdi_refs.append(vbd_row["VDI"])
    if preserve_power_state and row["power_state"] == "Suspended":
        vdi_refs.insert(0, row["suspend_VDI"])
    for vdi in vdi_refs:
        vdi_row = store.tables["VDI"].get(vdi)
        if vdi_row is None or vdi not in table:
            continue
        sr = store.tables["SR"].get(vdi_row["SR"])
        if sr is not None and sr["content_type"] == "iso":
            continue
        vdis.append((table[vdi], vdi, int(vdi_row["virtual_size"])))
    vdis.sort()
    return Export(xml_value(header), vdis)


# ---------------------------------------------------------------- export


class _Sink:
    """The socket, counting what went out."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.count = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()


def export_handler(handler: Handler, query: hc.Query) -> None:
    sim = handler.sim
    store = sim.store
    with hc.authenticated(handler, query, "get_export") as auth:
        if auth is None:
            return
        comp = hc.arg(query, "use_compression")
        compression = "gzip" if comp in ("true", "gzip") else "zstd" if comp == "zstd" else None
        ref_arg, uuid_arg = hc.arg(query, "ref"), hc.arg(query, "uuid")
        here = handler.server.host_ref
        with store.lock:
            try:
                if ref_arg is not None:
                    vm = ref_arg
                    row = store.get(vm, "VM")
                elif uuid_arg is not None:
                    vm = store.by_uuid("VM", uuid_arg)
                    row = store.get(vm, "VM")
                else:
                    hc.internal_error(handler, "Not_found")
                    return
            except XapiFailure as f:
                hc.internal_error(handler, hc.html_escape(hc.failure_text(f)))
                return
            needed = set(required_srs(store, row, with_suspend=False))
            local_ok = needed <= srs_seen_by(store, here)
            target = ""
            if not local_ok:
                try:
                    target = store.get(choose_host_seeing(store, sorted(needed)), "host")["address"]
                except XapiFailure as f:
                    task = hc.lookup_param(handler, query, "task_id")
                    if task is not None and store.exists(task, "task"):
                        fail_task(sim, task, f)
                    handler.close_connection = True  # xapi answers nothing here
                    return
        if not local_ok:
            hc.redirect(handler, hc.url_on(sim, target, "/export", handler.path.partition("?")[2]))
            return
        task, own = task_for(sim, handler, query, "VM.export", auth.session)
        try:
            _export(handler, query, vm, task, compression)
        finally:
            end_task(sim, task, own)


def _export(handler: Handler, query: hc.Query, vm: str, task: str, compression: str | None
            ) -> None:
    sim = handler.sim
    store = sim.store
    progress(sim, task, 0.0)
    preserve = hc.bool_arg(hc.lookup_param(handler, query, "preserve_power_state"))
    with store.lock:
        err = operation_error(store, vm, "export")
        if err is None and compression == "zstd":
            err = XapiFailure("INTERNAL_ERROR", "zstd compression is not available")
        if err is not None:
            fail_task(sim, task, err)
            hc.internal_error(handler, hc.html_escape(hc.failure_text(err)))
            return
        store.set_map_key(vm, "current_operations", task, "export")
        exp = build_export(sim, vm, preserve)
    try:
        hc.write_raw(handler, [
            "HTTP/1.0 200 OK", "Connection: close", hc.CACHE, f"task-id: {task}",
            f"Server: xapi/{hc.xapi_version(sim)}", "content-type: application/octet-stream",
            'Content-Disposition: attachment; filename="export.xva"',
        ])
        sink = _Sink(handler.wfile)  # type: ignore[arg-type]
        out: Any = gzip.GzipFile(fileobj=sink, mode="wb", mtime=0) if compression else sink
        try:
            _write_xva(sim, out, exp, task)
        finally:
            if compression:
                out.close()
            with contextlib.suppress(OSError):
                sink.flush()
    except XapiFailure as f:  # cancelled: the stream stops short, the connection closes
        fail_task(sim, task, f)
        return
    except OSError as e:
        fail_task(sim, task, XapiFailure("TASK_CANCELLED", task) if cancel_requested(sim, task)
                  else XapiFailure("CLIENT_ERROR", repr(e)))
        return
    finally:
        with store.lock:
            if store.exists(vm, "VM"):
                store.del_map_key(vm, "current_operations", task)
    succeed(sim, task, None)


def _write_xva(sim: Simulator, out: Any, exp: Export, task: str) -> None:
    xml = exp.ova_xml.encode("utf-8")
    out.write(tar_header("ova.xml", len(xml), int(time.time())) + xml + padding(len(xml)))
    total = sum(size for _, _, size in exp.vdis) or 1
    done = 0
    cancellable(sim, task, True)
    for prefix, vdi, size in exp.vdis:
        for n, data in vdi_chunks(sim.store, vdi, size):
            check_cancel(sim, task)
            name = f"{prefix}/{n:08d}"
            out.write(tar_header(name, len(data)) + data + padding(len(data)))
            csum = checksum(sim.store, data).encode()
            out.write(tar_header(name + ".xxhash", len(csum)) + csum + padding(len(csum)))
            progress(sim, task, (done + n * CHUNK + len(data)) / total)
        done += size
        _pause(sim, task, sim.op_time / 4)
    out.write(bytes(2 * BLOCK))


def _pause(sim: Simulator, task: str, seconds: float) -> None:
    """The time a disk takes to stream: xapi would be sending data all along and
    looking for a cancel as it goes, so the pause ends at a cancel."""
    deadline = time.monotonic() + seconds
    while True:
        check_cancel(sim, task)
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(0.05, left))


def register(sim: Simulator) -> None:
    sim.http_get["/export"] = export_handler
