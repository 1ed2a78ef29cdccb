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
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from xsctl.xapi import interrupts
from xsctl.xapi.errors import (
    ConnectionDropped,
    ConnectionFailed,
    PlainHttpRefused,
    ReadOnlyRefused,
    TrustError,
    UsageError,
    XapiError,
    XsctlError,
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
from xsctl.xapi.urls import plain_http_refused

log = logging.getLogger(__name__)

ORIGINATOR = "xsctl"
API_VERSION = "1.0"
MAX_REDIRECTS = 4


class Health(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    LOST = "lost"
    # the server's certificate is no longer the trusted one: nothing more is tried
    # until the user decides (the error is the ChangedCertificate, both fingerprints)
    UNTRUSTED = "untrusted"
    CLOSED = "closed"


# health, a sentence for a status line, and the error behind a LOST or UNTRUSTED
StateListener = Callable[[Health, str, XsctlError | None], None]
RenewListener = Callable[[], None]

# Connections opened inside closed_on_exit() blocks that are not closed yet.
_SCOPES: list[set[Connection]] = []
_SCOPES_LOCK = threading.Lock()


@contextlib.contextmanager
def closed_on_exit() -> Iterator[None]:
    """Every Connection made inside the block, in any thread, is closed (logged out)
    when it ends, however it ends. The command line runs each command in one, so
    that no path, an interrupt at any moment included, leaves a session behind. A
    login still under way in another thread is waited for, then logged out."""
    opened: set[Connection] = set()
    with _SCOPES_LOCK:
        _SCOPES.append(opened)
    try:
        yield
    finally:
        with interrupts.deferred():
            with _SCOPES_LOCK:
                _SCOPES.remove(opened)
                left = list(opened)
            for c in left:
                c.close()


MAX_TIMEOUT = 86400.0


def check_timeout(seconds: float) -> float:
    """A socket timeout a person meant: finite, above zero, at most a day."""
    if not isinstance(seconds, int | float) or not math.isfinite(seconds) or not (
            0 < seconds <= MAX_TIMEOUT):
        raise UsageError(f"a timeout is a number of seconds above 0 and at most "
                         f"{MAX_TIMEOUT:.0f}, not {seconds!r}")
    return float(seconds)


def check_endpoint(ep: Endpoint, insecure_http: bool) -> None:
    """Plain HTTP only when the user said so: the password would cross in clear."""
    if ep.scheme == "http" and not insecure_http:
        raise PlainHttpRefused(plain_http_refused(
            ep.url, "say so with --insecure-http (or insecure_http = true in the profile)"))


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
        insecure_http: bool = False,
    ) -> None:
        if transport not in ("auto", "json", "xml"):
            raise UsageError(f"unknown transport {transport!r} (auto, json or xml)")
        self.endpoint = Endpoint.parse(url)
        check_endpoint(self.endpoint, insecure_http)
        timeout = check_timeout(timeout)
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
        self._close_lock = threading.Lock()
        self._state_listeners: list[StateListener] = []
        self._renew_listeners: list[RenewListener] = []
        self._closed = False
        # a login that returned but whose session is not adopted yet: close() logs
        # it out too, so an interrupt between the two cannot leak it
        self._fresh: tuple[Transport, str] | None = None
        # set once the server's certificate stopped matching: the connection is
        # over, and no call, re-login or metrics request opens a socket again
        self.trust_failure: TrustError | None = None
        self.generation = 0  # bumped at every (re)login: the cache resyncs on change
        with _SCOPES_LOCK:
            for scope in _SCOPES:
                scope.add(self)

    def __repr__(self) -> str:
        return f"<Connection {self.user}@{self.endpoint.url} {self.health.value}>"

    # ------------------------------------------------------------ listeners

    def on_state(self, fn: StateListener | Callable[[Health, str], None]) -> None:
        """``fn(health, text, error)`` at every change of health; ``error`` is what
        made it LOST or UNTRUSTED (for UNTRUSTED, the ChangedCertificate with both
        fingerprints). A listener of two parameters gets the first two."""
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = []
        positional = [p for p in params if p.kind in (
            inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        if params and len(positional) == 2 and not any(
                p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            two = cast(Callable[[Health, str], None], fn)
            self._state_listeners.append(lambda h, text, error: two(h, text))
        else:
            self._state_listeners.append(cast(StateListener, fn))

    def on_renew(self, fn: RenewListener) -> None:
        self._renew_listeners.append(fn)

    def _set_health(self, h: Health, text: str = "", error: XsctlError | None = None) -> None:
        if self.health is Health.UNTRUSTED and h is not Health.CLOSED:
            return  # terminal: a late "lost" from another thread must not hide it
        changed = (h, text) != (self.health, self.health_text)
        self.health, self.health_text = h, text
        if changed:
            for fn in list(self._state_listeners):
                try:
                    fn(h, text, error)
                except Exception:  # a listener must not break the connection
                    log.exception("state listener failed")

    def _untrusted(self, e: TrustError) -> None:
        """Stop for good: reconnecting would only meet the same certificate."""
        if self.trust_failure is None:
            self.trust_failure = e
            log.warning("%s", e)
        self._set_health(Health.UNTRUSTED, str(e), e)

    def check_trusted(self) -> None:
        """Raise the trust failure that ended this connection, if there was one
        (before anything opens a socket to the pool)."""
        e = self.trust_failure
        if e is not None:
            raise e.with_traceback(None)

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
        """Log in. On any failure or interrupt, the session (if the login got one) is
        logged out before the exception goes on."""
        try:
            with self._lock:
                self._set_health(Health.CONNECTING, self.endpoint.url)
                self._login_anywhere()
                self._set_health(Health.CONNECTED, "")
            log.info("connected: %s as %s", self.describe, self.user)
            self._learn_members()
        except BaseException as e:
            if isinstance(e, TrustError):
                self._untrusted(e)
            else:
                self._set_health(Health.LOST, str(e), e if isinstance(e, XsctlError) else None)
            self.close()
            raise
        return self

    def _kinds(self) -> list[str]:
        return ["json", "xml"] if self.transport_choice == "auto" else [self.transport_choice]

    def _login_call(self, kind: str, ep: Endpoint) -> tuple[Transport, str]:
        """One session.login_with_password on a fresh connection. The signals that end
        a run wait until its answer is recorded in ``_fresh`` (xapi makes the session
        whether or not the client still listens), so whatever they interrupt next,
        close() knows the session and logs it out. A connection dropped before the
        answer is tried once more on a fresh one, as XenCenter does."""
        for attempt in (1, 2):
            t = make_transport(kind, ep, self.trust, self.timeout)
            try:
                with interrupts.deferred():
                    ref = str(t.call(
                        "session.login_with_password",
                        [self.user, self._password, API_VERSION, self.originator],
                    ))
                    self._fresh = (t, ref)
                return t, ref
            except ConnectionDropped as e:
                t.close()
                if attempt == 2:
                    raise
                log.info("%s; logging in again on a fresh connection", e)
            except XapiError as e:
                t.close()
                if e.code == "HOST_IS_SLAVE" and e.params:
                    self._learn_master_pin(t, ep, e.params[0])
                raise
            except BaseException:
                if self._fresh is None or self._fresh[0] is not t:
                    t.close()  # else close() needs it for the logout
                raise
        raise AssertionError("unreachable")

    def _login_at(self, ep: Endpoint) -> tuple[Transport, str]:
        """Log in at ``ep`` (following HOST_IS_SLAVE); returns the transport and ref."""
        for _ in range(MAX_REDIRECTS):
            redirect: str | None = None
            for kind in self._kinds():
                try:
                    t, ref = self._login_call(kind, ep)
                except ProtocolMismatch as e:
                    if kind == "json" and self.transport_choice == "auto":
                        log.info("%s does not answer JSON-RPC (%s); using XML-RPC", ep.url, e)
                        continue
                    raise
                except XapiError as e:
                    log.info("login at %s as %s refused: %s", ep.url, self.user, e.code)
                    if e.code == "HOST_IS_SLAVE" and e.params:
                        redirect = e.params[0]
                        break
                    raise
                return t, ref
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
        if self._closed:
            raise ConnectionFailed("the connection is closed")
        self.check_trusted()
        candidates = [self.endpoint] + [
            self.endpoint.at(m) for m in self.members if m != self.endpoint.host
        ]
        last: BaseException | None = None
        for i, ep in enumerate(candidates):
            try:
                t, ref = self._login_at(ep)
            except XapiError:
                raise
            except TrustError as e:
                if i == 0:
                    self._untrusted(e)
                    raise
                continue  # a member we have no pin for is no way in
            except ConnectionFailed as e:
                if last is None:
                    last = e  # report why the host the user named failed
                continue
            old_t, old_ref = self.transport, self.session
            self.transport, self.session = t, ref
            self._fresh = None
            self.endpoint = t.ep
            self.generation += 1
            if old_t is not None and old_t is not t:
                old_t.close()
            if old_ref and old_ref != ref:
                # still valid after a dropped connection or a master change: no leak
                _logout(t, old_ref)
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
            self.check_trusted()
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
            except TrustError as e:
                self._untrusted(e)
                raise
            except CallAborted:
                raise
            except ConnectionFailed as e:
                if self._closed:
                    raise
                if attempt >= self.retries:
                    self._set_health(Health.LOST, str(e), e)
                    raise
                attempt += 1
                self._recover(gen, str(e))
                if not is_read(method):
                    raise  # reconnected, but the call's outcome is unknown: do not resend
                continue

    def _recover(self, seen_generation: int, why: str) -> None:
        """Log in again unless another thread already did since ``seen_generation``."""
        self.check_trusted()
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
                except TrustError:
                    raise  # _login_anywhere said UNTRUSTED: stop here
                except XapiError as e:
                    self._set_health(Health.LOST, why, e)
                    raise
                except ConnectionFailed as e:
                    if time.monotonic() > deadline:
                        self._set_health(Health.LOST, str(e), e)
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
            if self._closed:
                raise ConnectionFailed("the connection is closed")
            self._learn_master_pin(old, self.endpoint, master)
            self.endpoint = self.endpoint.at(master)
            self._set_health(Health.RECONNECTING, f"pool master moved to {master}")
            self._login_anywhere()
            self._set_health(Health.CONNECTED, f"following the new master {master}")
        for fn in list(self._renew_listeners):
            with contextlib.suppress(Exception):
                fn()
        self._learn_members()

    def follow_address(self, address: str) -> None:
        """The host we talk to answers at ``address`` now (its management interface
        moved: PIF.reconfigure_ip, host.management_reconfigure). Its certificate is the
        one already trusted, so it is pinned there too; then log in there, retrying
        while the host brings the interface up (xapi itself tolerates the connection
        loss for 30 s: message_forwarding.ml management_reconfigure)."""
        old = self.endpoint
        if old.scheme == "unix" or address == old.host:
            return
        fp = self.fingerprint
        if fp and old.scheme == "https":
            with contextlib.suppress(UsageError):
                self.trust.learn(address, old.port, normalize_fingerprint(fp),
                                 f"management-moved-from={old.host}")
        # a login under way in another thread (the event feed's) reads it at its next try
        self.endpoint = old.at(address)
        self.members = [address, *(m for m in self.members if m not in (address, old.host))]
        self._recover(self.generation, f"management interface moved to {address}")
        self._learn_members()

    def abort_calls(self, thread: int | None = None) -> None:
        """Interrupt calls blocked in another thread (e.g. an event.from long-poll),
        or in all threads."""
        if self.transport is not None:
            self.transport.abort(thread)

    # ------------------------------------------------------------ logout

    def close(self) -> None:
        """Log out (always) and close every connection. The signals that end a run
        wait until the logout is done."""
        with interrupts.deferred():
            with self._close_lock:
                if self._closed:
                    return
                self._closed = True  # re-login loops in other threads stop on it
            if self.transport is not None:
                self.transport.abort()  # wake long-polls in other threads first
            with self._lock:  # a login under way in another thread ends first
                t, ref, fresh = self.transport, self.session, self._fresh
                self.session = self._fresh = None
            if self.trust_failure is not None:
                # the host no longer proves who it is: nothing goes to it, the logout
                # included (xapi drops the session when it times out)
                ref = fresh = None
            log.info("logging out of %s", self.endpoint.url)
            if fresh is not None and fresh[1] != ref:
                _logout(*fresh)
                fresh[0].close()
            if t is not None:
                if ref is not None:
                    _logout(t, ref)
                t.close()
            self._set_health(Health.CLOSED, "")
            with _SCOPES_LOCK:
                for scope in _SCOPES:
                    scope.discard(self)

    def __enter__(self) -> Connection:
        if self.session is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _logout(t: Transport, ref: str) -> None:
    with interrupts.deferred():
        try:
            t.call("session.logout", [ref], 10.0)
        except (XapiError, ConnectionFailed) as e:
            log.info("logout failed: %s", e)
