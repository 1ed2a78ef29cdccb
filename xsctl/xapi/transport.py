"""Transports: JSON-RPC (preferred: much cheaper to parse for big pools) and XML-RPC
through the official ``XenAPI`` package (the fallback for hosts that do not answer
JSON-RPC correctly). Both reach xapi over TLS (pinned or CA-verified, see trust.py),
plain HTTP, or xapi's Unix socket in dom0.

Every thread gets its own HTTP connection (a XenAPI ``Session`` holds one and must
not be shared across threads); the xapi session ref is shared by all of them. Every
socket has a timeout, and ``close()`` interrupts calls blocked in other threads.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import logging
import socket
import ssl
import threading
import xmlrpc.client
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import XenAPI

from xsctl import __version__
from xsctl.xapi.errors import ConnectionDropped, ConnectionFailed, OutcomeUnknown, XapiError
from xsctl.xapi.trust import TrustPolicy
from xsctl.xapi.urls import format_url, parse_url

log = logging.getLogger(__name__)
T = TypeVar("T")

THUMBPRINT_REQUEST = "x-xenapi-request-host-certificate-thumbprint"
THUMBPRINT_RESPONSE = "x-xenapi-response-host-certificate-thumbprint"
DEFAULT_TIMEOUT = 30.0
USER_AGENT = f"xsctl/{__version__}"

# Calls that only read: safe to resend when a reused keep-alive connection turns out
# to have been closed by the server before it answered.
_READ_PREFIXES = ("get_", "get_all", "get_record", "get_by_")


def is_read(method: str) -> bool:
    cls, _, msg = method.removeprefix("Async.").partition(".")
    if cls in ("event",) and msg in ("from", "next", "register", "unregister", "get_current_id", "inject"):
        return True
    if cls == "session" and msg in ("login_with_password", "logout", "local_logout",
                                    "slave_local_login_with_password", "get_record", "get_uuid"):
        return True
    if cls == "system":
        return True
    return msg.startswith(_READ_PREFIXES) or msg in (
        "assert_can_boot_here", "get_possible_hosts", "compute_free_memory",
        "compute_memory_overhead", "get_allowed_VBD_devices", "get_allowed_VIF_devices",
        "get_since", "get", "probe", "probe_ext", "assert_attachable", "get_servertime",
        "get_server_localtime", "get_vms_which_prevent_evacuation", "get_data_sources",
        "query_data_source", "get_supported_types",
    )


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # https, http, unix
    host: str  # host name or address; for unix, the socket path
    port: int

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        scheme, host, port = parse_url(url)
        return cls(scheme, host, port)

    @property
    def url(self) -> str:
        return format_url(self.scheme, self.host, self.port)

    def at(self, address: str) -> Endpoint:
        """The same scheme and port on another pool member (HOST_IS_SLAVE redirect)."""
        return replace(self, host=address)


class ProtocolMismatch(ConnectionFailed):
    """The host answered, but not in the protocol we spoke (e.g. no JSON-RPC)."""


class CallAborted(ConnectionFailed):
    """The call was interrupted on purpose (abort()): not a fault to recover from."""


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, ep: Endpoint, trust: TrustPolicy, timeout: float) -> None:
        super().__init__(ep.host, ep.port, timeout=timeout, context=trust.context())
        self._ep = ep
        self._trust = trust
        self.fingerprint: str | None = None

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        try:
            self.fingerprint = self._trust.verify(
                self._ep.host, self._ep.port, self.sock.getpeercert(binary_form=True)
            )
        except BaseException:
            self.sock.close()
            self.sock = None
            raise


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self._path)
        except BaseException:
            s.close()
            raise
        self.sock = s


def connect_http(ep: Endpoint, trust: TrustPolicy, timeout: float) -> http.client.HTTPConnection:
    """An HTTP connection to ``ep`` under the connection's trust (the certificate pin
    or CA is checked when it connects, before a byte is sent): the one factory for
    RPC calls and for xapi's other HTTP handlers (/rrd_updates, /export, ...)."""
    if ep.scheme == "https":
        return _PinnedHTTPS(ep, trust, timeout)
    if ep.scheme == "unix":
        return _UnixHTTP(ep.host, timeout)
    return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)


