"""The simulator's bytes on the wire against xapi's.

Sources: mirage/ocaml-rpc src/lib/xmlrpc.ml (``add_value``, non-strict mode) and
src/lib/jsonrpc.ml (``json_of_response``, ``version_id_and_call_of_string``);
ocaml/xapi/api_server.ml (``callback``, ``jsoncallback``, ``callback1``, headers);
ocaml/libs/http-lib/http_svr.ml (``response_internal_error``, ``respond_to_options``,
longest-prefix dispatch); ocaml/idl/ocaml_backend/gen_server.ml (UTF-8 check,
``Class_method`` alias, system.listMethods); ocaml/xapi/server_helpers.ml (Async.).
"""

from __future__ import annotations

import json
import re
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.conftest import wait_task
from tests.sim.wirehelp import RawHttp
from xsctl.sim import Simulator
from xsctl.sim.wire import xml_value

REF = r"OpaqueRef:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
XML_HEAD = '<?xml version="1.0"?><methodResponse><params><param>'
XML_TAIL = "</param></params></methodResponse>"


def xml_ok(value_xml: str) -> str:
    return (
        XML_HEAD + "<value><struct><member><name>Status</name><value>Success</value></member>"
        "<member><name>Value</name>" + value_xml + "</member></struct></value>" + XML_TAIL
    )


def xml_fail(*desc: str) -> str:
    items = "".join(f"<value>{d}</value>" for d in desc)
    return (
        XML_HEAD + "<value><struct><member><name>Status</name><value>Failure</value></member>"
        "<member><name>ErrorDescription</name><value><array><data>" + items
        + "</data></array></value></member></struct></value>" + XML_TAIL
    )


@pytest.fixture(scope="module")
def raw(shared_sim: Simulator) -> Iterator[RawHttp]:
    h = RawHttp(shared_sim.url)
    yield h
    h.close()


@pytest.fixture(scope="module")
def session(shared_sim: Simulator, raw: RawHttp) -> str:
    r = raw.post_xml("session.login_with_password", shared_sim.user, shared_sim.password, "1.0", "wire")
    m = re.search(REF, r.text)
    assert m is not None
    return m.group(0)


_WEB01: dict[int, str] = {}


def web01(sim: Simulator) -> str:
    """web-01's ref (found once: some tests here rename it)."""
    if id(sim) not in _WEB01:
        _WEB01[id(sim)] = next(
            r for r, row in sim.store.all("VM").items() if row["name_label"] == "web-01"
        )
    return _WEB01[id(sim)]


# ---------------------------------------------------------------- XML-RPC bytes


def test_xml_success_is_untyped_string_without_whitespace(
    shared_sim: Simulator, raw: RawHttp
) -> None:
    """xmlrpc.ml add_response/add_value: a String is ``<value>s</value>``, no
    ``<string>`` tag, no whitespace or newline anywhere."""
    r = raw.post_xml("session.login_with_password", shared_sim.user, shared_sim.password)
    assert r.status == 200
    assert r.headers["content-type"] == "text/xml"
    m = re.fullmatch(
        re.escape(xml_ok("@@")).replace("@@", f"<value>({REF})</value>"), r.text
    )
    assert m, r.text
    assert "\n" not in r.text and "<string>" not in r.text


def test_xml_failure_bytes(raw: RawHttp, session: str) -> None:
    """A failure is a methodResponse with Status=Failure, never a <fault>."""
    r = raw.post_xml("VM.get_record", session, "OpaqueRef:nope")
    assert r.status == 200
    assert r.text == xml_fail("HANDLE_INVALID", "VM", "OpaqueRef:nope")


