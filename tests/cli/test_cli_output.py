"""Output for people and scripts: a reader that leaves early (``| head``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.helpers import conn_args, password_file
from tests.conftest import make_sim, wait_for


@pytest.mark.parametrize("command", [["vm", "list", "--json"], ["vm", "show", *["db-01"] * 150]],
                         ids=["vm list --json", "vm show"])
def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path, command: list[str]) -> None:
    """``xsctl vm list --json | head -2``: more output than a pipe holds, and the
    reader leaves after two lines. Like git: nothing on stderr, status 0 or 141 (the
    128 + SIGPIPE a shell shows under ``set -o pipefail``), and logged out."""
    big = make_sim(vms=400)
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "xsctl", *conn_args(big, password_file(big, tmp_path)),
             *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        assert p.stdout is not None and p.stderr is not None
        head = [p.stdout.readline(), p.stdout.readline()]
        p.stdout.close()
        err = p.stderr.read().decode()
        assert p.wait(30) in (0, 141), err
        assert all(head) and err == ""
        wait_for(lambda: big.live_sessions() == 0)
    finally:
        big.stop()