class Transport(ABC):
    """One protocol to one endpoint, with a connection per thread."""

    name = ""

    def __init__(self, ep: Endpoint, trust: TrustPolicy, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.ep = ep
        self.trust = trust
        self.timeout = timeout
        self._local = threading.local()
        self._all: set[http.client.HTTPConnection] = set()
        self._owner_of: dict[http.client.HTTPConnection, int] = {}
        self._aborted: set[int] = set()  # threads whose calls were interrupted
        self._all_lock = threading.Lock()
        self._closed = False

    # --- connections

    def _new_connection(self) -> http.client.HTTPConnection:
        if self._closed:
            raise ConnectionFailed(f"connection to {self.ep.url} is closed")
        t = float(getattr(self._local, "timeout", self.timeout))
        conn = connect_http(self.ep, self.trust, t)
        with self._all_lock:
            self._all.add(conn)
            self._owner_of[conn] = threading.get_ident()
        return conn

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._all_lock:
            self._all.discard(conn)
            self._owner_of.pop(conn, None)
        with contextlib.suppress(Exception):
            conn.close()

    @property
    def fingerprint(self) -> str | None:
        with self._all_lock:
            for c in self._all:
                fp = getattr(c, "fingerprint", None)
                if fp:
                    return str(fp)
        return None

    def close(self) -> None:
        """Close every thread's connection, interrupting calls blocked in them."""
        self._closed = True
        self.abort()

    def abort(self, thread: int | None = None) -> None:
        """Interrupt calls in progress, of one thread or of all (their threads see a
        ConnectionFailed)."""
        with self._all_lock:
            conns = [c for c in self._all if thread is None or self._owner_of.get(c) == thread]
            for c in conns:
                self._all.discard(c)
                owner = self._owner_of.pop(c, None)
                if owner is not None:
                    self._aborted.add(owner)
        for c in conns:
            sock = c.sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                c.close()

    def _was_aborted(self) -> bool:
        me = threading.get_ident()
        with self._all_lock:
            if me in self._aborted:
                self._aborted.discard(me)
                return True
        return False

    def _clear_abort(self) -> None:
        with self._all_lock:
            self._aborted.discard(threading.get_ident())

    @property
    def last_headers(self) -> dict[str, str]:
        h: dict[str, str] = getattr(self._local, "headers", {})
        return h

    def _retrying(self, method: str, timeout: float | None,
                  attempt: Callable[[float], tuple[http.client.HTTPConnection | None, bool]],
                  send: Callable[[], T]) -> T:
        """The one retry rule of both protocols: ``attempt(t)`` readies this thread's
        connection (returning it and whether it was reused), ``send()`` makes the call.
        A kept-alive connection the server had closed is retried once, for a call that
        only reads; a call that changes state is never sent twice (OutcomeUnknown).
        An interrupted call (abort(), Ctrl-C mid-reply) leaves its connection dropped,
        so the clean-up calls that follow (logout) get a fresh one."""
        t = timeout or self.timeout
        self._local.timeout = t
        self._clear_abort()
        for n in (1, 2):
            conn, reused = attempt(t)
            try:
                return send()
            except (OSError, http.client.HTTPException) as e:
                self._forget(conn)
                if self._was_aborted():
                    raise CallAborted(f"{method} was interrupted") from e
                stale = isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                       ConnectionResetError))
                if n == 1 and reused and stale and is_read(method):
                    continue
                raise _connection_error(self.ep, method, e) from e
            except BaseException:
                self._forget(conn)
                raise
        raise AssertionError("unreachable")

    @abstractmethod
    def _forget(self, conn: http.client.HTTPConnection | None) -> None:
        """Drop this thread's connection (and what holds it)."""

    @abstractmethod
    def call(self, method: str, params: list[Any], timeout: float | None = None) -> Any:
        """Send one call; returns Value, raises XapiError or ConnectionFailed."""


