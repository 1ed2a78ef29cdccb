"""Tables for people, JSON for scripts.

Everything printed for people goes through :func:`xsctl.xapi.text.printable`: a VM
named ``evil\\x1b]0;PWNED\\x07`` must not retitle the terminal. JSON keeps the exact
strings (the JSON encoder escapes control characters)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from xsctl.xapi.text import printable


def say(text: str, out: TextIO | None = None) -> None:
    """A line (or lines) for people on standard output."""
    (out or sys.stdout).write(printable(text, multiline=True) + "\n")


def warn(text: str) -> None:
    """A line for people on standard error, prefixed like every xsctl message."""
    sys.stderr.write("xsctl: " + printable(text, multiline=True) + "\n")


def warn_unencrypted(url: str) -> None:
    warn(f"warning: unencrypted: {url} is plain HTTP; the password and every record "
         "cross the network in clear")


def print_json(data: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(data, out, indent=2, sort_keys=False, default=str)
    out.write("\n")


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    cells = [[printable(str(c)) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    line = "  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers)).rstrip()
    out.write(line + "\n")
    for r in cells:
        out.write("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() + "\n")


def print_fields(pairs: Sequence[tuple[str, Any]], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        out.write(f"{k.rjust(width)}: {printable(str(v))}\n")
