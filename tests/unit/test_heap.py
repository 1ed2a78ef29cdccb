"""One owner for the collector's pauses and freezes: the cache's load and the rows a
view builds from it hold the freeze together, and it ends with the last of them."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.xapi import heap


class Owner:
    """Anything that keeps long-lived data (a cache, a view)."""


def test_a_hold_pauses_the_collector_then_freezes_until_released() -> None:
    a = Owner()
    assert gc.isenabled()
    with heap.hold(a):
        assert not gc.isenabled()
        built = [{"n": i} for i in range(1000)]
    assert gc.isenabled()
    assert heap.holding(a)
    assert gc.get_freeze_count() >= len(built)
    heap.release(a)
    assert not heap.holding(a)


def test_a_failed_build_holds_nothing() -> None:
    a = Owner()
    with pytest.raises(RuntimeError), heap.hold(a):
        raise RuntimeError("no answer")
    assert gc.isenabled()
    assert not heap.holding(a)


def test_nested_holds_restore_the_collector_once() -> None:
    a, b = Owner(), Owner()
    with heap.hold(a):
        with heap.hold(b):
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer build is still going
    assert gc.isenabled()
    assert heap.holding(a) and heap.holding(b)
    heap.release(a)
    heap.release(b)


def test_the_last_release_unfreezes_and_a_freed_owner_releases_itself() -> None:
    """In a fresh interpreter, where no other holder can exist."""
    code = textwrap.dedent("""
        import gc
        from xsctl.xapi import heap

        class Owner: pass

        cache, view = Owner(), Owner()
        with heap.hold(cache):
            records = [{"n": i} for i in range(1000)]
        with heap.hold(view):
            rows = [(r["n"],) for r in records]
        assert gc.get_freeze_count() > 0 and heap.holders() == 2
        heap.release(cache)
        assert gc.get_freeze_count() > 0, "the view's rows are still held"
        del view  # dropped without a release
        assert heap.holders() == 0
        assert gc.get_freeze_count() == 0
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_cache_and_what_is_built_from_it_share_one_hold(sim: Simulator) -> None:
    with connect(sim) as c:
        assert heap.holding(c.cache)
        with c.cache.long_lived():
            assert not gc.isenabled()
            rows = {ref: (r["name_label"],) for ref, r in c.cache.all("vm").items()}
        assert gc.isenabled() and rows
        assert heap.holding(c.cache)
        c.cache.stop()
        assert not heap.holding(c.cache)
