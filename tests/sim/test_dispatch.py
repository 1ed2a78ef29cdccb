"""Dispatch, generic messages and their errors, over XML-RPC and JSON-RPC 1.0/2.0.

Sources: ocaml/idl/ocaml_backend/gen_server.ml (order of checks: UTF-8, method,
parameter count, unmarshalling, session, async; defaults; unknown messages),
ocaml/xapi/server_helpers.ml, ocaml/xapi/session_check.ml, ocaml/xapi/exnHelper.ml
(HANDLE_INVALID, UUID_INVALID, MAP_DUPLICATE_KEY, INTERNAL_ERROR texts),
mirage/ocaml-rpc src/lib/rpc.ml (int64_of_rpc, bool_of_rpc, Rpc.to_string),
ocaml/database/db_filter_lex.mll, db_filter_parse.mly, db_filter.ml,
db_cache_impl.ml (get_all_records_where), ocaml/xapi/xapi_extensions.ml.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.sim.wirehelp import PROTOCOLS, Wire
from xsctl.sim import Simulator


@pytest.fixture(params=PROTOCOLS)
def w(request: pytest.FixtureRequest, shared_sim: Simulator) -> Iterator[Wire]:
    wire = Wire(shared_sim, request.param)
    yield wire
    wire.close()


@pytest.fixture(scope="module")
def s(shared_sim: Simulator) -> str:
    wire = Wire(shared_sim, "xmlrpc")
    return wire.login(shared_sim)


def ref_of(sim: Simulator, cls: str, name: str) -> str:
    return next(r for r, row in sim.store.all(cls).items() if row["name_label"] == name)


# ---------------------------------------------------------------- methods


def test_unknown_method_without_params(w: Wire) -> None:
    """gen_server.ml: no params -> unknown_rpc_failure."""
    assert w.fails("VM.no_such_message") == ["MESSAGE_METHOD_UNKNOWN", "VM.no_such_message"]


def test_unknown_method_with_session_checks_it_first(w: Wire, s: str) -> None:
    """With params the first is checked as a session (Session_check.check), then the
    host extensions know nothing of the name (xapi_extensions.ml find_extension)."""
    assert w.fails("VM.no_such_message", s) == ["MESSAGE_METHOD_UNKNOWN", "VM.no_such_message"]
    assert w.fails("VM.no_such_message", "OpaqueRef:bad") == ["SESSION_INVALID", "OpaqueRef:bad"]
    # server_helpers.ml strips Async. before the match
    assert w.fails("Async.VM.no_such_message", s) == [
        "MESSAGE_METHOD_UNKNOWN", "VM.no_such_message"
    ]


def test_read_only_field_has_no_setter(w: Wire, s: str, shared_sim: Simulator) -> None:
    """Only RW fields get an implicit set_<field> (datamodel_utils.ml); a setter for a
    RO field is simply not a message."""
    vm = ref_of(shared_sim, "VM", "web-02")
    for method in ("VM.set_power_state", "VM.set_uuid", "VM.set_resident_on", "host.set_enabled"):
        assert w.fails(method, s, vm, "x") == ["MESSAGE_METHOD_UNKNOWN", method]
    assert shared_sim.dm.classes["VM"].fields["power_state"].qualifier != "RW"


def test_removed_message_checks_session_then_answers_removed(w: Wire, s: str) -> None:
    """gen_server.ml: a message whose lifecycle is Removed checks the session and
    answers MESSAGE_REMOVED []."""
    assert w.fails("VM.get_is_snapshot_from_vmpp", s, "OpaqueRef:x") == ["MESSAGE_REMOVED"]
    assert w.fails("VM.get_is_snapshot_from_vmpp", "OpaqueRef:no", "x") == [
        "SESSION_INVALID", "OpaqueRef:no"
    ]


# ---------------------------------------------------------------- parameter count


def test_parameter_count_mismatch(w: Wire, s: str, shared_sim: Simulator) -> None:
    """MESSAGE_PARAMETER_COUNT_MISMATCH [method, expected, received], counts without
    the session; an empty list counts as -1 (``List.length __params - 1``)."""
    vm = ref_of(shared_sim, "VM", "web-02")
    assert w.fails("VM.get_record", s) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record",
                                           "1", "0"]
    assert w.fails("VM.get_record", s, vm, vm) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "2"
    ]
    assert w.fails("pool.get_all") == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "pool.get_all",
                                       "0", "-1"]
    # the alias reports the canonical name
    assert w.fails("VM_get_record", s)[:2] == ["MESSAGE_PARAMETER_COUNT_MISMATCH",
                                               "VM.get_record"]


def test_count_is_checked_before_the_session(w: Wire) -> None:
    assert w.fails("VM.get_record", "OpaqueRef:bad") == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"
    ]


def test_unmarshalling_is_before_the_session_check(w: Wire, shared_sim: Simulator) -> None:
    """gen_server.ml unmarshalls every argument, then checks the session."""
    details = w.fails("VM.start", "OpaqueRef:bad", "OpaqueRef:x", "yes", False)
    assert details == ["INTERNAL_ERROR", "Failure(\"Expected bool, got 'S(yes)'\")"]


def test_defaults_let_trailing_parameters_be_omitted(w: Wire, shared_sim: Simulator) -> None:
    """Messages with defaulted parameters accept any count from the required ones up
    (the generated pattern is ``a :: b :: default_args``); fewer is a mismatch that
    reports the required count."""
    assert w.fails("session.login_with_password", shared_sim.user) == [
        "MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", "2", "1"
    ]
    for args in ((), ("1.0",), ("1.0", "dispatch"), ("1.0", "dispatch", "extra")):
        ref = w.call("session.login_with_password", shared_sim.user, shared_sim.password, *args)
        w.call("session.logout", ref)


def test_vm_snapshot_without_ignore_vdis(w: Wire, s: str, shared_sim: Simulator) -> None:
    """VM.snapshot's ignore_vdis defaults to [] (datamodel param_defaults)."""
    vm = ref_of(shared_sim, "VM", "dns-01")
    snap = w.call("VM.snapshot", s, vm, f"snap-{w.protocol}")
    assert w.call("VM.get_snapshot_of", s, snap) == vm
    assert w.fails("VM.snapshot", s, vm) == ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.snapshot",
                                             "2", "1"]


