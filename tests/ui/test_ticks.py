"""Ticked or not is told by a mark, not only by a colour: a monochrome or serial
console (a dom0's) shows no colours."""

from __future__ import annotations

from textual.app import App, ComposeResult

from xsctl.ui.widgets.ticks import Tick, TickList


class _App(App[None]):
    def compose(self) -> ComposeResult:
        yield Tick("Start the VM when it is made", id="tick")
        yield TickList[str](("eth0", "eth0", True), ("eth1", "eth1", False), id="nets")


async def test_a_check_box_marks_only_when_ticked() -> None:
    app = _App()
    async with app.run_test(size=(50, 10)) as pilot:
        tick = app.query_one(Tick)
        assert "▐ ▌ Start the VM" in tick.render().plain
        await pilot.click("#tick")
        await pilot.pause()
        assert tick.value and "▐X▌ Start the VM" in tick.render().plain


async def test_a_selection_list_marks_only_what_is_selected() -> None:
    app = _App()
    async with app.run_test(size=(50, 10)) as pilot:
        nets = app.query_one(TickList)
        lines = [nets.render_line(y).text for y in range(2)]
        assert "▐X▌ eth0" in lines[0] and "▐ ▌ eth1" in lines[1]
        nets.select("eth1")
        nets.deselect("eth0")
        await pilot.pause()
        lines = [nets.render_line(y).text for y in range(2)]
        assert "▐ ▌ eth0" in lines[0] and "▐X▌ eth1" in lines[1]
