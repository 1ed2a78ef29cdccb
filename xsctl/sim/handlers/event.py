"""event.from, event.inject and the legacy register/next/unregister.

Semantics follow ocaml/xapi/xapi_event.ml (protocol.md section 4):

* A token is ``"%020d,%020d"``: the database generation of the last change the caller
  has seen *among the objects it subscribes to*, and the generation of the last alert
  (message) it has seen, or 0 when it does not subscribe to messages. ``""`` means
  generation 0, so every object comes back as ``add``.
* Later calls coalesce all changes of an object into one event carrying its current
  snapshot: ``add`` if it was created after the token, else ``mod``; ``del`` only for
  objects created before the token (no snapshot). Event ids are the generation of
  the creation, modification or deletion.
* Alerts live outside the database (xapi_message.ml): ``add`` for those created and
  ``del`` for those destroyed after the token's second half, with id ``"0"``.
* session, event and data_source have ``gen_events = false`` in the datamodel: they
  never produce events, not even for ``"*"``.
* ``valid_ref_counts`` counts every database table (lower-case names), with 0 for
  the tables that are not in the database (message, event, data_source).
* The call blocks until a matching change exists or the timeout passes (never an
  early empty answer), waiting 50 ms first (not for task-only subscriptions) and
  50 ms after each wake-up so bursts are batched (xapi_globs.ml event_from_delay).
* Subscriptions never fail to parse: ``Xstringext.String.split ~limit:2`` always
  yields one or two parts, so an odd one simply matches nothing.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import MESSAGE_CLASSES, Store
from xsctl.sim.wire import Int32, Row

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

EVENT_FROM_DELAY = 0.05  # xapi_globs.ml event_from_delay (before and between)
EVENT_NEXT_DELAY = 0.2  # xapi_globs.ml event_next_delay (before)
NO_EVENTS = frozenset({"session", "event", "data_source"})  # gen_events = false
NOT_IN_DB = frozenset({"message", "event", "data_source"})  # in_db = false


@dataclass(frozen=True, slots=True)
class Sub:
    cls: str | None  # None = "*"
    ref: str | None = None


def parse_subs(classes: list[str]) -> list[Sub]:
    """xapi_event.ml Subscription.of_string."""
    out = []
    for x in classes:
        if x == "*":
            out.append(Sub(None))
            continue
        cls, sep, ref = x.partition("/")
        out.append(Sub(cls.lower(), ref if sep else None))
    return out


def _token_int(s: str) -> int:
    from xsctl.sim.dispatch import _int64_of_string, _Unmarshal

    try:
        return _int64_of_string(s)
    except _Unmarshal:
        raise ValueError(s) from None


def parse_token(token: str) -> tuple[int, int]:
    """xapi_event.ml Token.of_string: ``""`` or exactly two Int64s."""
    if token == "":
        return 0, 0
    parts = token.split(",")
    if len(parts) == 2:
        try:
            return _token_int(parts[0]), _token_int(parts[1])
        except ValueError:
            pass
    raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def make_token(gen: int, msg_gen: int) -> str:
    return f"{gen:020d},{msg_gen:020d}"


def _matches(subs: list[Sub], lcls: str, ref: str) -> bool:
    return any(
        s.cls is None or (s.cls == lcls and (s.ref is None or s.ref == ref)) for s in subs
    )


def _table_matches(subs: list[Sub], lcls: str) -> bool:
    return any(s.cls is None or s.cls == lcls for s in subs)


def _event(ev_id: int | str, lcls: str, op: str, ref: str, snapshot: Row | None) -> dict[str, Any]:
    # Event_types.event: id, timestamp, class, operation, ref, snapshot (absent if None)
    ev: dict[str, Any] = {
        "id": str(ev_id), "timestamp": "0.0", "class": lcls, "operation": op, "ref": ref,
    }
    if snapshot is not None:
        ev["snapshot"] = snapshot
    return ev


def collect(
    store: Store, subs: list[Sub], since: int, since_t: int
) -> tuple[list[dict[str, Any]], int, int]:
    """Events after (since, since_t) for the subscriptions, and the token halves to
    answer with. Call with the store lock held (xapi_event.ml from_inner)."""
    last = since
    dels: list[dict[str, Any]] = []
    mods: list[dict[str, Any]] = []
    adds: list[dict[str, Any]] = []
    created, modified = store.created, store.modified
    if since <= 0:
        for cls, table in store.tables.items():
            lcls = cls.lower()
            if cls in MESSAGE_CLASSES or lcls in NO_EVENTS or not _table_matches(subs, lcls):
                continue
            for ref, row in table.items():
                if _matches(subs, lcls, ref):
                    m = modified[ref]
                    if m > last:
                        last = m
                    adds.append(_event(created[ref], lcls, "add", ref, row))
    else:
        seen: set[str] = set()
        for ref in store.changed_since(since):
            if ref in seen:
                continue
            seen.add(ref)
            rcls = store.cls_of.get(ref)
            if rcls is None or rcls in MESSAGE_CLASSES:
                continue
            lcls = rcls.lower()
            if lcls in NO_EVENTS or not _matches(subs, lcls, ref):
                continue
            m = modified[ref]
            if m > last:
                last = m
            c = created[ref]
            if c > since:
                adds.append(_event(c, lcls, "add", ref, store.tables[rcls][ref]))
            else:
                mods.append(_event(m, lcls, "mod", ref, store.tables[rcls][ref]))
        for gen, cls, ref, c in store.deleted_since(since):
            lcls = cls.lower()
            if c <= since and lcls not in NO_EVENTS and _matches(subs, lcls, ref):
                if gen > last:
                    last = gen
                dels.append(_event(gen, lcls, "del", ref, None))
    events = dels + mods + adds
    msg_gen = 0
    if _table_matches(subs, "message"):
        msg_gen = since_t
        for gen, ref in store.messages_since(since_t):
            mrow = store.tables["message"].get(ref)
            if mrow is not None:
                msg_gen = max(msg_gen, gen)
                events.append(_event(0, "message", "add", ref, mrow))
        for gen, _cls, ref, _c in store.messages_deleted_since(since_t):
            msg_gen = max(msg_gen, gen)
            events.append(_event(0, "message", "del", ref, None))
    return events, last, msg_gen


def valid_ref_counts(store: Store) -> dict[str, Int32]:
    return {
        c.lower(): Int32(0 if c.lower() in NOT_IN_DB else len(t))
        for c, t in store.tables.items()
    }


def _session_gone(ctx: Context) -> bool:
    return ctx.session is not None and not ctx.store.exists(ctx.session, "session")


def _timeout(timeout: float) -> float:
    # Clock.Timer.s_to_span gives None for what it cannot represent: 24 hours then
    if not math.isfinite(timeout) or timeout < 0:
        return 86400.0
    return timeout


@api("event.from")
def event_from(ctx: Context, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    subs = parse_subs(classes)
    since, since_t = parse_token(token)
    store = ctx.store
    sim = ctx.sim
    deadline = time.monotonic() + _timeout(timeout)
    task_only = bool(subs) and all(s.cls == "task" for s in subs)
    if not task_only:
        time.sleep(EVENT_FROM_DELAY)
    while True:
        with store.cond:
            events, last, msg_gen = collect(store, subs, since, since_t)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0 or sim.stopping:
                result = {
                    "events": events,
                    "valid_ref_counts": valid_ref_counts(store),
                    "token": make_token(last, msg_gen),
                }
                break
            if _session_gone(ctx):
                raise XapiFailure("SESSION_INVALID", ctx.session)
            # nothing relevant since `since`: wait for any write, then look again
            mark = store.gen
            waits = sim.runtime.event_waits
            waits[threading.get_ident()] = deadline
            try:
                while store.gen == mark and not sim.stopping:
                    if _session_gone(ctx):
                        raise XapiFailure("SESSION_INVALID", ctx.session)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    store.cond.wait(remaining)
            finally:
                waits.pop(threading.get_ident(), None)
        # give the writer a moment to finish its burst (delay_between)
        time.sleep(EVENT_FROM_DELAY)
    if sim.faults.event_delay > 0:
        time.sleep(sim.faults.event_delay)
    return result


@api("event.inject")
def inject(ctx: Context, cls: str, ref: str) -> str:
    """The row is touched (a ``mod``) and the token is (its generation - 1, 0), so a
    later event.from token compares greater once the change is visible. The class
    must be the table's exact name (``VM``, not ``vm``)."""
    store = ctx.store
    with store.lock:
        if cls in MESSAGE_CLASSES or store.cls_of.get(ref) != cls:
            raise XapiFailure("HANDLE_INVALID", cls, ref)
        store.touch(ref)
        return make_token(store.modified[ref] - 1, 0)


