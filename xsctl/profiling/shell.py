"""Running a command on a host: here (xsctl in dom0, or the simulator's dom0 tools),
or through the user's own OpenSSH client, with their config, keys and agent.

A command is an argument list. Locally it is executed as such, with no shell. Over
ssh it must become one line for the remote login shell: every argument is quoted
(``shlex.quote``) and handed as a positional parameter to a fixed ``sh`` script, so no
text of ours or the user's is ever read by a shell as code.

Every command has a timeout, and stopping it stops everything it started:

- locally, the command leads a process group of its own (a new session): a stop sends
  TERM to the group, then KILL to what is left after ``GRACE`` seconds;
- over ssh, the remote script watches its standard input, which is a pipe from us
  that stays open while we want the command: when it closes (we closed it, ssh was
  killed, the connection dropped) the script sends TERM to its process group (sshd
  made the session a group of its own, see session.c), then KILL. The script also
  keeps its own deadline, so a command whose connection hangs still ends. No
  terminal is asked for (``ssh -tt`` would merge stderr into stdout, turn line ends
  into CRLF and make perf open its pager and its TUI).

Ctrl-C at the command line raises in the thread that waits, which stops the command
on its way out; the TUI sets the ``cancel`` event it passed in.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from xsctl.xapi import interrupts
from xsctl.xapi.errors import UsageError

GRACE = 2.0  # seconds between TERM and KILL
MAX_TIMEOUT = 86400.0
MAX_OUTPUT = 8 << 20  # bytes of each stream kept; the rest is counted, not kept
POLL = 0.05

# Where dom0 keeps its tools: a non-login ssh session's PATH (and a sudo's) may lack
# the sbin folders, and XenServer puts its own under /opt/xensource.
DOM0_PATH = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/opt/xensource/bin",
             "/usr/lib64/xen/bin", "/usr/lib/xen/bin")

# The remote side of a command over ssh. $1 is the deadline in seconds, the rest the
# command. The watcher and the alarm ignore TERM only once they send it, so the kill
# of them at the end (kill "$w" "$a") works; a background command gets its standard
# input from /dev/null (POSIX), so the watcher reads ours through fd 3.
REMOTE_SCRIPT = r"""t=$1; shift
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin:/opt/xensource/bin:/usr/lib64/xen/bin:/usr/lib/xen/bin
LC_ALL=C
export PATH LC_ALL
exec 3<&0
"$@" </dev/null 3<&- &
pid=$!
{ while read -r _; do :; done
  trap '' TERM; kill -TERM 0; sleep 2; kill -KILL 0; } <&3 >/dev/null 2>&1 &
w=$!
{ trap 'kill "$s" 2>/dev/null; exit 0' TERM
  sleep "$t" & s=$!
  wait "$s" && { trap '' TERM; kill -TERM 0; sleep 2; kill -KILL 0; }; } </dev/null >/dev/null 2>&1 &
a=$!
exec 3<&-
wait "$pid"; rc=$?
kill "$w" "$a" 2>/dev/null
exit "$rc"
"""


@dataclass(frozen=True)
class Command:
    """An argument list and how long it may run."""

    argv: tuple[str, ...]
    timeout: float

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise UsageError("a command is a non-empty list of words")
        if any("\x00" in a for a in self.argv):
            raise UsageError("a command's words cannot hold a NUL character")
        if not self.argv[0]:
            raise UsageError("a command cannot start with an empty word")
        t = self.timeout
        if not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 < t <= MAX_TIMEOUT:
            raise UsageError(f"a timeout is more than 0 and at most {MAX_TIMEOUT:g} seconds")

    @classmethod
    def of(cls, *argv: str, timeout: float) -> Command:
        return cls(tuple(argv), timeout)

    @property
    def text(self) -> str:
        """The command as a POSIX shell reads it (what a user could paste)."""
        return shlex.join(self.argv)


@dataclass
class Result:
    command: Command
    where: str  # "on xcp-ng-01 (ssh root@10.0.0.1)"
    rc: int | None  # None: it did not end by itself (stopped)
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool = False
    cancelled: bool = False
    truncated: bool = False
    via_ssh: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out and not self.cancelled

    def problem(self) -> str | None:
        """Why it did not succeed, in one line a person can act on (None: it did)."""
        name = self.command.argv[0]
        if self.cancelled:
            return f"{name} was stopped"
        if self.timed_out:
            return f"{name} took longer than {self.command.timeout:g} s and was stopped"
        if self.rc == 0:
            return None
        last = next((ln.strip() for ln in reversed(self.stderr.splitlines()) if ln.strip()), "")
        if self.via_ssh and self.rc == 255:
            return ssh_problem(self.stderr, self.where)
        if self.rc == 127:
            return f"{name}: not found {self.where}"
        if self.rc == 126:
            return f"{name}: not allowed to run {self.where} ({last or 'permission denied'})"
        if self.rc is not None and self.rc < 0:
            return f"{name} was killed by signal {-self.rc}"
        return f"{name} failed (exit {self.rc})" + (f": {last}" if last else "")


def ssh_problem(stderr: str, where: str) -> str:
    """What ssh's own failure (exit 255) means, from its message."""
    text = stderr.strip()
    low = text.lower()
    last = text.splitlines()[-1].strip() if text else "no message"
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return (f"ssh refused the host key {where}: if it is new, run ssh once by hand to "
                f"accept it; if it changed, find out why ({last})")
    if "permission denied" in low:
        return (f"ssh could not log in {where} without asking: load a key into your agent "
                f"or name one in ~/.ssh/config ({last})")
    if "could not resolve" in low or "name or service not known" in low:
        return f"ssh could not find the host {where} ({last})"
    if "connection refused" in low or "timed out" in low or "no route" in low:
        return f"ssh could not connect {where} ({last})"
    return f"ssh failed {where} ({last})"


