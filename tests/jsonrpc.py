"""A minimal, independent JSON-RPC client for tests (as XenCenter speaks it:
v2 at /jsonrpc). Written from xapi's wire-protocol doc, not from xsctl's own code,
so that it checks the simulator rather than agreeing with it."""

from __future__ import annotations

import http.client
import itertools
import json
import ssl
from typing import Any
from urllib.parse import urlsplit


class JsonRpcError(Exception):
    def __init__(self, details: list[str]) -> None:
        super().__init__(details)
        self.details = details


class JsonRpcClient:
    def __init__(self, url: str, version: int = 2, timeout: float = 30.0) -> None:
        u = urlsplit(url)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.tls = u.scheme == "https"
        self.version = version
        self.timeout = timeout
        self.session: str | None = None
        self._ids = itertools.count()
        self._conn: http.client.HTTPConnection | None = None
        self.last_headers: dict[str, str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.tls:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=ctx
                )
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def raw(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        conn = self._connection()
        conn.request(
            "POST", "/jsonrpc", body,
            {"Content-Type": "application/json", **(headers or {})},
        )
        resp = conn.getresponse()
        data = resp.read()
        self.last_headers = {k.lower(): v for k, v in resp.getheaders()}
        assert resp.status == 200, (resp.status, data[:200])
        result: dict[str, Any] = json.loads(data)
        return result

    def call(self, method: str, *params: Any, headers: dict[str, str] | None = None) -> Any:
        rid = next(self._ids)
        payload: dict[str, Any] = {"method": method, "params": list(params), "id": rid}
        if self.version == 2:
            payload["jsonrpc"] = "2.0"
        reply = self.raw(payload, headers)
        assert reply["id"] == rid
        if self.version == 2:
            if "error" in reply:
                err = reply["error"]
                raise JsonRpcError([err["message"], *err["data"]])
            return reply["result"]
        if reply["error"] is not None:
            raise JsonRpcError(reply["error"])
        return reply["result"]

    def login(self, user: str, password: str) -> str:
        self.session = self.call(
            "session.login_with_password", user, password, "1.0", "xsctl-tests-jsonrpc"
        )
        assert self.session is not None
        return self.session

    def __call__(self, method: str, *params: Any) -> Any:
        """Call with the session as the first argument."""
        return self.call(method, self.session, *params)

    def logout(self) -> None:
        if self.session:
            try:
                self.call("session.logout", self.session)
            except Exception:
                pass
            self.session = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
