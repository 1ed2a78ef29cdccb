"""The app measured from outside its process, as a user sees it: ``xsctl --url ...
--view vms`` runs on a pseudo-terminal of 200x50; what it writes is read as it comes,
stripped of escape sequences, and searched for what the screen shows.

From the command's start, it notes when the main screen is up (its menu names the
"Virtual Machines" view) and when the VM view's status line counts every VM ("N of N
VMs"). Then it presses ``q`` and waits for the app to log out and leave.

``breakdown=True`` runs the same command under a wrapper (BREAKDOWN below) that
notes, with wall-clock times, where the process is: imports, connect, fetch, apply,
table build, frames. It wraps functions from outside their modules, so that the
figures come from the code as it is; it is not the run the ratio is taken from.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import statistics
import struct
import sys
import tempfile
import time
from typing import Any

COLUMNS, LINES = 200, 50

_ESCAPES = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)"
                      rb"|[PX^_][^\x1b]*\x1b\\|[@-Z\\-_])")
_COUNT = re.compile(rb"(\d+) of (\d+) VMs")
_MAIN = b"Virtual Machines"

# Run as ``python -c BREAKDOWN EVENTS_FILE -- xsctl-args...``: xsctl with probes.
BREAKDOWN = r'''
import functools, gc, json, sys, time
events = []
def mark(name):
    events.append((name, time.time()))
mark("interpreter up")
out = sys.argv[1]
import atexit
atexit.register(lambda: json.dump(events, open(out, "w")))
import xsctl.cli, xsctl.commands.app
import xsctl.ui.app
mark("imports done")

def probe(owner, name, label):
    fn = getattr(owner, name, None)
    if fn is None:
        return
    @functools.wraps(fn)
    def wrapped(*a, **k):
        mark(label + " starts")
        try:
            return fn(*a, **k)
        finally:
            mark(label + " ends")
    setattr(owner, name, wrapped)

from xsctl.xapi import client as client_mod, cache as cache_mod
try:
    import xsctl.ui.screens.connect as connect_screen
    probe(connect_screen, "ensure_trusted", "trust check")
except ImportError:
    pass
_connect = client_mod.Client.connect.__func__
def connect(cls, *a, **k):
    mark("login starts")
    try:
        return _connect(cls, *a, **k)
    finally:
        mark("login ends")
client_mod.Client.connect = classmethod(connect)
probe(cache_mod.Cache, "_fetch_all", "fetch and decode")
probe(cache_mod.Cache, "_replace_all", "apply to the cache")
try:
    from xsctl.ui.views.vms import VmsView
    probe(VmsView, "rebuild", "VM table build")
except ImportError:
    pass
App = xsctl.ui.app.XsctlApp
_display = App._display
def display(self, screen, renderable):
    _display(self, screen, renderable)
    if renderable is not None and not self._batch_count:
        mark("frame")
App._display = display
def collected(phase, info):
    if phase == "start":
        collected.t = time.perf_counter()
    elif time.perf_counter() - collected.t > 0.005:
        events.append(("gc gen%d %.0f ms" % (info["generation"], (time.perf_counter() - collected.t) * 1000), time.time()))
gc.callbacks.append(collected)
sys.argv = ["xsctl"] + sys.argv[3:]
sys.exit(xsctl.cli.main())
'''


def run_app(info: dict[str, Any], expected: int, env: dict[str, str], tmp: str, *,
            breakdown: bool = False, timeout: float = 600) -> dict[str, Any]:
    """One run of the app; times are seconds from the command's start."""
    pw = os.path.join(tmp, "password")
    with open(os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(info["password"] + "\n")
    args = ["--url", info["url"], "--user", info["user"],
            "--accept-fingerprint", info["fingerprint"], "--password-file", pw, "--view", "vms"]
    events_file = os.path.join(tmp, "events.json")
    if breakdown:
        cmd = [sys.executable, "-c", BREAKDOWN, events_file, "--", *args]
    else:
        cmd = [sys.executable, "-m", "xsctl", *args]
    child_env = dict(env, TERM="xterm-256color", COLUMNS=str(COLUMNS), LINES=str(LINES))
    want = str(expected).encode()

    start_wall = time.time()
    t0 = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal's size first, then the command
        import fcntl
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        os.execvpe(cmd[0], cmd, child_env)
    marks: dict[str, float] = {}
    tail = b""
    try:
        while "table" not in marks:
            left = timeout - (time.perf_counter() - t0)
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise SystemExit(f"no full VM table in {timeout} s; the screen said: "
                                 f"{_ESCAPES.sub(b'', tail)[-400:]!r}")
            try:
                data = os.read(fd, 1 << 20)
            except OSError:
                data = b""
            if not data:
                raise SystemExit("the app ended before it showed every VM: "
                                 f"{_ESCAPES.sub(b'', tail)[-400:]!r}")
            now = time.perf_counter() - t0
            tail = (tail + data)[-(1 << 16):]
            text = _ESCAPES.sub(b"", tail)
            marks.setdefault("output", now)
            if "main" not in marks and _MAIN in text:
                marks["main"] = now
            if any(a == want and b == want for a, b in _COUNT.findall(text)):
                marks["table"] = now
                marks.setdefault("main", now)
        os.write(fd, b"q")
    finally:
        rss = _finish(pid, fd)
    out: dict[str, Any] = {"marks": marks, "start": start_wall, "rss_mb": rss}
    if breakdown:
        with open(events_file) as f:
            out["events"] = [(name, t - start_wall) for name, t in json.load(f)]
    return out


def _finish(pid: int, fd: int, grace: float = 15.0) -> float:
    """Read on until the app has left (it writes while it restores the terminal and
    logs out: unread, it would block), then reap it; kill it past ``grace``. Returns
    the app's peak RSS in MB (ru_maxrss)."""
    end = time.monotonic() + grace
    usage = None
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                os.read(fd, 1 << 20)
            except OSError:
                pass  # the terminal's other end is closed: the app is leaving
        done, _, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        usage = None
    if usage is None:
        os.kill(pid, signal.SIGKILL)
        _, _, usage = os.wait4(pid, 0)
    os.close(fd)
    return float(usage.ru_maxrss) / 1024


# The moments of a breakdown run, in the order they normally come (the printout sorts
# them by time, so a change of order shows).
# Each label names what happened since the moment before.
MOMENTS = [
    ("interpreter up", "interpreter start"),
    ("imports done", "imports (xsctl, Textual)"),
    ("trust check starts", "app start (Textual, the connect screen)"),
    ("login ends", "certificate check and login"),
    ("fetch and decode starts", "to the loading thread"),
    ("fetch and decode ends", "fetch and decode (get_all_records per class)"),
    ("apply to the cache ends", "apply to the cache"),
    ("VM table build starts", "main screen (compose and mount of the views)"),
    ("VM table build ends", "VM table build (a row per VM)"),
    ("first frame after the build", "first paint"),
    ("main screen seen", "to the terminal"),
    ("every VM counted", "every VM counted on the terminal"),
]


def moments(run: dict[str, Any]) -> dict[str, float]:
    """When each moment of MOMENTS happened in a breakdown run (first occurrence)."""
    got: dict[str, float] = {}
    events = run.get("events", [])
    for name, t in events:
        got.setdefault(name, t)
    built = got.get("VM table build ends")
    if built is not None:
        frames = [t for name, t in events if name == "frame" and t >= built]
        if frames:
            got["first frame after the build"] = frames[0]
    got["main screen seen"] = run["marks"]["main"]
    got["every VM counted"] = run["marks"]["table"]
    return {k: got[k] for k, _ in MOMENTS if k in got}


def print_breakdown(runs: list[dict[str, Any]], indent: str = "  ") -> None:
    """The median moment of each kind, by time, with the time since the one before."""
    per: dict[str, list[float]] = {}
    for r in runs:
        for k, t in moments(r).items():
            per.setdefault(k, []).append(t)
    labels = dict(MOMENTS)
    at = sorted(((statistics.median(v), k) for k, v in per.items()))
    before = 0.0
    for t, k in at:
        print(f"{indent}{t:6.2f} s  +{t - before:5.2f} s  {labels[k]}")
        before = t
    # the cyclic collections that ran before every VM was counted (in the first run)
    first = runs[0]
    until = first["marks"]["table"]
    gcs = [(name[3:], t) for name, t in first.get("events", [])
           if name.startswith("gc ") and t <= until]
    if gcs:
        total = sum(float(n.split()[1]) for n, _ in gcs)
        print(f"{indent}cyclic collections over 5 ms until then (first run): {len(gcs)}, "
              f"{total:.0f} ms in all: " + ", ".join(f"{n} at {t:.2f} s" for n, t in gcs))


def scratch() -> str:
    return tempfile.mkdtemp(prefix="xsctl-outside-")
