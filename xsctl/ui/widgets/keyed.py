"""Keyed updates of a (small) DataTable: change cells in place, add new rows, drop
vanished ones; never clear and refill, so the cursor stays on its row."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable


def upsert_row(table: DataTable[Text], key: str, cells: Sequence[Text]) -> None:
    if key in table.rows:
        for col, cell in zip(table.columns, cells, strict=True):
            table.update_cell(key, col, cell)
    else:
        table.add_row(*cells, key=key)


def drop_rows_except(table: DataTable[Text], keep: set[str]) -> None:
    for key in list(table.rows):
        if key.value not in keep:
            table.remove_row(key)
