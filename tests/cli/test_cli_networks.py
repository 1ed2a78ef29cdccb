"""``xsctl network|vlan|bond ...`` against the demo pool: the list, each operation
for real and with --dry-run --json, and each refusal: one clear line, exit 1 or 2,
nothing changed in the simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.catalogue_support import check_xe_line
from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.conftest import xenapi_session
from xsctl.sim import Simulator

ETH0 = "Pool-wide network associated with eth0"
ETH1 = "Pool-wide network associated with eth1"
DMZ = "DMZ (VLAN 100)"


def cli(sim: Simulator, tmp: Path, *argv: str) -> Run:
    return xsctl(*conn_args(sim, password_file(sim, tmp)), *argv)


def state(sim: Simulator) -> dict[str, Any]:
    st = sim.store
    return {cls: {r: {k: v for k, v in row.items() if k != "allowed_operations"}
                  for r, row in st.all(cls).items()}
            for cls in ("network", "PIF", "VLAN", "Bond", "VIF")}


def named(sim: Simulator, name: str) -> tuple[str, Any]:
    found = [(r, row) for r, row in sim.store.all("network").items() if row["name_label"] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def test_list(sim: Simulator, tmp_path: Path) -> None:
    rows = {r["name_label"]: r for r in cli(sim, tmp_path, "network", "list", "--json").json()}
    assert rows[ETH0]["kind"] == "NIC" and rows[ETH0]["management"] is True
    assert rows[DMZ]["kind"] == "VLAN" and rows[DMZ]["VLAN"] == [100]
    assert [p["device"] for p in rows[DMZ]["PIFs"]] == ["eth0"] * 3
    assert rows["Host internal management network"]["kind"] == "system"
    assert [v["VM"] for v in rows[DMZ]["VIFs"]] == ["proxy-01"]
    text = cli(sim, tmp_path, "network", "list")
    assert text.code == 0
    line = next(x for x in text.out.splitlines() if DMZ in x)
    assert "eth0.100" in line and "VLAN" in line
    assert any(x.startswith("* " + ETH0) for x in text.out.splitlines())


def test_create_rename_set_destroy_internal(sim: Simulator, tmp_path: Path) -> None:
    before = state(sim)
    dry = cli(sim, tmp_path, "network", "create", "--name", "lab", "--mtu", "9000",
              "--dry-run", "--json")
    assert dry.code == 0 and dry.json()[0]["calls"][0].startswith("network.create(")
    assert state(sim) == before
    made = cli(sim, tmp_path, "network", "create", "--name", "lab", "--mtu", "9000")
    assert made.code == 0 and made.out.strip() == "lab: created"
    ref, row = named(sim, "lab")
    assert row["MTU"] == 9000 and row["PIFs"] == []
    assert cli(sim, tmp_path, "network", "rename", "lab", "--name", "lab-2").code == 0
    assert cli(sim, tmp_path, "network", "set", "lab-2", "--description", "tests").code == 0
    assert sim.store.get(ref, "network")["name_description"] == "tests"
    gone = cli(sim, tmp_path, "network", "destroy", "lab-2", "--yes")
    assert gone.code == 0 and not sim.store.exists(ref)


def test_vlan_create_and_destroy(sim: Simulator, tmp_path: Path) -> None:
    dry = cli(sim, tmp_path, "vlan", "create", ETH1, "--tag", "200", "--name", "storage",
              "--dry-run", "--json").json()[0]
    assert [c.split("(")[0] for c in dry["calls"]] == ["network.create",
                                                       "Async.pool.create_VLAN_from_PIF"]
    assert dry["xe"][1].startswith("xe pool-vlan-create pif-uuid=")
    assert cli(sim, tmp_path, "vlan", "create", "xenbr1", "--tag", "200",
               "--name", "storage").code == 0
    net, _ = named(sim, "storage")
    vlans = [v for v in sim.store.all("VLAN").values() if v["tag"] == 200]
    assert len(vlans) == 3
    # VLAN removed, the network stays (internal); then the network goes
    assert cli(sim, tmp_path, "vlan", "destroy", "storage").code == 0
    assert not [v for v in sim.store.all("VLAN").values() if v["tag"] == 200]
    assert sim.store.get(net, "network")["PIFs"] == []
    assert cli(sim, tmp_path, "network", "destroy", "storage", "--yes").code == 0
    assert not sim.store.exists(net)


def test_destroying_a_vlan_network_takes_its_vlans_down_first(sim: Simulator,
                                                              tmp_path: Path) -> None:
    assert cli(sim, tmp_path, "vlan", "create", ETH1, "--tag", "300", "--name", "v300").code == 0
    net, row = named(sim, "v300")
    plan = cli(sim, tmp_path, "network", "destroy", "v300", "--dry-run", "--json").json()[0]
    assert [c.split("(")[0] for c in plan["calls"]] == ["VLAN.destroy"] * 3 + ["network.destroy"]
    assert cli(sim, tmp_path, "network", "destroy", "v300", "--yes").code == 0
    assert not sim.store.exists(net)
    assert not any(sim.store.exists(p) for p in row["PIFs"])


def test_bond_create_and_destroy(sim: Simulator, tmp_path: Path) -> None:
    eth0_pifs = list(named(sim, ETH0)[1]["PIFs"])
    made = cli(sim, tmp_path, "bond", "create", "--nic", "eth0", "--nic", "eth1",
               "--mode", "balance-slb", "--name", "bond-a")
    assert made.code == 0, made.err
    assert "management interface" in made.err  # warned: the connection moves
    net, _ = named(sim, "bond-a")
    bonds = list(sim.store.all("Bond").values())
    assert len(bonds) == 3 and {b["mode"] for b in bonds} == {"balance-slb"}
    assert all(len(b["slaves"]) == 2 for b in bonds)
    rows = {r["name_label"]: r for r in cli(sim, tmp_path, "network", "list", "--json").json()}
    assert rows["bond-a"]["kind"] == "bond" and rows["bond-a"]["bond_mode"] == ["balance-slb"]
    assert rows["bond-a"]["management"] is True
    # the DMZ VLAN moved onto the bond (xapi_bond.ml move_vlan)
    assert {p["device"] for p in rows[DMZ]["PIFs"]} == {"eth0"}
    assert all(sim.store.get(v["tagged_PIF"], "PIF")["network"] == net
               for v in sim.store.all("VLAN").values())
    # its mode changed on every host: planned, then done; the same again is refused
    plan = cli(sim, tmp_path, "bond", "set-mode", "bond-a", "--mode", "active-backup",
               "--dry-run", "--json").json()[0]
    assert len(plan["calls"]) == 3 and all(
        c.startswith("Bond.set_mode(the bond on xcp-ng-0") and c.endswith(", 'active-backup')")
        for c in plan["calls"])
    for line in plan["xe"]:
        check_xe_line(line)
    assert {b["mode"] for b in sim.store.all("Bond").values()} == {"balance-slb"}
    done = cli(sim, tmp_path, "bond", "set-mode", "bond-a", "--mode", "active-backup")
    assert done.code == 0, done.err
    assert {b["mode"] for b in sim.store.all("Bond").values()} == {"active-backup"}
    again = cli(sim, tmp_path, "bond", "set-mode", "bond-a", "--mode", "active-backup")
    assert again.code == 2 and "its mode now" in again.err, again.err
    assert cli(sim, tmp_path, "bond", "destroy", "bond-a").code == 0
    assert not sim.store.all("Bond")
    assert all(sim.store.get(p, "PIF")["management"] for p in eth0_pifs)
    assert cli(sim, tmp_path, "network", "destroy", "bond-a", "--yes").code == 0


REFUSED = [
    (("network", "destroy", DMZ, "--yes"), 1, "it has VIFs of proxy-01"),
    (("network", "destroy", ETH0, "--yes"), 1, "the management interface of xcp-ng-01"),
    (("network", "destroy", ETH1, "--yes"), 1, "it is a NIC's own network"),
    (("network", "destroy", "xenapi", "--yes"), 1, "host-internal management network"),
    (("vlan", "create", DMZ, "--tag", "5", "--name", "x"), 1, "it is a VLAN itself"),
    (("vlan", "create", ETH0, "--tag", "100", "--name", "x"), 1, "VLAN 100 is on eth0 already"),
    (("vlan", "create", ETH0, "--tag", "4095", "--name", "x"), 2, "out of range"),
    (("vlan", "destroy", ETH1), 1, "it is not a VLAN"),
    (("bond", "destroy", ETH1), 1, "it is not a bond"),
    (("bond", "set-mode", ETH1, "--mode", "lacp"), 1, "it is not a bond"),
    (("bond", "create", "--nic", "eth1", "--name", "x"), 1, "a bond joins 2 to 4 NICs"),
    (("bond", "create", "--nic", "eth0", "--nic", "eth1", "--mode", "fast", "--name", "x"), 2,
     "bond mode: 'fast' is not one of"),
    (("network", "create", "--name", " "), 2, "Name: a value is needed"),
    (("network", "create", "--name", "x", "--mtu", "10"), 2, "out of range"),
]


@pytest.mark.parametrize(("argv", "code", "why"), REFUSED, ids=[" ".join(a[:2]) + f" {i}"
                                                                  for i, (a, _, _) in
                                                                  enumerate(REFUSED)])
def test_refusals(sim: Simulator, tmp_path: Path, argv: tuple[str, ...], code: int,
                  why: str) -> None:
    before = state(sim)
    r = cli(sim, tmp_path, *argv)
    assert r.code == code, (r.out, r.err)
    assert why in r.err
    assert len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err
    assert state(sim) == before


def test_vlan_skips_a_host_in_maintenance_and_says_so(sim: Simulator, tmp_path: Path) -> None:
    """xapi_pool.ml create_VLAN_from_PIF makes VLANs on enabled hosts only."""
    x = xenapi_session(sim)
    try:
        host = x.xenapi.host.get_by_name_label("xcp-ng-02")[0]
        x.xenapi.host.disable(host)
    finally:
        x.xenapi.session.logout()
    plan = cli(sim, tmp_path, "vlan", "create", ETH1, "--tag", "42", "--name", "v42",
               "--dry-run", "--json").json()[0]
    assert any(n.startswith("Not on xcp-ng-02, in maintenance now") for n in plan["notes"])
    assert cli(sim, tmp_path, "vlan", "create", ETH1, "--tag", "42", "--name", "v42").code == 0
    hosts = {sim.store.get(sim.store.get(v["untagged_PIF"], "PIF")["host"], "host")["name_label"]
             for v in sim.store.all("VLAN").values() if v["tag"] == 42}
    assert hosts == {"xcp-ng-01", "xcp-ng-03"}
