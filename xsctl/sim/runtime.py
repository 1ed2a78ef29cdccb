"""What a simulated pool holds outside its database, one object per Simulator.

xapi's database is not all there is: xenopsd hands out domain ids, each host's local
database remembers a disable-until-reboot, alerts are files named by their creation
time, storage holds SRs and disks the database has forgotten, and event.next keeps a
queue of its own. The simulator keeps all of that here, with the memos it computes
from the database for speed, so that two simulators in one process share nothing
and a simulator's state goes when it goes. The Simulator owns it and the Store
carries it, so every handler reaches it from its context or its store.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from xsctl.sim.vdi_data import DiskContents

if TYPE_CHECKING:
    from xsctl.sim.handlers.event import NextQueue
    from xsctl.sim.handlers.vm_lifecycle import Facts
    from xsctl.sim.rrd import RrdObj, VmLoad

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A bounded memo, least recently used out; safe to share between threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, compute: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return value


# ---------------------------------------------------------------- storage


@dataclass
class StoredSr:
    """An SR as it exists on storage, with or without a database record."""

    uuid: str
    type: str
    where: tuple[str, ...]  # location key, see disks.where_of
    name_label: str
    name_description: str
    content_type: str
    capacity: int


@dataclass
class Storage:
    """What storage holds: an SR that was forgotten is still on its disk or share, a
    forgotten VDI is still in its SR. SR.scan, SR.probe and PBD.plug after
    SR.introduce look here."""

    srs: dict[str, StoredSr] = field(default_factory=dict)  # by SR uuid
    # VDIs on storage without a database record, by SR uuid then location
    ghost_vdis: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # what the disks hold (vdi_data.py)
    contents: DiskContents = field(default_factory=DiskContents)
    # what running guests wrote to thin-provisioned disks since their SR was last
    # scanned (VDI ref -> bytes): a scan or SR.update reads it into the records
    written: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------- the whole


RrdVmEntry = tuple[tuple[object, ...], tuple["RrdObj", "VmLoad"]]


@dataclass
class Runtime:
    # xenopsd: the last domain id handed out on each host (host ref -> domid)
    domids: dict[str, int] = field(default_factory=dict)
    # each host's Localdb host_disabled_until_reboot (host refs)
    disabled_until_reboot: set[str] = field(default_factory=set)
    # VMs whose guest report a test has set, by domid: the guest agent's first report
    # of that domain leaves it alone
    guest_reported: dict[str, int] = field(default_factory=dict)
    # alerts: sub-second creation times (xapi names message files by a float
    # timestamp and compares ``since`` against it); seeded ones have none
    message_times: dict[str, float] = field(default_factory=dict)
    storage: Storage = field(default_factory=Storage)
    # export.ml make_id: one counter per xapi process
    export_ids: itertools.count[int] = field(default_factory=itertools.count)
    export_ids_lock: threading.Lock = field(default_factory=threading.Lock)
    # sessions: when each was last used (time.monotonic), for the session timeout
    session_used: dict[str, float] = field(default_factory=dict)
    # event.from calls waiting for a change: thread -> deadline (time.monotonic)
    event_waits: dict[int, float] = field(default_factory=dict)
    # event.next (xapi_event.ml module Next), made at its first use
    next_queue: NextQueue | None = None
    next_queue_lock: threading.Lock = field(default_factory=threading.Lock)
    # the simulated dom0s (dom0.py): per VM, when it was seen paused (None: it runs)
    # and for how long it was paused before, so its counters stand still meanwhile
    dom0_pauses: dict[str, tuple[float | None, float]] = field(default_factory=dict)

    # --- memos of what follows from the database

    # the VM operations update_allowed_operations considers (from the datamodel)
    vm_allowable: tuple[str, ...] = ()
    # equal facts give equal allowed_operations: 10,000 VMs share a few dozen
    vm_allowed: dict[Facts, tuple[str, ...]] = field(default_factory=dict)
    # a running VM's RRD sources, rebuilt only when what they read changes
    # (VM ref -> (versions read, sources))
    rrd_vms: dict[str, RrdVmEntry] = field(default_factory=dict)
    # XXH64 of disk chunks: exports hash the same boot sector and empty chunks
    checksums: Memo[bytes, str] = field(default_factory=lambda: Memo(16))
