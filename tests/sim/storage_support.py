"""Helpers for the storage tests: one way to call the simulator through either client
(the official XenAPI package over XML-RPC, or JSON-RPC 2.0), with failures turned into
the same exception, so every behaviour is checked over both wire protocols.

The ``sim`` fixture here replaces conftest's for these modules: the same demo pool,
but only the master listens (the storage tests never talk to members), which makes
each fresh pool quicker to stop.
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


class Fail(Exception):
    """An xapi failure, whichever client saw it."""

    def __init__(self, details: list[Any]) -> None:
        super().__init__(details)
        self.details = [str(d) for d in details]


def _xmlrpc_safe(v: Any) -> Any:
    """Python's XML-RPC cannot marshal ints beyond 32 bits: xapi takes int64 as strings."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and not -(2**31) <= v < 2**31:
        return str(v)
    if isinstance(v, dict):
        return {k: _xmlrpc_safe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_xmlrpc_safe(x) for x in v]
    return v


class Api:
    """``api("VBD.plug", vbd)`` through one client; ``api.fails(...)`` returns the
    failure's ErrorDescription."""

    def __init__(self, name: str, client: Any) -> None:
        self.name = name
        self.client = client

    def __repr__(self) -> str:
        return self.name

    def __call__(self, method: str, *args: Any) -> Any:
        if self.name == "xmlrpc":
            fn = self.client.xenapi
            for part in method.split("."):
                fn = getattr(fn, part)
            try:
                return fn(*(_xmlrpc_safe(a) for a in args))
            except XenAPI.Failure as e:
                raise Fail(e.details) from None
        try:
            return self.client(method, *args)
        except JsonRpcError as e:
            raise Fail(e.details) from None

    def fails(self, method: str, *args: Any) -> list[str]:
        try:
            result = self(method, *args)
        except Fail as f:
            return f.details
        raise AssertionError(f"{method} succeeded over {self.name}: {result!r}")

    def wait(self, task: str, timeout: float = 10.0) -> dict[str, Any]:
        """The finished task's record."""
        def done() -> dict[str, Any] | None:
            rec: dict[str, Any] = self("task.get_record", task)
            return rec if rec["status"] not in ("pending", "cancelling") else None

        rec: dict[str, Any] = wait_for(done, timeout)
        return rec

    def run_async(self, method: str, *args: Any) -> dict[str, Any]:
        return self.wait(self("Async." + method, *args))


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = make_sim(member_listeners=False)
    try:
        yield s
    finally:
        # stopping waits out the listener's poll interval; nothing needs that
        # port any more, so let it finish while the next test starts
        stopper = threading.Thread(target=s.stop, name="stop storage sim", daemon=True)
        stopper.start()
        _STOPPING.append(stopper)


_STOPPING: list[threading.Thread] = []


@pytest.fixture(scope="module", autouse=True)
def stop_sims_at_module_end() -> Iterator[None]:
    yield
    while _STOPPING:
        _STOPPING.pop().join(timeout=5)


@pytest.fixture
def apis(xapi: Any, jrpc: JsonRpcClient) -> list[Api]:
    """Both clients, logged in to the same pool."""
    return [Api("xmlrpc", xapi), Api("jsonrpc", jrpc)]


def by_name(api: Api, cls: str, name: str) -> str:
    refs = api(f"{cls}.get_by_name_label", name)
    assert len(refs) == 1, (cls, name, refs)
    return str(refs[0])


def vbds_of(api: Api, vm: str, typ: str) -> list[str]:
    return [v for v in api("VM.get_VBDs", vm) if api("VBD.get_type", v) == typ]


def disk_of(api: Api, vm_name: str) -> tuple[str, str, str]:
    """(vm, first disk VBD, its VDI)."""
    vm = by_name(api, "VM", vm_name)
    vbd = sorted(vbds_of(api, vm, "Disk"), key=lambda v: api("VBD.get_userdevice", v))[0]
    return vm, vbd, api("VBD.get_VDI", vbd)


def cd_of(api: Api, vm_name: str) -> tuple[str, str]:
    vm = by_name(api, "VM", vm_name)
    return vm, vbds_of(api, vm, "CD")[0]


def sr_named(api: Api, name: str, host_index: int = 0) -> str:
    """An SR by name; for per-host SRs (Local storage) the one on the n-th host."""
    refs = sorted(api("SR.get_by_name_label", name))
    if len(refs) == 1:
        return str(refs[0])
    hosts = sorted(api("host.get_all"), key=lambda h: api("host.get_address", h))
    for sr in refs:
        pbds = api("SR.get_PBDs", sr)
        if pbds and api("PBD.get_host", pbds[0]) == hosts[host_index]:
            return str(sr)
    raise AssertionError(name)


def vdi_record(label: str, sr: str, size: int, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "name_label": label, "name_description": "", "SR": sr, "virtual_size": size,
        "type": "user", "sharable": False, "read_only": False, "other_config": {},
    }
    rec.update(extra)
    return rec


def vbd_record(vm: str, vdi: str, userdevice: str = "autodetect", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": False, "mode": "RW",
        "type": "Disk", "empty": False, "other_config": {}, "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }
    rec.update(extra)
    return rec


def usage(api: Api, sr: str) -> tuple[int, int]:
    """(physical_utilisation, virtual_allocation) of an SR."""
    rec = api("SR.get_record", sr)
    return int(rec["physical_utilisation"]), int(rec["virtual_allocation"])


def sum_of_vdis(api: Api, sr: str) -> tuple[int, int]:
    recs = [api("VDI.get_record", v) for v in api("SR.get_VDIs", sr)]
    return (sum(int(r["physical_utilisation"]) for r in recs),
            sum(int(r["virtual_size"]) for r in recs))
