"""xapi's wire encodings, as emitted by mirage/ocaml-rpc (the serializer xapi uses).

XML-RPC (``Xmlrpc.string_of_response``, non-strict): strings and int64 values are
*untyped* ``<value>x</value>``; only ``valid_ref_counts`` uses ``<i4>``; floats are
``<double>%.16g</double>``; datetimes ``<dateTime.iso8601>``; no whitespace anywhere.
JSON-RPC (``Jsonrpc.string_of_response``): v1 ``{result, error, id}`` and v2 with an
error object whose ``code`` is always 1 (api_server_common.ml).
"""

from __future__ import annotations

import json
import re
import xmlrpc.client
from typing import Any

NULL_REF = "OpaqueRef:NULL"


class DateTime(str):
    """A datetime in xapi's basic ISO 8601 form ``YYYYMMDDTHH:MM:SSZ``."""

    __slots__ = ()


class Int32(int):
    """An int that goes on the XML-RPC wire as ``<i4>`` (only event.from's counts)."""

    __slots__ = ()


class Row(dict[str, Any]):
    """A published store record. Rows are never mutated after publication (the store
    copies on write), so their XML-RPC and JSON encodings are cached on the row."""

    __slots__ = ("_json", "_xml")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._xml: str | None = None
        self._json: str | None = None

    def invalidate(self) -> None:
        """Forget the cached encodings (only for in-place fix-ups before publication)."""
        self._xml = None
        self._json = None


