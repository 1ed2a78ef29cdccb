"""``xsctl sim``: serve a simulated pool until Ctrl-C; ``xsctl sim-control``: faults."""

from __future__ import annotations

import json
import signal
import ssl
import sys
import threading
import urllib.request
from typing import Any

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
    if as_json:
        print(json.dumps({k: info[k] for k in ("url", "user", "password", "fingerprint", "unix")}
                         | {"control": info["control"], "control_token": info["control_token"]}),
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
    if not as_json:
        print("simulator stopped", file=sys.stderr)
    return 0


def control(url: str, token: str, action: str, args: dict[str, Any]) -> Any:
    """Send one fault-injection request to a running simulator's /sim/control."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the simulator's own control channel, on loopback
    body = json.dumps({"token": token, "action": action, "args": args}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        return json.loads(resp.read())["result"]
