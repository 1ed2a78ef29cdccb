"""What xapi's HTTP handlers beside RPC have in common: authentication and the exact
shape of their error responses.

Authentication follows ocaml/xapi/xapi_http.ml (``assert_credentials_ok`` and
``with_context``): a request arriving over the dom0 Unix socket is trusted; otherwise
a ``session_id`` is looked up in the cookies first, then in the query; failing that,
HTTP Basic credentials log in (to the master) for the duration of the request; with
none of these, or a session that does not exist, the answer is ``401 Unauthorised``
with ``WWW-Authenticate: Basic realm="<handler name>"``. An unknown Authorization
scheme makes xapi raise ``Failure`` and answer ``500``.

Error responses are byte-for-byte those of ocaml/libs/http-lib (``http.ml``
``http_400_badrequest`` and friends are headers only, followed by a close;
``http_svr.ml response_unauthorised`` / ``response_internal_error`` carry a small HTML
body).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

from xsctl.sim.dispatch import Conn
from xsctl.sim.errors import XapiFailure

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator

Query = dict[str, list[str]]

CACHE = "Cache-Control: no-cache, no-store"


def arg(query: Query, name: str) -> str | None:
    """First value of a query argument (xapi's ``List.assoc``)."""
    values = query.get(name)
    return values[0] if values else None


def bool_arg(value: str | None) -> bool:
    """A query flag: on only when it says ``true``."""
    return value is not None and value.lower() == "true"


def cookies(handler: Handler) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for raw in handler.headers.get_all("Cookie") or []:
        with contextlib.suppress(CookieError):
            jar.load(raw)
    return {k: m.value for k, m in jar.items()}


def lookup_param(handler: Handler, query: Query, name: str) -> str | None:
    """xapi_http.ml lookup_param_of_req: cookies win over the query."""
    c = cookies(handler).get(name)
    return c if c is not None else arg(query, name)


def xapi_version(sim: Simulator) -> str:
    host = sim.store.get(sim.master_ref(), "host")
    return str(host["software_version"].get("xapi", "24.19"))


# ---------------------------------------------------------------- raw responses


def write_raw(handler: Handler, lines: list[str], body: bytes = b"", close: bool = True) -> None:
    """Write a status line and headers exactly as given, then ``body``."""
    head = "".join(line + "\r\n" for line in lines) + "\r\n"
    handler.wfile.write(head.encode("latin-1") + body)
    with contextlib.suppress(OSError, ValueError):
        handler.wfile.flush()
    if close:
        handler.close_connection = True


def headers_only(handler: Handler, status: str, *extra: str) -> None:
    """http.ml http_400_badrequest, http_404_missing, http_302_redirect, ...: a status
    line, ``Connection: close``, the cache header, no body; then the socket closes."""
    write_raw(handler, [f"HTTP/1.1 {status}", "Connection: close", CACHE, *extra])


def bad_request(handler: Handler) -> None:
    headers_only(handler, "400 Bad Request")


def not_found(handler: Handler) -> None:
    headers_only(handler, "404 Not Found")


def forbidden_headers(handler: Handler) -> None:
    write_raw(handler, ["HTTP/1.1 403 Forbidden", "Connection: close", CACHE])


def redirect(handler: Handler, url: str) -> None:
    headers_only(handler, "302 Found", f"Location: {url}")


def _error_html(handler: Handler, code: str, message: str, extra: list[str], body: str) -> None:
    """http_svr.ml response_error_html."""
    data = body.encode("utf-8")
    write_raw(
        handler,
        [f"HTTP/1.1 {code} {message}", f"content-length: {len(data)}",
         "content-type: text/html", "connection: close", "cache-control: no-cache, no-store",
         *extra],
        data,
    )


def unauthorised(handler: Handler, realm: str) -> None:
    _error_html(
        handler, "401", "Unauthorised", [f'WWW-Authenticate: Basic realm="{realm}"'],
        "<html><body><h1>HTTP 401 unauthorised</h1>Please check your credentials and "
        "retry.</body></html>",
    )


def internal_error(handler: Handler, extra: str | None = None) -> None:
    info = "" if extra is None else "<h1> Additional information </h1>" + extra
    _error_html(
        handler, "500", "Internal Error", [],
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; "
        "please wait a while and try again. If the problem persists, please contact your "
        "support representative." + info + "</body></html>",
    )


def failure_text(f: XapiFailure) -> str:
    """ExnHelper.string_of_exn for an API error, as xapi puts it in a 500 page."""
    return f"{f.code}: [ {'; '.join(f.params)} ]"


def html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def url_on(sim: Simulator, address: str, path: str, raw_query: str) -> str:
    """Where a redirect sends the client. xapi builds ``https://<address>/<path>``;
    the simulator's listeners share one non-standard port, so it is kept."""
    return f"{sim.url_for(address)}{path}" + (f"?{raw_query}" if raw_query else "")


# ---------------------------------------------------------------- authentication


@dataclass
class Auth:
    session: str  # the session the request runs as ("" over the Unix socket)
    temporary: bool  # created from Basic credentials: logged out afterwards


class Unauthorised(Exception):
    pass


class UnknownAuth(Exception):
    pass


def _conn_to_master(sim: Simulator) -> Conn:
    # xapi_http.ml inet_rpc: Basic credentials are checked by logging in on the master
    return Conn(host=sim.master_ref())


def _check(handler: Handler, query: Query) -> Auth:
    sim = handler.sim
    if handler.server.is_unix:
        return Auth("", False)
    session = lookup_param(handler, query, "session_id")
    if session is not None:
        if session not in sim.store.all("session"):
            raise Unauthorised
        return Auth(session, False)
    header = handler.headers.get("Authorization")
    if header is None:
        # no credentials and no client certificate: create_session_for_client_cert fails
        raise Unauthorised
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise UnknownAuth(header)
    try:
        user, _, pwd = base64.b64decode(rest.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise UnknownAuth(header) from e
    client = handler.address_string()
    try:
        ref = sim.dispatcher.call(
            "session.login_with_password",
            [user, pwd, "1.0", f"{client} using Basic auth"],
            _conn_to_master(sim),
        )
    except XapiFailure as e:
        raise Unauthorised from e
    return Auth(str(ref), True)


def authenticate(handler: Handler, query: Query, realm: str) -> Auth | None:
    """The request's credentials, or None once a 401/500 has been sent."""
    try:
        return _check(handler, query)
    except Unauthorised:
        unauthorised(handler, realm)
    except UnknownAuth as e:
        internal_error(handler, html_escape(f'Failure("Unknown authorization header: {e}")'))
    return None


def release(handler: Handler, auth: Auth) -> None:
    if auth.temporary:
        with contextlib.suppress(XapiFailure):
            handler.sim.dispatcher.call("session.logout", [auth.session],
                                        _conn_to_master(handler.sim))


@contextlib.contextmanager
def authenticated(handler: Handler, query: Query, realm: str) -> Iterator[Auth | None]:
    auth = authenticate(handler, query, realm)
    try:
        yield auth
    finally:
        if auth is not None:
            release(handler, auth)
