"""``xsctl vm export`` and ``xsctl vm import`` against the simulator over HTTPS: a
round trip gives back an equal VM (its disks' bytes too), an interrupted export
leaves no file, a truncated or foreign file is refused with nothing half-made left,
an existing file is kept unless --force. Every test checks at its end that nothing
it did not mean to remove is gone."""

from __future__ import annotations

import os
import select
import signal
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.helpers import conn_args, password_file, xsctl
from tests.cli.test_cli_interrupts import on_a_terminal
from tests.conftest import vm_ref, wait_for, xenapi_session
from tests.sim.test_transfer import export as raw_export
from tests.sim.test_transfer import new_vm_of, put, task_of, with_data
from tests.unit.helpers import connect
from xsctl.sim import Simulator
from xsctl.sim.xva import CHUNK
from xsctl.xapi import transfer
from xsctl.xapi.errors import XapiError
from xsctl.xapi.ops import catalogue

CLASSES = ("VM", "VDI", "VBD", "VIF", "SR", "network", "host", "PBD")


@pytest.fixture
def cli(sim: Simulator, tmp_path: Path) -> list[str]:
    return conn_args(sim, password_file(sim, tmp_path))


@pytest.fixture
def x(sim: Simulator) -> Iterator[Any]:
    s = xenapi_session(sim)
    try:
        yield s
    finally:
        s.xenapi.session.logout()


