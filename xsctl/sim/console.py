"""VM and host consoles: ``CONNECT /console`` (ocaml/xapi/console.ml, xapi_http.ml).

What xapi does, and so what this does:

* Credentials as every HTTP handler takes them (``session_id`` cookie or query, Basic,
  or the dom0 Unix socket); none or a dead session: ``401`` with the realm
  ``connect_console`` (the action's name in datamodel.ml ``http_actions``).
* ``console_of_request``: ``uuid=`` names a VM or else a console; ``ref=`` a VM or a
  console. A VM means its default console, the ``rfb`` one. Neither given, a ref that
  is neither, a VM without an RFB console: ``Console.Failure``, which xapi's HTTP
  server answers with ``500`` (http_svr.ml handle_one); an unknown uuid fails in the
  database lookup, a 500 too.
* ``check_vm_is_running_here``: the VM must be running and resident on the host the
  request reached, else ``500`` again (a pool member serves its own VMs' consoles).
* Then ``HTTP/1.1 200 OK`` (``Http.http_200_ok``), and the connection is the
  console's raw stream until either side closes it.

Behind the stream: a text console (vt100) is a serial line to a login prompt and a
small shell fed from the simulator's state; a graphical one (rfb) is an RFB 3.3 to
3.8 server (security type None) with a small framebuffer that answers update
requests, so that VNC viewers connect.

Console records are made and removed with the domain (handlers/vm_devices.py,
create_misc.ml for the control domains' two).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from xsctl.sim import http_common as hc
from xsctl.sim.wire import NULL_REF

if TYPE_CHECKING:
    from xsctl.sim.server import Handler
    from xsctl.sim.simulator import Simulator
    from xsctl.sim.store import Store

REALM = "connect_console"  # datamodel.ml http_actions: the 401's realm
FAILURE = "Console.Failure"  # Printexc.to_string of console.ml's exception


class _Failure(Exception):
    """console.ml raises Failure: the HTTP server answers 500 with its text."""

    def __init__(self, text: str = FAILURE) -> None:
        super().__init__(text)
        self.text = text


def _escape(text: str) -> str:
    """http_svr.ml escape, applied to the exception's text in a 500 page."""
    for a, b in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("'", "&apos;"),
                 ('"', "&quot;")):
        text = text.replace(a, b)
    return text


# ---------------------------------------------------------------- records


def control_domain_consoles(store: Store, dom0: str, host: str) -> None:
    """create_misc.ml create_domain_zero_console_record: one RFB and one VT100
    console, whose location names the control domain's ref (not the console's)."""
    addr = store.get(host, "host")["address"]
    if ":" in addr:
        addr = f"[{addr}]"
    for proto in ("rfb", "vt100"):
        store.create("console", {"protocol": proto, "VM": dom0, "other_config": {},
                                 "location": f"https://{addr}/console?ref={dom0}"})


# ---------------------------------------------------------------- the request


def _console_of_request(store: Store, query: hc.Query) -> str:
    uuid = hc.arg(query, "uuid")
    ref = hc.arg(query, "ref")
    if uuid is None and ref is None:
        raise _Failure
    if uuid is not None:
        found = store.uuids["VM"].get(uuid) or store.uuids["console"].get(uuid)
        if found is None:
            # Db.Console.get_by_uuid raises Db_exn.Read_missing_uuid
            raise _Failure(f'Db_exn.Read_missing_uuid("console", "", "{uuid}")')
        ref = found
    assert ref is not None
    if store.exists(ref, "VM"):
        # default_console_of_vm: the VM's RFB console
        for c in store.get(ref, "VM")["consoles"]:
            row = store.find(c)
            if row is not None and row["protocol"] == "rfb":
                return str(c)
        raise _Failure
    if store.exists(ref, "console"):
        return ref
    raise _Failure


def _check_running_here(store: Store, console: str, host: str) -> tuple[str, str]:
    row = store.get(console, "console")
    vm = row["VM"]
    vrow = store.find(vm)
    if vrow is None or vrow["power_state"] != "Running" or vrow["resident_on"] != host:
        raise _Failure
    return vm, row["protocol"]


