"""Raw access to the simulator's wire, for tests where bytes matter.

``RawHttp`` speaks HTTP/1.1 over TLS with http.client (one kept-alive connection);
``Wire`` calls any method with any parameters over XML-RPC (CPython's xmlrpc.client,
as the XenAPI package does, without XenAPI's transparent re-login) or JSON-RPC 1.0/2.0
(tests/jsonrpc.py), and returns the value or raises :class:`Failed` with the
ErrorDescription, so one test can run against all three encodings.
"""

from __future__ import annotations

import http.client
import json
import ssl
import xmlrpc.client
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.jsonrpc import JsonRpcClient, JsonRpcError
from xsctl.sim import Simulator

PROTOCOLS = ("xmlrpc", "jsonrpc-v1", "jsonrpc-v2")


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class RawHttp:
    """One HTTP/1.1 connection to a simulated host."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        u = urlsplit(url)
        host, port = u.hostname or "127.0.0.1", u.port or 443
        if u.scheme == "https":
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=unverified()
            )
        else:
            self.conn = http.client.HTTPConnection(host, port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        self.conn.request(method, path, body, headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.reason, {k.lower(): v for k, v in resp.getheaders()}, data)

    def post_xml(self, method: str, *params: Any, path: str = "/",
                 headers: dict[str, str] | None = None) -> Reply:
        body = xmlrpc.client.dumps(tuple(params), method, allow_none=True).encode()
        return self.request("POST", path, body, {"Content-Type": "text/xml", **(headers or {})})

    def post_json(self, payload: dict[str, Any] | bytes, path: str = "/jsonrpc",
                  headers: dict[str, str] | None = None) -> Reply:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.request(
            "POST", path, body, {"Content-Type": "application/json", **(headers or {})}
        )

    @property
    def sock(self) -> Any:
        return self.conn.sock

    def close(self) -> None:
        self.conn.close()


class Failed(Exception):
    def __init__(self, details: list[str]) -> None:
        super().__init__(details)
        self.details = details


class Wire:
    """Call methods exactly as given (no session added) over one protocol."""

    def __init__(self, sim: Simulator, protocol: str, url: str | None = None) -> None:
        self.protocol = protocol
        self.url = url or sim.url
        if protocol == "xmlrpc":
            self.proxy = xmlrpc.client.ServerProxy(
                self.url + "/", allow_none=True, context=unverified()
            )
        else:
            self.json = JsonRpcClient(self.url, version=2 if protocol == "jsonrpc-v2" else 1)

    def call(self, method: str, *params: Any) -> Any:
        if self.protocol == "xmlrpc":
            reply = getattr(self.proxy, method)(*params)
            if reply["Status"] == "Success":
                return reply["Value"]
            raise Failed(list(reply["ErrorDescription"]))
        try:
            return self.json.call(method, *params)
        except JsonRpcError as e:
            raise Failed(list(e.details)) from None

    def fails(self, method: str, *params: Any) -> list[str]:
        """The ErrorDescription of a call that must fail."""
        try:
            value = self.call(method, *params)
        except Failed as f:
            return f.details
        raise AssertionError(f"{method} succeeded with {value!r}")

    def login(self, sim: Simulator) -> str:
        ref: str = self.call("session.login_with_password", sim.user, sim.password, "1.0",
                             "xsctl-tests-wire")
        return ref

    def close(self) -> None:
        if self.protocol == "xmlrpc":
            self.proxy("close")()
        else:
            self.json.close()
