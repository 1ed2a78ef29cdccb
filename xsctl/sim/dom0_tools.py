"""The simulated dom0 tools themselves (see dom0.py). Standard library only: each
run is a new process, started by a script that loads this file alone, not the
simulator's package.

Each prints what the real tool prints, in its format (the sources read are named at
each), from the host's domains as the simulator describes them. What they do not
simulate they refuse in one line on stderr, with the real tool's exit status.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

Snapshot = dict[str, Any]


class Stop(Exception):
    """SIGTERM or SIGINT: a tool ends as the real one does on it."""


def _on_signal(signum: int, frame: Any) -> None:
    raise Stop()


def fetch(config: dict[str, str], offset: float = 0.0) -> Snapshot:
    body = json.dumps({"token": config["token"], "action": "dom0",
                       "args": {"host": f"{config['host']}@{offset:.3f}"}}).encode()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the simulator's own control channel, on loopback
    req = urllib.request.Request(config["control"], body,
                                 {"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        reply = json.loads(resp.read())
    result: Snapshot = reply["result"]
    return result


def say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def err(text: str) -> None:
    sys.stderr.write(text if text.endswith("\n") else text + "\n")
    sys.stderr.flush()


def _sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.2))


# ---------------------------------------------------------------- xentop (xentop.c)


def _digits(n: int) -> int:
    return len(str(n + 1))


def _xentop_state(d: dict[str, Any]) -> str:
    if d["paused"]:
        return "----p-"
    if d["control"] or d["cpu_pct"] > 30.0 * d["vcpus"]:
        return "-----r"
    return "--b---"


def xentop_block(snap: Snapshot, first: bool, full: bool, repeat: bool) -> str:
    host = snap["host"]
    total = host["memory_total"] or 1
    rows = []
    for d in snap["domains"]:
        name = "Domain-0" if d["control"] else d["name"]
        maxmem = d["maxmem"]
        rows.append({
            "name": name, "state": _xentop_state(d), "cpu_s": int(d["cpu_s"]),
            "cpu_pct": 0.0 if first else d["cpu_pct"], "mem_k": d["memory"] // 1024,
            "mem_pct": d["memory"] / total * 100, "maxmem_k": None if maxmem is None else maxmem // 1024,
            "max_pct": None if maxmem is None else maxmem / total * 100, "vcpus": d["vcpus"],
            "nets": len(d["vifs"]), "tx": int(d["net_tx_k"]), "rx": int(d["net_rx_k"]),
            "vbds": len(d["vbds"]), "rd": int(d["vbd_rd"]), "wr": int(d["vbd_wr"]),
            "rsect": int(d["vbd_rd"]) * 8, "wsect": int(d["vbd_wr"]) * 8,
        })
    rows.sort(key=lambda r: r["name"].casefold())  # compare_name: strcasecmp
    w = {"name": 10, "tx": 8, "rx": 8, "rd": 8, "wr": 8, "rsect": 10, "wsect": 10}
    for r in rows:
        if full:
            w["name"] = max(w["name"], len(r["name"]))
        for k in ("tx", "rx", "rd", "wr", "rsect", "wsect"):
            w[k] = max(w[k], _digits(r[k]))
    head = [f"{'NAME':>{w['name']}}", f"{'STATE':>6}", f"{'CPU(sec)':>10}", f"{'CPU(%)':>6}",
            f"{'MEM(k)':>10}", f"{'MEM(%)':>6}", f"{'MAXMEM(k)':>10}", f"{'MAXMEM(%)':>9}",
            f"{'VCPUS':>5}", f"{'NETS':>4}", f"{'NETTX(k)':>{w['tx']}}",
            f"{'NETRX(k)':>{w['rx']}}", f"{'VBDS':>4}", f"{'VBD_OO':>8}",
            f"{'VBD_RD':>{w['rd']}}", f"{'VBD_WR':>{w['wr']}}",
            f"{'VBD_RSECT':>{w['rsect']}}", f"{'VBD_WSECT':>{w['wsect']}}", f"{'SSID':>4}"]
    header = " ".join(head) + "\n"
    out = []
    for i, r in enumerate(rows):
        if i == 0 or repeat:
            out.append(header)
        name = f"{r['name']:>{w['name']}}" if full else f"{r['name'][:10]:>10}"
        maxk = f"{'no limit':>10}" if r["maxmem_k"] is None else f"{r['maxmem_k']:>10}"
        maxp = f"{'n/a':>9}" if r["max_pct"] is None else f"{r['max_pct']:>9.1f}"
        out.append(" ".join([
            name, r["state"], f"{r['cpu_s']:>10}", f"{r['cpu_pct']:>6.1f}",
            f"{r['mem_k']:>10}", f"{r['mem_pct']:>6.1f}", maxk, maxp, f"{r['vcpus']:>5}",
            f"{r['nets']:>4}", f"{r['tx']:>{w['tx']}}", f"{r['rx']:>{w['rx']}}",
            f"{r['vbds']:>4}", f"{0:>8}", f"{r['rd']:>{w['rd']}}", f"{r['wr']:>{w['wr']}}",
            f"{r['rsect']:>{w['rsect']}}", f"{r['wsect']:>{w['wsect']}}", f"{0:>4}"]) + "\n")
    return "".join(out)


def xentop(argv: list[str], config: dict[str, str]) -> int:
    batch = full = repeat = False
    delay, iterations = 3, 0
    args = list(argv)
    while args:
        a = args.pop(0)
        if a in ("-b", "--batch"):
            batch = True
        elif a in ("-f", "--full-name"):
            full = True
        elif a in ("-r", "--repeat-header"):
            repeat = True
        elif a in ("-n", "--networks", "-x", "--vbds", "-v", "--vcpus"):
            pass  # sub-lines are not simulated
        elif a in ("-d", "--delay", "-i", "--iterations") and args:
            v = args.pop(0)
            n = int(v) if v.isdigit() else 0  # atoi
            if a in ("-d", "--delay"):
                delay = n
            else:
                iterations = n
        elif a.startswith(("--delay=", "--iterations=")):
            opt, _, v = a.partition("=")
            n = int(v) if v.isdigit() else 0
            delay, iterations = (n, iterations) if opt == "--delay" else (delay, n)
        else:
            err(f"Usage: xentop [OPTION]\n{a}: not understood by the simulated xentop")
            return 1
    if not batch:
        err("xentop: the simulated dom0 has no screen: use batch mode (-b)")
        return 1
    k = 0
    try:
        while True:
            snap = fetch(config, k * delay)
            say(xentop_block(snap, k == 0, full, repeat))
            k += 1
            if iterations and k >= iterations:
                return 0
            _sleep(delay)
    except Stop:
        return 0


# ---------------------------------------------------------------- xl list (xl_list.c)


def _xl_state(d: dict[str, Any]) -> str:
    if d["paused"]:
        return "--p---"
    return "r-----" if d["control"] or d["cpu_pct"] > 30.0 * d["vcpus"] else "-b----"


def xl(argv: list[str], config: dict[str, str]) -> int:
    if argv != ["list"]:
        err(f"xl {' '.join(argv)}: the simulated dom0 answers xl list only")
        return 1
    snap = fetch(config)
    say("Name                                        ID   Mem VCPUs\tState\tTime(s)\n")
    for d in snap["domains"]:
        name = "Domain-0" if d["control"] else d["name"]
        say(f"{name:<40} {d['domid']:>5} {d['memory'] // (1 << 20):>5} {d['vcpus']:>5}     "
            f"{_xl_state(d)} {d['cpu_s']:>8.1f}\n")
    return 0


# ---------------------------------------------------------------- xenpm (xenpm.c)


def xenpm(argv: list[str], config: dict[str, str]) -> int:
    if not argv or argv[0] not in ("get-cpufreq-states", "get-cpuidle-states"):
        err("xen power management control tool\n\nusage: xenpm <command> [args]\n"
            "(the simulated dom0 answers get-cpufreq-states and get-cpuidle-states)")
        return 1
    snap = fetch(config)
    host = snap["host"]
    up = max(1.0, snap["time"] - host["boot"])
    mhz = host["cpu_mhz"]
    busy = min(0.95, sum(d["cpu_pct"] for d in snap["domains"]) / 100.0 / host["cpus"])
    out = []
    if argv[0] == "get-cpufreq-states":
        freqs = [mhz + 1, mhz - 200, mhz - 600, 1200]
        for cpu in range(host["cpus"]):
            share = [0.2 + busy, 0.15, 0.15, 0.5 - busy]
            cur = 0 if (cpu * 7 + int(snap["time"])) % 10 < busy * 10 else 3
            out.append(f"cpu id               : {cpu}\n"
                       f"total P-states       : {len(freqs)}\n"
                       f"usable P-states      : {len(freqs)}\n"
                       f"current frequency    : {freqs[cur]} MHz\n")
            for i, f in enumerate(freqs):
                mark = f"*P{i:<9}" if i == cur else f"P{i:<10}"
                trans = int(up / 40 * share[i]) + cpu
                out.append(f"{mark}[{f:>4} MHz]: transition [{trans:>20}]\n"
                           f"                       residency  [{int(up * 1000 * share[i]):>20} ms]\n")
            out.append("\n")
    else:
        out.append("All C-states allowed\n\n")
        for cpu in range(host["cpus"]):
            idle = up * (1 - busy)
            share = [0.0, 0.1, 0.3, 0.6]
            out.append(f"cpu id               : {cpu}\n"
                       f"total C-states       : {len(share)}\n"
                       f"idle time(ms)        : {int(idle * 1000)}\n")
            for i, s in enumerate(share):
                res = up * busy if i == 0 else idle * s
                out.append(f"C{i:<20}: transition [{int(idle * 50 * s) + (cpu if i else 0):>20}]\n"
                           f"                       residency  [{int(res * 1000):>20} ms]\n")
            out.append(f"pc2                  : [{int(idle * 400):>20} ms]\n"
                       f"cc6                  : [{int(idle * 550):>20} ms]\n\n")
    say("".join(out))
    return 0


# ---------------------------------------------------------------- pgrep and tap-ctl


def _qemu_pid(domid: int) -> int:
    return 4000 + 13 * domid


def pgrep(argv: list[str], config: dict[str, str]) -> int:
    if len(argv) != 2 or argv[0] != "-f":
        err("pgrep: the simulated dom0 answers pgrep -f PATTERN only")
        return 2
    try:
        rx = re.compile(argv[1])
    except re.error as e:
        err(f"pgrep: invalid pattern: {e}")
        return 2
    snap = fetch(config)
    found = [_qemu_pid(d["domid"]) for d in snap["domains"]
             if d["hvm"] and rx.search(f"qemu-dm-{d['domid']} -machine pc-i440fx-2.10,accel=xen "
                                       f"-xen-domid {d['domid']}")]
    for pid in found:
        say(f"{pid}\n")
    return 0 if found else 1


def _tapdisks(snap: Snapshot) -> list[tuple[int, int, dict[str, Any], dict[str, str]]]:
    out = []
    minor = 0
    for d in snap["domains"]:
        for vdi in d["vdis"]:
            out.append((7000 + minor, minor, d, vdi))
            minor += 1
    return out


def tap_ctl(argv: list[str], config: dict[str, str]) -> int:
    if argv != ["list"]:
        err("tap-ctl: the simulated dom0 answers tap-ctl list only")
        return 1
    for pid, minor, _, vdi in _tapdisks(fetch(config)):
        say(f"pid={pid} minor={minor} state=0 "
            f"args=vhd:/var/run/sr-mount/{vdi['sr']}/{vdi['uuid']}.vhd\n")
    return 0


# ---------------------------------------------------------------- perf


QEMU_SYMBOLS = ("xen_map_cache", "address_space_rw", "cpu_physical_memory_rw",
                "main_loop_wait", "qemu_poll_ns", "xen_block_complete_aio")
TAPDISK_SYMBOLS = ("td_forward_request", "vhd_queue_write", "vhd_complete",
                   "tapdisk_vbd_issue_request", "io_getevents")
DOM0_ROWS = (("xapi", "xapi", "[.] caml_alloc_shr"), ("xapi", "xapi", "[.] camlStdlib__Hashtbl__find"),
             ("xenopsd-xc", "xenopsd-xc", "[.] caml_call_gc"),
             ("oxenstored", "oxenstored", "[.] camlStore__path_exists"),
             ("xcp-rrdd", "xcp-rrdd", "[.] camlRrd__ds_update"),
             ("swapper", "[kernel.kallsyms]", "[k] xen_hypercall_event_channel_op"))


def _perf_rows(snap: Snapshot, pids: list[int], seconds: float) -> list[tuple[str, str, str, float]]:
    """(comm, dso, symbol, weight) of the samples a recording would take."""
    rows: list[tuple[str, str, str, float]] = []
    taps = _tapdisks(snap)
    for d in snap["domains"]:
        if d["control"] or d["paused"]:
            continue
        load = d["cpu_pct"] / 100.0
        comm = f"qemu-dm-{d['domid']}"[:15]
        if d["hvm"] and (not pids or _qemu_pid(d["domid"]) in pids):
            for i, sym in enumerate(QEMU_SYMBOLS):
                rows.append((comm, "qemu-system-i386", f"[.] {sym}",
                             (0.02 + 0.05 * load + d["disk_now"] / 4000.0) / (i + 1)))
        for pid, _, owner, _ in taps:
            if owner is d and (not pids or pid in pids):
                for i, sym in enumerate(TAPDISK_SYMBOLS):
                    rows.append(("tapdisk", "tapdisk", f"[.] {sym}",
                                 (0.01 + d["disk_now"] / 2000.0) / (i + 1)))
    if not pids:
        for i, (comm, dso, sym) in enumerate(DOM0_ROWS):
            rows.append((comm, dso, sym, 0.3 / (i + 1)))
        busy = sum(w for *_, w in rows)
        rows.append(("swapper", "[kernel.kallsyms]", "[k] xen_hypercall_sched_op",
                     max(busy, 1.0) * 4))
    return rows


def _perf_report(data: dict[str, Any], snap: Snapshot) -> str:
    merged: dict[tuple[str, str, str], float] = {}
    for comm, dso, sym, w in _perf_rows(snap, data["pids"], data["seconds"]):
        merged[(comm, dso, sym)] = merged.get((comm, dso, sym), 0.0) + w  # perf's sort keys
    rows = [(*k, w) for k, w in merged.items()]
    total = sum(w for *_, w in rows) or 1.0
    samples = max(1, int(data["seconds"] * 1000 * (len(data["pids"]) or snap["host"]["cpus"])))
    table = sorted(((w / total * 100, int(samples * w / total), c, o, s) for c, o, s, w in rows),
                   key=lambda r: -r[0])
    table = [r for r in table if r[1] > 0]
    shown = f"{samples // 1000}K" if samples >= 10000 else str(samples)
    # perf's column widths follow the longest value (hists__calc_col_len)
    wc = max(len("Command"), *(len(r[2]) for r in table)) if table else 7
    wo = max(len("Shared Object"), *(len(r[3]) for r in table)) if table else 13
    ws = max(len("Symbol"), *(len(r[4]) for r in table)) if table else 6
    lines = ["# To display the perf.data header info, please use --header/--header-only options.",
             "#", "#", "# Total Lost Samples: 0", "#",
             f"# Samples: {shown}{'  ' if samples < 1000 else ' '}of event 'cpu-clock'",
             f"# Event count (approx.): {samples * 250000}", "#",
             f"# Overhead       Samples  {'Command':<{wc}}  {'Shared Object':<{wo}}  {'Symbol':<{ws}}",
             f"# ........  ............  {'.' * wc}  {'.' * wo}  {'.' * ws}", "#"]
    for pct, n, comm, dso, sym in table:
        lines.append(f"  {pct:>7.2f}%  {n:>12}  {comm:<{wc}}  {dso:<{wo}}  {sym}")
    lines += ["", "", "#", "# (Tip: the simulated dom0's perf)", "#"]
    return "\n".join(lines) + "\n"


def perf(argv: list[str], config: dict[str, str]) -> int:
    if not argv or argv[0] not in ("record", "report"):
        err(f"perf: '{argv[0] if argv else ''}' is not simulated (record and report are)")
        return 1
    args = argv[1:]
    if argv[0] == "record":
        pids: list[int] = []
        out = "perf.data"
        workload: list[str] = []
        while args:
            a = args.pop(0)
            if a == "--":
                workload = args
                break
            if a == "-p" and args:
                pids = [int(p) for p in args.pop(0).split(",") if p.isdigit()]
            elif a == "-o" and args:
                out = args.pop(0)
            elif a in ("-a", "-g", "--all-cpus"):
                pass
            else:
                err(f"  Error: unknown switch `{a}' (in the simulated perf)")
                return 129
        if workload[:1] != ["sleep"] or len(workload) != 2 or not workload[1].isdigit():
            err("perf record: the simulated dom0 records -- sleep N only")
            return 1
        snap = fetch(config)
        known = {_qemu_pid(d["domid"]) for d in snap["domains"] if d["hvm"]}
        known |= {pid for pid, *_ in _tapdisks(snap)}
        gone = [p for p in pids if p not in known]
        if gone:
            err(f"Couldn't record: process {gone[0]} does not exist")
            return 255
        start = time.monotonic()
        try:
            _sleep(float(workload[1]))
        except Stop:
            pass  # perf writes what it has on SIGINT or SIGTERM
        seconds = time.monotonic() - start
        with open(out, "w", encoding="utf-8") as f:
            json.dump({"pids": pids, "seconds": seconds}, f)
        n = int(seconds * 1000 * (len(pids) or snap["host"]["cpus"]))
        err("[ perf record: Woken up 1 times to write data ]\n"
            f"[ perf record: Captured and wrote {n * 40 / 1e6:.3f} MB {out} ({n} samples) ]")
        return 0
    data_file = "perf.data"
    while args:
        a = args.pop(0)
        if a == "-i" and args:
            data_file = args.pop(0)
        elif a not in ("--stdio", "-n", "--show-nr-samples"):
            err(f"  Error: unknown switch `{a}' (in the simulated perf)")
            return 129
    try:
        with open(data_file, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        err(f"failed to open {data_file}: {e.strerror}")
        return 255
    except ValueError:
        err(f"{data_file}: not a perf data file")
        return 255
    say(_perf_report(data, fetch(config)))
    return 0


# ---------------------------------------------------------------- OProfile


def _op_state(config: dict[str, str]) -> dict[str, Any]:
    try:
        with open(os.path.join(config["state"], "oprofile.json"), encoding="utf-8") as f:
            state: dict[str, Any] = json.load(f)
            return state
    except (OSError, ValueError):
        return {"daemon": False}


def _op_save(config: dict[str, str], state: dict[str, Any]) -> None:
    os.makedirs(config["state"], mode=0o700, exist_ok=True)
    with open(os.path.join(config["state"], "oprofile.json"), "w", encoding="utf-8") as f:
        json.dump(state, f)


def opcontrol(argv: list[str], config: dict[str, str]) -> int:
    opts: dict[str, str] = {}
    actions = []
    for a in argv:
        if a.startswith("--") and "=" in a:
            k, _, v = a.partition("=")
            opts[k] = v
        elif a in ("--status", "--reset", "--start-daemon", "--start", "--dump", "--stop",
                   "--shutdown", "--no-vmlinux"):
            actions.append(a)
        else:
            err(f"opcontrol: unknown option {a} (in the simulated dom0)")
            return 1
    state = _op_state(config)
    for a in actions:
        if a == "--status":
            say(("Daemon running: pid 3141\n" if state.get("daemon") else "Daemon not running\n")
                + f"Session-dir: {state.get('session', '/var/lib/oprofile')}\n"
                "Separate options: none\n"
                f"vmlinux file: {state.get('vmlinux', '')}\n"
                f"Xen image: {state.get('xen', '')}\n"
                "Image filter: none\nCall-graph depth: 0\n")
        elif a == "--reset":
            state["samples"] = 0.0
        elif a == "--start-daemon":
            xen = opts.get("--xen", "")
            for f in (xen, opts.get("--vmlinux", "")):
                if f.endswith((".gz", "vmlinuz")) or "vmlinuz-" in f:
                    err(f"The specified file {f} does not seem to be valid\n"
                        "Make sure you are using the non-compressed image file "
                        "(e.g. vmlinux not vmlinuz)")
                    return 1
            state.update(daemon=True, collecting=False, xen=xen,
                         vmlinux=opts.get("--vmlinux", ""),
                         session=opts.get("--session-dir", "/var/lib/oprofile"),
                         passive=[int(x) for x in opts.get("--passive-domains", "").split(",") if x.isdigit()],
                         active=[int(x) for x in opts.get("--active-domains", "").split(",") if x.isdigit()])
        elif a == "--start":
            if not state.get("daemon"):
                err("opcontrol: the daemon is not running (opcontrol --start-daemon first)")
                return 1
            state.update(collecting=True, since=time.time())
            say("Profiler running.\n")
        elif a in ("--dump", "--stop", "--shutdown"):
            if state.get("collecting"):
                state["samples"] = state.get("samples", 0.0) + time.time() - state.get("since", time.time())
                state["since"] = time.time()
            if a != "--dump":
                state["collecting"] = False
            if a == "--shutdown":
                if state.get("daemon"):
                    say("Stopping profiling.\nKilling daemon.\n")
                state["daemon"] = False
    _op_save(config, state)
    return 0


def operf(argv: list[str], config: dict[str, str]) -> int:
    # what operf says in a dom0 without performance counters (see the samples)
    err("Your kernel's Performance Events Subsystem does not support your processor type.\n"
        "Please use the opcontrol command instead of operf.")
    return 1


def opreport(argv: list[str], config: dict[str, str]) -> int:
    symbols = "-l" in argv or "--symbols" in argv
    state = _op_state(config)
    seconds = float(state.get("samples", 0.0))
    if seconds <= 0:
        err("error: no sample files found: profile specification too strict ?")
        return 1
    snap = fetch(config)
    xen = os.path.basename(state.get("xen", "")) or "xen-syms"
    dom0 = "vmlinux" if state.get("vmlinux") else "no-vmlinux"
    images: list[tuple[str, str, float]] = [
        (xen, "csched2_schedule", 30.0), (xen, "do_sched_op", 12.0), (xen, "hvm_do_resume", 6.0),
        (dom0, "xen_hypercall_sched_op" if dom0 == "vmlinux" else "(no symbols)", 20.0),
        ("xapi", "(no symbols)", 5.0), ("oxenstored", "(no symbols)", 2.0)]
    for d in snap["domains"]:
        if d["domid"] in state.get("passive", []):
            load = 1.0 + d["cpu_pct"] / 10.0
            images += [(f"domain{d['domid']}-kernel", "native_safe_halt", 4.0 * load),
                       (f"domain{d['domid']}-apps", "(no symbols)", 3.0 * load),
                       (f"domain{d['domid']}-xen", "vmx_vmexit_handler", 1.0 * load)]
    total = sum(w for *_, w in images)
    n = int(seconds * 100 * snap["host"]["cpus"])
    lines = [f"CPU: CPU with timer interrupt, speed {snap['host']['cpu_mhz']} MHz (estimated)",
             "Profiling through timer interrupt"]
    if symbols:
        lines.append("samples  %        image name               symbol name")
        for img, sym, w in sorted(images, key=lambda r: -r[2]):
            lines.append(f"{int(n * w / total):<8} {w / total * 100:<8.4f} {img:<24} {sym}")
    else:
        by_image: dict[str, float] = {}
        for img, _, w in images:
            by_image[img] = by_image.get(img, 0.0) + w
        lines += ["          TIMER:0|", "  samples|      %|", "------------------"]
        for img, w in sorted(by_image.items(), key=lambda r: -r[1]):
            lines.append(f"{int(n * w / total):>9} {w / total * 100:>7.4f} {img}")
    say("\n".join(lines) + "\n")
    return 0


TOOLS: dict[str, Callable[[list[str], dict[str, str]], int]] = {
    "xentop": xentop, "xl": xl, "xenpm": xenpm, "pgrep": pgrep, "tap-ctl": tap_ctl,
    "perf": perf, "opcontrol": opcontrol, "operf": operf, "opreport": opreport,
}


def main(tool: str, argv: list[str], config: dict[str, str]) -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a reader that left ends us quietly
    try:
        return TOOLS[tool](argv, config)
    except Stop:
        return 128 + signal.SIGTERM
    except (OSError, ValueError, KeyError) as e:
        # the simulator went away or said no: as a real tool that lost its hypervisor
        err(f"{tool}: cannot reach the simulated host: {e}")
        return 1