def console_handler(handler: Handler, query: hc.Query) -> None:
    sim = handler.sim
    store = sim.store
    with hc.authenticated(handler, query, REALM) as auth:
        if auth is None:
            return
        try:
            with store.lock:
                console = _console_of_request(store, query)
                vm, protocol = _check_running_here(store, console, handler.server.host_ref)
        except _Failure as f:
            hc.internal_error(handler, _escape(f.text))
            return
        hc.write_raw(handler, ["HTTP/1.1 200 OK", "Connection: keep-alive", hc.CACHE])
        handler.close_connection = True  # console.ml: req.close <- true
        # a console stays open while its user is away: no idle timeout here (xapi's
        # is the pool's vm_console_idle_timeout, off by default)
        handler.connection.settimeout(None)
        stream = _Stream(handler, lambda: store.exists(console, "console"))
        with contextlib.suppress(OSError, ValueError, _Hangup):
            if protocol == "vt100":
                Shell(sim, vm, stream).run()
            elif protocol == "rfb":
                Rfb(sim, vm, stream).run()


class _Hangup(Exception):
    """The stream ends: the client closed it, or the domain's console went."""


class _Stream:
    """The connection after the 200: bytes in as they come, bytes out at once. Read
    from the socket itself (the request's reader has nothing buffered: a console
    client sends nothing before the 200), so that select sees what is waiting."""

    POLL = 0.25  # seconds between looks at whether the console is still there

    def __init__(self, handler: Handler, alive: Callable[[], bool]) -> None:
        self.wfile: BinaryIO = handler.wfile  # type: ignore[assignment]
        self.sock: socket.socket = handler.connection
        self.buf = b""
        # the console record is there while the domain is: when it goes (shut down,
        # suspended, migrated away), the stream ends, as xapi's proxy does when
        # the domain's console closes
        self.alive = alive

    def check(self) -> None:
        if not self.alive():
            raise _Hangup

    def read1(self) -> bytes:
        if self.buf:
            data, self.buf = self.buf, b""
            return data
        while not self.ready(self.POLL):
            self.check()
        data = self.sock.recv(4096)
        if not data:
            raise _Hangup
        return data

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            while not self.ready(self.POLL):
                self.check()
            data = self.sock.recv(max(4096, n - len(self.buf)))
            if not data:
                raise _Hangup
            self.buf += data
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def ready(self, timeout: float) -> bool:
        """Whether a read would not block (bytes held here or by TLS, or the
        socket's)."""
        if self.buf:
            return True
        pending = getattr(self.sock, "pending", None)
        if pending is not None and pending():
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def write(self, data: bytes) -> None:
        self.wfile.write(data)
        with contextlib.suppress(AttributeError):
            self.wfile.flush()


# ---------------------------------------------------------------- vt100


def _uptime(seconds: float) -> str:
    days, rem = divmod(int(max(0, seconds)), 86400)
    hours, rem = divmod(rem, 3600)
    mins = rem // 60
    up = f"{days} day{'s' if days != 1 else ''}, " if days else ""
    return up + (f"{hours:2d}:{mins:02d}" if hours else f"{mins} min")


