"""Shared helpers for the VM behaviour tests (no tests here).

``Api`` lets one test body run over both wire protocols: the official XenAPI client
(XML-RPC over HTTPS) and the independent JSON-RPC 2.0 client in tests/jsonrpc.py. Test
modules bind the fixtures under their own names (``api_fixture = S.api_fixture``) so
that pytest finds them and ruff sees no shadowed import.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.conftest import make_sim, wait_for
from tests.jsonrpc import JsonRpcClient, JsonRpcError
from xsctl.sim import Simulator

GiB = 1024**3
MiB = 1024**2


def _int64_as_str(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, dict):
        return {k: _int64_as_str(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_int64_as_str(x) for x in v]
    return v


class Api:
    """One logged-in client, called as ``api("VM.start", vm, False, False)``."""

    def __init__(self, kind: str, sim: Simulator) -> None:
        self.kind = kind
        self.sim = sim
        self.x: Any = None
        self.j: JsonRpcClient | None = None
        if kind == "xmlrpc":
            self.x = XenAPI.Session(sim.url, ignore_ssl=True)
            self.x.xenapi.login_with_password(sim.user, sim.password, "1.0", "xsctl-tests")
        else:
            self.j = JsonRpcClient(sim.url)
            self.j.login(sim.user, sim.password)

    def __call__(self, method: str, *args: Any) -> Any:
        if self.j is not None:
            return self.j(method, *args)
        # Python's XML-RPC cannot send ints beyond 32 bits: send int64 as strings, as
        # XenAPI users do (xapi accepts both).
        wire = [_int64_as_str(a) for a in args]
        fn = self.x.xenapi
        for part in method.split("."):
            fn = getattr(fn, part)
        return fn(*wire)

    def fail(self, method: str, *args: Any) -> list[str]:
        """Call, expecting an API failure; its ErrorDescription."""
        try:
            self(method, *args)
        except XenAPI.Failure as e:
            return [str(d) for d in e.details]
        except JsonRpcError as e:
            return [str(d) for d in e.details]
        raise AssertionError(f"{method} did not fail")

    def vm(self, name: str) -> str:
        refs = self("VM.get_by_name_label", name)
        assert len(refs) == 1, (name, refs)
        return str(refs[0])

    def record(self, cls: str, ref: str) -> dict[str, Any]:
        rec: dict[str, Any] = self(f"{cls}.get_record", ref)
        return rec

    def wait_task(self, task: str, timeout: float = 10.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            rec = self.record("task", task)
            return rec if rec["status"] not in ("pending", "cancelling") else None

        rec: dict[str, Any] = wait_for(done, timeout)
        return rec

    def wait_agent(self, vm: str) -> dict[str, Any]:
        """Wait for the guest agent's first report (os_version filled in)."""
        def reported() -> dict[str, Any] | None:
            gm = self("VM.get_guest_metrics", vm)
            if gm == "OpaqueRef:NULL":
                return None
            rec = self.record("VM_guest_metrics", gm)
            return rec if rec["os_version"] else None

        rec: dict[str, Any] = wait_for(reported)
        return rec

    def messages(self, name: str, vm: str) -> list[dict[str, Any]]:
        uuid = self("VM.get_uuid", vm)
        return [m for m in self("message.get_all_records").values()
                if m["name"] == name and m["obj_uuid"] == uuid]

    def close(self) -> None:
        if self.x is not None:
            try:
                self.x.xenapi.session.logout()
            except Exception:
                pass
        if self.j is not None:
            self.j.logout()
            self.j.close()


def vm_record(**over: Any) -> dict[str, Any]:
    """A VM.create record with every field xapi requires (those without a default)."""
    rec: dict[str, Any] = {
        "name_label": "created", "name_description": "", "user_version": 1,
        "is_a_template": False, "affinity": "OpaqueRef:NULL",
        "memory_static_min": 512 * MiB, "memory_static_max": GiB,
        "memory_dynamic_min": GiB, "memory_dynamic_max": GiB, "VCPUs_params": {},
        "VCPUs_max": 2, "VCPUs_at_startup": 2, "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart", "actions_after_crash": "restart",
        "PV_bootloader": "", "PV_kernel": "", "PV_ramdisk": "", "PV_args": "",
        "PV_bootloader_args": "", "PV_legacy_args": "", "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd"}, "platform": {}, "PCI_bus": "",
        "other_config": {}, "recommendations": "",
    }
    rec.update(over)
    return rec


def num(v: Any) -> int:
    """int64 values are strings on XML-RPC and numbers on JSON-RPC."""
    return int(v)


@pytest.fixture(name="sim")
def sim_fixture() -> Iterator[Simulator]:
    """A fresh demo pool per test, served on the master's address only (these tests
    never talk to members, and each listener costs a poll interval to stop)."""
    s = make_sim(member_listeners=False)
    try:
        yield s
    finally:
        # Stopping a listener waits out its accept loop's poll interval; nothing here
        # needs to see it gone, so let it stop in the background.
        threading.Thread(target=s.stop, name="sim stop", daemon=True).start()


@pytest.fixture(name="api", params=["xmlrpc", "jsonrpc"])
def api_fixture(request: pytest.FixtureRequest, sim: Simulator) -> Iterator[Api]:
    a = Api(request.param, sim)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture(name="xml")
def xml_fixture(sim: Simulator) -> Iterator[Api]:
    a = Api("xmlrpc", sim)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture(name="jsn")
def jsn_fixture(sim: Simulator) -> Iterator[Api]:
    a = Api("jsonrpc", sim)
    try:
        yield a
    finally:
        a.close()
