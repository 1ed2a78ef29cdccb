"""The simulator: a store seeded with a demo pool, a dispatcher, and one listener per
simulated host. Start it in-process (tests, ``xsctl demo``) or with ``xsctl sim``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xsctl.sim import certs, control, datamodel
from xsctl.sim.dispatch import Dispatcher
from xsctl.sim.runtime import Runtime
from xsctl.sim.server import Handler, Listener, make_tcp, make_unix
from xsctl.sim.store import Store

HttpHandler = Callable[[Handler, dict[str, list[str]]], None]


@dataclass
class Faults:
    """Faults for reliability tests. Not part of xapi's API."""

    latency: float = 0.0  # seconds added to every call
    drop_next: int = 0  # close the next N connections mid-call, unanswered
    event_delay: float = 0.0  # extra seconds before every event.from answer
    down: bool = False  # xapi restarting: connections are dropped
    # method -> how many of its next calls fail (with INTERNAL_ERROR, as an unexpected
    # failure in xapi or a driver shows): a plan's step failing half way
    fail_calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"latency": self.latency, "drop_next": self.drop_next,
                "event_delay": self.event_delay, "down": self.down,
                "fail": dict(self.fail_calls)}

    def fail_next(self, method: str, count: int = 1) -> None:
        with self._lock:
            self.fail_calls[method] = self.fail_calls.get(method, 0) + count

    def take_failure(self, method: str) -> bool:
        with self._lock:
            left = self.fail_calls.get(method, 0)
            if left <= 0:
                return False
            if left == 1:
                del self.fail_calls[method]
            else:
                self.fail_calls[method] = left - 1
            return True

    def take_drop(self) -> bool:
        with self._lock:
            if self.drop_next > 0:
                self.drop_next -= 1
                return True
            return False


def _member_addresses(master: str, count: int) -> list[str]:
    """Loopback addresses for pool members (127.0.0.2, ...), as each real host has its
    own IP; elsewhere TEST-NET addresses that no listener serves."""
    try:
        ip = ipaddress.ip_address(master)
    except ValueError:
        ip = ipaddress.ip_address("127.0.0.1")
    if ip.is_loopback and ip.version == 4:
        return [str(ip + i) for i in range(1, count + 1)]
    return [f"192.0.2.{10 + i}" for i in range(1, count + 1)]


