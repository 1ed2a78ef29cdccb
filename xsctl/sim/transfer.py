"""VM export and import over HTTP: ``GET /export`` and ``PUT /import``.

The stream is an XVA as xapi writes it (ocaml/xapi/export.ml, stream_vdi.ml,
import.ml, importexport.ml), a POSIX tar of 512-byte blocks:

``ova.xml``
    One XML-RPC ``<value>`` (ocaml-rpc encoding: untyped strings and ints) holding a
    struct ``{version, objects}``. ``version`` is ``{hostname, date, product_version,
    product_brand, build_number, xapi_major, xapi_minor, export_vsn}`` (export_vsn 2).
    ``objects`` is an array of ``{class, id, snapshot}``: the VM, its VM_metrics and
    VM_guest_metrics, VBDs, VIFs, networks, VDIs, SRs and the host it runs on, each
    ``snapshot`` a full record as ``get_record`` returns it, with every reference
    replaced by the object's export id (``Ref:N``) or ``OpaqueRef:NULL`` when the
    object is not in the export. The VM is exported ``Halted`` (with
    ``preserve_power_state=true`` a suspended VM stays ``Suspended`` and its suspend
    image is streamed too); operations, consoles, snapshots and PBD/PIF links are
    cleared (export.ml ``make_vm``, ``make_vbd``, ...).
``Ref:N/00000000``, ``Ref:N/00000000.xxhash``, ...
    The data of each non-CD VDI (not on an ISO SR), VDIs in lexicographic order of
    their id: 1 MiB chunks named by chunk number (``%08d``), the last one shorter when
    the size is not a multiple of 1 MiB. All-zero chunks are left out except the first
    and the last; each chunk is followed by its checksum file: XXH64 as 16 upper-case
    hex digits (``.xxhash``; import also takes SHA-1 hex in ``.checksum`` files).
two zero blocks
    The end of the archive.

With ``use_compression=true`` (or ``gzip``) the whole tar is gzip-compressed; import
detects gzip by itself (a stream whose first block is not a tar header of ``ova.xml``
is decompressed). The simulator holds no real disk contents: a VDI it made itself
exports a generic boot sector as its first chunk and zeros elsewhere, so an export is
a few MiB whatever the disk size; an imported VDI keeps the chunks it was given (up to
``DATA_BUDGET`` bytes per pool) and exports them again.

HTTP behaviour (xapi's, from the files above and xapi_http.ml):

* ``/export?uuid=|ref=&use_compression=&preserve_power_state=&task_id=``: ``401`` for
  bad credentials; an unknown uuid is a ``500`` naming ``UUID_INVALID``; a VM whose disks
  this host cannot see is redirected (``302``) to a host that can; a running VM is
  refused with ``500`` and the task fails with ``VM_BAD_POWER_STATE [vm, "halted,
  suspended", "running"]``; otherwise ``HTTP/1.0 200`` with ``task-id`` and
  ``Content-Disposition: attachment; filename="export.xva"``, the stream, and the
  connection closes. The VM carries ``export`` in current_operations meanwhile; the
  task's progress follows the bytes of disk streamed; its result stays empty.
* ``/import?sr_id=|sr_uuid=&restore=&force=&task_id=``: without an SR, the pool's
  default SR, and ``500`` naming ``DEFAULT_SR_NOT_FOUND [ref]`` when it is not set (as
  in xapi, the task passed in ``task_id`` is left alone in that case); an SR this host
  cannot see is redirected; an ISO SR gets ``400`` and the task fails with
  ``SR_OPERATION_NOT_SUPPORTED``; a chunked body gets ``403`` and
  ``IMPORT_ERROR_CANNOT_HANDLE_CHUNKED``; otherwise ``200`` at once, then the body is
  read: a new VM (new uuid and MACs from a fresh ``mac_seed`` unless ``restore=true``,
  ``other_config:import_task``, ``import`` in current_operations while it lasts,
  Suspended again when exported so with its suspend image), new
  VDIs on the SR, VBDs and VIFs (networks matched by name, then bridge, else created).
  Progress follows the bytes read; the result is the XML-RPC array of the new VM
  refs, ``<value><array><data><value>OpaqueRef:…</value></data></array></value>``.
  Errors: ``IMPORT_ERROR_PREMATURE_EOF``, ``IMPORT_ERROR_UNEXPECTED_FILE [expected,
  actual]``, ``IMPORT_ERROR_SOME_CHECKSUMS_FAILED`` (unless ``force=true``),
  ``IMPORT_INCOMPATIBLE_VERSION``, ``IMPORT_ERROR [msg]``; what was created is removed
  unless ``force=true``.

zstd compression (xapi's ``use_compression=zstd``) needs a zstd codec this Python does
not have: such an export fails with ``INTERNAL_ERROR`` and a zstd import with
``IMPORT_ERROR``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import struct
import tarfile
import time
import xmlrpc.client
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from xsctl.sim import http_common as hc
from xsctl.sim.dispatch import fail_task, new_task
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks
from xsctl.sim.handlers.network import gen_mac
from xsctl.sim.handlers.vm_lifecycle import operation_error
from xsctl.sim.handlers.vm_memory import memory_overhead
from xsctl.sim.handlers.vm_placement import choose_host_seeing, required_srs
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.wire import NULL_REF, DateTime, xml_value

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator

CHUNK = 1024 * 1024  # stream_vdi.ml chunk_size
BLOCK = 512
EXPORT_VSN = 2  # xapi_globs.ml export_vsn
DATA_BUDGET = 64 * 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

# ---------------------------------------------------------------- XXH64

_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_M = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M
    return (_rotl(acc, 31) * _P1) & _M


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * _P1 + _P4) & _M


def _xxh64(data: bytes, seed: int = 0) -> int:
    n = len(data)
    i = 0
    if n >= 32:
        v1, v2, v3, v4 = (seed + _P1 + _P2) & _M, (seed + _P2) & _M, seed, (seed - _P1) & _M
        stop = n - n % 32
        for a, b, c, d in struct.iter_unpack("<4Q", memoryview(data)[:stop]):
            v1 = (_rotl((v1 + a * _P2) & _M, 31) * _P1) & _M
            v2 = (_rotl((v2 + b * _P2) & _M, 31) * _P1) & _M
            v3 = (_rotl((v3 + c * _P2) & _M, 31) * _P1) & _M
            v4 = (_rotl((v4 + d * _P2) & _M, 31) * _P1) & _M
        i = stop
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        (k,) = struct.unpack_from("<Q", data, i)
        h ^= _round(0, k)
        h = (_rotl(h, 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        (k,) = struct.unpack_from("<I", data, i)
        h ^= (k * _P1) & _M
        h = (_rotl(h, 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M
        h = (_rotl(h, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h


def xxh64_hex(data: bytes) -> str:
    """stream_vdi.ml: ``%016LX`` of XXH64 (seed 0)."""
    return f"{_xxh64(data):016X}"


def _checksum(store: Store, data: bytes) -> str:
    """xxh64_hex, memoised per simulator: a chunk takes 25 ms in Python, and exports
    hash the same boot sector and empty chunks again and again."""
    return store.runtime.checksums.get(data, lambda: xxh64_hex(data))


def _boot_sector() -> bytes:
    """The generic first chunk of a simulated disk: an MBR with one Linux partition."""
    mbr = bytearray(BLOCK)
    mbr[:16] = b"\xeb\x63\x90XSCTL-SIM"[:16].ljust(16, b"\x00")
    mbr[446:462] = bytes([0x80, 0x20, 0x21, 0x00, 0x83, 0xFE, 0xFF, 0xFF,
                          0x00, 0x08, 0x00, 0x00, 0x00, 0xF8, 0xFF, 0x01])
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr) + bytes(CHUNK - BLOCK)


BOOT_CHUNK = _boot_sector()

def _disk_data(store: Store) -> dict[str, dict[int, bytes]]:
    """Imported disk contents: VDI ref -> chunk number -> data."""
    return store.runtime.storage.disk_data


def _data_used(store: Store) -> int:
    return sum(len(c) for chunks in _disk_data(store).values() for c in chunks.values())


def vdi_chunks(store: Store, vdi: str, size: int) -> Iterator[tuple[int, bytes]]:
    """The chunks an export writes for ``vdi``: stored ones, or a boot sector; the
    first and the last always."""
    if size <= 0:
        return
    last = (size - 1) // CHUNK
    stored = _disk_data(store).get(vdi)
    numbers = sorted({0, last, *(stored or {})})
    for n in numbers:
        length = min(CHUNK, size - n * CHUNK)
        data = stored.get(n, b"") if stored is not None else BOOT_CHUNK if n == 0 else b""
        yield n, data[:length].ljust(length, b"\x00")


# ---------------------------------------------------------------- tar


def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = mtime
    ti.mode = 0o400
    return ti.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


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


def _version(sim: Simulator) -> dict[str, Any]:
    store = sim.store
    host = store.get(sim.master_ref(), "host")
    sv = host["software_version"]
    major, _, minor = str(sv.get("xapi", "24.19")).partition(".")
    return {
        "hostname": host["hostname"], "date": sv.get("date", ""),
        "product_version": sv.get("product_version", ""),
        "product_brand": sv.get("product_brand", ""),
        "build_number": sv.get("build_number", ""),
        "xapi_major": int(major or 0), "xapi_minor": int(minor.split(".")[0] or 0),
        "export_vsn": EXPORT_VSN,
    }


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
    header = {"version": _version(sim),
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


# ---------------------------------------------------------------- tasks


def _task_for(sim: Simulator, handler: Handler, query: hc.Query, label: str,
              session: str) -> tuple[str, bool]:
    """with_context: the task named by ``task_id`` or a new one (destroyed at the end)."""
    task = hc.lookup_param(handler, query, "task_id")
    if task is not None and sim.store.exists(task, "task"):
        return task, False
    return new_task(sim, label, session or None, cancellable=False), True


def _progress(sim: Simulator, task: str, value: float) -> None:
    with sim.store.lock:
        if sim.store.exists(task, "task"):
            sim.store.update(task, {"progress": round(max(0.0, min(1.0, value)), 4)})


def _succeed(sim: Simulator, task: str, result: str | None) -> None:
    """TaskHelper.complete: a result only when one was set (import sets it)."""
    store = sim.store
    with store.lock:
        if not store.exists(task, "task") or store.get(task, "task")["status"] != "pending":
            return
        changes: dict[str, Any] = {"status": "success", "progress": 1.0,
                                   "finished": now_datetime(), "allowed_operations": []}
        if result is not None:
            changes["result"] = result
        store.update(task, changes)
        if store.get(task, "task")["other_config"].get("destroy_on_finish") == "true":
            store.destroy(task)


def _end(sim: Simulator, task: str, own: bool) -> None:
    if own:
        with sim.store.lock:
            if sim.store.exists(task, "task"):
                sim.store.destroy(task)


# ---------------------------------------------------------------- export


def _bool_arg(value: str | None) -> bool:
    return value is not None and value.lower() == "true"


def _srs_seen_by(store: Store, host: str) -> set[str]:
    out: set[str] = set()
    for pbd in store.get(host, "host")["PBDs"]:
        row = store.tables["PBD"].get(pbd)
        if row is not None and row["currently_attached"]:
            out.add(row["SR"])
    return out


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
            local_ok = needed <= _srs_seen_by(store, here)
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
        task, own = _task_for(sim, handler, query, "VM.export", auth.session)
        try:
            _export(handler, query, vm, task, compression)
        finally:
            _end(sim, task, own)


def _export(handler: Handler, query: hc.Query, vm: str, task: str, compression: str | None
            ) -> None:
    sim = handler.sim
    store = sim.store
    _progress(sim, task, 0.0)
    preserve = _bool_arg(hc.lookup_param(handler, query, "preserve_power_state"))
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
    except OSError as e:
        fail_task(sim, task, XapiFailure("CLIENT_ERROR", repr(e)))
        return
    finally:
        with store.lock:
            if store.exists(vm, "VM"):
                store.del_map_key(vm, "current_operations", task)
    _succeed(sim, task, None)


def _write_xva(sim: Simulator, out: Any, exp: Export, task: str) -> None:
    xml = exp.ova_xml.encode("utf-8")
    out.write(tar_header("ova.xml", len(xml), int(time.time())) + xml + _padding(len(xml)))
    total = sum(size for _, _, size in exp.vdis) or 1
    done = 0
    for prefix, vdi, size in exp.vdis:
        for n, data in vdi_chunks(sim.store, vdi, size):
            name = f"{prefix}/{n:08d}"
            out.write(tar_header(name, len(data)) + data + _padding(len(data)))
            csum = _checksum(sim.store, data).encode()
            out.write(tar_header(name + ".xxhash", len(csum)) + csum + _padding(len(csum)))
            _progress(sim, task, (done + n * CHUNK + len(data)) / total)
        done += size
        time.sleep(sim.op_time / 4)
    out.write(bytes(2 * BLOCK))


# ---------------------------------------------------------------- import


class ImportFailure(Exception):
    def __init__(self, failure: XapiFailure) -> None:
        super().__init__(failure.code)
        self.failure = failure


def _ifail(code: str, *params: object) -> ImportFailure:
    return ImportFailure(XapiFailure(code, *params))


class _Body:
    """The request body (Content-Length bytes, or to EOF), counting what was read,
    with a first block pushed back once peeked."""

    def __init__(self, raw: io.BufferedIOBase | BinaryIO, length: int | None) -> None:
        self.raw = raw
        self.left = length
        self.length = length
        self.count = 0
        self.pushed = b""

    def read(self, n: int = -1) -> bytes:
        if self.pushed:
            take = self.pushed if n < 0 else self.pushed[:n]
            self.pushed = self.pushed[len(take):]
            return take
        if self.left is not None:
            n = self.left if n < 0 else min(n, self.left)
            if n <= 0:
                return b""
        data = self.raw.read(n) if n >= 0 else self.raw.read()
        self.count += len(data)
        if self.left is not None:
            self.left -= len(data)
        return data

    def readexactly(self, n: int) -> bytes:
        parts = []
        while n > 0:
            b = self.read(n)
            if not b:
                break
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Tar:
    """Sequential tar reading from a stream (Tar_unix.get_next_header)."""

    def __init__(self, src: Any) -> None:
        self.src = src

    def _exact(self, n: int) -> bytes:
        parts = []
        while n > 0:
            try:
                b = self.src.read(n)
            except (OSError, EOFError, zlib.error) as e:
                raise _ifail("IMPORT_ERROR_PREMATURE_EOF") from e
            if not b:
                raise _ifail("IMPORT_ERROR_PREMATURE_EOF")
            parts.append(b)
            n -= len(b)
        return b"".join(parts)

    def next_header(self) -> tarfile.TarInfo | None:
        block = self._exact(BLOCK)
        if block == bytes(BLOCK):
            return None
        return parse_header(block)

    def read_file(self, ti: tarfile.TarInfo) -> bytes:
        data = self._exact(ti.size)
        pad = -ti.size % BLOCK
        if pad:
            self._exact(pad)
        return data


def parse_header(block: bytes) -> tarfile.TarInfo:
    try:
        return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.TarError as e:
        raise _ifail("IMPORT_ERROR_PREMATURE_EOF") from e


def _is_ova_header(block: bytes) -> bool:
    try:
        return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape").name == "ova.xml"
    except tarfile.TarError:
        return False


def open_archive(body: _Body) -> tuple[_Tar, str]:
    """import.ml with_open_archive: a plain tar starting with ova.xml, else gzip
    (zstd by its magic); returns the reader and ova.xml."""
    first = body.readexactly(BLOCK)
    body.pushed = first
    if len(first) == BLOCK and _is_ova_header(first):
        tar = _Tar(body)
    elif first.startswith(ZSTD_MAGIC):
        raise _ifail("IMPORT_ERROR", "zstd decompression is not available")
    else:
        tar = _Tar(gzip.GzipFile(fileobj=cast(Any, body), mode="rb"))
    ti = tar.next_header()
    if ti is None:
        raise _ifail("IMPORT_ERROR_PREMATURE_EOF")
    if ti.name != "ova.xml":
        raise _ifail("IMPORT_ERROR_UNEXPECTED_FILE", "ova.xml", ti.name)
    return tar, tar.read_file(ti).decode("utf-8", "replace")


def parse_ova(xml: str) -> dict[str, Any]:
    try:
        (value,), _ = xmlrpc.client.loads(
            "<?xml version='1.0'?><methodResponse><params><param>" + xml
            + "</param></params></methodResponse>"
        )
    except Exception as e:  # expat and friends
        raise _ifail("IMPORT_ERROR", f"INTERNAL_ERROR: [ {type(e).__name__}: {e} ]") from e
    if not isinstance(value, dict) or "version" not in value or "objects" not in value:
        raise _ifail("IMPORT_ERROR", "INTERNAL_ERROR: [ Importexport.Failure(\"version data\") ]")
    return value


def _as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


@dataclass
class _Importer:
    sim: Simulator
    sr: str
    task: str
    restore: bool
    force: bool
    table: dict[str, str] = field(default_factory=dict)  # export id -> new ref
    created: list[tuple[str, str]] = field(default_factory=list)  # (cls, ref), in order
    vms: list[str] = field(default_factory=list)
    vdi_sizes: dict[str, int] = field(default_factory=dict)  # export id -> size

    @property
    def store(self) -> Store:
        return self.sim.store

    def coerce(self, cls: str, snap: dict[str, Any]) -> dict[str, Any]:
        """A snapshot's fields as the store holds them (ints arrive as strings)."""
        dm = self.sim.dm
        out: dict[str, Any] = {}
        for fname, value in snap.items():
            fdef = dm.classes[cls].fields.get(fname)
            if fdef is None or fname in ("uuid",):
                continue
            out[fname] = self._value(fdef.type.kind, fdef.type, value)
        return out

    def _value(self, kind: str, t: Any, v: Any) -> Any:
        if isinstance(v, xmlrpc.client.DateTime):
            return DateTime(v.value)
        if kind == "int":
            return _as_int(v)
        if kind == "float":
            try:
                return float(v)
            except (TypeError, ValueError):
                return 0.0
        if kind == "ref":
            return self.table.get(str(v), NULL_REF)
        if kind == "set":
            inner = t.inner
            vals = [self._value(inner.kind, inner, x) for x in (v or [])]
            return [x for x in vals if x != NULL_REF] if inner.kind == "ref" else vals
        if kind == "map" and isinstance(v, dict):
            return {str(k): self._value(t.value.kind, t.value, x) for k, x in v.items()}
        if kind == "datetime":
            return DateTime(str(v))
        return v

    def run(self, header: dict[str, Any]) -> None:
        version = header["version"]
        ours = _version(self.sim)
        theirs = (_as_int(version.get("xapi_major")), _as_int(version.get("xapi_minor")))
        if theirs > (ours["xapi_major"], ours["xapi_minor"]):
            raise _ifail("IMPORT_INCOMPATIBLE_VERSION")
        objects: list[dict[str, Any]] = list(header["objects"])
        by_cls: dict[str, list[dict[str, Any]]] = {}
        for o in objects:
            by_cls.setdefault(str(o["class"]), []).append(o)
        with self.store.lock:
            for o in by_cls.get("SR", []):
                self.table[o["id"]] = self.sr
            for o in by_cls.get("host", []):
                uuid = o["snapshot"].get("uuid", "")
                self.table[o["id"]] = self.store.uuids["host"].get(uuid, NULL_REF)
            iso_srs = {o["id"] for o in by_cls.get("SR", [])
                       if o["snapshot"].get("content_type") == "iso"}
            for o in by_cls.get("VDI", []):
                self._vdi(o, iso_srs)
            for o in by_cls.get("network", []):
                self._network(o)
            for o in by_cls.get("VM", []):
                self._vm(o)
            for o in by_cls.get("VBD", []):
                self._vbd(o)
            for o in by_cls.get("VIF", []):
                self._vif(o)
            self.store.set_map_key(self.task, "other_config", "object_creation", "complete")

    def _vdi(self, o: dict[str, Any], iso_srs: set[str]) -> None:
        snap = o["snapshot"]
        store = self.store
        if snap.get("SR") in iso_srs:
            # a CD image: find it by location, or leave the drive empty
            loc = snap.get("location", "")
            found = next((r for r, row in store.all("VDI").items()
                          if row["location"] == loc and loc), NULL_REF)
            self.table[o["id"]] = found
            return
        size = _as_int(snap.get("virtual_size"))
        sm_config = {k: v for k, v in dict(snap.get("sm_config") or {}).items()
                     if k not in ("import_task", "vhd-parent")}
        sm_config["import_task"] = self.task
        try:
            ref = disks.create_vdi(
                store, self.sr, str(snap.get("name_label", "")), size,
                name_description=str(snap.get("name_description", "")),
                type=str(snap.get("type", "user")), sharable=snap.get("sharable") is True,
                read_only=snap.get("read_only") is True,
                other_config=dict(snap.get("other_config") or {}), sm_config=sm_config,
                tags=list(snap.get("tags") or []),
            )
        except XapiFailure as f:
            raise ImportFailure(f) from f
        self.table[o["id"]] = ref
        self.vdi_sizes[o["id"]] = size
        self.created.append(("VDI", ref))

    def _network(self, o: dict[str, Any]) -> None:
        snap = o["snapshot"]
        store = self.store
        label = snap.get("name_label", "")
        bridge = snap.get("bridge", "")
        found = next((r for r, row in store.all("network").items() if row["name_label"] == label),
                     None)
        if found is None:
            found = next((r for r, row in store.all("network").items()
                          if row["bridge"] == bridge), None)
        if found is None:
            rec = self.coerce("network", snap)
            rec.update(VIFs=[], PIFs=[], current_operations={}, allowed_operations=[])
            found = store.create("network", rec)
            self.created.append(("network", found))
        self.table[o["id"]] = found

    def _vm(self, o: dict[str, Any]) -> None:
        snap = o["snapshot"]
        store = self.store
        rec = self.coerce("VM", snap)
        other = dict(rec.get("other_config", {}))
        other.pop("grant_api_access", None)
        if not self.restore:
            other["mac_seed"] = store.new_uuid()
        other["import_task"] = self.task
        metrics = store.create("VM_metrics", {
            "memory_actual": 0, "VCPUs_number": 0, "install_time": now_datetime(),
            "last_updated": now_datetime(), "current_domain_type": "unspecified",
        })
        self.created.append(("VM_metrics", metrics))
        rec.update(
            other_config=other, power_state="Halted", suspend_VDI=NULL_REF, resident_on=NULL_REF,
            scheduled_to_be_resident_on=NULL_REF, domid=-1, VIFs=[], VBDs=[], consoles=[],
            metrics=metrics, guest_metrics=NULL_REF, snapshots=[], children=[],
            current_operations={self.task: "import"}, appliance=NULL_REF,
            protection_policy=NULL_REF, user_version=rec.get("user_version", 1),
            version=_as_int(snap.get("version")) + 1 if self.restore else 0,
        )
        rec = {k: v for k, v in rec.items() if k in store.field_names["VM"]}
        uuid = str(snap.get("uuid", ""))
        if self.restore and uuid and uuid not in store.uuids["VM"]:
            rec["uuid"] = uuid
        if "memory_overhead" in rec:
            rec["memory_overhead"] = 0
        ref = store.create("VM", rec)
        with contextlib.suppress(Exception):
            store.update(ref, {"memory_overhead": memory_overhead(store.get(ref, "VM"))})
        suspend_vdi = self.table.get(str(snap.get("suspend_VDI", NULL_REF)), NULL_REF)
        if snap.get("power_state") == "Suspended" and suspend_vdi != NULL_REF:
            # import.ml: a suspended VM (preserve_power_state) comes back suspended
            store.update(ref, {"power_state": "Suspended", "suspend_VDI": suspend_vdi})
            store.update(metrics, {"current_domain_type": rec.get("domain_type", "hvm")})
        self.table[o["id"]] = ref
        self.created.append(("VM", ref))
        self.vms.append(ref)

    def _vbd(self, o: dict[str, Any]) -> None:
        store = self.store
        rec = self.coerce("VBD", o["snapshot"])
        if rec.get("VM", NULL_REF) == NULL_REF:
            return
        empty = rec.get("VDI", NULL_REF) == NULL_REF
        rec.update(currently_attached=False, device="", empty=empty, current_operations={},
                   allowed_operations=[], storage_lock=False, status_code=0, status_detail="",
                   runtime_properties={})
        rec = {k: v for k, v in rec.items() if k in store.field_names["VBD"]}
        ref = store.create("VBD", rec)
        self.created.append(("VBD", ref))

    def _vif(self, o: dict[str, Any]) -> None:
        store = self.store
        rec = self.coerce("VIF", o["snapshot"])
        vm = rec.get("VM", NULL_REF)
        if vm == NULL_REF or rec.get("network", NULL_REF) == NULL_REF:
            return
        if not self.restore:
            seed = store.get(vm, "VM")["other_config"].get("mac_seed", "")
            rec["MAC"] = gen_mac(_as_int(rec.get("device")), seed)
            rec["MAC_autogenerated"] = True
        rec.update(currently_attached=False, current_operations={}, allowed_operations=[],
                   status_code=0, status_detail="", runtime_properties={}, metrics=NULL_REF)
        rec = {k: v for k, v in rec.items() if k in store.field_names["VIF"]}
        ref = store.create("VIF", rec)
        self.created.append(("VIF", ref))

    def stream(self, tar: _Tar, body: _Body, header: dict[str, Any]) -> None:
        """stream_vdi.ml recv_all: each VDI in id order, chunks in increasing order
        until its size is reached, each followed by its checksum file."""
        store = self.store
        vdis = sorted(self.vdi_sizes)
        failed = False
        for prefix in vdis:
            size = self.vdi_sizes[prefix]
            vdi = self.table[prefix]
            offset, last = 0, -1
            chunk_len = -1
            data: dict[int, bytes] = {}
            while offset < size:
                ti = tar.next_header()
                if ti is None:
                    raise _ifail("IMPORT_ERROR_PREMATURE_EOF")
                if not ti.name.startswith(prefix + "/"):
                    raise _invalid_xva()
                suffix = ti.name[len(prefix) + 1:]
                if not suffix.isdigit() or int(suffix) <= last:
                    raise _invalid_xva()
                n = int(suffix)
                chunk = tar.read_file(ti)
                if chunk_len < 0:
                    chunk_len = len(chunk)
                offset += (n - last - 1) * chunk_len + len(chunk)
                last = n
                csum_ti = tar.next_header()
                if csum_ti is None:
                    raise _ifail("IMPORT_ERROR_PREMATURE_EOF")
                expected = tar.read_file(csum_ti).decode("ascii", "replace").strip()
                if csum_ti.name.endswith(".xxhash"):
                    actual = _checksum(store, chunk)
                elif csum_ti.name.endswith(".checksum"):
                    actual = hashlib.sha1(chunk).hexdigest()
                else:
                    raise _ifail("IMPORT_ERROR", "INTERNAL_ERROR: [ Failure(\"Found unsupported "
                                 f"checksum file: {csum_ti.name}\") ]")
                if actual.lower() != expected.lower():
                    failed = True
                if chunk_len == CHUNK and chunk.count(0) != len(chunk):
                    data[n] = chunk
                if body.length:
                    _progress(self.sim, self.task, 0.99 * body.count / body.length)
                time.sleep(self.sim.op_time / 8)
            with store.lock:
                if data and _data_used(store) + sum(map(len, data.values())) <= DATA_BUDGET:
                    _disk_data(store)[vdi] = data
                written = sum(len(c) for c in data.values())
                row = store.tables["VDI"].get(vdi)
                if row is not None and not disks.is_thick(store, row["SR"]):
                    grow = min(size, written)
                    store.update(vdi, {"physical_utilisation": int(row["physical_utilisation"])
                                       + grow})
                    disks.account(store, row["SR"], grow, 0)
        if failed and not self.force:
            raise _ifail("IMPORT_ERROR_SOME_CHECKSUMS_FAILED")

    def complete(self) -> str:
        """import.ml complete_import: drop ``import`` from the VMs' operations; the
        result is the set of new VMs."""
        store = self.store
        with store.lock:
            for vm in self.vms:
                if store.exists(vm, "VM"):
                    store.del_map_key(vm, "current_operations", self.task)
        return xml_value(list(self.vms))

    def cleanup(self) -> None:
        store = self.store
        with store.lock:
            for cls, ref in reversed(self.created):
                if not store.exists(ref, cls):
                    continue
                if cls == "VM":
                    store.update(ref, {"current_operations": {}})
                if cls == "VDI":
                    _disk_data(store).pop(ref, None)
                    disks.destroy_vdi(store, ref)
                else:
                    store.destroy(ref)