class Shell:
    """A serial console's getty and shell: a login prompt, then a few commands that
    answer from the simulator's state. The line discipline is the guest's (echo,
    backspace, ^C, ^D), since the client hands over a raw terminal."""

    def __init__(self, sim: Simulator, vm: str, stream: _Stream) -> None:
        self.sim = sim
        self.vm = vm
        self.stream = stream
        with sim.store.lock:
            row = sim.store.get(vm, "VM")
            self.control = bool(row["is_control_domain"])
            self.host = row["resident_on"]
            host = sim.store.get(self.host, "host")
            gm: Any = (sim.store.find(row["guest_metrics"])
                       if row["guest_metrics"] != NULL_REF else None)
            osv: dict[str, str] = dict((gm or {}).get("os_version") or {})
            self.domid = int(row["domid"])
            if self.control:
                self.hostname = str(host["hostname"] or host["name_label"])
                sv = host["software_version"] or {}
                self.kernel = str(sv.get("linux", "4.19.0+1"))
                self.banner = (f"XCP-ng release {sv.get('product_version', '8.3.0')} "
                               f"({sv.get('product_brand', 'XCP-ng')})\n"
                               f"Kernel {self.kernel} on an x86_64 (hvc0)")
            else:
                name = str(row["name_label"])
                self.hostname = "".join(c if c.isalnum() or c == "-" else "-"
                                        for c in name)[:63] or "localhost"
                self.kernel = (osv.get("uname") or "5.15.0-91-generic").split()[0]
                self.banner = f"{osv.get('name') or 'Linux'} {self.hostname} hvc0"
        self.user = ""
        self.typed = bytearray()  # what was typed ahead of the line being read
        self.after_cr = False

    # ------------------------------------------------------------ line input

    def write(self, text: str) -> None:
        self.stream.write(text.replace("\n", "\r\n").encode("utf-8", "replace"))

    def readline(self, echo: bool = True) -> str | None:
        """A line as the tty's canonical mode gives it; None on ^D at its start."""
        line = bytearray()
        while True:
            if not self.typed:
                self.typed = bytearray(self.stream.read1())
            b = self.typed.pop(0)
            if b == 0x0A and self.after_cr:  # CR LF is one Enter
                self.after_cr = False
                continue
            self.after_cr = b == 0x0D
            if b in (0x0D, 0x0A):
                self.write("\n")
                return line.decode("utf-8", "replace")
            if b in (0x7F, 0x08):
                if line:
                    line.pop()
                    if echo:
                        self.stream.write(b"\b \b")
            elif b == 0x03:  # ^C: the line is dropped
                self.write("^C\n")
                return ""
            elif b == 0x04:
                if not line:
                    return None
            elif b == 0x15:  # ^U: kill the line
                if echo:
                    self.stream.write(b"\b \b" * len(line))
                line.clear()
            elif b >= 0x20 and len(line) < 4096:
                line.append(b)
                if echo:
                    self.stream.write(bytes([b]))

    # ------------------------------------------------------------ getty

    def run(self) -> None:
        while True:
            self.write(f"\n{self.banner}\n\n")
            while True:
                self.write(f"{self.hostname} login: ")
                name = self.readline()
                if name is None:
                    self.write("\n")
                    continue
                name = name.strip()
                if not name:
                    continue
                self.write("Password: ")
                if self.readline(echo=False) is None:
                    self.write("\n")
                self.user = name
                break
            self.write(f"Last login: {time.strftime('%a %b %d %H:%M:%S %Y')} on hvc0\n")
            self.session()

    def prompt(self) -> str:
        sign = "#" if self.user == "root" else "$"
        if self.control:
            return f"[{self.user}@{self.hostname} ~]{sign} "
        return f"{self.user}@{self.hostname}:~{sign} "

    def session(self) -> None:
        while True:
            self.write(self.prompt())
            line = self.readline()
            if line is None:
                self.write("logout\n")
                return
            words = line.split()
            if not words:
                continue
            if words[0] in ("exit", "logout"):
                return
            self.write(self.command(words))

    def command(self, words: list[str]) -> str:
        cmd, args = words[0], words[1:]
        table: dict[str, Callable[[list[str]], str]] = {
            "uname": self.uname, "hostname": lambda a: self.hostname + "\n",
            "uptime": self.uptime, "whoami": lambda a: self.user + "\n",
            "echo": lambda a: " ".join(a) + "\n", "date": lambda a: time.strftime(
                "%a %b %d %H:%M:%S UTC %Y\n", time.gmtime()),
            "help": self.help,
        }
        if self.control:
            table["xl"] = self.xl
        fn = table.get(cmd)
        if fn is None:
            return f"-bash: {cmd}: command not found\n"
        return fn(args)

    def help(self, args: list[str]) -> str:
        names = ["uname [-a|-r|-n|-s]", "hostname", "uptime", "whoami", "date", "echo"]
        if self.control:
            names.append("xl list")
        return "Commands: " + ", ".join(names) + ", exit\n"

    def uname(self, args: list[str]) -> str:
        flags = "".join(a.lstrip("-") for a in args) or "s"
        parts = {"s": "Linux", "n": self.hostname, "r": self.kernel,
                 "m": "x86_64", "o": "GNU/Linux"}
        if "a" in flags:
            return (f"Linux {self.hostname} {self.kernel} #1 SMP x86_64 x86_64 x86_64 "
                    "GNU/Linux\n")
        bad = [f for f in flags if f not in parts]
        if bad:
            return f"uname: invalid option -- '{bad[0]}'\n"
        return " ".join(parts[f] for f in "snrmo" if f in flags) + "\n"

    def _started(self) -> float:
        store = self.sim.store
        with store.lock:
            if self.control:
                host = store.get(self.host, "host")
                try:
                    return float(str(host["other_config"].get("boot_time", "")).rstrip("."))
                except ValueError:
                    return time.time() - 86400
            row = store.find(self.vm)
            m: Any = store.find(row["metrics"]) if row is not None else None
        from xsctl.sim.dom0 import _unix

        return _unix(str((m or {}).get("start_time", ""))) or time.time()

    def uptime(self, args: list[str]) -> str:
        now = time.time()
        up = _uptime(now - self._started())
        return f" {time.strftime('%H:%M:%S', time.gmtime(now))} up {up},  1 user,  " \
               "load average: 0.08, 0.03, 0.01\n"

    def xl(self, args: list[str]) -> str:
        if args != ["list"]:
            return f"xl {' '.join(args)}: this console answers xl list only\n"
        from xsctl.sim import dom0
        from xsctl.sim.dom0_tools import _xl_state

        with self.sim.store.lock:
            address = self.sim.store.get(self.host, "host")["address"]
        snap = dom0.snapshot(self.sim, address)
        out = ["Name                                        ID   Mem VCPUs\tState\tTime(s)"]
        for d in snap["domains"]:
            name = "Domain-0" if d["control"] else d["name"]
            out.append(f"{name:<40} {d['domid']:>5} {d['memory'] // (1 << 20):>5} "
                       f"{d['vcpus']:>5}     {_xl_state(d)} {d['cpu_s']:>8.1f}")
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------- rfb

