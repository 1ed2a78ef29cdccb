"""xapi's database filter language, as used by ``C.get_all_records_where(expr)``.

Grammar (ocaml/database/db_filter.ml)::

    expr  := "true" | "false" | expr "and" expr | expr "or" expr | "not" expr
           | "(" expr ")" | value "=" value | value "<>" value
    value := 'field "name"' | 'literal "text"' | '"text"'

Field names with a namespace use ``__`` (``name__label``). Values compare as xapi
stores them: strings, with bools as ``true``/``false`` and numbers in decimal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from xsctl.sim.errors import XapiFailure

Pred = Callable[[dict[str, Any]], bool]

_TOKEN = re.compile(r'\s*(?:(\()|(\))|(<>)|(=)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise XapiFailure("INTERNAL_ERROR", f"Db_filter.Expression_error: {expr}")
        pos = m.end()
        if m.group(1):
            out.append(("(", "("))
        elif m.group(2):
            out.append((")", ")"))
        elif m.group(3):
            out.append(("op", "<>"))
        elif m.group(4):
            out.append(("op", "="))
        elif m.group(5) is not None:
            out.append(("str", m.group(5).replace('\\"', '"')))
        else:
            out.append(("word", m.group(6).lower()))
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


def db_string(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "(" + " ".join(f"'{db_string(x)}'" for x in v) + ")"
    if isinstance(v, dict):
        return "(" + " ".join(f"('{k}' '{db_string(x)}')" for k, x in v.items()) + ")"
    return str(v)


class _Parser:
    def __init__(self, expr: str) -> None:
        self.expr = expr
        self.toks = _tokens(expr)
        self.i = 0

    def fail(self) -> XapiFailure:
        return XapiFailure("INTERNAL_ERROR", f"Db_filter.Expression_error: {self.expr}")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise self.fail()
        self.i += 1
        return t

    def parse(self) -> Pred:
        p = self.parse_or()
        if self.peek() is not None:
            raise self.fail()
        return p

    def parse_or(self) -> Pred:
        left = self.parse_and()
        while self.peek() == ("word", "or"):
            self.take()
            right = self.parse_and()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def parse_and(self) -> Pred:
        left = self.parse_not()
        while self.peek() == ("word", "and"):
            self.take()
            right = self.parse_not()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def parse_not(self) -> Pred:
        if self.peek() == ("word", "not"):
            self.take()
            inner = self.parse_not()
            return lambda r: not inner(r)
        return self.parse_atom()

    def parse_atom(self) -> Pred:
        t = self.peek()
        if t == ("(", "("):
            self.take()
            p = self.parse_or()
            if self.take() != (")", ")"):
                raise self.fail()
            return p
        if t == ("word", "true"):
            self.take()
            return lambda r: True
        if t == ("word", "false"):
            self.take()
            return lambda r: False
        left = self.parse_value()
        kind, op = self.take()
        if kind != "op":
            raise self.fail()
        right = self.parse_value()
        if op == "=":
            return lambda r: left(r) == right(r)
        return lambda r: left(r) != right(r)

    def parse_value(self) -> Callable[[dict[str, Any]], str]:
        kind, text = self.take()
        if kind == "word" and text == "field":
            k2, name = self.take()
            if k2 != "str":
                raise self.fail()
            fname = name.replace("__", "_")  # namespaced DB columns: name__label
            return lambda r: db_string(r.get(fname, ""))
        if kind == "word" and text == "literal":
            k2, lit = self.take()
            if k2 != "str":
                raise self.fail()
            return lambda r: lit
        if kind == "str":
            return lambda r: text
        raise self.fail()


def compile_expr(expr: str) -> Pred:
    return _Parser(expr).parse()