class _Reader(threading.Thread):
    """One output stream, read to its end: kept up to MAX_OUTPUT bytes, and handed
    line by line to ``on_line`` as it comes (xentop prints a block every delay)."""

    def __init__(self, stream: IO[bytes], on_line: Callable[[str], None] | None) -> None:
        super().__init__(daemon=True, name="command output")
        self.stream = stream
        self.on_line = on_line
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in iter(self.stream.readline, b""):
                if self.size < MAX_OUTPUT:
                    self.chunks.append(line)
                    self.size += len(line)
                else:
                    self.truncated = True
                if self.on_line is not None:
                    with contextlib.suppress(Exception):
                        self.on_line(line.decode("utf-8", "replace").rstrip("\r\n"))

    def text(self) -> str:
        return b"".join(self.chunks)[:MAX_OUTPUT].decode("utf-8", "replace")


class Shell:
    """Where commands run. Subclasses say how a command becomes a local process and
    how it is stopped."""

    def __init__(self, where: str, how: str = "") -> None:
        self.where = where  # "on xcp-ng-01 (ssh root@10.0.0.1)", for messages
        self.how = how or where  # "ssh root@10.0.0.1", beside the host's name
        self.via_ssh = False

    # ------------------------------------------------------------ what subclasses give

    def argv(self, cmd: Command) -> list[str]:
        """What is executed on this machine for ``cmd``."""
        raise NotImplementedError

    def env(self) -> Mapping[str, str] | None:
        return None

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ shown to the user

    def shown(self, cmd: Command) -> str:
        """The exact line that will run on this machine, verbatim."""
        return shlex.join(self.argv(cmd))

    # ------------------------------------------------------------ running

    def run(self, cmd: Command, *, cancel: threading.Event | None = None,
            on_line: Callable[[str], None] | None = None) -> Result:
        """Run ``cmd`` to its end, its timeout, or ``cancel``. Raises UsageError when
        the command cannot even be started here (no ssh client)."""
        start = time.monotonic()
        proc: subprocess.Popen[bytes] | None = None
        timed_out = cancelled = False
        deadline = start + cmd.timeout
        try:
            # a Ctrl-C that came between the start and the watch below would leave the
            # command running: it waits until the command is watched
            with interrupts.deferred():
                try:
                    proc = subprocess.Popen(
                        self.argv(cmd),
                        stdin=subprocess.PIPE if self.via_ssh else subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env(),
                        start_new_session=True, close_fds=True,
                    )
                except FileNotFoundError as e:
                    if self.via_ssh:
                        raise UsageError(f"no ssh client here ({e.filename}): install "
                                         "OpenSSH's client, or run xsctl in dom0") from None
                    return Result(cmd, self.where, 127, "", f"{cmd.argv[0]}: not found", 0.0)
                except OSError as e:
                    return Result(cmd, self.where, 126, "", f"{cmd.argv[0]}: {e.strerror}", 0.0)
                assert proc.stdout is not None and proc.stderr is not None
                out = _Reader(proc.stdout, on_line)
                err = _Reader(proc.stderr, None)
                out.start()
                err.start()
            while proc.poll() is None:
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                if time.monotonic() >= deadline:
                    timed_out = True
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(POLL)
        except BaseException:  # Ctrl-C at the command line: stop it, then go on up
            if proc is not None:
                self._stop(proc)
            raise
        finally:
            if proc is not None:
                if proc.poll() is None:
                    self._stop(proc)
                _close(proc.stdin)
        out.join(GRACE)
        err.join(GRACE)
        return Result(
            cmd, self.where, None if (timed_out or cancelled) else proc.returncode,
            out.text(), err.text(), time.monotonic() - start, timed_out=timed_out,
            cancelled=cancelled, truncated=out.truncated or err.truncated,
            via_ssh=self.via_ssh,
        )


