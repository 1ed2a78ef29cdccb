"""``xsctl sim``: serve a simulated pool until Ctrl-C; ``xsctl sim-control``: faults."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from xsctl.sim.control import ControlError, Unreachable, check
from xsctl.sim.simulator import Simulator


def serve(
    *,
    host: str,
    port: int,
    unix: str | None,
    vms: int | None,
    seed: int,
    as_json: bool,
    password: str | None,
    plain: bool,
    http_port: int | None,
    cert: str | None,
    key: str | None,
    op_time: float,
    latency: float,
    auth_fail_delay: float,
    jsonrpc: bool = True,
) -> int:
    sim = Simulator(
        seed=seed, vms=vms, host=host, port=port, unix_path=unix, password=password,
        tls=not plain, http_port=http_port, cert_file=cert, key_file=key, op_time=op_time,
        auth_fail_delay=auth_fail_delay, jsonrpc=jsonrpc,
    )
    sim.faults.latency = latency
    sim.start()
    info = sim.info()
    tools_dir = tempfile.mkdtemp(prefix="xsctl-sim-dom0-")
    host_tools = sim.host_tools(tools_dir)
    if as_json:
        print(json.dumps({k: info[k] for k in ("url", "user", "password", "fingerprint", "unix")}
                         | {"control": info["control"], "control_token": info["control_token"],
                            "host_tools": host_tools}),
              flush=True)
    else:
        print(f"xapi simulator serving {len(sim.store.all('VM'))} VM records "
              f"({sim.store.all('pool')[sim.store.all('pool').__iter__().__next__()]['name_label']})")
        print(f"  url:          {info['url']}")
        print(f"  user:         {info['user']}")
        print(f"  password:     {info['password']}")
        if info["fingerprint"]:
            print(f"  fingerprint:  {info['fingerprint']}")
        if unix:
            print(f"  unix socket:  {unix}")
        for h in info["hosts"]:
            role = "master" if h["master"] else "member"
            print(f"  host {h['name_label']} ({role}): {h['url'] or h['address'] + ' (no listener)'}")
        print(f"  control:      {info['control']} (token {info['control_token']})")
        print(f"  host tools:   {host_tools} (a profile's host_tools: the hosts' dom0)")
        print("Connect with:")
        print(f"  xsctl --url {info['url']} --user {info['user']} "
              f"--accept-fingerprint {info['fingerprint']} vm list")
        print("Ctrl-C stops.", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        shutil.rmtree(tools_dir, ignore_errors=True)
    if not as_json:
        print("simulator stopped", file=sys.stderr)
    return 0


def control(url: str, token: str, action: str, args: dict[str, Any]) -> Any:
    """Send one control request to a running simulator's /sim/control and return its
    result. A wrong request raises ControlError (the CLI's exit 2), no answer
    Unreachable (exit 3); the text is one line that never repeats the token."""
    args = check(action, args)
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises on a port that is no number or out of range
    except ValueError:
        ok = False
    if not ok:
        raise ControlError(f"{url!r} is not a control URL (https://HOST:PORT/sim/control, "
                           "as xsctl sim prints it)")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the simulator's own control channel, on loopback
    body = json.dumps({"token": token, "action": action, "args": args}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            reply = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        if e.code == 403:
            raise ControlError("the simulator refused the control token") from None
        if e.code == 400:
            raise ControlError(_error_text(e) or f"the simulator refused {action}") from None
        raise Unreachable(f"{url} answered HTTP {e.code}: is it a simulator's control "
                          "URL?") from None
    except urllib.error.URLError as e:
        raise Unreachable(f"cannot reach the simulator at {url}: {_reason(e.reason)}") from None
    except (OSError, http.client.HTTPException) as e:
        raise Unreachable(f"cannot reach the simulator at {url}: {_reason(e)}") from None
    except ValueError:
        raise Unreachable(f"{url} did not answer as a simulator does") from None
    if not isinstance(reply, dict) or "result" not in reply:
        raise Unreachable(f"{url} did not answer as a simulator does")
    return reply["result"]


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        text = json.loads(e.read()).get("error", "")
    except (ValueError, AttributeError, OSError):
        return ""
    return " ".join(str(text).split())


def _reason(reason: object) -> str:
    if isinstance(reason, socket.gaierror):
        return "no such host"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    text = str(getattr(reason, "strerror", None) or reason)
    return " ".join(text.split()) or type(reason).__name__
