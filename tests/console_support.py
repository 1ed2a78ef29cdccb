"""Driving a console as its user would: the CLI under a pseudo-terminal, and a
small RFB client (rfbproto 7.1 to 7.3: ProtocolVersion, Security, Init)."""

from __future__ import annotations

import os
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PtyRun:
    """A process whose terminal is a pty: ``expect`` reads until a text shows."""

    proc: subprocess.Popen[bytes]
    master: int
    slave: int
    seen: bytearray = field(default_factory=bytearray)

    @classmethod
    def start(cls, argv: list[str], env: dict[str, str] | None = None) -> PtyRun:
        master, slave = os.openpty()
        proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                env=env or dict(os.environ), start_new_session=True)
        return cls(proc, master, slave)

    def read_some(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return b""
        try:
            data = os.read(self.master, 65536)
        except OSError:  # the other side closed
            return b""
        self.seen += data
        return data

    def expect(self, text: str, timeout: float = 15.0) -> str:
        want = text.encode()
        deadline = time.monotonic() + timeout
        while want not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not self.read_some(0.1)):
                raise AssertionError(f"{text!r} did not show; the terminal shows:\n"
                                     f"{self.seen.decode('utf-8', 'replace')[-2000:]}")
            self.read_some(min(left, 0.5))
        i = self.seen.index(want) + len(want)
        before = self.seen[:i].decode("utf-8", "replace")
        del self.seen[:i]
        return before

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def attrs(self) -> list[Any]:
        return termios.tcgetattr(self.slave)

    def wait(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("the process did not end; it shows:\n"
                                     + self.seen.decode("utf-8", "replace")[-2000:])
            self.read_some(0.1)
        while self.read_some(0.05):
            pass
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def xsctl_argv(*argv: str) -> list[str]:
    return [sys.executable, "-m", "xsctl", *argv]


@dataclass
class RfbInit:
    version: bytes
    security: list[int]
    result: int
    width: int
    height: int
    bpp: int
    name: str


def rfb_handshake(sock: socket.socket) -> RfbInit:
    """ProtocolVersion 3.8, Security None, ClientInit (shared), ServerInit."""
    f = sock.makefile("rb")

    def read(n: int) -> bytes:
        data = f.read(n)
        assert data is not None and len(data) == n, f"short read: {data!r}"
        return bytes(data)

    version = read(12)
    sock.sendall(b"RFB 003.008\n")
    (count,) = struct.unpack(">B", read(1))
    types = list(read(count))
    sock.sendall(b"\x01")
    (result,) = struct.unpack(">I", read(4))
    sock.sendall(b"\x01")
    width, height = struct.unpack(">HH", read(4))
    pf = read(16)
    (length,) = struct.unpack(">I", read(4))
    name = read(length).decode("utf-8")
    return RfbInit(version, types, result, width, height, pf[0], name)


def rfb_full_update(sock: socket.socket, width: int, height: int) -> tuple[int, int]:
    """A non-incremental FramebufferUpdateRequest of the whole screen: the number of
    rectangles and of pixel bytes that came back (Raw encoding)."""
    sock.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
    f = sock.makefile("rb")
    head = f.read(4)
    assert head is not None and head[0] == 0, head
    (n,) = struct.unpack(">H", head[2:4])
    got = 0
    for _ in range(n):
        _x, _y, w, h, enc = struct.unpack(">HHHHi", f.read(12))
        assert enc == 0, enc
        data = f.read(w * h * 4)
        got += len(data)
    return n, got