def test_xml_int64_untyped_bool_double_datetime(
    shared_sim: Simulator, raw: RawHttp, session: str
) -> None:
    """int64 untyped (clients see strings), ``<boolean>``, ``<double>%.16g``,
    ``<dateTime.iso8601>`` in xapi's basic form."""
    vm = web01(shared_sim)
    row = shared_sim.store.get(vm, "VM")
    r = raw.post_xml("VM.get_memory_static_max", session, vm)
    assert r.text == xml_ok(f"<value>{row['memory_static_max']}</value>")
    r = raw.post_xml("VM.get_is_a_template", session, vm)
    assert r.text == xml_ok("<value><boolean>0</boolean></value>")
    r = raw.post_xml("VM.get_HVM_shadow_multiplier", session, vm)
    assert r.text == xml_ok("<value><double>1</double></value>")
    metrics = row["metrics"]
    r = raw.post_xml("VM_metrics.get_start_time", session, metrics)
    assert re.fullmatch(
        re.escape(xml_ok("@@")).replace(
            "@@", r"<value><dateTime\.iso8601>\d{8}T\d\d:\d\d:\d\dZ</dateTime\.iso8601></value>"
        ),
        r.text,
    ), r.text


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.0, "1"), (0.5, "0.5"), (0.1, "0.1"), (1 / 3, "0.3333333333333333"),
     (1e20, "1e+20"), (2.5e-7, "2.5e-07"), (123456789.125, "123456789.125")],
)
def test_double_is_printf_16g(value: float, text: str) -> None:
    """xmlrpc.ml: ``Printf.bprintf buf "%.16g" d``."""
    assert xml_value(value) == f"<value><double>{text}</double></value>"


