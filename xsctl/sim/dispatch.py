"""RPC dispatch in xapi's order (ocaml/idl/ocaml_backend/gen_server.ml,
ocaml/xapi/server_helpers.ml): UTF-8 check, method lookup, argument count,
unmarshalling, session check, then the operation itself.

Behaviour written by hand registers with :func:`api`; every other message of the
datamodel is served generically (get_all, get_record, get_<field>, set_<field> where
the field is writable, add_to/remove_from, create, destroy, get_all_records_where).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xsctl.sim.datamodel import ClassDef, Datamodel, MessageDef, XType
from xsctl.sim.errors import XapiFailure, internal_error
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.where import compile_expr, db_column
from xsctl.sim.wire import (
    NULL_REF,
    DateTime,
    Row,
    ocaml_failure,
    ocaml_string,
    rpc_repr,
    xml_value,
)

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

Handler = Callable[..., Any]


@dataclass(slots=True)
class HandlerSpec:
    fn: Handler
    # True: the task is cancellable from the start (allowed_operations = [cancel]);
    # otherwise the handler may make it so (TaskHelper.set_cancellable) or not, and
    # task.cancel is recorded but ignored while it is not
    cancellable: bool = False


HANDLERS: dict[str, HandlerSpec] = {}


def api(name: str, *, cancellable: bool = False) -> Callable[[Handler], Handler]:
    """Register the hand-written behaviour of ``Class.message``."""

    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = HandlerSpec(fn, cancellable)
        return fn

    return deco


@dataclass(slots=True)
class Conn:
    """Where a request came in: which host's listener, over which transport."""

    host: str  # host ref whose listener received the call
    unix: bool = False
    headers: dict[str, str] = field(default_factory=dict)


class Context:
    """One API call in progress (possibly running as a task)."""

    def __init__(
        self, sim: Simulator, conn: Conn, method: str, session: str | None, task: str | None
    ) -> None:
        self.sim = sim
        self.store: Store = sim.store
        self.dm: Datamodel = sim.dm
        self.lock = sim.store.lock
        self.conn = conn
        self.method = method
        self.session = session
        self.task = task
        self._own_task = False

    # --- tasks and simulated duration

    def ensure_task(self) -> str:
        """The task this call runs under (xapi gives sync calls one too)."""
        if self.task is None:
            self.task = new_task(self.sim, self.method, self.session, cancellable=False)
            self._own_task = True
        return self.task

    def subcall(self, method: str) -> Context:
        """An API call this one makes itself (xapi's Helpers.call_api_functions): a
        task of its own, marked ``subtask_of`` this call's, as Context.with_subcontext
        marks it (clients show it as a step of its parent, not a task of its own)."""
        sub = Context(self.sim, self.conn, method, self.session, None)
        self.store.update(sub.ensure_task(), {"subtask_of": self.ensure_task()})
        return sub

    def finish_own_task(self) -> None:
        if self._own_task and self.task and self.store.exists(self.task):
            self.store.destroy(self.task)
        self._own_task = False

    def work(self, weight: float = 1.0, steps: int = 4) -> None:
        """Spend ``weight`` x the simulator's operation time, reporting progress and
        honouring task.cancel (when the task is cancellable: taskHelper.ml
        exn_if_cancelling). Must be called without holding the store lock."""
        total = self.sim.op_time * weight
        task = self.task
        store = self.store
        for i in range(steps):
            if total > 0:
                time.sleep(total / steps)
            if task is None or not store.exists(task, "task"):
                continue
            with self.lock:
                if is_cancelling(store.get(task, "task")):
                    raise XapiFailure("TASK_CANCELLED", task)
                store.update(task, {"progress": round((i + 1) / (steps + 1), 3)})

    @contextmanager
    def operation(self, ref: str, op: str) -> Iterator[str]:
        """Mark ``op`` in ``ref``'s current_operations (keyed by the task) for the
        duration, so allowed_operations and other callers see it."""
        task = self.ensure_task()
        with self.lock:
            self.store.set_map_key(ref, "current_operations", task, op)
        try:
            yield task
        finally:
            with self.lock:
                if self.store.exists(ref):
                    self.store.del_map_key(ref, "current_operations", task)


def is_cancelling(task_row: Row) -> bool:
    """taskHelper.ml is_cancelling: task.cancel put ``cancel`` in current_operations.
    Only an operation that made its task cancellable (allowed_operations) heeds it."""
    return "cancel" in task_row["allowed_operations"] and any(
        op == "cancel" for op in task_row["current_operations"].values()
    )