@pytest.fixture(autouse=True)
def nothing_lost(sim: Simulator) -> Iterator[None]:
    """Whatever a test makes, it removes nothing that was there before it."""
    before = {c: set(sim.store.all(c)) for c in CLASSES}
    yield
    for c in CLASSES:
        gone = before[c] - set(sim.store.all(c))
        assert not gone, f"{c} removed: {gone}"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Where the tests' XVA files go (tmp_path holds the CLI's config and state)."""
    d = tmp_path / "files"
    d.mkdir()
    return d


def objects(sim: Simulator) -> dict[str, int]:
    return {c: len(sim.store.all(c)) for c in ("VM", "VDI", "VBD", "VIF")}


def data_vm(sim: Simulator, x: Any, chunks: dict[int, bytes]) -> str:
    """backup-01 imported with ``chunks`` written on its first disk (the simulator's
    own import): a VM whose disk holds real data."""
    xva = with_data(raw_export(sim, x.handle, f"ref={vm_ref(x, 'backup-01')}").body, chunks)
    task = task_of(x, "import")
    put(sim, x.handle, f"task_id={task}", xva)
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert rec["status"] == "success", rec["error_info"]
    vm: str = new_vm_of(rec["result"])
    x.xenapi.VM.set_name_label(vm, "data-vm")
    x.xenapi.task.destroy(task)
    return vm


def disks_of(path: Path) -> list[list[tuple[str, bytes]]]:
    """Each disk's chunks (number, data) in an XVA file, disks in the file's order."""
    out: dict[str, list[tuple[str, bytes]]] = {}
    with tarfile.open(path, mode="r:*") as tf:
        for m in tf.getmembers():
            if "/" not in m.name or m.name.endswith((".xxhash", ".checksum")):
                continue
            f = tf.extractfile(m)
            assert f is not None
            prefix, n = m.name.split("/")
            out.setdefault(prefix, []).append((n, f.read()))
    return list(out.values())


def vm_facts(x: Any, vm: str) -> dict[str, Any]:
    r = x.xenapi.VM.get_record(vm)
    disks = []
    for b in r["VBDs"]:
        vbd = x.xenapi.VBD.get_record(b)
        vdi = x.xenapi.VDI.get_record(vbd["VDI"]) if vbd["VDI"] != "OpaqueRef:NULL" else {}
        disks.append((vbd["userdevice"], vbd["type"], vbd["bootable"],
                      vdi.get("name_label"), vdi.get("virtual_size")))
    vifs = sorted((x.xenapi.VIF.get_device(v), x.xenapi.network.get_name_label(
        x.xenapi.VIF.get_network(v))) for v in r["VIFs"])
    return {
        "name_label": r["name_label"], "name_description": r["name_description"],
        "memory": [r[k] for k in ("memory_static_min", "memory_static_max",
                                  "memory_dynamic_min", "memory_dynamic_max")],
        "vcpus": (r["VCPUs_max"], r["VCPUs_at_startup"]), "power_state": r["power_state"],
        "disks": sorted(disks), "vifs": vifs, "platform": r["platform"],
        "HVM_boot_policy": r["HVM_boot_policy"],
    }


@pytest.mark.parametrize("compress", [None, "gzip"])
def test_round_trip_gives_back_an_equal_vm(sim: Simulator, x: Any, cli: list[str],
                                           files: Path, compress: str | None) -> None:
    data = {1: os.urandom(CHUNK), 7: os.urandom(CHUNK // 2) + bytes(CHUNK // 2)}
    src = data_vm(sim, x, data)
    out = files / "data-vm.xva"
    extra = ["--compress", compress] if compress else []
    r = xsctl(*cli, "vm", "export", "data-vm", str(out), *extra)
    assert r.code == 0, r.err
    assert r.out.startswith(f"data-vm: exported to {out} (")
    assert out.exists() and sorted(p.name for p in files.iterdir()) == ["data-vm.xva"]
    assert (out.read_bytes()[:2] == b"\x1f\x8b") == (compress == "gzip")
    before = objects(sim)
    # another host's local storage: the file goes to that host (xapi would redirect)
    member = x.xenapi.host.get_by_name_label("xcp-ng-02")[0]
    local = next(x.xenapi.PBD.get_SR(p) for p in x.xenapi.host.get_PBDs(member)
                 if x.xenapi.SR.get_type(x.xenapi.PBD.get_SR(p)) == "lvm")
    r = xsctl(*cli, "vm", "import", str(out), "--sr", x.xenapi.SR.get_uuid(local), "--json")
    assert r.code == 0, r.err
    (done,) = r.json()
    assert done["ok"] is True
    (new,) = done["result"]
    assert new["name_label"] == "data-vm"
    vm = new["ref"]
    assert vm != src and x.xenapi.VM.get_uuid(vm) == new["uuid"]
    assert vm_facts(x, vm) == vm_facts(x, src)
    assert objects(sim)["VM"] == before["VM"] + 1
    # the disks landed on the chosen SR, and hold the same bytes
    for b in x.xenapi.VM.get_VBDs(vm):
        if x.xenapi.VBD.get_type(b) == "Disk":
            assert x.xenapi.VDI.get_SR(x.xenapi.VBD.get_VDI(b)) == local
    again = files / "again.xva"
    assert xsctl(*cli, "vm", "export", new["uuid"], str(again)).code == 0
    assert disks_of(again) == disks_of(out)
    first = dict(disks_of(out)[0])
    assert first["00000001"] == data[1] and first["00000007"] == data[7]
    # no task is left behind by either
    assert not any(t["status"] == "pending" for t in sim.store.all("task").values())


def test_export_of_a_snapshot_and_a_template(sim: Simulator, x: Any, cli: list[str],
                                             files: Path) -> None:
    vm = vm_ref(x, "backup-01")
    x.xenapi.VM.snapshot(vm, "before-export")
    # as vm export names them, and under their own nouns (the Snapshots and
    # Templates views' X)
    for noun, name in (("vm", "before-export"), ("vm", "Debian Bookworm 12"),
                       ("snapshot", "before-export"), ("template", "Debian Bookworm 12")):
        out = files / "x.xva"
        r = xsctl(*cli, noun, "export", name, str(out), "--force")
        assert r.code == 0, (noun, name, r.err)
        with tarfile.open(out) as tf:
            assert tf.getmembers()[0].name == "ova.xml"
    r = xsctl(*cli, "snapshot", "export", "backup-01", str(files / "y.xva"))
    assert r.code != 0 and "no snapshot named 'backup-01'" in r.err


def test_an_existing_file_is_kept_without_force(sim: Simulator, cli: list[str],
                                                files: Path) -> None:
    out = files / "keep.xva"
    out.write_bytes(b"precious")
    r = xsctl(*cli, "vm", "export", "backup-01", str(out))
    assert r.code == 2 and f"{out} exists: add --force to replace it" in r.err
    assert out.read_bytes() == b"precious"
    dry = xsctl(*cli, "vm", "export", "backup-01", str(out), "--force", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    (plan,) = dry.json()
    assert plan["warnings"] == [f"{out} exists: it is replaced once the export is whole."]
    assert plan["calls"][1].startswith("GET /export?ref=backup-01&task_id=<result of step 1>")
    assert plan["xe"][0].startswith("xe vm-export vm=") and f"filename={out}" in plan["xe"][0]
    assert out.read_bytes() == b"precious"  # a dry run writes nothing
    r = xsctl(*cli, "vm", "export", "backup-01", str(out), "--force")
    assert r.code == 0, r.err
    assert out.read_bytes()[:7] == b"ova.xml"
    assert sorted(p.name for p in files.iterdir()) == ["keep.xva"]


def test_a_running_vm_is_refused_before_anything_is_sent(sim: Simulator, cli: list[str],
                                                         files: Path) -> None:
    tasks = len(sim.store.all("task"))
    r = xsctl(*cli, "vm", "export", "web-01", str(files / "w.xva"))
    assert r.code == 1
    assert "The VM must be halted or suspended for this, but it is running" in r.err
    assert len(sim.store.all("task")) == tasks and not (files / "w.xva").exists()


def test_truncated_and_foreign_files_are_refused(sim: Simulator, x: Any, cli: list[str],
                                                 files: Path) -> None:
    whole = files / "whole.xva"
    assert xsctl(*cli, "vm", "export", "backup-01", str(whole)).code == 0
    data = whole.read_bytes()
    cut = files / "cut.xva"
    cut.write_bytes(data[: len(data) * 2 // 3])
    foreign = files / "photo.jpg"
    foreign.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(5000))
    empty = files / "empty.xva"
    empty.write_bytes(b"")
    before = objects(sim)
    tasks = len(sim.store.all("task"))
    for path, words in ((cut, f"{cut} is truncated: it ends inside Ref:"),
                        (foreign, f"{foreign} is not an XVA export"),
                        (empty, f"{empty} is empty"),
                        (files / "none.xva", "no such file")):
        for dry in ([], ["--dry-run"]):
            r = xsctl(*cli, "vm", "import", str(path), *dry)
            assert r.code == 2, (path, r.err)
            assert words in r.err and "Traceback" not in r.err, r.err
            assert len(r.err.strip().splitlines()) == 1
    assert objects(sim) == before and len(sim.store.all("task")) == tasks


def test_a_truncated_compressed_file_fails_in_xapi_and_leaves_nothing(
        sim: Simulator, x: Any, cli: list[str], files: Path) -> None:
    """A gzip file is whole only if it decompresses to the end, which xapi does as it
    reads: it fails with IMPORT_ERROR_PREMATURE_EOF and removes what it made."""
    data_vm(sim, x, {n: bytes([n]) * CHUNK for n in range(1, 6)})
    whole = files / "whole.xva"
    assert xsctl(*cli, "vm", "export", "data-vm", str(whole), "--compress", "gzip").code == 0
    data = whole.read_bytes()
    cut = files / "cut.xva"
    cut.write_bytes(data[: len(data) - 3000])
    before = objects(sim)
    r = xsctl(*cli, "vm", "import", str(cut))
    assert r.code == 1, r.err
    assert "The file ends too early: it is truncated or damaged; nothing was imported" \
        in r.err and "IMPORT_ERROR_PREMATURE_EOF" in r.err and "Traceback" not in r.err
    assert objects(sim) == before
    assert not any(t["status"] == "pending" for t in sim.store.all("task").values())


def test_a_cancelled_export_leaves_no_file(sim: Simulator, x: Any, files: Path) -> None:
    """Cancelled half way (as Ctrl-C or the TUI's cancel do): the task ends cancelled,
    the partial file is removed, the VM is free again."""
    src = data_vm(sim, x, {n: bytes([n]) * CHUNK for n in range(1, 12)})
    sim.op_time = 40.0  # each disk takes 10 s to stream: time to cancel in
    out = files / "half.xva"
    seen: list[int] = []
    with connect(sim) as client:
        op = catalogue.get("vm.export")
        plan = catalogue.prepare(op, client.context(), op.kind.load(client.cache, src),
                                 {"file": str(out), "compress": None, "force": False})
        cancel = threading.Event()

        def rate(step: int, p: transfer.Progress) -> None:
            seen.append(p.done)
            assert transfer.partial_path(out).exists() and not out.exists()
            cancel.set()

        with pytest.raises(XapiError) as e:
            client.run(plan, cancel=cancel, rate=rate)
    # xapi's own word: the task ended cancelled (not this client's guess)
    assert (e.value.code, e.value.method) == ("TASK_CANCELLED", "Export of data-vm")
    assert seen and seen[0] > 0
    assert sorted(p.name for p in files.iterdir()) == []
    wait_for(lambda: x.xenapi.VM.get_current_operations(src) == {})


def test_ctrl_c_on_a_terminal_stops_the_export(sim: Simulator, x: Any, files: Path) -> None:
    """On a terminal the progress shows on one line (rate, time left); Ctrl-C cancels
    the task and removes the partial file (exit 130)."""
    src = data_vm(sim, x, {n: bytes([n]) * CHUNK for n in range(1, 12)})
    sim.op_time = 40.0  # each disk takes 10 s to stream: Ctrl-C lands mid-way
    out = files / "x.xva"
    argv = [*conn_args(sim, password_file(sim, files.parent)), "vm", "export", "data-vm", str(out)]
    p, master = on_a_terminal(argv)
    seen = b""
    try:
        while b"MiB/s" not in seen:
            assert select.select([master], [], [], 20)[0], seen
            seen += os.read(master, 4096)
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 130
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    assert b"Export VM data-vm to" in seen and b"%" in seen
    assert sorted(q.name for q in files.iterdir()) == []
    wait_for(lambda: x.xenapi.VM.get_current_operations(src) == {}, timeout=10)
    assert not any(t["status"] == "pending" for t in sim.store.all("task").values())


def test_import_needs_an_sr_that_takes_disks(sim: Simulator, cli: list[str],
                                             files: Path) -> None:
    whole = files / "whole.xva"
    assert xsctl(*cli, "vm", "export", "backup-01", str(whole)).code == 0
    before = objects(sim)
    r = xsctl(*cli, "vm", "import", str(whole), "--sr", "ISO library")
    assert r.code == 2 and "an ISO library holds no VM disks" in r.err, r.err
    r = xsctl(*cli, "vm", "import", str(whole), "--dry-run", "--json")
    assert r.code == 0, r.err
    (plan,) = r.json()
    assert plan["action"] == "vm.import"
    assert plan["calls"][1] == f"PUT /import?sr_id=NFS storage&task_id=<result of step 1> < {whole} (streamed)"
    assert plan["xe"][0].startswith(f"xe vm-import filename={whole} sr-uuid=")
    assert objects(sim) == before


def test_a_cancelled_import_leaves_nothing(sim: Simulator, x: Any, cli: list[str],
                                           files: Path) -> None:
    """Cancelled half way: xapi ends the task cancelled and removes the VM and the
    disks it had made."""
    data_vm(sim, x, {n: bytes([n]) * CHUNK for n in range(1, 12)})
    out = files / "data.xva"
    assert xsctl(*cli, "vm", "export", "data-vm", str(out)).code == 0
    before = objects(sim)
    seen: list[int] = []
    with connect(sim) as client:
        op = catalogue.get("vm.import")
        pool = op.kind.load(client.cache, next(iter(op.kind.members(client.cache)))[0])
        plan = catalogue.prepare(op, client.context(), pool, {"file": str(out), "sr": None})
        cancel = threading.Event()

        def rate(step: int, p: transfer.Progress) -> None:
            seen.append(p.done)
            if p.done >= 4 * CHUNK:  # the VM and its disks are made by now
                cancel.set()

        with pytest.raises(XapiError) as e:
            client.run(plan, cancel=cancel, rate=rate)
    # said as a cancel (xapi itself reports the hang-up as the end of the stream)
    assert e.value.code == "TASK_CANCELLED"
    assert seen and seen[-1] < out.stat().st_size
    assert objects(sim) == before


def test_export_follows_xapi_to_the_host_that_has_the_disks(
        sim: Simulator, x: Any, cli: list[str], files: Path) -> None:
    """export.ml answers 302 for a VM on another host's local storage: the export
    goes there, that host's certificate pinned from the master's word."""
    vm = vm_ref(x, "dev-sandbox")
    assert x.xenapi.VM.get_power_state(vm) == "Halted"
    out = files / "dev.xva"
    r = xsctl(*cli, "vm", "export", "dev-sandbox", str(out))
    assert r.code == 0, r.err
    with tarfile.open(out) as tf:
        assert tf.getmembers()[0].name == "ova.xml"
    assert sorted(p.name for p in files.iterdir()) == ["dev.xva"]
    # it went to the member (127.0.0.3 here), whose pin came from the master
    pins = (files.parent / "config" / "xsctl" / "known_hosts").read_text().splitlines()
    member = next(p for p in pins if p.endswith("via pool master"))
    assert not member.startswith(sim.url.split("//")[1])


def test_zstd_where_xapi_cannot_is_its_refusal_and_no_file(sim: Simulator, cli: list[str],
                                                           files: Path) -> None:
    """use_compression=zstd on a host without zstd: the task fails, nothing is kept."""
    out = files / "z.xva"
    r = xsctl(*cli, "vm", "export", "backup-01", str(out), "--compress", "zstd")
    assert r.code == 1 and "zstd compression is not available" in r.err, r.err
    assert sorted(p.name for p in files.iterdir()) == []
    assert not any(t["status"] == "pending" for t in sim.store.all("task").values())
    r = xsctl(*cli, "vm", "export", "backup-01", str(out), "--compress", "lz4")
    assert r.code == 2 and "--compress 'lz4': gzip, zstd or none" in r.err
