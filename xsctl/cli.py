"""Command-line parsing only: builds what a command needs and hands it over.

Exit codes: 0 ok, 1 xapi refused, 2 usage, 3 connection or trust, 128+N ended by
signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP, 141 the reader of the output left).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from xsctl import __version__

Command = Callable[[argparse.Namespace], int]


NO_PASSWORD_OPTION = (
    "there is no password option: a password on the command line shows in the process "
    "list and the shell's history. The ways in: the keyring (asked once on a terminal, "
    "then saved if you say so), --password-file FILE, or --password-stdin"
)


class _NoPasswordOption(argparse.Action):
    """``--password foo``: refused by name, without repeating what followed it (argparse
    would echo it back as an "invalid choice")."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error(NO_PASSWORD_OPTION)


def _seconds(text: str) -> float:
    from xsctl.xapi.errors import UsageError
    from xsctl.xapi.session import check_timeout

    try:
        return check_timeout(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError("not a number of seconds") from None
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _conn_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    d: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    g = p.add_argument_group("connection")
    g.add_argument("--profile", "-p", metavar="NAME", help="a saved profile", **d)
    g.add_argument("--url", metavar="URL", help="https://HOST[:PORT], or unix:///var/lib/xcp/xapi", **d)
    g.add_argument("--insecure-http", action="store_true",
                   help="allow an http:// URL (the password and all data unencrypted)", **d)
    g.add_argument("--user", "-u", metavar="NAME", help="user name (default root)", **d)
    g.add_argument("--ca-file", metavar="FILE", help="verify the host against this CA", **d)
    g.add_argument("--accept-fingerprint", metavar="SHA256:..",
                   help="trust this certificate fingerprint on first use", **d)
    g.add_argument("--password-file", metavar="FILE", help="read the password from FILE", **d)
    g.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input", **d)
    g.add_argument("--password", "--passwd", action=_NoPasswordOption, nargs="?",
                   help=argparse.SUPPRESS, default=argparse.SUPPRESS)
    g.add_argument("--read-only", action="store_true",
                   help="refuse every call that changes state", **d)
    g.add_argument("--transport", choices=["auto", "json", "xml"],
                   help="JSON-RPC, XML-RPC, or auto (JSON-RPC with XML-RPC fallback)", **d)
    g.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="socket timeout (30)", **d)
    g.add_argument("--verbose", "-v", action="store_true", help="log calls to stderr", **d)


def _out_options(p: argparse.ArgumentParser, dry_run: bool = False) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    if dry_run:
        p.add_argument("--dry-run", action="store_true",
                       help="show the API calls and the xe equivalent; change nothing")


def _leaf(sub: Any, name: str, fn: Command, help: str, *, dry_run: bool = False,
          conn: bool = True, **kw: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=help, allow_abbrev=False, **kw
    )
    if conn:
        _conn_options(p, suppress=True)
    _out_options(p, dry_run)
    p.set_defaults(func=fn)
    return p


