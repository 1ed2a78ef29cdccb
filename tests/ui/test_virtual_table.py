"""VirtualTable's fast paths keep its behaviour: a filter that grows narrows among the
rows shown, lines kept from earlier paints follow marks and the cursor, and the
cursor stays on its key (tests/benchmarks/bench_tui.py measures the speed)."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult

from xsctl.ui.widgets.table import Column, Row, VirtualTable

COLUMNS = [Column("name", "Name", ratio=2), Column("tag", "Tag"),
           Column("n", "N", width=5, align="right")]


def _row(rng: random.Random, i: int, tag: str) -> Row:
    name = "".join(rng.choice("abcde-0123") for _ in range(6))
    return Row(((name, None), (tag, None), (str(i), None)), (name, tag, i),
               f"{name} {tag} {i}", tags=frozenset({tag, f"even{i % 2 == 0}"}))


class _TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield VirtualTable(COLUMNS, id="t")


def _expected(t: VirtualTable) -> list[str]:
    words = t.filter_text.split()
    keys = sorted(t.rows, key=lambda k: t.rows[k].sort[t.sort_column], reverse=t.sort_reverse)
    return [k for k in keys if all(w in t.rows[k].search for w in words)
            and t.required <= t.rows[k].tags]


async def test_typing_narrows_to_what_a_full_filter_finds() -> None:
    rng = random.Random(4)
    async with _TableApp().run_test(size=(80, 20)) as pilot:
        t = pilot.app.query_one(VirtualTable)
        t.replace_all({f"k{i}": _row(rng, i, rng.choice(["prod", "dev"])) for i in range(2000)})
        t.commit()
        for _ in range(150):
            text = "".join(rng.choice("abcde-0123 ") for _ in range(rng.randint(0, 5)))
            for j in range(len(text) + 1):  # typed, with rows changing and re-sorts between
                t.set_filter(text[:j])
                if rng.random() < 0.1:
                    k = f"k{rng.randrange(2000)}"
                    t.upsert(k, _row(rng, int(k[1:]), "prod"))
                if rng.random() < 0.05:
                    t.sort_by(rng.randrange(3))
                if rng.random() < 0.05:  # a view's own narrowing, under the text filter
                    t.set_required(frozenset(rng.sample(["prod", "dev", "evenTrue"],
                                                        rng.randint(0, 2))))
                t.commit()
                assert t.order == _expected(t), repr(text[:j])
                if t.cursor_key is not None:
                    assert t.order[t._cursor_index] == t.cursor_key


async def test_kept_lines_follow_marks_cursor_and_row_changes() -> None:
    rng = random.Random(1)
    async with _TableApp().run_test(size=(80, 20)) as pilot:
        t = pilot.app.query_one(VirtualTable)
        t.replace_all({f"k{i}": _row(rng, i, "dev") for i in range(100)})
        t.commit()
        t.focus()
        await pilot.pause()

        def line(y: int) -> str:
            t.render_lines(t.region)  # a new paint
            return "".join(f"{s.text}{s.style}" for s in t.render_line(y))

        first, second = line(1), line(2)
        await pilot.press("space")  # marks row 1, the cursor moves to row 2
        await pilot.pause()
        assert line(1) != first and line(2) != second
        key = t.order[1]
        old = t.rows[key]
        t.upsert(key, Row((old.cells[0], ("retagged", None), old.cells[2]), old.sort, old.search))
        t.commit()
        await pilot.pause()
        assert "retagged" in line(2) and t.cursor_key == key


async def test_a_whole_column_is_never_cut_while_others_can_go() -> None:
    cols = [Column("name", "Name", min_width=8, ratio=3, whole=True),
            Column("a", "A", width=10), Column("b", "B", min_width=10, priority=1),
            Column("c", "C", min_width=10, priority=2)]

    class _App(App[None]):
        def compose(self) -> ComposeResult:
            yield VirtualTable(cols, id="t")

    long = "Local storage on xcp-ng-02"
    async with _App().run_test(size=(46, 10)) as pilot:
        t = pilot.app.query_one(VirtualTable)
        t.replace_all({"r": Row(((long, None), ("x", None), ("y", None), ("z", None)),
                                (long, "x", "y", "z"), long)})
        t.commit()
        await pilot.pause()
        t.render_lines(t.region)
        assert long in t.render_line(1).text
        assert t._shown == [0, 1]  # B and C went, in their order, for the name


async def test_columns_dropped_for_a_long_text_come_back_when_it_goes() -> None:
    """A warning read whole makes other columns go; once it is cleared (the row
    changed or removed) they come back."""
    cols = [Column("name", "Name", min_width=8, ratio=3, whole=True),
            Column("free", "Free", width=8, priority=1),
            Column("warn", "Warnings", min_width=10, whole=True)]

    class _App(App[None]):
        def compose(self) -> ComposeResult:
            yield VirtualTable(cols, id="t")

    def row(name: str, warn: str) -> Row:
        return Row(((name, None), ("1 TiB", None), (warn, None)), (name, "", warn), name)

    warning = "⚠ unplugged on xcp-ng-03"
    async with _App().run_test(size=(44, 10)) as pilot:
        t = pilot.app.query_one(VirtualTable)
        t.replace_all({"a": row("Archive", warning), "b": row("NFS storage", "")})
        t.commit()
        await pilot.pause()
        t.render_lines(t.region)
        assert t._shown == [0, 2] and warning in t.render_line(1).text
        t.upsert("a", row("Archive", ""))  # repaired
        t.commit()
        await pilot.pause()
        t.render_lines(t.region)
        assert t._shown == [0, 1, 2] and "1 TiB" in t.render_line(1).text
        t.upsert("c", row("Other", warning))
        t.commit()
        await pilot.pause()
        t.render_lines(t.region)
        assert t._shown == [0, 2]
        t.remove_row("c")
        t.commit()
        await pilot.pause()
        t.render_lines(t.region)
        assert t._shown == [0, 1, 2]
