"""Storage: every storage repository, live, with its size, use, thin-provisioned
allocation, how many disks it holds and how many of them no VM uses, the pool's
default marked, and a warning where it is nearly full or not plugged on a host that
should see it. Enter opens the Disks view on the SR's disks."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.messages import CacheChanged, ViewRequested
from xsctl.ui.modals.new_sr import open_new_sr
from xsctl.ui.screens.main import MainScreen
from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import DetailPane, ListingView, kv, listing_keys
from xsctl.ui.widgets.bars import bar_text, usage_style
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi import storage
from xsctl.xapi.models import NULL, Sr, human_bytes
from xsctl.xapi.ops import catalogue
from xsctl.xapi.text import printable

# In reading order; the priority says which go first when narrow: the name, how full
# it is and what is wrong stay at 80 columns, then its free space and orphans.
COLUMNS = [
    Column("name", "Storage", min_width=16, ratio=3, whole=True),
    Column("type", "Type", width=9, priority=7),
    Column("content", "Content", width=7, priority=10),
    Column("shared", "Shared", width=6, priority=6),
    Column("plugged", "Plugged", width=9, priority=8),
    Column("size", "Size", width=9, align="right", priority=3),
    Column("used", "Used", width=9, align="right", priority=9),
    Column("alloc", "Allocated", width=9, align="right", priority=5),
    Column("free", "Free", width=9, align="right", priority=1),
    Column("usage", "Usage", width=12),
    Column("disks", "Disks", width=5, align="right", priority=4),
    Column("orphans", "Orphans", width=7, align="right", priority=2),
    # a warning is read whole: the columns above go first to make room for it
    Column("warn", "Warnings", min_width=10, ratio=2, whole=True),
]


def plugged_text(sr: Sr, hosts: int) -> str:
    """``3/3 hosts`` for a shared SR, ``yes``/``no`` for a local one."""
    if sr.shared:
        return f"{len(sr.hosts)}/{hosts} hosts"
    return "yes" if sr.hosts else "no"


class StorageView(ListingView[DetailPane]):
    """The Storage view."""

    ID = "storage"
    LABEL = "Storage"
    KEY = "4"
    HELP = "every storage repository, live: usage, hosts, disks, warnings"
    FOLLOWS = frozenset({"sr", "pbd", "vdi", "vbd", "host", "pool", "vm"})
    ACTS_ON = "sr"
    TABLE = "sr-table"
    FILTER = "sr-filter"
    DETAIL = "sr-detail"
    STATUS = "sr-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "storage", "name, type, host or warning",
        [Binding("n", "new_sr", "New SR", id="storage.new",
                 tooltip="Create or attach a storage repository, found by probes")])

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.index: storage.DiskIndex | None = None  # built when first shown

    def action_new_sr(self) -> None:
        """The New SR wizard: the pool's operations act on no row, so they start here
        (and from the palette) rather than from the actions menu."""
        if isinstance(self.screen, MainScreen):
            open_new_sr(self.screen.runner)

    def palette(self) -> list[PaletteCommand]:
        return [PaletteCommand("sr: new SR…", "Create or attach a storage repository, "
                               "found by probes", self.action_new_sr)]

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by name, type, host or warning", id="sr-filter",
                    classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="No storage repositories", id="sr-table")
            yield DetailPane(id="sr-detail")
        yield Label("", id="sr-status", classes="view-status")

    def _styles(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {"ok": Style(color=t.success), "warn": Style(color=t.warning),
                "bad": Style(color=t.error, bold=True), "bold": Style(bold=True),
                "dim": Style(dim=True)}

    def on_show(self) -> None:
        if self.index is None:
            self.rebuild()

    def rebuild(self) -> None:
        """Every row from the cache (first shown, a resync)."""
        cache = self.client.cache
        self.index = storage.DiskIndex(cache)
        self.index.load()
        self.table.replace_all({ref: self.row(Sr.from_record(cache, ref, r))
                                for ref, r in cache.snapshot("sr")})
        self.table.commit()
        self.update_status()
        self.update_detail()

    def row(self, sr: Sr) -> Row:
        assert self.index is not None
        st = self._styles()
        cache = self.client.cache
        hosts = len(cache.all("host"))
        sized = sr.physical_size > 0
        problems = storage.problems(cache, sr)
        disks = self.index.disks(sr.ref)
        orphans = self.index.orphans_on(sr.ref)
        name = sr.display_name + (" (default)" if sr.is_default else "")

        def size(n: int) -> str:
            return human_bytes(n) if sized else "–"

        # thin provisioning: more promised to the disks than the SR holds
        over = sized and sr.virtual_allocation > sr.physical_size
        cells = (
            (name, st["bold"] if sr.is_default else None),
            (sr.type, None),
            (sr.content_type, None),
            ("shared" if sr.shared else "local", None),
            (plugged_text(sr, hosts),
             st["warn"] if any("unplugged" in p or p == "detached" for p in problems) else None),
            (size(sr.physical_size), None),
            (size(sr.physical_utilisation), None),
            (size(sr.virtual_allocation), st["warn"] if over else None),
            (size(sr.free), None),
            (f"{bar_text(sr.usage, 7)} {sr.usage * 100:3.0f}%" if sized else "",
             st[usage_style(sr.usage)] if sized and not sr.is_iso else None),
            (str(disks), None),
            (str(orphans) if orphans else "–", st["warn"] if orphans else st["dim"]),
            ("⚠ " + "; ".join(problems) if problems else "", st["bad"] if problems else None),
        )
        sort = (name.lower(), sr.type, sr.content_type, sr.shared, len(sr.hosts),
                sr.physical_size, sr.physical_utilisation, sr.virtual_allocation, sr.free,
                sr.usage, disks, orphans, (not problems, "; ".join(problems)))
        search = " ".join([name, sr.type, sr.content_type, "shared" if sr.shared else "local",
                           *storage.host_names(cache, sr.pbd_hosts), *problems,
                           "default" if sr.is_default else ""]).lower()
        return Row(cells, sort, search, dim=not sr.hosts and not sr.is_tools_sr)

    def changed(self, msg: CacheChanged) -> None:
        """Keyed row updates: only the SRs a change touched (the disk index says which
        SRs a disk or VBD change moved a count on)."""
        if self.index is None:
            return  # not shown yet: built when it is
        if msg.resync:
            self.rebuild()
            return
        _, srs = self.index.apply(msg.changes)
        # added or removed hosts: the shared SRs' "n/m hosts"
        if "host" in msg.classes and any(c.cls == "host" and c.op != "mod"
                                         for c in msg.changes):
            srs.update(self.table.rows)
        cache = self.client.cache
        table = self.table
        for ref in srs:
            r = cache.get("sr", ref)
            if r is None:
                table.remove_row(ref)
            else:
                table.upsert(ref, self.row(Sr.from_record(cache, ref, r)))
        if srs:
            table.commit()
            self.update_status()
        if table.cursor_key in srs or msg.classes & {"pbd", "sr"}:
            self.update_detail()

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        warned = sum(1 for r in t.rows.values() if r.cells[-1][0])
        warn = f", {warned} with warnings" if warned else ""
        self.set_status(
            f"{t.visible_count} of {len(t.rows)} SRs{flt}{warn}{sel} · sorted by {col} · "
            "enter: its disks")

    # ------------------------------------------------------------ detail

    def show_detail(self, pane: DetailPane, key: str | None) -> None:
        cache = self.client.cache
        sr = None if key is None else Sr.get(cache, key)
        if sr is None or self.index is None:
            pane.show("No SR selected", Text(""))
            return
        problems = storage.problems(cache, sr)
        sized = sr.physical_size > 0
        facts: list[tuple[str, str | Text]] = [
            ("Description", sr.name_description or "–"),
            ("UUID", sr.uuid),
            ("Type", f"{sr.type} ({sr.content_type or 'no content type'})"),
            ("Shared", "yes, by every host" if sr.shared else
             f"no, local to {sr.host_name}" if sr.host_name else "no"),
            ("Default SR", "yes (new disks go here)" if sr.is_default else "no"),
        ]
        if sized:
            facts += [
                ("Size", human_bytes(sr.physical_size, precise=True)),
                ("Used", f"{human_bytes(sr.physical_utilisation, precise=True)} "
                         f"({sr.usage * 100:.0f}%)"),
                ("Allocated", human_bytes(sr.virtual_allocation, precise=True)
                 + (" (more than its size: thin provisioned)"
                    if sr.virtual_allocation > sr.physical_size else "")),
                ("Free", human_bytes(sr.free, precise=True)),
            ]
        facts.append(("Disks", f"{self.index.disks(sr.ref)}, "
                               f"{self.index.orphans_on(sr.ref)} used by no VM"))
        if problems:
            facts.append(("Warnings", Text("; ".join(problems), style="bold")))
        if sr.current_operations:
            facts.append(("Doing now", ", ".join(printable(o) for o in sr.current_operations)))
        hosts = Table(box=None, padding=(0, 1), expand=True, title="Hosts (PBDs)",
                      title_justify="left", title_style="bold")
        hosts.add_column("Host", ratio=1)
        hosts.add_column("PBD", no_wrap=True)
        hosts.add_column("Plugged", no_wrap=True)
        configs: list[tuple[str, list[tuple[str, str]]]] = []
        seen_hosts = set()
        for pbd in sr.PBDs:
            p = cache.get("pbd", pbd)
            if p is None:
                continue
            host = str(p.get("host", NULL))
            seen_hosts.add(host)
            hname = printable(str((cache.get("host", host) or {}).get("name_label", "?")))
            hosts.add_row(Text(hname), printable(str(p.get("uuid", "")))[:8],
                          "yes" if p.get("currently_attached") else Text("no", style="bold"))
            configs.append((hname, storage.masked_config(p.get("device_config") or {})))
        if sr.shared:
            for ref, h in cache.snapshot("host"):
                if ref not in seen_hosts:
                    hosts.add_row(Text(printable(str(h.get("name_label", "")))), "none",
                                  Text("no PBD", style="bold"))
        parts: list[Any] = [kv(facts), Text(""), hosts, Text("")]
        # the PBDs of a shared SR usually hold the same device_config: once, then
        if configs and all(c == configs[0][1] for _, c in configs):
            configs = [("", configs[0][1])]
        for hname, cfg in configs:
            title = "Device config" + (f" on {hname}" if hname else "")
            parts += [Text(title, style="bold"),
                      kv(list(cfg)) if cfg else Text("(none)", style="dim"), Text("")]
        can = [op.label for op in catalogue.operations("sr")
               if catalogue.why_not(op, cache, sr) is None]
        if can:
            parts += [Text("Can now", style="bold"), Text(", ".join(can)), Text("")]
        parts += [Text("Allowed operations (xapi)", style="bold"),
                  Text(", ".join(sorted(printable(o) for o in sr.allowed_operations))
                       or "none")]
        pane.show(Text(sr.display_name + (" (default)" if sr.is_default else "")),
                  Group(*parts))

    # ------------------------------------------------------------ enter: its disks

    def extra_keys(self) -> list[tuple[str, str]]:
        return [(k, "Its disks: the Disks view on this SR" if k == "enter" else d)
                for k, d in super().extra_keys()]

    @on(VirtualTable.Activated, "#sr-table")
    def _activated(self, event: VirtualTable.Activated) -> None:
        self.post_message(ViewRequested("disks", event.key))
