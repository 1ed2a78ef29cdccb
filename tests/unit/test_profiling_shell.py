"""The host shell, both ways: here (a local process group) and through a real
OpenSSH server on loopback (tests/sshd.py). Every word arrives as it was given,
however hostile; a timeout, a cancel and Ctrl-C stop the command and what it
started, on the far side too; ssh's own failures are said plainly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, alive, wait_for
from tests.sshd import ALIAS
from xsctl.profiling.hosts import destination, shell_for
from xsctl.profiling.shell import Command, LocalShell, Shell, SshShell, check_destination
from xsctl.xapi.client import Target
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import Host

HOSTILE = [
    "plain", "two words", "$(touch {canary})", "`touch {canary}`", "; touch {canary}",
    "&& touch {canary}", "| touch {canary}", "> {canary}", "a'b", 'a"b', "\\", "\\'", "*",
    "~", "$HOME", "${{IFS}}", "-n", "--", "\ttab", "new\nline", "ünïcødé ✓", "", " ",
    "'; touch {canary}; '", "\x1b]0;PWNED\x07", "{{a,b}}", "!!", "#comment",
]


@pytest.fixture(params=["local", "ssh"])
def shell(request: pytest.FixtureRequest) -> Shell:
    if request.param == "local":
        return LocalShell()
    sshd = request.getfixturevalue("sshd")
    return SshShell(ALIAS, program=["ssh", "-F", str(sshd.config)])


def test_every_word_arrives_as_given_and_none_is_run_by_a_shell(shell: Shell,
                                                                tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    words = [w.format(canary=canary) for w in HOSTILE]
    r = shell.run(Command(("printf", "%s\\0", *words), timeout=30))
    assert r.ok, (r.rc, r.stderr)
    assert r.stdout.split("\0")[:-1] == words
    assert not canary.exists()


def test_exit_status_and_stderr_apart(shell: Shell) -> None:
    r = shell.run(Command(("sh", "-c", "echo out; echo err >&2; exit 7"), timeout=30))
    assert (r.rc, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert r.problem() == "sh failed (exit 7): err"


def test_a_missing_program_is_said(shell: Shell) -> None:
    r = shell.run(Command(("no-such-tool-here", "-x"), timeout=30))
    assert r.rc == 127
    assert r.problem() == f"no-such-tool-here: not found {shell.where}"


def _pid_from(r: Any) -> int:
    return int(r.stdout.split()[0])


def test_a_timeout_stops_the_command_and_what_it_started(shell: Shell) -> None:
    cmd = Command(("sh", "-c", "sleep 300 & echo $!; wait"), timeout=1)
    start = time.monotonic()
    r = shell.run(cmd)
    assert r.timed_out and r.rc is None and not r.ok
    assert time.monotonic() - start < 8
    assert r.problem() == "sh took longer than 1 s and was stopped"
    wait_for(lambda: not alive(_pid_from(r)), timeout=5)


def test_cancel_stops_the_command_and_what_it_started(shell: Shell) -> None:
    stop = threading.Event()
    lines: list[str] = []

    def seen(line: str) -> None:
        lines.append(line)
        stop.set()  # as soon as it runs: the user pressed escape

    r = shell.run(Command(("sh", "-c", "sleep 300 & echo $!; wait"), timeout=60),
                  cancel=stop, on_line=seen)
    assert r.cancelled and r.problem() == "sh was stopped"
    assert lines and lines[0] == r.stdout.split()[0]
    wait_for(lambda: not alive(_pid_from(r)), timeout=5)


def test_lines_arrive_while_it_runs(shell: Shell) -> None:
    seen: list[tuple[float, str]] = []
    start = time.monotonic()
    shell.run(Command(("sh", "-c", "echo one; sleep 1; echo two"), timeout=30),
              on_line=lambda line: seen.append((time.monotonic() - start, line)))
    assert [s for _, s in seen] == ["one", "two"]
    assert seen[1][0] - seen[0][0] > 0.5  # the first came before the second was printed


CTRL_C = textwrap.dedent("""
    import sys
    from xsctl.profiling.shell import Command, LocalShell, SshShell
    shell = LocalShell() if sys.argv[1] == "local" else SshShell(sys.argv[1], program=sys.argv[2:])
    def seen(line):
        print(line, flush=True)
    try:
        shell.run(Command(("sh", "-c", "sleep 300 & echo $!; wait"), timeout=120), on_line=seen)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
""")


@pytest.mark.parametrize("where", ["local", "ssh"])
def test_ctrl_c_stops_the_command_on_the_far_side(where: str, request: pytest.FixtureRequest
                                                  ) -> None:
    args = ["local"]
    if where == "ssh":
        sshd = request.getfixturevalue("sshd")
        args = [ALIAS, "ssh", "-F", str(sshd.config)]
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C, *args], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout is not None
    pid = int(proc.stdout.readline())
    assert alive(pid)
    proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    assert proc.wait(15) == 130
    assert proc.stdout.read().strip() == "interrupted"
    wait_for(lambda: not alive(pid), timeout=5)


EARLY = textwrap.dedent("""
    import sys
    from xsctl.xapi import interrupts
    from xsctl.profiling.shell import Command, LocalShell
    interrupts.install()  # the command line's handler
    try:
        LocalShell().run(Command(("sh", "-c", sys.argv[1]), timeout=60))
    except KeyboardInterrupt:
        sys.exit(130)