def _close(f: IO[bytes] | None) -> None:
    if f is not None:
        with contextlib.suppress(OSError, ValueError):
            f.close()


def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


class LocalShell(Shell):
    """Commands run on this machine: xsctl in dom0, or the simulator's dom0 tools
    (``tools``, a folder put first on PATH)."""

    def __init__(self, where: str = "here", tools: Sequence[str] = (), how: str = "") -> None:
        super().__init__(where, how)
        self.tools = tuple(tools)

    def argv(self, cmd: Command) -> list[str]:
        return list(cmd.argv)

    def env(self) -> Mapping[str, str]:
        env = dict(os.environ)
        path = [*self.tools, *env.get("PATH", "/usr/bin:/bin").split(os.pathsep)]
        path += [d for d in DOM0_PATH if d not in path]
        env["PATH"] = os.pathsep.join(path)
        env["LC_ALL"] = "C"  # the parsers read the C locale's numbers and words
        return env

    def shown(self, cmd: Command) -> str:
        return cmd.text

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            if _wait(proc, GRACE):
                # the leader went: what it started may linger in the group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return


class SshShell(Shell):
    """Commands run through the user's OpenSSH client. ``destination`` is what they
    would type after ``ssh`` (``root@10.0.0.1``, or a Host of their ssh config);
    ``program`` the client and any options of theirs (``XSCTL_SSH``)."""

    def __init__(self, destination: str, where: str = "", program: Sequence[str] = ("ssh",)
                 ) -> None:
        super().__init__(where or f"through ssh {destination}", f"ssh {destination}")
        self.destination = check_destination(destination)
        self.program = tuple(program) or ("ssh",)
        self.via_ssh = True

    def remote_line(self, cmd: Command) -> str:
        """The one line the remote login shell runs: the fixed script, then every
        word quoted."""
        deadline = str(math.ceil(cmd.timeout) + int(GRACE) + 1)
        words = ["sh", "-c", REMOTE_SCRIPT, "sh", deadline, *cmd.argv]
        return " ".join(shlex.quote(w) for w in words)

    def argv(self, cmd: Command) -> list[str]:
        # BatchMode: never a prompt (the TUI owns the terminal; a script has none):
        # keys and the agent only, and an unknown host key fails instead of asking.
        return [*self.program, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
                "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3",
                "-T", "--", self.destination, self.remote_line(cmd)]

    def shown(self, cmd: Command) -> str:
        # the script is long and always the same: what the user reads is the command
        return f"{shlex.join([*self.program, self.destination])} -- {cmd.text}"

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        # closing its input tells the remote script to stop the command; then ssh
        # itself, should it not have ended with it
        _close(proc.stdin)
        if _wait(proc, GRACE):
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            if _wait(proc, GRACE):
                return


_DEST_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                     "._-@:[]%+")


def check_destination(dest: str) -> str:
    """An ssh destination that ssh can only read as one: no option (``-oProxyCommand``),
    no space, no shell or control character. Host addresses come from xapi, which is
    untrusted text."""
    if not isinstance(dest, str) or not dest or dest.startswith("-") or len(dest) > 255:
        raise UsageError(f"not an ssh destination: {dest!r}")
    if not set(dest) <= _DEST_OK or dest.count("@") > 1 or dest.endswith("@") \
            or dest.startswith("@"):
        raise UsageError(f"not an ssh destination: {dest!r} (user@host, or a Host of your "
                         "ssh config)")
    return dest


@dataclass
class Recorder:
    """Collects a running command's lines (a test or a caller that wants them)."""

    lines: list[str] = field(default_factory=list)

    def __call__(self, line: str) -> None:
        self.lines.append(line)
