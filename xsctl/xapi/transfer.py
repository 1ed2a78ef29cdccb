"""VM export and import over xapi's HTTP handlers (``GET /export``, ``PUT /import``;
ocaml/xapi/export.ml, import.ml, protocol.md section 7), streamed a chunk at a time,
each tied to a task the caller made (``task_id``) so that it shows in every client,
reports its progress, and can be cancelled.

Every request goes through ``transport.connect_http``: the pinned certificate (or
CA) is checked as for the API, and in dom0 the Unix socket is used.

Export: the file is written under a temporary name beside the target and renamed
when xapi says the task succeeded; a failure, a cancel or Ctrl-C removes it. An
existing file is replaced only when asked. xapi closes the stream when it is done
(HTTP/1.0, no length), so only the task's outcome tells a whole export from a cut one.

Import: the file is checked first (an XVA is a tar whose first member is ova.xml, or
that tar compressed with gzip or zstd; an uncompressed one is walked header to
header, so a truncated file is refused before anything is sent), then sent with its
length. xapi removes what it made when the import fails or is cancelled (import.ml
cleanup), so nothing half-made is left.

Cancelling (a set event, Ctrl-C, or task.cancel from anywhere) cancels the task and
closes the connection; the task is polled as the bytes flow, so a cancel from another
client stops the transfer too.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.client
import logging
import os
import socket
import tarfile
import threading
import time
import xmlrpc.client
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import urlencode, urlsplit

from xsctl.xapi.errors import ConnectionFailed, UsageError, XapiError, XsctlError
from xsctl.xapi.metrics import trust_member
from xsctl.xapi.session import Connection
from xsctl.xapi.tasks import wait_task
from xsctl.xapi.text import human_bytes, printable
from xsctl.xapi.transport import USER_AGENT, Endpoint, connect_http

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024  # as stream_vdi.ml: memory stays at one chunk whatever the file
BLOCK = 512
POLL = 0.5  # seconds between looks at the task while bytes flow
TIMEOUT = 60.0  # a socket that stays silent this long is given up
COMPRESSION = ("gzip", "zstd")  # export.ml use_compression values
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class BadXva(UsageError):
    """The file given to import is not a whole XVA export."""


class TransferCancelled(XapiError):
    """Cancelled here (the task, and the connection closed)."""

    def __init__(self, task: str) -> None:
        super().__init__("TASK_CANCELLED", [task], method="transfer")


# ------------------------------------------------------------------ progress


@dataclass(frozen=True)
class Progress:
    done: int  # bytes moved so far
    total: int | None  # bytes expected (an import's file size); None when unknown
    fraction: float  # 0..1 (an export: xapi's task progress)
    rate: float  # bytes per second, over the transfer so far
    eta: float | None  # seconds left, when it can be told

    def short(self) -> str:
        """``35.2 MiB/s, 0:12 left`` (what a task row has room for)."""
        left = f", {_clock(self.eta)} left" if self.eta is not None else ""
        return f"{human_bytes(self.rate)}/s{left}"

    def line(self, width: int = 20) -> str:
        """``42% [########------------] 120 MiB, 35.2 MiB/s, 0:12 left``"""
        filled = round(self.fraction * width)
        bar = "#" * filled + "-" * (width - filled)
        left = f", {_clock(self.eta)} left" if self.eta is not None else ""
        return (f"{int(self.fraction * 100):3d}% [{bar}] {human_bytes(self.done)}, "
                f"{human_bytes(self.rate)}/s{left}")


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


Report = Callable[[Progress], None]


class _Meter:
    def __init__(self, report: Report | None, total: int | None) -> None:
        self.report = report
        self.total = total
        self.start = time.monotonic()
        self.done = 0
        self.fraction = 0.0

    def add(self, n: int) -> None:
        self.done += n
        if self.total:
            self.fraction = min(1.0, self.done / self.total)

    def show(self) -> None:
        if self.report is None:
            return
        took = max(time.monotonic() - self.start, 1e-6)
        rate = self.done / took
        eta = None
        if 0.0 < self.fraction < 1.0:
            eta = took * (1.0 - self.fraction) / self.fraction
        elif self.fraction >= 1.0:
            eta = 0.0
        self.report(Progress(self.done, self.total, self.fraction, rate, eta))


# ------------------------------------------------------------------ the file to import


@dataclass(frozen=True)
class XvaFile:
    path: Path
    size: int
    compression: str | None  # None, "gzip" or "zstd"
    vms: tuple[str, ...]  # the names in its ova.xml (printable), when it could be read
    disk_bytes: int  # the size of the disks it holds (0 when unknown)
    disks: int  # how many disks it streams (uncompressed files only; else -1)


def _header(block: bytes) -> tarfile.TarInfo | None:
    try:
        return tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.TarError:
        return None


def _ova_facts(xml: bytes) -> tuple[tuple[str, ...], int]:
    """The VM names in an ova.xml (untrusted: made printable) and the bytes of the
    disks it streams (not CDs); ((), 0) when unreadable."""
    try:
        (value,), _ = xmlrpc.client.loads(
            b"<?xml version='1.0'?><methodResponse><params><param>" + xml
            + b"</param></params></methodResponse>")
        objs: list[dict[str, Any]] = list(cast(dict[str, Any], value)["objects"])
        iso = {o["id"] for o in objs
               if o.get("class") == "SR" and o["snapshot"].get("content_type") == "iso"}
        names = tuple(printable(str(o["snapshot"].get("name_label", "")))
                      for o in objs if o.get("class") == "VM")
        disks = sum(int(o["snapshot"].get("virtual_size", 0)) for o in objs
                    if o.get("class") == "VDI" and o["snapshot"].get("SR") not in iso)
        return names, disks
    except Exception:  # a damaged header: the import will say what xapi thinks
        return (), 0


def check_xva(path: str | Path) -> XvaFile:
    """What is in ``path``, or BadXva saying why it cannot be imported."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise BadXva(f"{p}: no such file") from None
    except IsADirectoryError:
        raise BadXva(f"{p} is a folder, not an XVA file") from None
    except OSError as e:
        raise BadXva(f"{p}: cannot read it ({e.strerror or e})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        first = f.read(BLOCK)
        if not first:
            raise BadXva(f"{p} is empty")
        if first.startswith(ZSTD_MAGIC):
            return XvaFile(p, size, "zstd", (), 0, -1)
        if first.startswith(GZIP_MAGIC):
            f.seek(0)
            return _check_gzip(p, size, f)
        hdr = _header(first) if len(first) == BLOCK else None
        if hdr is None or hdr.name != "ova.xml":
            raise BadXva(f"{p} is not an XVA export (it is neither a tar archive that "
                         "starts with ova.xml nor one compressed with gzip or zstd)")
        return _walk_tar(p, size, f, hdr)


def _walk_tar(p: Path, size: int, f: BinaryIO, first: tarfile.TarInfo) -> XvaFile:
    """Header to header through an uncompressed XVA (seeking past the data): a file
    cut short anywhere is found without reading the disks."""
    xml = f.read(first.size)
    if len(xml) < first.size:
        raise BadXva(f"{p} is truncated: it ends inside its ova.xml")
    names, disk_bytes = _ova_facts(xml)
    pos = BLOCK + first.size + (-first.size % BLOCK)
    prefixes: set[str] = set()
    last = "ova.xml"
    while True:
        if pos + BLOCK > size:
            raise BadXva(f"{p} is truncated: it ends after {last} without the end of "
                         f"the archive ({human_bytes(size)} read)")
        f.seek(pos)
        block = f.read(BLOCK)
        if block == bytes(BLOCK):
            break
        hdr = _header(block)
        if hdr is None:
            raise BadXva(f"{p} is damaged: what follows {last} is not a tar header")
        end = pos + BLOCK + hdr.size
        if end > size:
            raise BadXva(f"{p} is truncated: it ends inside {printable(hdr.name)}")
        if "/" in hdr.name:
            prefixes.add(hdr.name.split("/", 1)[0])
        last = printable(hdr.name)
        pos = end + (-hdr.size % BLOCK)
    return XvaFile(p, size, None, names, disk_bytes, len(prefixes))


def _check_gzip(p: Path, size: int, f: BinaryIO) -> XvaFile:
    """A gzip XVA: its start must be the tar of an ova.xml. Whether it is whole shows
    only once it is all decompressed, which xapi does as it reads (a cut file fails
    there with IMPORT_ERROR_PREMATURE_EOF, and xapi removes what it made)."""
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as z:
            block = z.read(BLOCK)
            hdr = _header(block) if len(block) == BLOCK else None
            if hdr is None or hdr.name != "ova.xml":
                raise BadXva(f"{p} is compressed, but not an XVA export (no ova.xml at "
                             "its start)")
            xml = z.read(hdr.size)
    except (OSError, EOFError, zlib.error) as e:
        raise BadXva(f"{p} is damaged or truncated (gzip: {e})") from None
    if len(xml) < hdr.size:
        raise BadXva(f"{p} is truncated: it ends inside its ova.xml")
    return XvaFile(p, size, "gzip", *_ova_facts(xml), -1)


# ------------------------------------------------------------------ export target


def partial_path(path: Path) -> Path:
    """Where an export is written until it is whole: beside the target, hidden."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def check_target(path: str | Path, force: bool) -> Path:
    """The export's file, refused when it exists (without ``force``) or cannot be
    written where it is."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UsageError(f"{p} is a folder: name the file to write")
    if p.exists() and not force:
        raise UsageError(f"{p} exists: add --force to replace it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such folder")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"{parent}: not writable")
    return p


# ------------------------------------------------------------------ HTTP


def _endpoint(conn: Connection, address: str | None) -> Endpoint:
    base = conn.endpoint
    if address is None or base.scheme == "unix":
        return base
    return base.at(address)


def _member_for(conn: Connection, address: str) -> None:
    """A redirect names a pool member: trust its certificate from the master's
    answer, as the metrics feed does."""
    for ref in conn.call("host.get_all"):
        if conn.call("host.get_address", ref) == address:
            trust_member(conn, str(ref), address)
            return
    raise ConnectionFailed(f"xapi redirected the transfer to {address}, which is not a "
                           "host of this pool")


class _Task:
    """The transfer's task, looked at while bytes flow (not more than every POLL s)."""

    def __init__(self, conn: Connection, task: str, cancel: threading.Event | None) -> None:
        self.conn = conn
        self.ref = task
        self.cancel = cancel
        self.next = 0.0
        self.progress = 0.0
        self.status = "pending"

    def check(self) -> None:
        """Raise TransferCancelled when asked here; note the task's progress; stop
        when it failed or was cancelled from elsewhere (a task that succeeded has
        sent or read everything: what is still in flight is read to the end)."""
        if self.cancel is not None and self.cancel.is_set():
            raise TransferCancelled(self.ref)
        now = time.monotonic()
        if now < self.next:
            return
        self.next = now + POLL
        rec = self.conn.call("task.get_record", self.ref)
        self.progress = float(rec.get("progress", 0) or 0)
        self.status = str(rec.get("status", "pending"))
        if self.status in ("failure", "cancelled"):
            raise _Ended


class _Ended(Exception):
    """The task ended while bytes still flowed: its outcome says why."""


def _finish(conn: Connection, task: str) -> Any:
    """The task's result, or its error as XapiError; the task is destroyed."""
    return wait_task(conn, task, timeout=TIMEOUT)


def _cancel(conn: Connection, task: str, status: str) -> None:
    """Ask xapi to cancel a task still running, before its connection closes: xapi
    checks for a cancel when a write to the client fails (stream_vdi.ml write_block),
    so an export then ends TASK_CANCELLED rather than CLIENT_ERROR."""
    if status == "pending":
        with contextlib.suppress(XsctlError):
            conn.call("task.cancel", task)


def _drop_task(conn: Connection, task: str, status: str, e: BaseException) -> None:
    """After a failure here (the task cancelled, the connection closed): wait a
    little for a running task to end, xapi cleaning up behind it (an import removes
    what it made before its task ends); destroy one xapi refused at once. When the
    cancel was ours, say so: an import whose connection closes under it ends with
    IMPORT_ERROR_PREMATURE_EOF in xapi (import.ml reads to the end of the stream
    and only then could see the cancel), which would read as a cut file."""
    if status == "pending":
        told: XapiError | None = None
        try:
            wait_task(conn, task, timeout=15.0)
        except XapiError as err:
            told = err
        except XsctlError as err:
            log.info("transfer task %s: its end was not seen (%s)", task, err)
        log.info("transfer task %s stopped here (%s); xapi ended it with %s", task,
                 type(e).__name__, told.code if told else "success or nothing seen")
        if isinstance(e, TransferCancelled) and told is not None and told.code == e.code:
            raise told from None  # xapi's own word that it stopped
    elif status == "refused":
        with contextlib.suppress(XsctlError):
            conn.call("task.cancel", task)
        with contextlib.suppress(XsctlError):
            conn.call("task.destroy", task)


def _error_of(conn: Connection, task: str, resp: http.client.HTTPResponse, what: str) -> XsctlError:
    """A refusal before any data: the task's error where xapi set one."""
    if resp.status == 401:
        return XapiError("SESSION_INVALID", [conn.session or ""], method=what)
    try:
        rec = conn.call("task.get_record", task)
    except XsctlError as e:
        return e
    info = [str(x) for x in rec.get("error_info") or []]
    if rec.get("status") in ("failure", "cancelled") and info:
        return XapiError(info[0], info[1:], method=what)
    return ConnectionFailed(f"{what}: xapi answered HTTP {resp.status} {resp.reason}")


@dataclass
class _Http:
    """A transfer's HTTP connection and its socket, kept apart: once xapi's answer
    says the connection closes, ``HTTPConnection`` hands the socket to the response
    and forgets it, and closing the connection alone would leave it open (xapi,
    blocked writing an export to it, would never see the client go)."""

    c: http.client.HTTPConnection
    sock: socket.socket | None
    resp: http.client.HTTPResponse | None = None

    def response(self) -> http.client.HTTPResponse:
        self.resp = self.c.getresponse()
        return self.resp

    def hang_up(self) -> None:
        """Shut the socket and drop every hold on it, so that it really closes (data
        left unread makes the kernel reset the connection: xapi's write fails)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
        if self.resp is not None:
            with contextlib.suppress(OSError, http.client.HTTPException):
                self.resp.close()
        self.c.close()
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()


def _open(conn: Connection, method: str, path: str, query: dict[str, str],
          headers: dict[str, str], address: str | None) -> _Http:
    conn.check_trusted()  # a changed certificate ended the connection: no new socket
    if address is not None:
        _member_for(conn, address)
    c = connect_http(_endpoint(conn, address), conn.trust, TIMEOUT)
    c.putrequest(method, f"{path}?{urlencode(query)}", skip_accept_encoding=True)
    for k, v in {"User-Agent": USER_AGENT, **headers}.items():
        c.putheader(k, v)
    c.endheaders()
    return _Http(c, c.sock)


def _redirect(resp: http.client.HTTPResponse) -> str:
    loc = resp.getheader("Location") or ""
    host = urlsplit(loc).hostname
    if not host:
        raise ConnectionFailed(f"xapi redirected the transfer to {loc!r}")
    return host


# ------------------------------------------------------------------ export


def export_vm(conn: Connection, vm: str, path: str | Path, task: str, *,
              compression: str | None = None, force: bool = False,
              report: Report | None = None, cancel: threading.Event | None = None) -> int:
    """Stream the export of ``vm`` (a VM, snapshot or template ref) into ``path``
    under ``task``; returns the bytes written."""
    target = check_target(path, force)
    tmp = partial_path(target)
    query = {"session_id": conn.session or "", "ref": vm, "task_id": task}
    if compression:
        query["use_compression"] = compression
    watch = _Task(conn, task, cancel)
    meter = _Meter(report, None)
    c: _Http | None = None
    fd = -1
    try:
        address: str | None = None
        for _ in range(3):
            c = _open(conn, "GET", "/export", query, {}, address)
            resp = c.response()
            if resp.status != 302:
                break
            c.hang_up()
            address = _redirect(resp)
        assert c is not None
        if resp.status != 200:
            watch.status = "refused"
            raise _error_of(conn, task, resp, "VM.export")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a run that was killed (SIGKILL) with this pid
        # 0600: a VM's disks can hold anything its owner keeps secret
        fd = _local(target, lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            while True:
                watch.check()
                data = resp.read(CHUNK)
                if not data:
                    break
                _local(target, functools.partial(_write_all, fd, data))
                meter.add(len(data))
                meter.fraction = watch.progress
                meter.show()
        except _Ended:
            pass
        c.hang_up()
        c = None
        watch.status = "ended"  # whatever _finish says, the task is over and gone
        _finish(conn, task)
        _local(target, lambda: os.fsync(fd))
        os.close(fd)
        fd = -1
        if target.exists() and not force:
            raise UsageError(f"{target} appeared meanwhile: add --force to replace it")
        _local(target, lambda: os.replace(tmp, target))
        meter.fraction = 1.0
        meter.show()
        return meter.done
    except BaseException as e:
        _cancel(conn, task, watch.status)
        if c is not None:
            c.hang_up()
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        _drop_task(conn, task, watch.status, e)
        if isinstance(e, (OSError, http.client.HTTPException)):
            raise ConnectionFailed(f"export to {target} failed: {e}") from e
        raise


T = TypeVar("T")


def _local(target: Path, fn: Callable[[], T]) -> T:
    """A step on the local file: its failure (a full disk, a read-only folder) is
    said as such, not as a connection's."""
    try:
        return fn()
    except OSError as e:
        raise XsctlError(f"cannot write {target}: {e.strerror or e}") from e


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


# ------------------------------------------------------------------ import


def import_host(conn: Connection, sr: str) -> str | None:
    """The address of the host to send an import into ``sr`` to: None (the master)
    for a shared SR or one the master sees; else the one host that has it plugged
    (xapi would answer the master's request with a redirect there, after the whole
    body had been sent)."""
    if conn.endpoint.scheme == "unix" or conn.call("SR.get_shared", sr):
        return None
    master = conn.call("pool.get_master", conn.call("pool.get_all")[0])
    hosts = []
    for pbd in conn.call("SR.get_PBDs", sr):
        if conn.call("PBD.get_currently_attached", pbd):
            hosts.append(conn.call("PBD.get_host", pbd))
    if not hosts or master in hosts:
        return None
    return str(conn.call("host.get_address", hosts[0]))


def import_vm(conn: Connection, path: str | Path, sr: str, task: str, *,
              report: Report | None = None,
              cancel: threading.Event | None = None) -> list[str]:
    """Send the XVA at ``path`` to be imported into ``sr`` under ``task``; returns
    the new VMs' refs."""
    xva = check_xva(path)
    query = {"session_id": conn.session or "", "sr_id": sr, "task_id": task}
    watch = _Task(conn, task, cancel)
    meter = _Meter(report, xva.size)
    address = import_host(conn, sr)
    c: _Http | None = None
    try:
        for _ in range(3):
            c = _open(conn, "PUT", "/import", query,
                      {"Content-Length": str(xva.size),
                       "Content-Type": "application/octet-stream"}, address)
            sent_all = _send(c.c, xva.path, watch, meter)
            if not sent_all:
                break  # xapi stopped reading, or the task ended: the task says why
            resp = c.response()
            if resp.status != 302:
                if resp.status != 200:
                    watch.status = "refused"
                    raise _error_of(conn, task, resp, "VM.import")
                break  # the body is all sent: the task, not the socket, says how it ends
            c.hang_up()
            address = _redirect(resp)
            meter.done = 0
        assert c is not None
        c.hang_up()
        c = None
        watch.status = "ended"
        result = _finish(conn, task)
        meter.fraction = 1.0
        meter.show()
        refs = result if isinstance(result, list) else [result] if result else []
        return [str(r) for r in refs]
    except BaseException as e:
        _cancel(conn, task, watch.status)
        if c is not None:
            c.hang_up()
        _drop_task(conn, task, watch.status, e)
        if isinstance(e, (OSError, http.client.HTTPException)):
            raise ConnectionFailed(f"import of {xva.path} failed: {e}") from e
        raise


def _send(c: http.client.HTTPConnection, path: Path, watch: _Task, meter: _Meter) -> bool:
    """The body, a chunk at a time; False when xapi stopped reading it (its answer
    and the task tell why) or the task ended meanwhile."""
    with path.open("rb") as f:
        while True:
            try:
                watch.check()
            except _Ended:
                return False
            data = f.read(CHUNK)
            if not data:
                return True
            try:
                c.send(data)
            except (BrokenPipeError, ConnectionResetError):
                return False
            meter.add(len(data))
            meter.show()
