"""The metrics feed: xapi's /rrd_updates (rrd_updates.ml, protocol.md section 7),
shaped like the cache. One thread per connection fetches, once per interval, one
request per host, and only while something subscribes; each subscriber says what it
shows, so that a view of the hosts does not download the figures of 10,000 VMs.

Each host serves the RRDs it holds (itself and its resident VMs), so a pool-wide view
asks every host. A member's certificate is learned through the already trusted
master connection (host.get_server_certificate), never accepted blindly.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import ConnectionFailed, XapiError, XsctlError
from xsctl.xapi.rrd import RrdParseError, RrdUpdate, parse_updates
from xsctl.xapi.session import Connection
from xsctl.xapi.transport import connect_http
from xsctl.xapi.trust import fingerprint_of, host_key

log = logging.getLogger(__name__)

INTERVAL = 5.0  # seconds: the step of xapi's finest archive (last 10 minutes)


def trust_member(conn: Connection, host_ref: str, address: str) -> None:
    """Pin a member's certificate from the master's answer to
    host.get_server_certificate, which came over the trusted connection."""
    ep = conn.endpoint.at(address)
    if ep.scheme != "https" or conn.trust.ca_file:
        return
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
    vm_uuids: Iterable[str] | None = None,
    timeout: float = 10.0,
) -> RrdUpdate:
    """GET /rrd_updates from one host (the one at ``address``). ``vm_uuids`` limits
    the VMs (xapi's repeatable vm_uuid filter); None asks for all its VMs."""
    conn.check_trusted()  # a changed certificate ended the connection: no new socket
    base = conn.endpoint
    if base.scheme == "unix":
        ep = base  # dom0: the local host's own RRDs over the socket
    else:
        ep = base.at(address)
        trust_member(conn, host_ref, address)
    query: list[tuple[str, str]] = [
        ("start", str(start)), ("cf", "AVERAGE"), ("interval", str(interval)),
        ("host", "true" if host else "false"), ("json", "true"),
        ("session_id", conn.session or "")]
    query += [("vm_uuid", u) for u in (vm_uuids or ())]
    c = connect_http(ep, conn.trust, timeout)
    try:
        c.request("GET", f"/rrd_updates?{urlencode(query)}",
                  headers={"Accept": "application/json"})
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
    try:
        return parse_updates(data, ctype)
    except RrdParseError as e:
        raise ConnectionFailed(f"metrics from {address}: unreadable reply ({e})") from e


@dataclass(frozen=True)
class HostLoad:
    cpu: float  # 0..1, mean over CPUs
    memory_total: int
    memory_free: int

    @property
    def memory_used(self) -> int:
        return max(0, self.memory_total - self.memory_free)


@dataclass(frozen=True)
class Recent:
    """One object's rows in a round's answer: their times and each data source's
    values, oldest first."""

    times: list[int]
    series: dict[str, list[float]]


@dataclass(frozen=True)
class MetricsUpdate:
    """One round: the newest value of each data source, per object."""

    at: float
    values: dict[tuple[str, str], dict[str, float]]  # ("host"|"vm", uuid) -> {ds: v}
    missing: dict[str, str] = field(default_factory=dict)  # host ref -> why none came
    times: dict[str, int] = field(default_factory=dict)  # host ref -> its newest row's time
    # ("host"|"vm", uuid) -> every row of the answers, not only the newest: a trail
    # (perf.CpuTrail) takes them all, the back history of a first round too
    recent: dict[tuple[str, str], Recent] = field(default_factory=dict)

    def of(self, kind: str, uuid: str) -> dict[str, float]:
        return self.values.get((kind, uuid), {})

    def host_load(self, uuid: str) -> HostLoad | None:
        ds = self.of("host", uuid)
        cpus = [v for k, v in ds.items() if k.startswith("cpu") and k[3:].isdigit()]
        cpu = ds.get("cpu_avg", sum(cpus) / len(cpus) if cpus else None)
        if cpu is None:
            return None
        total = ds.get("memory_total_kib", math.nan)
        free = ds.get("memory_free_kib", math.nan)
        return HostLoad(
            cpu=max(0.0, min(1.0, cpu)),
            memory_total=0 if math.isnan(total) else int(total * 1024),
            memory_free=0 if math.isnan(free) else int(free * 1024),
        )


def merge(updates: Iterable[RrdUpdate], at: float) -> MetricsUpdate:
    values: dict[tuple[str, str], dict[str, float]] = {}
    recent: dict[tuple[str, str], Recent] = {}
    for u in updates:
        for (kind, uuid, ds), v in u.latest().items():
            values.setdefault((kind, uuid), {})[ds] = v
        times = u.times()
        for key, series in u.series().items():
            recent[key] = Recent(times, series)
    return MetricsUpdate(at, values, recent=recent)


@dataclass(frozen=True)
class Interest:
    """What a subscriber shows: the hosts' own series, and which VMs' (an empty set:
    none; None: every VM). ``history``: the seconds of the past it wants of an object
    the feed has not asked a host for yet (a sparkline's span), brought by that
    host's next request instead of the last few rows."""

    hosts: bool = True
    vms: frozenset[str] | None = frozenset()
    history: int = 0

    @property
    def empty(self) -> bool:
        return not self.hosts and self.vms is not None and not self.vms


Subscriber = Callable[[MetricsUpdate], None]


class Subscription:
    """What :meth:`MetricsFeed.subscribe` returns: called, it ends the subscription;
    :meth:`want` changes what it shows."""

    def __init__(self, feed: MetricsFeed, sid: int) -> None:
        self._feed = feed
        self._sid = sid

    def __call__(self) -> None:
        self._feed._unsubscribe(self._sid)

    def want(self, interest: Interest) -> None:
        """Another interest (the rows a table shows after a scroll), from the next
        round on: no request is made for it now, so that scrolling through a big pool
        still costs one request per host per interval. Only an interest that was
        empty (nothing on screen yet) is fetched at once, as a new subscriber is."""
        self._feed._want(self._sid, interest)


class MetricsFeed:
    """/rrd_updates for the pool, fetched by one thread while anyone subscribes."""

    def __init__(self, conn: Connection, cache: Cache, interval: float = INTERVAL) -> None:
        self.conn = conn
        self.cache = cache
        self.interval = interval
        self._subs: dict[int, tuple[Subscriber, Interest]] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since: dict[str, int] = {}  # host ref -> the end of its last answer
        # host ref -> what its last answer held (the host's series, the VMs asked for)
        self._asked: dict[str, tuple[bool, frozenset[str] | None]] = {}
        self.requests = 0  # /rrd_updates requests made (the benchmark counts them)
        self.turns = 0  # the thread's turns, with a request or without (tests count them)
        self.last: MetricsUpdate | None = None

    def subscribe(self, fn: Subscriber, interest: Interest | None = None) -> Subscription:
        """Call ``fn`` with each round (from the feed's thread) until the returned
        subscription is called. The first subscriber starts the thread. A round in
        which no subscriber wants anything makes no request and calls no one."""
        with self._lock:
            self._ids += 1
            sid = self._ids
            self._subs[sid] = (fn, interest or Interest())
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="xsctl metrics",
                                                daemon=True)
                self._thread.start()
            else:
                self._wake.set()  # a new interest: fetch now, not at the next turn
        return Subscription(self, sid)

    def _unsubscribe(self, sid: int) -> None:
        with self._lock:
            self._subs.pop(sid, None)
            if not self._subs:
                self._wake.set()

    def _want(self, sid: int, interest: Interest) -> None:
        with self._lock:
            if sid in self._subs:
                fn, before = self._subs[sid]
                self._subs[sid] = (fn, interest)
                if before.empty and not interest.empty:
                    # shown at last (a table laid out after it subscribed): fetch now
                    self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None and t.is_alive() and t is not threading.current_thread():
            t.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _wanted(self) -> tuple[Interest, list[Subscriber]]:
        with self._lock:
            subs = [(fn, i) for fn, i in self._subs.values() if not i.empty]
            anyone = bool(self._subs)
        hosts = any(i.hosts for _, i in subs)
        vms: frozenset[str] | None = frozenset()
        for _, i in subs:
            if i.vms is None:
                vms = None
                break
            assert vms is not None
            vms = vms | i.vms
        history = max((i.history for _, i in subs), default=0)
        if not subs and anyone:
            return Interest(False, frozenset()), []
        return Interest(hosts, vms, history), [fn for fn, _ in subs]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.turns += 1
            # cleared before the subscriptions are read, not after the wait: a wake
            # (a new subscriber, an interest no longer empty) that comes while this
            # turn runs ends the next wait at once instead of being lost
            self._wake.clear()
            want, subs = self._wanted()
            if not subs:
                with self._lock:
                    if not self._subs:
                        # the next subscriber starts afresh: a start kept from long
                        # ago would select a coarser archive (rrd.ml find_best_rras)
                        self._since.clear()
                        self._asked.clear()
                        self._thread = None
                        return
                # subscribed, but nothing shown (a table whose rows on screen are all
                # halted VMs): no request this turn
                self._wake.wait(self.interval)
                continue
            update = self.round(want.hosts, want.vms, want.history)
            self.last = update
            for fn in subs:
                try:
                    fn(update)
                except Exception:
                    log.exception("metrics subscriber failed")
            self._wake.wait(self.interval)

    def round(self, hosts: bool, vms: frozenset[str] | None,
              back: int = 0) -> MetricsUpdate:
        """One request per host that holds something wanted (the hosts' own series,
        or a VM resident there: a host asked for none of its own answers 500,
        rrdd's No_RRA_Available); what failed is named in ``missing``. A host asked
        for an object its last answer did not hold is asked for ``back`` seconds
        back (counted from its own last update, whatever our clock says)."""
        got: list[RrdUpdate] = []
        missing: dict[str, str] = {}
        times: dict[str, int] = {}
        now = int(time.time())
        for ref, h in list(self.cache.all("host").items()):
            if self._stop.is_set():
                break
            address = str(h.get("address", ""))
            if not address:
                continue
            here = self._here(ref, vms)
            if not hosts and here is not None and not here:
                continue  # none of its VMs is wanted
            start = self._since.get(ref, now - int(self.interval * 6))
            if back > 0 and self._new_to(ref, hosts, here):
                start = -back
            filt = None if here is None else sorted(here) if here else [self._dom0(ref)]
            self.requests += 1
            try:
                u = fetch(self.conn, ref, address, start, interval=int(self.interval),
                          host=hosts, vm_uuids=filt, timeout=min(10.0, self.conn.timeout))
            except XapiError as e:
                missing[ref] = e.friendly
                if e.code == "SESSION_INVALID":
                    # an RPC call logs in again when the session has expired
                    with contextlib.suppress(XsctlError):
                        self.conn.call("pool.get_all")
                continue
            except XsctlError as e:
                missing[ref] = str(e)
                continue
            if u.end:
                self._since[ref] = u.end
            self._asked[ref] = (hosts, here)
            if u.rows:
                times[ref] = u.rows[0][0]
            got.append(u)
        update = merge(got, time.time())
        return MetricsUpdate(update.at, update.values, missing, times, update.recent)

    def _new_to(self, host_ref: str, hosts: bool, here: frozenset[str] | None) -> bool:
        """Whether the host is asked for something its last answer did not hold."""
        asked = self._asked.get(host_ref)
        if asked is None:
            return True
        had_hosts, had_vms = asked
        if hosts and not had_hosts:
            return True
        if had_vms is None:
            return False
        return here is None or not here <= had_vms

    def _here(self, host_ref: str, vms: frozenset[str] | None) -> frozenset[str] | None:
        """The wanted VMs resident on the host (None: every VM it holds)."""
        if vms is None:
            return None
        if not vms:
            return frozenset()
        out = set()
        for v in (self.cache.get("host", host_ref) or {}).get("resident_VMs") or ():
            r = self.cache.get("vm", v)
            if r is not None and r.get("uuid") in vms:
                out.add(str(r["uuid"]))
        return frozenset(out)

    def _dom0(self, host_ref: str) -> str:
        """No VM wanted: xapi has no "hosts only" switch, but its vm_uuid filter keeps
        only the VMs named, so the host's own control domain is named (its series,
        dom0's load, are small and useful)."""
        return _dom0_of(self.cache, host_ref)


