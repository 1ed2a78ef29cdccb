"""The operation catalogue: every operation xsctl performs, declared once.

An :class:`Operation` says what it acts on (a :class:`Kind`), how people name it (a
label and a key in the TUI, a verb in the CLI, the ``xe`` command), when it is
possible (its gate: an ``allowed_operations`` entry and/or a rule, each giving the
reason when it is not), whether it takes several objects, how disruptive it is (what
the confirmation asks), what it needs (typed :class:`Param` s, each listing its
choices with the reason for any that cannot be chosen), and the planner that turns
all of that into a :class:`~xsctl.xapi.ops.base.Plan`.

The TUI's keys, actions menu, command palette and help, and the CLI's subcommands
with ``--dry-run`` and ``--json``, are generated from this catalogue. An operation
is added by declaring it in the module of its area (``ops/vm.py``, ``ops/task.py``,
...); nothing else needs to know it.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
import pkgutil
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from xsctl.xapi.cache import Cache
from xsctl.xapi.errors import UsageError, XapiError, XsctlError, either
from xsctl.xapi.models import parse_size
from xsctl.xapi.ops.base import Plan


class Impact(enum.IntEnum):
    """What an operation does to a running guest, and so what its confirmation asks."""

    NONE = 0  # runs at once (start, rename, snapshot)
    DISRUPTIVE = 1  # interrupts a guest: confirmed with its plan (shut down, migrate)
    DESTRUCTIVE = 2  # loses data: confirmed with its plan in red (force off, revert, delete)


class Refused(XsctlError):
    """An operation refused by its gate or a parameter's rule, before anything was
    sent (xapi would refuse it too, or xsctl knows it makes no sense)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class Choice:
    """One thing a parameter can be set to; ``reason`` says why it cannot be chosen."""

    value: str
    label: str
    detail: str = ""
    reason: str | None = None


@dataclass(frozen=True)
class Context:
    """What planners, defaults and choices look at: the live cache and the time."""

    cache: Cache
    now: datetime


class ParamKind(enum.Enum):
    PICK = "pick"  # one of ``choices`` (a host, an SR, a snapshot)
    PICK_MANY = "pick-many"  # several of ``choices`` (disks to keep)
    TEXT = "text"  # a name
    SIZE = "size"  # bytes, written 4G, 512M, 1.5GiB
    COUNT = "count"  # a whole number in [minimum, maximum]
    FLAG = "flag"  # on or off
    PAIRS = "pairs"  # key=value pairs, as xe takes device-config:key=value
    PATH = "path"  # a file on this machine (with no flags: a positional argument)


@dataclass(frozen=True)
class Param:
    """A typed parameter of an operation. ``name`` is the planner's keyword argument.

    ``choices(ctx, obj)`` lists what a PICK or PICK_MANY may be set to; ``resolve``
    turns what a user typed (a name or UUID) into a choice's value; ``default(ctx,
    obj)`` is the text a form starts with; ``fixed(obj)`` says why the field cannot be
    changed for this object (shown, not editable)."""

    name: str
    kind: ParamKind
    label: str
    flags: tuple[str, ...]
    help: str
    required: bool = True
    choices: Callable[[Context, Any], list[Choice]] | None = None
    resolve: Callable[[Context, Any, str], str] | None = None
    default: Callable[[Context, Any], str] | None = None
    fixed: Callable[[Any], str | None] | None = None
    minimum: int = 0
    maximum: int = 2**63 - 1
    metavar: str = ""
    note: str = ""  # what a dialog asking for it says (help is the CLI option's text)
    # flags that each set a fixed value, one at most (``--ro`` / ``--rw``)
    switches: tuple[tuple[str, str], ...] = ()
    # a value need not be one of the listed choices (a new disk, ``new:10G@SR``; any
    # free position): the planner checks it; a listed one must still be choosable
    open: bool = False
    # the one choice a value is (None: not one), where listing every choice to find it
    # costs too much (every disk of a pool of 10,000, judged for a VM)
    judge: Callable[[Context, Any, str], Choice | None] | None = None

    @property
    def positional(self) -> bool:
        """Given on the command line without a flag (``block-attach VM DISK``)."""
        return not self.flags and not self.switches

    @property
    def is_form_field(self) -> bool:
        return self.kind in (ParamKind.TEXT, ParamKind.SIZE, ParamKind.COUNT, ParamKind.PATH)

    def parse_pairs(self, items: Iterable[str]) -> dict[str, str]:
        """``server=nas`` or ``device-config:server=nas`` (the way an xe user writes
        it, the prefix being the option's name) as {"server": "nas"}."""
        prefixes = tuple(f.lstrip("-") + ":" for f in self.flags)
        out: dict[str, str] = {}
        for item in items:
            text = item.strip()
            for prefix in prefixes:
                if text.startswith(prefix):
                    text = text[len(prefix):]
            key, sep, value = text.partition("=")
            key = key.strip()
            if not sep or not key:
                raise UsageError(f"{self.label}: {item!r} is not key=value")
            if key in out and out[key] != value:
                raise UsageError(f"{self.label}: {key} is given twice")
            out[key] = value
        return out

    def parse(self, text: str) -> Any:
        """A form field's or an option's text as the planner takes it."""
        if self.kind is ParamKind.TEXT:
            value = text.strip()
            if self.required and not value:
                raise UsageError(f"{self.label}: a value is needed")
            return value
        if self.kind is ParamKind.PATH:
            value = os.path.expanduser(text.strip())
            if not value:
                raise UsageError(f"{self.label}: a file name is needed")
            return value
        if self.kind is ParamKind.SIZE:
            return parse_size(text)
        if self.kind is ParamKind.COUNT:
            t = text.strip()
            if not (t.isascii() and t.isdigit()):
                raise UsageError(f"{self.label}: {text!r} is not a whole number")
            n = int(t)
            if not self.minimum <= n <= self.maximum:
                raise UsageError(
                    f"{self.label}: {n} is out of range ({self.minimum} to {self.maximum})")
            return n
        raise TypeError(f"{self.kind} is not parsed from text")


