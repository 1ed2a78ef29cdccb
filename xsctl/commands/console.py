"""``xsctl console VM|HOST [--vnc [--port N]]``: a VM's console, or a host's (its
control domain's), through xapi's ``/console``.

A text console gets the terminal raw, as ``xe console`` does; Ctrl-] ends it (said
before connecting) and the terminal is put back as it was. ``--vnc`` opens a local
port on 127.0.0.1, tunnelled to the graphical console, prints the address and starts
a VNC viewer: the one the profile names (``vnc_viewer = "..."``) or
``$XSCTL_VNC_VIEWER`` says, else the first known one on PATH; the tunnel ends with
the viewer, or with Ctrl-C when none was started."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from typing import Any

from xsctl.commands.connect import open_client, target_from_args
from xsctl.commands.output import print_json, say, warn
from xsctl.config import vnc_viewer
from xsctl.xapi import console
from xsctl.xapi.client import Client
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.ops.base import Console, Plan
from xsctl.xapi.ops.console import console_plan, control_domain
from xsctl.xapi.ops.host import HOST
from xsctl.xapi.ops.resolve import resolve_host, resolve_vm
from xsctl.xapi.ops.vm import VM
from xsctl.xapi.text import printable


def add_console(sub: Any, leaf: Any) -> None:
    p = leaf(sub, "console", cmd_console,
             "open a VM's console, or a host's (its control domain's): the text one on "
             f"this terminal ({console.ESCAPE_NAME} ends it), or with --vnc the graphical "
             "one for a VNC viewer (xe console)", dry_run=True)
    p.add_argument("target", metavar="VM|HOST",
                   help="name, UUID or unique UUID prefix of a VM, or a host's name or address")
    p.add_argument("--vnc", action="store_true",
                   help="the graphical console: a port on 127.0.0.1 tunnelled to it, and "
                   "the VNC viewer started on it")
    p.add_argument("--port", type=int, metavar="N",
                   help="with --vnc: the local port (default: a free one)")


def _plan(client: Client, spec: str, protocol: str, port: int | None) -> Plan:
    cache = client.cache
    op = "vnc" if protocol == "rfb" else "console"
    try:
        vm = resolve_vm(cache, spec)
    except UsageError as vm_error:
        try:
            host = resolve_host(cache, spec)
        except UsageError:
            raise UsageError(f"{vm_error} (nor is it a host)") from vm_error
        obj = HOST.load(cache, host)
        dom0 = control_domain(cache, host)
        if obj is None or dom0 is None:
            raise UsageError(f"no host {spec!r}") from vm_error
        return console_plan(cache, dom0, HOST.name(obj), protocol, host, f"host.{op}", port,
                            of_host=True)
    obj = VM.load(cache, vm)
    if obj is None:
        raise UsageError(f"no VM {spec!r}")
    return console_plan(cache, vm, VM.name(obj), protocol, vm, f"vm.{op}", port)


def cmd_console(args: argparse.Namespace) -> int:
    if args.port is not None and not args.vnc:
        raise UsageError("--port is for --vnc (the graphical console's local port)")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise UsageError(f"--port: {args.port} is not a TCP port (1 to 65535)")
    protocol = "rfb" if args.vnc else "vt100"
    if protocol == "vt100" and not args.dry_run:
        _need_terminal(args)
    classes = tuple(dict.fromkeys(VM.classes + HOST.classes))
    with open_client(args, classes) as client:
        plan = _plan(client, args.target, protocol, args.port)
        if args.dry_run:
            if args.json:
                print_json([plan.as_dict()])
            else:
                say(plan.describe() + "\n")
            return 0
        return hand_over(args, client, plan)


def _need_terminal(args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        raise UsageError("a text console is a terminal session: --json goes with --vnc "
                         "or --dry-run")
    if not sys.stdin.isatty():
        raise UsageError("a text console needs a terminal: standard input is not one "
                         "(--vnc gives the graphical console to a viewer instead)")


def hand_over(args: argparse.Namespace, client: Client, plan: Plan) -> int:
    """Open the plan's console: the terminal for a text one, a tunnel for RFB."""
    step = plan.calls[0]
    assert isinstance(step, Console)
    refusal = client.refused(plan)
    if refusal is not None:
        raise refusal
    info = console.ConsoleInfo(step.console, step.protocol, step.vm,
                               plan.names.get(step.vm, ""), "", step.address)
    name = plan.names.get(plan.targets[0], "")
    if step.protocol == "vt100":
        _need_terminal(args)
        sys.stderr.write(f"Connecting to the console of {printable(name)}. "
                         f"Press {console.ESCAPE_NAME} to end it.\r\n")
        sys.stderr.flush()
        stream = console.open_stream(client.conn, info)
        try:
            why = console.attach(stream)
        finally:
            stream.close()
        sys.stderr.write({"escape": "\r\nConsole closed.\r\n",
                          "closed": "\r\nThe console was closed by the host.\r\n",
                          "eof": "\r\nConsole closed (end of input).\r\n",
                          "signal": "\r\nConsole closed (signal).\r\n"}[why])
        return 0
    return _tunnel(args, client, info, name, step.port)


def _viewer_setting(args: argparse.Namespace) -> str | None:
    try:
        return vnc_viewer(target_from_args(args).profile)
    except XsctlError:
        return None


def _tunnel(args: argparse.Namespace, client: Client, info: console.ConsoleInfo, name: str,
            port: int | None) -> int:
    failures: list[XsctlError] = []

    def failed(e: XsctlError) -> None:
        failures.append(e)
        warn(f"a VNC connection failed: {e}")

    tunnel = console.Tunnel(lambda: console.open_stream(client.conn, info), port or 0,
                            on_error=failed)
    with tunnel:
        command = console.viewer_command(tunnel.host, tunnel.port, _viewer_setting(args))
        if args.json:
            print_json({"vm": name, "host": tunnel.host, "port": tunnel.port,
                        "viewer": command})
        else:
            say(f"Graphical console of {name}: {tunnel.address} (VNC; 127.0.0.1 only)")
        sys.stdout.flush()
        if command is None:
            if not args.json:
                say(f"No VNC viewer found: connect one to {tunnel.host}::{tunnel.port} "
                    f"(vncviewer's way of writing it), or set {console.VIEWER_ENV}. "
                    "Ctrl-C ends the tunnel.")
            sys.stdout.flush()
            _wait_for_signal()
            return 0
        try:
            viewer = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        except OSError as e:
            raise UsageError(f"cannot start the VNC viewer {command[0]!r}: "
                             f"{e.strerror or e}") from e
        if not args.json:
            say(f"Started {printable(' '.join(command))}; the tunnel ends with it "
                "(or Ctrl-C).")
        sys.stdout.flush()
        try:
            code = viewer.wait()
        except KeyboardInterrupt:
            viewer.terminate()
            viewer.wait(timeout=10)
            raise
        if code != 0 and tunnel.connections == 0:
            warn(f"the VNC viewer ended with status {code} before it connected")
            return 1
    return 0


def _wait_for_signal() -> None:
    """Until Ctrl-C (or SIGTERM, SIGHUP): the tunnel serves meanwhile. A SIGTERM ends
    it as cleanly as Ctrl-C does."""
    done = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        done.wait()
        return

    def stop(signum: int, frame: Any) -> None:
        done.set()

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