WIDTH, HEIGHT = 640, 400
# the colours of the screen, as RGB
_PALETTE = [(0, 0, 0), (24, 40, 72), (200, 200, 200), (0, 170, 0), (240, 240, 240)]
_BG, _BAR, _TEXT, _OK, _CURSOR = range(5)
_CELL_W, _CELL_H = 8, 16
_TOP = 24  # the bar at the top, in pixels


class _PixelFormat:
    """RFB PIXEL_FORMAT (rfbproto 7.4): how each pixel is written for this client."""

    def __init__(self, raw: bytes) -> None:
        (self.bpp, self.depth, self.big, self.true, self.rmax, self.gmax, self.bmax,
         self.rshift, self.gshift, self.bshift) = struct.unpack(">BBBBHHHBBB3x", raw)

    def pixel(self, rgb: tuple[int, int, int]) -> bytes:
        r, g, b = rgb
        if not self.true:  # colour maps are not offered: a grey level in 8 bits
            v = (r + g + b) // 3
        else:
            v = ((r * self.rmax // 255) << self.rshift) | ((g * self.gmax // 255) << self.gshift) \
                | ((b * self.bmax // 255) << self.bshift)
        n = max(1, int(self.bpp) // 8)
        return (int(v) & ((1 << (8 * n)) - 1)).to_bytes(n, "big" if self.big else "little")


_DEFAULT_FORMAT = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)


class Rfb:
    """An RFB server (rfbproto: ProtocolVersion, Security None, ClientInit,
    ServerInit; then SetPixelFormat, SetEncodings, FramebufferUpdateRequest answered
    with Raw rectangles, KeyEvent drawn as blocks, PointerEvent and ClientCutText
    read and ignored). An incremental request is answered when something changed: a
    key, or the cursor's blink."""

    BLINK = 0.5

    def __init__(self, sim: Simulator, vm: str, stream: _Stream) -> None:
        self.stream = stream
        with sim.store.lock:
            self.name = str(sim.store.get(vm, "VM")["name_label"])
        self.fb = bytearray([_BG]) * (WIDTH * HEIGHT)
        self._fill(0, 0, WIDTH, _TOP, _BAR)
        self._fill(8, 8, 8 * min(len(self.name), 60), 8, _TEXT)
        self.col, self.row = 0, 0
        self.cursor_on = False
        self.format = _PixelFormat(_DEFAULT_FORMAT)
        self.pixels = [self.format.pixel(c) for c in _PALETTE]
        self.dirty: list[tuple[int, int, int, int]] = []
        self.wanted: tuple[int, int, int, int] | None = None  # a pending incremental request

    def _fill(self, x: int, y: int, w: int, h: int, colour: int) -> None:
        for yy in range(y, min(HEIGHT, y + h)):
            start = yy * WIDTH + x
            self.fb[start:start + w] = bytes([colour]) * w

    def _cell(self) -> tuple[int, int]:
        return 8 + self.col * _CELL_W, _TOP + 8 + self.row * _CELL_H

    def _mark(self, colour: int) -> None:
        x, y = self._cell()
        self._fill(x, y + 2, _CELL_W - 1, _CELL_H - 4, colour)
        self.dirty.append((x, y, _CELL_W, _CELL_H))

    # ------------------------------------------------------------ handshake

    def run(self) -> None:
        s = self.stream
        s.write(b"RFB 003.008\n")
        version = s.read(12)
        if not version.startswith(b"RFB 003."):
            return
        minor = int(version[8:11]) if version[8:11].isdigit() else 3
        if minor >= 7:
            s.write(b"\x01\x01")  # one security type: None
            if s.read(1) != b"\x01":
                if minor >= 8:
                    reason = b"security type not offered"
                    s.write(struct.pack(">II", 1, len(reason)) + reason)
                return
            if minor >= 8:
                s.write(struct.pack(">I", 0))  # SecurityResult OK
        else:
            s.write(struct.pack(">I", 1))  # 3.3: the server decides: None
        s.read(1)  # ClientInit: shared or not, one viewer or many, all the same here
        name = self.name.encode("utf-8")
        s.write(struct.pack(">HH", WIDTH, HEIGHT) + _DEFAULT_FORMAT
                + struct.pack(">I", len(name)) + name)
        self.loop()

    def loop(self) -> None:
        s = self.stream
        blink = time.monotonic() + self.BLINK
        while True:
            s.check()
            wait = max(0.0, blink - time.monotonic())
            if s.ready(wait):
                self.message(s.read(1)[0])
            if time.monotonic() >= blink:
                blink = time.monotonic() + self.BLINK
                self.cursor_on = not self.cursor_on
                self._mark(_CURSOR if self.cursor_on else _BG)
            if self.wanted is not None and self.dirty:
                self.send_update(self.dirty)
                self.dirty = []
                self.wanted = None

    def message(self, kind: int) -> None:
        s = self.stream
        if kind == 0:  # SetPixelFormat
            self.format = _PixelFormat(s.read(19)[3:])
            self.pixels = [self.format.pixel(c) for c in _PALETTE]
        elif kind == 2:  # SetEncodings: Raw is always understood
            (count,) = struct.unpack(">xH", s.read(3))
            s.read(4 * count)
        elif kind == 3:  # FramebufferUpdateRequest
            incremental, x, y, w, h = struct.unpack(">BHHHH", s.read(9))
            area = _clip(x, y, w, h)
            if not incremental:
                self.send_update([area])
            else:
                self.wanted = area
        elif kind == 4:  # KeyEvent
            down, key = struct.unpack(">B2xI", s.read(7))
            if down:
                self.key(key)
        elif kind == 5:  # PointerEvent
            s.read(5)
        elif kind == 6:  # ClientCutText
            (length,) = struct.unpack(">3xI", s.read(7))
            while length > 0:
                length -= len(s.read(min(length, 65536)))
        else:
            raise _Hangup  # a message this server does not know: its length neither

    def key(self, keysym: int) -> None:
        cols = (WIDTH - 16) // _CELL_W
        rows = (HEIGHT - _TOP - 16) // _CELL_H
        self._mark(_BG)
        if keysym == 0xFF0D:  # Return
            self.col, self.row = 0, (self.row + 1) % rows
        elif keysym == 0xFF08 and self.col > 0:  # BackSpace
            self.col -= 1
            self._mark(_BG)
        elif 0x20 < keysym < 0x7F or keysym == 0x20:
            if keysym != 0x20:
                self._mark(_OK)
            self.col += 1
            if self.col >= cols:
                self.col, self.row = 0, (self.row + 1) % rows

    def send_update(self, areas: list[tuple[int, int, int, int]]) -> None:
        rects = [a for a in areas if a[2] > 0 and a[3] > 0]
        out = [struct.pack(">BxH", 0, len(rects))]
        px = self.pixels
        for x, y, w, h in rects:
            out.append(struct.pack(">HHHHi", x, y, w, h, 0))  # Raw
            for yy in range(y, y + h):
                start = yy * WIDTH + x
                out.append(b"".join(px[c] for c in self.fb[start:start + w]))
        self.stream.write(b"".join(out))


def _clip(x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
    x, y = min(x, WIDTH), min(y, HEIGHT)
    return x, y, max(0, min(w, WIDTH - x)), max(0, min(h, HEIGHT - y))


def register(sim: Simulator) -> None:
    sim.http_connect["/console"] = console_handler
