"""Every operation of the catalogue is a CLI command: planned with ``--dry-run
--json`` on an object of the demo pool it is possible on, its plan is the one the
catalogue declares, and its xe line uses only parameters xe itself takes
(cli_frontend.ml)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.catalogue_support import (
    LATER_XAPI,
    check_xe_line,
    context,
    every_host_state,
    network_objects,
    possible,
    sample,
)
from tests.cli.helpers import conn_args, password_file, xsctl
from tests.conftest import make_sim, wait_for, xenapi_session
from tests.unit.helpers import connect
from xsctl.cli import build_parser
from xsctl.commands.ops import flag_dest
from xsctl.sim import Simulator
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.catalogue import Operation, ParamKind

OPS = catalogue.operations()
PLANNED = [op for op in OPS if op.id not in LATER_XAPI]
LATER = [op for op in OPS if op.id in LATER_XAPI]


@pytest.fixture(scope="module")
def busy_sim() -> Iterator[Simulator]:
    """The demo pool with a long copy running, so that a task can be cancelled, on
    four hosts, one of them off and one empty in maintenance mode."""
    s = make_sim(hosts=4)
    x = xenapi_session(s)
    try:
        network_objects(s)
        every_host_state(x.xenapi)
        s.op_time = 600.0  # outlasts the module, however loaded the machine
        backup = x.xenapi.VM.get_by_name_label("backup-01")[0]
        x.xenapi.Async.VM.copy(backup, "long-copy", "OpaqueRef:NULL")
        wait_for(lambda: any(t["status"] == "pending" and "cancel" in t["allowed_operations"]
                             for t in s.store.all("task").values()))
        yield s
    finally:
        s.op_time = 0.05
        x.xenapi.session.logout()
        s.stop()


def _argv(op: Operation, cache: Any, ref: str, values: dict[str, Any]) -> list[str]:
    argv = [op.cli_group, op.verb, "--dry-run", "--json"]
    if not op.kind.implicit:  # the pool's operations name no object
        argv.insert(2, str(cache.find(ref)[1]["uuid"]))
    if op.kind.parent is not None:  # a VM's device: the VM first
        argv.insert(2, str(cache.find(str(cache.find(ref)[1]["VM"]))[1]["uuid"]))
    if op.flag:
        argv.append(op.flag)
    for p in op.params:
        v = values[p.name]
        if p.positional:  # the file, the disk (by uuid), the position
            if v is not None:
                found = cache.find(v) if isinstance(v, str) else None
                argv.append(str(found[1]["uuid"]) if found else v)
        elif p.kind is ParamKind.FLAG:
            if v:
                argv.append(p.flags[0])
        elif v is None:
            continue
        elif p.kind is ParamKind.PAIRS:
            for k, x in v.items():
                argv += [p.flags[0], f"{k}={x}"]
        elif p.kind is ParamKind.PICK:
            found = cache.find(v)
            argv += [p.flags[0], str(found[1]["uuid"]) if found else v]
        elif p.kind is ParamKind.PICK_MANY:
            for x in v:
                argv += [p.flags[0], str(cache.find(x)[1]["uuid"])]
        elif p.kind is ParamKind.SIZE:
            argv += [p.flags[0], f"{v}B" if v % 1024 else f"{v // 1024}K"]
        else:
            argv += [p.flags[0], str(v)]
    return argv


@pytest.mark.parametrize("op", PLANNED, ids=[op.id for op in PLANNED])
def test_every_operation_plans_from_the_cli(op: Operation, busy_sim: Simulator,
                                            tmp_path: Path) -> None:
    with connect(busy_sim) as client:
        found = possible(op, client.cache)
        assert found is not None, f"no object of the demo pool allows {op.id}"
        ref, _, values = found
        argv = _argv(op, client.cache, ref, values)
    tasks = len(busy_sim.store.all("task"))
    r = xsctl(*conn_args(busy_sim, password_file(busy_sim, tmp_path)), *argv)
    assert r.code == 0, (argv, r.err)
    plans = r.json()
    assert len(plans) == 1 and plans[0]["action"] == op.id, plans
    assert plans[0]["calls"] and plans[0]["xe"]
    for line in plans[0]["xe"]:
        check_xe_line(line)
    assert len(busy_sim.store.all("task")) == tasks  # a dry run sends nothing


@pytest.mark.parametrize("op", LATER, ids=[op.id for op in LATER])
def test_an_operation_of_a_later_xapi_says_why_not(op: Operation, busy_sim: Simulator,
                                                  tmp_path: Path) -> None:
    with connect(busy_sim) as client:
        ref, _ = next(iter(op.kind.members(client.cache)))
        obj = op.kind.load(client.cache, ref)
        assert catalogue.why_not(op, client.cache, obj) == LATER_XAPI[op.id]
        values = sample(op, context(client.cache), obj)
        assert values is not None
        argv = _argv(op, client.cache, ref, values)
    r = xsctl(*conn_args(busy_sim, password_file(busy_sim, tmp_path)), *argv)
    assert r.code == 1 and r.err.strip().endswith(f": {LATER_XAPI[op.id]}"), r.err


def test_every_verb_and_variant_has_its_options() -> None:
    """The parser knows every verb, and every variant's flag and parameters."""
    parser = build_parser()
    for op in OPS:
        required = [a for p in op.params if p.required and p.kind is not ParamKind.FLAG
                    for a in ((p.flags[0], "x") if p.flags else ("x",))
                    if p.flags or p.positional]
        target = [] if op.kind.implicit else ["x"] if op.kind.parent is None else ["x", "y"]
        sub = parser.parse_args([op.cli_group, op.verb, *target, *required,
                                 *([op.flag] if op.flag else [])])
        assert op.id in sub.operations
        if op.flag:
            assert getattr(sub, flag_dest(op.flag)) is True
        for p in op.params:
            assert hasattr(sub, p.name), (op.id, p.name)


def test_xe_lines_are_checked_against_xe() -> None:
    """The check itself: a wrong parameter name or a missing required one is caught."""
    check_xe_line("xe vm-start uuid=1 on=xcp-ng-02 paused=true")
    check_xe_line("xe sr-create name-label=a type=nfs device-config:server=nas")
    for bad in ("xe vm-start uuid=1 host=xcp-ng-02", "xe vm-snapshot uuid=1",
                "xe vm-frobnicate uuid=1", "xe vm-copy uuid=1 new-name-label=a sr=b",
                "xe sr-create name-label=a type=nfs sm:x=1", "xe pbd-create host-uuid=h"):
        with pytest.raises(AssertionError):
            check_xe_line(bad)
