"""message.* as xapi_message.ml serves them, over XML-RPC and JSON-RPC."""

from __future__ import annotations

from typing import Any

from tests.conftest import vm_ref
from tests.jsonrpc import JsonRpcClient
from tests.sim.test_host_support import fail, jfail
from xsctl.sim import Simulator

EPOCH = "19700101T00:00:00Z"
FUTURE = "20991231T23:59:59Z"


def test_create_and_read(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml create/get_record/get_by_uuid."""
    vm = vm_ref(xapi, "web-01")
    uuid = xapi.xenapi.VM.get_uuid(vm)
    ref = xapi.xenapi.message.create("VM_REBOOTED", "5", "VM", uuid, "VM 'web-01' rebooted")
    rec = xapi.xenapi.message.get_record(ref)
    assert rec["name"] == "VM_REBOOTED" and rec["priority"] == "5" and rec["cls"] == "VM"
    assert rec["obj_uuid"] == uuid and rec["body"] == "VM 'web-01' rebooted"
    assert jrpc("message.get_by_uuid", rec["uuid"]) == ref
    assert jrpc("message.get_record", ref)["priority"] == 5
    assert ref in xapi.xenapi.message.get_all()
    assert ref in jrpc("message.get_all_records")


def test_create_checks_the_object(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml create: check_uuid: obj_uuid must name an object of cls: UUID_INVALID [cls, uuid]."""
    vm_uuid = xapi.xenapi.VM.get_uuid(vm_ref(xapi, "web-01"))
    assert fail(xapi.xenapi.message.create, "X", "1", "Host", vm_uuid, "") == [
        "UUID_INVALID", "Host", vm_uuid]
    assert jfail(jrpc, "message.create", "X", 1, "VMSS", vm_uuid, "") == [
        "UUID_INVALID", "VMSS", vm_uuid]
    pool_uuid = xapi.xenapi.pool.get_uuid(xapi.xenapi.pool.get_all()[0])
    assert jrpc("message.create", "X", 3, "Pool", pool_uuid, "")


def test_lookup_errors_name_the_class_in_lower_case(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml get_record/get_by_uuid/destroy."""
    assert fail(xapi.xenapi.message.get_record, "OpaqueRef:nope") == [
        "HANDLE_INVALID", "message", "OpaqueRef:nope"]
    assert jfail(jrpc, "message.get_by_uuid", "nope") == ["UUID_INVALID", "message", "nope"]
    assert jfail(jrpc, "message.destroy", "OpaqueRef:nope") == [
        "HANDLE_INVALID", "message", "OpaqueRef:nope"]


def test_get_since_is_strict_and_newest_first(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml get_since/get_real_inner."""
    host_uuid = xapi.xenapi.host.get_uuid(xapi.xenapi.host.get_all()[0])
    a = xapi.xenapi.message.create("A", "3", "Host", host_uuid, "")
    b = xapi.xenapi.message.create("B", "3", "Host", host_uuid, "")
    ts = str(xapi.xenapi.message.get_record(a)["timestamp"])  # no field getters here
    got = xapi.xenapi.message.get_since(ts)
    # xapi compares the sub-second creation time, so a message is newer than its own
    # whole-second timestamp
    assert list(got)[:2] == [b, a]
    assert xapi.xenapi.message.get_since(FUTURE) == {}
    assert len(jrpc("message.get_since", EPOCH)) == len(xapi.xenapi.message.get_all())
    assert next(iter(jrpc("message.get_since", "2000-01-01T00:00:00Z"))) == b


def test_get_by_object(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml get: UUID_INVALID with no parameters for an unknown object."""
    vm = vm_ref(xapi, "db-01")
    uuid = xapi.xenapi.VM.get_uuid(vm)
    seeded = jrpc("message.get", "VM", uuid, EPOCH)
    assert seeded and all(m["obj_uuid"] == uuid and m["cls"] == "VM" for m in seeded.values())
    new = jrpc("message.create", "VM_SNAPSHOTTED", 5, "VM", uuid, "again")
    assert next(iter(jrpc("message.get", "VM", uuid, EPOCH))) == new
    assert fail(xapi.xenapi.message.get, "VM", "no-such-uuid", EPOCH) == ["UUID_INVALID"]
    assert jrpc("message.get", "VM", uuid, FUTURE) == {}


def test_destroy_and_destroy_many(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml destroy/destroy_many."""
    uuid = xapi.xenapi.host.get_uuid(xapi.xenapi.host.get_all()[0])
    refs = [jrpc("message.create", f"M{i}", 4, "Host", uuid, "") for i in range(4)]
    jrpc("message.destroy", refs[0])
    assert refs[0] not in jrpc("message.get_all")
    # one by one: the ones before a bad ref go, the ones after stay
    assert fail(xapi.xenapi.message.destroy_many, [refs[1], "OpaqueRef:bad", refs[2]]) == [
        "HANDLE_INVALID", "message", "OpaqueRef:bad"]
    left = set(xapi.xenapi.message.get_all())
    assert refs[1] not in left and refs[2] in left
    xapi.xenapi.message.destroy_many([refs[2], refs[3]])
    assert not {refs[2], refs[3]} & set(xapi.xenapi.message.get_all())


def test_messages_use_the_second_half_of_the_token(xapi: Any) -> None:
    """xapi_event.ml: messages sit outside the database; their add/del events move
    the message generation of the token."""
    first = xapi.xenapi.event_from(["message"], "", 1.0)
    token = first["token"]
    uuid = xapi.xenapi.host.get_uuid(xapi.xenapi.host.get_all()[0])
    ref = xapi.xenapi.message.create("ALARM", "1", "Host", uuid, "cpu")
    batch = xapi.xenapi.event_from(["message"], token, 5.0)
    assert [(e["class"], e["operation"], e["ref"]) for e in batch["events"]] == [
        ("message", "add", ref)]
    assert batch["token"].split(",")[0] == token.split(",")[0]
    assert batch["token"].split(",")[1] > token.split(",")[1]
    xapi.xenapi.message.destroy(ref)
    dels = xapi.xenapi.event_from(["message"], batch["token"], 5.0)["events"]
    assert [(e["operation"], e["ref"]) for e in dels] == [("del", ref)]


def test_get_all_records_where(xapi: Any, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml get_all_records_where: only message fields."""
    hits = jrpc("message.get_all_records_where", 'field "name"="ALARM"')
    assert hits and all(m["name"] == "ALARM" for m in hits.values())
    details = jfail(jrpc, "message.get_all_records_where", 'field "name__label"="x"')
    assert details[0] == "INTERNAL_ERROR"


def test_emit_is_what_the_simulator_uses(sim: Simulator, xapi: Any) -> None:
    """api_messages.ml priorities."""
    from xsctl.sim.handlers import message

    uuid = xapi.xenapi.host.get_uuid(xapi.xenapi.host.get_all()[0])
    ref = message.emit(sim, "HOST_CLOCK_SKEW_DETECTED", "Host", uuid, "skew")
    rec = xapi.xenapi.message.get_record(ref)
    assert rec["priority"] == "3" and rec["name"] == "HOST_CLOCK_SKEW_DETECTED"


# what xapi keeps in a message file: Encodings.UTF8_XML
ACCEPTED_BODIES = [
    "",
    "line one\nline two\r\n\ttabbed",
    "[bold red]markup[/] <b>html</b> & 'quotes' \"too\"",
    "C1 controls are XML: \x9b2J \x9d0;PWNED\x9c \x85 and DEL \x7f",
    "😀 ünïcödé עברית 中文",
    "x" * 100_000,
]
REFUSED_BODIES = [
    "evil\x1b]0;PWNED\x07\x1b[2J",  # ESC and BEL
    "nul\x00",
    "form feed\x0c",
    "non-character \ufdd0",
    "non-character \ufffe",
    "plane 16 non-character \U0010ffff",
]


def test_create_takes_any_body_an_xml_file_holds(sim: Simulator, jrpc: JsonRpcClient) -> None:
    """xapi_message.ml create: whatever Encodings.UTF8_XML accepts is kept as given,
    C1 controls included; over JSON-RPC, which can carry them all."""
    host = jrpc("host.get_uuid", jrpc("host.get_all")[0])
    for body in ACCEPTED_BODIES:
        ref = jrpc("message.create", "ALARM", 2, "Host", host, body)
        assert jrpc("message.get_record", ref)["body"] == body
        assert sim.store.get(ref)["body"] == body


def test_create_refuses_what_an_xml_file_cannot_hold(sim: Simulator, jrpc: JsonRpcClient) -> None:
    """C0 controls other than tab, newline and carriage return, and Unicode
    non-characters: INVALID_VALUE ["UTF8 expected"], checked before the object."""
    host = jrpc("host.get_uuid", jrpc("host.get_all")[0])
    count = len(sim.store.all("message"))
    for body in REFUSED_BODIES:
        assert jfail(jrpc, "message.create", "ALARM", 2, "Host", host, body) == [
            "INVALID_VALUE", "UTF8 expected"], body
        assert jfail(jrpc, "message.create", "ALARM", 2, "Host", "no-such-uuid", body) == [
            "INVALID_VALUE", "UTF8 expected"], body
    assert len(sim.store.all("message")) == count


def test_alerts_xapi_cannot_write_are_not_raised(sim: Simulator, jrpc: JsonRpcClient) -> None:
    """message_forwarding.ml ignores a failed Xapi_message.create: a VM whose name
    holds an escape starts, and no VM_STARTED alert names it."""
    [vm] = jrpc("VM.get_by_name_label", "backup-01")
    jrpc("VM.set_name_label", vm, "evil\x1b[2J")
    uuid = jrpc("VM.get_uuid", vm)
    jrpc("VM.start", vm, False, False)
    assert jrpc("VM.get_power_state", vm) == "Running"
    assert not [m for m in jrpc("message.get_all_records").values() if m["obj_uuid"] == uuid]
    jrpc("VM.set_name_label", vm, "fine \x9b31m")
    jrpc("VM.hard_shutdown", vm)
    [alert] = [m for m in jrpc("message.get_all_records").values() if m["obj_uuid"] == uuid]
    assert alert["name"] == "VM_SHUTDOWN" and "fine \x9b31m" in alert["body"]
