"""RPC dispatch in xapi's order (ocaml/idl/ocaml_backend/gen_server.ml,
ocaml/xapi/server_helpers.ml): UTF-8 check, method lookup, argument count,
unmarshalling, session check, then the operation itself.

Behaviour written by hand registers with :func:`api`; every other message of the
datamodel is served generically (get_all, get_record, get_<field>, set_<field> where
the field is writable, add_to/remove_from, create, destroy, get_all_records_where).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xsctl.sim.datamodel import ClassDef, Datamodel, MessageDef, XType
from xsctl.sim.errors import XapiFailure, internal_error
from xsctl.sim.store import Store, now_datetime
from xsctl.sim.where import compile_expr
from xsctl.sim.wire import NULL_REF, DateTime, Row, xml_value

if TYPE_CHECKING:
    from xsctl.sim.simulator import Simulator

Handler = Callable[..., Any]


@dataclass(slots=True)
class HandlerSpec:
    fn: Handler
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

    def finish_own_task(self) -> None:
        if self._own_task and self.task and self.store.exists(self.task):
            self.store.destroy(self.task)
        self._own_task = False

    def work(self, weight: float = 1.0, steps: int = 4) -> None:
        """Spend ``weight`` x the simulator's operation time, reporting progress and
        honouring task.cancel. Must be called without holding the store lock."""
        total = self.sim.op_time * weight
        task = self.task
        for i in range(steps):
            if total > 0:
                time.sleep(total / steps)
            if task is None or not self.store.exists(task, "task"):
                continue
            row = self.store.get(task, "task")
            if row["status"] == "cancelling":
                raise XapiFailure("TASK_CANCELLED", task)
            self.store.update(task, {"progress": round((i + 1) / (steps + 1), 3)})

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
    if sim.store.get(task, "task")["other_config"].get("destroy_on_finish") == "true":
        sim.store.destroy(task)


# ---------------------------------------------------------------- coercion


def coerce(v: Any, t: XType, dm: Datamodel, where: str = "") -> Any:
    """Unmarshal one argument the way ocaml-rpc does (int64 accepts Int or String;
    bool only Bool; float Float/Int/String)."""
    k = t.kind
    try:
        if k in ("string", "ref"):
            if isinstance(v, str):
                return v
            raise ValueError(f"Expected string, got {v!r}")
        if k == "enum":
            if not isinstance(v, str):
                raise ValueError(f"Expected string, got {v!r}")
            values = dm.enums.get(t.name)
            if values is not None:
                for e in values:
                    if e.lower() == v.lower():
                        return e
                raise ValueError(f"Unknown value {v} for enum {t.name}")
            return v
        if k == "int":
            if isinstance(v, bool):
                raise ValueError(f"Expected int, got {v!r}")
            if isinstance(v, int):
                return int(v)
            if isinstance(v, str):
                return int(v.strip())
            if isinstance(v, float) and v.is_integer():
                return int(v)
            raise ValueError(f"Expected int64, got {v!r}")
        if k == "float":
            if isinstance(v, bool):
                raise ValueError(f"Expected float, got {v!r}")
            if isinstance(v, (int, float)):
                return float(v)
            if isinstance(v, str):
                return float(v)
            raise ValueError(f"Expected float, got {v!r}")
        if k == "bool":
            if isinstance(v, bool):
                return v
            raise ValueError(f"Expected bool, got {v!r}")
        if k == "datetime":
            if isinstance(v, str):
                return DateTime(v)
            raise ValueError(f"Expected datetime, got {v!r}")
        if k == "set":
            if not isinstance(v, list):
                raise ValueError(f"Expected array, got {v!r}")
            assert t.inner is not None
            return [coerce(x, t.inner, dm, where) for x in v]
        if k == "map":
            if not isinstance(v, dict):
                raise ValueError(f"Expected struct, got {v!r}")
            assert t.value is not None
            return {str(kk): coerce(x, t.value, dm, where) for kk, x in v.items()}
        if k == "record":
            if not isinstance(v, dict):
                raise ValueError(f"Expected struct, got {v!r}")
            return coerce_record(v, dm.classes[t.name], dm)
        return v
    except XapiFailure:
        raise
    except (ValueError, TypeError) as e:
        raise internal_error(f"Rpc.Runtime_error: {e}") from e


def coerce_record(v: dict[str, Any], cdef: ClassDef, dm: Datamodel) -> dict[str, Any]:
    """A constructor record: settable fields; missing ones take their default, and a
    missing field without one fails like xapi (Dispatcher_FieldNotFound)."""
    out: dict[str, Any] = {}
    for fname, f in cdef.fields.items():
        if f.qualifier == "RO/runtime":
            continue
        if fname in v:
            out[fname] = coerce(v[fname], f.type, dm)
        elif f.has_default:
            d = f.default
            out[fname] = dict(d) if isinstance(d, dict) else list(d) if isinstance(d, list) else d
        elif fname == "uuid":
            continue
        else:
            raise internal_error(f"Dispatcher_FieldNotFound(\"{fname}\")")
    return out


# ---------------------------------------------------------------- dispatcher


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

    def list_methods(self) -> list[str]:
        names = sorted(self.wire)
        names += sorted(f"Async.{n}" for n, m in self.wire.items() if m.can_async)
        names += ["system.listMethods", "system.isAlive"]
        return names

    def lookup(self, method: str) -> tuple[MessageDef | None, bool]:
        if method.startswith("Async."):
            m = self.wire.get(method[len("Async.") :])
            if m is not None and not m.can_async:
                raise XapiFailure(
                    "Fault", f"No async mode for this operation (rpc: {method})"
                )
            return m, True
        m = self.wire.get(method) or self.sync_alias.get(method)
        return m, False

    def call(self, method: str, params: list[Any], conn: Conn) -> Any:
        for p in params:
            _check_utf8(p)
        if method.startswith("system.isAlive"):
            return params[0] if params else ""
        m, is_async = self.lookup(method)
        if m is None:
            if params and isinstance(params[0], str) and params[0].startswith("OpaqueRef:"):
                self.check_session(params[0], conn)
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)
        args = list(params[1:] if m.takes_session else params)
        expected = len(m.params)
        if len(args) < expected:
            missing = [name for _, name in m.params[len(args) :]]
            if all(n in m.defaults for n in missing):
                args += [m.defaults[n] for n in missing]
        if len(args) != expected or (m.takes_session and not params):
            received = len(params) - (1 if m.takes_session and params else 0)
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", m.wire_name, expected, received)
        args = [coerce(a, t, self.dm) for a, (t, _) in zip(args, m.params, strict=True)]
        session: str | None = None
        if m.takes_session:
            session = params[0]
            if not isinstance(session, str):
                raise XapiFailure("SESSION_INVALID", str(session))
            self.check_session(session, conn)
        spec = HANDLERS.get(m.wire_name)
        if is_async:
            return self.start_async(m, spec, args, session, conn)
        ctx = Context(self.sim, conn, m.wire_name, session, None)
        try:
            result = self.run(m, spec, ctx, args)
        finally:
            ctx.finish_own_task()
        return "" if result is None else result

    def check_session(self, session: str, conn: Conn) -> None:
        sim = self.sim
        row = sim.store.tables["session"].get(session)
        if row is None:
            raise XapiFailure("SESSION_INVALID", session)
        if not conn.unix and conn.host != sim.master_ref():
            raise XapiFailure("HOST_IS_SLAVE", sim.master_address())

    def run(self, m: MessageDef, spec: HandlerSpec | None, ctx: Context, args: list[Any]) -> Any:
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
    ) -> str:
        sim = self.sim
        task = new_task(sim, f"Async.{m.wire_name}", session, bool(spec and spec.cancellable))
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
            pred = compile_expr(args[0])
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
                    raise XapiFailure("MAP_DUPLICATE_KEY", cls, fname, row.get("uuid", ""), args[1])
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


def _check_utf8(v: Any) -> None:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError as e:
            raise XapiFailure("INVALID_VALUE", "Invalid UTF-8 string in parameter", repr(v)) from e
    elif isinstance(v, list):
        for x in v:
            _check_utf8(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_utf8(k)
            _check_utf8(x)


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
