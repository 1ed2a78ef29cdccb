"""Reading xapi's RRD exports: ``/rrd_updates`` (rrd_updates.ml) and the full RRD of
``/host_rrd`` and ``/vm_rrd`` (rrd.ml), in every form hosts have sent.

* XML: Xmlm output, an XML declaration and no whitespace (rrd_updates.ml ``xml_of``).
* JSON, three dialects over the years:
  1. before xcp-rrd 1.10 (2023), a JavaScript object literal: keys unquoted, NaN and
     Infinity bare (``{meta: {start:1,...},data:[{t:1,values:[0.0282,NaN]}]}``); not
     JSON, and never evaluated here: a small tokenizer reads it;
  2. xcp-rrd 03cffe87 (Jul 2023): valid JSON, values as strings, but ``data`` nested
     inside ``meta``;
  3. since f60c526a (v24.11.0): ``{"meta":{...},"data":[{"t":..,"values":["..",..]}]}``.
* Numbers from rrd_utils.ml ``f_to_s``: ``%0.4f`` in old hosts, ``%0.5g`` until
  CA-404591 (v25.3.0, e-notation such as ``8.5899e+09``), ``%0.15g`` since; ``0.0``,
  ``NaN``, ``Infinity`` and ``-Infinity``.

Whatever the host sent, a reply that cannot be read raises :class:`RrdParseError`
with one line saying where; nothing else escapes.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 32  # the exports are four levels deep; deeper is not an RRD


class RrdParseError(ValueError):
    """The reply is not an RRD export this client can read (the message says why)."""


@dataclass
class RrdUpdate:
    start: int = 0
    end: int = 0
    step: int = 0
    legend: list[str] = field(default_factory=list)
    rows: list[tuple[int, list[float]]] = field(default_factory=list)  # newest first

    def latest(self) -> dict[tuple[str, str, str], float]:
        """(kind, uuid, data source) -> the newest value (NaN skipped)."""
        out: dict[tuple[str, str, str], float] = {}
        keys = [_key(name) for name in self.legend]
        for _, values in self.rows:
            for key, v in zip(keys, values, strict=False):
                if key is not None and key not in out and not math.isnan(v):
                    out[key] = v
        return out

    def series(self, cf: str = "AVERAGE") -> dict[tuple[str, str], dict[str, list[float]]]:
        """(kind, uuid) -> {data source: values oldest first} for one consolidation
        function; ``times()`` gives the matching times."""
        out: dict[tuple[str, str], dict[str, list[float]]] = {}
        oldest_first = self.rows[::-1]
        for i, name in enumerate(self.legend):
            parts = name.split(":", 3)
            if len(parts) != 4 or parts[0] != cf:
                continue
            out.setdefault((parts[1], parts[2]), {})[parts[3]] = [
                r[1][i] if i < len(r[1]) else math.nan for r in oldest_first]
        return out

    def times(self) -> list[int]:
        """The rows' times, oldest first."""
        return [t for t, _ in reversed(self.rows)]


def _key(name: str) -> tuple[str, str, str] | None:
    parts = name.split(":", 3)  # CF:objtype:uuid:ds; a ds name may hold colons
    return (parts[1], parts[2], parts[3]) if len(parts) == 4 else None


# ---------------------------------------------------------------- numbers

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_SPECIAL = {"nan": math.nan, "+nan": math.nan, "-nan": math.nan,
            "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf,
            "inf": math.inf, "+inf": math.inf, "-inf": -math.inf}


def number(v: Any, where: str) -> float:
    """A value as f_to_s writes it (or a JSON number); anything else is an error."""
    if isinstance(v, bool):
        raise RrdParseError(f"{where}: {v!r} is not a number")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if _NUMBER.match(s):
            return float(s)
        special = _SPECIAL.get(s.lower())
        if special is not None:
            return special
    raise RrdParseError(f"{where}: {_show(v)} is not a number")


def _int(v: Any, where: str) -> int:
    f = number(v, where)
    if math.isnan(f) or math.isinf(f):
        raise RrdParseError(f"{where}: {_show(v)} is not a time")
    return int(f)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- JSON

def parse_json(data: bytes | str) -> RrdUpdate:
    """Any of the three JSON dialects of /rrd_updates."""
    text = _text(data)
    try:
        doc = json.loads(text)  # Python's json also takes bare NaN and Infinity
    except ValueError:
        doc = JsLiteral(text).parse()
    except RecursionError as e:
        raise RrdParseError("nested too deeply to be an RRD export") from e
    return _updates_of(doc)


def _text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RrdParseError(f"not UTF-8 text (byte {e.start})") from e