def test_xml_i4_only_in_valid_ref_counts(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """event_types.ml rpc_of_event_from: valid_ref_counts are Rpc.Int32 (``<i4>``);
    every other integer is untyped."""
    r = raw.post_xml("event.from", session, ["*"], "", 5.0)
    text = r.text
    counts = re.search(
        r"<member><name>valid_ref_counts</name><value><struct>(.*?)</struct></value></member>",
        text,
    )
    assert counts is not None
    inside = counts.group(1)
    assert inside.count("<i4>") == len(shared_sim.dm.classes)
    assert text.count("<i4>") == inside.count("<i4>")
    assert "<int>" not in text and "<i8>" not in text and "<string>" not in text
    r = raw.post_xml("VM.get_all_records", session)
    assert "<i4>" not in r.text and "<int>" not in r.text and "\n" not in r.text


def test_xml_escapes_and_drops_control_characters(
    shared_sim: Simulator, raw: RawHttp, session: str
) -> None:
    """xmlrpc.ml encode_buf: ``> < & "`` escaped, control characters other than tab,
    LF and CR dropped, everything else (UTF-8, DEL) verbatim."""
    vm = web01(shared_sim)
    name = 'a<b>&"c\x01\x1fd\te\x7fé'
    reply = RawHttp(shared_sim.url).post_json(
        {"method": "VM.set_name_label", "params": [session, vm, name], "id": 1}
    )
    assert reply.json()["error"] is None
    r = raw.post_xml("VM.get_name_label", session, vm)
    assert r.body == xml_ok('<value>a&lt;b&gt;&amp;&quot;cd\te\x7fé</value>').encode()


def test_void_is_empty_value(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """gen_server.ml: a void result marshals as ``Rpc.String ""``."""
    r = raw.post_xml("VM.set_name_description", session, web01(shared_sim), "x")
    assert r.text == xml_ok("<value></value>")


# ---------------------------------------------------------------- JSON-RPC bytes


def test_jsonrpc_v1_envelopes(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """jsonrpc.ml json_of_response V1: ``{result, error: null, id}`` /
    ``{result: null, error: [code, ...], id}``; the id comes back as sent."""
    r = raw.post_json({"method": "VM.get_power_state", "params": [session, web01(shared_sim)],
                       "id": "abc"})
    assert r.headers["content-type"] == "application/json"
    assert r.body == b'{"result":"Running","error":null,"id":"abc"}'
    r = raw.post_json({"method": "VM.get_record", "params": [session, "OpaqueRef:x"], "id": 7})
    assert r.body == b'{"result":null,"error":["HANDLE_INVALID","VM","OpaqueRef:x"],"id":7}'


def test_jsonrpc_v2_envelopes(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """V2: ``{jsonrpc, result, id}``; errors are an object with code 1
    (api_server_common.ml error_code_lit), message = the code, data = the params."""
    r = raw.post_json({"jsonrpc": "2.0", "method": "VM.get_power_state",
                       "params": [session, web01(shared_sim)], "id": 3})
    assert r.body == b'{"jsonrpc":"2.0","result":"Running","id":3}'
    r = raw.post_json({"jsonrpc": "2.0", "method": "VM.get_record",
                       "params": [session, "OpaqueRef:x"], "id": "q"})
    assert r.body == (
        b'{"jsonrpc":"2.0","error":{"code":1,"message":"HANDLE_INVALID",'
        b'"data":["VM","OpaqueRef:x"]},"id":"q"}'
    )


def test_jsonrpc_types_ints_are_numbers(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """jsonrpc.ml rpc_to_json: Int -> Intlit (a number), Float -> a number with a
    point, DateTime -> a string, Bool -> true/false; no spaces."""
    vm = web01(shared_sim)
    r = raw.post_json({"jsonrpc": "2.0", "method": "VM.get_record", "params": [session, vm],
                       "id": 1})
    assert b": " not in r.body and b", " not in r.body
    rec = r.json()["result"]
    assert type(rec["memory_static_max"]) is int
    assert type(rec["VCPUs_max"]) is int
    assert type(rec["HVM_shadow_multiplier"]) is float
    assert b'"HVM_shadow_multiplier":1.0' in r.body
    assert type(rec["is_a_template"]) is bool
    assert re.fullmatch(r"\d{8}T\d\d:\d\d:\d\dZ", rec["snapshot_time"])
    counts = raw.post_json({"method": "event.from", "params": [session, ["pool"], "", 1.0],
                            "id": 1}).json()["result"]["valid_ref_counts"]
    assert all(type(v) is int for v in counts.values())


def test_jsonrpc_writes_utf8_raw_like_yojson(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """Yojson writes non-ASCII as raw UTF-8 and escapes DEL as \\u007f."""
    vm = web01(shared_sim)
    raw.post_json({"method": "VM.set_name_description", "params": [session, vm, "café/\x7f"],
                   "id": 1})
    r = raw.post_json({"method": "VM.get_name_description", "params": [session, vm], "id": 2})
    assert r.body == '{"result":"café/\\u007f","error":null,"id":2}'.encode()


def test_jsonrpc_v2_params_object_is_one_struct_argument(raw: RawHttp) -> None:
    """jsonrpc.ml: V2 ``params`` may be an object, which is one struct argument."""
    r = raw.post_json({"jsonrpc": "2.0", "method": "session.login_with_password",
                       "params": {"uname": "root"}, "id": 1})
    assert r.json()["error"] == {
        "code": 1, "message": "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "data": ["session.login_with_password", "2", "1"],
    }


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        b'{"jsonrpc": "1.0", "method": "system.listMethods", "params": [], "id": 1}',
        b'{"method": "system.listMethods", "id": 1}',  # v1 needs params
        b'{"method": "system.listMethods", "params": []}',  # a notification
        b'{"method": "system.listMethods", "params": [], "id": null}',
        b'{"method": "system.listMethods", "params": [], "id": 1.5}',
        b'{"jsonrpc": "2.0", "method": 5, "params": [], "id": 1}',
        b'{"jsonrpc": "2.0", "method": "system.listMethods", "params": "x", "id": 1}',
    ],
)
def test_malformed_json_is_http_500_and_close(shared_sim: Simulator, body: bytes) -> None:
    """jsonrpc.ml raises Malformed_method_request; jsoncallback does not catch it and
    http_svr.ml answers 500 Internal Error with Connection: close."""
    h = RawHttp(shared_sim.url)
    r = h.post_json(body)
    assert (r.status, r.reason) == (500, "Internal Error")
    assert r.headers["content-type"] == "text/html"
    assert r.headers["connection"] == "close"
    assert r.headers["cache-control"] == "no-cache, no-store"
    assert r.body.startswith(b"<html><body><h1>HTTP 500 internal server error</h1>")
    h.close()


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b"<?xml version='1.0'?><methodCall><methodName>x</methodName>",
        b"<methodResponse><params/></methodResponse>",
        b"<?xml version='1.0'?><methodCall><params></params></methodCall>",
    ],
)
def test_malformed_xml_is_http_500(shared_sim: Simulator, body: bytes) -> None:
    h = RawHttp(shared_sim.url)
    r = h.request("POST", "/", body, {"Content-Type": "text/xml"})
    assert r.status == 500
    assert r.body.startswith(b"<html><body><h1>HTTP 500 internal server error</h1>")
    assert r.headers["connection"] == "close"
    h.close()


# ---------------------------------------------------------------- endpoints


def test_paths_slash_rpc2_and_jsonrpc(shared_sim: Simulator) -> None:
    """xapi.ml registers POST / and /RPC2 (XML-RPC) and /jsonrpc; CPython's
    ServerProxy posts to /RPC2 when the URI has no path, to / when it has one."""
    for url in (shared_sim.url, shared_sim.url + "/"):
        x = XenAPI.Session(url, ignore_ssl=True)
        x.xenapi.login_with_password(shared_sim.user, shared_sim.password)
        assert len(x.xenapi.pool.get_all()) == 1
        x.xenapi.session.logout()
    h = RawHttp(shared_sim.url)
    for path in ("/", "/RPC2", "/json"):  # /json: the legacy XML-RPC handler
        r = h.post_xml("system.listMethods", path=path)
        assert r.status == 200 and r.text.startswith(XML_HEAD + "<value><array><data>")
    r = h.post_json({"method": "system.listMethods", "params": [], "id": 0})
    assert "VM.start" in r.json()["result"]
    h.close()


def test_class_underscore_alias(shared_sim: Simulator, raw: RawHttp, session: str) -> None:
    """gen_server.ml matches ``"VM.get_all" | "VM_get_all"``; XenAPI sends
    ``event_from`` because ``from`` is a Python keyword."""
    a = raw.post_xml("VM.get_all", session).text
    b = raw.post_xml("VM_get_all", session).text
    assert a == b and "OpaqueRef:" in a
    x = XenAPI.Session(shared_sim.url, ignore_ssl=True)
    x.xenapi.login_with_password(shared_sim.user, shared_sim.password)
    batch = x.xenapi.event_from(["pool"], "", 1.0)
    assert batch["events"][0]["class"] == "pool"
    x.xenapi.session.logout()


def test_async_variant_returns_task(shared_sim: Simulator) -> None:
    """server_helpers.ml: ``Async.`` runs the call in a thread and returns the task."""
    x = XenAPI.Session(shared_sim.url, ignore_ssl=True)
    x.xenapi.login_with_password(shared_sim.user, shared_sim.password)
    task = x.xenapi.Async.VM.snapshot(web01(shared_sim), "wire-snap")
    assert re.fullmatch(REF, task)
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["name_label"] == "Async.VM.snapshot"
    x.xenapi.session.logout()


def test_async_of_a_message_without_async_mode_is_a_fault(
    shared_sim: Simulator, raw: RawHttp, session: str
) -> None:
    """server_helpers.ml do_dispatch: ``API.response_of_fault "No async mode for this
    operation (rpc: <name>)"``, i.e. ErrorDescription ["Fault", text]; it comes after
    the session check (gen_server.ml)."""
    r = raw.post_xml("Async.VM.get_record", session, web01(shared_sim))
    assert r.text == xml_fail("Fault", "No async mode for this operation (rpc: VM.get_record)")
    r = raw.post_xml("Async.event.from", session, ["*"], "", 1.0)
    assert r.text == xml_fail("Fault", "No async mode for this operation (rpc: event.from)")
    r = raw.post_xml("Async.VM.get_record", "OpaqueRef:bad", web01(shared_sim))
    assert r.text == xml_fail("SESSION_INVALID", "OpaqueRef:bad")


def test_system_list_methods(raw: RawHttp, shared_sim: Simulator) -> None:
    """api_server.ml answers system.listMethods with the bare array (no Status
    struct) on XML-RPC; gen_server.ml lists each message's synchronous wire name."""
    r = raw.post_xml("system.listMethods")
    assert r.text.startswith(XML_HEAD + "<value><array><data><value>")
    loaded: Any = xmlrpc.client.loads(r.body)[0]
    names = loaded[0]
    assert {"session.login_with_password", "VM.start", "event.from", "task.cancel",
            "VM.get_all_records_where"} <= set(names)
    assert not any(n.startswith(("Async.", "system.")) for n in names)
    assert len(names) == len(set(names))
    j = raw.post_json({"jsonrpc": "2.0", "method": "system.listMethods", "params": [], "id": 1})
    assert j.json()["result"] == names


def test_system_is_alive_echoes(raw: RawHttp) -> None:
    """gen_server.ml: ``system.isAlive:<x>`` answers its first parameter."""
    r = raw.post_xml("system.isAlive:ping", "hello")
    assert r.text == xml_ok("<value>hello</value>")


def test_cors_preflight_and_rpc_headers(shared_sim: Simulator, raw: RawHttp) -> None:
    """http_svr.ml respond_to_options; api_server.ml adds the CORS headers to
    every RPC response."""
    r = raw.request("OPTIONS", "/jsonrpc")
    assert r.status == 200 and r.body == b""
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-headers"] == "X-Requested-With"
    assert r.headers["access-control-allow-methods"] == "PUT"
    r = raw.request("OPTIONS", "/", headers={"Access-Control-Request-Headers": "content-type"})
    assert r.headers["access-control-allow-headers"] == "content-type, X-Requested-With"
    for reply in (raw.post_xml("system.listMethods"),
                  raw.post_json({"method": "system.listMethods", "params": [], "id": 1})):
        assert reply.headers["access-control-allow-origin"] == "*"
        assert reply.headers["access-control-allow-headers"] == "X-Requested-With"


def test_keep_alive_across_calls_and_protocols(shared_sim: Simulator) -> None:
    """HTTP/1.1: one connection serves XML-RPC and JSON-RPC calls in turn."""
    h = RawHttp(shared_sim.url)
    h.post_xml("system.listMethods")
    sock = h.sock
    port = sock.getsockname()[1]
    for _ in range(3):
        assert h.post_json({"method": "system.listMethods", "params": [], "id": 1}).status == 200
        assert h.post_xml("system.listMethods").status == 200
    assert h.sock is sock and h.sock.getsockname()[1] == port
    h.close()


def test_utf8_check_comes_first(shared_sim: Simulator, session: str) -> None:
    """gen_server.ml: every parameter printed with Rpc.to_string must be valid UTF-8
    (Yojson lets invalid bytes through), before the method is even looked up:
    INVALID_VALUE ["Invalid UTF-8 string in parameter", "S(<bytes>)"]."""
    h = RawHttp(shared_sim.url)
    body = b'{"method":"no.such.method","params":["' + session.encode() + b'","a\xffb"],"id":1}'
    r = h.post_json(body)
    assert r.status == 200
    assert r.body == (
        b'{"result":null,"error":["INVALID_VALUE","Invalid UTF-8 string in parameter",'
        b'"S(a\xffb)"],"id":1}'
    )
    h.close()


def test_a_big_reply_is_one_well_formed_document(shared_sim: Simulator, session: str) -> None:
    """A reply larger than socket buffers arrives whole (Content-Length framing)."""
    h = RawHttp(shared_sim.url)
    r = h.post_xml("VM.get_all_records", session)
    assert int(r.headers["content-length"]) == len(r.body)
    loaded: Any = xmlrpc.client.loads(r.body)[0]
    value = loaded[0]["Value"]
    assert len(value) == len(shared_sim.store.all("VM"))
    j = h.post_json({"method": "VM.get_all_records", "params": [session], "id": 1}).json()
    assert set(j["result"]) == set(value)
    assert json.loads(json.dumps(j)) == j
    h.close()


def _raw_exchange(sim: Simulator, request: bytes) -> tuple[list[str], bytes]:
    import socket

    from tests.sim.wirehelp import unverified

    with socket.create_connection(("127.0.0.1", sim.port), timeout=10) as plain, \
            unverified().wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        tls.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += tls.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = int(next(line.split(": ")[1] for line in lines
                          if line.startswith("content-length")))
        while len(body) < length:
            body += tls.recv(65536)
    return lines, body


def test_http_headers_as_xapi_writes_them(shared_sim: Simulator) -> None:
    """http_svr.ml response_of_request + http.ml Response.to_header_list: the status
    line in the request's version, content-length first, connection and
    cache-control, then the RPC headers (api_server.ml); no Server or Date."""
    body = xmlrpc.client.dumps((), "system.listMethods").encode()
    for version, connection in (("1.1", "keep-alive"), ("1.0", "close")):
        request = (f"POST / HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        lines, reply = _raw_exchange(shared_sim, request)
        assert lines == [
            f"HTTP/{version} 200 OK",
            f"content-length: {len(reply)}",
            f"connection: {connection}",
            "cache-control: no-cache, no-store",
            "content-type: text/xml",
            "Access-Control-Allow-Origin: *",
            "Access-Control-Allow-Headers: X-Requested-With",
        ]
    lines, reply = _raw_exchange(
        shared_sim, b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n{x}"
    )
    assert lines == [
        "HTTP/1.1 500 Internal Error",
        f"content-length: {len(reply)}",
        "content-type: text/html",
        "connection: close",
        "cache-control: no-cache, no-store",
    ]
