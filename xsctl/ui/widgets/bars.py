"""Text bars for usage and progress (plain Rich text, so tables can hold them)."""

from __future__ import annotations

from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"


def usage_bar(fraction: float, width: int = 20) -> Text:
    """A bar that turns yellow past 80% and red past 90%, as an admin reads usage."""
    f = max(0.0, min(1.0, fraction))
    style = "red" if f >= 0.9 else "yellow" if f >= 0.8 else "green"
    return _bar(f, width, style) + Text(f" {f * 100:3.0f}%")


def progress_bar(fraction: float, width: int = 20, style: str = "cyan") -> Text:
    f = max(0.0, min(1.0, fraction))
    return _bar(f, width, style) + Text(f" {f * 100:3.0f}%")


def _bar(f: float, width: int, style: str) -> Text:
    cells = f * width
    full = int(cells)
    part = int((cells - full) * 8)
    t = Text()
    t.append("█" * full, style=style)
    if full < width:
        t.append(EIGHTHS[part], style=style)
        t.append("·" * (width - full - 1), style="dim")
    return t
