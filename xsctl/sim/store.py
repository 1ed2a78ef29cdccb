"""The simulator's database: one table per datamodel class, copy-on-write rows,
generation counters for event.from, and xapi's one-to-many relations kept in step.

Every write publishes a new :class:`Row` and bumps the generation, so a row handed to
a serializer is a consistent snapshot and never changes under it. Messages (alerts)
live outside the database in xapi and count in the second half of the event token;
they do the same here. Like xapi (xapi_message.ml ``write``/``destroy_real``), creating
or destroying one still consumes a database generation.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from xsctl.sim.datamodel import Datamodel
from xsctl.sim.errors import XapiFailure
from xsctl.sim.runtime import Runtime
from xsctl.sim.wire import NULL_REF, DateTime, Row

# (child class, child ref field) -> (parent class, parent set field).
# From xapi's ocaml/idl/datamodel.ml ``all_relations`` (the part our classes use).
RELATIONS: list[tuple[str, str, str, str]] = [
    ("VBD", "VM", "VM", "VBDs"),
    ("VBD", "VDI", "VDI", "VBDs"),
    ("VIF", "VM", "VM", "VIFs"),
    ("VIF", "network", "network", "VIFs"),
    ("PIF", "network", "network", "PIFs"),
    ("PIF", "host", "host", "PIFs"),
    ("PBD", "host", "host", "PBDs"),
    ("PBD", "SR", "SR", "PBDs"),
    ("VDI", "SR", "SR", "VDIs"),
    ("VM", "resident_on", "host", "resident_VMs"),
    ("VM", "snapshot_of", "VM", "snapshots"),
    ("VM", "parent", "VM", "children"),
    ("VDI", "snapshot_of", "VDI", "snapshots"),
    ("console", "VM", "VM", "consoles"),
    ("host_cpu", "host", "host", "host_CPUs"),
    ("task", "subtask_of", "task", "subtasks"),
    ("VLAN", "tagged_PIF", "PIF", "VLAN_slave_of"),
    ("PIF", "bond_slave_of", "Bond", "slaves"),
]

MESSAGE_CLASSES = frozenset({"message"})

AllowedOps = Callable[["Store", Row], list[str]]
# (class, "add" | "mod" | "del", ref, row) after every write, with the lock held
Watcher = Callable[[str, str, str, Row], None]

# class -> function computing a row's allowed_operations, registered by the handler
# modules; applied every time a row of that class is published.
ALLOWED_OPS: dict[str, AllowedOps] = {}


def allowed_ops(cls: str) -> Callable[[AllowedOps], AllowedOps]:
    def deco(fn: AllowedOps) -> AllowedOps:
        ALLOWED_OPS[cls] = fn
        return fn

    return deco


_UUID_MASK = ~(0xF000 << 64) & ~(0xC000 << 48) & (2**128 - 1)
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)


def now_datetime() -> DateTime:
    return DateTime(datetime.now(UTC).strftime("%Y%m%dT%H:%M:%SZ"))


def datetime_of(ts: float) -> DateTime:
    return DateTime(datetime.fromtimestamp(ts, UTC).strftime("%Y%m%dT%H:%M:%SZ"))


class Store:
    def __init__(
        self, dm: Datamodel, seed: int | None = None, runtime: Runtime | None = None
    ) -> None:
        self.dm = dm
        # what the pool holds outside the database (its Simulator's)
        self.runtime = runtime if runtime is not None else Runtime()
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rng = random.Random(seed)
        self.tables: dict[str, dict[str, Row]] = {c: {} for c in dm.classes}
        self.uuids: dict[str, dict[str, str]] = {c: {} for c in dm.classes}
        self.cls_of: dict[str, str] = {}
        self.created: dict[str, int] = {}
        self.modified: dict[str, int] = {}
        self.gen = 0  # database generation (messages consume generations too)
        self.msg_gen = 0  # generation of the last message write (second half of tokens)
        self.log: list[tuple[int, str]] = []  # (generation, ref) of every write
        self.msg_log: list[tuple[int, str]] = []
        self.deleted: list[tuple[int, str, str, int]] = []  # (gen, cls, ref, created)
        self.msg_deleted: list[tuple[int, str, str, int]] = []
        self.allowed_ops = ALLOWED_OPS
        self.bulk = False  # seeding: back-references appended in place, ops computed later
        self.child_rel: dict[str, list[tuple[str, str, str]]] = {}
        for child, cfield, parent, pfield in RELATIONS:
            if cfield in dm.classes[child].fields and pfield in dm.classes[parent].fields:
                self.child_rel.setdefault(child, []).append((cfield, parent, pfield))
        self.epoch = 0  # bumped by a simulated xapi restart
        self.field_names = {c: frozenset(d.fields) for c, d in dm.classes.items()}
        self.watchers: list[Watcher] = []
        # per class: a record of defaults, and which of its fields hold a list or dict
        # that each new row needs its own copy of (bulk loading creates 10^5 rows)
        self._defaults: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}

    # ------------------------------------------------------------ identities

    def new_uuid(self) -> str:
        """A random (seeded) version-4 UUID, as uuid.UUID(int=..., version=4) makes."""
        n = (self.rng.getrandbits(128) & _UUID_MASK) | _UUID_V4
        h = f"{n:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def new_ref(self) -> str:
        return "OpaqueRef:" + self.new_uuid()

    # ------------------------------------------------------------ reads

    def get(self, ref: str, cls: str | None = None) -> Row:
        """The current row of ``ref``; HANDLE_INVALID [class, ref] when it does not exist."""
        c = self.cls_of.get(ref)
        if c is None or (cls is not None and c != cls):
            raise XapiFailure("HANDLE_INVALID", cls or c or "", ref)
        return self.tables[c][ref]

    def find(self, ref: str) -> Row | None:
        c = self.cls_of.get(ref)
        return None if c is None else self.tables[c].get(ref)

    def exists(self, ref: str, cls: str | None = None) -> bool:
        c = self.cls_of.get(ref)
        return c is not None and (cls is None or c == cls)

    def all(self, cls: str) -> dict[str, Row]:
        return self.tables[cls]

    def by_uuid(self, cls: str, uuid: str) -> str:
        ref = self.uuids[cls].get(uuid)
        if ref is None:
            raise XapiFailure("UUID_INVALID", cls, uuid)
        return ref

    def where(self, cls: str, pred: Callable[[Row], bool]) -> list[str]:
        return [r for r, row in self.tables[cls].items() if pred(row)]

    # ------------------------------------------------------------ writes

    def _check_fields(self, cls: str, fields: dict[str, Any]) -> None:
        unknown = fields.keys() - self.field_names[cls]
        if unknown:
            raise KeyError(f"{cls} has no field(s) {sorted(unknown)}")

    def _bump(self, cls: str, ref: str) -> int:
        self.gen += 1
        if cls in MESSAGE_CLASSES:
            self.msg_gen = self.gen
            self.msg_log.append((self.gen, ref))
        else:
            self.log.append((self.gen, ref))
        return self.gen

    def _notify(self, cls: str, op: str, ref: str, row: Row) -> None:
        for w in self.watchers:
            w(cls, op, ref, row)

    def _default_row(self, cls: str) -> Row:
        cached = self._defaults.get(cls)
        if cached is None:
            rec = self.dm.default_record(cls)
            mutable = tuple(k for k, v in rec.items() if isinstance(v, (list, dict)))
            cached = self._defaults[cls] = (rec, mutable)
        rec, mutable = cached
        row = Row(rec)
        for k in mutable:
            v = rec[k]
            row[k] = list(v) if isinstance(v, list) else dict(v)
        return row

    def _publish(self, cls: str, ref: str, row: Row) -> None:
        fn = self.allowed_ops.get(cls)
        if fn is not None and not self.bulk and "allowed_operations" in row:
            row["allowed_operations"] = fn(self, row)
        self.tables[cls][ref] = row
        self.modified[ref] = self._bump(cls, ref)

    def create(self, cls: str, fields: dict[str, Any], ref: str | None = None) -> str:
        with self.lock:
            row = self._default_row(cls)
            self._check_fields(cls, fields)
            row.update(fields)
            if "uuid" in row and not row["uuid"]:
                row["uuid"] = self.new_uuid()
            ref = ref or self.new_ref()
            self.cls_of[ref] = cls
            if "uuid" in row:
                self.uuids[cls][row["uuid"]] = ref
            self._publish(cls, ref, row)
            self.created[ref] = self.modified[ref]
            if self.watchers:
                self._notify(cls, "add", ref, row)
            for cfield, parent, pfield in self.child_rel.get(cls, ()):
                self._link(parent, pfield, row.get(cfield, NULL_REF), ref, add=True)
            self.cond.notify_all()
            return ref

    def update(self, ref: str, changes: dict[str, Any]) -> Row:
        """Publish a new version of ``ref`` with ``changes`` applied."""
        with self.lock:
            cls = self.cls_of.get(ref)
            if cls is None:
                raise XapiFailure("HANDLE_INVALID", "", ref)
            old = self.tables[cls][ref]
            self._check_fields(cls, changes)
            row = Row(old)
            row.update(changes)
            self._publish(cls, ref, row)
            if self.watchers:
                self._notify(cls, "mod", ref, row)
            for cfield, parent, pfield in self.child_rel.get(cls, ()):
                if cfield in changes and old.get(cfield) != row.get(cfield):
                    self._link(parent, pfield, old.get(cfield, NULL_REF), ref, add=False)
                    self._link(parent, pfield, row.get(cfield, NULL_REF), ref, add=True)
            self.cond.notify_all()
            return row

    def refresh_allowed(self, cls: str | None = None) -> None:
        """Recompute allowed_operations in place (after a bulk load, nobody has read)."""
        with self.lock:
            for c, fn in self.allowed_ops.items():
                if cls is not None and c != cls:
                    continue
                for row in self.tables[c].values():
                    row["allowed_operations"] = fn(self, row)
                    row.invalidate()

    def republish(self, ref: str) -> None:
        """Publish ``ref`` again so derived fields (allowed_operations) are recomputed."""
        self.update(ref, {})

    def touch(self, ref: str) -> None:
        """A `mod` event with no change (event.inject, heartbeat)."""
        self.update(ref, {})

    def destroy(self, ref: str) -> None:
        with self.lock:
            cls = self.cls_of.pop(ref, None)
            if cls is None:
                raise XapiFailure("HANDLE_INVALID", "", ref)
            row = self.tables[cls].pop(ref)
            if "uuid" in row:
                self.uuids[cls].pop(row["uuid"], None)
            created = self.created.pop(ref, 0)
            self.modified.pop(ref, None)
            self.gen += 1
            if cls in MESSAGE_CLASSES:
                self.msg_gen = self.gen
                self.msg_deleted.append((self.gen, cls, ref, created))
            else:
                self.deleted.append((self.gen, cls, ref, created))
            if self.watchers:
                self._notify(cls, "del", ref, row)
            for cfield, parent, pfield in self.child_rel.get(cls, ()):
                self._link(parent, pfield, row.get(cfield, NULL_REF), ref, add=False)
            self.cond.notify_all()

    def _link(self, parent_cls: str, pfield: str, parent: Any, child: str, add: bool) -> None:
        if not isinstance(parent, str) or parent == NULL_REF:
            return
        prow = self.tables[parent_cls].get(parent)
        if prow is None:
            return
        cur: list[str] = prow.get(pfield, [])
        if self.bulk:
            if add:
                cur.append(child)
            elif child in cur:
                cur.remove(child)
            return
        if add and child not in cur:
            self.update(parent, {pfield: [*cur, child]})
        elif not add and child in cur:
            self.update(parent, {pfield: [x for x in cur if x != child]})

    def add_to_set(self, ref: str, field: str, value: Any) -> None:
        row = self.get(ref)
        cur = row[field]
        if value not in cur:
            self.update(ref, {field: [*cur, value]})

    def remove_from_set(self, ref: str, field: str, value: Any) -> None:
        row = self.get(ref)
        cur = row[field]
        if value in cur:
            self.update(ref, {field: [x for x in cur if x != value]})

    def set_map_key(self, ref: str, field: str, key: str, value: Any) -> None:
        row = self.get(ref)
        self.update(ref, {field: {**row[field], key: value}})

    def del_map_key(self, ref: str, field: str, key: str) -> None:
        row = self.get(ref)
        if key in row[field]:
            d = dict(row[field])
            del d[key]
            self.update(ref, {field: d})

    # ------------------------------------------------------------ events support

    def changed_since(self, gen: int) -> Iterable[str]:
        """Database refs written after generation ``gen``, oldest write first (may
        repeat; may be deleted since)."""
        i = bisect.bisect_right(self.log, (gen, "\uffff"))
        for _, ref in self.log[i:]:
            yield ref

    def deleted_since(self, gen: int) -> Iterable[tuple[int, str, str, int]]:
        """(generation, class, ref, created) of database rows deleted after ``gen``."""
        i = bisect.bisect_right(self.deleted, (gen, "\uffff"))
        yield from self.deleted[i:]

    def messages_since(self, gen: int) -> Iterable[tuple[int, str]]:
        """(generation, ref) of message writes after ``gen``."""
        j = bisect.bisect_right(self.msg_log, (gen, "\uffff"))
        yield from self.msg_log[j:]

    def messages_deleted_since(self, gen: int) -> Iterable[tuple[int, str, str, int]]:
        j = bisect.bisect_right(self.msg_deleted, (gen, "\uffff"))
        yield from self.msg_deleted[j:]

    def compact(self) -> None:
        """Drop superseded write-log entries (each live ref keeps its last write)."""
        with self.lock:
            if len(self.log) > 4 * len(self.modified) + 10000:
                self.log = sorted(
                    (g, r) for r, g in self.modified.items() if self.cls_of[r] not in MESSAGE_CLASSES
                )
            if len(self.deleted) > 200000:
                del self.deleted[: len(self.deleted) - 100000]
            if len(self.msg_log) > 4 * len(self.tables["message"]) + 10000:
                self.msg_log = sorted(
                    (self.modified[r], r) for r in self.tables["message"]
                )

    def counts(self) -> dict[str, int]:
        return {c.lower(): len(t) for c, t in self.tables.items()}


