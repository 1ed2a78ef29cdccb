"""The password stays off disk, whatever way the login goes: refused, redirected by
HOST_IS_SLAVE (that login carries the right password to a second host), logged in
again after an xapi restart or after the session expired, or interrupted. Each path
runs for real (with --verbose, the most talkative log), then every file under the
isolated config, state and cache folders, the log among them, is searched for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.cli.helpers import password_file, xsctl
from tests.conftest import make_sim, wait_for
from xsctl.config import log_file
from xsctl.sim import Simulator

WRONG = "Wr0ng-but-secret-too"


def when_a_task_runs(sim: Simulator, name: str, then: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        wait_for(lambda: any(t["status"] == "pending" and t["name_label"] == name
                             for t in sim.store.all("task").values()), timeout=20)
        then()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def files_holding(secret: str, roots: list[Path]) -> list[Path]:
    return [f for root in roots for f in root.rglob("*")
            if f.is_file() and secret.encode() in f.read_bytes()]


def test_no_login_path_writes_the_password(tmp_path: Path,
                                           isolated_home: dict[str, str]) -> None:
    sim = make_sim(op_time=1.0)
    try:
        pw = password_file(sim, tmp_path)
        accept = ["--accept-fingerprint", sim.fingerprint]
        base = ["--verbose", "--url", sim.url, "--password-file", str(pw), *accept]
        log = log_file()

        # refused: a wrong password
        wrong = tmp_path / "wrong"
        wrong.write_text(WRONG + "\n")
        wrong.chmod(0o600)
        r = xsctl("--verbose", "--url", sim.url, "--password-file", str(wrong), *accept,
                  "vm", "list")
        assert r.code == 1 and "SESSION_AUTHENTICATION_FAILED" in r.err
        assert WRONG not in r.err

        # redirected: a pool member answers HOST_IS_SLAVE, the login goes on to the master
        member = next(h for h in sim.info()["hosts"] if not h["master"] and h["url"])
        r = xsctl("--verbose", "--url", member["url"], "--password-file", str(pw),
                  "--accept-fingerprint", member["fingerprint"], "vm", "list")
        assert r.code == 0, r.err
        assert "the master is" in log.read_text()

        # logged in again after an xapi restart, while waiting on a task
        t = when_a_task_runs(sim, "Async.VM.start", lambda: sim.restart(downtime=0.1))
        xsctl(*base, "vm", "start", "web-staging")
        t.join()
        assert "logged in again" in log.read_text()

        # logged in again after the session expired, while waiting on a task
        before = log.read_text().count("logged in again")
        t = when_a_task_runs(sim, "Async.VM.hard_shutdown", sim.expire_sessions)
        r = xsctl(*base, "vm", "shutdown", "web-01", "--force")  # running since the seed
        t.join()
        assert r.code == 0, r.err
        assert log.read_text().count("logged in again") > before

        # interrupted, in a real process, at the moment the session is made
        def interrupt(cls: str, op: str, ref: str, row: object) -> None:
            if cls == "session" and op == "add" and p.poll() is None:
                p.send_signal(signal.SIGINT)

        p = subprocess.Popen([sys.executable, "-m", "xsctl", *base, "vm", "list"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ))
        sim.store.watchers.append(interrupt)
        try:
            out, err = p.communicate(timeout=30)
        finally:
            sim.store.watchers.remove(interrupt)
        assert p.returncode == 130
        assert sim.password.encode() not in out + err
        wait_for(lambda: sim.live_sessions() == 0)

        roots = [Path(isolated_home[v]) for v in
                 ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")]
        written = [f for root in roots for f in root.rglob("*") if f.is_file()]
        assert log in written and "logging out of" in log.read_text()
        assert files_holding(sim.password, roots) == []
        assert files_holding(WRONG, roots) == []
    finally:
        sim.stop()