def build_parser() -> argparse.ArgumentParser:
    from xsctl.commands import (
        admin,
        alerts,
        block,
        console,
        disks,
        hosts,
        install,
        metrics,
        networks,
        ops,
        pool,
        profiling,
        storage,
        vifs,
        vm,
    )
    from xsctl.xapi.ops.alert import MESSAGE

    p = argparse.ArgumentParser(
        prog="xsctl",
        allow_abbrev=False,
        description="Manage XenServer and XCP-ng pools. With no command, opens the "
        "terminal UI.",
        epilog="Exit codes: 0 ok, 1 refused by xapi, 2 usage, 3 connection or trust, "
        "128+N ended by signal N (130 Ctrl-C, 129 hang-up, 143 SIGTERM, 141 the reader "
        "of the output left).",
    )
    p.add_argument("--version", action="version", version=f"xsctl {__version__}")
    p.add_argument("--view", metavar="VIEW",
                   help="the view the app opens on: status, vms or tasks (its menu number "
                   "works too)")
    _conn_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    # --- the demo and the simulator
    d = sub.add_parser("demo", help="open the terminal UI on a simulated demo pool")
    d.add_argument("--vms", type=int, metavar="N", help="number of VMs (default 25)")
    d.add_argument("--seed", type=int, default=1, help="seed of the demo pool")
    d.add_argument("--view", metavar="VIEW", help="the view to open on (status, vms, tasks)")
    d.set_defaults(func=_cmd_demo)

    s = sub.add_parser("sim", help="serve a simulated xapi pool until Ctrl-C", allow_abbrev=False)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=0, help="TLS port (default: a free port)")
    s.add_argument("--unix", metavar="PATH", help="also serve xapi's Unix socket at PATH")
    s.add_argument("--vms", type=int, metavar="N", help="number of VMs (default: the demo's 25)")
    s.add_argument("--seed", type=int, default=1, help="seed of the deterministic demo pool")
    s.add_argument("--json", action="store_true", help="print the connection details as JSON")
    s.add_argument("--password", help=argparse.SUPPRESS)
    s.add_argument("--plain", action="store_true", help="serve plain HTTP instead of HTTPS")
    s.add_argument("--http-port", type=int, metavar="PORT",
                   help="also serve plain HTTP on PORT (0: a free port), as xapi's port 80")
    s.add_argument("--cert", help="PEM certificate for the master (default: generated)")
    s.add_argument("--key", help="PEM private key for --cert")
    s.add_argument("--op-time", type=float, default=1.0, metavar="SECONDS",
                   help="simulated duration of a VM operation (default 1.0)")
    s.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                   help="fault: delay added to every call")
    s.add_argument("--auth-fail-delay", type=float, default=5.0, metavar="SECONDS",
                   help="delay before a failed login answers, as xapi (default 5)")
    s.add_argument("--no-jsonrpc", action="store_true",
                   help="answer /jsonrpc with 404, like a host without JSON-RPC")
    s.set_defaults(func=_cmd_sim)

    c = sub.add_parser("sim-control", help="inject a fault into a running simulator")
    c.add_argument("control_url", metavar="url", help="the control URL printed by xsctl sim")
    c.add_argument("token", help="the control token printed by xsctl sim")
    c.add_argument("action", choices=["info", "sessions", "latency", "drop", "slow_events",
                                      "restart", "master", "expire", "fail"])
    c.add_argument("value", nargs="?",
                   help="seconds, count, host, session (expire; all when left out), or "
                   "method (fail: its next call fails)")
    c.set_defaults(func=_cmd_sim_control)

    # --- local configuration
    pr = sub.add_parser("profile", help="saved connections")
    prs = pr.add_subparsers(dest="profile_command", metavar="ACTION", required=True)
    a = _leaf(prs, "add", admin.cmd_profile_add, "save a connection profile", conn=False)
    a.add_argument("name")
    a.add_argument("--url", dest="profile_url", required=True, metavar="URL")
    a.add_argument("--user", dest="profile_user", default="root", metavar="NAME")
    a.add_argument("--ca-file", dest="profile_ca_file", metavar="FILE")
    a.add_argument("--ssh", metavar="TARGET",
                   help="ssh destination of the pool master's dom0 for profiling (default "
                   "root@ each host's address; {address} makes a pattern for every host)")
    a.add_argument("--profiling", action="store_true",
                   help="show the Profiling view, which runs tools in the hosts' dom0")
    a.add_argument("--host-tools", metavar="FOLDER",
                   help="run host tools from FOLDER/ADDRESS here instead of over ssh "
                   "(the simulated dom0s that xsctl sim prints)")
    a.add_argument("--read-only", dest="profile_read_only", action="store_true")
    a.add_argument("--insecure-http", dest="profile_insecure_http", action="store_true",
                   help="allow an http:// URL (the password and all data unencrypted)")
    a.add_argument("--default", action="store_true", help="make it the default profile")
    a.add_argument("--replace", action="store_true", help="overwrite an existing profile")
    _leaf(prs, "list", admin.cmd_profile_list, "list profiles", conn=False)
    r = _leaf(prs, "remove", admin.cmd_profile_remove, "remove a profile", conn=False)
    r.add_argument("name", metavar="PROFILE")
    r.add_argument("--forget-password", action="store_true",
                   help="also delete its password from the keyring")

    tr = sub.add_parser("trust", help="pinned server certificates")
    trs = tr.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    _leaf(trs, "list", admin.cmd_trust_list, "list pinned certificates", conn=False)
    f = _leaf(trs, "forget", admin.cmd_trust_forget, "forget a host's pinned certificate",
              conn=False)
    f.add_argument("host", help="host or host:port")

    # --- VMs
    v = sub.add_parser("vm", help="virtual machines")
    vs = v.add_subparsers(dest="vm_command", metavar="ACTION", required=True)
    ls = _leaf(vs, "list", vm.cmd_list, "list VMs")
    ls.add_argument("--power-state", metavar="STATE", help="running, halted, suspended, paused")
    ls.add_argument("--host", metavar="HOST", help="only VMs resident on HOST")
    ls.add_argument("--tag", metavar="TAG", help="only VMs with TAG")
    ls.add_argument("--templates", action="store_true", help="list templates")
    ls.add_argument("--snapshots", action="store_true", help="list snapshots")
    ls.add_argument("--all", action="store_true", help="VMs, templates and snapshots")
    sh = _leaf(vs, "show", vm.cmd_show, "show VMs in detail")
    sh.add_argument("vm", nargs="+", help="name, UUID or unique UUID prefix")

    ops.add_verbs(vs, "vm", _leaf)
    install.add_install(vs, _leaf)

    # --- templates and snapshots (VM records too)
    tp = sub.add_parser("template", help="templates")
    tps = tp.add_subparsers(dest="template_command", metavar="ACTION", required=True)
    tl = _leaf(tps, "list", install.cmd_template_list, "list templates: built-in and custom")
    tl.add_argument("--custom", action="store_true", help="only custom templates")
    tl.add_argument("--builtin", action="store_true", help="only built-in templates")
    ops.add_verbs(tps, "template", _leaf)
    sn = sub.add_parser("snapshot", help="VM snapshots")
    sns = sn.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    sl = _leaf(sns, "list", install.cmd_snapshot_list,
               "list snapshots as trees (of one VM, or of every VM that has some)")
    sl.add_argument("vm", nargs="?", metavar="VM", help="only this VM's snapshots")
    ops.add_verbs(sns, "snapshot", _leaf)

    # --- pool objects
    h = sub.add_parser("host", help="hosts")
    hs = h.add_subparsers(dest="host_command", metavar="ACTION", required=True)
    _leaf(hs, "list", hosts.cmd_host_list, "list the pool's hosts")
    hsh = _leaf(hs, "show", hosts.cmd_host_show,
                "show hosts in detail: CPUs, memory, VMs, NICs, management interface")
    hsh.add_argument("host", nargs="+", metavar="HOST",
                     help="name, address, UUID or unique UUID prefix")
    hst = _leaf(hs, "settings", pool.cmd_host_settings,
                "show a host's hostname, management interface, DNS, NTP and timezone")
    hst.add_argument("host", metavar="HOST", help="name, UUID, address or hostname")
    ops.add_verbs(hs, "host", _leaf)
    pl = sub.add_parser("pool", help="the pool: its name, master, default SR and HA")
    pls = pl.add_subparsers(dest="pool_command", metavar="ACTION", required=True)
    _leaf(pls, "show", pool.cmd_pool_show, "show the pool's name, master, default SR and HA")
    ops.add_verbs(pls, "pool", _leaf)
    metrics.add_metrics(sub, _leaf)
    sr = sub.add_parser("sr", help="storage repositories")
    srs = sr.add_subparsers(dest="sr_command", metavar="ACTION", required=True)
    _leaf(srs, "list", disks.cmd_sr_list, "list storage repositories")
    ss = _leaf(srs, "show", disks.cmd_sr_show, "show SRs in detail, with their PBDs and disks")
    ss.add_argument("sr", nargs="+", metavar="SR",
                    help="name (a local SR: 'Local storage on HOST'), UUID or unique UUID "
                    "prefix")
    storage.add_probe(srs, _leaf)
    ops.add_verbs(srs, "sr", _leaf)
    nw = sub.add_parser("network", help="networks")
    nws = nw.add_subparsers(dest="network_command", metavar="ACTION", required=True)
    _leaf(nws, "list", networks.cmd_network_list,
          "list networks: NICs, VLANs, bonds, internal; MTU and VMs attached")
    ops.add_verbs(nws, "network", _leaf)
    for noun, what in (("vlan", "VLANs (tagged networks on a NIC or a bond)"),
                       ("bond", "bonds (NICs joined into one link)")):
        g = sub.add_parser(noun, help=what)
        ops.add_verbs(g.add_subparsers(dest=f"{noun}_command", metavar="ACTION",
                                       required=True), noun, _leaf)
    vd = sub.add_parser("vdi", help="virtual disks")
    vds = vd.add_subparsers(dest="vdi_command", metavar="ACTION", required=True)
    vl = _leaf(vds, "list", disks.cmd_vdi_list, "list disks")
    vl.add_argument("--sr", metavar="SR", help="only the disks of this SR")
    vl.add_argument("--orphans", action="store_true", help="only the disks no VM uses")
    vsh = _leaf(vds, "show", disks.cmd_vdi_show, "show disks in detail, with who uses them")
    vsh.add_argument("vdi", nargs="+", metavar="VDI", help="name, UUID or unique UUID prefix")
    ops.add_verbs(vds, "vdi", _leaf)
    comp = sub.add_parser(
        "completion", help="print a shell completion script",
        description="Print a completion script: source <(xsctl completion bash), the same "
        "for zsh, or xsctl completion fish | source. VM, host and SR names come from "
        "the names the CLI and the app remember for the default profile; completing "
        "never connects.")
    comp.add_argument("shell", choices=["bash", "zsh", "fish"])
    comp.set_defaults(func=_cmd_completion)

    profiling.add_profiling(sub, _leaf)

    t = sub.add_parser("task", help="tasks")
    ts = t.add_subparsers(dest="task_command", metavar="ACTION", required=True)
    tl = _leaf(ts, "list", pool.cmd_task_list, "list pending tasks")
    tl.add_argument("--all", action="store_true", help="include finished tasks")
    ops.add_verbs(ts, "task", _leaf)

    al = sub.add_parser("alert", help="alerts (xapi messages): list, read, dismiss")
    als = al.add_subparsers(dest="alert_command", metavar="ACTION", required=True)
    all_ = _leaf(als, "list", alerts.cmd_alert_list, "list alerts, newest first")
    ops.add_selectors(all_, MESSAGE)
    ash = _leaf(als, "show", alerts.cmd_alert_show, "read alerts whole, with their text")
    ash.add_argument("alert", nargs="+", metavar="ALERT", help=MESSAGE.spec_help)
    ops.add_verbs(als, "alert", _leaf)

    vb = sub.add_parser("vbd", help="a VM's block devices (the words of xe vbd-*)")
    vbs = vb.add_subparsers(dest="vbd_command", metavar="ACTION", required=True)
    ops.add_verbs(vbs, "vbd", _leaf)

    vf = sub.add_parser("vif", help="a VM's network interfaces (the words of xe vif-*)")
    vfs = vf.add_subparsers(dest="vif_command", metavar="ACTION", required=True)
    vfl = _leaf(vfs, "list", vifs.cmd_vif_list,
                "list VIFs: network, MAC, plugged, locking, the guest's IPs, static IP")
    vfl.add_argument("vm", nargs="?", metavar="VM", help="only this VM's VIFs")
    ops.add_verbs(vfs, "vif", _leaf)

    # --- commands of their own, in xm's and xe's words (block-attach, cd-insert, ...)
    ops.add_verbs(sub, "", _leaf)
    console.add_console(sub, _leaf)
    bl = _leaf(sub, "block-list", block.cmd_block_list,
               "list a VM's block devices: position, disk, SR, mode, plugged")
    bl.add_argument("vm", metavar="VM", help="name, UUID or unique UUID prefix (or dom0, "
                    "dom0:HOST)")
    return p


