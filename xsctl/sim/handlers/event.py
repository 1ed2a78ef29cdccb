"""event.from, event.inject and the legacy register/next/unregister.

Semantics follow ocaml/xapi/xapi_event.ml (protocol.md section 4): tokens are
``"%020d,%020d"`` (database generation, message generation); an empty token returns
every object as ``add``; later calls coalesce all changes to an object into one event
with its current snapshot; ``del`` only for objects created before the token; the call
blocks until something matches or the timeout passes, waiting 50 ms first (not for
task-only subscriptions) and 50 ms between retries so bursts are batched.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure
from xsctl.sim.store import MESSAGE_CLASSES, Store
from xsctl.sim.wire import Int32

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

EVENT_FROM_DELAY = 0.05  # xapi_globs.ml event_from_delay
NEXT_QUEUE_LIMIT = 100_000  # changes before event.next reports EVENTS_LOST


@dataclass(frozen=True, slots=True)
class Sub:
    cls: str | None  # None = "*"
    ref: str | None = None


def parse_subs(classes: list[str]) -> list[Sub]:
    out = []
    for x in classes:
        if x == "*":
            out.append(Sub(None))
            continue
        parts = x.split("/", 1)
        if not parts[0]:
            raise XapiFailure("EVENT_SUBSCRIPTION_PARSE_FAILURE", x)
        out.append(Sub(parts[0].lower(), parts[1] if len(parts) == 2 else None))
    return out


def parse_token(token: str) -> tuple[int, int]:
    if token == "":
        return 0, 0
    parts = token.split(",")
    try:
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
        if len(parts) == 1:
            return int(parts[0]), 0
    except ValueError:
        pass
    raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def make_token(gen: int, msg_gen: int) -> str:
    return f"{gen:020d},{msg_gen:020d}"


def _matches(subs: list[Sub], lcls: str, ref: str) -> bool:
    for s in subs:
        if s.cls is None or (s.cls == lcls and (s.ref is None or s.ref == ref)):
            return True
    return False


def _table_matches(subs: list[Sub], lcls: str) -> bool:
    return any(s.cls is None or s.cls == lcls for s in subs)


def collect(store: Store, subs: list[Sub], gen: int, mgen: int) -> list[dict[str, Any]]:
    """Events since (gen, mgen) for the subscriptions. Call with the store lock held."""
    events: list[dict[str, Any]] = []
    if gen == 0 and mgen == 0:
        for cls, table in store.tables.items():
            lcls = cls.lower()
            if not _table_matches(subs, lcls):
                continue
            for ref, row in table.items():
                if _matches(subs, lcls, ref):
                    events.append(
                        {"id": str(store.modified[ref]), "timestamp": "0.0", "class": lcls,
                         "operation": "add", "ref": ref, "snapshot": row}
                    )
        return events
    dels: list[dict[str, Any]] = []
    for cls, ref, created in store.deleted_since(gen, mgen):
        lcls = cls.lower()
        threshold = mgen if cls in MESSAGE_CLASSES else gen
        if created <= threshold and _matches(subs, lcls, ref):
            dels.append(
                {"id": str(store.gen), "timestamp": "0.0", "class": lcls,
                 "operation": "del", "ref": ref}
            )
    mods: list[dict[str, Any]] = []
    adds: list[dict[str, Any]] = []
    seen: set[str] = set()
    for ref in store.changed_since(gen, mgen):
        if ref in seen:
            continue
        seen.add(ref)
        cls = store.cls_of.get(ref)
        if cls is None:
            continue
        lcls = cls.lower()
        if not _matches(subs, lcls, ref):
            continue
        threshold = mgen if cls in MESSAGE_CLASSES else gen
        ev = {"id": str(store.modified[ref]), "timestamp": "0.0", "class": lcls,
              "operation": "add" if store.created[ref] > threshold else "mod",
              "ref": ref, "snapshot": store.tables[cls][ref]}
        (adds if ev["operation"] == "add" else mods).append(ev)
    return dels + mods + adds


def _check_session(ctx: Context) -> None:
    if ctx.session is not None and not ctx.store.exists(ctx.session, "session"):
        raise XapiFailure("SESSION_INVALID", ctx.session)


@api("event.from")
def event_from(ctx: Context, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
    subs = parse_subs(classes)
    gen, mgen = parse_token(token)
    store = ctx.store
    sim = ctx.sim
    task_only = all(s.cls == "task" for s in subs)
    if not task_only:
        time.sleep(EVENT_FROM_DELAY)
    if sim.faults.event_delay > 0:
        time.sleep(sim.faults.event_delay)
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        with store.cond:
            _check_session(ctx)
            events = collect(store, subs, gen, mgen)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0 or sim.stopping:
                return {
                    "events": events,
                    "valid_ref_counts": {k: Int32(v) for k, v in store.counts().items()},
                    "token": make_token(store.gen, store.msg_gen),
                }
            store.cond.wait(remaining)
        # something changed: give the writer a moment to finish its burst
        time.sleep(EVENT_FROM_DELAY)


@api("event.inject")
def inject(ctx: Context, cls: str, ref: str) -> str:
    store = ctx.store
    name = ctx.dm.by_lower.get(cls.lower())
    with store.lock:
        if name is None or not store.exists(ref, name):
            raise XapiFailure("HANDLE_INVALID", cls, ref)
        store.touch(ref)
        return make_token(store.gen - 1, 0)


@api("event.get_current_id")
def get_current_id(ctx: Context) -> int:
    return ctx.store.gen


# ---------------------------------------------------------------- legacy event.next


@dataclass
class Registration:
    subs: set[str] = field(default_factory=set)
    gen: int = 0
    mgen: int = 0
    epoch: int = 0


_REGS: dict[int, dict[str, Registration]] = {}
_REGS_LOCK = threading.Lock()


def _regs(sim: Simulator) -> dict[str, Registration]:
    with _REGS_LOCK:
        return _REGS.setdefault(id(sim), {})


def forget_session(sim: Simulator, session: str) -> None:
    _regs(sim).pop(session, None)


def forget_registrations(sim: Simulator) -> None:
    _regs(sim).clear()


@api("event.register")
def register(ctx: Context, classes: list[str]) -> None:
    parse_subs(classes)
    assert ctx.session is not None
    regs = _regs(ctx.sim)
    with ctx.lock:
        reg = regs.get(ctx.session)
        if reg is None:
            reg = regs[ctx.session] = Registration(
                gen=ctx.store.gen, mgen=ctx.store.msg_gen, epoch=ctx.store.epoch
            )
        reg.subs |= set(classes)


@api("event.unregister")
def unregister(ctx: Context, classes: list[str]) -> None:
    assert ctx.session is not None
    reg = _regs(ctx.sim).get(ctx.session)
    if reg is not None:
        reg.subs -= set(classes)


@api("event.next")
def next_events(ctx: Context) -> list[dict[str, Any]]:
    assert ctx.session is not None
    store = ctx.store
    sim = ctx.sim
    reg = _regs(sim).get(ctx.session)
    if reg is None:
        raise XapiFailure("SESSION_NOT_REGISTERED", store.get(ctx.session, "session")["uuid"])
    subs = parse_subs(sorted(reg.subs)) if reg.subs else []
    while True:
        with store.cond:
            _check_session(ctx)
            if reg.epoch != store.epoch or (
                store.gen - reg.gen > NEXT_QUEUE_LIMIT
            ):
                reg.gen, reg.mgen, reg.epoch = store.gen, store.msg_gen, store.epoch
                raise XapiFailure("EVENTS_LOST")
            events = collect(store, subs, reg.gen, reg.mgen) if subs else []
            if events or sim.stopping:
                reg.gen, reg.mgen = store.gen, store.msg_gen
                now = f"{time.time():.6f}"
                out = []
                for i, ev in enumerate(events):
                    rec = dict(ev)
                    rec["id"] = str(store.gen * 1000 + i)
                    rec["timestamp"] = now
                    rec["obj_uuid"] = (ev.get("snapshot") or {}).get("uuid", "")
                    out.append(rec)
                return out
            store.cond.wait(1.0)
