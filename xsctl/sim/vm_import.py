"""VM import over HTTP: ``PUT /import`` (ocaml/xapi/import.ml handler, with_open_archive,
complete_import, importexport.ml sr_of_req), the stream xva describes.

HTTP behaviour (xapi's, from import.ml and xapi_http.ml):

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
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import tarfile
import time
import xmlrpc.client
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from xsctl.sim import http_common as hc
from xsctl.sim.dispatch import fail_task
from xsctl.sim.errors import XapiFailure
from xsctl.sim.handlers import disks
from xsctl.sim.handlers.network import gen_mac
from xsctl.sim.handlers.vm_memory import memory_overhead
from xsctl.sim.handlers.vm_placement import choose_host_seeing, srs_seen_by
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.vdi_data import CHUNK, Written
from xsctl.sim.wire import NULL_REF, DateTime, xml_value
from xsctl.sim.xva import (
    BLOCK,
    ZSTD_MAGIC,
    cancellable,
    check_cancel,
    checksum,
    contents,
    end_task,
    progress,
    succeed,
    task_for,
    version_of,
)

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator

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
        ours = version_of(self.sim)
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
        cancellable(self.sim, self.task, True)
        for prefix in vdis:
            size = self.vdi_sizes[prefix]
            vdi = self.table[prefix]
            disk = contents(store).blank(vdi)
            offset, last = 0, -1
            chunk_len = -1
            while offset < size:
                check_cancel(self.sim, self.task)
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
                    actual = checksum(store, chunk)
                elif csum_ti.name.endswith(".checksum"):
                    actual = hashlib.sha1(chunk).hexdigest()
                else:
                    raise _ifail("IMPORT_ERROR", "INTERNAL_ERROR: [ Failure(\"Found unsupported "
                                 f"checksum file: {csum_ti.name}\") ]")
                if actual.lower() != expected.lower():
                    failed = True
                if chunk_len == CHUNK:
                    disk.write(n, chunk)
                elif chunk.count(0) != len(chunk):
                    # a stream in other chunk sizes: whole chunks of ours, rewritten
                    self._write_at(disk, n * chunk_len, chunk)
                if body.length:
                    progress(self.sim, self.task, 0.99 * body.count / body.length)
                time.sleep(self.sim.op_time / 8)
            with store.lock:
                written = len(disk.numbers()) * CHUNK
                row = store.tables["VDI"].get(vdi)
                if row is not None and not disks.is_thick(store, row["SR"]):
                    grow = min(size, written)
                    store.update(vdi, {"physical_utilisation": int(row["physical_utilisation"])
                                       + grow})
                    disks.account(store, row["SR"], grow, 0)
        # import.ml stream_import: cancellable while the disks stream, then not
        check_cancel(self.sim, self.task)
        cancellable(self.sim, self.task, False)
        if failed and not self.force:
            raise _ifail("IMPORT_ERROR_SOME_CHECKSUMS_FAILED")

    @staticmethod
    def _write_at(disk: Written, offset: int, data: bytes) -> None:
        while data:
            n, within = divmod(offset, CHUNK)
            take = min(len(data), CHUNK - within)
            old = bytearray(disk.read(n, CHUNK))
            old[within:within + take] = data[:take]
            disk.write(n, bytes(old))
            offset += take
            data = data[take:]

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
        restore = hc.bool_arg(hc.lookup_param(handler, query, "restore"))
        force = hc.bool_arg(hc.lookup_param(handler, query, "force"))
        here = handler.server.host_ref
        with store.lock:
            try:
                sr = _sr_of_request(handler, query)
            except XapiFailure as f:
                hc.internal_error(handler, hc.html_escape(hc.failure_text(f)))
                return False
            local = sr in srs_seen_by(store, here)
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
        task, own = task_for(sim, handler, query, "VM.import", auth.session)
        try:
            return _import(handler, sr, task, restore, force)
        finally:
            end_task(sim, task, own)


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
    progress(sim, task, 0.0)
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
    succeed(sim, task, result)
    return True


def _abandon(imp: _Importer, force: bool) -> None:
    if not force:
        imp.cleanup()
    else:
        imp.complete()


def register(sim: Simulator) -> None:
    sim.http_put["/import"] = import_handler