# ---------------------------------------------------------------- commands defined here


def _cmd_sim(args: argparse.Namespace) -> int:
    from xsctl.sim.command import serve

    return serve(
        host=args.host, port=args.port, unix=args.unix, vms=args.vms, seed=args.seed,
        as_json=args.json, password=args.password, plain=args.plain,
        http_port=args.http_port, cert=args.cert, key=args.key, op_time=args.op_time,
        latency=args.latency, auth_fail_delay=args.auth_fail_delay,
        jsonrpc=not args.no_jsonrpc,
    )


def _cmd_sim_control(args: argparse.Namespace) -> int:
    from xsctl.sim.command import control
    from xsctl.sim.control import ControlError, from_cli

    try:
        result = control(args.control_url, args.token, args.action,
                         from_cli(args.action, args.value))
    except ControlError as e:
        sys.stderr.write(f"xsctl: {e}\n")
        return e.exit_code
    print(json.dumps(result))
    return 0


def _cmd_completion(args: argparse.Namespace) -> int:
    from xsctl.commands.completion import SCRIPTS

    print(SCRIPTS[args.shell](build_parser()))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from xsctl.commands.app import run_demo

    return run_demo(vms=args.vms, seed=args.seed, view=args.view)


def _cmd_app(args: argparse.Namespace) -> int:
    from xsctl.commands.app import run_app

    return run_app(args)


