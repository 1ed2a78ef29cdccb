"""The XVA stream of VM export and import, and what both share.

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
is decompressed). What a disk holds is in vdi_data: a disk nobody wrote exports a
boot sector naming it and zeros (so its export is a few MiB whatever its size); an
imported disk exports again exactly what it was given.

zstd compression (xapi's ``use_compression=zstd``) needs a zstd codec this Python does
not have: such an export fails with ``INTERNAL_ERROR`` and a zstd import with
``IMPORT_ERROR``. The export (``GET /export``) is in export, the import (``PUT
/import``) in vm_import; both run under a task as with_context gives them.
"""

from __future__ import annotations

import struct
import tarfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from xsctl.sim import http_common as hc
from xsctl.sim.dispatch import is_cancelling, new_task
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.vdi_data import DiskContents

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator

CHUNK = 1024 * 1024  # stream_vdi.ml chunk_size
BLOCK = 512
EXPORT_VSN = 2  # xapi_globs.ml export_vsn
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


def checksum(store: Store, data: bytes) -> str:
    """xxh64_hex, memoised per simulator: a chunk takes 25 ms in Python, and exports
    hash the same boot sector and empty chunks again and again."""
    return store.runtime.checksums.get(data, lambda: xxh64_hex(data))


def contents(store: Store) -> DiskContents:
    return store.runtime.storage.contents


def vdi_chunks(store: Store, vdi: str, size: int) -> Iterator[tuple[int, bytes]]:
    """The chunks an export writes for ``vdi`` (vdi_data.py)."""
    row = store.tables["VDI"].get(vdi)
    uuid = str(row["uuid"]) if row is not None else vdi
    return contents(store).chunks(vdi, uuid, size)


# ---------------------------------------------------------------- tar


def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    ti = tarfile.TarInfo(name)
    ti.size = size
    ti.mtime = mtime
    ti.mode = 0o400
    return ti.tobuf(format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict")


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


# ---------------------------------------------------------------- ova.xml version


def version_of(sim: Simulator) -> dict[str, Any]:
    """The ``version`` of an export's header, this pool's (importexport.ml)."""
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


# ---------------------------------------------------------------- tasks


def task_for(sim: Simulator, handler: Handler, query: hc.Query, label: str,
              session: str) -> tuple[str, bool]:
    """with_context: the task named by ``task_id`` or a new one (destroyed at the end)."""
    task = hc.lookup_param(handler, query, "task_id")
    if task is not None and sim.store.exists(task, "task"):
        return task, False
    return new_task(sim, label, session or None, cancellable=False), True


def progress(sim: Simulator, task: str, value: float) -> None:
    with sim.store.lock:
        if sim.store.exists(task, "task"):
            sim.store.update(task, {"progress": round(max(0.0, min(1.0, value)), 4)})


def succeed(sim: Simulator, task: str, result: str | None) -> None:
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


def cancellable(sim: Simulator, task: str, on: bool) -> None:
    """TaskHelper.set_cancellable / set_not_cancellable: stream_vdi.ml makes the task
    cancellable while disks stream."""
    with sim.store.lock:
        if sim.store.exists(task, "task"):
            sim.store.update(task, {"allowed_operations": ["cancel"] if on else []})


def cancel_requested(sim: Simulator, task: str) -> bool:
    with sim.store.lock:
        return sim.store.exists(task, "task") and is_cancelling(sim.store.get(task, "task"))


def check_cancel(sim: Simulator, task: str) -> None:
    """TaskHelper.exn_if_cancelling (stream_vdi.ml checks it as it makes progress)."""
    if cancel_requested(sim, task):
        raise XapiFailure("TASK_CANCELLED", task)


def end_task(sim: Simulator, task: str, own: bool) -> None:
    if own:
        with sim.store.lock:
            if sim.store.exists(task, "task"):
                sim.store.destroy(task)
