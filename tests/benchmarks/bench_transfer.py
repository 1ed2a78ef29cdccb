"""Memory of export and import (a script, not a test): real ``xsctl vm export`` and
``xsctl vm import`` processes against a simulator in its own process, on a VM with a
few MiB of disk data and on one with a large disk full of data. Each child's peak
resident memory is read from outside (wait4). Streaming means the two peaks are
about equal however large the file.

    python tests/benchmarks/bench_transfer.py [--mib 512]

Target (issue 10): the peak memory of an export or import of the large disk stays
within a few MiB of the small one's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from tests.benchmarks.support import bench_env, start_sim, stop_sim  # noqa: E402
from xsctl.sim.xva import xxh64_hex  # noqa: E402

BLOCK = 512
CHUNK = 1024 * 1024


# ``xsctl ARGV`` that reports its own peak resident memory (VmHWM) when it ends.
# wait4's ru_maxrss would not do: Linux counts the forked copy of this process
# before the exec, so a child's figure is never below this (larger) process's.
XSCTL_HWM = """
import sys
from xsctl.cli import main
code = main(sys.argv[1:])
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
sys.stderr.write("VmHWM " + hwm.split()[1] + "\\n")
sys.exit(code)
"""


def xsctl(info: dict[str, str], pwfile: str, *argv: str) -> list[str]:
    return [sys.executable, "-c", XSCTL_HWM, "--url", info["url"], "--user", info["user"],
            "--password-file", pwfile, "--accept-fingerprint", info["fingerprint"], *argv]


@dataclass
class Child:
    out: Any  # its --json output
    wall_s: float
    rss_mb: float  # its peak resident memory (its own VmHWM)


def run_child(cmd: list[str], env: dict[str, str]) -> Child:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.stderr.write(p.stderr)
        raise SystemExit(f"{' '.join(cmd[-6:])} failed ({p.returncode})")
    hwm = next(int(ln.split()[1]) for ln in p.stderr.splitlines() if ln.startswith("VmHWM "))
    return Child(json.loads(p.stdout), wall, hwm / 1024)


def _member(out: BinaryIO, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o400
    out.write(info.tobuf(format=tarfile.USTAR_FORMAT))
    out.write(data + bytes(-len(data) % BLOCK))


def grow(small: str, big: str, mib: int) -> None:
    """``small`` (an export) with ``mib`` MiB of data on its first disk, written a chunk
    at a time: a large export as xapi would write it, without holding it in memory."""
    with tarfile.open(small) as tf:
        members = [(m.name, tf.extractfile(m).read())  # type: ignore[union-attr]
                   for m in tf.getmembers()]
    first = next(n.split("/")[0] for n, _ in members[1:])
    own = {int(n.split("/")[1]): d for n, d in members[1:]
           if n.startswith(first + "/") and not n.endswith(".xxhash")}
    last = max(own)
    with open(big, "wb") as out:
        _member(out, *members[0])
        for n in sorted(set(own) | set(range(1, mib + 1))):
            # a chunk of its own per number (no two alike), the disk's last kept
            made = 1 <= n <= mib and n != last
            data = n.to_bytes(8, "little") * (CHUNK // 8) if made else own[n]
            _member(out, f"{first}/{n:08d}", data)
            _member(out, f"{first}/{n:08d}.xxhash", xxh64_hex(data).encode())
        for name, data in members[1:]:
            if not name.startswith(first + "/"):
                _member(out, name, data)
        out.write(bytes(2 * BLOCK))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=512, help="MiB of data on the large disk")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = bench_env(tmp)
        proc, info = start_sim(25)
        try:
            pw = os.path.join(tmp, "pw")
            with open(pw, "w") as f:
                f.write(info["password"] + "\n")
            os.chmod(pw, 0o600)
            small, big, again = (os.path.join(tmp, n) for n in ("small.xva", "big.xva",
                                                                  "again.xva"))
            rows = []
            r = run_child(xsctl(info, pw, "vm", "export", "backup-01", small, "--json"), env)
            rows.append(("export", os.path.getsize(small), r))
            r = run_child(xsctl(info, pw, "vm", "import", small, "--json"), env)
            rows.append(("import", os.path.getsize(small), r))
            print(f"building a file with {args.mib} MiB of disk data…", file=sys.stderr)
            grow(small, big, args.mib)
            r = run_child(xsctl(info, pw, "vm", "import", big, "--json"), env)
            rows.append(("import", os.path.getsize(big), r))
            uuid = r.out[0]["result"][0]["uuid"]
            r = run_child(xsctl(info, pw, "vm", "export", uuid, again, "--json"), env)
            rows.append(("export", os.path.getsize(again), r))
        finally:
            stop_sim(proc)
    print(f"{'':8}{'file':>12}{'wall':>9}{'rate':>12}{'peak RSS':>11}")
    for what, size, run in rows:
        rate = size / run.wall_s / 2**20
        print(f"{what:8}{size / 2**20:>9.1f} MiB{run.wall_s:>8.1f}s{rate:>7.1f} MiB/s"
              f"{run.rss_mb:>8.1f} MiB")
    by = {(w, i >= 2): r.rss_mb for i, (w, _, r) in enumerate(rows)}
    for what in ("export", "import"):
        grew = by[(what, True)] - by[(what, False)]
        print(f"{what}: the large file's peak is {grew:+.1f} MiB against the small one's "
              f"({rows[2][1] / rows[0][1]:.0f}x the bytes)")
    print(json.dumps({f"{w}_{'large' if big_ else 'small'}_rss_mib": round(v, 1)
                      for (w, big_), v in by.items()}))


if __name__ == "__main__":
    main()
