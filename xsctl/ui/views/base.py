"""The View contract. A view is one menu entry: it declares its id, label, menu key,
help, the cache classes it follows and the kind of object it acts on, and it is
built with the live Client. The menu, the number keys, the command palette and the
``?`` help are built from the list of views; the keys of the operations on its kind
come from the operation catalogue. Adding a view is adding one module here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget

from xsctl.ui.messages import ActionRequested, CacheChanged, MenuRequested
from xsctl.ui.widgets.table import VirtualTable
from xsctl.xapi.client import Client
from xsctl.xapi.ops import catalogue


@dataclass(frozen=True)
class PaletteCommand:
    """A command a view adds to the palette (besides its operations)."""

    text: str  # "vm: filter"
    help: str
    run: Callable[[], Any]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def key_label(key: str) -> str:
    """How a binding's key is written for people (``question_mark`` -> ``?``)."""
    return {"question_mark": "?", "slash": "/", "colon": ":", "space": "space",
            "escape": "esc"}.get(key, key)


class View(Vertical):
    """Base of every menu entry. Subclasses set the class variables below."""

    ID: ClassVar[str] = ""
    LABEL: ClassVar[str] = ""
    KEY: ClassVar[str] = ""  # the number key that opens it ("1"); "" for none
    # where a view without a number key sits in the menu: after the numbered ones, in
    # this order (the ten digits are taken; these are reached from the menu, the
    # palette and ``--view``)
    ORDER: ClassVar[int] = 0
    HELP: ClassVar[str] = ""  # one line: what it shows
    FOLLOWS: ClassVar[frozenset[str]] = frozenset()  # cache classes it shows
    ACTS_ON: ClassVar[str | None] = None  # the catalogue kind its actions act on
    # the view that lists the kind's objects (the palette runs their operations there);
    # False for one that acts on them beside other things (the Status view's hosts)
    HOME: ClassVar[bool] = True

    @classmethod
    def offered(cls, client: Client) -> bool:
        """Whether the menu has it for this connection (an optional view asks the
        profile)."""
        return True

    def __init_subclass__(cls, **kw: Any) -> None:
        # the operations' keys, generated from the catalogue, before Textual merges the
        # class's bindings (DOMNode.__init_subclass__)
        if cls.__dict__.get("ACTS_ON"):
            own = list(cls.__dict__.get("BINDINGS", []))
            taken = {b.key for b in own if isinstance(b, Binding)}
            if "a" not in taken:
                own.append(Binding("a", "actions", "Actions", id=f"{cls.ACTS_ON}.actions",
                                   tooltip="Every action here, with why some are not possible"))
                taken.add("a")
            for op in catalogue.operations(cls.ACTS_ON):
                if op.key in taken:
                    raise ValueError(f"{cls.__name__}: key {op.key!r} of {op.id} is taken")
                own.append(Binding(op.key, f"act('{op.id}')", op.label, show=op.footer,
                                   id=f"{cls.ACTS_ON}.{op.id}", tooltip=op.help))
            cls.BINDINGS = own
        super().__init_subclass__(**kw)

    def __init__(self, client: Client, *, now: Callable[[], datetime] = _utcnow,
                 metrics: bool = True) -> None:
        super().__init__(id=self.ID)
        self.client = client
        self.now = now  # the app's clock (frozen in tests and screenshots)
        self.metrics = metrics  # whether it may subscribe to the metrics feed

    # ------------------------------------------------------------ what a view provides

    def changed(self, msg: CacheChanged) -> None:
        """Objects of the classes it follows changed (or everything was read again)."""

    def focus_target(self) -> Widget:
        """What gets the focus when the view is shown."""
        return self

    def targets(self) -> list[str]:
        """The refs its actions apply to now (marked rows, else the cursor's)."""
        return []

    def show_object(self, ref: str) -> bool:
        """Bring ``ref`` under the cursor (an action chosen by name in the palette
        must act on that object, not on the row the cursor was on)."""
        return False

    def show_related(self, ref: str) -> None:
        """Show what it holds of ``ref``, an object of another view (the Disks view:
        an SR's disks). Asked with a ViewRequested message."""

    def palette(self) -> list[PaletteCommand]:
        """Commands of its own for the palette (its operations are added for it)."""
        return []

    def menu_extras(self) -> list[tuple[str, str]]:
        """Operations on objects that are not rows, as (operation id, ref), that its
        actions menu offers before the rows' own (the pool's: a new network)."""
        return []

    def extra_keys(self) -> list[tuple[str, str]]:
        """Keys handled by its widgets (a table's), for the ? help."""
        return []

    def acted(self) -> None:
        """An operation was started on its targets (a view clears its marks)."""

    def task_started(self, task: str, title: str) -> None:
        """xapi made ``task`` for the plan titled ``title``."""

    def transfer_moved(self, task: str, text: str) -> None:
        """A transfer under ``task`` moved on: ``text`` is its rate and time left."""

    def plan_ended(self, tasks: list[str], outcome: str) -> None:
        """The plan that made ``tasks`` ended: "success", "cancelled" or "failed: ..."
        (xapi destroys our tasks when they end, often before their last event)."""

    # ------------------------------------------------------------ actions

    def action_act(self, op_id: str) -> None:
        """An operation's key: ask the screen to run it on the targets."""
        refs = self.targets()
        if refs:
            self.post_message(ActionRequested(op_id, refs, self.ID))

    def action_back(self) -> None:
        """Escape in a view: to the menu (xsconsole's way back)."""
        self.post_message(MenuRequested())

    def action_actions(self) -> None:
        """The actions menu: every operation on the targets, the impossible ones with
        their reason."""
        refs = self.targets()
        if refs:
            self.post_message(ActionRequested("", refs, self.ID))