""")


def test_ctrl_c_the_moment_the_command_starts_still_stops_it(tmp_path: Path) -> None:
    """The command itself sends the Ctrl-C as it starts, so it lands while the shell
    is still starting it: before the fix, 14 runs in 20 left it behind."""
    for i in range(3):
        pidfile = tmp_path / f"pid{i}"
        done = subprocess.run(
            [sys.executable, "-c", EARLY, f"echo $$ > {pidfile}; kill -INT $PPID; exec sleep 300"],
            env={**os.environ, "PYTHONPATH": REPO}, capture_output=True, timeout=30)
        assert done.returncode == 130, done.stderr
        pid = int(pidfile.read_text())
        wait_for(lambda pid=pid: not alive(pid), timeout=5)


def test_the_remote_script_keeps_its_own_deadline() -> None:
    """Over ssh the far side stops the command by itself at its deadline, even if the
    connection hangs and nothing we send arrives (here: its input stays open)."""
    line = SshShell("host").remote_line(Command(("sleep", "300"), timeout=0.5))
    proc = subprocess.Popen(["sh", "-c", line], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.wait(15) != 0  # ended by its TERM, about 3.5 s on
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        assert proc.stdin is not None
        proc.stdin.close()


# ---------------------------------------------------------------- ssh's own failures


def test_no_server_there_is_said(sshd: Any) -> None:
    from tests.sshd import _free_port

    shell = SshShell("root@127.0.0.1", program=["ssh", "-p", str(_free_port()),
                                                 "-o", "UserKnownHostsFile=/dev/null"])
    r = shell.run(Command(("true",), timeout=30))
    assert r.rc == 255
    assert r.problem() is not None and r.problem().startswith("ssh could not connect")  # type: ignore[union-attr]


def test_an_unknown_host_key_is_refused_not_accepted(sshd: Any, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.write_text(sshd.config.read_text().replace(
        str(sshd.folder / "known_hosts"), str(tmp_path / "empty_known_hosts")))
    r = SshShell(ALIAS, program=["ssh", "-F", str(config)]).run(Command(("true",), timeout=30))
    assert r.rc == 255 and "ssh refused the host key" in (r.problem() or "")
    assert not (tmp_path / "empty_known_hosts").exists() or \
        "127.0.0.1" not in (tmp_path / "empty_known_hosts").read_text()


def test_no_key_is_a_refusal_not_a_password_prompt(sshd: Any, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = tmp_path / "config"
    config.write_text(sshd.config.read_text().replace(str(sshd.key), str(other)))
    r = SshShell(ALIAS, program=["ssh", "-F", str(config)]).run(Command(("true",), timeout=30))
    assert r.rc == 255 and "could not log in" in (r.problem() or "")


# ---------------------------------------------------------------- destinations

@pytest.mark.parametrize("dest", ["-oProxyCommand=touch /tmp/x", "root@host name", "a;b",
                                  "root@$(id)", "", "@host", "root@", "a@b@c", "host\n"])
def test_a_destination_ssh_could_read_as_anything_else_is_refused(dest: str) -> None:
    with pytest.raises(UsageError):
        check_destination(dest)


def _host(address: str, master: bool = False, **kw: Any) -> Host:
    fields = dict(ref="OpaqueRef:h", uuid="u-1", name_label="xcp-ng-01", hostname="xcp1",
                  address=address, enabled=True, is_master=master, live=True, memory_total=0,
                  memory_free=0, cpu_count=1, cpu_model="", product="", version="",
                  boot_time=None, resident_VMs=(), allowed_operations=frozenset(), PBDs=())
    fields.update(kw)
    return Host(**fields)  # type: ignore[arg-type]


def test_where_each_host_is_reached() -> None:
    t = Target(url="https://pool")
    assert destination(t, _host("10.0.0.2")) == "root@10.0.0.2"
    t.ssh = "admin@{address}"
    assert destination(t, _host("10.0.0.2")) == "admin@10.0.0.2"
    t.ssh = "pool-master"  # a Host of the user's ssh config: the master's alone
    assert destination(t, _host("10.0.0.1", master=True)) == "pool-master"
    assert destination(t, _host("10.0.0.2")) == "root@10.0.0.2"
    t.ssh = "ops@pool-master"
    assert destination(t, _host("10.0.0.3")) == "ops@10.0.0.3"
    with pytest.raises(UsageError, match="no usable address"):
        destination(Target(url="https://pool"), _host("-oProxyCommand=x"))


def test_in_dom0_its_own_host_runs_here(tmp_path: Path) -> None:
    inv = tmp_path / "xensource-inventory"
    inv.write_text("PRODUCT_BRAND='XCP-ng'\nINSTALLATION_UUID='u-1'\n")
    assert isinstance(shell_for(Target(url="unix:///x"), _host("10.0.0.1"), inventory=str(inv)),
                      LocalShell)
    other = shell_for(Target(url="unix:///x"), _host("10.0.0.2", uuid="u-2"), inventory=str(inv))
    assert isinstance(other, SshShell) and other.destination == "root@10.0.0.2"
