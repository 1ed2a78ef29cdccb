"""TLS trust: verification against a CA file, or SHA-256 certificate pins saved on
first use after the user has seen the fingerprint (like ssh's known_hosts).

A pinned connection completes the TLS handshake without chain verification, then
compares the peer certificate's SHA-256 with the pin before a single byte of the
request is sent. A changed certificate stops the connection with both fingerprints.
Fingerprints are written as ``SHA256:AB:CD:...`` (xapi's own upper-case colon form).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from xsctl.files import write_private
from xsctl.xapi.errors import (
    ChangedCertificate,
    ConnectionFailed,
    FingerprintMismatch,
    UnknownCertificate,
    UsageError,
)

_HEX = re.compile(r"^[0-9A-Fa-f]{64}$")


def fingerprint_of(der: bytes) -> str:
    digest = hashlib.sha256(der).digest()
    return "SHA256:" + ":".join(f"{b:02X}" for b in digest)


def normalize_fingerprint(text: str) -> str:
    """Accept ``SHA256:AB:CD:..``, ``sha-256:ab:cd..``, bare hex with or without colons."""
    t = text.strip()
    low = t.lower()
    for prefix in ("sha256:", "sha-256:"):
        if low.startswith(prefix):
            t = t[len(prefix) :]
            break
    hexpart = t.replace(":", "").replace(" ", "")
    if not _HEX.match(hexpart):
        raise UsageError(f"not a SHA-256 fingerprint: {text!r} (expected SHA256:AB:CD:...)")
    return "SHA256:" + ":".join(hexpart[i : i + 2].upper() for i in range(0, 64, 2))


def host_key(host: str, port: int | None) -> str:
    host = host.lower()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return host if port in (None, 443) else f"{host}:{port}"


@dataclass(frozen=True)
class Pin:
    host: str
    fingerprint: str
    added: str
    note: str = ""


class KnownHosts:
    """``host[:port] SHA256:.. added=YYYY-MM-DD [note]`` lines, one per host."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def entries(self) -> list[Pin]:
        try:
            text = self.path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise UsageError(f"cannot read {self.path}: {e.strerror}") from e
        except UnicodeDecodeError as e:
            raise UsageError(f"{self.path}: not UTF-8 text (byte {e.start}); fix or remove "
                             "it (it holds the pinned certificates)") from e
        out: list[Pin] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 3)
            if len(parts) < 2:
                continue
            added = parts[2].removeprefix("added=") if len(parts) > 2 else ""
            note = parts[3] if len(parts) > 3 else ""
            try:
                out.append(Pin(parts[0], normalize_fingerprint(parts[1]), added, note))
            except UsageError:
                continue
        return out

    def get(self, key: str) -> str | None:
        for p in self.entries():
            if p.host == key:
                return p.fingerprint
        return None

    def _write(self, pins: list[Pin]) -> None:
        lines = ["# xsctl known hosts: host[:port] fingerprint added=date note"]
        lines += [f"{p.host} {p.fingerprint} added={p.added} {p.note}".rstrip() for p in pins]
        try:
            write_private(self.path, "\n".join(lines) + "\n")
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror}") from e

    def add(self, key: str, fingerprint: str, note: str = "") -> None:
        fp = normalize_fingerprint(fingerprint)
        with self._lock:
            pins = [p for p in self.entries() if p.host != key]
            pins.append(Pin(key, fp, datetime.now(UTC).strftime("%Y-%m-%d"), note))
            self._write(pins)

    def forget(self, host: str) -> list[Pin]:
        """Forget ``host`` (with or without ``:port``); returns what was removed."""
        h = host.lower()
        with self._lock:
            pins = self.entries()
            gone = [p for p in pins if p.host == h or p.host.rsplit(":", 1)[0] == h
                    or p.host.split("]")[0].lstrip("[") == h]
            if gone:
                self._write([p for p in pins if p not in gone])
            return gone


Confirm = Callable[[str, str], bool]


class TrustPolicy:
    """How a connection decides to trust a server."""

    def __init__(
        self,
        known: KnownHosts,
        *,
        ca_file: str | None = None,
        accept: str | None = None,
        accept_for: str | None = None,
        confirm: Confirm | None = None,
    ) -> None:
        self.known = known
        self.ca_file = ca_file
        # --accept-fingerprint names the certificate of the host the user named
        # (``accept_for``, a host_key), not of the pool members met later
        self.accept = normalize_fingerprint(accept) if accept else None
        self.accept_for = accept_for
        self.confirm = confirm
        self._ctx: ssl.SSLContext | None = None
        if ca_file:
            self.context()  # a bad CA file is said now, before a password is asked

    @property
    def describe(self) -> str:
        return f"CA {self.ca_file}" if self.ca_file else "pinned certificate"

    def context(self) -> ssl.SSLContext:
        if self._ctx is None:
            if self.ca_file:
                ctx = _ca_context(self.ca_file)
            else:
                # Verification is the pin check in verify(), done after the handshake
                # and before any request byte is sent.
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ctx = ctx
        return self._ctx

    def verify(self, host: str, port: int, der: bytes | None) -> str:
        """Check the peer certificate of a fresh connection; returns its fingerprint."""
        if der is None:
            raise ConnectionFailed(f"{host}: the server sent no certificate")
        seen = fingerprint_of(der)
        if self.ca_file:
            return seen  # the chain and host name were verified by OpenSSL
        return self.verify_fingerprint(host, port, seen)

    def verify_fingerprint(self, host: str, port: int, seen: str) -> str:
        key = host_key(host, port)
        pinned = self.known.get(key)
        if pinned is not None:
            if pinned != seen:
                raise ChangedCertificate(key, pinned, seen)
            return seen
        if self.accept is not None and self.accept_for in (None, key):
            if self.accept != seen:
                raise FingerprintMismatch(key, seen, self.accept)
            self.known.add(key, seen, "accepted")
            return seen
        if self.confirm is not None and self.confirm(key, seen):
            self.known.add(key, seen, "confirmed")
            return seen
        raise UnknownCertificate(key, seen)

    def learn(self, host: str, port: int, fingerprint: str, note: str) -> None:
        """Pin a fingerprint learned over an already trusted connection (xapi's
        x-xenapi-response-host-certificate-thumbprint on HOST_IS_SLAVE). A different
        existing pin is not overwritten: the changed-certificate check will catch it."""
        key = host_key(host, port)
        if self.ca_file or self.known.get(key) is not None:
            return
        self.known.add(key, fingerprint, note)


def _ca_context(path: str) -> ssl.SSLContext:
    if os.path.isdir(path):
        raise UsageError(f"CA file {path} is a folder: give the PEM file of the CA")
    try:
        return ssl.create_default_context(cafile=path)
    except FileNotFoundError:
        raise UsageError(f"CA file not found: {path}") from None
    except (ssl.SSLError, ValueError):  # SSLError is an OSError: first
        raise UsageError(f"CA file {path} holds no PEM certificate "
                         "(-----BEGIN CERTIFICATE-----)") from None
    except OSError as e:
        raise UsageError(f"cannot read the CA file {path}: {e.strerror}") from e


def probe_fingerprint(host: str, port: int, timeout: float = 10.0) -> str:
    """The SHA-256 fingerprint a server presents (no trust decision is made)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=host) as s:
            der = s.getpeercert(binary_form=True)
    except OSError as e:
        raise ConnectionFailed(f"cannot reach {host}:{port}: {e}") from e
    if der is None:
        raise ConnectionFailed(f"{host}:{port} sent no certificate")
    return fingerprint_of(der)
