"""message.* (alerts), as ocaml/xapi/xapi_message.ml serves them.

xapi keeps messages outside the database (one file per message, named by its
timestamp); their changes count in the second half of event.from tokens (see
store.MESSAGE_CLASSES). What a client can see of that:

* none of the message.* calls is implicit: get_record/get_all/get_by_uuid are
  hand-written, and their errors name the class in lower case (``HANDLE_INVALID
  ["message", ref]``, ``UUID_INVALID ["message", uuid]``);
* ``create`` checks that the body is text an XML file can hold (Encodings.UTF8_XML:
  no C0 control but tab, newline and carriage return, no Unicode non-character;
  ``INVALID_VALUE ["UTF8 expected"]``), then that ``obj_uuid`` names an object of
  ``cls`` (``UUID_INVALID [cls, uuid]``); the alerts xapi raises itself go through
  the same check, and one that fails it is not raised (message_forwarding.ml
  ignores the failure);
* ``get_since(since)`` and ``get(cls, obj_uuid, since)`` return messages strictly
  newer than ``since`` (xapi compares the sub-second creation time), newest first;
  ``get`` with an unknown object fails with ``UUID_INVALID`` and no parameters;
* at most ``MESSAGE_LIMIT`` messages are kept; the oldest go first.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from xsctl.sim.dispatch import Context, api
from xsctl.sim.errors import XapiFailure, internal_error
from xsctl.sim.store import Store, datetime_of
from xsctl.sim.where import compile_expr
from xsctl.sim.wire import Row

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

# name -> priority, from ocaml/xapi-consts/api_messages.ml (lower is more severe)
PRIORITIES = {
    "VM_STARTED": 5,
    "VM_SHUTDOWN": 5,
    "VM_REBOOTED": 5,
    "VM_MIGRATED": 5,
    "VM_SNAPSHOTTED": 5,
    "VM_SNAPSHOT_REVERTED": 5,
    "VM_CHECKPOINTED": 5,
    "VM_SUSPENDED": 5,
    "VM_RESUMED": 5,
    "VM_PAUSED": 5,
    "VM_UNPAUSED": 5,
    "VM_CRASHED": 2,
    "VM_CLONED": 5,
    "HA_HOST_FAILED": 3,
    "HA_HOST_WAS_FENCED": 4,
    "HOST_CLOCK_SKEW_DETECTED": 3,
    "HOST_CLOCK_WENT_BACKWARDS": 1,
    "POOL_MASTER_TRANSITION": 4,
    "PBD_PLUG_FAILED_ON_SERVER_START": 3,
    "MULTIPATH_PERIODIC_ALERT": 3,
    "LICENSE_EXPIRES_SOON": 2,
    "LICENSE_EXPIRED": 2,
    "BOND_STATUS_CHANGED": 3,
    "ALARM": 1,
}

MESSAGE_LIMIT = 10000  # xapi_globs.ml message_limit

# xapi_message.ml check_uuid: the classes a message may be about, and the table
# that must hold obj_uuid (None: a class this simulator does not model, so no uuid
# of it exists).
CLS_TABLE: dict[str, str | None] = {
    "VM": "VM",
    "Host": "host",
    "SR": "SR",
    "Pool": "pool",
    "VMPP": None,
    "VMSS": None,
    "PVS_proxy": None,
    "VDI": "VDI",
    "Certificate": None,
}

# Encodings.UTF8_XML: what xapi refuses in a message body
_NOT_XML = re.compile("[" + "".join(re.escape(chr(c)) for c in (
    *range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0xFDD0, 0xFDF0),
    *(plane | low for plane in range(0, 0x110000, 0x10000) for low in (0xFFFE, 0xFFFF)),
)) + "]")

_DT = re.compile(
    r"^(\d{4})-?(\d{2})-?(\d{2})T(\d{2}):?(\d{2}):?(\d{2})(\.\d+)?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_datetime(text: str) -> float:
    """Unix time of a datetime in xapi's basic (``20250319T04:16:24Z``) or RFC 3339
    form; no zone means UTC (clock/date.ml best_effort_iso8601_to_rfc3339)."""
    m = _DT.match(text.strip())
    if m is None:
        raise internal_error(f"Date.of_iso8601: {text}")
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    ts = datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp() + frac
    tz = m.group(8)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        ts -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return ts


def created_at(store: Store, ref: str, row: Row) -> float:
    """The sub-second creation time; a seeded message has only its timestamp."""
    t = store.runtime.message_times.get(ref)
    return t if t is not None else parse_datetime(row["timestamp"])


def _record(store: Store, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    now = time.time()
    with store.lock:
        ref = store.create(
            "message",
            {"name": name, "priority": priority, "cls": cls, "obj_uuid": obj_uuid,
             "timestamp": datetime_of(now), "body": body},
        )
        store.runtime.message_times[ref] = now
        _gc(store)
    return ref


def _gc(store: Store) -> None:
    """xapi_message.ml gc: keep the newest MESSAGE_LIMIT messages."""
    table = store.all("message")
    extra = len(table) - MESSAGE_LIMIT
    if extra <= 0:
        return
    oldest = sorted(table.items(), key=lambda kv: created_at(store, kv[0], kv[1]))[:extra]
    for ref, _ in oldest:
        _destroy(store, ref)


def _destroy(store: Store, ref: str) -> None:
    store.destroy(ref)
    store.runtime.message_times.pop(ref, None)


def utf8_xml(text: str) -> bool:
    """Encodings.UTF8_XML.is_valid: UTF-8 that an XML file can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _NOT_XML.search(text) is None