class Simulator:
    def __init__(
        self,
        *,
        seed: int = 1,
        epoch: float | None = None,
        vms: int | None = None,
        hosts: int = 3,
        user: str = "root",
        password: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: bool = True,
        http_port: int | None = None,
        unix_path: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        op_time: float = 0.5,
        auth_fail_delay: float = 5.0,
        member_listeners: bool = True,
        jsonrpc: bool = True,
        drift: bool = True,
        rrd_time: float | None = None,
        session_timeout: float | None = None,
    ) -> None:
        # handler modules register themselves on import
        from xsctl.sim import handlers  # noqa: F401

        self.dm = datamodel.load()
        self.runtime = Runtime()
        self.store = Store(self.dm, seed=seed, runtime=self.runtime)
        self.seed = seed
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(12)
        self.bind_host = host
        self.port = port
        self.tls = tls
        self.http_port = http_port
        self.unix_path = unix_path
        self.op_time = op_time
        self.auth_fail_delay = auth_fail_delay
        self.member_listeners = member_listeners
        self.jsonrpc = jsonrpc  # False: /jsonrpc answers 404, like a host without it
        self.drift = drift  # False: live metrics stand still (screenshots)
        # the RRDs' last update, fixed (screenshots); None: the wall clock
        self.rrd_time = rrd_time
        # seconds a session may stay unused before it expires, as xapi's inactive
        # session timeout (24 h there); None: sessions last until logout or restart
        self.session_timeout = session_timeout
        self.faults = Faults()
        # event.next keeps at most this many unread events before EVENTS_LOST
        self.event_next_queue_limit = 100_000
        self.control_token = secrets.token_hex(16)
        self.http_get: dict[str, HttpHandler] = {}
        self.http_put: dict[str, HttpHandler] = {}
        self.http_connect: dict[str, HttpHandler] = {}
        self.listeners: dict[str, list[Listener]] = {}
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stop = threading.Event()

        master_addr = host
        if host in ("0.0.0.0", "::", ""):
            master_addr = "127.0.0.1"
        self.addresses = [master_addr, *_member_addresses(master_addr, hosts - 1)]

        from xsctl.sim import seed as seeding

        # "now" of the seed: uptimes and alert ages count from it (fixed for screenshots)
        self.epoch = epoch if epoch is not None else time.time()
        seeding.build(self, hosts=hosts, vms=vms)

        # one certificate per host, as each xapi host generates its own
        self.certs: dict[str, certs.ServerCert] = {}
        for i, (href, hrow) in enumerate(sorted(
            self.store.all("host").items(), key=lambda kv: kv[1]["address"]
        )):
            if i == 0 and cert_file and key_file:
                self.certs[href] = certs.load(cert_file, key_file)
            else:
                self.certs[href] = certs.generate(hrow["hostname"], [hrow["address"]])
        self.dispatcher = Dispatcher(self)
        from xsctl.sim import http_extra

        http_extra.register(self)

    # ------------------------------------------------------------ pool facts

    def master_ref(self) -> str:
        pool = next(iter(self.store.all("pool").values()))
        ref: str = pool["master"]
        return ref

    def master_address(self) -> str:
        addr: str = self.store.get(self.master_ref(), "host")["address"]
        return addr

    def master_thumbprint(self, kind: str = "sha256") -> str:
        cert = self.certs.get(self.master_ref())
        if cert is None:
            return ""
        return cert.sha256 if kind == "sha256" else cert.sha1

    def host_by_address(self, address: str) -> str | None:
        for ref, row in self.store.all("host").items():
            if row["address"] == address:
                return ref
        return None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Simulator:
        if self._started:
            return self
        master = self.master_ref()
        hosts = sorted(self.store.all("host").items(), key=lambda kv: kv[0] != master)
        scheme_tls = self.tls
        for href, hrow in hosts:
            tls_ctx = self.certs[href].context() if scheme_tls else None
            if href == master:
                lst = make_tcp(self, href, (self.bind_host, self.port), tls_ctx)
                self.port = lst.port
            else:
                if not self.member_listeners:
                    continue
                try:
                    lst = make_tcp(self, href, (hrow["address"], self.port), tls_ctx)
                except OSError:
                    continue
            lst.start()
            self.listeners.setdefault(href, []).append(lst)
        if self.http_port is not None:
            lst = make_tcp(self, master, (self.bind_host, self.http_port), None)
            self.http_port = lst.port
            lst.start()
            self.listeners[master].append(lst)
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
            lst = make_unix(self, master, self.unix_path)
            lst.start()
            self.listeners[master].append(lst)
        self._started = True
        t = threading.Thread(target=self._housekeeping, daemon=True, name="sim housekeeping")
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.store.cond:
            self.store.cond.notify_all()
        for lsts in self.listeners.values():
            for lst in lsts:
                lst.stop()
        self.listeners.clear()
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)
        self._started = False

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def track_thread(self, t: threading.Thread) -> None:
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)

    def _housekeeping(self) -> None:
        """Heartbeat and metric drift: xapi injects a pool `mod` now and then so idle
        event.from subscribers wake up (xapi_event.ml heartbeat)."""
        from xsctl.sim.handlers import metrics_tick

        last_beat = time.monotonic()
        while not self._stop.wait(5.0):
            if self.faults.down:
                continue
            if self.drift:
                metrics_tick(self)
            self.expire_idle_sessions()
            if time.monotonic() - last_beat > 60:
                last_beat = time.monotonic()
                with self.store.lock:
                    for ref in list(self.store.all("pool")):
                        self.store.touch(ref)
            self.store.compact()

    # ------------------------------------------------------------ addressing

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def url_for(self, address: str) -> str:
        host = address if ":" not in address else f"[{address}]"
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def url(self) -> str:
        bind = self.bind_host if self.bind_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return self.url_for(bind)

    @property
    def fingerprint(self) -> str:
        """The master's certificate fingerprint as ``--accept-fingerprint`` takes it."""
        return "SHA256:" + self.master_thumbprint("sha256")

    def fingerprint_of(self, host_ref: str) -> str:
        return "SHA256:" + self.certs[host_ref].sha256

    def member_urls(self) -> dict[str, str]:
        return {
            self.store.get(h, "host")["address"]: self.url_for(self.store.get(h, "host")["address"])
            for h in self.listeners
        }

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "user": self.user,
            "password": self.password,
            "fingerprint": self.fingerprint if self.tls else None,
            "unix": self.unix_path,
            "http_url": f"http://{self.addresses[0]}:{self.http_port}" if self.http_port else None,
            "hosts": [
                {
                    "name_label": row["name_label"],
                    "address": row["address"],
                    "url": self.url_for(row["address"]) if ref in self.listeners else None,
                    "fingerprint": self.fingerprint_of(ref),
                    "master": ref == self.master_ref(),
                }
                for ref, row in sorted(self.store.all("host").items(), key=lambda kv: kv[1]["address"])
            ],
            "control": f"{self.url}/sim/control",
            "control_token": self.control_token,
        }

    # ------------------------------------------------------------ the hosts' dom0

    def host_tools(self, folder: str) -> str:
        """Write each host's simulated dom0 tools (xentop, xl, xenpm, perf, ...) into
        ``folder/ADDRESS/`` and return ``folder``: a profile's ``host_tools``."""
        from xsctl.sim.dom0 import write_tools

        return str(write_tools(self, folder))

    # ------------------------------------------------------------ introspection

    def live_sessions(self) -> int:
        """Sessions that are logged in: what a leak test reads."""
        return len(self.store.all("session"))

    def session_originators(self) -> list[str]:
        return [row["originator"] for row in self.store.all("session").values()]

    def waiting_event_calls(self) -> list[float]:
        """The event.from calls waiting for a change now, as the seconds each has left
        to wait: what a test waits for instead of sleeping."""
        now = time.monotonic()
        with self.store.lock:
            return sorted(d - now for d in self.runtime.event_waits.values())

    # ------------------------------------------------------------ what guests report

    def set_guest_metrics(self, vm: str, **fields: Any) -> str:
        """Report from a running VM's guest, as its guest agent does
        (xapi_guest_agent.ml): set any VM_guest_metrics fields (os_version, networks,
        PV_drivers_version, PV_drivers_detected, PV_drivers_up_to_date, memory, disks,
        other, live, can_use_hotplug_vbd, can_use_hotplug_vif, other_config), with
        last_updated moving on and the VM's and its devices' allowed_operations
        recomputed, so clients see the events xapi would send. The strings are the
        guest's own: anything goes. The agent's own first report after boot no longer
        overwrites them. Returns the VM_guest_metrics ref; a VM that is not running,
        an unknown field or a value of the wrong type raise ValueError."""
        from xsctl.sim.dispatch import coerce
        from xsctl.sim.errors import XapiFailure
        from xsctl.sim.handlers.vm_guest import report

        cdef = self.dm.classes["VM_guest_metrics"]
        checked: dict[str, Any] = {}
        for name, value in fields.items():
            f = cdef.fields.get(name)
            if f is None or name in ("uuid", "last_updated"):
                raise ValueError(f"a guest does not report VM_guest_metrics.{name}")
            try:
                checked[name] = coerce(value, f.type, self.dm)
            except XapiFailure:
                raise ValueError(f"VM_guest_metrics.{name} cannot be {value!r}") from None
        with self.store.lock:
            row = self.store.find(vm)
            if row is None or self.store.cls_of.get(vm) != "VM":
                raise ValueError(f"no VM {vm!r}")
            if row["power_state"] not in ("Running", "Paused"):
                raise ValueError(f"{row['name_label']!r} is {row['power_state']}: only a "
                                 "running guest reports")
            self.runtime.guest_reported[vm] = int(row["domid"])
            return report(self.store, vm, checked)

    # ------------------------------------------------------------ sessions

    def expire_sessions(self, session: str | None = None) -> list[str]:
        """Expire one session, or every one, as xapi's session timeout does
        (Db_gc_util.timeout_sessions): it is gone, so its next call fails with
        SESSION_INVALID [session], as does an event.from waiting with it. Returns
        the sessions expired."""
        from xsctl.sim.handlers.session import destroy_session

        with self.store.lock:
            refs = list(self.store.all("session")) if session is None else [session]
            refs = [r for r in refs if self.store.exists(r, "session")]
            for ref in refs:
                destroy_session(self, ref)
        return refs

    def expire_idle_sessions(self) -> list[str]:
        """The session timeout's periodic sweep (housekeeping runs it): the sessions
        unused for longer than ``session_timeout`` expire. Returns them."""
        timeout = self.session_timeout
        if timeout is None:
            return []
        now = time.monotonic()
        used = self.runtime.session_used
        with self.store.lock:
            idle = [r for r in self.store.all("session") if now - used.setdefault(r, now) > timeout]
        return [r for ref in idle for r in self.expire_sessions(ref)]

    # ------------------------------------------------------------ faults

    def restart(
        self, downtime: float = 0.5, while_down: Callable[[Simulator], None] | None = None
    ) -> None:
        """Simulate an xapi restart: every connection drops, every session becomes
        invalid, and the in-memory memory of deletions is gone, so clients must log
        in again and read everything afresh. ``while_down`` may change the pool."""
        store = self.store
        self.faults.down = True
        for lsts in self.listeners.values():
            for lst in lsts:
                lst.server.drop_all()
        with store.lock:
            for ref in list(store.all("session")):
                store.destroy(ref)
            self.runtime.session_used.clear()
            from xsctl.sim.handlers import event as event_handlers

            event_handlers.forget_registrations(self)
            if while_down is not None:
                while_down(self)
            store.deleted.clear()
            store.msg_deleted.clear()
            store.epoch += 1
            store.cond.notify_all()
        time.sleep(downtime)
        self.faults.down = False

    def change_master(self, host_ref: str) -> None:
        """pool.designate_new_master: the old master now answers HOST_IS_SLAVE."""
        with self.store.lock:
            pool_ref = next(iter(self.store.all("pool")))
            self.store.get(host_ref, "host")
            self.store.update(pool_ref, {"master": host_ref})
        for lsts in self.listeners.values():
            for lst in lsts:
                lst.server.drop_all()

    def move_host(self, host_ref: str, address: str) -> None:
        """The host's management interface now has ``address`` (PIF.reconfigure_ip,
        host.management_reconfigure): host.address follows it and xapi listens there
        (xapi_mgmt_iface.ml on_dom0_networking_change). Done just after the call has
        answered, as the old address goes away under it; an address this machine
        cannot serve leaves the host unreachable, as a wrong one does a real host."""
        with self.store.lock:
            if self.store.get(host_ref, "host")["address"] == address:
                return
            self.store.update(host_ref, {"address": address})

        def move() -> None:
            time.sleep(0.05)  # let the answer reach the client first
            if not self._started or self.stopping:
                return
            old = [lst for lst in self.listeners.get(host_ref, [])
                   if isinstance(lst.server.server_address, tuple)
                   and lst.server.server_address[1] == self.port]
            for lst in old:
                lst.stop()
                self.listeners[host_ref].remove(lst)
            tls_ctx = self.certs[host_ref].context() if self.tls else None
            try:
                lst = make_tcp(self, host_ref, (address, self.port), tls_ctx)
            except OSError:
                return
            lst.start()
            self.listeners.setdefault(host_ref, []).append(lst)

        t = threading.Thread(target=move, daemon=True, name="management interface move")
        t.start()
        self.track_thread(t)

    def control(self, action: str, args: Any) -> Any:
        """The /sim/control endpoint (and ``xsctl sim-control``); a bad action or
        argument raises ControlError and changes nothing."""
        args = control.check(action, args)
        if action == "info":
            return {"sessions": self.live_sessions(), "faults": self.faults.describe(),
                    **self.info()}
        if action == "sessions":
            return self.live_sessions()
        if action == "latency":
            self.faults.latency = args["seconds"]
            return self.faults.latency
        if action == "drop":
            with self.faults._lock:
                self.faults.drop_next = args["count"]
            return self.faults.drop_next
        if action == "slow_events":
            self.faults.event_delay = args["seconds"]
            return self.faults.event_delay
        if action == "restart":
            threading.Thread(
                target=self.restart, kwargs={"downtime": args["downtime"]}, daemon=True,
            ).start()
            return True
        if action == "master":
            target = args["host"]
            ref = next((r for r, row in self.store.all("host").items()
                        if target in (r, row["uuid"], row["name_label"], row["address"])), None)
            if ref is None:
                raise control.ControlError(f"the pool has no host {target!r}")
            self.change_master(ref)
            return self.master_address()
        if action == "fail":
            self.faults.fail_next(args["method"])
            return dict(self.faults.fail_calls)
        if action == "dom0":
            from xsctl.sim.dom0 import snapshot

            return snapshot(self, args["host"])
        assert action == "expire"
        session = args.get("session")
        if session is not None and not self.store.exists(session, "session"):
            raise control.ControlError(f"no session {session!r} is logged in")
        return self.expire_sessions(session)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
