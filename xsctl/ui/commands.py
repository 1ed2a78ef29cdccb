"""The command palette: every action in context, named "view: storage" or
"vm: start web-01", matched as you type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual.command import DiscoveryHit, Hit, Hits, Provider

from xsctl.xapi.models import Vm

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp

MAX_HITS = 60


class XsctlCommands(Provider):
    @property
    def xapp(self) -> XsctlApp:
        return self.app  # type: ignore[return-value]

    def _views(self) -> list[tuple[str, str, Callable[[], None]]]:
        from xsctl.ui.screens.main import VIEWS

        def go(vid: str) -> None:
            screen = self.xapp.main_screen
            if screen is not None:
                screen.action_show_view(vid)

        return [(f"view: {label.lower()}", f"Show {label}", partial(go, vid))
                for vid, label, _ in VIEWS]

    def _vm_commands(self, words: list[str]) -> list[tuple[str, str, Callable[[], None]]]:
        from xsctl.ui.views.vms import ACTIONS, VmsView

        client = self.xapp.client
        if client is None:
            return []
        screen = self.xapp.main_screen
        if screen is None:
            return []
        view = screen.query_one(VmsView)
        out: list[tuple[str, str, Callable[[], None]]] = []
        verbs = [a for a in ACTIONS if not words or any(w in a.label.lower() or w == a.id for w in words)]
        names = [w for w in words if not any(w in a.label.lower() or w == a.id for a in ACTIONS)]
        for ref, r in client.cache.snapshot("vm"):
            if r.get("is_a_template") or r.get("is_control_domain") or r.get("is_a_snapshot"):
                continue
            name = str(r.get("name_label", ""))
            if names and not all(n in name.lower() for n in names):
                continue
            vm = Vm.from_record(client.cache, ref, r)
            for a in verbs:
                if a.op and a.op not in vm.allowed_operations:
                    continue
                if a.id == "revert" and not vm.snapshots:
                    continue

                def run(ref: str = ref, action: str = a.id, name: str = name) -> None:
                    screen.action_show_view("vms")
                    if not view.show_vm(ref):  # gone meanwhile: act on nothing else
                        self.xapp.say(f"{name} is no longer in the pool", error=True)
                        return
                    view.table.clear_selection()
                    view.action_act(action)

                out.append((f"vm: {a.label.rstrip('…').lower()} {name}", a.label, run))
                if len(out) >= MAX_HITS * 4:
                    return out
        return out

    async def discover(self) -> Hits:
        for text, help, fn in self._views():
            yield DiscoveryHit(Text(text), fn, text=text, help=help)
        yield DiscoveryHit(Text("app: keys of this view"), self.xapp.action_help,
                           text="app: keys of this view", help="?")

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        words = [w for w in query.lower().replace(":", " ").split() if w not in ("vm", "view")]
        candidates = self._views()
        if "view" not in query.lower():
            candidates += self._vm_commands(words)
        hits = []
        for text, help, fn in candidates:
            score = matcher.match(text)
            if score > 0:
                hits.append((score, text, help, fn))
        hits.sort(key=lambda h: -h[0])
        for score, text, help, fn in hits[:MAX_HITS]:
            yield Hit(score, matcher.highlight(text), partial(fn), text=text, help=help)
