"""host.*: maintenance mode, power, memory, time and certificate, over real HTTPS."""

from __future__ import annotations

import ssl
import time
from datetime import UTC, datetime
from typing import Any

from tests.conftest import wait_for
from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, hosts_by_address, jfail
from xsctl.sim import Simulator
from xsctl.sim import rrd as rrd_mod
from xsctl.sim.handlers import host as host_mod


def member(x: Any, i: int = 1) -> str:
    return str(hosts_by_address(x)[i][0])


def test_allowed_operations_follow_enabled(xapi: Any) -> None:
    """xapi_host_helpers.ml valid_operations: reboot/shutdown/apply_updates need a
    disabled host; power_on needs a host that is not live."""
    h = member(xapi)
    ops = set(xapi.xenapi.host.get_allowed_operations(h))
    assert {"evacuate", "provision", "vm_start", "vm_migrate", "enable"} <= ops
    assert not ops & {"reboot", "shutdown", "apply_updates", "power_on"}
    xapi.xenapi.host.disable(h)
    ops = set(xapi.xenapi.host.get_allowed_operations(h))
    assert {"reboot", "shutdown", "apply_updates"} <= ops
    assert "power_on" not in ops


def test_reboot_and_shutdown_need_a_disabled_host(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_host_helpers.ml: HOST_NOT_DISABLED with no parameters."""
    h = member(xapi)
    assert fail(xapi.xenapi.host.reboot, h) == ["HOST_NOT_DISABLED"]
    assert jfail(jrpc, "host.shutdown", h) == ["HOST_NOT_DISABLED"]
    assert xapi.xenapi.host.get_record(h)["current_operations"] == {}


def test_disable_enable(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_host.ml disable/enable are idempotent and flip host.enabled."""
    h = member(xapi)
    jrpc("host.disable", h)
    jrpc("host.disable", h)
    assert xapi.xenapi.host.get_enabled(h) is False
    xapi.xenapi.host.enable(h)
    xapi.xenapi.host.enable(h)
    assert jrpc("host.get_enabled", h) is True
    assert fail(xapi.xenapi.host.enable, "OpaqueRef:nope") == ["HANDLE_INVALID", "host",
                                                              "OpaqueRef:nope"]


def test_reboot_evacuates_then_comes_back(sim: Simulator, xapi: Any) -> None:
    """xapi_host.ml shutdown_and_reboot_common + vm_evacuation.ml ensure_no_vms: the
    call returns at once with the host marked `shutdown` (xapi marks reboots so too)
    and not re-enableable; VMs that cannot move are shut down, the others migrate; the
    host goes down and comes back enabled."""
    h = member(xapi)
    before = {vm: xapi.xenapi.VM.get_record(vm) for vm in xapi.xenapi.host.get_resident_VMs(h)}
    users = [vm for vm, r in before.items() if not r["is_control_domain"]]
    blockers = set(xapi.xenapi.host.get_vms_which_prevent_evacuation(h))
    assert users and blockers
    xapi.xenapi.host.disable(h)
    xapi.xenapi.host.reboot(h)
    assert "shutdown" in xapi.xenapi.host.get_current_operations(h).values()
    assert fail(xapi.xenapi.host.enable, h) == ["HOST_DISABLED_UNTIL_REBOOT", h]
    metrics = xapi.xenapi.host.get_metrics(h)
    wait_for(lambda: not xapi.xenapi.host_metrics.get_live(metrics))
    wait_for(lambda: xapi.xenapi.host_metrics.get_live(metrics) and xapi.xenapi.host.get_enabled(h))
    wait_for(lambda: xapi.xenapi.host.get_current_operations(h) == {})
    for vm in users:
        rec = xapi.xenapi.VM.get_record(vm)
        if vm in blockers:
            assert rec["power_state"] == "Halted"
        else:
            assert rec["power_state"] == "Running" and rec["resident_on"] != h
    resident = xapi.xenapi.host.get_resident_VMs(h)
    assert all(xapi.xenapi.VM.get_is_control_domain(v) for v in resident)


def test_shutdown_then_power_on(xapi: Any) -> None:
    """xapi_host_helpers.ml: power_on is HOST_IS_LIVE [host] while the host runs and
    HOST_POWER_ON_MODE_DISABLED [] without a power-on mode."""
    h = member(xapi, 2)
    assert fail(xapi.xenapi.host.power_on, h) == ["HOST_IS_LIVE", h]
    xapi.xenapi.host.disable(h)
    xapi.xenapi.host.shutdown(h)
    metrics = xapi.xenapi.host.get_metrics(h)
    wait_for(lambda: not xapi.xenapi.host_metrics.get_live(metrics))
    wait_for(lambda: xapi.xenapi.host.get_current_operations(h) == {})
    assert xapi.xenapi.host.get_enabled(h) is False
    assert "power_on" not in xapi.xenapi.host.get_allowed_operations(h)
    assert fail(xapi.xenapi.host.power_on, h) == ["HOST_POWER_ON_MODE_DISABLED"]
    xapi.xenapi.host.set_power_on_mode(h, "wake-on-lan", {})
    assert "power_on" in xapi.xenapi.host.get_allowed_operations(h)
    xapi.xenapi.host.power_on(h)
    assert xapi.xenapi.host_metrics.get_live(metrics) is True
    assert xapi.xenapi.host.get_enabled(h) is True


def test_compute_free_memory(sim: Simulator, xapi: Any) -> None:
    """memory_check.ml host_compute_free_memory_with_maximum_compression: total less
    the host overhead and every resident VM's dynamic_min plus overhead."""
    for h, rec in hosts_by_address(xapi):
        total = int(xapi.xenapi.host_metrics.get_memory_total(rec["metrics"]))
        used = int(rec["memory_overhead"])
        for vm in rec["resident_VMs"]:
            v = xapi.xenapi.VM.get_record(vm)
            used += int(v["memory_dynamic_min"]) + int(v["memory_overhead"])
        assert int(xapi.xenapi.host.compute_free_memory(h)) == total - used
        assert xapi.xenapi.host.compute_memory_overhead(h) == rec["memory_overhead"]


def test_free_memory_drops_when_a_vm_starts(xapi: Any, jrpc: JsonRpcClient) -> None:
    """memory_check.ml: a started VM counts dynamic_min plus overhead."""
    h = member(xapi)
    vm = xapi.xenapi.VM.get_by_name_label("web-staging")[0]
    before = jrpc("host.compute_free_memory", h)
    jrpc("VM.start_on", vm, h, False, False)
    v = xapi.xenapi.VM.get_record(vm)
    after = jrpc("host.compute_free_memory", h)
    assert before - after == int(v["memory_dynamic_min"]) + int(v["memory_overhead"])


def test_server_time(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_host.ml get_servertime (UTC, Z suffix); get_server_localtime has no zone."""
    h = member(xapi)
    t = str(xapi.xenapi.host.get_servertime(h))
    assert t.endswith("Z")
    parsed = datetime.strptime(t, "%Y%m%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(parsed.timestamp() - time.time()) < 5
    local = jrpc("host.get_server_localtime", h)
    assert len(local) == 17 and local[8] == "T" and not local.endswith("Z")


def test_server_certificate_is_the_hosts_tls_certificate(sim: Simulator, xapi: Any) -> None:
    """xapi_host.ml get_server_certificate: the PEM the host serves TLS with."""
    for h, rec in hosts_by_address(xapi):
        pem = xapi.xenapi.host.get_server_certificate(h)
        assert pem == sim.certs[h].cert_pem.decode()
        served = ssl.get_server_certificate((rec["address"], sim.port))
        assert ssl.PEM_cert_to_DER_cert(served) == ssl.PEM_cert_to_DER_cert(pem)


def test_metric_drift_matches_rrd(sim: Simulator, xapi: Any) -> None:
    """xcp-rrdd host cpuN as in rrdd_http_handler.ml: host_cpu.utilisation follows the load /rrd_updates reports for the host."""
    h = member(xapi, 0)
    t = 1_795_000_000.0
    host_mod.drift(sim, t)
    expected = rrd_mod.host_cpu_now(sim.store, h, t)
    cpus = {int(c["number"]): c["utilisation"]
            for c in xapi.xenapi.host_cpu.get_all_records().values() if c["host"] == h}
    assert len(cpus) == len(expected) == 16
    for n, value in cpus.items():
        assert abs(value - expected[n]) < 1e-3 and 0.0 <= value <= 1.0
    host_mod.drift(sim, t + 3600)
    later = [c["utilisation"] for c in xapi.xenapi.host_cpu.get_all_records().values()
             if c["host"] == h]
    assert later != [cpus[n] for n in sorted(cpus)]


def test_host_operations_block_each_other(sim: Simulator, xapi: Any) -> None:
    """xapi_host_helpers.ml: a VM arriving (vm_migrate) blocks evacuate/reboot/shutdown
    with OTHER_OPERATION_IN_PROGRESS ["host", ref, op, task]."""
    h = member(xapi)
    with sim.store.lock:
        sim.store.set_map_key(h, "current_operations", "OpaqueRef:busy", "vm_migrate")
    assert "evacuate" not in xapi.xenapi.host.get_allowed_operations(h)
    assert fail(xapi.xenapi.host.evacuate, h) == [
        "OTHER_OPERATION_IN_PROGRESS", "host", h, "vm_migrate", "OpaqueRef:busy"]


def test_data_sources(xapi: Any, jrpc: JsonRpcClient) -> None:
    """host.get_data_sources / query_data_source (xapi_host.ml, rrdd_helper.ml): the
    same data sources /rrd_updates has for the host, with their current values."""
    h = member(xapi, 0)
    sources = {d["name_label"]: d for d in xapi.xenapi.host.get_data_sources(h)}
    assert {"cpu0", "cpu15", "cpu_avg", "loadavg", "memory_total_kib", "memory_free_kib",
            "pif_eth0_rx"} <= set(sources)
    assert sources["cpu0"]["units"] == "(fraction)" and sources["cpu0"]["max"] == 1.0
    total = int(xapi.xenapi.host_metrics.get_memory_total(xapi.xenapi.host.get_metrics(h)))
    assert jrpc("host.query_data_source", h, "memory_total_kib") == total / 1024
    assert 0.0 <= xapi.xenapi.host.query_data_source(h, "cpu_avg") <= 1.0
    details = fail(xapi.xenapi.host.query_data_source, h, "nope")
    assert details[0] == "INTERNAL_ERROR" and "nope" in details[1]