@dataclass(frozen=True)
class Kind:
    """The kind of object operations act on (VM, task, ...)."""

    cls: str  # the cache class, lower-case: "vm"
    noun: str  # "VM"
    nouns: str  # "VMs"
    resolve: Callable[[Cache, str], str]  # a name, UUID or UUID prefix -> ref
    load: Callable[[Cache, str], Any | None]  # ref -> typed model
    name: Callable[[Any], str]
    members: Callable[[Cache], Iterable[tuple[str, str]]]  # (ref, name) of each object
    # the error xapi would raise for ``op`` not in the object's allowed_operations
    explain: Callable[[Any, str], XsctlError | None]
    classes: tuple[str, ...]  # what the CLI loads to plan operations on this kind
    # the one object of its class (the pool): the CLI names none, and its operations
    # are started from a view's own keys or a wizard rather than from a row
    implicit: bool = False
    # ``explain`` where it needs more than the object: a disk's attachments, an SR's
    # PBDs and driver (xapi_vdi.ml and xapi_sr_operations.ml read them); used instead
    check: Callable[[Cache, Any, str], XsctlError | None] | None = None
    # an object named within another (a VM's device: ``block-detach VM xvdb``): the
    # CLI takes the parent first (resolved by ``parent``), then ``resolve_in`` names
    # the object among the parent's
    parent: Kind | None = None
    resolve_in: Callable[[Cache, str, str], str] | None = None
    spec_help: str = ""  # how the CLI names one (``1, xvdb, or its disk's name``)
    # objects chosen by filters rather than named one by one (``alert dismiss --all
    # --priority 5``): the filters (each a TEXT parameter, given as an option) and
    # what they select, as refs
    selectors: tuple[Param, ...] = ()
    select: Callable[[Cache, Mapping[str, Any]], list[str]] | None = None


Planner = Callable[..., Plan]


@dataclass(frozen=True)
class Operation:
    id: str  # "vm.shutdown"
    kind: Kind
    label: str  # "Shut down" (an ellipsis is added where it asks for more)
    key: str  # the TUI key
    verb: str  # the CLI verb: ``xsctl vm shutdown``
    xe: str  # the xe command the plan's xe line uses: "vm-shutdown"
    done: str  # "shut down": what the CLI prints after the name
    help: str
    plan: Planner  # plan(cache, obj, **params) -> Plan
    allowed: str | None = None  # the allowed_operations entry that gates it
    when: Callable[[Cache, Any], str | None] | None = None  # a further gate: why not
    multi: bool = False  # takes several objects at once
    impact: Impact = Impact.NONE
    params: tuple[Param, ...] = ()
    # the CLI verb's variant: selected by this flag (``--force``) or, when ``via``
    # names a parameter, by giving that parameter (``vm start --on HOST``)
    flag: str | None = None
    via: str | None = None
    footer: bool = False  # its key is shown in the footer (the few main ones)
    rules: str = ""  # what a form for it explains (xapi's rules for the values)
    # the CLI noun it is under when not its kind's: ``xsctl vdi create SR`` acts on an SR
    group: str | None = None
    # further places the CLI offers it, as "GROUP VERB": ``xsctl snapshot create VM``
    # is ``xsctl vm snapshot VM`` in xe's other words (vm-snapshot, snapshot-*)
    also: tuple[str, ...] = ()
    # one plan for several objects at once (``message.destroy_many``), where a plan
    # each would make thousands of calls: plan_many(cache, [obj, ...], **params)
    plan_many: Planner | None = None

    @property
    def menu_label(self) -> str:
        asks = any(p.kind is not ParamKind.FLAG for p in self.params)
        return self.label + ("…" if asks else "")

    @property
    def cls(self) -> str:
        return self.kind.cls

    @property
    def cli_group(self) -> str:
        return self.group or self.kind.cls