# ---------------------------------------------------------------- argument types


def test_int_accepted_as_int_or_string(w: Wire, s: str, shared_sim: Simulator) -> None:
    """rpc.ml int64_of_rpc takes Int or String; int64 values come back untyped on
    XML-RPC (strings) and as numbers on JSON-RPC."""
    vm = ref_of(shared_sim, "VM", "web-02")
    w.call("VM.set_user_version", s, vm, 5)
    got = w.call("VM.get_user_version", s, vm)
    assert got == ("5" if w.protocol == "xmlrpc" else 5)
    w.call("VM.set_user_version", s, vm, "4294967296")
    assert str(w.call("VM.get_user_version", s, vm)) == "4294967296"
    assert w.fails("VM.set_user_version", s, vm, "12a") == [
        "INTERNAL_ERROR", 'Failure("Int64.of_string")'
    ]
    assert w.fails("VM.set_user_version", s, vm, " 5") == [
        "INTERNAL_ERROR", 'Failure("Int64.of_string")'
    ]
    assert w.fails("VM.set_user_version", s, vm, True) == [
        "INTERNAL_ERROR", "Failure(\"Expected int64, got 'B(true)'\")"
    ]


def test_bool_only_as_bool(w: Wire, s: str, shared_sim: Simulator) -> None:
    """rpc.ml bool_of_rpc accepts only Bool; the failure text is Printexc's."""
    pool = next(iter(shared_sim.store.all("pool")))
    w.call("pool.set_migration_compression", s, pool, True)
    assert w.call("pool.get_migration_compression", s, pool) is True
    assert w.fails("pool.set_migration_compression", s, pool, "true") == [
        "INTERNAL_ERROR", "Failure(\"Expected bool, got 'S(true)'\")"
    ]
    assert w.fails("pool.set_migration_compression", s, pool, 1) == [
        "INTERNAL_ERROR", "Failure(\"Expected bool, got 'I(1)'\")"
    ]


def test_string_only_as_string(w: Wire, s: str, shared_sim: Simulator) -> None:
    vm = ref_of(shared_sim, "VM", "web-02")
    assert w.fails("VM.set_name_description", s, vm, 5) == [
        "INTERNAL_ERROR", "Failure(\"Expected string, got 'I(5)'\")"
    ]
    assert w.fails("VM.get_record", s, ["x"]) == [
        "INTERNAL_ERROR", "Failure(\"Expected string, got '[S(x)]'\")"
    ]


def test_enum_values_are_matched(w: Wire, s: str, shared_sim: Simulator) -> None:
    vm = ref_of(shared_sim, "VM", "web-02")
    w.call("VM.set_actions_after_reboot", s, vm, "destroy")
    assert w.call("VM.get_actions_after_reboot", s, vm) == "destroy"
    w.call("VM.set_actions_after_reboot", s, vm, "restart")
    assert w.fails("VM.set_actions_after_reboot", s, vm, "explode")[0] == "INTERNAL_ERROR"


# ---------------------------------------------------------------- references


