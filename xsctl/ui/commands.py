"""The command palette: every view ("view: tasks & events") and every operation that
is possible now on every object of every view ("vm: start web-01", "task: cancel
task ..."), generated from the views' declarations and the operation catalogue,
matched as you type."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

from rich.text import Text
from textual.command import DiscoveryHit, Hit, Hits, Provider

from xsctl.ui.notify import say
from xsctl.ui.screens.main import MainScreen
from xsctl.ui.views.base import View
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

MAX_HITS = 60
Entry = tuple[str, str, Callable[[], object]]


class XsctlCommands(Provider):
    def _screen(self) -> MainScreen | None:
        """The main screen, under the palette (it is a screen of its own)."""
        return next((s for s in self.app.screen_stack if isinstance(s, MainScreen)), None)

    def _views(self) -> list[Entry]:
        screen = self._screen()
        if screen is None:
            return []
        out: list[Entry] = [(f"view: {c.LABEL.lower()}", c.HELP or f"Show {c.LABEL}",
                             partial(screen.action_show_view, c.ID))
                            for c in screen.view_classes]
        for view in screen.views:
            out += [(c.text, c.help, c.run) for c in view.palette()]
        return out

    def _operations(self, words: list[str]) -> list[Entry]:
        """Operations on objects: for each view that acts on a kind, each object whose
        name has every word that is not an operation's, each possible operation."""
        screen = self._screen()
        if screen is None:
            return []
        cache = screen.client.cache
        out: list[Entry] = []
        kinds: set[str] = set()
        for view in sorted(screen.views, key=lambda v: not v.HOME):
            # one entry per object: the first view of its kind shows it (the VMs view,
            # not the Profiling view's xentop, which acts on VMs too; the Hosts view, not
            # the Status view's hosts table)
            if view.ACTS_ON is None or view.ACTS_ON in kinds:
                continue
            kinds.add(view.ACTS_ON)
            ops = catalogue.operations(view.ACTS_ON)
            if not ops:  # a kind whose operations are still to come
                continue
            kind = ops[0].kind

            def said(op: catalogue.Operation, w: str) -> bool:
                return w in op.label.lower() or w == op.verb or w == op.id.split(".")[1]

            verbs = [op for op in ops if not words or any(said(op, w) for w in words)]
            called = {kind.cls, kind.noun.lower()}  # "alert", for xapi's message
            names = [w for w in words if w not in called and not any(said(op, w) for op in ops)]
            for ref, name in kind.members(cache):
                if names and not all(n in name.lower() for n in names):
                    continue
                obj = kind.load(cache, ref)
                if obj is None:
                    continue
                for op in verbs:
                    if catalogue.why_not(op, cache, obj) is not None:
                        continue
                    text = f"{kind.noun.lower()}: {op.label.lower()} {printable(name)}"
                    out.append((text, op.help, partial(self._run, view, op.id, ref, name)))
                    if len(out) >= MAX_HITS * 4:
                        return out
        return out

    def _run(self, view: View, op_id: str, ref: str, name: str) -> None:
        screen = self._screen()
        if screen is None:
            return
        screen.action_show_view(view.ID)
        if not view.show_object(ref):  # gone meanwhile: act on nothing else
            say(self.app, f"{name} is no longer in the pool", error=True)
            return
        screen.request(op_id, [ref], view.ID)

    async def discover(self) -> Hits:
        for text, help, fn in self._views():
            yield DiscoveryHit(Text(text), fn, text=text, help=help)
        yield DiscoveryHit(Text("app: keys of this view"), partial(self.app.run_action, "help"),
                           text="app: keys of this view", help="?")

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        words = [w for w in query.lower().replace(":", " ").split() if w != "view"]
        candidates = self._views()
        if "view" not in query.lower().split(":")[0]:
            candidates += self._operations(words)
        hits = []
        for text, help, fn in candidates:
            score = matcher.match(text)
            if score > 0:
                hits.append((score, text, help, fn))
        hits.sort(key=lambda h: -h[0])
        for score, text, help, fn in hits[:MAX_HITS]:
            yield Hit(score, matcher.highlight(text), partial(fn), text=text, help=help)
