"""Check boxes whose state is told by a mark, not by a colour alone.

Textual's check box and selection list draw the same ``X`` ticked or not and tell the
two apart by its colour, which a monochrome or serial console (a dom0's) does not
show. These draw the mark only when ticked.
"""

from __future__ import annotations

from typing import TypeVar

from rich.segment import Segment
from textual.content import Content
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList
from textual.widgets._toggle_button import ToggleButton

V = TypeVar("V")
UNTICKED = " "


class Tick(Checkbox):
    """A check box that shows ``X`` only when ticked."""

    @property
    def _button(self) -> Content:
        button = super()._button
        if self.value:
            return button
        # the same three cells, the middle one blank
        spans = list(button.spans)
        text = button.plain
        mid = len(self.BUTTON_LEFT)
        return Content(text[:mid] + UNTICKED + text[mid + len(self.BUTTON_INNER):], spans)


class TickList(SelectionList[V]):
    """A selection list that shows ``X`` only beside the selected options."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        index = self.scroll_offset[1] + y
        if index >= self.option_count:
            return strip
        if self.get_option_at_index(index).value in self._selected:
            return strip
        segments = list(strip)
        if len(segments) > 1 and segments[1].text == ToggleButton.BUTTON_INNER:
            segments[1] = Segment(UNTICKED * len(segments[1].text), segments[1].style)
        return Strip(segments, strip.cell_length)
