"""What the VM, Storage and Disks views share: a filter line on top (``/``), a
table, a detail beside it from 140 columns and on demand (``d``) below that, in the
table's place under 100 columns, and ``escape`` undoing the last narrowing before it
goes back to the menu."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from rich.table import Table
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, Label

from xsctl.ui.messages import ActionRequested, CacheChanged
from xsctl.ui.views.base import TableView
from xsctl.ui.widgets.devices import row_styles
from xsctl.ui.widgets.table import Row, VirtualTable
from xsctl.xapi.cache import Change
from xsctl.xapi.models import NULL, is_guest

NARROW = 100  # below: the detail replaces the table (a dom0 console is 80 wide)
WIDE = 140  # from here the detail pane sits beside the table unless closed


def listing_keys(view: str, finds: str, between: Sequence[BindingType] = (),
                 clears: str = "the marks") -> list[BindingType]:
    """The keys every listing has, with ``between`` (the view's own) after the
    filter's: ``/`` filters by ``finds``, ``d`` shows the detail, ``escape`` undoes
    the narrowing (``clears``) step by step, then goes back to the menu."""
    return [
        # priority: handled as the key arrives, so the focus is on the filter before
        # the keys typed right after "/" are handed to a widget
        Binding("slash", "filter", "Filter", id=f"{view}.filter", priority=True,
                tooltip=f"Filter by {finds}"),
        *between,
        Binding("d", "toggle_detail", "Details", id=f"{view}.detail",
                tooltip="Show or hide the detail pane"),
        Binding("escape", "clear", "Clear", show=False, id=f"{view}.clear",
                tooltip=f"Clear the filter, then {clears}, then back to the menu"),
    ]


def kv(pairs: list[tuple[str, str | Text]]) -> Table:
    """Facts as a two-column grid; every value from xapi goes in as Text, never markup."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for k, v in pairs:
        t.add_row(Text(k), v if isinstance(v, Text) else Text(v))
    return t


class DetailPane(VerticalScroll, can_focus=True):
    """A title and a scrolling body: the detail of the row under the cursor."""

    def __init__(self, *, id: str) -> None:
        super().__init__(id=id, classes="side-detail")

    def compose(self) -> Any:
        yield Label("", classes="side-detail-title")
        yield Label("", classes="side-detail-body")

    def show(self, title: Text | str, body: Any) -> None:
        self.query_one(".side-detail-title", Label).update(
            title if isinstance(title, Text) else Text(title))
        self.query_one(".side-detail-body", Label).update(body)


D = TypeVar("D", bound=Widget)  # the detail's widget


class ListingView(TableView, Generic[D]):
    """A TableView with a filter line (``FILTER``, an Input's id), a status line
    (``STATUS``) and a detail (``DETAIL``, the id of a ``D``: a DetailPane in the
    Storage and Disks views, the VM view's tabs). Subclasses fill the detail in
    :meth:`show_detail` and the status line in :meth:`update_status`."""

    FILTER: ClassVar[str] = ""
    DETAIL: ClassVar[str] = ""
    STATUS: ClassVar[str] = ""

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.detail_open: bool | None = None  # None: as the width decides

    @property
    def filter_input(self) -> Input:
        return self.query_one(f"#{self.FILTER}", Input)

    @property
    def detail(self) -> D:
        # found by its id: D is known to the subclass alone (ListingView[DetailPane])
        return cast(D, self.query_one(f"#{self.DETAIL}"))

    def on_mount(self) -> None:
        # The filter is applied from within the Input's own key handling, so the table
        # repaints in the same frame as the Input; through Input.Changed it came a frame
        # later (Textual paces frames: 17 to 33 ms more per keystroke).
        self.watch(self.filter_input, "value", self._filter_changed, init=False)
        # the pane as the width wants it from the first frame: laid out beside a pane
        # that the first resize then hides, the table drew its rows for a third of its
        # width
        self.apply_detail()

    # ------------------------------------------------------------ to fill in

    def show_detail(self, detail: D, key: str | None) -> None:
        """Fill the detail for the row ``key`` (None: no row)."""

    def update_status(self) -> None:
        """The line under the table (:meth:`set_status`)."""

    def status_parts(self) -> tuple[str, str, str]:
        """What each view's status line says in its own sentence: the filter
        (`` matching 'web'``), the marks (``, 2 marked``) and the sort (``Name ▲``)."""
        t = self.table
        return (f" matching {t.filter_text!r}" if t.filter_text else "",
                f", {len(t.selected)} marked" if t.selected else "",
                t.columns[t.sort_column].label + (" ▼" if t.sort_reverse else " ▲"))

    def set_status(self, text: str) -> None:
        self.query_one(f"#{self.STATUS}", Label).update(Text(text))

    def narrowed(self) -> bool:
        """Whether the view narrows the rows besides the text filter (escape undoes
        it, after the text filter)."""
        return False

    def widen(self) -> None:
        """Undo that narrowing."""

    # ------------------------------------------------------------ the detail

    def update_detail(self) -> None:
        detail = self.detail
        if detail.display:  # hidden, it is filled when shown (apply_detail)
            self.show_detail(detail, self.table.cursor_key)

    def detail_shown(self) -> bool:
        """As the user set it with d, else by width: beside the table from WIDE
        columns, on demand below, so that the table has room."""
        if self.detail_open is not None:
            return self.detail_open
        return self.screen.size.width >= WIDE

    def apply_detail(self) -> None:
        shown = self.detail_shown()
        narrow = self.screen.size.width < NARROW
        self.set_class(shown, "detail-open")
        self.detail.display = shown
        self.table.display = not (narrow and shown)  # narrow, it takes the table's place
        self.update_detail()

    def on_resize(self) -> None:
        self.apply_detail()

    def detail_focus(self) -> Widget:
        """What takes the focus in the detail: the detail itself where it can (a
        DetailPane scrolls), else the first widget in it that can (the VM detail's
        tabs)."""
        detail = self.detail
        if detail.can_focus:
            return detail
        return next((w for w in detail.query("*") if w.can_focus), detail)

    def action_toggle_detail(self) -> None:
        self.detail_open = not self.detail_shown()
        self.apply_detail()
        # narrow, the detail replaces the table: the focus goes with it, or it would
        # stay on the hidden table and d and escape would no longer reach this view
        if self.screen.size.width < NARROW and self.detail_open:
            self.call_after_refresh(self.detail_focus().focus)
        else:
            self.call_after_refresh(self.table.focus)

    @on(VirtualTable.CursorMoved)
    def _cursor(self, event: VirtualTable.CursorMoved) -> None:
        self.update_detail()

    @on(VirtualTable.SelectionChanged)
    def _selection(self, event: VirtualTable.SelectionChanged) -> None:
        self.update_status()

    @on(VirtualTable.Sorted)
    def _sorted(self, event: VirtualTable.Sorted) -> None:
        self.update_status()

    # ------------------------------------------------------------ filter and escape

    def action_filter(self) -> None:
        # focus now, not at the next idle (Widget.focus): the keys typed right after
        # "/" are already queued and must reach the filter, not the table's bindings
        self.screen.set_focus(self.filter_input)

    def _filter_changed(self, value: str) -> None:
        self.table.set_filter(value)
        self.update_status()

    @on(Input.Submitted)
    def _filter_done(self, event: Input.Submitted) -> None:
        if event.input.id == self.FILTER:
            self.table.focus()

    def action_clear(self) -> None:
        """Escape: from the detail back to the table (narrow), then clear the filter,
        the view's own narrowing, the marks, and at last back to the menu."""
        f = self.filter_input
        if self.detail_open and self.screen.size.width < NARROW:
            self.action_toggle_detail()
        elif f.has_focus or f.value:
            f.value = ""
            self.table.focus()
        elif self.narrowed():
            self.widen()
        elif self.table.selected:
            self.table.clear_selection()
        else:
            self.action_back()

    def show_object(self, ref: str) -> bool:
        """Put the cursor on ``ref``, clearing what hides it: an action chosen by name
        (the palette) must not fall on the row the cursor was on."""
        t = self.table
        if ref in t.rows and ref not in t.order:
            self.filter_input.value = ""
            t.set_filter("")
            if ref not in t.order and self.narrowed():
                self.widen()
            self.update_status()
        t.move_to(ref)
        return t.cursor_key == ref

    def focus_target(self) -> Widget:
        if self.screen.size.width < NARROW and self.detail_open:
            return self.detail_focus()
        return self.table


PLACEHOLDER = "vm:"  # the row of a VM with none of the objects: "vm:" + its ref


class VmChildrenView(ListingView[DetailPane]):
    """Every VM with its objects of one class (its disks and drives, its VIFs), a row
    each keyed by the object's ref, live. A VM with none has a placeholder row, so that
    the add key has a VM to act on. A subclass says which class (``CHILD``), what the
    add key starts (``ADD``), how a VM's rows read (``vm_rows``) and which VMs a change
    touches beyond the VM and its objects (``affected``)."""

    CHILD: ClassVar[str] = ""  # the rows' cache class: "vbd"
    CHILD_NOUNS: ClassVar[str] = ""  # in the status line: "devices"
    ADD: ClassVar[str] = ""  # the VM operation the add key starts

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.built = False
        self.rows_of: dict[str, set[str]] = {}  # VM ref -> its row keys

    def on_show(self) -> None:
        if not self.built:
            self.rebuild()

    # ------------------------------------------------------------ rows

    def shown(self, r: dict[str, Any]) -> bool:
        """Whether the VM has rows here."""
        return is_guest(r)

    def vm_rows(self, ref: str, r: dict[str, Any], st: dict[str, Any]) -> dict[str, Row]:
        """The VM's rows by key (its objects', or its placeholder)."""
        raise NotImplementedError

    def forget(self) -> None:
        """Drop what the rows remembered, before every row is built again."""

    def rebuild(self) -> None:
        cache = self.client.cache
        st = row_styles(self.app)
        rows: dict[str, Row] = {}
        self.rows_of.clear()
        self.forget()
        with cache.long_lived():  # see VmsView.rebuild
            for ref, r in cache.snapshot("vm"):
                if self.shown(r):
                    mine = self.vm_rows(ref, r, st)
                    rows.update(mine)
                    self.rows_of[ref] = set(mine)
            self.table.replace_all(rows)
            self.table.commit()
        self.built = True
        self.update_status()
        self.update_detail()

    def affected(self, change: Change) -> set[str]:
        """The VMs one change touches: the VM itself, or the VM of one of its objects."""
        if change.cls == "vm":
            return {change.ref}
        if change.cls == self.CHILD:
            return {str(rec.get("VM")) for rec in (change.old, change.new) if rec}
        return set()

    def changed(self, msg: CacheChanged) -> None:
        """Keyed updates: the rows of the VMs a change touched."""
        if not self.built:
            return
        if msg.resync:
            self.rebuild()
            return
        cache = self.client.cache
        table = self.table
        st = row_styles(self.app)
        vms: set[str] = set()
        for c in msg.changes:
            vms |= self.affected(c)
        for vm in vms:
            r = cache.get("vm", vm)
            new = self.vm_rows(vm, r, st) if r is not None and self.shown(r) else {}
            for key in self.rows_of.get(vm, set()) - set(new):
                table.remove_row(key)
            for key, row in new.items():
                table.upsert(key, row)
            self.rows_of[vm] = set(new)
            if not new:
                self.rows_of.pop(vm, None)
        if vms:
            table.commit()
            self.update_status()
            self.update_detail()

    def update_status(self) -> None:
        flt, sel, col = self.status_parts()
        n = sum(1 for k in self.table.rows if not k.startswith(PLACEHOLDER))
        self.set_status(f"{n} {self.CHILD_NOUNS} of {len(self.rows_of)} VMs{flt}{sel} · "
                        f"sorted by {col}")

    # ------------------------------------------------------------ actions

    def targets(self) -> list[str]:
        return [k for k in self.table.targets() if not k.startswith(PLACEHOLDER)]

    def vm_of_row(self) -> str | None:
        key = self.table.cursor_key
        if key is None:
            return None
        if key.startswith(PLACEHOLDER):
            return key[len(PLACEHOLDER):]
        r = self.client.cache.get(self.CHILD, key)
        return str(r.get("VM")) if r else None

    def add_to_row_vm(self) -> None:
        """The add key: ``ADD`` on the VM of the row under the cursor."""
        vm = self.vm_of_row()
        if vm and vm != NULL:
            self.post_message(ActionRequested(self.ADD, [vm], self.ID, kind="vm"))

    @on(VirtualTable.Activated)
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.action_actions()

    def show_object(self, ref: str) -> bool:
        """A VM (its first row) or one of its objects."""
        rows = sorted(self.rows_of.get(ref, ()))
        return super().show_object(rows[0] if rows else ref)
