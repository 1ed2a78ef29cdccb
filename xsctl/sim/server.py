"""HTTP(S) and Unix-socket listeners that speak xapi's wire protocols.

One listener per simulated host (each on its own loopback address when it can, as
real pool members have their own IP), plus the dom0 Unix socket on the master.
Endpoints mirror ocaml/xapi/xapi.ml: XML-RPC at ``/`` and ``/RPC2``, JSON-RPC at
``/jsonrpc``, CORS preflight, ``/rrd_updates`` and friends, ``/export``, ``/import``.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import http.server
import json
import socket
import socketserver
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from xsctl.sim import wire
from xsctl.sim.control import ControlError
from xsctl.sim.dispatch import Conn
from xsctl.sim.errors import XapiFailure

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

THUMBPRINT_REQUEST = "x-xenapi-request-host-certificate-thumbprint"
THUMBPRINT_RESPONSE = "x-xenapi-response-host-certificate-thumbprint"

def error_500_body(extra: str) -> bytes:
    """http_svr.ml response_internal_error: the body, with the exception text
    (HTML-escaped) as "Additional information"."""
    return (
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
        "occurred; please wait a while and try again. If the problem persists, please "
        "contact your support representative.<h1> Additional information </h1>"
        + html.escape(extra, quote=True)
        + "</body></html>"
    ).encode("utf-8", "replace")


_FORBIDDEN = (
    b"<html><body><h1>HTTP 403 forbidden</h1>Access to the requested resource is "
    b"forbidden.</body></html>"
)


class DropConnection(Exception):
    """Fault injection: close the socket without answering."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "xapi/simulated"
    sys_version = ""
    timeout = 600
    server: _Server | _UnixServer

    # quiet: a simulator serving thousands of calls should not spam stderr
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix" if isinstance(self.client_address, str) else str(self.client_address[0])

    @property
    def sim(self) -> Simulator:
        return self.server.sim

    def conn_info(self) -> Conn:
        return Conn(
            host=self.server.host_ref,
            unix=self.server.is_unix,
            headers={k.lower(): v for k, v in self.headers.items()},
        )

    # ------------------------------------------------------------ plumbing

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def send(
        self,
        code: int,
        body: bytes,
        ctype: str | None,
        extra: dict[str, str] | None = None,
        *,
        message: str | None = None,
        error: bool = False,
    ) -> None:
        """Answer as xapi's HTTP server writes a response (http.ml Response,
        http_svr.ml): status line in the request's HTTP version, ``content-length``
        first, then for a normal reply (response_of_request) ``connection`` and
        ``cache-control`` before the handler's headers, for an error page
        (response_error_html) ``content-type``, ``connection: close`` and
        ``cache-control``. No Server or Date header. Headers and body go out in one
        write."""
        if error:
            self.close_connection = True
        version = "1.0" if self.request_version == "HTTP/1.0" else "1.1"
        reason = message or self.responses.get(code, ("",))[0]
        lines = [f"HTTP/{version} {code} {reason}", f"content-length: {len(body)}"]
        if error:
            lines += [f"content-type: {ctype or 'text/html'}", "connection: close",
                      "cache-control: no-cache, no-store"]
        else:
            lines += [f"connection: {'close' if self.close_connection else 'keep-alive'}",
                      "cache-control: no-cache, no-store"]
            if ctype is not None:
                lines.append(f"content-type: {ctype}")
        lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body if self.command != "HEAD" else head)

    def fault_gate(self) -> None:
        faults = self.sim.faults
        if faults.down:
            raise DropConnection
        if faults.take_drop():
            raise DropConnection
        if faults.latency > 0:
            time.sleep(faults.latency)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(Exception):
            super().finish()

    # ------------------------------------------------------------ verbs

    def do_OPTIONS(self) -> None:
        """http_svr.ml respond_to_options (the CORS preflight)."""
        requested = self.headers.get("Access-Control-Request-Headers")
        self.send(
            200,
            b"",
            None,
            {
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Headers": (
                    f"{requested}, X-Requested-With" if requested else "X-Requested-With"
                ),
                "Access-Control-Allow-Methods": "PUT",
            },
        )

    def error_500(self, exc: Exception) -> None:
        """What xapi's HTTP server answers when a handler raises: 500 and close."""
        self.send(500, error_500_body(str(exc)), "text/html", message="Internal Error",
                  error=True)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.read_body()
        if path == "/sim/control":
            self.control(body)
            return
        self.fault_gate()
        # handlers are found by longest prefix (http_svr.ml Radix_tree.longest_prefix):
        # /jsonrpc... is JSON-RPC; /, /RPC2 and anything else, /json included, XML-RPC
        if path.startswith("/jsonrpc"):
            if self.sim.jsonrpc:
                self.jsonrpc(body)
            else:  # a host without JSON-RPC (for clients' fallback tests)
                self.send(404, b"<html><body><h1>HTTP 404 not found</h1></body></html>",
                          "text/html", message="Not Found", error=True)
        elif path.startswith("/"):
            self.xmlrpc(body)
        else:
            self.send(403, _FORBIDDEN, "text/html", message="Forbidden", error=True)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.fault_gate()
        query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        handler = self.sim.http_get.get(parts.path)
        if handler is not None:
            handler(self, query)
        elif parts.path == "/":
            self.send(200, b"<html><body>xapi</body></html>", "text/html")
        else:
            self.send(404, b"<html><body><h1>HTTP 404 not found</h1></body></html>", "text/html")

    def do_CONNECT(self) -> None:
        """``CONNECT /console?...`` (http_svr.ml: a path, not host:port); a path
        no handler serves is refused as xapi's default callback does (403)."""
        parts = urlsplit(self.path)
        self.fault_gate()
        query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        handler = self.sim.http_connect.get(parts.path)
        if handler is not None:
            handler(self, query)
        else:
            self.send(403, _FORBIDDEN, "text/html", message="Forbidden", error=True)

    def do_PUT(self) -> None:
        parts = urlsplit(self.path)
        self.fault_gate()
        query = {k: v for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        handler = self.sim.http_put.get(parts.path)
        if handler is not None:
            handler(self, query)
        else:
            self.send(404, b"<html><body><h1>HTTP 404 not found</h1></body></html>", "text/html")

    # ------------------------------------------------------------ RPC

    def thumbprint_header(self, code: str | None) -> dict[str, str]:
        """api_server.ml create_thumbprint_header: only on HOST_IS_SLAVE."""
        want = self.headers.get(THUMBPRINT_REQUEST)
        if code != "HOST_IS_SLAVE" or want not in ("sha-256:master", "sha-1:master"):
            return {}
        fp = self.sim.master_thumbprint("sha1" if want == "sha-1:master" else "sha256")
        return {THUMBPRINT_RESPONSE: fp} if fp else {}

    def xmlrpc(self, body: bytes) -> None:
        try:
            method, params = wire.parse_xml_request(body)
        except wire.RequestError as e:
            self.error_500(e)
            return
        code: str | None = None
        try:
            result = self.sim.dispatcher.call(method, params, self.conn_info())
            if method == "system.listMethods":  # api_server.ml: no Status envelope
                text = wire.xml_list_methods(result)
            else:
                text = wire.xml_success(result)
        except XapiFailure as f:
            code = f.code
            text = wire.xml_failure(f.code, f.params)
        self.send(
            200,
            wire.encode_body(text),
            "text/xml",
            {
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Headers": "X-Requested-With",
                **self.thumbprint_header(code),
            },
        )

    def jsonrpc(self, body: bytes) -> None:
        try:
            version, id_, method, params = wire.parse_json_request(body)
        except wire.RequestError as e:
            self.error_500(e)
            return
        code: str | None = None
        try:
            result = self.sim.dispatcher.call(method, params, self.conn_info())
            text = wire.json_success(result, id_, version)
        except XapiFailure as f:
            code = f.code
            text = wire.json_failure(f.code, f.params, id_, version)
        self.send(
            200,
            wire.encode_body(text),
            "application/json",
            {
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Headers": "X-Requested-With",
                **self.thumbprint_header(code),
            },
        )

    def control(self, body: bytes) -> None:
        """Fault injection and introspection for tests; not part of xapi's API. The
        request's own connection is left out of the drops that ``restart`` and
        ``master`` make, so it gets its answer, and is closed after it."""
        self.close_connection = True
        self.server.track(self.connection, False)
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            req = None
        if not isinstance(req, dict):
            self._control_reply(400, {"error": "the request must be a JSON object"})
            return
        if not isinstance(req.get("token"), str) or not hmac.compare_digest(
                req["token"].encode(), self.sim.control_token.encode()):
            self._control_reply(403, {"error": "bad token"})
            return
        try:
            result = self.sim.control(req.get("action", ""), req.get("args", {}))
        except ControlError as e:
            self._control_reply(400, {"error": str(e)})
            return
        self._control_reply(200, {"result": result})

    def _control_reply(self, code: int, doc: dict[str, Any]) -> None:
        self.send(code, json.dumps(doc).encode(), "application/json")


class _Tracking:
    """Connection tracking shared by the TCP and Unix servers (for restart/drop)."""

    sim: Simulator
    host_ref: str
    is_unix: bool

    def _init_tracking(self) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def drop_all(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class _Server(_Tracking, http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        sim: Simulator,
        host_ref: str,
        addr: tuple[str, int],
        tls: ssl.SSLContext | None,
    ) -> None:
        self.sim = sim
        self.host_ref = host_ref
        self.is_unix = False
        self.tls = tls
        self._init_tracking()
        super().__init__(addr, Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
        # algorithm and the client's delayed ACK add 40 ms to every reply.
        with contextlib.suppress(OSError):
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The TLS handshake runs in the connection's own thread, not in accept().
        if self.tls is not None:
            request.settimeout(30)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                with contextlib.suppress(OSError):
                    request.close()
                return
            request.settimeout(None)
        Handler(request, client_address, self)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class _UnixServer(_Tracking, socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, sim: Simulator, host_ref: str, path: str) -> None:
        self.sim = sim
        self.host_ref = host_ref
        self.is_unix = True
        self._init_tracking()
        super().__init__(path, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class Listener:
    """A running server and its thread."""

    def __init__(self, server: _Server | _UnixServer) -> None:
        self.server = server
        self.thread = threading.Thread(
            # shutdown() waits for the next poll: a short one makes stop() fast
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"sim listener {server.server_address!r}",
        )

    @property
    def port(self) -> int:
        addr = self.server.server_address
        assert isinstance(addr, tuple)
        port: int = addr[1]
        return port

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.drop_all()
        self.server.server_close()
        self.thread.join(timeout=5)


def make_tcp(
    sim: Simulator, host_ref: str, addr: tuple[str, int], tls: ssl.SSLContext | None
) -> Listener:
    return Listener(_Server(sim, host_ref, addr, tls))


def make_unix(sim: Simulator, host_ref: str, path: str) -> Listener:
    return Listener(_UnixServer(sim, host_ref, path))