def new_task(sim: Simulator, label: str, session: str | None, cancellable: bool) -> str:
    store = sim.store
    return store.create(
        "task",
        {
            "name_label": label,
            "name_description": "",
            "created": now_datetime(),
            "finished": DateTime("19700101T00:00:00Z"),
            "status": "pending",
            "progress": 0.0,
            "resident_on": sim.master_ref(),
            "allowed_operations": ["cancel"] if cancellable else [],
            "other_config": {},
            "type": "<none/>",
            "result": "",
            "error_info": [],
            "backtrace": "()",
        },
    )


def complete_task(sim: Simulator, task: str, result: Any) -> None:
    """taskHelper.ml complete: the result is an XML-RPC value fragment."""
    store = sim.store
    with store.lock:
        if not store.exists(task, "task"):
            return
        if store.get(task, "task")["status"] != "pending":
            _destroy_if_asked(sim, task)
            return
        store.update(
            task,
            {
                "status": "success",
                "progress": 1.0,
                "finished": now_datetime(),
                "allowed_operations": [],
                "result": xml_value("" if result is None else result),
            },
        )
        _destroy_if_asked(sim, task)


def fail_task(sim: Simulator, task: str, failure: XapiFailure) -> None:
    store = sim.store
    with store.lock:
        if not store.exists(task, "task"):
            return
        if store.get(task, "task")["status"] != "pending":
            _destroy_if_asked(sim, task)
            return
        store.update(
            task,
            {
                "status": "cancelled" if failure.code == "TASK_CANCELLED" else "failure",
                "progress": 1.0,
                "finished": now_datetime(),
                "allowed_operations": [],
                "error_info": [failure.code, *failure.params],
                "backtrace": "()",
            },
        )
        _destroy_if_asked(sim, task)


def _destroy_if_asked(sim: Simulator, task: str) -> None:
    """task.destroy of a pending task leaves ``destroy`` in its current_operations;
    xapi's GC then removes it once complete (db_gc_util.ml timeout_tasks)."""
    ops = sim.store.get(task, "task")["current_operations"].values()
    if "destroy" in ops:
        sim.store.destroy(task)


# ---------------------------------------------------------------- coercion

_OCAML_INT = re.compile(
    r"[-+]?(?:0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[oO][0-7][0-7_]*|0[bB][01][01_]*|[0-9][0-9_]*)"
)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64_of_string(s: str) -> int:
    """OCaml's Int64.of_string: decimal (or 0x/0o/0b) digits with '_' separators,
    no surrounding spaces; out-of-range decimal values fail."""
    if _OCAML_INT.fullmatch(s) is None:
        raise _Unmarshal("Int64.of_string")
    text = s.replace("_", "")
    sign = -1 if text.startswith("-") else 1
    body = text.lstrip("+-")
    if body[:2].lower() in ("0x", "0o", "0b"):
        n = int(body[2:], {"x": 16, "o": 8, "b": 2}[body[1].lower()])
        if n > 2**64 - 1:
            raise _Unmarshal("Int64.of_string")
        n = n - 2**64 if n > INT64_MAX else n  # wraps, as OCaml does
        return sign * n
    n = sign * int(body)
    if not INT64_MIN <= n <= INT64_MAX:
        raise _Unmarshal("Int64.of_string")
    return n


class _Unmarshal(Exception):
    """An OCaml ``Failure`` raised while unmarshalling an argument."""


def _expected(what: str, v: Any) -> _Unmarshal:
    return _Unmarshal(f"Expected {what}, got '{rpc_repr(v)}'")