# ------------------------------------------------------------------ the registry

_OPS: dict[str, Operation] = {}
_loaded = False
_lock = threading.Lock()


def declare(*ops: Operation) -> None:
    """Add operations to the catalogue (each area module calls this once)."""
    for op in ops:
        if op.id in _OPS:
            raise ValueError(f"operation {op.id} declared twice")
        _check_signature(op)
        _OPS[op.id] = op


def _check_signature(op: Operation) -> None:
    """The planner takes exactly the declared parameters: a typo fails at import."""
    sig = inspect.signature(op.plan)
    names = [p for p in sig.parameters][2:]
    declared = [p.name for p in op.params]
    if sorted(names) != sorted(declared):
        raise TypeError(f"{op.id}: planner takes {names}, parameters declared {declared}")


def _load() -> None:
    """Import every area module of ``xsctl.xapi.ops`` (each declares its operations)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        import xsctl.xapi.ops as pkg

        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name not in ("base", "catalogue", "resolve"):
                importlib.import_module(f"{pkg.__name__}.{info.name}")
        _loaded = True


def operations(cls: str | None = None) -> list[Operation]:
    """Every operation (on ``cls`` objects), in declaration order."""
    _load()
    return [op for op in _OPS.values() if cls is None or op.cls == cls]


def get(op_id: str) -> Operation:
    _load()
    try:
        return _OPS[op_id]
    except KeyError:
        raise UsageError(f"no operation {op_id!r}") from None


def kinds() -> list[Kind]:
    seen: dict[str, Kind] = {}
    for op in operations():
        seen.setdefault(op.cls, op.kind)
    return list(seen.values())


def verbs(group: str) -> dict[str, list[Operation]]:
    """CLI verb of the ``xsctl GROUP`` command -> its variants (the plain one first)."""
    out: dict[str, list[Operation]] = {}
    for op in operations():
        if op.cli_group == group:
            out.setdefault(op.verb, []).append(op)
        for place in op.also:
            # one word: a command of its own (``xsctl block-attach``, group "")
            g, _, verb = place.rpartition(" ")
            if g == group:
                out.setdefault(verb, []).append(op)
    for variants in out.values():
        variants.sort(key=lambda o: o.flag is not None or o.via is not None)
    return out


# ------------------------------------------------------------------ gates and plans


def gate(op: Operation, cache: Cache, obj: Any) -> XsctlError | None:
    """Why ``op`` is not possible on ``obj`` now (the error it would raise), or None."""
    if op.allowed is not None:
        check = op.kind.check
        err = (check(cache, obj, op.allowed) if check is not None
               else op.kind.explain(obj, op.allowed))
        if err is not None:
            return err
    if op.when is not None:
        why = op.when(cache, obj)
        if why is not None:
            return Refused(why)
    return None


def why_not(op: Operation, cache: Cache, obj: Any) -> str | None:
    """The reason shown beside a disabled action (short: a menu line at 80 columns),
    or None where it is possible."""
    err = gate(op, cache, obj)
    if err is None:
        return None
    state = _state_phrase(_group_text(err))
    return f"it is {state}" if state else reason(err)


def reason(e: BaseException) -> str:
    """An error as one sentence for a person: xapi's friendly text without its raw
    code and refs (the TUI shows this; the CLI prints both)."""
    if isinstance(e, XapiError):
        return e.friendly
    return str(e)


def choices(param: Param, ctx: Context, obj: Any) -> list[Choice]:
    return param.choices(ctx, obj) if param.choices is not None else []


def check_choice(op: Operation, param: Param, ctx: Context, obj: Any, value: Any) -> None:
    """A picked value must be one of the choices, and one that may be chosen."""
    if param.choices is None or value is None:
        return
    values = value if param.kind is ParamKind.PICK_MANY else [value]
    judge = param.judge
    listed = {} if judge is not None else {c.value: c for c in param.choices(ctx, obj)}
    for v in values:
        c = judge(ctx, obj, v) if judge is not None else listed.get(v)
        if c is None and param.open:
            continue
        # a choice that cannot be made is bad input (exit 2), not xapi's refusal
        if c is None:
            raise UsageError(f"{param.label}: not one of the choices for "
                             f"{op.kind.name(obj)}")
        if c.reason is not None:
            raise UsageError(f"{param.label} {c.label}: {c.reason}")


def prepare(op: Operation, ctx: Context, obj: Any, values: Mapping[str, Any]) -> Plan:
    """Gate, check every parameter, then plan. Raises the error that explains a
    refusal; sends nothing."""
    err = gate(op, ctx.cache, obj)
    if err is not None:
        raise err
    for p in op.params:
        if p.name not in values:
            raise UsageError(f"{op.label}: {p.label} is missing")
        if p.fixed is not None and p.default is not None:
            why = p.fixed(obj)
            if why is not None and values[p.name] != p.parse(p.default(ctx, obj)):
                raise Refused(f"{p.label} cannot change: {why}")
        check_choice(op, p, ctx, obj, values[p.name])
    return op.plan(ctx.cache, obj, **{p.name: values[p.name] for p in op.params})


def prepare_many(op: Operation, ctx: Context, objs: Sequence[Any],
                 values: Mapping[str, Any]) -> Plan:
    """One plan for ``objs`` (an operation with ``plan_many``), each gated first; the
    first refusal is raised. Sends nothing."""
    assert op.plan_many is not None
    for obj in objs:
        err = gate(op, ctx.cache, obj)
        if err is not None:
            raise err
        for p in op.params:
            check_choice(op, p, ctx, obj, values.get(p.name))
    return op.plan_many(ctx.cache, list(objs), **{p.name: values[p.name] for p in op.params})


def defaults(op: Operation, ctx: Context, obj: Any) -> dict[str, Any]:
    """Each parameter's default value (flags off, texts as their default says)."""
    out: dict[str, Any] = {}
    for p in op.params:
        if p.kind is ParamKind.FLAG:
            out[p.name] = False
        elif p.default is not None and p.is_form_field:
            out[p.name] = p.parse(p.default(ctx, obj))
        elif p.kind is ParamKind.PICK_MANY:
            out[p.name] = frozenset()
        elif p.kind is ParamKind.PAIRS:
            out[p.name] = {}
        else:
            out[p.name] = None
    return out