def test_handle_invalid(w: Wire, s: str, shared_sim: Simulator) -> None:
    """exnHelper.ml: a missing row is HANDLE_INVALID [table, ref]; a ref of another
    class is missing from this table."""
    assert w.fails("VM.get_record", s, "OpaqueRef:deadbeef") == [
        "HANDLE_INVALID", "VM", "OpaqueRef:deadbeef"
    ]
    host = next(iter(shared_sim.store.all("host")))
    assert w.fails("VM.get_name_label", s, host) == ["HANDLE_INVALID", "VM", host]
    assert w.fails("SR.get_record", s, "OpaqueRef:NULL") == ["HANDLE_INVALID", "SR",
                                                              "OpaqueRef:NULL"]


def test_uuid_invalid(w: Wire, s: str, shared_sim: Simulator) -> None:
    """exnHelper.ml: Read_missing_uuid -> UUID_INVALID [table, uuid]."""
    assert w.fails("VM.get_by_uuid", s, "not-a-uuid") == ["UUID_INVALID", "VM", "not-a-uuid"]
    host, row = next(iter(shared_sim.store.all("host").items()))
    assert w.call("host.get_by_uuid", s, row["uuid"]) == host
    assert w.fails("VM.get_by_uuid", s, row["uuid"]) == ["UUID_INVALID", "VM", row["uuid"]]


def test_session_invalid(w: Wire) -> None:
    assert w.fails("VM.get_all", "OpaqueRef:00000000-0000-0000-0000-000000000000") == [
        "SESSION_INVALID", "OpaqueRef:00000000-0000-0000-0000-000000000000"
    ]
    assert w.fails("VM.get_all", 5) == [
        "INTERNAL_ERROR", "Failure(\"Expected string, got 'I(5)'\")"
    ]


# ---------------------------------------------------------------- generic messages


def test_get_by_name_label(w: Wire, s: str, shared_sim: Simulator) -> None:
    assert w.call("VM.get_by_name_label", s, "db-01") == [ref_of(shared_sim, "VM", "db-01")]
    assert w.call("VM.get_by_name_label", s, "no such vm") == []
    assert w.call("SR.get_by_name_label", s, "db-01") == []


def test_map_add_remove_and_duplicate_key(w: Wire, s: str, shared_sim: Simulator) -> None:
    """exnHelper.ml: Db_exn.Duplicate_key (table, column, uuid, key) ->
    MAP_DUPLICATE_KEY; namespaced fields use their database column."""
    vm = ref_of(shared_sim, "VM", "monitor-01")
    uuid = shared_sim.store.get(vm, "VM")["uuid"]
    key = f"k-{w.protocol}"
    w.call("VM.add_to_other_config", s, vm, key, "1")
    assert w.call("VM.get_other_config", s, vm)[key] == "1"
    assert w.fails("VM.add_to_other_config", s, vm, key, "2") == [
        "MAP_DUPLICATE_KEY", "VM", "other_config", uuid, key
    ]
    w.call("VM.remove_from_other_config", s, vm, key)
    w.call("VM.remove_from_other_config", s, vm, key)  # absent: no error
    assert key not in w.call("VM.get_other_config", s, vm)
    w.call("VM.add_to_HVM_boot_params", s, vm, key, "x")
    assert w.fails("VM.add_to_HVM_boot_params", s, vm, key, "y") == [
        "MAP_DUPLICATE_KEY", "VM", "HVM__boot_params", uuid, key
    ]
    w.call("VM.remove_from_HVM_boot_params", s, vm, key)


def test_set_add_remove_tags(w: Wire, s: str, shared_sim: Simulator) -> None:
    vm = ref_of(shared_sim, "VM", "monitor-01")
    tag = f"t-{w.protocol}"
    w.call("VM.add_tags", s, vm, tag)
    w.call("VM.add_tags", s, vm, tag)
    assert w.call("VM.get_tags", s, vm).count(tag) == 1
    w.call("VM.remove_tags", s, vm, tag)
    w.call("VM.remove_tags", s, vm, tag)
    assert tag not in w.call("VM.get_tags", s, vm)


def test_set_writable_field(w: Wire, s: str, shared_sim: Simulator) -> None:
    net = ref_of(shared_sim, "network", shared_sim.store.get(next(iter(shared_sim.store.all("network"))),
                                                 "network")["name_label"])
    w.call("network.set_name_description", s, net, f"via {w.protocol}")
    assert w.call("network.get_name_description", s, net) == f"via {w.protocol}"
    assert w.call("network.get_record", s, net)["name_description"] == f"via {w.protocol}"


# ---------------------------------------------------------------- filter expressions