def _unmarshal(v: Any, t: XType, dm: Datamodel) -> Any:
    """One argument as the generated server unmarshals it (ocaml-rpc rpc.ml):
    int64 takes Int or String, float Float, Int or String, bool only Bool, strings
    and refs only String, datetimes String or DateTime."""
    k = t.kind
    if k in ("string", "ref"):
        if isinstance(v, str) and not isinstance(v, DateTime):
            return v
        raise _expected("string", v)
    if k == "enum":
        if not isinstance(v, str) or isinstance(v, DateTime):
            raise _expected("string", v)
        values = dm.enums.get(t.name)
        if values is not None:
            for e in values:
                if e.lower() == v.lower():
                    return e
            raise _Unmarshal(f"Unknown {t.name} value: {v}")
        return v
    if k == "int":
        if isinstance(v, bool):
            raise _expected("int64", v)
        if isinstance(v, int):
            return v
        if isinstance(v, str) and not isinstance(v, DateTime):
            return _int64_of_string(v)
        raise _expected("int64", v)
    if k == "float":
        if isinstance(v, bool):
            raise _expected("float", v)
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str) and not isinstance(v, DateTime):
            try:
                return float(v.replace("_", ""))
            except ValueError:
                raise _Unmarshal("float_of_string") from None
        raise _expected("float", v)
    if k == "bool":
        if isinstance(v, bool):
            return v
        raise _expected("bool", v)
    if k == "datetime":
        if isinstance(v, str):
            return DateTime(v)
        raise _Unmarshal("Date.t_of_rpc")
    if k == "set":
        if not isinstance(v, list):
            raise _expected("list", v)
        assert t.inner is not None
        return [_unmarshal(x, t.inner, dm) for x in v]
    if k == "map":
        if not isinstance(v, dict):
            raise _expected("dict", v)
        assert t.value is not None and t.key is not None
        out = {}
        for kk, x in v.items():
            key = str(_unmarshal(kk, t.key, dm)) if t.key.kind != "string" else kk
            out[key] = _unmarshal(x, t.value, dm)
        return out
    if k == "record":
        if not isinstance(v, dict):
            raise _Unmarshal("bad __structure")
        return coerce_record(v, dm.classes[t.name], dm)
    return v


def coerce(v: Any, t: XType, dm: Datamodel, where: str = "") -> Any:
    """Unmarshal one argument; a mismatch is INTERNAL_ERROR with the text of the
    OCaml exception (ExnHelper.error_of_exn: ``Failure("Expected bool, got 'S(x)'")``)."""
    try:
        return _unmarshal(v, t, dm)
    except _Unmarshal as e:
        raise internal_error(ocaml_failure(str(e))) from e


def coerce_record(v: dict[str, Any], cdef: ClassDef, dm: Datamodel) -> dict[str, Any]:
    """A constructor record: settable fields; missing ones take their default, and a
    missing field without one fails like xapi (Dispatcher_FieldNotFound)."""
    out: dict[str, Any] = {}
    for fname, f in cdef.fields.items():
        if f.qualifier == "RO/runtime":
            continue
        if fname in v:
            try:
                out[fname] = _unmarshal(v[fname], f.type, dm)
            except _Unmarshal as e:
                raise internal_error(ocaml_failure(str(e))) from e
        elif f.has_default:
            d = f.default
            out[fname] = dict(d) if isinstance(d, dict) else list(d) if isinstance(d, list) else d
        elif fname == "uuid":
            continue
        else:
            raise internal_error(f"Server_helpers.Dispatcher_FieldNotFound({ocaml_string(fname)})")
    return out


# ---------------------------------------------------------------- dispatcher


ASYNC_PREFIXES = ("Async.", "InternalAsync.")


def strip_async(method: str) -> tuple[str, bool]:
    """server_helpers.ml sync_ty_and_maybe_remove_prefix."""
    for prefix in ASYNC_PREFIXES:
        if method.startswith(prefix):
            return method[len(prefix) :], True
    return method, False