class JsonRpcTransport(Transport):
    """JSON-RPC 2.0 at /jsonrpc, as XenCenter speaks it."""

    name = "JSON-RPC"

    def __init__(self, ep: Endpoint, trust: TrustPolicy, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(ep, trust, timeout)
        self._ids = itertools.count(1)

    def call(self, method: str, params: list[Any], timeout: float | None = None) -> Any:
        rid = next(self._ids)
        body = json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": params, "id": rid},
            separators=(",", ":"),
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            THUMBPRINT_REQUEST: "sha-256:master",
        }
        status, data = self._post("/jsonrpc", body, headers, method, timeout)
        if status != 200:
            raise ProtocolMismatch(f"{self.ep.url} answered HTTP {status} to JSON-RPC")
        try:
            reply = json.loads(data)
        except ValueError as e:
            raise ProtocolMismatch(f"{self.ep.url} sent a reply that is not JSON") from e
        if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
            raise ProtocolMismatch(f"{self.ep.url} sent a reply that is not JSON-RPC")
        err = reply.get("error")
        if err:
            if isinstance(err, dict):
                raise XapiError(str(err.get("message", "")), err.get("data") or [], method=method)
            if isinstance(err, list) and err:
                raise XapiError(str(err[0]), err[1:], method=method)
            raise ProtocolMismatch(f"{self.ep.url} sent a malformed JSON-RPC error")
        return reply.get("result")

    def _post(
        self, path: str, body: bytes, headers: dict[str, str], method: str, timeout: float | None
    ) -> tuple[int, bytes]:
        box: list[http.client.HTTPConnection] = []

        def attempt(t: float) -> tuple[http.client.HTTPConnection | None, bool]:
            conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
            reused = conn is not None and conn.sock is not None
            if conn is None or conn not in self._all:
                conn = self._local.conn = self._new_connection()
            conn.timeout = t
            box[:] = [conn]
            return conn, reused

        def send() -> tuple[int, bytes]:
            conn = box[0]
            if conn.sock is not None:
                conn.sock.settimeout(conn.timeout)
            try:
                conn.request("POST", path, body, headers)
            except ssl.CertificateError as e:
                raise ConnectionFailed(f"TLS verification of {self.ep.url} failed: {e}") from e
            resp = conn.getresponse()
            data = resp.read()
            self._local.headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self._forget(conn)
            return resp.status, data

        return self._retrying(method, timeout, attempt, send)

    def _forget(self, conn: http.client.HTTPConnection | None) -> None:
        if conn is not None:
            self._drop(conn)
        self._local.conn = None


def _connection_error(ep: Endpoint, method: str, e: BaseException) -> ConnectionFailed:
    if isinstance(e, TimeoutError | socket.timeout):
        if is_read(method):
            return ConnectionFailed(f"{ep.url} did not answer {method} in time")
        return OutcomeUnknown(f"{ep.url} did not answer {method} in time; it may or may "
                              "not have run")
    if isinstance(e, ssl.SSLError):
        return ConnectionFailed(f"TLS with {ep.url} failed: {e.reason or e}")
    if isinstance(e, ConnectionRefusedError):
        return ConnectionFailed(f"{ep.url} refused the connection (is xapi running?)")
    if isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)):
        if is_read(method):  # nothing ran: a login, for one, is sent again once
            return ConnectionDropped(f"the connection to {ep.url} dropped during {method}")
        return OutcomeUnknown(
            f"the connection to {ep.url} dropped during {method}; it may or may not have run")
    return ConnectionFailed(f"cannot talk to {ep.url}: {e}")


