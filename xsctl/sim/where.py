"""xapi's database filter language, as used by ``C.get_all_records_where(expr)`` and
``C.get_all_where(expr)``.

Lexer and grammar (ocaml/database/db_filter_lex.mll, db_filter_parse.mly)::

    expr  := value "=" value | expr "and" expr | expr "or" expr | "not" expr
           | "true" | "false" | "(" expr ")"
    value := '"text"' (a literal) | 'field "column"'

``and`` and ``or`` have the same precedence and associate to the left (``%left LAND
LOR``), so ``a or b and c`` is ``(a or b) and c``; ``not`` binds tighter. There is no
``<>``, no ``literal`` keyword and no escape inside quotes. Whitespace is space, tab
and newline only.

A field is named by its database column: fields inside a datamodel namespace join
with ``__`` (``name__label``, ``memory__static_max``, ``VCPUs__max``); the others keep
their API name (``power_state``). Values compare as the database stores them
(gen_db_actions.ml DM_to_String): ints in decimal, bools ``true``/``false``, floats
``%0.18g``, sets and maps as S-expressions (``('a' 'b')``, ``(('k' 'v'))``).

Errors as ExnHelper.error_of_exn makes them: a malformed expression is
``INVALID_VALUE [expr, <exception>]`` (Db_filter.Expression_error); an unknown
column, met while evaluating a row, is ``INTERNAL_ERROR ["missing field", col, ""]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xsctl.sim.errors import XapiFailure

Pred = Callable[[dict[str, Any]], bool]

# datamodel namespaces per class (ocaml/idl/datamodel*.ml `namespace ~name:...`)
NAMESPACES: dict[str, tuple[str, ...]] = {
    "VM": ("name", "memory", "VCPUs", "actions", "PV", "HVM"),
    "host": ("name", "memory", "API_version"),
    "host_metrics": ("memory",),
    "VM_metrics": ("memory", "VCPUs"),
    "VIF": ("qos",),
    "VBD": ("qos",),
    "PIF_metrics": ("io",),
    "task": ("name",),
    "network": ("name",),
    "SR": ("name",),
    "SM": ("name",),
    "VDI": ("name",),
    "role": ("name",),
}

PARSE_ERROR = "Stdlib.Parsing.Parse_error"
LEX_ERROR = 'Failure("lexing: empty token")'


def db_column(cls: str, field: str) -> str:
    """The database column that holds API field ``field`` of ``cls``."""
    for ns in NAMESPACES.get(cls, ()):
        if field.startswith(ns + "_"):
            return ns + "__" + field[len(ns) + 1 :]
    return field


def columns(cls: str, fields: list[str]) -> dict[str, str]:
    """Database column -> API field name, for the fields of ``cls``."""
    return {db_column(cls, f): f for f in fields}


def _sexp_string(s: str) -> str:
    if "\\" in s or "'" in s:
        s = s.replace("\\", "\\\\").replace("'", "\\'")
    return "'" + s + "'"


def db_string(v: Any) -> str:
    """A field value as the database stores it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _g18(v)
    if isinstance(v, (list, tuple)):
        return "(" + " ".join(_sexp_string(db_string(x)) for x in v) + ")"
    if isinstance(v, dict):
        return "(" + " ".join(
            f"({_sexp_string(str(k))} {_sexp_string(db_string(x))})" for k, x in v.items()
        ) + ")"
    return str(v)


def _g18(v: float) -> str:
    if v != v:
        return "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return f"{v:.18g}"


class _LexError(Exception):
    pass


class _ParseError(Exception):
    pass


_KEYWORDS = ("true", "false", "field", "and", "or", "not")


def _tokens(expr: str) -> list[tuple[str, str]]:
    """db_filter_lex.mll, with ocamllex's longest match (keywords are fixed strings,
    so ``trueish`` is ``true`` followed by a lexing error)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in " \t\n":
            i += 1
        elif c == "=":
            out.append(("=", c))
            i += 1
        elif c in "()":
            out.append((c, c))
            i += 1
        elif c == '"':
            j = expr.find('"', i + 1)
            if j < 0:
                raise _LexError
            out.append(("str", expr[i + 1 : j]))
            i = j + 1
        else:
            for kw in _KEYWORDS:
                if expr.startswith(kw, i):
                    out.append((kw, kw))
                    i += len(kw)
                    break
            else:
                raise _LexError
    return out


class _Parser:
    """An LALR-equivalent recursive parser for the grammar above."""

    def __init__(self, toks: list[tuple[str, str]], cols: Callable[[str], str | None]) -> None:
        self.toks = toks
        self.i = 0
        self.cols = cols

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise _ParseError
        t = self.toks[self.i]
        if kind is not None and t[0] != kind:
            raise _ParseError
        self.i += 1
        return t

    def parse(self) -> Pred:
        p = self.expr()
        if self.i != len(self.toks):
            raise _ParseError
        return p

    def expr(self) -> Pred:
        left = self.unary()
        while self.peek() in ("and", "or"):
            op = self.take()[0]
            right = self.unary()
            if op == "and":
                left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
            else:
                left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def unary(self) -> Pred:
        k = self.peek()
        if k == "not":
            self.take()
            inner = self.unary()
            return lambda r: not inner(r)
        if k == "true":
            self.take()
            return lambda r: True
        if k == "false":
            self.take()
            return lambda r: False
        if k == "(":
            self.take()
            p = self.expr()
            self.take(")")
            return p
        left = self.value()
        self.take("=")
        right = self.value()
        return lambda r: left(r) == right(r)

    def value(self) -> Callable[[dict[str, Any]], str]:
        kind, text = self.take()
        if kind == "str":
            return lambda r: text
        if kind == "field":
            _, col = self.take("str")
            api = self.cols(col)

            def lookup(r: dict[str, Any]) -> str:
                if api is None or api not in r:
                    raise XapiFailure("INTERNAL_ERROR", "missing field", col, "")
                return db_string(r[api])

            return lookup
        raise _ParseError


def compile_expr(expr: str, cls: str | None = None, fields: list[str] | None = None) -> Pred:
    """A row predicate for ``expr``. With ``cls`` and ``fields`` a column must be the
    field's database column (``name__label``); without them any ``__`` is read as
    ``_``, for callers that filter plain dicts."""
    if cls is not None and fields is not None:
        table = columns(cls, fields)

        def resolve(col: str) -> str | None:
            return table.get(col)
    else:

        def resolve(col: str) -> str | None:
            return col.replace("__", "_")

    try:
        return _Parser(_tokens(expr), resolve).parse()
    except _LexError:
        raise XapiFailure("INVALID_VALUE", expr, LEX_ERROR) from None
    except _ParseError:
        raise XapiFailure("INVALID_VALUE", expr, PARSE_ERROR) from None