# ---------------------------------------------------------------- history

@dataclass(frozen=True)
class Period:
    """A span xapi keeps at one resolution (rrdd_shared.ml timescales): asking
    /rrd_updates for ``seconds`` back with ``interval`` = ``step`` selects that
    archive (rrd.ml find_best_rras)."""

    name: str
    seconds: int
    step: int
    label: str


PERIODS: dict[str, Period] = {p.name: p for p in (
    Period("10m", 600, 5, "last 10 minutes"),
    Period("2h", 7200, 60, "last 2 hours"),
    Period("1w", 604800, 3600, "last week"),
    Period("1y", 31536000, 86400, "last year"),
)}


@dataclass
class History:
    """The series of one object over a period: times and each data source's values,
    oldest first (NaN where xapi had none)."""

    kind: str  # "host" | "vm"
    uuid: str
    period: Period
    step: int
    times: list[int]
    series: dict[str, list[float]]


def _dom0_of(cache: Cache, host_ref: str) -> str:
    host = cache.get("host", host_ref) or {}
    for ref in host.get("resident_VMs") or ():
        vm = cache.get("vm", ref)
        if vm and vm.get("is_control_domain"):
            return str(vm.get("uuid", ""))
    return "00000000-0000-0000-0000-000000000000"


def history(conn: Connection, cache: Cache, kind: str, ref: str, period: Period) -> History:
    """One /rrd_updates request to the host that holds the object's RRD (a host's
    own, a VM's resident host), for the period's archive. The start is negative,
    counted back from the host's last update (rrd_updates.ml), so that a client
    whose clock differs from the host's still gets the whole period. One step less
    than the period: an archive holds a start strictly after its oldest row
    (rrd.ml find_best_rras), so the whole period would pick the next, coarser one."""
    rec = cache.get(kind, ref)
    if rec is None:
        raise XsctlError(f"no {kind} {ref}")
    uuid = str(rec.get("uuid", ""))
    if kind == "host":
        host_ref = ref
        vm_filter = [_dom0_of(cache, ref)]  # no VM wanted: see MetricsFeed._filter
    else:
        host_ref = str(rec.get("resident_on", ""))
        if rec.get("power_state") not in ("Running", "Paused") or \
                cache.get("host", host_ref) is None:
            raise XsctlError(f"{rec.get('name_label', uuid)} is not running (a VM's "
                             "figures are on its host while it runs)")
        vm_filter = [uuid]
    address = str((cache.get("host", host_ref) or {}).get("address", ""))
    if not address:
        raise XsctlError(f"the host of {rec.get('name_label', uuid)} has no address")
    u = fetch(conn, host_ref, address, -(period.seconds - period.step), interval=period.step, host=kind == "host",
              vm_uuids=vm_filter, timeout=min(30.0, conn.timeout))
    series = u.series().get((kind, uuid), {})
    return History(kind, uuid, period, u.step or period.step, u.times(), series)
