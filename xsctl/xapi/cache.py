"""The live object cache: one event.from long-poll thread per connection fills an
in-memory copy of every class the UI needs, and tells listeners which refs of which
classes changed. Nothing polls.

Start-up reads everything once (a token-less event.from, or event.inject followed by
get_all_records per class; see tests/benchmarks for which is faster), then follows
the token. After SESSION_INVALID or an xapi restart the connection logs in again and
the cache reads everything afresh, reporting the difference as adds, mods and dels,
because a restarted xapi has forgotten which objects were deleted meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from xsctl.xapi import heap
from xsctl.xapi.errors import ConnectionFailed, TrustError, XapiError
from xsctl.xapi.session import Connection

log = logging.getLogger(__name__)

Record = dict[str, Any]

# Classes the UI and the operations read (xapi's names; event.from lower-cases them).
CLASSES = [
    "pool", "host", "host_metrics", "VM", "VM_metrics", "VM_guest_metrics", "VBD", "VDI",
    "SR", "PBD", "SM", "network", "VIF", "PIF", "PIF_metrics", "task", "message", "console",
    "VLAN", "Bond",
]
EVENT_TIMEOUT = 30.0  # seconds an event.from may block, as XenCenter uses


@dataclass(frozen=True, slots=True)
class Change:
    cls: str  # lower-case xapi class
    ref: str
    op: str  # add, mod, del
    old: Record | None
    new: Record | None

    def changed_fields(self) -> dict[str, tuple[Any, Any]]:
        """field -> (before, after) for a mod."""
        if self.old is None or self.new is None:
            return {}
        return {
            k: (self.old.get(k), v) for k, v in self.new.items() if self.old.get(k) != v
        }


class Changes:
    """One applied batch: what changed, coalesced per object.

    The first read of a class adds every object of it: at 30,000 VMs some 300,000
    Change objects (0.15 s), which only a listener that reads ``items`` needs (none
    listens yet to the load that connects). So those adds are made on first read."""

    __slots__ = ("_added", "_items", "resync")

    def __init__(self, items: Iterable[Change] = (), resync: bool = False) -> None:
        self._items = list(items)
        self._added: list[tuple[str, dict[str, Record]]] = []  # (class, every object new)
        self.resync = resync  # a full re-read (start-up or after a reconnect)

    @property
    def items(self) -> list[Change]:
        if self._added:
            added, self._added = self._added, []
            self._items.extend(Change(cls, ref, "add", None, rec)
                               for cls, table in added for ref, rec in table.items())
        return self._items

    def add_all(self, cls: str, table: dict[str, Record]) -> None:
        """Every object of ``table`` is new (``table`` is not changed afterwards)."""
        if table:
            self._added.append((cls, table))

    def refs(self, cls: str) -> set[str]:
        c = cls.lower()
        return {x.ref for x in self.items if x.cls == c}

    def classes(self) -> set[str]:
        return {x.cls for x in self.items}

    def __bool__(self) -> bool:
        return bool(self._items or self._added) or self.resync

    def __repr__(self) -> str:
        return f"Changes({len(self.items)} items, resync={self.resync})"


Listener = Callable[[Changes], None]
HealthListener = Callable[[bool, str], None]


class Cache:
    def __init__(
        self,
        conn: Connection,
        classes: Iterable[str] = CLASSES,
        *,
        strategy: str = "records",
        event_timeout: float = EVENT_TIMEOUT,
    ) -> None:
        self.conn = conn
        self.classes = [c.lower() for c in classes]
        self._names = {c.lower(): c for c in classes}
        self.strategy = strategy
        self.event_timeout = event_timeout
        self._tables: dict[str, dict[str, Record]] = {c: {} for c in self.classes}
        self._where: dict[str, str] = {}  # ref -> class
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._health_listeners: list[HealthListener] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._token = ""
        self._generation = -1
        self.fresh = False  # False while disconnected: views must say so
        self.stale_since: float | None = None
        self.last_error = ""
        self.loaded_at = 0.0
        self.batches = 0
        self._versions: dict[str, int] = dict.fromkeys(self.classes, 0)

    # ------------------------------------------------------------ reads

    def all(self, cls: str) -> dict[str, Record]:
        """The live table (do not modify). Safe to iterate a copy from any thread."""
        return self._tables.get(cls.lower(), {})

    def get(self, cls: str, ref: str) -> Record | None:
        return self._tables.get(cls.lower(), {}).get(ref)

    def find(self, ref: str) -> tuple[str, Record] | None:
        cls = self._where.get(ref)
        if cls is None:
            return None
        rec = self._tables[cls].get(ref)
        return None if rec is None else (cls, rec)

    def version(self, *classes: str) -> int:
        """Goes up whenever a table of these classes changes: a view that built from
        them compares it to know whether what it built is still current."""
        return sum(self._versions.get(c.lower(), 0) for c in classes)

    def snapshot(self, cls: str) -> list[tuple[str, Record]]:
        with self._lock:
            return list(self._tables.get(cls.lower(), {}).items())

    # ------------------------------------------------------------ listeners

    def subscribe(self, fn: Listener) -> Callable[[], None]:
        self._listeners.append(fn)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(fn)

        return unsubscribe

    def on_health(self, fn: HealthListener) -> None:
        self._health_listeners.append(fn)

    def _notify(self, changes: Changes) -> None:
        for fn in list(self._listeners):
            try:
                fn(changes)
            except Exception:
                log.exception("cache listener failed")

    def _set_fresh(self, fresh: bool, why: str = "") -> None:
        if fresh == self.fresh and why == self.last_error:
            return
        self.fresh = fresh
        self.last_error = why
        self.stale_since = None if fresh else (self.stale_since or time.time())
        for fn in list(self._health_listeners):
            with contextlib.suppress(Exception):
                fn(fresh, why)

    # ------------------------------------------------------------ loading

    def long_lived(self) -> contextlib.AbstractContextManager[None]:
        """Build, in this block, data that lives as long as this cache's records (a
        view's rows): no cyclic collection meanwhile, kept out of the collector's
        passes afterwards, until the cache stops (see heap.py)."""
        return heap.hold(self)

    def load(self) -> Changes:
        """Read everything once (no thread). Returns the differences applied."""
        gen = self.conn.generation
        with heap.hold(self):  # records live as long as the cache: see heap.py
            fresh, token = self._fetch_all()
            changes = self._replace_all(fresh)
        self._token = token
        self._generation = gen
        self.loaded_at = time.time()
        self._set_fresh(True)
        self._notify(changes)
        return changes

    def _fetch_all(self) -> tuple[dict[str, dict[str, Record]], str]:
        fresh: dict[str, dict[str, Record]]
        if self.strategy == "event":
            batch = self.conn.call("event.from", self.classes, "", 0.0,
                                   timeout=max(120.0, self.conn.timeout))
            fresh = {c: {} for c in self.classes}
            for ev in batch.get("events", []):
                cls = ev.get("class", "").lower()
                if cls in fresh and ev.get("operation") != "del" and "snapshot" in ev:
                    fresh[cls][ev["ref"]] = ev["snapshot"]
            token = str(batch.get("token", ""))
        else:
            pools = self.conn.call("pool.get_all")
            token = self.conn.call("event.inject", "pool", pools[0]) if pools else ""
            fresh = {}
            for c in self.classes:
                fresh[c] = self.conn.call(f"{self._names[c]}.get_all_records",
                                          timeout=max(120.0, self.conn.timeout))
        return fresh, token

    def _replace_all(self, fresh: dict[str, dict[str, Record]]) -> Changes:
        found: list[Change] = []  # adds, mods and dels in tables that had objects
        new_tables: list[tuple[str, dict[str, Record]]] = []  # tables read for the first time
        with self._lock:
            for cls in self.classes:
                old = self._tables[cls]
                new = fresh.get(cls, {})
                if not old:
                    new_tables.append((cls, new))  # the table below is a copy: ``new`` stays
                else:
                    for ref, rec in new.items():
                        prev = old.get(ref)
                        if prev is None:
                            found.append(Change(cls, ref, "add", None, rec))
                        elif prev != rec:
                            found.append(Change(cls, ref, "mod", prev, rec))
                    for ref, prev in old.items():
                        if ref not in new:
                            found.append(Change(cls, ref, "del", prev, None))
                            self._where.pop(ref, None)
                self._tables[cls] = dict(new)
                self._where.update(dict.fromkeys(new, cls))
                self._versions[cls] += 1
        changes = Changes(found, resync=True)
        for cls, table in new_tables:
            changes.add_all(cls, table)
        return changes

    def apply(self, events: list[dict[str, Any]]) -> Changes:
        """Apply one event.from batch; several events on one object coalesce."""
        last: dict[tuple[str, str], Change] = {}
        with self._lock:
            for ev in events:
                cls = str(ev.get("class", "")).lower()
                table = self._tables.get(cls)
                if table is None:
                    continue
                ref = str(ev.get("ref", ""))
                op = str(ev.get("operation", ""))
                prev = table.get(ref)
                key = (cls, ref)
                before = last[key].old if key in last else prev
                if op == "del":
                    table.pop(ref, None)
                    self._where.pop(ref, None)
                    if before is not None:
                        last[key] = Change(cls, ref, "del", before, None)
                    else:
                        last.pop(key, None)
                    continue
                snap = ev.get("snapshot")
                if not isinstance(snap, dict):
                    continue
                table[ref] = snap
                self._where[ref] = cls
                last[key] = Change(cls, ref, "add" if before is None else "mod", before, snap)
            for cls in {str(ev.get("class", "")).lower() for ev in events} & self._versions.keys():
                self._versions[cls] += 1
        return Changes([c for c in last.values() if c.op != "mod" or c.old != c.new])

    # ------------------------------------------------------------ watching

    def start(self) -> Cache:
        """Load, then follow events in a background thread."""
        if not self.loaded_at:
            self.load()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="xsctl event.from", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        t = self._thread
        if t is not None and t.is_alive():
            if t.ident is not None:
                self.conn.abort_calls(t.ident)
            t.join(timeout)
        self._thread = None
        heap.release(self)  # what this cache held may now be garbage

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if self._generation != self.conn.generation:
                    self.load()  # logged in again: xapi may have forgotten deletions
                gen = self.conn.generation
                batch = self.conn.call(
                    "event.from", self.classes, self._token, self.event_timeout,
                    timeout=self.event_timeout + 30.0,
                )
                if self._stop.is_set():
                    break
                if gen != self.conn.generation:
                    continue  # re-login happened under us; the next turn re-reads
                changes = self.apply(batch.get("events", []))
                self._token = str(batch.get("token", self._token))
                self.batches += 1
                self._set_fresh(True)
                backoff = 0.5
                if changes:
                    self._notify(changes)
            except TrustError as e:
                self._set_fresh(False, str(e))
                log.error("event thread stopped: %s", e)
                return
            except (ConnectionFailed, XapiError) as e:
                if self._stop.is_set():
                    break
                self._set_fresh(False, str(e))
                if isinstance(e, XapiError) and e.code in (
                    "EVENT_FROM_TOKEN_PARSE_FAILURE", "EVENTS_LOST"
                ):
                    self._generation = -1  # read everything again
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception as e:  # keep the thread alive; say what happened
                log.exception("event thread error")
                self._set_fresh(False, f"internal error: {e}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
