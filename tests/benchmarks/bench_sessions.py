"""Leaked sessions (a script, not a test): real ``xsctl`` processes against a
simulator in its own process, ordinary runs first, then runs interrupted by SIGINT,
SIGTERM and SIGHUP at random moments while the simulator adds latency to every call.
The simulator's session table is read after each batch (``xsctl sim-control URL TOKEN
sessions``); every session still there is a leak, since xapi keeps a session until it
times out.

    python tests/benchmarks/bench_sessions.py [--runs 200] [--interrupts 60]
        [--latency 1] [--jobs 6] [--seed 1]

Target (issue: hardening): 0 leaked sessions out of 260.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# What the ordinary runs do: reads, a refused start, a dry run, one bad password.
ORDINARY = [
    ["vm", "list"],
    ["vm", "list", "--json"],
    ["vm", "show", "db-01"],
    ["host", "list"],
    ["sr", "list", "--json"],
    ["vm", "start", "web-01"],  # already running: refused by xapi, exit 1
    ["vm", "shutdown", "web-01", "--dry-run"],
    ["task", "list"],
]


@dataclass
class Sim:
    proc: subprocess.Popen[str]
    info: dict[str, Any]

    def control(self, action: str, value: str | None = None) -> Any:
        argv = [sys.executable, "-m", "xsctl", "sim-control", self.info["control"],
                self.info["control_token"], action] + ([value] if value is not None else [])
        out = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=REPO)
        return json.loads(out.stdout)


def start_sim() -> Sim:
    p = subprocess.Popen(
        [sys.executable, "-m", "xsctl", "sim", "--json", "--auth-fail-delay", "0.2",
         "--op-time", "0.05"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    assert p.stdout is not None
    return Sim(p, json.loads(p.stdout.readline()))


def environment(home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "XDG_CONFIG_HOME": os.path.join(home, "config"),
        "XDG_STATE_HOME": os.path.join(home, "state"),
        "XDG_CACHE_HOME": os.path.join(home, "cache"),
        # no desktop keyring: the password comes from --password-file
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "PYTHONPATH": REPO + os.pathsep + env.get("PYTHONPATH", ""),
    })
    return env


def run(argv: list[str], env: dict[str, str], sig: int | None = None,
        after: float = 0.0) -> int:
    p = subprocess.Popen([sys.executable, "-m", "xsctl", *argv], env=env, cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    if sig is not None:
        try:
            p.wait(after)
        except subprocess.TimeoutExpired:
            p.send_signal(sig)
    return p.wait(120)


def batch(jobs: int, work: list[tuple[list[str], int | None, float]],
          env: dict[str, str]) -> list[int]:
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda w: run(w[0], env, w[1], w[2]), work))


def settle(sim: Sim, quiet: float) -> int:
    """Sessions left once every run has ended: the simulator may still be answering a
    call whose client has gone (a login or a logout), so wait until the count has not
    moved for ``quiet`` seconds."""
    n, since = int(sim.control("sessions")), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.2)
        m = int(sim.control("sessions"))
        if m != n:
            n, since = m, time.monotonic()
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="ordinary runs (200)")
    ap.add_argument("--interrupts", type=int, default=60,
                    help="interrupted runs, a third per signal (60)")
    ap.add_argument("--latency", type=float, default=1.0,
                    help="seconds the simulator adds to every call while interrupting (1)")
    ap.add_argument("--jobs", type=int, default=6, help="runs at a time (6)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    sim = start_sim()
    leaked_total = 0
    try:
        with tempfile.TemporaryDirectory(prefix="xsctl-bench-") as home:
            env = environment(home)
            pw = os.path.join(home, "pw")
            fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (sim.info["password"] + "\n").encode())
            os.close(fd)
            conn = ["--url", sim.info["url"], "--accept-fingerprint",
                    sim.info["fingerprint"], "--password-file", pw]

            # ordinary runs
            started = time.monotonic()
            work: list[tuple[list[str], int | None, float]] = [
                ([*conn, *ORDINARY[i % len(ORDINARY)]], None, 0.0) for i in range(a.runs)]
            codes = batch(a.jobs, work, env)
            leaked = settle(sim, 1.0)
            leaked_total += leaked
            print(f"ordinary runs: {a.runs} in {time.monotonic() - started:.1f} s, "
                  f"exit codes {sorted(set(codes))}, {leaked} leaked sessions")

            # how long one run takes with the latency: the window to interrupt in
            sim.control("latency", str(a.latency))
            t0 = time.monotonic()
            run([*conn, "vm", "list"], env)
            whole = time.monotonic() - t0
            print(f"one `vm list` with {a.latency:g} s latency per call: {whole:.1f} s")
            before = settle(sim, a.latency + 0.5)

            per = {signal.SIGINT: 0, signal.SIGTERM: 0, signal.SIGHUP: 0}
            share = [a.interrupts // 3 + (1 if i < a.interrupts % 3 else 0) for i in range(3)]
            for (sig, _), n in zip(per.items(), share, strict=True):
                started = time.monotonic()
                work = [([*conn, "vm", "list"], sig, rnd.uniform(0.0, whole))
                        for _ in range(n)]
                codes = batch(a.jobs, work, env)
                after = settle(sim, a.latency + 0.5)
                leaked, before = after - before, after
                per[sig] = leaked
                leaked_total += leaked
                print(f"{signal.Signals(sig).name}: {n} runs in "
                      f"{time.monotonic() - started:.1f} s, exit codes "
                      f"{sorted(set(codes))}, {leaked} leaked sessions")
    finally:
        sim.proc.send_signal(signal.SIGINT)
        threading.Thread(target=sim.proc.wait, daemon=True).start()
        try:
            sim.proc.wait(10)
        except subprocess.TimeoutExpired:
            sim.proc.kill()
    total = a.runs + a.interrupts
    print(f"{leaked_total} leaked sessions out of {total}")
    return 0 if leaked_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