def all_views() -> list[type[View]]:
    """Every view, in menu order: each module of this package declares its own."""
    import xsctl.ui.views as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "base":
            importlib.import_module(f"{pkg.__name__}.{info.name}")
    found: list[type[View]] = []
    todo = list(View.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.ID:
            found.append(cls)
    found.sort(key=lambda c: menu_order(c.KEY, c.ORDER))
    return found


def menu_order(key: str, order: int = 0) -> tuple[int, int, str]:
    """Menu keys in keyboard order: 1 to 9, then 0 (the row of digits ends with it),
    then the views without a key in their ``ORDER``."""
    if not key:
        return (2, order, "")
    return (1 if key == "0" else 0, 0, key)



class TableView(View):
    """A view whose objects are the rows of one VirtualTable (``TABLE``, its id):
    the table has the focus, its cursor or marked rows are the targets, and its own
    keys are in the ? help."""

    TABLE: ClassVar[str] = ""

    @property
    def table(self) -> VirtualTable:
        return self.query_one(f"#{self.TABLE}", VirtualTable)

    def focus_target(self) -> Widget:
        return self.table

    def targets(self) -> list[str]:
        return self.table.targets()

    def acted(self) -> None:
        self.table.clear_selection()

    def show_object(self, ref: str) -> bool:
        self.table.move_to(ref)
        return self.table.cursor_key == ref

    def extra_keys(self) -> list[tuple[str, str]]:
        return [(", ".join(key_label(k) for k in b.key.split(",")),
                 b.description + (f": {b.tooltip}" if b.tooltip else ""))
                for b in VirtualTable.BINDINGS if isinstance(b, Binding)]


class RebuiltTableView(TableView):
    """A TableView whose rows are rebuilt whole (a tree, counts over every VM): built
    when first shown, and rebuilt only for a change that :meth:`concerns` it, at once
    when shown, else when next shown, so that a change to one of 10,000 VMs costs
    nothing here."""

    def __init__(self, client: Client, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.stale = True

    def rebuild(self) -> None:
        """Every row again from the cache (subclasses call this first)."""
        self.stale = False

    def concerns(self, msg: CacheChanged) -> bool:
        return msg.resync

    def on_show(self) -> None:
        if self.stale:
            self.rebuild()

    def changed(self, msg: CacheChanged) -> None:
        if not self.concerns(msg):
            return
        if self.display:
            self.rebuild()
        else:
            self.stale = True
