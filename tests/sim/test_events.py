"""event.from, event.inject and event.register/next/unregister.

Sources: ocaml/xapi/xapi_event.ml (Token, Subscription, collect_events, from_inner,
from, inject, module Next), ocaml/tests/test_event.ml (test_event_from_ev,
test_event_from_ev_rel, test_event_from_timeout, object_level_event_test,
event_next_unblock, event_from_parallel_test), ocaml/xapi-types/event_types.ml (the
record), ocaml/database/db_cache_types.ml (Table.fold_over_recent/_deleted),
ocaml/xapi/xapi_message.ml (get_since_for_events), ocaml/xapi/xapi_globs.ml
(event_from_delay), ocaml/libs/xapi-stdext/lib/xapi-stdext-std/xstringext.ml
(String.split ~limit), ocaml/xapi/context.ml (trackid_of_session), and
ocaml/idl/datamodel.ml (gen_events, in_db).
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.conftest import wait_for, xenapi_session
from tests.jsonrpc import JsonRpcClient, JsonRpcError
from xsctl.sim import Simulator

TOKEN = re.compile(r"\d{20},\d{20}")


@pytest.fixture
def j(shared_sim: Simulator) -> Iterator[JsonRpcClient]:
    c = JsonRpcClient(shared_sim.url)
    c.login(shared_sim.user, shared_sim.password)
    yield c
    c.logout()
    c.close()


def client(sim: Simulator) -> JsonRpcClient:
    c = JsonRpcClient(sim.url)
    c.login(sim.user, sim.password)
    return c


def ev_from(c: JsonRpcClient, classes: list[str], token: str, timeout: float = 5.0) -> Any:
    return c("event.from", classes, token, timeout)


def token_now(c: JsonRpcClient, classes: list[str]) -> str:
    tok: str = ev_from(c, classes, "", 5.0)["token"]
    return tok


def by_name(sim: Simulator, cls: str, name: str) -> str:
    return next(r for r, row in sim.store.all(cls).items() if row["name_label"] == name)


def blocked_in_event_from(sim: Simulator) -> int:
    """Calls parked on the store's condition, i.e. event.from calls that found nothing
    and wait for a write (CPython's Condition keeps its waiters in ``_waiters``)."""
    return len(sim.store.cond._waiters)  # type: ignore[attr-defined]


def blocked_in_event_next(sim: Simulator) -> int:
    from xsctl.sim.handlers.event import next_queue

    return len(next_queue(sim).cond._waiters)  # type: ignore[attr-defined]


def later(delay: float, fn: Any, *args: Any) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        fn(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ---------------------------------------------------------------- tokens


def test_token_format_and_lexicographic_order(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """Token.to_string: ``%020Ld,%020Ld``, zero-padded so tokens compare as strings."""
    tokens = [token_now(j, ["*"])]
    vm = by_name(shared_sim, "VM", "cache-01")
    for i in range(3):
        j("VM.set_name_description", vm, f"v{i}")
        batch = ev_from(j, ["vm"], tokens[-1])
        assert TOKEN.fullmatch(batch["token"])
        tokens.append(batch["token"])
    assert tokens == sorted(tokens) and len(set(tokens)) == len(tokens)
    assert [int(t.split(",")[0]) for t in tokens] == sorted(int(t.split(",")[0]) for t in tokens)


@pytest.mark.parametrize("bad", ["garbage", "1,2,3", "12", "1,x", ",", " 1,2", "1;2"])
def test_unparseable_token(j: JsonRpcClient, bad: str) -> None:
    """Token.of_string: "" or exactly two Int64s, else
    EVENT_FROM_TOKEN_PARSE_FAILURE [token] (a lone number is not a token)."""
    with pytest.raises(JsonRpcError) as e:
        ev_from(j, ["vm"], bad, 0.1)
    assert e.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", bad]


def test_subscriptions_never_fail_to_parse(j: JsonRpcClient) -> None:
    """Subscription.of_string splits with ``String.split ~limit:2 '/'``, which always
    gives one or two parts, so EVENT_SUBSCRIPTION_PARSE_FAILURE (documented) is never
    raised: an odd subscription just matches nothing, and the call waits out its
    timeout."""
    tok = token_now(j, ["*"])
    t0 = time.monotonic()
    batch = ev_from(j, ["/", "vm/", "no_such_class", "", "a/b/c"], tok, 0.3)
    assert batch["events"] == [] and time.monotonic() - t0 >= 0.3


# ---------------------------------------------------------------- the first call


def test_empty_token_returns_every_object_as_add(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """An empty token is generation 0: every object of the subscribed classes is an
    ``add`` with its full record (XenCenter's XenObjectDownloader relies on it).
    session, event and data_source have gen_events = false: never any events."""
    batch = ev_from(j, ["*"], "")
    seen: dict[str, set[str]] = {}
    for e in batch["events"]:
        assert e["operation"] == "add" and e["timestamp"] == "0.0"
        assert set(e) == {"id", "timestamp", "class", "operation", "ref", "snapshot"}
        seen.setdefault(e["class"], set()).add(e["ref"])
    for cls, table in shared_sim.store.tables.items():
        if cls in ("session", "event", "data_source"):
            assert cls.lower() not in seen
        else:
            assert seen.get(cls.lower(), set()) == set(table), cls
    vm = by_name(shared_sim, "VM", "db-01")
    snap = next(e["snapshot"] for e in batch["events"] if e["ref"] == vm)
    assert snap == j("VM.get_record", vm)
    assert ev_from(j, ["session"], "", 0.2)["events"] == []


def test_valid_ref_counts(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """Every database table, lower-case, however narrow the subscription; tables not
    in the database (message, event, data_source) count 0."""
    counts = ev_from(j, ["pool"], "")["valid_ref_counts"]
    assert set(counts) == {c.lower() for c in shared_sim.dm.classes}
    assert counts["vm"] == len(j("VM.get_all"))
    assert counts["session"] == shared_sim.live_sessions()
    assert counts["message"] == 0 and counts["event"] == 0 and counts["data_source"] == 0


# ---------------------------------------------------------------- blocking


def test_blocks_until_the_timeout_then_returns_the_same_token(
    shared_sim: Simulator, j: JsonRpcClient
) -> None:
    """test_event.ml test_event_from_timeout; changes to other classes do not end
    the wait early, nor move the token (it tracks the subscribed objects only)."""
    tok = token_now(j, ["vm"])
    host = next(iter(shared_sim.store.all("host")))
    other = client(shared_sim)
    later(0.2, other, "host.set_name_description", host, "not a VM")
    t0 = time.monotonic()
    batch = ev_from(j, ["vm"], tok, 1.0)
    elapsed = time.monotonic() - t0
    assert batch["events"] == [] and batch["token"] == tok
    assert 1.0 <= elapsed < 2.0
    other.logout()


def test_wakes_up_on_a_matching_change(shared_sim: Simulator, j: JsonRpcClient) -> None:
    tok = token_now(j, ["vm"])
    vm = by_name(shared_sim, "VM", "cache-01")
    other = client(shared_sim)
    later(0.3, other, "VM.set_name_description", vm, "wake up")
    t0 = time.monotonic()
    batch = ev_from(j, ["vm"], tok, 30.0)
    assert time.monotonic() - t0 < 5
    assert [(e["ref"], e["operation"]) for e in batch["events"]] == [(vm, "mod")]
    assert batch["token"] > tok
    other.logout()


def test_changes_are_coalesced_into_one_event_with_the_current_record(
    shared_sim: Simulator, j: JsonRpcClient
) -> None:
    tok = token_now(j, ["vm"])
    vm = by_name(shared_sim, "VM", "cache-01")
    for i in range(4):
        j("VM.set_name_description", vm, f"step {i}")
    events = [e for e in ev_from(j, ["vm"], tok)["events"] if e["ref"] == vm]
    assert len(events) == 1
    assert events[0]["operation"] == "mod"
    assert events[0]["snapshot"]["name_description"] == "step 3"
    assert int(events[0]["id"]) == int(ev_from(j, ["vm"], tok)["token"].split(",")[0])


def test_add_mod_del_rules(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """collect_events: add if created after the token; mod if only modified; del
    only for objects created before the token, with no snapshot."""
    t0 = token_now(j, ["network"])
    gone = j("network.create", {"name_label": "ephemeral", "name_description": "",
                                "other_config": {}})
    j("network.destroy", gone)
    assert ev_from(j, ["network"], t0, 0.3)["events"] == []  # born and died: nothing
    net = j("network.create", {"name_label": "ev-net", "name_description": "",
                               "other_config": {}})
    j("network.set_name_description", net, "changed after creation")
    b1 = ev_from(j, ["network"], t0)
    assert [(e["operation"], e["ref"]) for e in b1["events"]] == [("add", net)]
    assert b1["events"][0]["snapshot"]["name_description"] == "changed after creation"
    j("network.set_name_description", net, "again")
    b2 = ev_from(j, ["network"], b1["token"])
    assert [(e["operation"], e["ref"]) for e in b2["events"]] == [("mod", net)]
    j("network.destroy", net)
    b3 = ev_from(j, ["network"], b2["token"])
    assert [(e["operation"], e["ref"]) for e in b3["events"]] == [("del", net)]
    assert "snapshot" not in b3["events"][0]
    assert int(b3["events"][0]["id"]) > int(b2["token"].split(",")[0])


def test_a_new_connector_object_mods_its_parent(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """test_event.ml test_event_from_ev_rel: creating a VBD is a vbd add and a vm mod
    (VM.VBDs changed); destroying it a vbd del and a vm mod."""
    vm = by_name(shared_sim, "VM", "backup-01")
    tok = token_now(j, ["vm", "vbd"])
    vbd = j("VBD.create", {
        "VM": vm, "VDI": "OpaqueRef:NULL", "userdevice": "7", "bootable": False,
        "mode": "RO", "type": "CD", "empty": True, "other_config": {},
        "qos_algorithm_type": "", "qos_algorithm_params": {},
    })
    b = ev_from(j, ["vm", "vbd"], tok)
    assert sorted((e["class"], e["operation"], e["ref"]) for e in b["events"]) == [
        ("vbd", "add", vbd), ("vm", "mod", vm)
    ]
    assert vbd in next(e for e in b["events"] if e["class"] == "vm")["snapshot"]["VBDs"]
    j("VBD.destroy", vbd)
    b2 = ev_from(j, ["vm", "vbd"], b["token"])
    assert sorted((e["class"], e["operation"], e["ref"]) for e in b2["events"]) == [
        ("vbd", "del", vbd), ("vm", "mod", vm)
    ]


def gen(token: str) -> int:
    return int(token.split(",")[0])


def new_network(j: JsonRpcClient, name: str) -> str:
    ref: str = j("network.create", {"name_label": name, "name_description": "",
                                    "other_config": {}})
    return ref


def test_add_or_mod_is_decided_by_the_creation_generation(
    shared_sim: Simulator, j: JsonRpcClient
) -> None:
    """collect_events: an object is an ``add`` when it was created after the token's
    generation and a ``mod`` when it was created at it or before, whatever happened
    since; an ``add`` carries the generation of the creation as its id, a ``mod``
    that of the last change. Here the token is exactly the creation's generation."""
    t0 = token_now(j, ["network"])
    net = new_network(j, "ev-boundary")
    b1 = ev_from(j, ["network"], t0)
    [add] = b1["events"]
    assert (add["operation"], add["ref"]) == ("add", net)
    created = int(add["id"])
    assert created > gen(t0) and gen(b1["token"]) == created  # the token is the creation

    j("network.set_name_description", net, "first change")
    b2 = ev_from(j, ["network"], b1["token"])
    [mod] = b2["events"]
    assert (mod["operation"], mod["ref"]) == ("mod", net)  # created at the token: mod
    assert int(mod["id"]) == gen(b2["token"]) > created
    assert mod["snapshot"]["name_description"] == "first change"

    # from the token before the creation, the same object, changed twice, is one add
    # with the creation's id and the last snapshot
    j("network.set_name_description", net, "second change")
    b3 = ev_from(j, ["network"], t0)
    [again] = b3["events"]
    assert (again["operation"], int(again["id"])) == ("add", created)
    assert again["snapshot"]["name_description"] == "second change"
    assert gen(b3["token"]) > int(mod["id"])

    # created at the token and deleted: a del (only what the caller saw as added)
    j("network.destroy", net)
    b4 = ev_from(j, ["network"], b1["token"])
    [gone] = b4["events"]
    assert (gone["operation"], gone["ref"]) == ("del", net) and "snapshot" not in gone
    assert int(gone["id"]) == gen(b4["token"]) > gen(b3["token"])


def test_one_batch_tells_each_object_apart(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """In one answer: the objects seen before the token that changed are ``mod``, the
    ones created since are ``add``, the ones deleted are ``del``, each once; an object
    created and deleted since does not appear."""
    old = new_network(j, "ev-old")
    doomed = new_network(j, "ev-doomed")
    tok = token_now(j, ["network"])
    j("network.set_name_description", old, "changed")
    fresh = new_network(j, "ev-fresh")
    j("network.set_name_description", fresh, "changed too")
    j("network.destroy", doomed)
    ghost = new_network(j, "ev-ghost")
    j("network.destroy", ghost)
    b = ev_from(j, ["network"], tok)
    assert sorted((e["operation"], e["ref"]) for e in b["events"]) == [
        ("add", fresh), ("del", doomed), ("mod", old)]
    j("network.destroy", old)
    j("network.destroy", fresh)


def test_object_subscription_and_case_insensitive_classes(
    shared_sim: Simulator, j: JsonRpcClient
) -> None:
    """test_event.ml object_level_event_test: ``vm/<ref>`` sees that VM only; class
    names are lower-cased (``VM`` = ``vm``)."""
    a, b = by_name(shared_sim, "VM", "web-02"), by_name(shared_sim, "VM", "web-03")
    tok = token_now(j, ["vm"])
    j("VM.set_name_description", b, "ignored")
    j("VM.set_name_description", a, "watched")
    for sub in (f"vm/{a}", f"VM/{a}"):
        events = ev_from(j, [sub], tok)["events"]
        assert [e["ref"] for e in events] == [a]
    assert {e["ref"] for e in ev_from(j, ["Vm"], tok)["events"]} >= {a, b}
    assert ev_from(j, [f"vm/{b}"], ev_from(j, ["vm"], tok)["token"], 0.2)["events"] == []


def test_session_logged_out_while_blocked(shared_sim: Simulator) -> None:
    """xapi_event.ml From.on_session_deleted wakes the call: SESSION_INVALID."""
    waiter = client(shared_sim)
    session = waiter.session
    tok = token_now(waiter, ["vm"])
    result: dict[str, Any] = {}

    def block() -> None:
        try:
            result["value"] = ev_from(waiter, ["vm"], tok, 30.0)
        except JsonRpcError as e:
            result["error"] = e.details

    t = threading.Thread(target=block, daemon=True)
    t0 = time.monotonic()
    t.start()
    wait_for(lambda: blocked_in_event_from(shared_sim) >= 1)
    other = JsonRpcClient(shared_sim.url)
    other.call("session.logout", session)
    t.join(10)
    assert result.get("error") == ["SESSION_INVALID", session]
    assert time.monotonic() - t0 < 5
    other.close()
    waiter.close()


# ---------------------------------------------------------------- messages


def test_message_events_use_the_second_half(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """Alerts live outside the database (xapi_message.ml get_since_for_events): add
    and del with id "0"; the token's second half is the last alert's generation, and
    0 when the caller does not subscribe to messages."""
    tok = token_now(j, ["message"])
    assert int(tok.split(",")[1]) > 0
    vm_uuid = shared_sim.store.get(by_name(shared_sim, "VM", "web-02"), "VM")["uuid"]
    msg = j("message.create", "TEST_ALERT", 3, "VM", vm_uuid, "body text")
    b = ev_from(j, ["message"], tok)
    assert [(e["class"], e["operation"], e["ref"], e["id"]) for e in b["events"]] == [
        ("message", "add", msg, "0")
    ]
    assert b["events"][0]["snapshot"]["name"] == "TEST_ALERT"
    assert b["token"].split(",")[1] > tok.split(",")[1]
    j("message.destroy", msg)
    b2 = ev_from(j, ["message"], b["token"])
    assert [(e["operation"], e["ref"]) for e in b2["events"]] == [("del", msg)]
    assert "snapshot" not in b2["events"][0]
    assert ev_from(j, ["vm"], "", 1.0)["token"].endswith(",00000000000000000000")


# ---------------------------------------------------------------- inject


def test_inject(shared_sim: Simulator, j: JsonRpcClient) -> None:
    """xapi_event.ml inject: touches the row (a mod) and returns (generation - 1, 0);
    event.from tokens compare greater once the change has been seen. The class must
    be the table's name exactly."""
    vm = by_name(shared_sim, "VM", "proxy-01")
    tok = token_now(j, ["vm"])
    injected = j("event.inject", "VM", vm)
    assert TOKEN.fullmatch(injected) and injected.endswith(",00000000000000000000")
    b = ev_from(j, ["vm"], tok)
    assert [(e["operation"], e["ref"]) for e in b["events"]] == [("mod", vm)]
    assert b["token"] > injected
    b2 = ev_from(j, ["vm"], injected)
    assert [e["ref"] for e in b2["events"]] == [vm]
    for cls, ref in (("vm", vm), ("host", vm), ("VM", "OpaqueRef:nope")):
        with pytest.raises(JsonRpcError) as e:
            j("event.inject", cls, ref)
        assert e.value.details == ["HANDLE_INVALID", cls, ref]


# ---------------------------------------------------------------- legacy event.next


def test_register_next_unregister(shared_sim: Simulator) -> None:
    """Module Next: one queue of every change (not coalesced), each with its snapshot;
    timestamps are OCaml ``string_of_float (Unix.time ())``."""
    x = xenapi_session(shared_sim)
    vm, host = by_name(shared_sim, "VM", "mail-01"), next(iter(shared_sim.store.all("host")))
    x.xenapi.event.register(["vm"])
    x.xenapi.VM.set_name_description(vm, "one")
    x.xenapi.VM.set_name_description(vm, "two")
    x.xenapi.host.set_name_description(host, "not registered")
    events = x.xenapi.event.next()
    assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("vm", "mod", vm)] * 2
    assert [e["snapshot"]["name_description"] for e in events] == ["one", "two"]
    assert all(re.fullmatch(r"\d+\.", e["timestamp"]) for e in events)
    assert int(events[1]["id"]) == int(events[0]["id"]) + 1
    x.xenapi.event.register(["host"])
    x.xenapi.event.unregister(["vm"])
    x.xenapi.VM.set_name_description(vm, "three")
    x.xenapi.host.set_name_description(host, "registered now")
    assert [e["class"] for e in x.xenapi.event.next()] == ["host"]
    x.xenapi.session.logout()


def test_next_without_register(shared_sim: Simulator) -> None:
    """SESSION_NOT_REGISTERED [trackid]: an MD5 of the session (context.ml)."""
    x = xenapi_session(shared_sim)
    with pytest.raises(XenAPI.Failure) as e:
        x.xenapi.event.next()
    assert e.value.details == [
        "SESSION_NOT_REGISTERED", "trackid=" + hashlib.md5(x.handle.encode()).hexdigest()
    ]
    x.xenapi.session.logout()


def test_events_lost(shared_sim: Simulator) -> None:
    """Next.events_read: EVENTS_LOST once events the caller had not read were
    dropped from the bounded queue; the next call carries on."""
    x = xenapi_session(shared_sim)
    vm = by_name(shared_sim, "VM", "mail-01")
    x.xenapi.event.register(["vm"])
    limit = shared_sim.event_next_queue_limit
    shared_sim.event_next_queue_limit = 5
    try:
        for i in range(8):
            x.xenapi.VM.set_name_description(vm, f"flood {i}")
        with pytest.raises(XenAPI.Failure) as e:
            x.xenapi.event.next()
        assert e.value.details == ["EVENTS_LOST"]
        x.xenapi.VM.set_name_description(vm, "after")
        assert [ev["snapshot"]["name_description"] for ev in x.xenapi.event.next()] == ["after"]
    finally:
        shared_sim.event_next_queue_limit = limit
    x.xenapi.session.logout()


def test_next_unblocks_on_logout(shared_sim: Simulator) -> None:
    """test_event.ml event_next_unblock."""
    x = xenapi_session(shared_sim)
    x.xenapi.event.register([])
    session = x.handle
    result: dict[str, Any] = {}

    def block() -> None:
        raw = getattr(x, "event.next")(session)
        result["reply"] = raw

    t = threading.Thread(target=block, daemon=True)
    t.start()
    wait_for(lambda: blocked_in_event_next(shared_sim) >= 1)
    other = JsonRpcClient(shared_sim.url)
    other.call("session.logout", session)
    t.join(10)
    assert result["reply"]["ErrorDescription"] == ["SESSION_INVALID", session]
    other.close()


# ---------------------------------------------------------------- concurrency


def test_many_concurrent_long_polls(shared_sim: Simulator) -> None:
    """test_event.ml event_from_parallel_test, at scale: 40 blocked event.from calls
    on their own connections (one shared session) are served at once and all wake
    on one change."""
    first = client(shared_sim)
    tok = token_now(first, ["pool"])
    clients = [first] + [JsonRpcClient(shared_sim.url) for _ in range(39)]
    for c in clients[1:]:
        c.session = first.session
    results: list[Any] = [None] * len(clients)

    def poll(i: int) -> None:
        results[i] = ev_from(clients[i], ["pool"], tok, 30.0)

    threads = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    wait_for(lambda: blocked_in_event_from(shared_sim) >= len(clients), timeout=10)
    t0 = time.monotonic()
    pool = next(iter(shared_sim.store.all("pool")))
    shared_sim.store.update(pool, {"name_description": "wake everyone"})
    for t in threads:
        t.join(15)
    assert time.monotonic() - t0 < 5
    assert all(r is not None and [e["ref"] for e in r["events"]] == [pool] for r in results)
    wait_for(lambda: all(not t.is_alive() for t in threads))
    first.logout()
    for c in clients:
        c.close()
