"""The CLI prints xapi's strings for people without their control characters (a VM
named ``evil\\x1b]0;PWNED\\x07`` must not retitle the terminal), in tables, details,
plans and errors; ``--json`` keeps them exact, escaped as JSON does."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

from tests.cli.helpers import conn_args, password_file, xsctl
from tests.jsonrpc import JsonRpcClient
from xsctl.sim import Simulator

NAME = "evil\x1b]0;PWNED\x07\x1b[2J"
SHOWN = "evil]0;PWNED[2J"


def controls(text: str) -> list[str]:
    return sorted({repr(c) for c in text if unicodedata.category(c) == "Cc" and c != "\n"})


def test_hostile_names_print_clean_and_json_stays_exact(sim: Simulator, tmp_path: Path) -> None:
    j = JsonRpcClient(sim.url)
    j.login(sim.user, sim.password)
    try:
        web = j("VM.get_by_name_label", "web-01")[0]
        web2 = j("VM.get_by_name_label", "web-02")[0]
        j("VM.set_name_label", web, NAME)
        j("VM.set_name_label", web2, NAME + "2")
        sim.set_guest_metrics(web, os_version={"name": "Debian\x1b[31m 12"})
        host = j("host.get_all")[0]
        j("host.set_name_label", host, "host\x1b[5mblink")
        sr = j("SR.get_by_name_label", "NFS storage")[0]
        j("SR.set_name_label", sr, "nfs\x07bell")
        # xapi refuses C0 controls in an alert (Encodings.UTF8_XML), not C1 ones
        j("message.create", "EVIL", 3, "VM", j("VM.get_uuid", web), "body\x9b2J")
    finally:
        j.logout()
        j.close()
    cli = conn_args(sim, password_file(sim, tmp_path))
    for argv in (["vm", "list"], ["vm", "show", SHOWN.replace("[2J", "")[:4] + "*"],
                 ["host", "list"], ["sr", "list"], ["task", "list", "--all"]):
        r = xsctl(*cli, *argv)
        assert not controls(r.out) and not controls(r.err), (argv, controls(r.out + r.err))
    out = xsctl(*cli, "vm", "list").out
    assert SHOWN in out and "host[5mblink" in xsctl(*cli, "host", "list").out
    assert "nfs" in xsctl(*cli, "sr", "list").out
    uuid = next(v["uuid"] for v in xsctl(*cli, "vm", "list", "--json").json()
                if v["name_label"] == NAME)
    shown = xsctl(*cli, "vm", "show", uuid)
    assert SHOWN in shown.out and "Debian[31m 12" in shown.out and not controls(shown.out)
    dry = xsctl(*cli, "vm", "shutdown", uuid, "--dry-run")
    assert f"Shut down {SHOWN}" in dry.out and not controls(dry.out)
    # an error that lists candidates (a prefix of both names) and one that names it
    err = xsctl(*cli, "vm", "show", "evil")
    assert err.code == 2 and not controls(err.err)
    err = xsctl(*cli, "vm", "start", uuid)
    assert err.code == 1 and not controls(err.err)
    # --json: the exact names, JSON-escaped
    raw = xsctl(*cli, "vm", "list", "--json").out
    assert "\\u001b]0;PWNED\\u0007" in raw and not controls(raw)
    assert NAME in {v["name_label"] for v in json.loads(raw)}
    plan = xsctl(*cli, "vm", "shutdown", uuid, "--dry-run", "--json").json()
    assert plan[0]["calls"] == [f"Async.VM.clean_shutdown({NAME})"]
