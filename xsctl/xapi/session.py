"""Sessions: log in once per connection, share the session ref between threads (each
thread has its own HTTP connection), follow HOST_IS_SLAVE to the pool master,
log in again after SESSION_INVALID or an xapi restart, fail over to other pool
members when the master stops answering, and always log out.

The password is kept in memory only, for re-login; it is never logged, never part of
an exception and never written anywhere.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from xsctl.xapi.errors import (
    ConnectionFailed,
    ReadOnlyRefused,
    TrustError,
    UsageError,
    XapiError,
)
from xsctl.xapi.transport import (
    THUMBPRINT_RESPONSE,
    CallAborted,
    Endpoint,
    ProtocolMismatch,
    Transport,
    is_read,
    make_transport,
)
from xsctl.xapi.trust import TrustPolicy, normalize_fingerprint

log = logging.getLogger(__name__)

ORIGINATOR = "xsctl"
API_VERSION = "1.0"
MAX_REDIRECTS = 4


class Health(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    LOST = "lost"
    CLOSED = "closed"


StateListener = Callable[[Health, str], None]
RenewListener = Callable[[], None]


class Connection:
    """A logged-in connection to a pool. Thread-safe; use as a context manager."""

    def __init__(
        self,
        url: str,
        user: str,
        password: str | None,
        trust: TrustPolicy,
        *,
        transport: str = "auto",
        read_only: bool = False,
        timeout: float = 30.0,
        originator: str = ORIGINATOR,
        retries: int = 3,
    ) -> None:
        if transport not in ("auto", "json", "xml"):
            raise UsageError(f"unknown transport {transport!r} (auto, json or xml)")
        self.endpoint = Endpoint.parse(url)
        self.first_endpoint = self.endpoint
        self.user = user
        self._password = password or ""
        self.trust = trust
        self.transport_choice = transport
        self.read_only = read_only
        self.timeout = timeout
        self.originator = originator
        self.retries = retries
        self.transport: Transport | None = None
        self.session: str | None = None
        self.members: list[str] = []  # pool host addresses, for failover
        self.health = Health.CONNECTING
        self.health_text = ""
        self._lock = threading.RLock()
        self._state_listeners: list[StateListener] = []
        self._renew_listeners: list[RenewListener] = []
        self._closed = False
        self.generation = 0  # bumped at every (re)login: the cache resyncs on change

    def __repr__(self) -> str:
        return f"<Connection {self.user}@{self.endpoint.url} {self.health.value}>"

    # ------------------------------------------------------------ listeners

    def on_state(self, fn: StateListener) -> None:
        self._state_listeners.append(fn)

    def on_renew(self, fn: RenewListener) -> None:
        self._renew_listeners.append(fn)

    def _set_health(self, h: Health, text: str = "") -> None:
        changed = (h, text) != (self.health, self.health_text)
        self.health, self.health_text = h, text
        if changed:
            for fn in list(self._state_listeners):
                with contextlib.suppress(Exception):
                    fn(h, text)

    # ------------------------------------------------------------ facts

    @property
    def protocol(self) -> str:
        return self.transport.name if self.transport else "?"

    @property
    def fingerprint(self) -> str | None:
        return self.transport.fingerprint if self.transport else None

    @property
    def describe(self) -> str:
        """Transport, trust and address, for the header line and --verbose."""
        ep = self.endpoint
        if ep.scheme == "unix":
            where = f"xapi's Unix socket {ep.host}"
        elif ep.scheme == "http":
            where = f"{ep.url} (plain HTTP, not encrypted)"
        else:
            trust = self.trust.describe
            fp = self.fingerprint
            if fp and not self.trust.ca_file:
                trust = f"pinned {fp[:23]}…"
            where = f"{ep.url} (TLS, {trust})"
        ro = ", read-only" if self.read_only else ""
        return f"{self.protocol} to {where}{ro}"

    # ------------------------------------------------------------ login

    def connect(self) -> Connection:
        with self._lock:
            self._set_health(Health.CONNECTING, self.endpoint.url)
            try:
                self._login_anywhere()
            except BaseException as e:
                self._set_health(Health.LOST, str(e))
                raise
            self._set_health(Health.CONNECTED, "")
        log.info("connected: %s as %s", self.describe, self.user)
        self._learn_members()
        return self

    def _kinds(self) -> list[str]:
        return ["json", "xml"] if self.transport_choice == "auto" else [self.transport_choice]

    def _login_at(self, ep: Endpoint) -> tuple[Transport, str]:
        """Log in at ``ep`` (following HOST_IS_SLAVE); returns the transport and ref."""
        for _ in range(MAX_REDIRECTS):
            redirect: str | None = None
            for kind in self._kinds():
                t = make_transport(kind, ep, self.trust, self.timeout)
                try:
                    ref = t.call(
                        "session.login_with_password",
                        [self.user, self._password, API_VERSION, self.originator],
                    )
                except ProtocolMismatch as e:
                    t.close()
                    if kind == "json" and self.transport_choice == "auto":
                        log.info("%s does not answer JSON-RPC (%s); using XML-RPC", ep.url, e)
                        continue
                    raise
                except XapiError as e:
                    t.close()
                    log.info("login at %s as %s refused: %s", ep.url, self.user, e.code)
                    if e.code == "HOST_IS_SLAVE" and e.params:
                        redirect = e.params[0]
                        self._learn_master_pin(t, ep, redirect)
                        break
                    raise
                except BaseException:
                    t.close()
                    raise
                return t, str(ref)
            if redirect is None:
                raise ConnectionFailed(f"{ep.url} answers neither JSON-RPC nor XML-RPC")
            log.info("%s is a pool member; the master is %s", ep.url, redirect)
            ep = ep.at(redirect)
        raise ConnectionFailed("too many HOST_IS_SLAVE redirects")

    def _learn_master_pin(self, t: Transport, ep: Endpoint, master: str) -> None:
        fp = t.last_headers.get(THUMBPRINT_RESPONSE)
        if fp and ep.scheme == "https":
            try:
                self.trust.learn(master, ep.port, normalize_fingerprint(fp),
                                 f"pool-master-via={ep.host}")
            except UsageError:
                pass

    def _login_anywhere(self) -> None:
        """Log in at the current endpoint; on failure, at the pool's other members."""
        candidates = [self.endpoint] + [
            self.endpoint.at(m) for m in self.members if m != self.endpoint.host
        ]
        last: BaseException | None = None
        for i, ep in enumerate(candidates):
            try:
                t, ref = self._login_at(ep)
            except XapiError:
                raise
            except TrustError:
                if i == 0:
                    raise
                continue  # a member we have no pin for is no way in
            except ConnectionFailed as e:
                if last is None:
                    last = e  # report why the host the user named failed
                continue
            old_t, old_ref = self.transport, self.session
            self.transport, self.session = t, ref
            self.endpoint = t.ep
            self.generation += 1
            if old_t is not None and old_t is not t:
                old_t.close()
            if old_ref and old_ref != ref:
                # still valid after a dropped connection or a master change: no leak
                with contextlib.suppress(XapiError, ConnectionFailed):
                    t.call("session.logout", [old_ref], 10.0)
            return
        assert last is not None
        raise last

    def _learn_members(self) -> None:
        try:
            hosts = self.call("host.get_all_records")
        except (XapiError, ConnectionFailed):
            return
        self.members = [str(h.get("address", "")) for h in hosts.values() if h.get("address")]

    # ------------------------------------------------------------ calls

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Call ``method`` with the session; re-login and failover are handled here."""
        if self.read_only and not is_read(method):
            raise ReadOnlyRefused(method)
        attempt = 0
        while True:
            if self._closed:
                raise ConnectionFailed("the connection is closed")
            t, ref, gen = self.transport, self.session, self.generation
            if t is None or ref is None:
                self._recover(gen, "not logged in")
                continue
            started = time.monotonic()
            try:
                result = t.call(method, [ref, *args], timeout)
                log.debug("%s %.3fs", method, time.monotonic() - started)
                if self.health is not Health.CONNECTED:
                    self._set_health(Health.CONNECTED, "")
                return result
            except XapiError as e:
                log.info("%s refused: %s", method, e.code)
                if e.code in ("SESSION_INVALID", "HOST_IS_SLAVE") and attempt < self.retries:
                    attempt += 1
                    if e.code == "HOST_IS_SLAVE" and e.params:
                        self._follow_master(gen, e.params[0], t)
                    else:
                        self._recover(gen, "session expired or xapi restarted")
                    continue
                raise
            except (TrustError, CallAborted):
                raise
            except ConnectionFailed as e:
                if self._closed:
                    raise
                if attempt >= self.retries:
                    self._set_health(Health.LOST, str(e))
                    raise
                attempt += 1
                self._recover(gen, str(e))
                if not is_read(method):
                    raise  # reconnected, but the call's outcome is unknown: do not resend
                continue

    def _recover(self, seen_generation: int, why: str) -> None:
        """Log in again unless another thread already did since ``seen_generation``."""
        with self._lock:
            if self.generation != seen_generation and self.session is not None:
                return
            self._set_health(Health.RECONNECTING, why)
            delay = 0.2
            deadline = time.monotonic() + max(5.0, self.timeout)
            while True:
                if self._closed:
                    raise ConnectionFailed("the connection is closed")
                try:
                    self._login_anywhere()
                    break
                except (TrustError, XapiError):
                    self._set_health(Health.LOST, why)
                    raise
                except ConnectionFailed as e:
                    if time.monotonic() > deadline:
                        self._set_health(Health.LOST, str(e))
                        raise
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
            self._set_health(Health.CONNECTED, "reconnected")
            log.info("logged in again (%s): %s", why, self.describe)
        for fn in list(self._renew_listeners):
            with contextlib.suppress(Exception):
                fn()

    def _follow_master(self, seen_generation: int, master: str, old: Transport) -> None:
        """The pool master moved: log in at the new one, log the old session out."""
        with self._lock:
            if self.generation != seen_generation:
                return
            self._learn_master_pin(old, self.endpoint, master)
            self.endpoint = self.endpoint.at(master)
            self._set_health(Health.RECONNECTING, f"pool master moved to {master}")
            self._login_anywhere()
            self._set_health(Health.CONNECTED, f"following the new master {master}")
        for fn in list(self._renew_listeners):
            with contextlib.suppress(Exception):
                fn()
        self._learn_members()

    def abort_calls(self, thread: int | None = None) -> None:
        """Interrupt calls blocked in another thread (e.g. an event.from long-poll),
        or in all threads."""
        if self.transport is not None:
            self.transport.abort(thread)

    # ------------------------------------------------------------ logout

    def close(self) -> None:
        """Log out (always) and close every connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            t, ref = self.transport, self.session
            self.session = None
        log.info("logging out of %s", self.endpoint.url)
        if t is not None:
            t.abort()  # wake long-polls in other threads first
            if ref is not None:
                try:
                    t.call("session.logout", [ref], 10.0)
                except (XapiError, ConnectionFailed) as e:
                    log.info("logout failed: %s", e)
            t.close()
        self._set_health(Health.CLOSED, "")

    def __enter__(self) -> Connection:
        if self.session is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