def _invalid_xva() -> ImportFailure:
    return _ifail("IMPORT_ERROR", 'INTERNAL_ERROR: [ Failure("Invalid XVA file") ]')


def _discard_body(handler: Handler) -> None:
    """Read what the client is still sending after an early answer, so that it gets
    to read that answer instead of a reset (xapi leaves the body unread here)."""
    with contextlib.suppress(OSError, ValueError):
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            handler.read_body()
            return
        length = handler.headers.get("Content-Length")
        _Body(handler.rfile, int(length) if length and length.isdigit() else 0).drain()


def import_handler(handler: Handler, query: hc.Query) -> None:
    if not _import_request(handler, query):
        _discard_body(handler)


def _import_request(handler: Handler, query: hc.Query) -> bool:
    """Answer the import; True once the body has been read."""
    sim = handler.sim
    store = sim.store
    with hc.authenticated(handler, query, "put_import") as auth:
        if auth is None:
            return False
        restore = _bool_arg(hc.lookup_param(handler, query, "restore"))
        force = _bool_arg(hc.lookup_param(handler, query, "force"))
        here = handler.server.host_ref
        with store.lock:
            try:
                sr = _sr_of_request(handler, query)
            except XapiFailure as f:
                hc.internal_error(handler, hc.html_escape(hc.failure_text(f)))
                return False
            local = sr in _srs_seen_by(store, here)
            target = ""
            if not local:
                try:
                    target = store.get(choose_host_seeing(store, [sr]), "host")["address"]
                except XapiFailure as f:
                    hc.internal_error(handler, hc.html_escape(hc.failure_text(f)))
                    return False
        if not local:
            hc.redirect(handler, hc.url_on(sim, target, "/import", handler.path.partition("?")[2]))
            return False
        task, own = _task_for(sim, handler, query, "VM.import", auth.session)
        try:
            return _import(handler, sr, task, restore, force)
        finally:
            _end(sim, task, own)


