"""Toasts. Every text shown here may carry xapi's strings, so it goes through
``printable`` (no escape code reaches the terminal) and is never read as markup (a
VM named "[prod] web" keeps its brackets)."""

from __future__ import annotations

from typing import Any

from textual.app import App

from xsctl.xapi.errors import XapiError
from xsctl.xapi.text import printable


def say(app: App[Any], text: str, *, error: bool = False, timeout: float | None = None) -> None:
    app.notify(printable(text, multiline=True), severity="error" if error else "information",
               timeout=timeout or (10 if error else 4), markup=False)


def error(app: App[Any], title: str, e: BaseException | str) -> None:
    """A failure: xapi's friendly sentence and its code, without raw refs (the
    CLI and the log keep the whole ErrorDescription)."""
    body = f"{e.friendly} ({e.code})" if isinstance(e, XapiError) else str(e)
    app.notify(printable(body, multiline=True), title=printable(title), severity="error",
               timeout=12, markup=False)