_ESCAPE_NEEDED = re.compile(r'[<>&"\x00-\x08\x0b\x0c\x0e-\x1f]')
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _escape(s: str) -> str:
    if _ESCAPE_NEEDED.search(s) is None:
        return s
    s = _CONTROL.sub("", s)
    return (
        s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _xml(v: Any, out: list[str]) -> None:
    t = type(v)
    if t is str:
        out.append("<value>")
        out.append(_escape(v))
        out.append("</value>")
    elif t is Row:
        cached = v._xml
        if cached is None:
            parts: list[str] = []
            _xml_struct(v, parts)
            cached = v._xml = "".join(parts)
        out.append(cached)
    elif t is dict:
        _xml_struct(v, out)
    elif t is bool:
        out.append("<value><boolean>1</boolean></value>" if v else "<value><boolean>0</boolean></value>")
    elif t is int:
        out.append(f"<value>{v}</value>")
    elif t is float:
        out.append(f"<value><double>{v:.16g}</double></value>")
    elif t is list or t is tuple:
        out.append("<value><array><data>")
        for x in v:
            _xml(x, out)
        out.append("</data></array></value>")
    elif t is DateTime:
        out.append(f"<value><dateTime.iso8601>{v}</dateTime.iso8601></value>")
    elif t is Int32:
        out.append(f"<value><i4>{int(v)}</i4></value>")
    elif v is None:
        out.append("<value><nil/></value>")
    elif isinstance(v, str):
        out.append("<value>")
        out.append(_escape(str(v)))
        out.append("</value>")
    elif isinstance(v, dict):
        _xml_struct(v, out)
    elif isinstance(v, (list, tuple, set, frozenset)):
        out.append("<value><array><data>")
        for x in v:
            _xml(x, out)
        out.append("</data></array></value>")
    else:
        raise TypeError(f"cannot encode {t.__name__} for XML-RPC")


def _xml_struct(d: dict[Any, Any], out: list[str]) -> None:
    out.append("<value><struct>")
    for k, x in d.items():
        # ocaml-rpc does not escape member names
        out.append(f"<member><name>{k}</name>")
        _xml(x, out)
        out.append("</member>")
    out.append("</struct></value>")


def xml_value(v: Any) -> str:
    """One ``<value>...</value>`` fragment, as xapi writes it (and stores in task.result)."""
    out: list[str] = []
    _xml(v, out)
    return "".join(out)


def xml_response(v: Any) -> str:
    """A whole methodResponse around an already-built value (a Status struct)."""
    out = ['<?xml version="1.0"?><methodResponse><params><param>']
    _xml(v, out)
    out.append("</param></params></methodResponse>")
    return "".join(out)


def xml_success(value: Any) -> str:
    out = [
        '<?xml version="1.0"?><methodResponse><params><param><value><struct>'
        "<member><name>Status</name><value>Success</value></member>"
        "<member><name>Value</name>"
    ]
    _xml(value, out)
    out.append("</member></struct></value></param></params></methodResponse>")
    return "".join(out)


def xml_failure(code: str, params: list[str]) -> str:
    return xml_response({"Status": "Failure", "ErrorDescription": [code, *params]})


def xml_list_methods(names: list[str]) -> str:
    # system.listMethods is answered without the Status envelope (api_server.ml)
    out = ['<?xml version="1.0"?><methodResponse><params><param>']
    _xml(names, out)
    out.append("</param></params></methodResponse>")
    return "".join(out)


class RequestError(Exception):
    """A request body that cannot be parsed (answered with HTTP 500)."""


def parse_xml_request(body: bytes) -> tuple[str, list[Any]]:
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as e:  # expat errors, ResponseError, ...
        raise RequestError(str(e)) from e
    if not method:
        raise RequestError("no methodName")
    return method, [_from_xmlrpc(p) for p in params]


def _from_xmlrpc(v: Any) -> Any:
    if isinstance(v, xmlrpc.client.DateTime):
        return DateTime(v.value)
    if isinstance(v, xmlrpc.client.Binary):
        return v.data.decode("utf-8", "replace")
    if isinstance(v, list):
        return [_from_xmlrpc(x) for x in v]
    if isinstance(v, dict):
        return {k: _from_xmlrpc(x) for k, x in v.items()}
    return v


# ---------------------------------------------------------------- JSON-RPC

# Yojson (ocaml-rpc's JSON printer) writes non-ASCII characters as raw UTF-8 and
# escapes only '"', '\\', \b \f \n \r \t and the other control characters, DEL
# included, as \u00XX; it never escapes '/'. json.dumps(ensure_ascii=False) is the same
# but for DEL.
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(v: Any) -> str:
    text = _DUMPS(v)
    return text.replace("\x7f", "\\u007f") if "\x7f" in text else text


def _json(v: Any, out: list[str]) -> None:
    t = type(v)
    if t is Row:
        cached = v._json
        if cached is None:
            cached = v._json = _dumps(v)
        out.append(cached)
    elif t is dict:
        # a container that may hold rows: walk it (rows are the bulk of big replies)
        if v and any(type(x) in (Row, dict, list) for x in v.values()):
            out.append("{")
            first = True
            for k, x in v.items():
                if not first:
                    out.append(",")
                first = False
                out.append(_dumps(str(k)))
                out.append(":")
                _json(x, out)
            out.append("}")
        else:
            out.append(_dumps(v))
    elif t is list or t is tuple:
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _json(x, out)
        out.append("]")
    else:
        out.append(_dumps(v))


def json_dumps(v: Any) -> str:
    out: list[str] = []
    _json(v, out)
    return "".join(out)


def json_success(value: Any, id_: Any, version: int) -> str:
    """jsonrpc.ml json_of_response: v1 ``{result, error: null, id}``, v2
    ``{jsonrpc: "2.0", result, id}``."""
    body = json_dumps(value)
    rid = _dumps(id_)
    if version == 2:
        return f'{{"jsonrpc":"2.0","result":{body},"id":{rid}}}'
    return f'{{"result":{body},"error":null,"id":{rid}}}'


def json_failure(code: str, params: list[str], id_: Any, version: int) -> str:
    """v1: the error is the ``[code, params...]`` array; v2: an error object whose code
    is always 1 (api_server.ml callback1, api_server_common.ml error_code_lit)."""
    rid = _dumps(id_)
    if version == 2:
        err = _dumps({"code": 1, "message": code, "data": list(params)})
        return f'{{"jsonrpc":"2.0","error":{err},"id":{rid}}}'
    return f'{{"result":null,"error":{_dumps([code, *params])},"id":{rid}}}'


def parse_json_request(body: bytes) -> tuple[int, Any, str, list[Any]]:
    """Returns (version, id, method, params), as ocaml-rpc's
    ``Jsonrpc.version_id_and_call_of_string`` reads a request: ``"jsonrpc"`` absent
    means v1 and anything but ``"2.0"`` is malformed; v1 needs a ``params`` array, v2
    takes an array, an object (one struct argument), null or nothing; the id must be
    an integer or a string (no notifications). Yojson does not validate UTF-8 inside
    strings, so bytes that are not UTF-8 survive (as surrogate escapes) to meet the
    dispatcher's UTF-8 check."""
    try:
        obj = json.loads(body.decode("utf-8", "surrogateescape"))
    except ValueError as e:
        raise RequestError(str(e)) from e
    if not isinstance(obj, dict):
        raise RequestError("Invalid request body")
    method = obj.get("method")
    if not isinstance(method, str):
        raise RequestError("Invalid field 'method' in request body")
    if "jsonrpc" not in obj:
        version = 1
    elif obj["jsonrpc"] == "2.0":
        version = 2
    else:
        raise RequestError("Invalid field 'jsonrpc' in request body")
    params = obj.get("params")
    if version == 1:
        if not isinstance(params, list):
            raise RequestError("Invalid field 'params' in request body")
    elif params is None:
        params = []
    elif isinstance(params, dict):
        params = [params]
    elif not isinstance(params, list):
        raise RequestError("Invalid field 'params' in request body")
    id_ = obj.get("id")
    if isinstance(id_, bool) or not isinstance(id_, (int, str)):
        raise RequestError("Invalid field 'id' in request body")
    return version, id_, method, params


def encode_body(text: str) -> bytes:
    """UTF-8 for the response; parameters that were not valid UTF-8 (echoed in an
    INVALID_VALUE error) go back as the bytes they came in as, like xapi."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------- error texts


def rpc_repr(v: Any) -> str:
    """A parameter as OCaml's ``Rpc.to_string`` prints it (in INTERNAL_ERROR texts):
    ``S(x)``, ``I(5)``, ``B(true)``, ``F(0.5)``, ``D(...)``, ``[a;b]``, ``{k:v}``, ``N``."""
    if v is None:
        return "N"
    if isinstance(v, bool):
        return f"B({'true' if v else 'false'})"
    if isinstance(v, int):
        return f"I({v})"
    if isinstance(v, float):
        return f"F({v:g})"
    if isinstance(v, DateTime):
        return f"D({v})"
    if isinstance(v, str):
        return f"S({v})"
    if isinstance(v, (list, tuple)):
        return "[" + ";".join(rpc_repr(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ";".join(f"{k}:{rpc_repr(x)}" for k, x in v.items()) + "}"
    return str(v)


def ocaml_failure(message: str) -> str:
    """``Printexc.to_string (Failure message)``: what ExnHelper puts in INTERNAL_ERROR."""
    return "Failure(" + ocaml_string(message) + ")"


def ocaml_string(s: str) -> str:
    """OCaml's ``%S`` (``String.escaped`` in quotes): bytes outside printable ASCII
    become ``\\ddd``."""
    out = ['"']
    for b in s.encode("utf-8", "surrogateescape"):
        if b == 0x22:
            out.append('\\"')
        elif b == 0x5C:
            out.append("\\\\")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif b == 0x0D:
            out.append("\\r")
        elif b == 0x08:
            out.append("\\b")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def ocaml_float(x: float) -> str:
    """OCaml's string_of_float ("%.12g", with a trailing dot when it looks whole)."""
    s = f"{x:.12g}"
    if not any(c in s for c in ".eni"):
        s += "."
    return s
