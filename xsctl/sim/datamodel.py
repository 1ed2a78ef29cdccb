"""The xapi datamodel, loaded from the JSON files shipped in ``xsctl/sim/data``.

``datamodel.json`` gives classes, fields, messages (wire parameter order) and errors;
``datamodel-extra.json`` adds field qualifiers, defaults, enums, parameter types and
result types. Both come from xapi's own generated datamodel (see their ``_meta``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from xsctl.sim.wire import NULL_REF, DateTime

EPOCH = DateTime("19700101T00:00:00Z")


@dataclass(frozen=True, slots=True)
class XType:
    """A parsed datamodel type string such as ``(string -> VM ref) map``."""

    kind: str  # string int float bool datetime enum ref set map record
    name: str = ""  # enum name, ref/record class
    inner: XType | None = None  # set element
    key: XType | None = None  # map key
    value: XType | None = None  # map value


_MAP_RE = re.compile(r"^\((.+?) -> (.+)\) map$")


@cache
def parse_type(text: str) -> XType:
    text = text.strip()
    m = _MAP_RE.match(text)
    if m:
        return XType("map", key=parse_type(m.group(1)), value=parse_type(m.group(2)))
    if text.endswith(" set"):
        return XType("set", inner=parse_type(text[: -len(" set")]))
    if text.endswith(" ref"):
        return XType("ref", name=text[: -len(" ref")])
    if text.endswith(" record"):
        return XType("record", name=text[: -len(" record")])
    if text.startswith("enum "):
        return XType("enum", name=text[len("enum ") :])
    if text in ("string", "int", "float", "bool", "datetime", "void"):
        return XType(text)
    # "uuid", "password", "secret" and such are strings on the wire
    return XType("string", name=text)


@dataclass(slots=True)
class FieldDef:
    name: str
    type: XType
    qualifier: str  # RW, RO/constructor, RO/runtime
    lifecycle: str
    default: Any  # already converted to a python value, or _NO_DEFAULT
    has_default: bool


@dataclass(slots=True)
class MessageDef:
    cls: str
    name: str
    params: list[tuple[XType, str]]  # without session_id
    takes_session: bool
    result: XType
    errors: list[str]
    implicit: bool
    hidden: bool
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @property
    def can_async(self) -> bool:
        """xapi's ``call`` defaults to flags [Session; Async]; implicit accessors,
        session, task and event messages are synchronous only."""
        if not self.takes_session or self.cls in ("session", "event", "task"):
            return False
        if self.implicit:
            return self.name in ("create", "destroy")
        return True


@dataclass(slots=True)
class ClassDef:
    name: str
    fields: dict[str, FieldDef]
    messages: dict[str, MessageDef]

    @property
    def has_name_label(self) -> bool:
        return "name_label" in self.fields


def _zero(t: XType, enums: dict[str, list[str]]) -> Any:
    if t.kind == "string":
        return ""
    if t.kind == "int":
        return 0
    if t.kind == "float":
        return 0.0
    if t.kind == "bool":
        return False
    if t.kind == "datetime":
        return EPOCH
    if t.kind == "ref":
        return NULL_REF
    if t.kind == "enum":
        values = enums.get(t.name) or [""]
        return values[0]
    if t.kind == "set":
        return []
    if t.kind in ("map", "record"):
        return {}
    return ""


def _parse_default(text: str, t: XType, enums: dict[str, list[str]]) -> Any:
    """Convert xapi's printed default (``"\"\""``, ``{}``, ``false``, ``1.`` ...)."""
    if t.kind == "string":
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            return text[1:-1]
        return text
    if t.kind == "int":
        return int(text)
    if t.kind == "float":
        return float(text)
    if t.kind == "bool":
        return text == "true"
    if t.kind == "datetime":
        return DateTime(text)
    if t.kind == "ref":
        return NULL_REF
    if t.kind == "enum":
        return text
    if t.kind == "set":
        inner = text.strip("{}").strip()
        if not inner:
            return []
        assert t.inner is not None
        return [_parse_default(x.strip(), t.inner, enums) for x in inner.split(";")]
    if t.kind == "map":
        inner = text.strip("{}").strip()
        out: dict[str, Any] = {}
        if inner:
            for pair in inner.split(";"):
                k, _, v = pair.partition("->")
                out[k.strip().strip('"')] = v.strip().strip('"')
        return out
    return _zero(t, enums)


class Datamodel:
    """Classes, messages, errors and enums of the xapi API."""

    def __init__(self, base: dict[str, Any], extra: dict[str, Any]) -> None:
        self.errors: dict[str, list[str]] = base["errors"]
        self.enums: dict[str, list[str]] = extra["enums"]
        self.classes: dict[str, ClassDef] = {}
        # messages whose lifecycle is Removed: they still dispatch, to MESSAGE_REMOVED
        self.removed_messages: dict[str, list[str]] = {
            c: list(extra["classes"].get(c, {}).get("removed_messages", []))
            for c in base["classes"]
        }
        param_defaults: dict[str, dict[str, Any]] = {
            k: v for k, v in extra["param_defaults"].items() if not k.startswith("_")
        }
        for cname, cbase in base["classes"].items():
            cextra = extra["classes"][cname]
            fields: dict[str, FieldDef] = {}
            for fname, ftype in cbase["fields"].items():
                fx = cextra["fields"].get(fname, {})
                t = parse_type(ftype)
                has_default = "default" in fx
                default = (
                    _parse_default(fx["default"], t, self.enums)
                    if has_default
                    else _zero(t, self.enums)
                )
                fields[fname] = FieldDef(
                    fname, t, fx.get("qualifier", "RO/runtime"), fx.get("lifecycle", ""),
                    default, has_default,
                )
            messages: dict[str, MessageDef] = {}
            for mname, pnames in cbase["messages"].items():
                mx = cextra["messages"].get(mname, {})
                ptypes = {p[1]: p[0] for p in mx.get("params", [])}
                takes_session = bool(pnames) and pnames[0] == "session_id"
                params = [
                    (parse_type(ptypes.get(p, "string")), p)
                    for p in (pnames[1:] if takes_session else pnames)
                ]
                messages[mname] = MessageDef(
                    cls=cname,
                    name=mname,
                    params=params,
                    takes_session=takes_session,
                    result=parse_type(mx.get("result", "void")),
                    errors=list(mx.get("errors", [])),
                    implicit=bool(mx.get("implicit", False)),
                    hidden=bool(mx.get("hidden_from_docs", False)),
                    defaults=dict(param_defaults.get(f"{cname}.{mname}", {})),
                )
            self.classes[cname] = ClassDef(cname, fields, messages)
        # lower-case class name -> datamodel name, as event.from uses it
        self.by_lower: dict[str, str] = {c.lower(): c for c in self.classes}

    def cls(self, name: str) -> ClassDef:
        return self.classes[name]

    def default_record(self, cls: str) -> dict[str, Any]:
        """A record with every field at its default (mutable copies)."""
        out: dict[str, Any] = {}
        for f in self.classes[cls].fields.values():
            v = f.default
            if isinstance(v, dict):
                v = dict(v)
            elif isinstance(v, list):
                v = list(v)
            out[f.name] = v
        return out


@cache
def load() -> Datamodel:
    pkg = resources.files("xsctl.sim") / "data"
    base = json.loads((pkg / "datamodel.json").read_text(encoding="utf-8"))
    extra = json.loads((pkg / "datamodel-extra.json").read_text(encoding="utf-8"))
    return Datamodel(base, extra)
