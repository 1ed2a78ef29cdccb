"""Running the real CLI: in this process (fast, for many runs) or as a subprocess
(for signals, terminals and process arguments)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xsctl import cli
from xsctl.sim import Simulator


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        import json

        return json.loads(self.out)


def conn_args(sim: Simulator, pwfile: Path, accept: bool = True) -> list[str]:
    args = ["--url", sim.url, "--password-file", str(pwfile)]
    if accept:
        args += ["--accept-fingerprint", sim.fingerprint]
    return args


def password_file(sim: Simulator, tmp: Path) -> Path:
    p = tmp / "pw"
    p.write_text(sim.password + "\n")
    p.chmod(0o600)
    return p


def xsctl(*argv: str, stdin: str = "") -> Run:
    """``xsctl ARGV`` in-process, capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(argv))
            except SystemExit as e:  # argparse errors
                code = int(e.code or 0)
    finally:
        sys.stdin = old_stdin
    return Run(code, out.getvalue(), err.getvalue())


def xsctl_process(*argv: str, stdin: str = "", timeout: float = 60) -> Run:
    p = subprocess.run(
        [sys.executable, "-m", "xsctl", *argv], input=stdin, capture_output=True, text=True,
        timeout=timeout, env=dict(os.environ),
    )
    return Run(p.returncode, p.stdout, p.stderr)
