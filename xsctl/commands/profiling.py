"""``xsctl profiling tools|xentop|perf|oprofile|xenpm|run HOST ...``: the host tools
of the Profiling view, for scripts. Each runs in HOST's dom0 (here in dom0, else
through your ssh; see xsctl/profiling/hosts.py), prints its tables (``--raw``: what
the tools printed; ``--json``: both), and exits 1 when the tool failed."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

from xsctl.commands.connect import interactive, open_client
from xsctl.commands.output import print_json, print_table, say, warn
from xsctl.profiling import oprofile, tools
from xsctl.profiling.hosts import shell_for
from xsctl.profiling.pool import perf_target, vms_on_host
from xsctl.profiling.sessions import (
    Outcome,
    oprofile_session,
    perf_session,
    run_command,
    xenpm_session,
    xentop_snapshot,
)
from xsctl.profiling.shell import Shell
from xsctl.profiling.tables import Cell, Parsed, Table
from xsctl.xapi.client import Client
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import Host
from xsctl.xapi.ops.resolve import resolve_host, resolve_vm
from xsctl.xapi.text import printable

CLASSES = ["pool", "host", "host_metrics", "VM", "VM_metrics", "VBD", "VDI"]
SORTS = {"cpu": "cpu_pct", "memory": "mem_k", "net": "net", "disk": "disk", "name": "name"}


def add_profiling(sub: Any, leaf: Callable[..., argparse.ArgumentParser]) -> None:
    pr = sub.add_parser(
        "profiling", help="host tools in a host's dom0: xentop, perf, OProfile, xenpm",
        description="Run profiling tools in HOST's dom0: on this machine when xsctl runs "
        "in that dom0, else through your OpenSSH client (your config, keys and agent; "
        "never a password prompt). The profile's ssh names the destination (default "
        "root@ the host's address); XSCTL_SSH replaces the client, e.g. "
        "'ssh -F ~/.ssh/pool.conf'.")
    prs = pr.add_subparsers(dest="profiling_command", metavar="TOOL", required=True)

    def host_leaf(name: str, fn: Callable[[argparse.Namespace], int], help: str
                  ) -> argparse.ArgumentParser:
        p = leaf(prs, name, fn, help)
        p.add_argument("host", metavar="HOST", help="name, address, UUID or UUID prefix")
        p.add_argument("--raw", action="store_true",
                       help="print what the tools printed instead of tables (with --json: "
                       "add it)")
        return p

    host_leaf("tools", cmd_tools, "which of the tools HOST has (command -v)")
    x = host_leaf("xentop", cmd_xentop,
                  "every domain on HOST with its VM (xl list's IDs, xapi's domid)")
    x.add_argument("--sort", choices=sorted(SORTS), default="cpu",
                   help="sort by CPU (default), memory, network or disk use, or name")
    p = host_leaf("perf", cmd_perf, "record HOST, or a VM's qemu or tapdisks, for some "
                  "seconds; then its symbols")
    p.add_argument("--seconds", type=int, default=10, metavar="N", help="how long (10)")
    p.add_argument("--vm", metavar="VM", help="only this VM's qemu (or --tapdisk)")
    p.add_argument("--tapdisk", action="store_true",
                   help="with --vm: its tapdisks instead of its qemu")
    p.add_argument("-g", "--call-graph", action="store_true", help="record call graphs")
    o = host_leaf("oprofile", cmd_oprofile,
                  "OProfile: status, an operf session, or Xenoprof with passive or active "
                  "domains")
    o.add_argument("--mode", choices=oprofile.MODES, default="status",
                   help="status (default); operf: dom0 alone; passive or active: Xen "
                   "domains (opcontrol)")
    o.add_argument("--seconds", type=int, default=10, metavar="N", help="how long (10)")
    o.add_argument("--domain", action="append", default=[], metavar="VM",
                   help="a guest to profile (repeat): a VM or a domain ID")
    o.add_argument("--image", action="append", default=[], metavar="PATH",
                   help="passive: each domain's kernel (vmlinux), in --domain order")
    o.add_argument("--xen", metavar="PATH", default="",
                   help="the hypervisor's symbols in dom0 (xen-syms, uncompressed)")
    o.add_argument("--vmlinux", metavar="PATH", default="",
                   help="dom0's kernel symbols (default: none, --no-vmlinux)")
    m = host_leaf("xenpm", cmd_xenpm, "CPU frequency (P) and idle (C) states")
    m.add_argument("--states", choices=["cpufreq", "cpuidle", "both"], default="both")
    r = host_leaf("run", cmd_run, "run a command in HOST's dom0, as typed (no shell: "
                  "sh -c '...' for a pipeline); shown before it runs")
    r.add_argument("words", nargs=argparse.REMAINDER, metavar="[OPTIONS] -- COMMAND",
                   help="the command and its arguments, after -- (one word: a command line, "
                   "split as a shell splits it)")
    r.add_argument("--max-time", type=float, default=60.0, metavar="SECONDS",
                   help="stop it after this long (60)")
    r.add_argument("--dry-run", action="store_true",
                   help="show the line that would run, and run nothing")
    # argparse leaves everything after HOST to the command: the options written there,
    # before --, are read again with this parser
    r.set_defaults(run_parser=r)


# ---------------------------------------------------------------- plumbing


def _host(client: Client, spec: str) -> Host:
    host = Host.get(client.cache, resolve_host(client.cache, spec))
    if host is None:
        raise UsageError(f"no host {spec!r}")
    return host


def _shell(client: Client, host: Host) -> Shell:
    return shell_for(client.target, host)


def _progress(text: str) -> None:
    if sys.stderr.isatty():
        warn(text)


def _cell(v: Cell) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.0f}"
    return str(v)


def _print_table(t: Table) -> None:
    say(f"{t.title}:")
    print_table([c.label for c in t.columns], [[_cell(v) for v in r] for r in t.rows])


def _report(args: argparse.Namespace, out: Outcome,
            show: Callable[[Parsed], None] | None = None) -> int:
    if args.json:
        print_json(out.as_json(raw=args.raw))
    elif args.raw:
        sys.stdout.write(out.raw())
    elif not out.parsed and out.results:
        # a command no parser reads: what it printed, where it printed it
        for r in out.results:
            sys.stdout.write(printable(r.stdout, multiline=True))
            if r.stderr:
                sys.stderr.write(printable(r.stderr, multiline=True))
    else:
        for p in out.parsed:
            if p.error:
                if p.error != out.error:
                    warn(f"{p.tool}: {p.error} (--raw shows its output)")
                continue
            (show or _show)(p)
            if p.problems:
                warn(f"{p.tool}: {len(p.problems)} line(s) not understood (--raw shows "
                     f"them): {p.problems[0]}")
        for note in out.notes:
            warn(note)
    if out.cancelled:
        warn(f"{out.title}: stopped")
        return 1
    if out.error:
        warn(out.error)
        return 1
    return 0


def _show(p: Parsed) -> None:
    for t in p.tables:
        _print_table(t)


# ---------------------------------------------------------------- the tools


def cmd_tools(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        host = _host(client, args.host)
        shell = _shell(client, host)
        probe = tools.probe(shell)
        rows: list[dict[str, Any]] = [
            {"tool": t.id, "available": probe.has(t.id),
             "needs": [*t.needs, *(["|".join(t.any_of)] if t.any_of else [])],
             "found": sorted(p for p in (*t.needs, *t.any_of, *t.helps) if p in probe.found),
             "help": t.help} for t in tools.TOOLS]
        if args.json:
            print_json({"host": host.name_label, "where": shell.where,
                        "found": sorted(probe.found), "tools": rows})
            return 0
        say(f"{host.name_label}, {shell.where}:")
        print_table(["tool", "available", "found", "what"],
                    [[r["tool"], "yes" if r["available"] else "no",
                      " ".join(r["found"]) or "-", r["help"]] for r in rows])
        return 0


def cmd_xentop(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        host = _host(client, args.host)
        shell = _shell(client, host)
        by_id, by_name = vms_on_host(client.cache, host.ref)
        has_xl = "xl" in tools.probe(shell).found
        out = xentop_snapshot(shell, by_id, by_name, has_xl=has_xl, progress=_progress)
        return _report(args, out, lambda p: _show_xentop(p, args.sort))


def _show_xentop(p: Parsed, sort: str) -> None:
    t = p.tables[0]
    recs = t.records()

    def num(r: dict[str, Cell], *keys: str) -> float:
        return float(sum(v for k in keys if isinstance(v := r.get(k), (int, float))))

    key = SORTS[sort]
    if key == "name":
        recs.sort(key=lambda r: str(r.get("vm") or r.get("name") or "").lower())
    elif key == "net":
        recs.sort(key=lambda r: -num(r, "nettx_k", "netrx_k"))
    elif key == "disk":
        recs.sort(key=lambda r: -num(r, "vbd_rd", "vbd_wr"))
    else:
        recs.sort(key=lambda r: -num(r, key))
    print_table(
        ["vm", "id", "state", "cpu%", "cpu(s)", "mem(k)", "vcpus", "net tx(k)", "net rx(k)",
         "disk rd", "disk wr"],
        [[r.get("name") if r.get("control") else r.get("vm") or
          f"{r.get('name')} ({r.get('join')})", _cell(r.get("domid")),
          _cell(r.get("state")), _cell(r.get("cpu_pct")), _cell(r.get("cpu_sec")),
          _cell(r.get("mem_k")), _cell(r.get("vcpus")), _cell(r.get("nettx_k")),
          _cell(r.get("netrx_k")), _cell(r.get("vbd_rd")), _cell(r.get("vbd_wr"))]
         for r in recs])


def cmd_perf(args: argparse.Namespace) -> int:
    if args.tapdisk and not args.vm:
        raise UsageError("--tapdisk needs --vm VM")
    with open_client(args, CLASSES) as client:
        host = _host(client, args.host)
        vm = resolve_vm(client.cache, args.vm) if args.vm else None
        target = perf_target(client.cache, host.ref, vm, "tapdisk" if args.tapdisk else
                             "qemu" if vm else "host")
        out = perf_session(_shell(client, host), target, args.seconds,
                           call_graph=args.call_graph, progress=_progress)
        return _report(args, out)


def _domid(client: Client, host: Host, spec: str) -> int:
    if spec.isdigit():
        return int(spec)
    ref = resolve_vm(client.cache, spec)
    r = client.cache.get("vm", ref) or {}
    if r.get("resident_on") != host.ref or r.get("power_state") not in ("Running", "Paused"):
        raise UsageError(f"{spec!r} has no domain on {host.name_label}")
    return int(r.get("domid", -1))


def _guests_ready(steps: str) -> bool:
    if not interactive():
        raise UsageError("active domains need you in the guests between dom0's two "
                         "starts: run this at a terminal, or use --mode passive")
    warn(steps)
    answer = input("Started OProfile in every active domain? Go on? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def cmd_oprofile(args: argparse.Namespace) -> int:
    with open_client(args, CLASSES) as client:
        host = _host(client, args.host)
        domains = tuple(_domid(client, host, d) for d in args.domain)
        session = oprofile.Session(args.mode, args.seconds, domains, args.xen, args.vmlinux,
                                   tuple(args.image))
        out = oprofile_session(_shell(client, host), session, progress=_progress,
                               guests_ready=_guests_ready)
        return _report(args, out)


def cmd_xenpm(args: argparse.Namespace) -> int:
    what = ("cpufreq", "cpuidle") if args.states == "both" else (args.states,)
    with open_client(args, CLASSES) as client:
        host = _host(client, args.host)
        return _report(args, xenpm_session(_shell(client, host), what, progress=_progress))


def cmd_run(args: argparse.Namespace) -> int:
    words = list(args.words)
    if "--" in words:
        cut = words.index("--")
        if cut:
            args.run_parser.parse_args([*words[:cut], args.host], namespace=args)
        words = words[cut + 1:]
    elif words and words[0].startswith("-"):
        raise UsageError(f"{words[0]}: options go before --, the command after it: xsctl "
                         "profiling run HOST [OPTIONS] -- COMMAND [ARGS...]")
    if not words:
        raise UsageError("no command: xsctl profiling run HOST -- COMMAND [ARGS...]")
    # one word is a command line, split as a shell splits it; several are the words
    cmd = (tools.freeform(words[0], args.max_time) if len(words) == 1
           else tools.freeform(shlex.join(words), args.max_time))
    with open_client(args, CLASSES) as client:
        host = _host(client, args.host)
        shell = _shell(client, host)
        # shown verbatim before it runs: the line this machine executes
        warn(f"{'would run' if args.dry_run else 'running'} {shell.where}: {shell.shown(cmd)}")
        if args.dry_run:
            return 0
        return _report(args, run_command(shell, cmd, progress=_progress))
