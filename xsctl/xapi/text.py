"""Text for people: sizes and durations as an admin reads them, and strings from xapi
made safe for a terminal.

Everything xapi sends is untrusted: a VM's name, a guest's reported OS name, an
alert's body may carry terminal escape codes (``\\x1b]0;title\\x07``, ``\\x1b[2J``)
or other control characters. :func:`printable` is the one place they are stripped;
the typed models, the error texts and the CLI's output all go through it. Only
``--json`` output keeps the exact strings (JSON escapes them).
"""

from __future__ import annotations

import re
import unicodedata

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

# C0 (but tab and newline, handled below), DEL, C1, and the bidirectional overrides
# and isolates that can make a name read as something else ("Trojan Source")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` without control characters. Single-line (the default): tabs and line
    breaks become spaces, so a name cannot break a table row. ``multiline`` keeps line
    breaks (an alert's body)."""
    if text.isprintable():
        return text  # the common case, decided in C
    if multiline:
        text = text.replace("\r\n", "\n").replace("\t", " ")
        return "\n".join(_CONTROL.sub("", line.replace("\r", "")) for line in text.split("\n"))
    return _CONTROL.sub("", text.replace("\t", " ").replace("\n", " ").replace("\r", " "))


def is_clean(text: str) -> bool:
    """No character that :func:`printable` would strip (for the tests' checks)."""
    return not _CONTROL.search(text) and all(
        unicodedata.category(c) != "Cc" for c in text if c not in "\n")


def human_bytes(n: int | float, *, precise: bool = False, exact: bool = False) -> str:
    """1.5 GiB, 512 MiB, 3.2 TiB (binary units, as XenCenter shows memory).

    ``exact`` writes the largest unit that holds the value whole (``1536M``, ``2G``),
    as a form shows a size it will read back with ``models.parse_size``."""
    n = float(n)
    if exact:
        for unit, size in (("T", TiB), ("G", GiB), ("M", MiB), ("K", KiB)):
            if n and n % size == 0:
                return f"{int(n // size)}{unit}"
        return str(int(n))
    for unit, size in (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            v = n / size
            if precise or v != int(v):
                return f"{v:.1f} {unit}"
            return f"{int(v)} {unit}"
    return f"{int(n)} B"


def human_duration(seconds: float, *, seconds_shown: bool = False) -> str:
    """``3d 4h``, ``2h 5m``, ``7m``; with ``seconds_shown``, short spans to the second
    (``42s``, ``1m 05s``), as a task's duration is read."""
    s = int(seconds)
    if s < 0:
        return "-"
    if seconds_shown and s < 3600:
        m, sec = divmod(s, 60)
        return f"{m}m {sec:02d}s" if m else f"{sec}s"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, _ = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m"


def human_age(seconds: float | None) -> str:
    """How long ago: ``now``, ``7m``, ``3h 5m``, ``2d 4h``; a host clock a little
    ahead of ours gives a negative age, shown as ``now``, not ``-``."""
    if seconds is None:
        return "–"
    return "now" if seconds < 60 else human_duration(seconds)
