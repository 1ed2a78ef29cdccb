"""Text bars for usage and progress."""

from __future__ import annotations

EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar_text(fraction: float, width: int) -> str:
    """The bar alone, as plain text (for a table cell that takes one style)."""
    f = max(0.0, min(1.0, fraction))
    cells = f * width
    full = int(cells)
    if full >= width:
        return "█" * width
    return "█" * full + EIGHTHS[int((cells - full) * 8)] + "·" * (width - full - 1)


def usage_style(fraction: float) -> str:
    """ok, warn or bad: yellow past 80%, red past 90%, as an admin reads usage."""
    return "bad" if fraction >= 0.9 else "warn" if fraction >= 0.8 else "ok"
