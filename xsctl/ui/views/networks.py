"""Networks: every network, live: what it is (a NIC's, a VLAN, a bond, internal to the
hosts, xapi's own), the NIC each host reaches it through, its VLAN tag or bond mode,
its MTU, and the VMs attached; the management network marked. The detail shows each
host's PIF and each VIF on it. New internal networks and bonds start here (n, b);
a VLAN goes on the network under the cursor (v)."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from rich.console import Group
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import Input, Label

from xsctl.ui.messages import CacheChanged
from xsctl.ui.screens.main import MainScreen
from xsctl.ui.views.base import PaletteCommand
from xsctl.ui.views.listing import DetailPane, ListingView, kv, listing_keys
from xsctl.ui.widgets.table import Column, Row, VirtualTable
from xsctl.xapi.models import NULL, Pool
from xsctl.xapi.networks import BOND, INTERNAL, NIC, SYSTEM, VLAN, Network, attachments
from xsctl.xapi.ops import catalogue
from xsctl.xapi.storage import some

COLUMNS = [
    Column("name", "Network", min_width=16, ratio=3, whole=True),
    Column("kind", "Kind", width=8),
    Column("nics", "NICs", min_width=6, ratio=1, priority=2),
    Column("vlan", "VLAN", width=5, align="right", priority=3),
    Column("bond", "Bond", width=13, priority=4),
    Column("mtu", "MTU", width=5, align="right", priority=5),
    Column("plugged", "Plugged", width=7, priority=6),
    Column("vms", "VMs", width=4, align="right", priority=1),
]

# the pool's operations started here: they act on no row (their keys are this view's)
CREATES = ("network.create", "bond.create")

KIND_HELP = {
    NIC: "a NIC's own network: each host's physical interface",
    VLAN: "tagged traffic on a NIC or a bond",
    BOND: "NICs joined into one link",
    INTERNAL: "no NIC: VMs on it reach only the VMs on their own host",
    SYSTEM: "xapi's host-internal management network (guest installer, no NIC)",
}


class NetworksView(ListingView[DetailPane]):
    """The Networks view."""

    ID = "networks"
    LABEL = "Networks"
    KEY = ""
    ORDER = 20
    HELP = "networks, live: NICs, VLANs, bonds, MTU, VMs attached"
    FOLLOWS = frozenset({"network", "pif", "vlan", "bond", "vif", "host"})
    ACTS_ON = "network"
    TABLE = "network-table"
    FILTER = "network-filter"
    DETAIL = "network-detail"
    STATUS = "network-status"

    BINDINGS: ClassVar[list[BindingType]] = listing_keys(
        "networks", "name, kind, NIC, tag or VM",
        [Binding("n", "create('network.create')", "New network", id="networks.new",
                 tooltip="Create an internal network (no NIC)"),
         Binding("b", "create('bond.create')", "New bond", id="networks.bond",
                 tooltip="Join NICs in a bond on every host, on a new network")])

    def __init__(self, client: Any, **kw: Any) -> None:
        super().__init__(client, **kw)
        self.stale = True  # rebuilt when next shown

    # ------------------------------------------------------------ the pool's operations

    def action_create(self, op_id: str) -> None:
        """A new network or bond acts on the pool, not on a row: started here and from
        the palette rather than from the actions menu."""
        pool = Pool.of(self.client.cache)
        if pool is not None and isinstance(self.screen, MainScreen):
            self.screen.request(op_id, [pool.ref], self.ID, kind="pool")

    def menu_extras(self) -> list[tuple[str, str]]:
        pool = Pool.of(self.client.cache)
        return [] if pool is None else [(op_id, pool.ref) for op_id in CREATES]

    def palette(self) -> list[PaletteCommand]:
        out = []
        for op_id in CREATES:
            op = catalogue.get(op_id)
            out.append(PaletteCommand(f"network: {op.menu_label.lower()}", op.help,
                                      partial(self.action_create, op_id)))
        return out

    # ------------------------------------------------------------ the table

    def compose(self) -> ComposeResult:
        yield Input(placeholder="/ to filter by name, kind, NIC, tag or VM",
                    id="network-filter", classes="view-filter")
        with Horizontal(classes="view-body"):
            yield VirtualTable(COLUMNS, empty_text="No networks", id="network-table")
            yield DetailPane(id="network-detail")
        yield Label("", id="network-status", classes="view-status")

    def _styles(self) -> dict[str, Style]:
        t = self.app.current_theme
        return {"warn": Style(color=t.warning), "bold": Style(bold=True),
                "dim": Style(dim=True), "accent": Style(color=t.accent)}

    def on_show(self) -> None:
        if self.stale:
            self.rebuild()

    def rebuild(self) -> None:
        cache = self.client.cache
        self.stale = False
        self.table.replace_all({ref: self.row(Network.from_record(cache, ref, r))
                                for ref, r in cache.snapshot("network")})
        self.table.commit()
        self.update_status()
        self.update_detail()

    def row(self, net: Network) -> Row:
        st = self._styles()
        cache = self.client.cache
        vms = sorted({a.vm_name for a in attachments(cache, net) if a.what == "VM"},
                     key=str.lower)
        # short: the whole name of the eth0 network still fits at 80 columns
        name = net.display_name + (" (mgmt)" if net.management else "")
        kind = net.kind
        plugged = sum(1 for p in net.pifs if p.currently_attached)
        unplugged = bool(net.pifs) and plugged < len(net.pifs) and not net.bonded
        cells = (
            (name, st["bold"] if net.management else None),
            (net.kind_text, st["accent"] if kind in (INTERNAL, SYSTEM) else None),
            (", ".join(net.devices) or "none", st["dim"] if not net.pifs else None),
            (", ".join(map(str, net.tags)) or "–", None if net.tags else st["dim"]),
            (", ".join(net.bond_modes) or ("in a bond" if net.bonded else "–"),
             None if net.bond_modes else st["dim"]),
            (str(net.MTU), None),
            (f"{plugged}/{len(net.pifs)}" if net.pifs else "–",
             st["warn"] if unplugged else None if net.pifs else st["dim"]),
            (str(len(vms)), None if vms else st["dim"]),
        )
        sort = (name.lower(), net.kind_text, ", ".join(net.devices), net.tags,
                net.bond_modes, net.MTU, plugged, len(vms))
        search = " ".join([name, net.kind_text, net.bridge, *net.devices,
                           *map(str, net.tags), *net.bond_modes, *vms]).lower()
        return Row(cells, sort, search, dim=net.kind == SYSTEM or net.bonded)

    def changed(self, msg: CacheChanged) -> None:
        """Networks are few: a change to a PIF, VLAN or bond, or a host come, gone or
        renamed, redraws every row (at once when shown, else when next shown); a
        VIF's or a network's only the networks it touches."""
        if self.stale:
            return
        hosts = any(c.cls == "host" and (c.op != "mod" or "name_label" in c.changed_fields())
                    for c in msg.changes)
        if msg.resync or hosts or msg.classes & {"pif", "vlan", "bond"}:
            if self.display:
                self.rebuild()
            else:
                self.stale = True
            return
        nets = msg.refs("network")
        for c in msg.changes:
            if c.cls == "vif":
                for rec in (c.old, c.new):
                    if rec is not None:
                        nets.add(str(rec.get("network", NULL)))
        cache = self.client.cache
        table = self.table
        touched = False
        for ref in nets:
            r = cache.get("network", ref)
            if r is None:
                if ref in table.rows:
                    table.remove_row(ref)
                    touched = True
            else:
                table.upsert(ref, self.row(Network.from_record(cache, ref, r)))
                touched = True
        if touched:
            table.commit()
            self.update_status()
        if table.cursor_key in nets:
            self.update_detail()

    def update_status(self) -> None:
        t = self.table
        flt, sel, col = self.status_parts()
        self.set_status(f"{t.visible_count} of {len(t.rows)} networks{flt}{sel} · sorted by "
                        f"{col} · n: new · b: bond · v: VLAN on it")

    # ------------------------------------------------------------ detail

    def show_detail(self, pane: DetailPane, key: str | None) -> None:
        cache = self.client.cache
        net = None if key is None else Network.get(cache, key)
        if net is None:
            pane.show("No network selected", Text(""))
            return
        kind = net.kind
        facts: list[tuple[str, str | Text]] = [
            ("Description", net.name_description or "–"),
            ("Kind", f"{net.kind_text}: {KIND_HELP[kind]}"),
            ("UUID", net.uuid),
            ("Bridge", net.bridge or "–"),
            ("MTU", str(net.MTU)),
        ]
        if net.tags:
            facts.append(("VLAN tag", ", ".join(map(str, net.tags))))
        if net.bond_modes:
            facts.append(("Bond mode", ", ".join(net.bond_modes)))
        if net.bonded:
            facts.append(("Bonded", Text("its NICs are members of a bond; the bond's "
                                         "network carries their traffic", style="bold")))
        if net.management:
            managed = sorted({p.host_name for p in net.pifs if p.management}, key=str.lower)
            facts.append(("Management", Text(f"the management interface of {some(managed)}",
                                              style="bold")))
        parts: list[Any] = [kv(facts), Text("")]
        if net.pifs:
            hosts = Table(box=None, padding=(0, 1), expand=True, title="On each host (PIFs)",
                          title_justify="left", title_style="bold")
            hosts.add_column("Host", ratio=1, min_width=10, overflow="fold")
            hosts.add_column("NIC", no_wrap=True)
            hosts.add_column("Plugged", no_wrap=True)
            hosts.add_column("IP", no_wrap=True)
            hosts.add_column("Role", ratio=1)
            for p in net.pifs:
                role = []
                if p.management:
                    role.append("management")
                if p.bond_members:
                    role.append("bond of " + " + ".join(p.bond_members))
                if p.bonded:
                    role.append("bond member")
                hosts.add_row(Text(p.host_name), Text(p.shown_device),
                              "yes" if p.currently_attached else Text("no", style="bold"),
                              Text(p.IP or "–"), Text(", ".join(role) or "–"))
            parts += [hosts, Text("")]
        else:
            parts += [Text("No NIC on any host" if kind != SYSTEM else "No NIC (xapi's own)",
                           style="dim"), Text("")]
        vifs = attachments(cache, net)
        if vifs:
            vt = Table(box=None, padding=(0, 1), expand=True, title="Attached (VIFs)",
                       title_justify="left", title_style="bold")
            vt.add_column("VM", ratio=1, min_width=12, overflow="fold")
            vt.add_column("Dev", no_wrap=True)
            vt.add_column("Plugged", no_wrap=True)
            for a in vifs:
                who = a.vm_name + ("" if a.what == "VM" else f" ({a.what})")
                vt.add_row(Text(who), Text(a.device),
                           "yes" if a.currently_attached else "no")
            parts += [vt, Text("")]
        else:
            parts += [Text("No VM is attached", style="dim"), Text("")]
        can = [op.label for op in catalogue.operations("network")
               if catalogue.why_not(op, cache, net) is None]
        parts += [Text("Can now", style="bold"), Text(", ".join(can) or "nothing")]
        title = Text(net.display_name)
        if net.management:
            title.append(" (management)", style="bold")
        pane.show(title, Group(*parts))