# ------------------------------------------------------------------ refusals, grouped


@dataclass
class Refusals:
    """The objects an operation cannot act on, grouped by reason, so that selecting
    every VM and pressing "shut down" says "12 VMs are halted", not 12 lines."""

    kind: Kind
    items: list[tuple[str, XsctlError]] = field(default_factory=list)

    def add(self, name: str, err: XsctlError) -> None:
        self.items.append((name, err))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def lines(self) -> list[str]:
        groups: dict[str, list[tuple[str, XsctlError]]] = {}
        for name, err in self.items:
            groups.setdefault(_group_text(err), []).append((name, err))
        out = []
        for text, members in groups.items():
            if len(members) == 1:
                out.append(describe_refusal(*members[0]))
                continue
            names = [n for n, _ in members]
            state = _state_phrase(text)
            who = f"{len(names)} {self.kind.nouns} ({_some(names)})"
            out.append(f"{who} are {state}" if state else f"{who}: {text}")
        return out


def _group_text(err: XsctlError) -> str:
    if isinstance(err, XapiError) and err.code == "VM_BAD_POWER_STATE" and len(err.params) >= 3:
        # xapi_vm_lifecycle.ml: [vm, expected states, actual state]
        return f"\x00{err.params[2]}\x00{either(err.params[1])}"
    return reason(err)


def _state_phrase(text: str) -> str | None:
    if not text.startswith("\x00"):
        return None
    _, actual, expected = text.split("\x00")
    return f"{actual} (needs {expected})"


def _some(names: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def describe_refusal(name: str, err: XsctlError) -> str:
    """One object's refusal as a sentence (``web-01 is halted (this needs running)``)."""
    text = _group_text(err)
    state = _state_phrase(text)
    return f"{name} is {state}" if state else f"{name}: {text}"
