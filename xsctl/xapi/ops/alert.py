"""Alerts (xapi messages) as the object of operations: dismissing one, several at
once, or every alert of one kind.

A message is not a database object in xapi (ocaml/xapi/xapi_message.ml keeps each in
a file of its own): it has no allowed_operations, and ``message.destroy`` is all there
is to dismissing one. Several go in one ``message.destroy_many`` call, which xapi runs
one by one, so thousands of alerts cost one call, not thousands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.models import Message, is_guest
from xsctl.xapi.ops.base import Call, Plan, xe
from xsctl.xapi.ops.catalogue import Impact, Kind, Operation, Param, ParamKind, declare
from xsctl.xapi.ops.resolve import MIN_PREFIX
from xsctl.xapi.text import printable

# the classes a message may be about that xsctl reads (xapi_message.ml check_uuid also
# names VMPP, VMSS, PVS_proxy and Certificate: shown by their uuid)
ABOUT = (("VM", "vm"), ("Host", "host"), ("SR", "sr"), ("Pool", "pool"), ("VDI", "vdi"))
XE_SHOWN = 3  # xe lines written out for a plan on many alerts; the rest are counted


class ObjectNames:
    """uuid -> the name of what an alert is about, for every class it may be about:
    built once from the cache (a dict per lookup, not a walk of 10,000 VMs)."""

    def __init__(self, cache: Cache) -> None:
        self.names: dict[str, str] = {}
        self.exact: dict[str, str] = {}  # as xapi has them, for --json
        for _, table in ABOUT:
            for _ref, r in cache.snapshot(table):
                uuid = str(r.get("uuid", ""))
                self.exact[uuid] = str(r.get("name_label", ""))
                if table == "vm" and not is_guest(r):
                    # a host's control domain, a template or a snapshot: said so
                    what = ("control domain" if r.get("is_control_domain")
                            else "snapshot" if r.get("is_a_snapshot") else "template")
                    self.names[uuid] = f"{printable(str(r.get('name_label', '')))} ({what})"
                else:
                    self.names[uuid] = printable(str(r.get("name_label", "")))
        for _ref, r in cache.snapshot("pool"):
            # the pool is often left unnamed: XenCenter shows its master's name
            uuid = str(r.get("uuid", ""))
            if not self.names.get(uuid):
                master = cache.get("host", str(r.get("master", ""))) or {}
                self.names[uuid] = printable(str(master.get("name_label", ""))) or "pool"

    def name(self, m: Message) -> str:
        """``web-01``; an object no longer in the pool (a deleted VM) by its uuid's
        start, as xapi keeps its alerts."""
        name = self.names.get(m.obj_uuid)
        if name is not None:
            return name
        return f"{m.obj_uuid[:8]} (gone)" if m.obj_uuid else "–"

    def find(self, spec: str) -> set[str]:
        """The uuids of the objects ``spec`` names: a name, a uuid or a uuid prefix."""
        text = spec.strip()
        hits = {u for u, n in self.names.items() if n == text or u == text}
        if not hits and len(text) >= MIN_PREFIX:
            hits = {u for u in self.names if u.startswith(text.lower())}
        return hits


def newest_first(msgs: Iterable[Message]) -> list[Message]:
    """The one order of alerts: newest first (xapi's get_all_records order); the
    uuid breaks ties so that the order is the same every time."""
    return sorted(msgs, key=lambda m: (m.timestamp.timestamp() if m.timestamp else 0.0,
                                       m.uuid), reverse=True)


def priorities(text: str) -> frozenset[int]:
    """``2``, ``1-3`` or ``1,2``: the priorities a filter keeps."""
    out: set[int] = set()
    for part in text.replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            a = int(lo)
            b = int(hi) if sep else a
        except ValueError:
            raise UsageError(f"priority: {text!r} is not 1 to 5, a range (1-3) or a list "
                             "(1,2)") from None
        if not (1 <= a <= b <= 5):
            raise UsageError(f"priority: {text!r} is out of range (1 is the most severe, "
                             "5 informational)")
        out.update(range(a, b + 1))
    return frozenset(out)


def matching(cache: Cache, values: Mapping[str, Any]) -> list[Message]:
    """The alerts the filters keep, newest first: ``priority`` (``2``, ``1-3``),
    ``cls`` (VM, Host, SR, Pool; any case), ``obj`` (the object's name or uuid) and
    ``name`` (VM_STARTED; any case). A filter left out keeps every alert."""
    msgs = [Message.from_record(ref, r) for ref, r in cache.snapshot("message")]
    prio = values.get("priority")
    if prio:
        keep = priorities(str(prio))
        msgs = [m for m in msgs if m.priority in keep]
    cls = values.get("cls")
    if cls:
        want = str(cls).strip().lower()
        msgs = [m for m in msgs if m.cls.lower() == want]
    name = values.get("name")
    if name:
        want = str(name).strip().upper()
        msgs = [m for m in msgs if m.name.upper() == want]
    obj = values.get("obj")
    if obj:
        uuids = ObjectNames(cache).find(str(obj))
        if not uuids:
            raise UsageError(f"no VM, host, SR, pool or disk named {str(obj)!r}")
        msgs = [m for m in msgs if m.obj_uuid in uuids]
    return newest_first(msgs)


def _select(cache: Cache, values: Mapping[str, Any]) -> list[str]:
    return [m.ref for m in matching(cache, values)]


def _text(name: str, flag: str, metavar: str, help: str) -> Param:
    return Param(name, ParamKind.TEXT, name, (flag,), help, required=False, metavar=metavar)


FILTERS = (
    _text("priority", "--priority", "N", "only priority N (1 is the most severe, 5 "
          "informational); a range 1-3 or a list 1,2"),
    _text("cls", "--class", "CLASS", "only alerts about a VM, Host, SR or Pool"),
    _text("obj", "--object", "NAME", "only alerts about this object (name or UUID)"),
    _text("name", "--name", "NAME", "only alerts of this kind (VM_STARTED, ALARM, ...)"),
)


def resolve_message(cache: Cache, spec: str) -> str:
    """An alert by its UUID (or a unique prefix) or reference: alerts have no names
    of their own (hundreds are called VM_STARTED)."""
    text = spec.strip()
    if not text:
        raise UsageError("no alert given")
    rows = cache.snapshot("message")
    for ref, r in rows:
        if ref == text or r.get("uuid") == text:
            return ref
    if len(text) >= MIN_PREFIX and all(c in "0123456789abcdef-" for c in text.lower()):
        hits = [ref for ref, r in rows if str(r.get("uuid", "")).startswith(text.lower())]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UsageError(f"UUID prefix {text!r} matches {len(hits)} alerts")
    raise UsageError(f"no alert with UUID {text!r} (xsctl alert list shows them)")


def _load(cache: Cache, ref: str) -> Message | None:
    return Message.get(cache, ref)


def _members(cache: Cache) -> Iterable[tuple[str, str]]:
    """Each alert by the name the palette and the menus give it (its title)."""
    return [(ref, Message.from_record(ref, r).title) for ref, r in cache.snapshot("message")]


def _explain(m: Any, op: str) -> XsctlError | None:
    return None  # a message has no allowed_operations: any can be dismissed


MESSAGE = Kind(
    cls="message", noun="alert", nouns="alerts", resolve=resolve_message, load=_load,
    name=lambda m: m.title, members=_members, explain=_explain,
    classes=("pool", "host", "VM", "SR", "VDI", "message"),
    spec_help="UUID or unique UUID prefix (xsctl alert list shows them)",
    selectors=FILTERS, select=_select,
)


def _names(msgs: Sequence[Message]) -> dict[str, str]:
    return {m.ref: f"{m.name} {m.uuid[:8]}" for m in msgs}


def _xe(msgs: Sequence[Message]) -> tuple[str, ...]:
    """xe has no destroy_many: a message-destroy each (the first few written out)."""
    return tuple(xe("message-destroy", uuid=m.uuid) for m in msgs[:XE_SHOWN])


def dismiss(cache: Cache, m: Message) -> Plan:
    return Plan(title=f"Dismiss {m.title} ({m.uuid[:8]})", action="alert.dismiss",
                targets=(m.ref,), calls=(Call("message.destroy", (m.ref,)),),
                xe=_xe([m]), names=_names([m]), destructive=True)


def dismiss_many(cache: Cache, msgs: list[Message], *, title: str = "",
                 action: str = "alert.dismiss", confirm: bool = False) -> Plan:
    """One call for every alert; ``confirm``: the count must be typed (every alert of
    a kind, every alert a filter keeps: a mistake there loses thousands)."""
    msgs = newest_first(msgs)
    kinds = sorted({m.name for m in msgs})
    what = kinds[0] if len(kinds) == 1 else f"{len(kinds)} kinds"
    notes = ["xapi keeps no copy: a dismissed alert is gone for every client"]
    if len(msgs) > XE_SHOWN:
        notes.append(f"xe: the same message-destroy for each of the other "
                     f"{len(msgs) - XE_SHOWN} alerts")
    return Plan(title=title or f"Dismiss {len(msgs)} alerts ({what})", action=action,
                targets=tuple(m.ref for m in msgs),
                calls=(Call("message.destroy_many", ([m.ref for m in msgs],)),),
                xe=_xe(msgs), names=_names(msgs), destructive=True,
                confirm_text=str(len(msgs)) if confirm else None, notes=tuple(notes))


def dismiss_kind(cache: Cache, m: Message) -> Plan:
    """Every alert with the name of this one (every VM_STARTED), about any object."""
    same = [x for x in (Message.from_record(r, rec) for r, rec in cache.snapshot("message"))
            if x.name == m.name]
    return dismiss_many(cache, same, title=f"Dismiss every {m.name} alert ({len(same)})",
                        action="alert.dismiss-kind", confirm=len(same) > 1)


def _dismiss_selection(cache: Cache, msgs: list[Message]) -> Plan:
    return dismiss_many(cache, msgs)


declare(
    Operation("alert.dismiss", MESSAGE, "Dismiss", "x", "dismiss", "message-destroy",
              "dismissed", "Dismiss the alert (the marked ones in one call): xapi deletes "
              "the message", dismiss,
              multi=True, impact=Impact.DESTRUCTIVE, footer=True, group="alert",
              plan_many=_dismiss_selection),
    Operation("alert.dismiss-kind", MESSAGE, "Dismiss all of this kind", "X", "dismiss",
              "message-destroy", "dismissed",
              "Dismiss every alert with this one's name (every VM_STARTED, say)",
              dismiss_kind, flag="--every-kind", impact=Impact.DESTRUCTIVE,
              group="alert"),
)
