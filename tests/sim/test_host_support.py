"""Helpers for the host, pool, network, message, RRD and transfer tests (no tests here).

Plain ``http.client`` over TLS for the HTTP handlers, so that the exact status line,
headers and body xapi would send can be checked.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from dataclasses import dataclass
from typing import Any

import XenAPI

from tests.jsonrpc import JsonRpcClient, JsonRpcError
from xsctl.sim import Simulator


def fail(call: Any, *args: Any) -> list[str]:
    """Run an XenAPI or JSON-RPC call that must fail; its ErrorDescription."""
    try:
        call(*args)
    except XenAPI.Failure as e:
        return [str(d) for d in e.details]
    except JsonRpcError as e:
        return [str(d) for d in e.details]
    raise AssertionError(f"{call} did not fail")


def jfail(j: JsonRpcClient, method: str, *args: Any) -> list[str]:
    return fail(j, method, *args)


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes


def request(sim: Simulator, method: str, path: str, *, address: str | None = None,
            body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
    """One request on a fresh TLS connection to a host's listener."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection(address or "127.0.0.1", sim.port, context=ctx, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        raw = resp.getheaders()
        return Reply(resp.status, resp.reason, {k.lower(): v for k, v in raw}, raw, data)
    finally:
        conn.close()


def get(sim: Simulator, path: str, **kw: Any) -> Reply:
    return request(sim, "GET", path, **kw)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def host_by_name(x: Any, name: str) -> str:
    refs = x.xenapi.host.get_by_name_label(name)
    assert len(refs) == 1
    return str(refs[0])


def hosts_by_address(x: Any) -> list[tuple[str, dict[str, Any]]]:
    return sorted(x.xenapi.host.get_all_records().items(), key=lambda kv: kv[1]["address"])
