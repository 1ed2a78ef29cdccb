"""The top line: pool, connection (transport, trust, read-only) and its health."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.widgets import Static


class ConnectionHeader(Static):
    DEFAULT_CSS = """
    ConnectionHeader { height: 1; background: $primary-background; color: $foreground; }
    ConnectionHeader.-lost { background: $error; color: $text; }
    ConnectionHeader.-reconnecting { background: $warning; color: $background; }
    """

    def show(self, *, pool: str, who: str, how: str, read_only: bool, connected: bool,
             fresh: bool, note: str, since: datetime | None,
             unencrypted: bool = False, stopped: str = "") -> None:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" xsctl ", style="bold reverse")
        t.append(f" {pool} ", style="bold")
        # health first: on an 80-column console it must not be the part cut off
        stamp = f" since {since.astimezone().strftime('%H:%M:%S')}" if since else ""
        if stopped:  # for good: it will not reconnect by itself
            t.append(f"✖ stopped: {stopped}{stamp}", style="bold")
            self.set_class(True, "-lost")
            self.remove_class("-reconnecting")
        elif connected and fresh:
            t.append("● live", style="bold green")
            self.remove_class("-lost", "-reconnecting")
        elif connected or (not fresh and note):
            t.append(f"◌ reconnecting{stamp}", style="bold")
            self.set_class(True, "-reconnecting")
            self.remove_class("-lost")
        else:
            t.append(f"✖ connection lost{stamp}", style="bold")
            self.set_class(True, "-lost")
            self.remove_class("-reconnecting")
        if unencrypted:  # next to the health, so that 80 columns still show it
            t.append(" │ ", style="dim")
            t.append("UNENCRYPTED (http)", style="bold reverse")
        if read_only:
            t.append(" │ ", style="dim")
            t.append("READ-ONLY", style="bold")
        t.append(" │ ", style="dim")
        t.append(who)
        t.append(" │ ", style="dim")
        t.append(how)
        if note and not (connected and fresh) and not stopped:
            t.append(" │ ", style="dim")
            t.append(note)
        self.update(t)
