"""The client: a connection, its live cache and the way to run plans. The CLI, the
TUI, the demo and the tests all build one of these."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xsctl.paths import known_hosts_file
from xsctl.xapi import ops
from xsctl.xapi.cache import CLASSES, Cache
from xsctl.xapi.errors import ReadOnlyRefused
from xsctl.xapi.metrics import MetricsFeed
from xsctl.xapi.ops.base import Plan, StepProgress, TransferProgress
from xsctl.xapi.ops.catalogue import Context
from xsctl.xapi.session import Connection, Health, check_endpoint, check_timeout
from xsctl.xapi.transport import is_read
from xsctl.xapi.trust import Confirm, KnownHosts, TrustPolicy

__all__ = ["Client", "Health", "KnownHosts", "Target", "ensure_trusted"]


@dataclass
class Target:
    """Where and how to connect (a profile, or --url/--user on the command line)."""

    url: str
    user: str = "root"
    ca_file: str | None = None
    read_only: bool = False
    transport: str = "auto"
    timeout: float = 30.0
    accept_fingerprint: str | None = None
    profile: str | None = None
    ssh: str | None = None
    insecure_http: bool = False  # http:// allowed: everything crosses unencrypted
    profiling: bool = False  # the Profiling view may run tools in the hosts' dom0
    # a folder of simulated dom0 tools, one subfolder per host address (xsctl sim's)
    host_tools: str | None = None

    @property
    def is_local(self) -> bool:
        return self.url.startswith("unix://")


def ensure_trusted(
    target: Target, confirm: Confirm | None, known: KnownHosts | None = None
) -> str | None:
    """Check (and on first use, pin) the server's certificate before a password is
    asked for. Returns the fingerprint, or None where pins do not apply."""
    from xsctl.xapi.transport import Endpoint
    from xsctl.xapi.trust import host_key, probe_fingerprint

    ep = Endpoint.parse(target.url)
    check_endpoint(ep, target.insecure_http)
    check_timeout(target.timeout)
    if ep.scheme != "https" or target.ca_file:
        return None
    trust = TrustPolicy(known or KnownHosts(known_hosts_file()),
                        accept=target.accept_fingerprint,
                        accept_for=host_key(ep.host, ep.port), confirm=confirm)
    fp = probe_fingerprint(ep.host, ep.port, timeout=target.timeout)
    trust.verify_fingerprint(ep.host, ep.port, fp)
    return fp


class Client:
    def __init__(self, conn: Connection, cache: Cache) -> None:
        self.conn = conn
        self.cache = cache
        self.metrics = MetricsFeed(conn, cache)
        self.target: Target | None = None

    @classmethod
    def connect(
        cls,
        target: Target,
        password: str | None,
        *,
        confirm: Confirm | None = None,
        known: KnownHosts | None = None,
        classes: Iterable[str] = CLASSES,
    ) -> Client:
        from xsctl.xapi.transport import Endpoint
        from xsctl.xapi.trust import host_key

        ep = Endpoint.parse(target.url)
        trust = TrustPolicy(
            known or KnownHosts(known_hosts_file()),
            ca_file=target.ca_file,
            accept=target.accept_fingerprint,
            accept_for=host_key(ep.host, ep.port),
            confirm=confirm,
        )
        conn = Connection(
            target.url, target.user, password, trust,
            transport=target.transport, read_only=target.read_only, timeout=target.timeout,
            insecure_http=target.insecure_http,
        )
        try:
            conn.connect()
            client = cls(conn, Cache(conn, classes))
            client.target = target
        except BaseException:
            conn.close()  # an interrupt after the login: log its session out
            raise
        return client

    def context(self) -> Context:
        """What operations are planned against: the live cache and the time now."""
        return Context(self.cache, datetime.now(UTC))

    def refused(self, plan: Plan) -> ReadOnlyRefused | None:
        """A read-only connection refuses a plan that changes anything, before a call
        is sent (the same rule the connection applies to each call)."""
        if self.conn.read_only:
            for c in plan.calls:
                if not is_read(c.method):
                    return ReadOnlyRefused(c.method)
        return None

    @property
    def connected(self) -> bool:
        return self.conn.health is Health.CONNECTED

    def load(self) -> Client:
        self.cache.load()
        return self

    def watch(self) -> Client:
        """Load and follow events in the background."""
        self.cache.start()
        return self

    def run(
        self, plan: Plan, progress: StepProgress | None = None,
        cancel: threading.Event | None = None,
        on_task: Callable[[str], None] | None = None,
        keep_on_failure: bool = False,
        rate: TransferProgress | None = None,
    ) -> list[Any]:
        return ops.run(self.conn, plan, progress, cancel, on_task, keep_on_failure, rate)

    def close(self) -> None:
        try:
            self.metrics.stop()
            self.cache.stop()
        finally:
            self.conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