# ---------------------------------------------------------------- legacy event.next


@dataclass(slots=True)
class QueuedEvent:
    id: int
    cls: str  # lower-case
    op: str
    ref: str
    snapshot: Row | None
    ts: str


@dataclass
class Registration:
    subs: list[Sub] = field(default_factory=list)
    last_id: int = 0


class NextQueue:
    """xapi_event.ml module Next: one queue of every change that some registered
    session subscribes to (not coalesced), each with its snapshot at that time, and
    one subscription per session. Old events are dropped beyond ``limit``; a caller
    that had not read them gets EVENTS_LOST."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.queue: deque[QueuedEvent] = deque()
        self.next_id = 0
        self.highest_forgotten = -1
        self.regs: dict[str, Registration] = {}

    def on_write(self, cls: str, op: str, ref: str, row: Row | None) -> None:
        lcls = cls.lower()
        if lcls in NO_EVENTS:
            return
        with self.cond:
            if not any(_matches(r.subs, lcls, ref) for r in self.regs.values()):
                return
            self.queue.append(
                QueuedEvent(self.next_id, lcls, op, ref, row, f"{int(time.time())}.")
            )
            self.next_id += 1
            limit = max(1, self.sim.event_next_queue_limit)
            while len(self.queue) > limit:
                self.highest_forgotten = self.queue.popleft().id
            self.cond.notify_all()

    def forget(self, session: str) -> None:
        with self.cond:
            self.regs.pop(session, None)
            self.cond.notify_all()

    def clear(self) -> None:
        with self.cond:
            self.regs.clear()
            self.queue.clear()
            self.cond.notify_all()


def next_queue(sim: Simulator) -> NextQueue:
    """The simulator's event.next queue, made (and fed by every write) at its first
    use, so a pool nobody registers with pays nothing for it."""
    rt = sim.runtime
    with rt.next_queue_lock:
        q = rt.next_queue
        if q is None:
            q = rt.next_queue = NextQueue(sim)
            sim.store.watchers.append(q.on_write)
        return q


def forget_session(sim: Simulator, session: str) -> None:
    """Xapi_event.on_session_deleted: the session's event.next registration goes."""
    q = sim.runtime.next_queue
    if q is not None:
        q.forget(session)