def _sr_of_request(handler: Handler, query: hc.Query) -> str:
    """importexport.ml sr_of_req, then Importexport.get_default_sr."""
    store = handler.sim.store
    sr_id = hc.lookup_param(handler, query, "sr_id")
    sr_uuid = hc.lookup_param(handler, query, "sr_uuid")
    if sr_id is not None:
        store.get(sr_id, "SR")
        return sr_id
    if sr_uuid is not None:
        return store.by_uuid("SR", sr_uuid)
    pool = next(iter(store.all("pool").values()))
    sr = str(pool["default_SR"])
    if not store.exists(sr, "SR"):
        raise XapiFailure("DEFAULT_SR_NOT_FOUND", sr)
    return sr


def _import(handler: Handler, sr: str, task: str, restore: bool, force: bool) -> bool:
    sim = handler.sim
    store = sim.store
    _progress(sim, task, 0.0)
    if store.get(sr, "SR")["content_type"] == "iso":
        hc.bad_request(handler)
        fail_task(sim, task, XapiFailure("SR_OPERATION_NOT_SUPPORTED"))
        return False
    if handler.headers.get("Transfer-Encoding") is not None:
        hc.forbidden_headers(handler)
        fail_task(sim, task, XapiFailure("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"))
        return False
    hc.write_raw(handler, ["HTTP/1.1 200 OK", "Connection: close", hc.CACHE, f"task-id:{task}",
                           "content-type: application/octet-stream"])
    length_s = handler.headers.get("Content-Length")
    body = _Body(handler.rfile, int(length_s) if length_s and length_s.isdigit() else None)
    imp = _Importer(sim, sr, task, restore, force)
    try:
        tar, xml = open_archive(body)
        header = parse_ova(xml)
        imp.run(header)
        imp.stream(tar, body, header)
        result = imp.complete()
    except ImportFailure as e:
        _abandon(imp, force)
        fail_task(sim, task, e.failure)
        return True
    except XapiFailure as f:
        _abandon(imp, force)
        fail_task(sim, task, f)
        return True
    except Exception as e:  # a bug or a stream we could not understand
        _abandon(imp, force)
        fail_task(sim, task, XapiFailure("IMPORT_ERROR", f"INTERNAL_ERROR: [ {e!r} ]"))
        return True
    finally:
        with contextlib.suppress(OSError, ValueError):
            body.drain()
    _succeed(sim, task, result)
    return True


def _abandon(imp: _Importer, force: bool) -> None:
    if not force:
        imp.cleanup()
    else:
        imp.complete()


def register(sim: Simulator) -> None:
    sim.http_get["/export"] = export_handler
    sim.http_put["/import"] = import_handler