def test_get_all_records_where_expressions(w: Wire, s: str, shared_sim: Simulator) -> None:
    """db_filter_parse.mly / db_filter_lex.mll: ``field "col"`` and quoted literals,
    ``=``, and/or/not and parentheses, over database columns."""
    vms = shared_sim.store.all("VM")

    def names(expr: str) -> set[str]:
        return {vms[r]["name_label"] for r in w.call("VM.get_all_where", s, expr)}

    assert names('field "name__label" = "web-01"') == {"web-01"}
    assert names('"web-01" = field "name__label"') == {"web-01"}
    running = {r["name_label"] for r in vms.values()
               if r["power_state"] == "Running" and not r["is_a_template"]}
    assert names('field "power_state" = "Running" and field "is_a_template" = "false"') == running
    assert names('not (field "is_a_template" = "true") and field "power_state" = "Running"') \
        == running
    assert names('field "name__label" = "db-01" or field "name__label" = "db-02"') == \
        {"db-01", "db-02"}
    assert names('field "VCPUs__max" = "8" and field "is_a_template" = "false"') == \
        {r["name_label"] for r in vms.values() if r["VCPUs_max"] == 8 and not r["is_a_template"]}
    assert names("true") == {r["name_label"] for r in vms.values()}
    assert names('"a" = "b"') == set()
    recs = w.call("VM.get_all_records_where", s, 'field "name__label" = "db-01"')
    assert list(recs) == [ref_of(shared_sim, "VM", "db-01")]
    assert recs[ref_of(shared_sim, "VM", "db-01")]["name_label"] == "db-01"


def test_filter_and_or_have_equal_precedence(w: Wire, s: str) -> None:
    """``%left LAND LOR``: ``true or false and false`` is ``(true or false) and false``."""
    assert w.call("VM.get_all_where", s, "true or false and false") == []
    assert w.call("VM.get_all_where", s, "false and false or true") != []
    assert w.call("VM.get_all_where", s, "not true or true") != []  # (not true) or true


def test_filter_compares_database_strings(w: Wire, s: str, shared_sim: Simulator) -> None:
    """Values compare as stored: sets as S-expressions, floats %0.18g, bools."""
    vm = ref_of(shared_sim, "VM", "web-01")
    tags = shared_sim.store.get(vm, "VM")["tags"]
    sexp = "(" + " ".join(f"'{t}'" for t in tags) + ")"
    assert vm in w.call("VM.get_all_where", s, f'field "tags" = "{sexp}"')
    assert vm in w.call("VM.get_all_where", s, 'field "HVM__shadow_multiplier" = "1"')


def test_filter_errors(w: Wire, s: str) -> None:
    """A malformed expression is Db_filter.Expression_error -> INVALID_VALUE [expr,
    exn]; an unknown column, met on a row, is DBCache_NotFound ("missing field", ...)."""
    for expr, exn in [
        ('field "name__label" <> "x"', 'Failure("lexing: empty token")'),
        ('literal "x" = "x"', 'Failure("lexing: empty token")'),
        ('field "name__label" = "x', 'Failure("lexing: empty token")'),
        ('field "name__label" =', "Stdlib.Parsing.Parse_error"),
        ('(field "name__label" = "x"', "Stdlib.Parsing.Parse_error"),
        ("", "Stdlib.Parsing.Parse_error"),
    ]:
        assert w.fails("VM.get_all_records_where", s, expr) == ["INVALID_VALUE", expr, exn]
    assert w.fails("VM.get_all_where", s, 'field "name_label" = "web-01"') == [
        "INTERNAL_ERROR", "missing field", "name_label", ""
    ]


# ---------------------------------------------------------------- misc


def test_json_and_xml_share_sessions(shared_sim: Simulator) -> None:
    """Sessions are shared between the XML-RPC and JSON-RPC endpoints."""
    xml, js = Wire(shared_sim, "xmlrpc"), Wire(shared_sim, "jsonrpc-v2")
    ref = js.login(shared_sim)
    assert xml.call("session.get_this_host", ref, ref) == shared_sim.master_ref()
    xml.call("session.logout", ref)
    assert js.fails("VM.get_all", ref) == ["SESSION_INVALID", ref]


def test_sync_call_of_an_async_message_runs_under_a_task(shared_sim: Simulator, s: str) -> None:
    """Context.of_http_req: a synchronous call of a message with an async mode gets a
    real task in the database for its duration, named after the call, destroyed
    afterwards; getters (no async mode) get none."""
    seen: list[tuple[str, str]] = []

    def watch(cls: str, op: str, ref: str, row: Any) -> None:
        if cls == "task" and op in ("add", "del"):
            seen.append((op, row["name_label"]))

    shared_sim.store.watchers.append(watch)
    try:
        wire = Wire(shared_sim, "jsonrpc-v2")
        wire.call("VM.get_record", s, ref_of(shared_sim, "VM", "dns-02"))
        assert seen == []
        before = set(shared_sim.store.all("task"))
        wire.call("VM_snapshot", s, ref_of(shared_sim, "VM", "dns-02"), "under-a-task")
    finally:
        shared_sim.store.watchers.remove(watch)
    assert seen == [("add", "VM_snapshot"), ("del", "VM_snapshot")]
    assert set(shared_sim.store.all("task")) == before
