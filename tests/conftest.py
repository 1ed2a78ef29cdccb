"""Shared fixtures: a real simulator over real HTTPS, and real clients."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import XenAPI

from tests.jsonrpc import JsonRpcClient
from xsctl.sim import Simulator

# Operations take a little simulated time so that tasks show progress; keep it short.
OP_TIME = 0.05


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every test gets its own XDG config/state/cache and its own test keyring, in
    this process and in the subprocesses it starts."""
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XSCTL_TEST_KEYRING": str(tmp_path / "keyring.json"),
        "PYTHON_KEYRING_BACKEND": "tests.keyring_backend.FileKeyring",
        "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import keyring

    from tests.keyring_backend import FileKeyring

    keyring.set_keyring(FileKeyring())
    return env


def pytest_configure(config: pytest.Config) -> None:
    """A run started in the background of a non-interactive shell (``.ci/run &``)
    inherits Ctrl-C ignored, and so would every process a test starts: the tests that
    interrupt a run with SIGINT need it delivered, as at a terminal."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def make_sim(**kw: Any) -> Simulator:
    kw.setdefault("seed", 1)
    kw.setdefault("op_time", OP_TIME)
    kw.setdefault("auth_fail_delay", 0.0)
    kw.setdefault("password", "s3cret-Demo")
    return Simulator(**kw).start()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A fresh demo pool per test (about 0.1 s to build)."""
    s = make_sim()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Simulator]:
    """One demo pool for a module of read-only tests."""
    s = make_sim()
    try:
        yield s
    finally:
        s.stop()


def xenapi_session(s: Simulator, url: str | None = None) -> Any:
    x = XenAPI.Session(url or s.url, ignore_ssl=True)
    x.xenapi.login_with_password(s.user, s.password, "1.0", "xsctl-tests")
    return x


@pytest.fixture
def xapi(sim: Simulator) -> Iterator[Any]:
    """The official XenAPI client, logged in over HTTPS (XML-RPC)."""
    x = xenapi_session(sim)
    try:
        yield x
    finally:
        try:
            x.xenapi.session.logout()
        except Exception:
            pass


@pytest.fixture
def jrpc(sim: Simulator) -> Iterator[JsonRpcClient]:
    """A JSON-RPC 2.0 client, logged in over HTTPS."""
    c = JsonRpcClient(sim.url)
    c.login(sim.user, sim.password)
    try:
        yield c
    finally:
        c.logout()
        c.close()


def wait_for(pred: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``pred`` until it returns something truthy (for asynchronous effects)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {pred}")
        time.sleep(interval)


def vm_ref(x: Any, name: str) -> str:
    refs = x.xenapi.VM.get_by_name_label(name)
    assert len(refs) == 1, refs
    return str(refs[0])


def wait_task(x: Any, task: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for an Async.* task to finish and return its record."""
    def done() -> dict[str, Any] | None:
        rec = x.xenapi.task.get_record(task)
        return rec if rec["status"] != "pending" else None

    return wait_for(done, timeout)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real OpenSSH server on loopback (tests/sshd.py), one per test process."""
    from tests.sshd import running_sshd

    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def alive(pid: int) -> bool:
    """A process that runs (a zombie nobody reaped yet has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