def _updates_of(doc: Any) -> RrdUpdate:
    if not isinstance(doc, dict):
        raise RrdParseError("not an rrd_updates export: the top level is not an object")
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        raise RrdParseError("not an rrd_updates export: no meta object")
    rows = doc.get("data", meta.get("data"))  # the 2023 Yojson form had it in meta
    if rows is None:
        raise RrdParseError("not an rrd_updates export: no data")
    legend = meta.get("legend")
    if not isinstance(legend, list) or not all(isinstance(x, str) for x in legend):
        raise RrdParseError("meta.legend is not a list of names")
    if not isinstance(rows, list):
        raise RrdParseError("data is not a list of rows")
    u = RrdUpdate(start=_int(meta.get("start", 0), "meta.start"),
                  end=_int(meta.get("end", 0), "meta.end"),
                  step=_int(meta.get("step", 0), "meta.step"), legend=list(legend))
    _check_columns(meta.get("columns"), len(legend))
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not isinstance(r.get("values"), list):
            raise RrdParseError(f"data row {i + 1} has no values list")
        t = _int(r.get("t"), f"data row {i + 1} t")
        u.rows.append((t, _values(r["values"], len(legend), t)))
    return u


def _check_columns(columns: Any, n: int) -> None:
    if columns is not None and _int(columns, "meta.columns") != n:
        raise RrdParseError(f"meta.columns is {columns} but the legend has {n} names")


def _values(raw: list[Any], n: int, t: int) -> list[float]:
    if len(raw) != n:
        raise RrdParseError(f"the row at t={t} has {len(raw)} values for {n} legend names")
    return [number(v, f"the row at t={t}, value {j + 1}") for j, v in enumerate(raw)]


_TOKEN = re.compile(r"""
    \s*(?:
      (?P<punct>[{}\[\]:,])
    | (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<number>[+-]?(?:NaN|Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    )""", re.VERBOSE | re.DOTALL)