class Dispatcher:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.dm = sim.dm
        self.wire: dict[str, MessageDef] = {}
        self.sync_alias: dict[str, MessageDef] = {}
        for cdef in self.dm.classes.values():
            for m in cdef.messages.values():
                self.wire[m.wire_name] = m
                self.sync_alias[f"{m.cls}_{m.name}"] = m
        # messages whose lifecycle is Removed still dispatch: they check the session
        # and answer MESSAGE_REMOVED (gen_server.ml)
        self.removed: set[str] = set()
        for cname, names in self.dm.removed_messages.items():
            for n in names:
                self.removed.add(f"{cname}.{n}")
                self.removed.add(f"{cname}_{n}")

    def list_methods(self) -> list[str]:
        """system.listMethods: the synchronous wire name of every message, class by
        class (gen_server.ml); no Async variants, no system.* names."""
        names: list[str] = []
        for cname, cdef in self.dm.classes.items():
            names += [m.wire_name for m in cdef.messages.values()]
            names += [f"{cname}.{n}" for n in self.dm.removed_messages.get(cname, [])]
        return names

    def lookup(self, method: str) -> tuple[MessageDef | None, bool]:
        name, is_async = strip_async(method)
        m = self.wire.get(name) or self.sync_alias.get(name)
        return m, is_async

    def call(self, method: str, params: list[Any], conn: Conn) -> Any:
        """One RPC, with xapi's checks in xapi's order (gen_server.ml dispatch_call):
        UTF-8 of every parameter, the method, the parameter count, unmarshalling,
        the session, then async support, then the operation."""
        for p in params:
            _check_utf8(p)
        name, is_async = strip_async(method)
        if name == "system.listMethods":
            return self.list_methods()
        if name in self.removed:
            return self.removed_message(params, conn)
        m = self.wire.get(name) or self.sync_alias.get(name)
        if m is None:
            return self.unknown(name, params, conn)
        required = [p for p in m.params if p[1] not in m.defaults]
        n_args = len(params) - (1 if m.takes_session else 0)
        if len(required) == len(m.params):
            count_ok = n_args == len(required)
        else:  # the generated pattern is `a :: b :: default_args`: extras are ignored
            count_ok = n_args >= len(required)
        if not count_ok or (m.takes_session and not params):
            raise XapiFailure(
                "MESSAGE_PARAMETER_COUNT_MISMATCH", m.wire_name, len(required), n_args
            )
        raw = list(params[1:] if m.takes_session else params)
        session: str | None = None
        if m.takes_session:
            session = coerce(params[0], _SESSION_TYPE, self.dm)
        args = []
        for i, (t, pname) in enumerate(m.params):
            v = raw[i] if i < len(raw) else m.defaults[pname]
            args.append(coerce(v, t, self.dm))
        if session is not None:
            self.check_session(session, conn)
        if is_async and not m.can_async:
            raise XapiFailure("Fault", f"No async mode for this operation (rpc: {name})")
        spec = HANDLERS.get(m.wire_name)
        if is_async:
            return self.start_async(m, spec, args, session, conn, label=method)
        ctx = Context(self.sim, conn, m.wire_name, session, None)
        if m.can_async:
            # Context.of_http_req: a sync call of a message that has an async mode
            # runs under a real task in the database, destroyed when it returns
            ctx.task = new_task(self.sim, method, session, cancellable=False)
            ctx._own_task = True
        try:
            result = self.run(m, spec, ctx, args)
        finally:
            ctx.finish_own_task()
        return "" if result is None else result

    def unknown(self, name: str, params: list[Any], conn: Conn) -> Any:
        """Not a built-in message (gen_server.ml): ``system.isAlive:<x>`` echoes its
        first parameter; with parameters the first is checked as a session and the
        call goes to the host extensions, which know nothing of it
        (xapi_extensions.ml); either way MESSAGE_METHOD_UNKNOWN [name]."""
        if name.startswith("system.isAlive:"):
            if not params:
                raise internal_error(ocaml_failure("hd"))
            return params[0]
        if params:
            session = coerce(params[0], _SESSION_TYPE, self.dm)
            self.check_session(session, conn)
        raise XapiFailure("MESSAGE_METHOD_UNKNOWN", name)

    def removed_message(self, params: list[Any], conn: Conn) -> Any:
        if not params:
            raise internal_error(ocaml_failure("hd"))
        session = coerce(params[0], _SESSION_TYPE, self.dm)
        self.check_session(session, conn)
        raise XapiFailure("MESSAGE_REMOVED")

    def check_session(self, session: str, conn: Conn) -> None:
        """session_check.ml: an unknown session is SESSION_INVALID; a (non-pool)
        session used on a pool member is HOST_IS_SLAVE [master address]. With a
        session timeout, a session unused for longer has expired (xapi destroys it in
        its periodic GC; the next call finds it gone)."""
        sim = self.sim
        row = sim.store.tables["session"].get(session)
        if row is None:
            raise XapiFailure("SESSION_INVALID", session)
        if sim.session_timeout is not None:
            used = sim.runtime.session_used
            now = time.monotonic()
            if now - used.get(session, now) > sim.session_timeout:
                sim.expire_sessions(session)
                raise XapiFailure("SESSION_INVALID", session)
            used[session] = now
        if not conn.unix and conn.host != sim.master_ref() and not row["pool"]:
            raise XapiFailure("HOST_IS_SLAVE", sim.master_address())

    def run(self, m: MessageDef, spec: HandlerSpec | None, ctx: Context, args: list[Any]) -> Any:
        if self.sim.faults.take_failure(m.wire_name):
            raise internal_error(f"injected fault: {m.wire_name} failed")
        if spec is not None:
            return spec.fn(ctx, *args)
        return self.generic(m, ctx, args)

    def start_async(
        self,
        m: MessageDef,
        spec: HandlerSpec | None,
        args: list[Any],
        session: str | None,
        conn: Conn,
        label: str | None = None,
    ) -> str:
        sim = self.sim
        task = new_task(
            sim, label or f"Async.{m.wire_name}", session, bool(spec and spec.cancellable)
        )
        ctx = Context(sim, conn, m.wire_name, session, task)

        def runner() -> None:
            try:
                result = self.run(m, spec, ctx, args)
            except XapiFailure as f:
                fail_task(sim, task, f)
            except Exception as e:  # a bug in the simulator shows as xapi would show it
                fail_task(sim, task, internal_error(repr(e)))
            else:
                complete_task(sim, task, result)

        t = threading.Thread(target=runner, name=f"task {m.wire_name}", daemon=True)
        t.start()
        sim.track_thread(t)
        return task

    # ------------------------------------------------------------ generic messages

    def generic(self, m: MessageDef, ctx: Context, args: list[Any]) -> Any:
        store = ctx.store
        cls, name = m.cls, m.name
        cdef = self.dm.classes[cls]
        if not m.implicit:
            raise XapiFailure("NOT_IMPLEMENTED", m.wire_name)
        if name == "get_all":
            return list(store.all(cls))
        if name == "get_all_records":
            return dict(store.all(cls))
        if name in ("get_all_records_where", "get_all_where"):
            pred = compile_expr(args[0], cls, list(cdef.fields))
            with ctx.lock:
                hits = {r: row for r, row in store.all(cls).items() if pred(row)}
            return hits if name == "get_all_records_where" else list(hits)
        if name == "get_record":
            return store.get(args[0], cls)
        if name == "get_by_uuid":
            return store.by_uuid(cls, args[0])
        if name == "get_by_name_label":
            label = args[0]
            return [r for r, row in store.all(cls).items() if row.get("name_label") == label]
        if name == "create":
            return self.generic_create(ctx, cls, args[0])
        if name == "destroy":
            store.get(args[0], cls)
            store.destroy(args[0])
            return None
        if name.startswith("get_") and name[4:] in cdef.fields:
            return store.get(args[0], cls)[name[4:]]
        if name.startswith("set_") and name[4:] in cdef.fields:
            store.get(args[0], cls)
            store.update(args[0], {name[4:]: args[1]})
            return None
        if name.startswith("add_to_") and name[7:] in cdef.fields:
            fname = name[7:]
            with ctx.lock:
                row = store.get(args[0], cls)
                if args[1] in row[fname]:
                    # Db_exn.Duplicate_key (table, column, uuid, key)
                    raise XapiFailure(
                        "MAP_DUPLICATE_KEY", cls, db_column(cls, fname), row.get("uuid", ""),
                        args[1],
                    )
                store.set_map_key(args[0], fname, args[1], args[2])
            return None
        if name.startswith("remove_from_") and name[12:] in cdef.fields:
            with ctx.lock:
                store.get(args[0], cls)
                store.del_map_key(args[0], name[12:], args[1])
            return None
        if name.startswith("add_") and name[4:] in cdef.fields:
            with ctx.lock:
                store.get(args[0], cls)
                store.add_to_set(args[0], name[4:], args[1])
            return None
        if name.startswith("remove_") and name[7:] in cdef.fields:
            with ctx.lock:
                store.get(args[0], cls)
                store.remove_from_set(args[0], name[7:], args[1])
            return None
        raise XapiFailure("NOT_IMPLEMENTED", m.wire_name)

    def generic_create(self, ctx: Context, cls: str, record: dict[str, Any]) -> str:
        store = ctx.store
        for fname, value in record.items():
            f = self.dm.classes[cls].fields[fname]
            if f.type.kind == "ref" and value != NULL_REF and not store.exists(value):
                raise XapiFailure("HANDLE_INVALID", f.type.name, value)
        return store.create(cls, record)


_SESSION_TYPE = XType("ref", name="session")


def _valid_utf8(v: Any) -> bool:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, list):
        return all(_valid_utf8(x) for x in v)
    if isinstance(v, dict):
        return all(_valid_utf8(k) and _valid_utf8(x) for k, x in v.items())
    return True


def _check_utf8(v: Any) -> None:
    """gen_server.ml: every parameter, printed with Rpc.to_string, must be UTF-8,
    else INVALID_VALUE ["Invalid UTF-8 string in parameter", <Rpc.to_string p>]."""
    if not _valid_utf8(v):
        raise XapiFailure("INVALID_VALUE", "Invalid UTF-8 string in parameter", rpc_repr(v))


__all__ = [
    "HANDLERS",
    "Conn",
    "Context",
    "Dispatcher",
    "Row",
    "api",
    "coerce",
    "complete_task",
    "fail_task",
    "new_task",
]
