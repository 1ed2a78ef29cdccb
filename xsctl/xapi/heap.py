"""The one owner of the cyclic garbage collector's pauses and freezes.

A big pool is hundreds of thousands of small dicts, lists and strings that live as
long as the connection (the cache's records) plus whatever is built from them (the
VM table's rows). Measured at 10,000 VMs (tests/benchmarks/bench_tui.py):

* the collections that a growing heap sets off took ~0.7 s of a load;
* afterwards every full collection walked the ~560,000 objects of the records,
  0.2-0.4 s in one go, in the middle of a keystroke or a repaint.

Such data hold no reference cycles, so reference counting frees them when they are
replaced. So a build of long-lived data runs inside :func:`hold`: no cyclic
collection meanwhile, then ``gc.freeze()``, which moves every object alive into the
permanent generation that collections do not walk. The freeze is process-wide, so the
holds are counted here, in one place: the last :func:`release` unfreezes, and what
was frozen and has since become cyclic garbage (an app taken apart, a test's client)
can then be collected.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import weakref
from collections.abc import Iterator

_lock = threading.RLock()  # re-entrant: gc.collect() may run a holder's finalizer
_building = 0  # holds in progress, in any thread
_was_enabled = True  # the collector's state before the first of them
_holders: dict[int, weakref.finalize[[int], object]] = {}  # id(owner) -> its finalizer


@contextlib.contextmanager
def hold(owner: object) -> Iterator[None]:
    """Build long-lived data for ``owner``: the collector is off while the block
    runs, and what is alive when the last such block ends is frozen until ``owner``
    (and every other holder) is released. ``owner`` must accept weak references:
    one that is freed unreleased releases itself. A block that raises freezes
    nothing for its owner."""
    _begin()
    done = False
    try:
        yield
        done = True
    finally:
        _end(owner if done else None)


def release(owner: object) -> None:
    """``owner`` no longer keeps what it built frozen; after the last holder, the
    collector walks everything again."""
    _forget(id(owner))


def holding(owner: object) -> bool:
    with _lock:
        return id(owner) in _holders


def holders() -> int:
    with _lock:
        return len(_holders)


def _begin() -> None:
    global _building, _was_enabled
    with _lock:
        if _building == 0:
            _was_enabled = gc.isenabled()
            # Cyclic garbage goes first, or the freeze would keep it for good. Cheap
            # when the big data is frozen already: frozen objects are not walked.
            gc.collect()
            gc.disable()
        _building += 1


def _end(owner: object | None) -> None:
    global _building
    with _lock:
        _building -= 1
        if owner is not None and id(owner) not in _holders:
            _holders[id(owner)] = weakref.finalize(owner, _forget, id(owner))
        if _building == 0:
            if _holders:
                gc.freeze()
            if _was_enabled:
                gc.enable()


def _forget(key: int) -> None:
    with _lock:
        fin = _holders.pop(key, None)
        if fin is None:
            return
        fin.detach()
        if not _holders:
            gc.unfreeze()