class JsLiteral:
    """The pre-2023 export: a JavaScript object literal (unquoted keys, bare NaN and
    Infinity, strings in double quotes). Read by tokens, never evaluated."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> Any:
        value = self._value(0)
        if self.text[self.pos:].strip():
            raise self._error("more text after the end of the export")
        return value

    def _error(self, what: str) -> RrdParseError:
        line = self.text.count("\n", 0, self.pos) + 1
        return RrdParseError(f"neither JSON nor the older JavaScript form: {what} "
                             f"(line {line}, character {self.pos + 1})")

    def _next(self) -> tuple[str, str]:
        m = _TOKEN.match(self.text, self.pos)
        if m is None or m.lastgroup is None:
            rest = self.text[self.pos:].lstrip()
            raise self._error(f"unexpected {_show(rest[:12])}" if rest else "unexpected end")
        self.pos = m.end()
        return m.lastgroup, m.group(m.lastgroup)

    def _peek(self) -> str:
        m = _TOKEN.match(self.text, self.pos)
        return (m.group("punct") or "") if m else ""

    def _value(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self._error("nested too deeply")
        kind, tok = self._next()
        if kind == "string":
            return self._string(tok)
        if kind == "number":
            return number(tok, "a value")
        if kind == "name":
            if tok in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[tok]
            raise self._error(f"unexpected name {tok!r}")
        if tok == "{":
            return self._object(depth)
        if tok == "[":
            return self._array(depth)
        raise self._error(f"unexpected {tok!r}")

    def _string(self, tok: str) -> str:
        try:
            s = json.loads(tok)
        except ValueError as e:
            raise self._error("a bad string") from e
        assert isinstance(s, str)
        return s

    def _object(self, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self._peek() == "}":
            self._next()
            return out
        while True:
            kind, tok = self._next()
            if kind == "string":
                key = self._string(tok)
            elif kind == "name":
                key = tok
            else:
                raise self._error(f"a key expected, found {tok!r}")
            if self._next()[1] != ":":
                raise self._error(f"':' expected after {key!r}")
            out[key] = self._value(depth + 1)
            _, sep = self._next()
            if sep == "}":
                return out
            if sep != ",":
                raise self._error(f"',' or '}}' expected, found {sep!r}")
            if self._peek() == "}":  # a trailing comma
                self._next()
                return out

    def _array(self, depth: int) -> list[Any]:
        out: list[Any] = []
        if self._peek() == "]":
            self._next()
            return out
        while True:
            out.append(self._value(depth + 1))
            _, sep = self._next()
            if sep == "]":
                return out
            if sep != ",":
                raise self._error(f"',' or ']' expected, found {sep!r}")
            if self._peek() == "]":
                self._next()
                return out


# ---------------------------------------------------------------- XML

def _xml_root(data: bytes | str, what: str) -> ET.Element:
    raw = (data.encode("utf-8") if isinstance(data, str) else data).lstrip()
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        raise RrdParseError(f"not {what}: it declares a DTD or entities")
    try:
        return ET.fromstring(raw)
    except ET.ParseError as e:
        line, col = e.position
        raise RrdParseError(f"not well-formed XML (line {line}, column {col + 1})") from e


def _no_stray_text(el: ET.Element, where: str) -> None:
    """Xmlm writes no text between elements: text there means an edited or elided
    copy (the documented example's ``...``), whose rows cannot be trusted."""
    for child in [el, *el]:
        for text in (child.text if child is el else None, child.tail):
            if text and text.strip():
                raise RrdParseError(f"stray text {_show(text.strip())} in <{where}>: "
                                    "rows elided or the reply damaged")


def parse_xml(data: bytes | str) -> RrdUpdate:
    """/rrd_updates as XML (``<xport>``)."""
    root = _xml_root(data, "an rrd_updates export")
    if root.tag != "xport":
        raise RrdParseError(f"not an rrd_updates export: the root is <{root.tag}>")
    meta = root.find("meta")
    body = root.find("data")
    if meta is None or body is None:
        raise RrdParseError("not an rrd_updates export: no <meta> or no <data>")
    legend_el = meta.find("legend")
    if legend_el is None:
        raise RrdParseError("no <legend> in <meta>")
    _no_stray_text(legend_el, "legend")
    legend = [(e.text or "").strip() for e in legend_el.findall("entry")]
    u = RrdUpdate(start=_int(meta.findtext("start", "0"), "<start>"),
                  end=_int(meta.findtext("end", "0"), "<end>"),
                  step=_int(meta.findtext("step", "0"), "<step>"), legend=legend)
    _check_columns(meta.findtext("columns"), len(legend))
    _no_stray_text(body, "data")
    for i, row in enumerate(body.findall("row")):
        _no_stray_text(row, "row")
        t = _int(row.findtext("t"), f"<row> {i + 1} <t>")
        u.rows.append((t, _values([v.text or "" for v in row.findall("v")], len(legend), t)))
    return u


def parse_updates(data: bytes, content_type: str = "") -> RrdUpdate:
    """A /rrd_updates reply in whatever form the host chose: by its Content-Type,
    else by its first character."""
    head = data.lstrip()[:1]
    if "xml" in content_type or head == b"<":
        return parse_xml(data)
    if "json" in content_type or head in (b"{", b"["):
        return parse_json(data)
    if not head:
        raise RrdParseError("the reply is empty")
    raise RrdParseError(f"neither XML nor JSON (it starts {_show(data[:12])})")


# ---------------------------------------------------------------- the full RRD


@dataclass
class Archive:
    """One RRA: ``rows`` oldest first, one value per data source."""

    cf: str
    pdp_per_row: int
    rows: list[list[float]]


@dataclass
class FullRrd:
    """/host_rrd or /vm_rrd: the whole database of one object (rrd.ml)."""

    step: int
    last_update: int
    sources: list[str]
    archives: list[Archive]

    def series(self, cf: str, pdp_per_row: int) -> tuple[list[int], dict[str, list[float]]]:
        """The times (oldest first) and per-source values of one archive."""
        for a in self.archives:
            if a.cf == cf and a.pdp_per_row == pdp_per_row:
                step = self.step * a.pdp_per_row
                last = self.last_update // step * step
                n = len(a.rows)
                times = [last - (n - 1 - i) * step for i in range(n)]
                return times, {name: [r[j] for r in a.rows]
                               for j, name in enumerate(self.sources)}
        raise KeyError(f"no {cf} archive of {pdp_per_row} steps per row")


def parse_full_rrd(data: bytes | str) -> FullRrd:
    """The XML a host serves at /host_rrd and /vm_rrd (rrd.ml xml_to_output)."""
    root = _xml_root(data, "an RRD")
    if root.tag != "rrd":
        raise RrdParseError(f"not an RRD: the root is <{root.tag}>")
    sources = [(d.findtext("name") or "").strip() for d in root.findall("ds")]
    if not sources:
        raise RrdParseError("an RRD without data sources")
    rrd = FullRrd(step=_int(root.findtext("step"), "<step>"),
                  last_update=_int(root.findtext("lastupdate"), "<lastupdate>"),
                  sources=sources, archives=[])
    if rrd.step <= 0:
        raise RrdParseError(f"<step> is {rrd.step}")
    for i, rra in enumerate(root.findall("rra")):
        where = f"<rra> {i + 1}"
        cf = (rra.findtext("cf") or "").strip()
        per_row = _int(rra.findtext("pdp_per_row"), f"{where} <pdp_per_row>")
        if per_row <= 0:
            raise RrdParseError(f"{where}: pdp_per_row is {per_row}")
        rows: list[list[float]] = []
        for j, row in enumerate(rra.findall("database/row")):
            vs = [v.text or "" for v in row.findall("v")]
            if len(vs) != len(sources):
                raise RrdParseError(f"{where} row {j + 1} has {len(vs)} values for "
                                    f"{len(sources)} data sources")
            rows.append([number(v, f"{where} row {j + 1}") for v in vs])
        rrd.archives.append(Archive(cf, per_row, rows))
    return rrd