def forget_registrations(sim: Simulator) -> None:
    next_queue(sim).clear()


def _trackid(session: str) -> str:
    # Context.trackid_of_session: an MD5 of the session ref, not the ref itself
    return "trackid=" + hashlib.md5(session.encode()).hexdigest()


@api("event.register")
def register(ctx: Context, classes: list[str]) -> None:
    assert ctx.session is not None
    q = next_queue(ctx.sim)
    with q.cond:
        reg = q.regs.get(ctx.session)
        if reg is None:
            reg = q.regs[ctx.session] = Registration(last_id=q.next_id)
        reg.subs = parse_subs(classes) + reg.subs


@api("event.unregister")
def unregister(ctx: Context, classes: list[str]) -> None:
    assert ctx.session is not None
    q = next_queue(ctx.sim)
    drop = parse_subs(classes)
    with q.cond:
        reg = q.regs.get(ctx.session)
        if reg is None:
            reg = q.regs[ctx.session] = Registration(last_id=q.next_id)
        reg.subs = [s for s in reg.subs if s not in drop]


@api("event.next")
def next_events(ctx: Context) -> list[dict[str, Any]]:
    assert ctx.session is not None
    session = ctx.session
    sim = ctx.sim
    q = next_queue(sim)
    with q.cond:
        if session not in q.regs:
            raise XapiFailure("SESSION_NOT_REGISTERED", _trackid(session))
    time.sleep(EVENT_NEXT_DELAY)
    while True:
        with q.cond:
            reg = q.regs.get(session)
            while reg is not None and reg.last_id == q.next_id and not sim.stopping:
                q.cond.wait(1.0)
                reg = q.regs.get(session)
            if reg is None:  # the session was destroyed while we waited
                raise XapiFailure("SESSION_INVALID", session)
            start, end = reg.last_id, q.next_id
            reg.last_id = end
            if q.highest_forgotten >= start:
                raise XapiFailure("EVENTS_LOST")
            relevant = [
                e for e in q.queue
                if start <= e.id < end and _matches(reg.subs, e.cls, e.ref)
            ]
            if relevant or sim.stopping:
                out = []
                for e in relevant:
                    ev = _event(e.id, e.cls, e.op, e.ref, e.snapshot)
                    ev["timestamp"] = e.ts
                    out.append(ev)
                return out
        time.sleep(EVENT_FROM_DELAY)


@api("event.get_current_id")
def get_current_id(ctx: Context) -> int:
    q = next_queue(ctx.sim)
    with q.cond:
        return q.next_id
