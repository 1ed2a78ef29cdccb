"""The main screen: xsconsole's layout, a menu on the left and the selected view on
the right. Below 100 columns the menu folds away and opens over the view."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Footer, Label, OptionList
from textual.widgets.option_list import Option

from xsctl.ui.views.status import StatusView
from xsctl.ui.views.tasks import TasksView
from xsctl.ui.views.vms import VmsView
from xsctl.ui.widgets.header import ConnectionHeader

if TYPE_CHECKING:
    from xsctl.ui.app import XsctlApp

# (id, menu label, key). Entries whose feature is not built yet are absent, not dead.
VIEWS: list[tuple[str, str, str]] = [
    ("status", "Status", "1"),
    ("vms", "Virtual Machines", "2"),
    ("tasks", "Tasks & Events", "3"),
]
NARROW = 100


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        *[Binding(key, f"show_view('{vid}')", label, show=False, id=f"view.{vid}")
          for vid, label, key in VIEWS],
        Binding("f9", "toggle_menu", "Menu", id="menu.toggle",
                tooltip="Open the menu (escape in a view does the same); again to close it"),
        Binding("escape", "close_menu", "Back", show=False, id="menu.close",
                tooltip="From the menu back to the view"),
    ]

    def compose(self) -> ComposeResult:
        yield ConnectionHeader(id="conn-header")
        yield Label("", id="stale-banner", classes="hidden")
        with Horizontal(id="main-body"):
            yield OptionList(
                *[Option(Text(f"{key}  {label}"), id=vid) for vid, label, key in VIEWS],
                id="menu",
            )
            with ContentSwitcher(initial="status", id="views"):
                yield StatusView(id="status")
                yield VmsView(id="vms")
                yield TasksView(id="tasks")
        yield Footer()

    @property
    def xapp(self) -> XsctlApp:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.query_one("#menu", OptionList).highlighted = 0
        self._fold(self.size.width)
        self.action_show_view("status", focus=False)
        self.query_one("#menu", OptionList).focus()

    def on_resize(self, event: events.Resize) -> None:
        self._fold(event.size.width)

    def _fold(self, width: int) -> None:
        self.set_class(width < NARROW, "narrow")

    @property
    def current_view(self) -> str:
        return self.query_one("#views", ContentSwitcher).current or "status"

    def view(self, vid: str) -> Widget:
        return self.query_one(f"#{vid}")

    def action_show_view(self, vid: str, focus: bool = True) -> None:
        switcher = self.query_one("#views", ContentSwitcher)
        switcher.current = vid
        menu = self.query_one("#menu", OptionList)
        idx = [v for v, _, _ in VIEWS].index(vid)
        if menu.highlighted != idx:
            menu.highlighted = idx
        self.remove_class("menu-open")
        if focus:
            self._focus_view(vid)

    def _focus_view(self, vid: str) -> None:
        target: Widget = self.view(vid)
        if vid == "vms":
            target = self.query_one("#vm-table")
        elif vid == "tasks":
            target = self.query_one("#task-table")
        elif vid == "status":
            target = self.query_one("#status-hosts")
        target.focus()

    def open_menu(self) -> None:
        self.add_class("menu-open")
        self.query_one("#menu", OptionList).focus()

    def _menu_shown(self) -> bool:
        """The menu is on screen and has the keys (folded away, it may hold the focus
        without showing)."""
        menu = self.query_one("#menu", OptionList)
        narrow = self.has_class("narrow")
        return menu.has_focus and (not narrow or self.has_class("menu-open"))

    def action_toggle_menu(self) -> None:
        if self._menu_shown():
            self.action_close_menu()
        else:
            self.open_menu()

    def action_close_menu(self) -> None:
        """Back from the menu to the view shown (at 80 columns the menu covers it)."""
        if self._menu_shown():
            self.remove_class("menu-open")
            self._focus_view(self.current_view)

    @on(OptionList.OptionHighlighted, "#menu")
    def _menu_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if not self.has_class("narrow") and event.option.id:
            self.query_one("#views", ContentSwitcher).current = event.option.id

    @on(OptionList.OptionSelected, "#menu")
    def _menu_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.action_show_view(event.option.id)
