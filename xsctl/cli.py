"""Command-line parsing: builds what a command needs and hands over."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xsctl", description="Manage XenServer and XCP-ng pools.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("sim", help="serve a simulated xapi pool until Ctrl-C")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
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

    c = sub.add_parser("sim-control", help="inject a fault into a running simulator")
    c.add_argument("url", help="the simulator's control URL (printed by xsctl sim)")
    c.add_argument("token", help="the control token (printed by xsctl sim)")
    c.add_argument("action", choices=["info", "sessions", "latency", "drop", "slow_events",
                                      "restart", "master"])
    c.add_argument("value", nargs="?", help="seconds, count or host, by action")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "sim":
        from xsctl.sim.command import serve

        return serve(
            host=args.host, port=args.port, unix=args.unix, vms=args.vms, seed=args.seed,
            as_json=args.json, password=args.password, plain=args.plain,
            http_port=args.http_port, cert=args.cert, key=args.key, op_time=args.op_time,
            latency=args.latency, auth_fail_delay=args.auth_fail_delay,
        )
    if args.command == "sim-control":
        from xsctl.sim.command import control

        key = {"latency": "seconds", "slow_events": "seconds", "drop": "count",
               "master": "host", "restart": "downtime"}.get(args.action)
        cargs = {key: args.value} if key and args.value is not None else {}
        print(json.dumps(control(args.url, args.token, args.action, cargs)))
        return 0
    parser.print_help(sys.stderr)
    return 2