# ---------------------------------------------------------------- main


class _PrivateLog(logging.FileHandler):
    """The log, created 0600 (it names hosts, users and VMs), never first 0644."""

    def _open(self) -> Any:
        from xsctl.files import open_private

        fd = open_private(Path(self.baseFilename), os.O_WRONLY | os.O_APPEND)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def _setup_logging(verbose: bool) -> None:
    from xsctl.config import config_dir, log_file
    from xsctl.files import private_dir

    root = logging.getLogger("xsctl")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    try:
        if config_dir().is_dir():
            private_dir(config_dir())  # one made by an older version may be 0755
        path = log_file()
        private_dir(path.parent)
        fh = _PrivateLog(path, encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        fh.setLevel(logging.INFO)
        root.addHandler(fh)
    except OSError:
        pass
    if verbose:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root.addHandler(sh)


def _say(text: str) -> None:
    from xsctl.commands.output import warn

    # stderr may be a closed terminal (SIGHUP) or a pipe nobody reads any more
    with contextlib.suppress(OSError, ValueError):
        warn(text)
        sys.stderr.flush()


def _stdout_gone() -> None:
    """The reader of our output went away (``xsctl vm list | head``): say nothing,
    and send what is still buffered nowhere, or the interpreter complains at exit."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:2] == ["completion", "names"]:
        # asked by the completion scripts at every tab: answered before the parser
        # (and everything it imports) is built
        from xsctl.commands.completion import print_names

        return print_names(words[2:])

    from xsctl.xapi import interrupts
    from xsctl.xapi.errors import XsctlError
    from xsctl.xapi.session import closed_on_exit

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = getattr(args, "func", _cmd_app)
    if args.command not in ("sim", "sim-control"):
        _setup_logging(bool(getattr(args, "verbose", False)))
        if argv is None:
            interrupts.install()
    try:
        with closed_on_exit():  # whatever happens, nothing stays logged in
            code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
        return code
    except XsctlError as e:
        _say(str(e))
        return e.exit_code
    except KeyboardInterrupt as e:
        _say("interrupted")
        return interrupts.exit_code(e)
    except BrokenPipeError:
        # What git and the coreutils do when the reader leaves (killed by SIGPIPE:
        # silent, status 141 under `set -o pipefail`), but after the logout: dying
        # by the signal itself would leave the session behind.
        _stdout_gone()
        return 128 + signal.SIGPIPE
    finally:
        for h in list(logging.getLogger("xsctl").handlers):
            logging.getLogger("xsctl").removeHandler(h)
            h.close()
