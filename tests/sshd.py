"""A real OpenSSH server on loopback, started by the tests (Debian's openssh-server;
.ci/run installs it when missing), and a client config that reaches it with a key
of its own: what the profiling shell's ssh path is tested against.

The server runs as the user running the tests. A session's PATH starts with
``tools``, a folder the tests fill (with a simulator's dom0 tools), through
``environment=`` in authorized_keys, as a dom0's PATH holds its tools.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ALIAS = "xsctl-test-dom0"


@dataclass
class Sshd:
    port: int
    config: Path  # the client's ssh config (Host ALIAS)
    key: Path
    tools: Path  # first on the PATH of every session
    folder: Path

    @property
    def program(self) -> str:
        """What XSCTL_SSH is set to: the user's ssh, with this config."""
        return f"ssh -F {self.config}"

    def use_tools(self, folder: str | Path) -> None:
        """Make ``folder`` the tools every session finds first."""
        if self.tools.is_symlink():
            self.tools.unlink()
        elif self.tools.exists():
            self.tools.rmdir()
        self.tools.symlink_to(Path(folder))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True, capture_output=True)


@contextlib.contextmanager
def running_sshd(folder: Path) -> Iterator[Sshd]:
    assert os.path.exists(SSHD), "the tests need OpenSSH's server (apt-get install openssh-server)"
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privsep folder, as root
    folder.mkdir(parents=True, exist_ok=True)
    host_key, client_key = folder / "host_key", folder / "client_key"
    _keygen(host_key)
    _keygen(client_key)
    tools = folder / "tools"
    tools.mkdir()
    port = _free_port()
    (folder / "authorized_keys").write_text(
        f'environment="PATH={tools}:/usr/local/bin:/usr/bin:/bin" '
        + (folder / "client_key.pub").read_text())
    sshd_config = folder / "sshd_config"
    sshd_config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPidFile {folder}/sshd.pid\n"
        "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitUserEnvironment PATH\n"
        "PermitRootLogin prohibit-password\nLogLevel ERROR\nMaxStartups 100\n")
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} " + " ".join(
        (folder / "host_key.pub").read_text().split()[:2]) + "\n")
    config = folder / "ssh_config"
    config.write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {getpass.getuser()}\n"
        f"  IdentityFile {client_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
        "  StrictHostKeyChecking yes\n  ControlMaster no\n  LogLevel ERROR\n")
    for p in (host_key, client_key, config):
        p.chmod(0o600)
    with open(folder / "sshd.log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(sshd_config)],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("sshd did not start: "
                                     + (folder / "sshd.log").read_text(errors="replace"))
            time.sleep(0.02)
        yield Sshd(port, config, client_key, tools, folder)
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.poll() is None:
            proc.kill()
