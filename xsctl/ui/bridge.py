"""From the cache's thread to the main screen: changes are gathered and one message
is posted at a time, so a burst of events costs one repaint, never a backlog."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from xsctl.ui.messages import CacheChanged, HealthChanged
from xsctl.xapi.cache import Change, Changes
from xsctl.xapi.client import Client
from xsctl.xapi.errors import ChangedCertificate, XsctlError

if TYPE_CHECKING:
    from textual.message_pump import MessagePump


class Bridge:
    def __init__(self, app: MessagePump, client: Client) -> None:
        self.app = app
        self.client = client
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], Change] = {}
        self._resync = False
        self._posted = False
        self._unsubscribe = client.cache.subscribe(self._on_changes)
        self._closed = False
        client.cache.on_health(self._on_fresh)
        client.conn.on_state(self._on_state)

    def close(self) -> None:
        self._closed = True
        self._unsubscribe()

    def _on_changes(self, changes: Changes) -> None:
        with self._lock:
            for c in changes.items:
                key = (c.cls, c.ref)
                prev = self._pending.get(key)
                if prev is not None:  # keep the oldest "before" and the newest "after"
                    op = "add" if prev.op == "add" and c.op != "del" else c.op
                    # added then deleted before the UI took it: its last record is
                    # the "before", or the feed could not even name what came and went
                    old = c.old if prev.op == "add" and c.op == "del" else prev.old
                    c = Change(c.cls, c.ref, op, old, c.new)
                self._pending[key] = c
            self._resync = self._resync or changes.resync
            if self._posted:
                return
            self._posted = True
        self.app.post_message(CacheChanged())

    def take(self) -> CacheChanged:
        """Called on the UI thread when a CacheChanged arrives."""
        with self._lock:
            items = list(self._pending.values())
            self._pending.clear()
            resync = self._resync
            self._resync = False
            self._posted = False
        return CacheChanged(items, {c.cls for c in items}, resync)

    def _on_fresh(self, fresh: bool, why: str) -> None:
        if not self._closed:
            self.app.post_message(HealthChanged(self.client.connected, fresh, why))

    def _on_state(self, health: object, text: str, error: XsctlError | None = None) -> None:
        # error: the ChangedCertificate (both fingerprints) when health is UNTRUSTED
        if not self._closed:
            changed = error if isinstance(error, ChangedCertificate) else None
            self.app.post_message(
                HealthChanged(self.client.connected, self.client.cache.fresh, text, changed))
