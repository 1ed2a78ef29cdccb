"""VM and host consoles through xapi's ``/console`` (ocaml/xapi/console.ml;
protocol.md section 7): ``CONNECT /console?ref=<console>`` with the session, answered
``HTTP/1.1 200 OK``, after which the connection is the console's raw stream: a serial
line for a text console (vt100), RFB for a graphical one.

A console is served by the host its VM runs on (console.ml check_vm_is_running_here),
so the connection goes to the host named in the console's ``location``, under the
same trust as every other connection (the certificate pin or CA; a member's pin
learnt from the master, as the metrics feed does), or over the Unix socket in dom0.
The session goes in a cookie, which xapi reads before the query
(xapi_http.ml lookup_param_of_req), so that it is never part of a logged URL.

The console is named by its own ref, not by the location's query: a control domain's
consoles both carry ``?ref=<the control domain>`` (create_misc.ml), which xapi takes
for the VM's default console, the RFB one, even for its text console.

``attach`` hands a terminal over raw, as ``xe console`` does (newcli.ml): every key
goes to the console, Ctrl-] (0x1d) ends it, and the terminal is put back as it was
on every way out. ``Tunnel`` listens on loopback and carries each connection a VNC
viewer makes to its own ``/console`` connection.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import shlex
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import ConnectionFailed, UsageError, XsctlError
from xsctl.xapi.metrics import trust_member
from xsctl.xapi.session import Connection
from xsctl.xapi.text import printable
from xsctl.xapi.transport import USER_AGENT, connect_http
from xsctl.xapi.urls import parse_url

log = logging.getLogger(__name__)

ESCAPE = 0x1D  # Ctrl-], as xe console (newcli.ml) and telnet
ESCAPE_NAME = "Ctrl-]"
TIMEOUT = 30.0  # connecting and the answer to CONNECT; the stream itself never times out
HEAD_LIMIT = 16384  # an answer's headers longer than this are not xapi's
NULL = "OpaqueRef:NULL"

# VNC viewers looked for on PATH, in this order, and how each is given an address
VIEWERS: tuple[tuple[str, Callable[[str, int], list[str]]], ...] = (
    ("vncviewer", lambda h, p: [f"{h}::{p}"]),  # TigerVNC, TightVNC, RealVNC
    ("xtightvncviewer", lambda h, p: [f"{h}::{p}"]),
    ("xvnc4viewer", lambda h, p: [f"{h}::{p}"]),
    ("remmina", lambda h, p: ["-c", f"vnc://{h}:{p}"]),
    ("vinagre", lambda h, p: [f"{h}::{p}"]),
    ("krdc", lambda h, p: [f"vnc://{h}:{p}"]),
)
VIEWER_ENV = "XSCTL_VNC_VIEWER"


class ConsoleError(XsctlError):
    """The console could not be opened (xapi's answer, said for people)."""

    exit_code = 1


# ------------------------------------------------------------------ which console


@dataclass(frozen=True)
class ConsoleInfo:
    ref: str
    protocol: str  # vt100 or rfb
    vm: str
    vm_name: str
    location: str
    address: str  # the host that serves it (the location's)


def consoles_of(cache: Cache, vm: str) -> list[ConsoleInfo]:
    """The VM's consoles as the cache holds them."""
    found = cache.find(vm)
    if found is None:
        return []
    _, row = found
    out = []
    for ref in row.get("consoles") or []:
        hit = cache.find(str(ref))
        if hit is None:
            continue
        c = hit[1]
        location = str(c.get("location", ""))
        try:
            address = parse_url(location.split("/console", 1)[0])[1] if location else ""
        except (UsageError, ValueError):
            address = ""
        out.append(ConsoleInfo(str(ref), str(c.get("protocol", "")), vm,
                               printable(str(row.get("name_label", ""))), location, address))
    return out


def why_not(cache: Cache, vm: str, protocol: str) -> str | None:
    """Why the VM has no console of that protocol now (a sentence about "it"), or
    None."""
    found = cache.find(vm)
    if found is None:
        return "it is no longer in the pool"
    row = found[1]
    state = str(row.get("power_state", ""))
    if state != "Running":
        return f"it is {state.lower() or 'not running'}: a console is there only while it runs"
    if any(c.protocol == protocol for c in consoles_of(cache, vm)):
        return None
    if protocol == "vt100":
        if str(row.get("domain_type", "")) == "hvm":
            return ("it has no text console (an HVM guest has a graphical one: V in the "
                    "app, --vnc here)")
        return "it has no text console"
    return "it has no graphical console"


def pick(cache: Cache, vm: str, protocol: str) -> ConsoleInfo:
    why = why_not(cache, vm, protocol)
    if why is not None:
        raise ConsoleError(why)
    return next(c for c in consoles_of(cache, vm) if c.protocol == protocol)


# ------------------------------------------------------------------ the connection


class Stream:
    """An open console: the socket after xapi's 200, with what came with the answer."""

    def __init__(self, sock: socket.socket, early: bytes) -> None:
        self.sock = sock
        self.early = early  # console bytes read along with the answer's headers

    def recv(self) -> bytes:
        if self.early:
            data, self.early = self.early, b""
            return data
        return self.sock.recv(65536)

    def pending(self) -> bool:
        """Bytes readable without waiting on the socket (held here or by TLS)."""
        if self.early:
            return True
        p = getattr(self.sock, "pending", None)
        return bool(p is not None and p())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()


def _host_of(conn: Connection, address: str) -> str | None:
    for ref in conn.call("host.get_all"):
        if conn.call("host.get_address", ref) == address:
            return str(ref)
    return None


def _answer(status: int, reason: str, body: bytes) -> ConsoleError:
    if status == 401:
        return ConsoleError("xapi refused the session for the console (HTTP 401): log in again")
    if status == 403:
        return ConsoleError("the session may not open this console (HTTP 403: its role "
                            "does not allow it)")
    if status == 404:
        return ConsoleError("the console is not available (HTTP 404)")
    if status == 503:
        return ConsoleError("someone else has this console open, and the pool allows one "
                            "connection at a time (HTTP 503)")
    if status == 500:
        return ConsoleError("xapi could not open the console (HTTP 500): the VM must be "
                            "running, on the host that serves the console")
    return ConsoleError(f"xapi answered the console request with HTTP {status} "
                        f"{printable(reason)[:80]}")


def open_stream(conn: Connection, console: ConsoleInfo, timeout: float = TIMEOUT) -> Stream:
    """``CONNECT /console`` on the host that serves ``console``; the stream once xapi
    has answered 200, else the reason as a ConsoleError. A 401 (the session expired)
    is tried once more after a call, which logs in again as every call does."""
    try:
        return _open_stream(conn, console, timeout)
    except _Unauthorised:
        conn.call("pool.get_all")  # SESSION_INVALID there: the connection logs in again
        try:
            return _open_stream(conn, console, timeout)
        except _Unauthorised as e:
            raise _answer(401, "", b"") from e


class _Unauthorised(Exception):
    pass


def _open_stream(conn: Connection, console: ConsoleInfo, timeout: float) -> Stream:
    conn.check_trusted()  # a changed certificate ended the connection: no new socket
    ep = conn.endpoint
    if ep.scheme == "unix" and console.address:
        here = conn.call("host.get_address", conn.call("session.get_this_host", conn.session))
        if here != console.address:
            raise ConsoleError(
                f"{console.vm_name or 'the VM'} runs on {console.address}, which serves its "
                "console; this host's own socket serves only the consoles of the VMs here "
                f"(connect over https://{console.address} for it)")
    if ep.scheme != "unix" and console.address and console.address != ep.host:
        host = _host_of(conn, console.address)
        if host is None:
            raise ConsoleError(f"the console is served by {console.address}, which is not a "
                               "host of this pool")
        trust_member(conn, host, console.address)
        ep = ep.at(console.address)
    c = connect_http(ep, conn.trust, timeout)
    try:
        c.connect()
    except OSError as e:
        raise ConnectionFailed(f"cannot reach {ep.host} for the console: {e}") from e
    sock = c.sock
    assert sock is not None
    try:
        request = (f"CONNECT /console?ref={console.ref} HTTP/1.0\r\n"
                   f"Host: {ep.host}\r\nUser-Agent: {USER_AGENT}\r\n"
                   f"Cookie: session_id={conn.session or ''}\r\n\r\n")
        sock.sendall(request.encode("ascii", "replace"))
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise ConnectionFailed(f"{ep.host} closed the console connection without "
                                       "an answer")
            head += data
            if len(head) > HEAD_LIMIT:
                raise ConnectionFailed(f"{ep.host} answered the console request with "
                                       "something that is not HTTP")
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ConnectionFailed(f"{ep.host} answered the console request with "
                                   f"{printable(status_line)[:80]!r}")
        status = int(parts[1])
        if status == 401:
            raise _Unauthorised
        if status != 200:
            raise _answer(status, parts[2] if len(parts) > 2 else "", rest)
        sock.settimeout(None)
        return Stream(sock, rest)
    except OSError as e:
        with contextlib.suppress(OSError):
            sock.close()
        raise ConnectionFailed(f"the console connection to {ep.host} failed: {e}") from e
    except BaseException:
        with contextlib.suppress(OSError):
            sock.close()
        raise


# ------------------------------------------------------------------ the terminal


class _Signalled(Exception):
    pass


@contextlib.contextmanager
def _signals_end_it() -> Iterator[None]:
    """SIGTERM and SIGHUP end the session through the ``finally`` that puts the
    terminal back, instead of killing the process with the terminal left raw."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Signalled(signum)

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


def attach(stream: Stream, stdin: int = 0, stdout: int = 1, escape: int = ESCAPE) -> str:
    """Relay the console and the terminal until the escape key ("escape"), the
    console closing ("closed") or the input ending ("eof"); the terminal is in raw
    mode meanwhile and restored on every way out."""
    import termios
    import tty

    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        with _signals_end_it():
            if saved is not None:
                tty.setraw(stdin, termios.TCSANOW)
            return _relay(stream, stdin, stdout, escape)
    except _Signalled:
        return "signal"
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _relay(stream: Stream, stdin: int, stdout: int, escape: int) -> str:
    sock = stream.sock
    watch: list[Any] = [stdin, sock]
    while True:
        if stream.pending():
            ready: list[Any] = [sock]
        else:
            try:
                ready, _, _ = select.select(watch, [], [])
            except InterruptedError:
                continue
        if sock in ready:
            try:
                data = stream.recv()
            except OSError:
                return "closed"
            if not data:
                return "closed"
            _write_all(stdout, data)
        if stdin in ready:
            try:
                data = os.read(stdin, 4096)
            except OSError as e:
                if e.errno == errno.EIO:  # the terminal went away
                    return "eof"
                raise
            if not data:
                return "eof"
            cut = data.find(bytes([escape]))
            try:
                if cut >= 0:
                    if cut:
                        stream.send(data[:cut])
                    return "escape"
                stream.send(data)
            except OSError:
                return "closed"


# ------------------------------------------------------------------ the tunnel


class Tunnel:
    """A listener on 127.0.0.1 (never another address): each connection made to it is
    carried to a /console connection of its own, opened by ``opener``. Errors go to
    ``on_error`` (the viewer sees its connection close)."""

    def __init__(self, opener: Callable[[], Stream], port: int = 0,
                 on_error: Callable[[XsctlError], None] | None = None) -> None:
        if not 0 <= port <= 65535:
            raise UsageError(f"--port: {port} is not a TCP port (1 to 65535)")
        self.opener = opener
        self.on_error = on_error
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind(("127.0.0.1", port))
        except OSError as e:
            self.listener.close()
            raise UsageError(f"cannot listen on 127.0.0.1:{port}: {e.strerror or e}") from e
        self.listener.listen(8)
        self.host, self.port = self.listener.getsockname()[:2]
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.connections = 0  # how many viewer connections were carried
        self.errors: list[XsctlError] = []  # why connections could not be carried
        self._thread = threading.Thread(target=self._accept, daemon=True,
                                        name=f"console tunnel {self.port}")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> Tunnel:
        self._thread.start()
        return self

    def _keep(self, s: socket.socket, add: bool) -> None:
        with self._lock:
            (self._socks.add if add else self._socks.discard)(s)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._keep(client, True)
            threading.Thread(target=self._carry, args=(client,), daemon=True,
                             name=f"console tunnel {self.port} link").start()

    def _carry(self, client: socket.socket) -> None:
        try:
            stream = self.opener()
        except XsctlError as e:
            log.info("console tunnel: %s", e)
            self.errors.append(e)
            if self.on_error is not None:
                self.on_error(e)
            self._close(client)
            return
        self.connections += 1
        self._keep(stream.sock, True)
        try:
            early = stream.early
            stream.early = b""
            if early:
                client.sendall(early)
            back = threading.Thread(target=self._pump, args=(client, stream.sock), daemon=True)
            back.start()
            self._pump(stream.sock, client)
            back.join(timeout=5)
        except OSError:
            pass
        finally:
            stream.close()
            self._keep(stream.sock, False)
            self._close(client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        """Bytes from ``src`` to ``dst`` until either closes; then both are shut."""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def _close(self, s: socket.socket) -> None:
        self._keep(s, False)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> Tunnel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def viewer_command(host: str, port: int, configured: str | None = None) -> list[str] | None:
    """The VNC viewer to start for ``host:port``: the one configured (a command line;
    ``{host}``, ``{port}`` and ``{address}`` are filled in, else the address is
    added as ``host::port``), else the first known one on PATH; None when there is
    none."""
    text = (configured or "").strip() or os.environ.get(VIEWER_ENV, "").strip()
    if text:
        try:
            words = shlex.split(text)
        except ValueError as e:
            raise UsageError(f"the VNC viewer command {text!r} cannot be read: {e}") from e
        if not words:
            return None
        fields = {"host": host, "port": str(port), "address": f"{host}::{port}"}
        if any("{" in w for w in words):
            try:
                return [w.format(**fields) for w in words]
            except (KeyError, IndexError, ValueError) as e:
                raise UsageError(f"the VNC viewer command {text!r} names an unknown field "
                                 f"({e}); use {{host}}, {{port}} or {{address}}") from e
        return [*words, f"{host}::{port}"]
    for name, args in VIEWERS:
        path = shutil.which(name)
        if path:
            return [path, *args(host, port)]
    return None
