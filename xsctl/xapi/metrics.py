"""/rrd_updates: fetch and parse (xapi's rrd_updates.ml, protocol.md section 7).

Each host serves the RRDs it holds (itself and its resident VMs), so a pool-wide view
asks every host. A member's certificate is learned through the already trusted
master connection (host.get_server_certificate), never accepted blindly.
"""

from __future__ import annotations

import http.client
import json
import math
import ssl
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from xsctl.xapi.errors import ConnectionFailed, XapiError
from xsctl.xapi.session import Connection
from xsctl.xapi.transport import Endpoint, _PinnedHTTPS, _UnixHTTP
from xsctl.xapi.trust import fingerprint_of


@dataclass
class RrdUpdate:
    start: int = 0
    end: int = 0
    step: int = 0
    legend: list[str] = field(default_factory=list)
    rows: list[tuple[int, list[float]]] = field(default_factory=list)  # newest first

    def latest(self) -> dict[tuple[str, str, str], float]:
        """(kind, uuid, data source) -> the newest value (NaN skipped)."""
        out: dict[tuple[str, str, str], float] = {}
        for _, values in self.rows:
            for name, v in zip(self.legend, values, strict=False):
                parts = name.split(":", 3)
                if len(parts) != 4:
                    continue
                key = (parts[1], parts[2], parts[3])
                if key not in out and not math.isnan(v):
                    out[key] = v
        return out

    def series(self, kind: str, uuid: str, ds: str) -> list[tuple[int, float]]:
        """Oldest first, for graphs."""
        try:
            i = next(i for i, n in enumerate(self.legend) if n.split(":", 3)[1:] == [kind, uuid, ds])
        except StopIteration:
            return []
        return [(t, vals[i]) for t, vals in reversed(self.rows) if i < len(vals)]


def _num(s: Any) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return math.nan


def parse_json(data: bytes) -> RrdUpdate:
    d = json.loads(data)
    meta = d.get("meta", {})
    return RrdUpdate(
        start=int(_num(meta.get("start", 0))),
        end=int(_num(meta.get("end", 0))),
        step=int(_num(meta.get("step", 0))),
        legend=[str(x) for x in meta.get("legend", [])],
        rows=[(int(_num(r.get("t", 0))), [_num(v) for v in r.get("values", [])])
              for r in d.get("data", [])],
    )


def parse_xml(data: bytes) -> RrdUpdate:
    root = ET.fromstring(data)
    meta = root.find("meta")
    u = RrdUpdate()
    if meta is not None:
        u.start = int(_num(meta.findtext("start")))
        u.end = int(_num(meta.findtext("end")))
        u.step = int(_num(meta.findtext("step")))
        u.legend = [e.text or "" for e in meta.findall("legend/entry")]
    for row in root.findall("data/row"):
        t = int(_num(row.findtext("t")))
        u.rows.append((t, [_num(v.text) for v in row.findall("v")]))
    return u


def _trusted_member(conn: Connection, host_ref: str, ep: Endpoint) -> None:
    """Pin a member's certificate from the master's answer to
    host.get_server_certificate, which came over the trusted connection."""
    if ep.scheme != "https" or conn.trust.ca_file:
        return
    from xsctl.xapi.trust import host_key

    if conn.trust.known.get(host_key(ep.host, ep.port)) is not None:
        return
    pem = str(conn.call("host.get_server_certificate", host_ref))
    der = ssl.PEM_cert_to_DER_cert(pem)
    conn.trust.learn(ep.host, ep.port, fingerprint_of(der), "via pool master")


def fetch(
    conn: Connection,
    host_ref: str,
    address: str,
    start: int,
    *,
    interval: int = 5,
    host: bool = True,
    timeout: float = 10.0,
) -> RrdUpdate:
    """GET /rrd_updates from one host (the one at ``address``)."""
    base = conn.endpoint
    if base.scheme == "unix":
        ep = base  # dom0: the local host's own RRDs over the socket
    else:
        ep = base.at(address)
        _trusted_member(conn, host_ref, ep)
    q = urlencode({"start": start, "cf": "AVERAGE", "interval": interval,
                   "host": "true" if host else "false", "json": "true",
                   "session_id": conn.session or ""})
    c: http.client.HTTPConnection
    if ep.scheme == "https":
        c = _PinnedHTTPS(ep, conn.trust, timeout)
    elif ep.scheme == "unix":
        c = _UnixHTTP(ep.host, timeout)
    else:
        c = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)
    try:
        c.request("GET", f"/rrd_updates?{q}", headers={"Accept": "application/json"})
        resp = c.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ConnectionFailed(f"metrics from {address}: {e}") from e
    finally:
        c.close()
    if resp.status in (401, 403):
        raise XapiError("SESSION_INVALID", [conn.session or ""], method="rrd_updates")
    if resp.status != 200:
        raise ConnectionFailed(f"metrics from {address}: HTTP {resp.status}")
    ctype = resp.getheader("Content-Type", "")
    return parse_json(data) if "json" in ctype or data[:1] == b"{" else parse_xml(data)


@dataclass
class HostLoad:
    cpu: float  # 0..1, mean over CPUs
    memory_total: int
    memory_free: int
    at: float


def host_load(update: RrdUpdate, host_uuid: str) -> HostLoad | None:
    latest = update.latest()
    cpus = [v for (k, u, ds), v in latest.items() if k == "host" and u == host_uuid
            and ds.startswith("cpu") and ds[3:].isdigit()]
    avg = latest.get(("host", host_uuid, "cpu_avg"))
    if avg is None and not cpus:
        return None
    cpu = avg if avg is not None else sum(cpus) / len(cpus)
    total = latest.get(("host", host_uuid, "memory_total_kib"), math.nan)
    free = latest.get(("host", host_uuid, "memory_free_kib"), math.nan)
    return HostLoad(
        cpu=max(0.0, min(1.0, cpu)),
        memory_total=0 if math.isnan(total) else int(total * 1024),
        memory_free=0 if math.isnan(free) else int(free * 1024),
        at=time.time(),
    )
