"""xapi URLs, read in one place: ``https://host[:port]``, ``http://`` (plain, only when
the user says so), ``unix:///path`` (xapi's socket in dom0). A host name is checked as
DNS has it, an IPv6 address may carry a zone id (RFC 6874 writes the % of
``fe80::1%eth0`` as %25), and a URL never carries a user name or password."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from xsctl.xapi.errors import UsageError

# a DNS label (RFC 1123), once the name is in its ASCII (IDNA) form
# (and "_", which /etc/hosts and some internal zones use)
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_ZONE = re.compile(r"[A-Za-z0-9._~-]{1,64}")  # an IPv6 zone id (RFC 6874)


def _check_host(host: str, bracketed: bool) -> str:
    """The host part of a URL, as a socket takes it (an IPv6 zone id decoded)."""
    if bracketed:
        addr, pct, zone = host.partition("%")
        if pct:  # RFC 6874 writes the "%" of fe80::1%eth0 as %25
            if not zone.startswith("25") or not _ZONE.fullmatch(zone[2:]):
                raise UsageError("bad IPv6 zone: write it as [fe80::1%25eth0]")
            zone = zone[2:]
        try:
            ipaddress.IPv6Address(addr)
        except ValueError:
            raise UsageError("not an IPv6 address between the brackets") from None
        return f"{addr}%{zone}" if zone else addr
    try:
        ipaddress.IPv4Address(host)
        return host
    except ValueError:
        pass
    try:
        ascii_name = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise UsageError("not a valid host name (each dot-separated part is 1 to 63 "
                         "letters, digits or '-')") from None
    labels = ascii_name.rstrip(".").split(".")
    if len(ascii_name) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise UsageError("not a valid host name (at most 253 characters, each "
                         "dot-separated part 1 to 63 letters, digits or '-')")
    return host


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a xapi URL, or a UsageError that says what is wrong.
    ``host`` is what a socket takes; ``port`` is 0 for the Unix socket."""
    if not isinstance(url, str):
        raise UsageError("a URL must be text, like https://host")
    url = url.strip()
    if not url:
        raise UsageError("empty URL")
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise UsageError("a URL cannot hold control characters")
    if url.startswith("/"):
        url = "unix://" + url
    if url.startswith("unix://"):
        path = url[len("unix://"):]
        if not path.startswith("/"):
            raise UsageError("unix:// takes an absolute path: unix:///var/lib/xcp/xapi")
        return "unix", path, 0
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unclosed IPv6 bracket
        raise UsageError(f"not a xapi URL: {url!r} ({e})") from e
    if parts.scheme not in ("https", "http"):
        raise UsageError(f"not a xapi URL: {url!r} (use https://host[:port])")
    if "@" in parts.netloc:
        # not echoed: the part before the @ may be a password
        raise UsageError(
            "a URL cannot carry a user name or a password (user:password@host): it "
            "would show in the process list, the shell's history and the config file. "
            "Give the user with --user, and the password through the keyring, "
            "--password-file or --password-stdin"
        )
    netloc = parts.netloc
    bracketed = netloc.startswith("[")
    if bracketed:
        host_part, _, rest = netloc[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise UsageError(f"not a xapi URL: {url!r}")
        port_text = rest[1:] if rest else ""
    else:
        host_part, _, port_text = netloc.partition(":")
    if not host_part:
        raise UsageError(f"not a xapi URL: {url!r} (use https://host[:port])")
    host = _check_host(host_part, bracketed)
    default = 443 if parts.scheme == "https" else 80
    if not port_text and not netloc.endswith(":"):
        return parts.scheme, host, default
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"bad port in {url!r}: a number from 1 to 65535")
    return parts.scheme, host, int(port_text)


def format_url(scheme: str, host: str, port: int) -> str:
    """The canonical form: no default port, IPv6 in brackets with its zone as %25."""
    if scheme == "unix":
        return f"unix://{host}"
    if ":" in host:
        host = "[" + host.replace("%", "%25") + "]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def plain_http_refused(url: str, how: str) -> str:
    return (f"{url} is plain HTTP: the password and every record would cross the "
            f"network unencrypted. Use https://, or if this network is trusted, {how}")
