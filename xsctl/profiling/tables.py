"""What a parser makes of a tool's output: tables of typed cells, the facts from its
header lines, the lines it could not read, and, when nothing could be read, why.

A parser never raises on its input: text from a host is untrusted, and a tool's
format moves between versions. What it does not understand it lists in
``problems`` (a few lines are not worth losing the table for); when it finds no
table at all it says so in ``error``, and the raw text is still there to read.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Cell = str | int | float | None


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool = False
    unit: str = ""  # "%", "MHz", "ms", "KiB"


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def column(self, key: str) -> int:
        return next(i for i, c in enumerate(self.columns) if c.key == key)

    def values(self, key: str) -> list[Cell]:
        i = self.column(key)
        return [r[i] for r in self.rows]

    def records(self) -> list[dict[str, Cell]]:
        keys = [c.key for c in self.columns]
        return [dict(zip(keys, r, strict=True)) for r in self.rows]


@dataclass(frozen=True)
class Parsed:
    tool: str  # "xentop", "perf report", ...
    tables: tuple[Table, ...] = ()
    facts: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()  # "line 12: ..." for the lines not understood
    error: str | None = None  # nothing could be read: why

    @property
    def ok(self) -> bool:
        return self.error is None

    def fact(self, key: str) -> str | None:
        return next((v for k, v in self.facts if k == key), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "tool": self.tool,
            "error": self.error,
            "facts": dict(self.facts),
            "tables": [{"title": t.title,
                        "columns": [{"key": c.key, "label": c.label, "unit": c.unit}
                                    for c in t.columns],
                        "rows": t.records()} for t in self.tables],
            "problems": list(self.problems),
        }


def failed(tool: str, why: str, problems: Iterable[str] = (),
           facts: Iterable[tuple[str, str]] = ()) -> Parsed:
    return Parsed(tool, (), tuple(facts), tuple(problems), why)


@dataclass
class Problems:
    """The lines a parser skipped, with their numbers (at most ``limit`` kept)."""

    limit: int = 50
    items: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, lineno: int, line: str, why: str = "not understood") -> None:
        self.count += 1
        if len(self.items) < self.limit:
            shown = line.strip()
            if len(shown) > 120:
                shown = shown[:119] + "…"
            self.items.append(f"line {lineno}: {why}: {shown!r}")

    def done(self) -> tuple[str, ...]:
        more = self.count - len(self.items)
        return (*self.items, f"... and {more} more") if more > 0 else tuple(self.items)


# ---------------------------------------------------------------- cells

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def to_int(text: str) -> int | None:
    """An integer cell; None for ``-``, ``n/a`` and anything else that is not one."""
    t = text.strip().replace(",", "")
    return int(t) if _INT.fullmatch(t) and len(t) < 40 else None


def to_float(text: str) -> float | None:
    """A number cell (``5.3e-04``, ``91.8%``); None when it is not one, or not finite."""
    t = text.strip().rstrip("%").replace(",", "")
    if not _FLOAT.fullmatch(t) or len(t) > 60:
        return None
    v = float(t)
    return v if math.isfinite(v) else None


def lines_of(text: str) -> list[str]:
    """The lines of a tool's output: CRLF or LF, tabs kept, NULs gone."""
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def cell(v: object) -> Cell:
    if v is None or isinstance(v, (str, float)):
        return v
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, int):
        return v
    return str(v)


def table(title: str, columns: Sequence[Column], rows: Iterable[Sequence[object]]) -> Table:
    """A table; each row cut or filled to the columns' count."""
    width = len(columns)
    fixed = []
    for r in rows:
        cells = tuple(cell(v) for v in tuple(r)[:width])
        fixed.append(cells + (None,) * (width - len(cells)))
    return Table(title, tuple(columns), tuple(fixed))
