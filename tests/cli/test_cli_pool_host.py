"""``xsctl pool show|set|set-default-sr|designate-master`` and ``xsctl host set|settings``
against the demo pool: each change for real and with --dry-run, a new master and a
moved management interface followed by the same command, and each refusal as one
clear line that changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import Run, conn_args, password_file, xsctl
from tests.conftest import wait_for
from xsctl.sim import Simulator


def cli(sim: Simulator, tmp: Path, *argv: str) -> Run:
    return xsctl(*conn_args(sim, password_file(sim, tmp)), *argv)


def state(sim: Simulator) -> Any:
    st = sim.store
    return ({r: dict(p) for r, p in st.all("PIF").items()},
            {r: (h["hostname"], h["address"]) for r, h in st.all("host").items()},
            sim.master_ref(), next(iter(st.all("pool").values()))["name_label"])


def test_pool_show_and_rename(sim: Simulator, tmp_path: Path) -> None:
    shown = cli(sim, tmp_path, "pool", "show", "--json")
    assert shown.code == 0, shown.err
    assert shown.json() == {"name_label": "Demo pool", "name_description": "Simulated XCP-ng pool",
                            "master": "xcp-ng-01 (127.0.0.1)", "default_SR": "NFS storage",
                            "ha_enabled": "off"}
    dry = cli(sim, tmp_path, "pool", "set", "--name", "Lab", "--dry-run")
    assert "pool.set_name_label(Demo pool, 'Lab')" in dry.out
    assert "xe pool-param-set uuid=" in dry.out and "name-label=Lab" in dry.out
    assert next(iter(sim.store.all("pool").values()))["name_label"] == "Demo pool"
    done = cli(sim, tmp_path, "pool", "set", "--name", "Lab", "--description", "the lab")
    assert done.code == 0 and done.out.strip() == "Demo pool: renamed"
    pool = next(iter(sim.store.all("pool").values()))
    assert (pool["name_label"], pool["name_description"]) == ("Lab", "the lab")


def test_pool_default_sr_is_the_sr_operation(sim: Simulator, tmp_path: Path) -> None:
    done = cli(sim, tmp_path, "pool", "set-default-sr", "Local storage on xcp-ng-02")
    assert done.code == 0, done.err
    pool = next(iter(sim.store.all("pool").values()))
    assert sim.store.get(pool["default_SR"], "SR")["name_label"] == "Local storage"
    assert "local to xcp-ng-02" in done.err  # the SR operation's own warning


def test_designate_master_and_the_cli_follows_it(sim: Simulator, tmp_path: Path) -> None:
    dry = cli(sim, tmp_path, "pool", "designate-master", "xcp-ng-02", "--dry-run")
    assert "pool.designate_new_master(xcp-ng-02)" in dry.out
    assert "xe pool-designate-new-master host-uuid=" in dry.out
    assert sim.master_address() == "127.0.0.1"
    done = cli(sim, tmp_path, "pool", "designate-master", "xcp-ng-02")
    assert done.code == 0 and "xcp-ng-02: is the pool master" in done.out
    wait_for(lambda: sim.master_address() == "127.0.0.2")
    # the same command line, still naming the old master: led to the new one
    shown = cli(sim, tmp_path, "pool", "show", "--json")
    assert shown.code == 0 and shown.json()["master"] == "xcp-ng-02 (127.0.0.2)"
    again = cli(sim, tmp_path, "host", "designate-master", "xcp-ng-02")
    assert again.code == 1 and again.err.strip() == \
        "xsctl: xcp-ng-02: it is the pool master already"


def test_hostname_and_dns(sim: Simulator, tmp_path: Path) -> None:
    dry = cli(sim, tmp_path, "host", "set", "xcp-ng-02", "--hostname", "lab-02", "--dry-run")
    assert "host.set_hostname_live(xcp-ng-02, 'lab-02')" in dry.out
    assert "xe host-set-hostname-live host-uuid=" in dry.out
    assert cli(sim, tmp_path, "host", "set", "xcp-ng-02", "--hostname", "lab-02").code == 0
    assert cli(sim, tmp_path, "host", "set", "xcp-ng-02", "--dns", "1.1.1.1, 8.8.8.8").code == 0
    got = cli(sim, tmp_path, "host", "settings", "xcp-ng-02", "--json").json()
    assert got["hostname"] == "lab-02" and got["dns"] == "1.1.1.1, 8.8.8.8"
    assert "Static 10.0.0.12/255.255.255.0" in got["management"]  # the address stays


@pytest.mark.parametrize(("argv", "line", "code"), [
    (["--hostname=-lab"], "Hostname: '-lab' may hold only letters, digits, dots and hyphens, "
     "and not start or end with a hyphen", 2),
    (["--hostname", "lab_1"], "Hostname: 'lab_1' may hold only letters, digits, dots and "
     "hyphens, and not start or end with a hyphen", 2),
    (["--dns", "1.1.1.300"], "DNS servers: '1.1.1.300' is not an IPv4 address", 2),
    (["--pif", "eth1", "--mode", "static", "--ip", "10.0.0.300", "--netmask",
      "255.255.255.0"], "IP address: '10.0.0.300' is not an IPv4 address", 2),
    (["--pif", "eth1", "--mode", "static", "--ip", "10.0.0.30", "--netmask", "255.0.255.0"],
     "Netmask: 255.0.255.0 is not a netmask (its ones must come first, as in 255.255.255.0)",
     2),
    (["--pif", "eth1", "--mode", "static", "--ip", "10.0.0.30", "--netmask", "255.255.255.0",
      "--gateway", "gw"], "Gateway: 'gw' is not an IPv4 address", 2),
    (["--pif", "eth9", "--mode", "dhcp"], "--pif: xcp-ng-01 has no interface 'eth9' (eth1, "
     "eth0.100 for a VLAN, or a PIF's UUID)", 2),
    (["--ntp", "pool.ntp.org"], "no NTP API in this xapi: use xsconsole", 1),
    (["--timezone", "Europe/London"], "no timezone API in this xapi: use xsconsole", 1),
    (["--hostname", "a", "--dns", "1.1.1.1"], "set: give one of --hostname, --dns, --ntp, "
     "--timezone, --pif (not --hostname and --dns together)", 2),
])
def test_each_refusal_is_one_line_and_changes_nothing(sim: Simulator, tmp_path: Path,
                                                      argv: list[str], line: str,
                                                      code: int) -> None:
    before = state(sim)
    r = cli(sim, tmp_path, "host", "set", "xcp-ng-01", *argv)
    assert (r.code, r.err.strip(), r.out) == (code, f"xsctl: {line}", "")
    assert state(sim) == before


def test_dns_on_a_dhcp_interface_is_refused(sim: Simulator, tmp_path: Path) -> None:
    mgmt = next(r for r, p in sim.store.all("PIF").items()
                if p["host"] == sim.master_ref() and p["management"])
    sim.store.update(mgmt, {"ip_configuration_mode": "DHCP"})
    r = cli(sim, tmp_path, "host", "set", "xcp-ng-01", "--dns", "1.1.1.1")
    assert r.code == 1 and r.err.strip() == (
        "xsctl: xcp-ng-01: it takes its management address from DHCP, which gives the DNS "
        "servers: give it a static address to choose them")


def test_management_interface_moves_and_the_cli_follows(sim: Simulator,
                                                         tmp_path: Path) -> None:
    argv = ["host", "set", "xcp-ng-01", "--pif", "eth1", "--mode", "static",
            "--ip", "127.0.0.9", "--netmask", "255.0.0.0"]
    dry = cli(sim, tmp_path, *argv, "--dry-run", "--json")
    plan = dry.json()[0]
    assert plan["calls"][0].startswith("PIF.reconfigure_ip(eth1, 'Static', '127.0.0.9', "
                                       "'255.0.0.0', ''")
    assert plan["calls"][1] == "host.management_reconfigure(eth1)"
    assert plan["xe"][1].startswith("xe host-management-reconfigure pif-uuid=")
    assert "this connection moves with it" in plan["warnings"][0]
    done = cli(sim, tmp_path, *argv)
    assert done.code == 0 and "xcp-ng-01: has a new management interface" in done.out
    assert "warning: xcp-ng-01's management interface moves to eth1" in done.err
    assert sim.master_address() == "127.0.0.9"
    # the host is reached at its new address (the old one answers no more)
    r = xsctl("--url", sim.url_for("127.0.0.9"), "--password-file",
              str(password_file(sim, tmp_path)), "host", "settings", "xcp-ng-01", "--json")
    assert r.code == 0, r.err
    assert r.json()["management"].startswith("eth1 (") and "127.0.0.9/255.0.0.0" in \
        r.json()["management"]


def test_management_interface_to_dhcp_and_the_cli_follows(sim: Simulator,
                                                          tmp_path: Path) -> None:
    argv = ["host", "set", "xcp-ng-01", "--pif", "eth1", "--mode", "dhcp"]
    plan = cli(sim, tmp_path, *argv, "--dry-run", "--json").json()[0]
    assert plan["calls"] == ["PIF.reconfigure_ip(eth1, 'DHCP', '', '', '', '')",
                             "PIF.get_IP(eth1)", "host.management_reconfigure(eth1)"]
    assert plan["xe"][0].endswith("mode=dhcp")
    assert "at the address DHCP gives" in plan["warnings"][0]
    done = cli(sim, tmp_path, *argv)
    assert done.code == 0, done.err
    new = sim.master_address()
    assert new != "127.0.0.1" and new.startswith("127.")  # the simulated lease
    r = xsctl("--url", sim.url_for(new), "--password-file", str(password_file(sim, tmp_path)),
              "host", "settings", "xcp-ng-01", "--json")
    assert r.code == 0 and r.json()["management"].startswith("eth1 (") and \
        f"DHCP ({new})" in r.json()["management"]