class _XmlRpcHttp(xmlrpc.client.Transport):
    """Hands the XenAPI package our (pinned, timed-out) connection for its thread and
    records the response headers."""

    def __init__(self, owner: XmlRpcTransport) -> None:
        super().__init__()
        self._owner = owner
        self._extra_headers = [
            ("User-Agent", USER_AGENT),
            (THUMBPRINT_REQUEST, "sha-256:master"),
        ]

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection and self._connection[1] is not None:
            conn = self._connection[1]
            if conn.sock is not None or conn in self._owner._all:
                return conn
        conn = self._owner._new_connection()
        self._connection = (host, conn)
        return conn

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        # xmlrpc.client resends a call once when a kept-alive connection was closed,
        # even a call that changes state; XmlRpcTransport.call decides instead.
        return self.single_request(host, handler, request_body, verbose)

    def parse_response(self, response: http.client.HTTPResponse) -> Any:
        self._owner._local.headers = {k.lower(): v for k, v in response.getheaders()}
        return super().parse_response(response)


class XmlRpcTransport(Transport):
    """XML-RPC through the official XenAPI package (one ``XenAPI.Session`` per thread)."""

    name = "XML-RPC"

    def _session(self) -> Any:
        s = getattr(self._local, "xs", None)
        if s is None:
            uri = "http://localhost/" if self.ep.scheme == "unix" else self.ep.url + "/"
            s = XenAPI.Session(uri, transport=_XmlRpcHttp(self))
            self._local.xs = s
        return s

    def call(self, method: str, params: list[Any], timeout: float | None = None) -> Any:
        def attempt(t: float) -> tuple[http.client.HTTPConnection | None, bool]:
            http_t: _XmlRpcHttp = self._session().transport
            conn = http_t._connection[1] if http_t._connection else None
            reused = conn is not None and conn.sock is not None
            if conn is not None:
                conn.timeout = t
                if conn.sock is not None:
                    conn.sock.settimeout(t)
            return conn, reused

        def send() -> Any:
            try:
                return getattr(self._session(), method)(*params)
            except (ConnectionFailed, OSError, http.client.HTTPException):
                raise
            except xmlrpc.client.ProtocolError as e:
                self._forget(None)
                raise ProtocolMismatch(f"{self.ep.url} answered HTTP {e.errcode} to XML-RPC") from e
            except Exception as e:  # expat errors and the like: not xapi speaking
                self._forget(None)
                raise ProtocolMismatch(f"{self.ep.url} sent an unreadable XML-RPC reply") from e

        return _parse_xml_result(self._retrying(method, timeout, attempt, send), method, self.ep)

    def _forget(self, conn: http.client.HTTPConnection | None) -> None:
        if conn is not None:
            self._drop(conn)
        self._local.xs = None


def _parse_xml_result(raw: Any, method: str, ep: Endpoint) -> Any:
    if method == "system.listMethods":
        return raw
    if not isinstance(raw, dict) or "Status" not in raw:
        raise ProtocolMismatch(f"{ep.url} sent an XML-RPC reply without Status")
    if raw["Status"] == "Success":
        return _plain(raw.get("Value", ""))
    desc = raw.get("ErrorDescription") or ["INTERNAL_ERROR", "no ErrorDescription"]
    raise XapiError(str(desc[0]), [str(x) for x in desc[1:]], method=method)


def _plain(v: Any) -> Any:
    """XML-RPC values as plain Python (xmlrpc DateTime -> its string form)."""
    if isinstance(v, xmlrpc.client.DateTime):
        return v.value
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def make_transport(kind: str, ep: Endpoint, trust: TrustPolicy, timeout: float) -> Transport:
    if kind == "json":
        return JsonRpcTransport(ep, trust, timeout)
    if kind == "xml":
        return XmlRpcTransport(ep, trust, timeout)
    raise ValueError(kind)