def emit(sim: Simulator, name: str, cls: str, obj_uuid: str, body: str) -> str | None:
    """Raise an alert as xapi does when something happens (Xapi_message.create; a body
    it refuses, e.g. with a VM name holding control characters, means no alert)."""
    if not utf8_xml(body):
        return None
    return _record(sim.store, name, PRIORITIES.get(name, 5), cls, obj_uuid, body)


def _newest_first(store: Store, items: list[tuple[str, Row]]) -> dict[str, Row]:
    """get_real_inner: sorted by generation, then timestamp, newest first."""
    items.sort(key=lambda kv: (store.created.get(kv[0], 0), created_at(store, *kv)),
               reverse=True)
    return dict(items)


def _get(store: Store, ref: str) -> Row:
    row = store.find(ref)
    if row is None or store.cls_of.get(ref) != "message":
        raise XapiFailure("HANDLE_INVALID", "message", ref)
    return row


def check_uuid(store: Store, cls: str, uuid: str) -> bool:
    table = CLS_TABLE.get(cls)
    return table is not None and uuid in store.uuids[table]


@api("message.create")
def create(ctx: Context, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    if not utf8_xml(body):
        raise XapiFailure("INVALID_VALUE", "UTF8 expected")
    if not check_uuid(ctx.store, cls, obj_uuid):
        raise XapiFailure("UUID_INVALID", cls, obj_uuid)
    return _record(ctx.store, name, priority, cls, obj_uuid, body)


@api("message.destroy")
def destroy(ctx: Context, self: str) -> None:
    with ctx.lock:
        _get(ctx.store, self)
        _destroy(ctx.store, self)


@api("message.destroy_many")
def destroy_many(ctx: Context, messages: list[str]) -> None:
    # one by one, as xapi does: an invalid ref stops the loop after the earlier ones
    for ref in messages:
        destroy(ctx, ref)


@api("message.get_record")
def get_record(ctx: Context, self: str) -> Row:
    return _get(ctx.store, self)


@api("message.get_by_uuid")
def get_by_uuid(ctx: Context, uuid: str) -> str:
    ref = ctx.store.uuids["message"].get(uuid)
    if ref is None:
        raise XapiFailure("UUID_INVALID", "message", uuid)
    return ref


@api("message.get_all")
def get_all(ctx: Context) -> list[str]:
    return list(ctx.store.all("message"))


@api("message.get_all_records")
def get_all_records(ctx: Context) -> dict[str, Row]:
    with ctx.lock:
        return _newest_first(ctx.store, list(ctx.store.all("message").items()))


@api("message.get_since")
def get_since(ctx: Context, since: str) -> dict[str, Row]:
    t = parse_datetime(since)
    store = ctx.store
    with ctx.lock:
        items = [(r, row) for r, row in store.all("message").items()
                 if created_at(store, r, row) > t]
        return _newest_first(store, items)


@api("message.get")
def get(ctx: Context, cls: str, obj_uuid: str, since: str) -> dict[str, Row]:
    store = ctx.store
    if not check_uuid(store, cls, obj_uuid):
        raise XapiFailure("UUID_INVALID")
    t = parse_datetime(since)
    with ctx.lock:
        items = [
            (r, row) for r, row in store.all("message").items()
            if row["cls"] == cls and row["obj_uuid"] == obj_uuid
            and created_at(store, r, row) > t
        ]
        return _newest_first(store, items)


_WHERE_FIELDS = frozenset({"name", "uuid", "priority", "cls", "obj_uuid", "timestamp", "body"})


@api("message.get_all_records_where")
def get_all_records_where(ctx: Context, expr: str) -> dict[str, Row]:
    """Only the message's own fields can be named (xapi_message.ml eval_val)."""
    for fname in re.findall(r'field\s*"([^"]*)"', expr):
        if fname not in _WHERE_FIELDS:
            raise internal_error(f'Db_exn.DBCache_NotFound("missing field", "{fname}", "")')
    pred = compile_expr(expr)
    store = ctx.store
    with ctx.lock:
        items = [(r, row) for r, row in store.all("message").items() if pred(_where_view(row))]
        return _newest_first(store, items)


def _where_view(row: Row) -> dict[str, Any]:
    view = dict(row)
    view["timestamp"] = str(row["timestamp"])
    return view
