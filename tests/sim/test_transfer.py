"""GET /export and PUT /import over HTTPS with plain http.client.

Checked against ocaml/xapi/export.ml (handler, update_table, make_vm ...),
ocaml/xapi/stream_vdi.ml (chunks and .xxhash files), ocaml/xapi/import.ml (handler,
with_open_archive, complete_import, error mapping), ocaml/xapi/importexport.ml
(version, sr_of_req, get_default_sr) and doc/content/xen-api/topics/importexport.md.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import threading
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from tests.conftest import make_sim, vm_ref, wait_for
from tests.sim.test_host_support import Reply, basic, get, hosts_by_address, request
from xsctl.sim import Simulator
from xsctl.sim.xva import CHUNK, xxh64_hex

NULL = "OpaqueRef:NULL"
REF_ID = re.compile(r"^(Ref:\d+|OpaqueRef:NULL)$")


def export(sim: Simulator, session: str, query: str, **kw: Any) -> Reply:
    return get(sim, f"/export?session_id={session}&{query}", **kw)


def put(sim: Simulator, session: str, query: str, body: bytes, **kw: Any) -> Reply:
    return request(sim, "PUT", f"/import?session_id={session}&{query}", body=body, **kw)


def members(data: bytes) -> list[tuple[str, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
        out = []
        for m in tf.getmembers():
            f = tf.extractfile(m)
            out.append((m.name, f.read() if f else b""))
        return out


def build_tar(entries: list[tuple[str, bytes]], compress: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(buf.getvalue()) if compress else buf.getvalue()


def ova(entries: list[tuple[str, bytes]]) -> dict[str, Any]:
    name, xml = entries[0]
    assert name == "ova.xml"
    (value,), _ = xmlrpc.client.loads(
        b"<methodResponse><params><param>" + xml + b"</param></params></methodResponse>")
    assert isinstance(value, dict)
    return value


def task_of(x: Any, label: str) -> str:
    return str(x.xenapi.task.create(label, ""))


@pytest.fixture
def xs(sim: Simulator) -> Iterator[tuple[Simulator, Any]]:
    x = XenAPI.Session(sim.url, ignore_ssl=True)
    x.xenapi.login_with_password(sim.user, sim.password, "1.0", "xsctl-tests")
    try:
        yield sim, x
    finally:
        x.xenapi.session.logout()


def test_xxh64() -> None:
    """stream_vdi.ml write_block: The checksum of the .xxhash files: XXH64, seed 0, %016LX."""
    assert xxh64_hex(b"") == "EF46DB3751D8E999"
    assert xxh64_hex(b"abc") == "44BC2CF5AD770999"
    assert xxh64_hex(b"Nobody inspects the spammish repetition") == "FBCEA83C8A378BF1"


def test_export_stream(xs: tuple[Simulator, Any]) -> None:
    """export.ml handler/export, stream_vdi.ml send_one."""
    sim, x = xs
    vm = vm_ref(x, "backup-01")
    task = task_of(x, "export")
    r = export(sim, x.handle, f"ref={vm}&task_id={task}")
    assert r.status == 200
    assert r.raw_headers == [
        ("Connection", "close"), ("Cache-Control", "no-cache, no-store"), ("task-id", task),
        ("Server", "xapi/24.19"), ("content-type", "application/octet-stream"),
        ("Content-Disposition", 'attachment; filename="export.xva"')]
    entries = members(r.body)
    header = ova(entries)
    assert header["version"]["export_vsn"] == "2" and header["version"]["xapi_major"] == "24"
    objs = {o["id"]: o for o in header["objects"]}
    classes = sorted({o["class"] for o in objs.values()})
    assert classes == ["SR", "VBD", "VDI", "VIF", "VM", "VM_metrics", "network"]
    vm_obj = next(o["snapshot"] for o in objs.values() if o["class"] == "VM")
    assert vm_obj["name_label"] == "backup-01" and vm_obj["power_state"] == "Halted"
    assert vm_obj["current_operations"] == {} and vm_obj["consoles"] == []
    assert all(REF_ID.match(v) for v in vm_obj["VBDs"] + vm_obj["VIFs"])
    assert vm_obj["resident_on"] == NULL and objs[vm_obj["metrics"]]["class"] == "VM_metrics"
    for o in objs.values():
        if o["class"] == "VBD":
            assert o["snapshot"]["VM"] in objs and o["snapshot"]["currently_attached"] is False
    # CD images are in the metadata but their data is not streamed
    disk_ids = {o["snapshot"]["VDI"] for o in objs.values()
                if o["class"] == "VBD" and o["snapshot"]["type"] == "Disk"}
    assert any(o["class"] == "VDI" and o["id"] not in disk_ids for o in objs.values())
    disks = sorted((i, int(objs[i]["snapshot"]["virtual_size"])) for i in disk_ids)
    names = [n for n, _ in entries[1:]]
    expect: list[str] = []
    for vid, size in disks:
        for n in sorted({0, (size - 1) // CHUNK}):
            expect += [f"{vid}/{n:08d}", f"{vid}/{n:08d}.xxhash"]
    assert names == expect
    data = dict(entries)
    for name in expect[::2]:
        assert data[name + ".xxhash"].decode() == xxh64_hex(data[name])
        assert len(data[name]) == CHUNK
    rec = x.xenapi.task.get_record(task)
    assert (rec["status"], rec["progress"], rec["result"]) == ("success", 1.0, "")
    assert x.xenapi.VM.get_current_operations(vm) == {}


def test_export_compressed(xs: tuple[Simulator, Any]) -> None:
    """export.ml handler: use_compression."""
    sim, x = xs
    uuid = x.xenapi.VM.get_uuid(vm_ref(x, "web-staging"))
    for value in ("true", "gzip"):
        r = export(sim, x.handle, f"uuid={uuid}&use_compression={value}")
        assert r.body[:2] == b"\x1f\x8b"
        assert members(gzip.decompress(r.body))[0][0] == "ova.xml"
    plain = export(sim, x.handle, f"uuid={uuid}&use_compression=false")
    assert plain.body[:7] == b"ova.xml"


def test_export_of_a_running_vm_is_refused(xs: tuple[Simulator, Any]) -> None:
    """export.ml lock_vm, xapi_vm_lifecycle.ml: lock_vm: VM_BAD_POWER_STATE [vm, "halted, suspended", "running"]; the task
    fails and the answer is a 500."""
    sim, x = xs
    vm = vm_ref(x, "web-01")
    task = task_of(x, "export")
    r = export(sim, x.handle, f"ref={vm}&task_id={task}")
    assert r.status == 500 and b"VM_BAD_POWER_STATE" in r.body
    rec = x.xenapi.task.get_record(task)
    assert rec["status"] == "failure"
    assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
    assert x.xenapi.VM.get_current_operations(vm) == {}


def test_export_errors_and_auth(xs: tuple[Simulator, Any]) -> None:
    """export.ml vm_from_request, xapi_http.ml assert_credentials_ok."""
    sim, x = xs
    r = export(sim, x.handle, "uuid=00000000-0000-4000-8000-000000000000")
    assert r.status == 500 and b"UUID_INVALID: [ VM; 00000000-0000-4000-8000-000000000000 ]" in r.body
    assert export(sim, x.handle, "").status == 500
    r = get(sim, "/export?uuid=x")
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="get_export"'
    uuid = x.xenapi.VM.get_uuid(vm_ref(x, "web-staging"))
    r = get(sim, f"/export?uuid={uuid}", headers=basic(sim.user, sim.password))
    assert r.status == 200 and members(r.body)[0][0] == "ova.xml"


def test_export_redirects_to_a_host_that_sees_the_disks(xs: tuple[Simulator, Any]) -> None:
    """export.ml: a VM on another host's local storage is redirected (302)."""
    sim, x = xs
    vm = vm_ref(x, "dev-sandbox")
    owner = next(rec for _, rec in hosts_by_address(x)
                 if x.xenapi.VDI.get_SR(x.xenapi.VBD.get_VDI(
                     next(b for b in x.xenapi.VM.get_VBDs(vm)
                          if not x.xenapi.VBD.get_empty(b)))) in
                 [x.xenapi.PBD.get_SR(p) for p in rec["PBDs"]]
                 and rec["address"] != "127.0.0.1")
    path = f"/export?session_id={x.handle}&ref={vm}"
    r = get(sim, path)
    assert r.status == 302 and r.body == b""
    assert r.headers["location"] == sim.url_for(owner["address"]) + path
    assert get(sim, path, address=owner["address"]).status == 200


def test_export_progress() -> None:
    """stream_vdi.ml made_progress: The task's progress follows the disk bytes streamed."""
    s = make_sim(op_time=0.4)
    try:
        x = XenAPI.Session(s.url, ignore_ssl=True)
        x.xenapi.login_with_password(s.user, s.password)
        task = task_of(x, "export")
        token = x.xenapi.event_from(["task"], "", 1.0)["token"]
        vm = vm_ref(x, "backup-01")
        t = threading.Thread(target=export, args=(s, x.handle, f"ref={vm}&task_id={task}"))
        t.start()
        seen: list[float] = []
        while not seen or seen[-1] < 1.0:
            batch = x.xenapi.event_from([f"task/{task}"], token, 5.0)
            token = batch["token"]
            seen += [float(e["snapshot"]["progress"]) for e in batch["events"]]
        t.join()
        assert any(0.0 < p < 1.0 for p in seen) and seen == sorted(seen)
        x.xenapi.session.logout()
    finally:
        s.stop()


def new_vm_of(result: str) -> str:
    m = re.fullmatch(r"<value><array><data><value>(OpaqueRef:[0-9a-f-]+)</value></data>"
                     r"</array></value>", result)
    assert m, result
    return m.group(1)


def test_import_roundtrip(xs: tuple[Simulator, Any]) -> None:
    """import.ml handler/stream_import/complete_import."""
    sim, x = xs
    src = vm_ref(x, "backup-01")
    xva = export(sim, x.handle, f"ref={src}").body
    pool = x.xenapi.pool.get_all()[0]
    sr = x.xenapi.pool.get_default_SR(pool)
    alloc = int(x.xenapi.SR.get_virtual_allocation(sr))
    vms_before = len(x.xenapi.VM.get_all())
    task = task_of(x, "import")
    r = put(sim, x.handle, f"task_id={task}", xva)
    assert r.status == 200 and r.body == b""
    assert r.raw_headers == [("Connection", "close"), ("Cache-Control", "no-cache, no-store"),
                             ("task-id", task), ("content-type", "application/octet-stream")]
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert rec["status"] == "success", rec["error_info"]
    assert rec["progress"] == 1.0 and rec["other_config"]["object_creation"] == "complete"
    vm = new_vm_of(rec["result"])
    assert len(x.xenapi.VM.get_all()) == vms_before + 1
    new, old = x.xenapi.VM.get_record(vm), x.xenapi.VM.get_record(src)
    assert new["uuid"] != old["uuid"] and new["name_label"] == "backup-01"
    assert new["power_state"] == "Halted" and new["current_operations"] == {}
    assert "start" in new["allowed_operations"]
    assert new["other_config"]["import_task"] == task
    assert new["other_config"]["mac_seed"] != old["other_config"]["mac_seed"]
    assert new["memory_static_max"] == old["memory_static_max"]
    assert len(new["VBDs"]) == len(old["VBDs"]) and len(new["VIFs"]) == len(old["VIFs"])
    sizes = []
    for vbd in new["VBDs"]:
        b = x.xenapi.VBD.get_record(vbd)
        if b["type"] == "Disk":
            vdi = x.xenapi.VDI.get_record(b["VDI"])
            assert vdi["SR"] == sr and vdi["sm_config"]["import_task"] == task
            sizes.append(int(vdi["virtual_size"]))
    old_sizes = [int(x.xenapi.VDI.get_virtual_size(x.xenapi.VBD.get_VDI(b)))
                 for b in old["VBDs"] if x.xenapi.VBD.get_type(b) == "Disk"]
    assert sorted(sizes) == sorted(old_sizes)
    assert int(x.xenapi.SR.get_virtual_allocation(sr)) == alloc + sum(sizes)
    new_macs = {x.xenapi.VIF.get_MAC(v) for v in new["VIFs"]}
    assert new_macs.isdisjoint({x.xenapi.VIF.get_MAC(v) for v in old["VIFs"]})
    # the imported disk exports its data again, byte for byte
    again = dict(members(export(sim, x.handle, f"ref={vm}").body))
    first = dict(members(xva))
    assert sorted(v for k, v in again.items() if k != "ova.xml" and not k.endswith("xxhash")) \
        == sorted(v for k, v in first.items() if k != "ova.xml" and not k.endswith("xxhash"))


def test_import_gzip_with_restore(xs: tuple[Simulator, Any]) -> None:
    """import.ml with_open_archive, VM handler (mac_seed): gzip is detected by itself; restore=true keeps the MACs."""
    sim, x = xs
    src = vm_ref(x, "web-staging")
    xva = export(sim, x.handle, f"ref={src}&use_compression=true").body
    task = task_of(x, "import")
    put(sim, x.handle, f"task_id={task}&restore=true", xva)
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert rec["status"] == "success", rec["error_info"]
    vm = new_vm_of(rec["result"])
    macs = sorted(x.xenapi.VIF.get_MAC(v) for v in x.xenapi.VM.get_VIFs(vm))
    assert macs == sorted(x.xenapi.VIF.get_MAC(v) for v in x.xenapi.VM.get_VIFs(src))


def test_import_to_another_hosts_sr_redirects(xs: tuple[Simulator, Any]) -> None:
    """import.ml handler: check_sr_availability."""
    sim, x = xs
    xva = export(sim, x.handle, f"ref={vm_ref(x, 'web-staging')}").body
    _, member = hosts_by_address(x)[1]
    local = next(x.xenapi.PBD.get_SR(p) for p in member["PBDs"]
                 if x.xenapi.SR.get_type(x.xenapi.PBD.get_SR(p)) == "lvm")
    query = f"sr_id={local}"
    r = put(sim, x.handle, query, xva)
    assert r.status == 302
    assert r.headers["location"] == sim.url_for(member["address"]) + \
        f"/import?session_id={x.handle}&{query}"
    task = task_of(x, "import")
    put(sim, x.handle, f"{query}&task_id={task}", xva, address=member["address"])
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    vm = new_vm_of(rec["result"])
    disks = [x.xenapi.VBD.get_VDI(b) for b in x.xenapi.VM.get_VBDs(vm)
             if x.xenapi.VBD.get_type(b) == "Disk"]
    assert disks and all(x.xenapi.VDI.get_SR(d) == local for d in disks)


def test_import_without_a_default_sr(xs: tuple[Simulator, Any]) -> None:
    """importexport.ml get_default_sr: DEFAULT_SR_NOT_FOUND [ref], answered with a
    500 before the task is taken over (it stays pending, as in xapi)."""
    sim, x = xs
    pool = x.xenapi.pool.get_all()[0]
    x.xenapi.pool.set_default_SR(pool, NULL)
    task = task_of(x, "import")
    r = put(sim, x.handle, f"task_id={task}", b"x" * 1024)
    assert r.status == 500 and b"DEFAULT_SR_NOT_FOUND: [ OpaqueRef:NULL ]" in r.body
    assert x.xenapi.task.get_status(task) == "pending"


def test_import_refusals(xs: tuple[Simulator, Any]) -> None:
    """import.ml handler: An ISO SR: 400 and SR_OPERATION_NOT_SUPPORTED; a chunked body: 403 and
    IMPORT_ERROR_CANNOT_HANDLE_CHUNKED; no credentials: 401."""
    sim, x = xs
    iso = x.xenapi.SR.get_by_name_label("ISO library")[0]
    task = task_of(x, "import")
    r = put(sim, x.handle, f"sr_id={iso}&task_id={task}", b"x" * 1024)
    assert r.status == 400
    assert x.xenapi.task.get_error_info(task) == ["SR_OPERATION_NOT_SUPPORTED"]
    task = task_of(x, "import")
    r = request(sim, "PUT", f"/import?session_id={x.handle}&task_id={task}",
                body=iter([b"abc", b"def"]))  # type: ignore[arg-type]
    assert r.status == 403
    assert x.xenapi.task.get_error_info(task) == ["IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"]
    r = request(sim, "PUT", "/import", body=b"")
    assert r.status == 401 and r.headers["www-authenticate"] == 'Basic realm="put_import"'


def failed_import(sim: Simulator, x: Any, body: bytes, query: str = "") -> list[str]:
    task = task_of(x, "import")
    put(sim, x.handle, f"task_id={task}&{query}", body)
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert rec["status"] == "failure", rec
    return [str(v) for v in rec["error_info"]]


def test_import_bad_streams(xs: tuple[Simulator, Any]) -> None:
    """import.ml with_error_handling, and nothing is left behind (cleanup)."""
    sim, x = xs
    xva = export(sim, x.handle, f"ref={vm_ref(x, 'web-staging')}").body
    vms = len(x.xenapi.VM.get_all())
    vdis = len(x.xenapi.VDI.get_all())
    assert failed_import(sim, x, b"\x07" * 4096) == ["IMPORT_ERROR_PREMATURE_EOF"]
    assert failed_import(sim, x, xva[: len(xva) // 2]) == ["IMPORT_ERROR_PREMATURE_EOF"]
    assert (len(x.xenapi.VM.get_all()), len(x.xenapi.VDI.get_all())) == (vms, vdis)
    wrong_first = build_tar([("foo.txt", b"hello")], compress=True)
    assert failed_import(sim, x, wrong_first) == [
        "IMPORT_ERROR_UNEXPECTED_FILE", "ova.xml", "foo.txt"]
    entries = members(xva)
    bad = [(n, b"0000000000000000" if n.endswith(".xxhash") else d) for n, d in entries]
    assert failed_import(sim, x, build_tar(bad)) == ["IMPORT_ERROR_SOME_CHECKSUMS_FAILED"]
    assert (len(x.xenapi.VM.get_all()), len(x.xenapi.VDI.get_all())) == (vms, vdis)
    task = task_of(x, "import")
    put(sim, x.handle, f"task_id={task}&force=true", build_tar(bad))
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert rec["status"] == "success"
    newer = entries[0][1].replace(b"<name>xapi_major</name><value>24</value>",
                                  b"<name>xapi_major</name><value>99</value>")
    assert newer != entries[0][1]
    assert failed_import(sim, x, build_tar([("ova.xml", newer), *entries[1:]])) == [
        "IMPORT_INCOMPATIBLE_VERSION"]


def test_suspended_vm_keeps_its_state(xs: tuple[Simulator, Any]) -> None:
    """export.ml with preserve_power_state streams the suspend image too; import.ml
    brings the VM back Suspended on it."""
    sim, x = xs
    src = vm_ref(x, "k8s-node-03")
    body = export(sim, x.handle, f"ref={src}&preserve_power_state=true").body
    header = ova(members(body))
    vm_obj = next(o["snapshot"] for o in header["objects"] if o["class"] == "VM")
    assert vm_obj["power_state"] == "Suspended" and REF_ID.match(vm_obj["suspend_VDI"])
    task = task_of(x, "import")
    put(sim, x.handle, f"task_id={task}", body)
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    vm = new_vm_of(rec["result"])
    assert x.xenapi.VM.get_power_state(vm) == "Suspended"
    assert x.xenapi.VDI.get_type(x.xenapi.VM.get_suspend_VDI(vm)) == "suspend"
    assert "resume" in x.xenapi.VM.get_allowed_operations(vm)
    plain = ova(members(export(sim, x.handle, f"ref={src}").body))
    assert next(o["snapshot"] for o in plain["objects"]
                if o["class"] == "VM")["power_state"] == "Halted"


def test_import_progress_follows_the_bytes_read(xs: tuple[Simulator, Any]) -> None:
    """stream_vdi.ml made_progress: the task's progress moves as the body arrives."""
    import http.client
    import ssl

    sim, x = xs
    body = export(sim, x.handle, f"ref={vm_ref(x, 'backup-01')}").body
    task = task_of(x, "import")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=30)
    conn.putrequest("PUT", f"/import?session_id={x.handle}&task_id={task}")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    half = len(body) // 2
    conn.send(body[:half])
    progress = wait_for(lambda: 0.0 < (p := x.xenapi.task.get_progress(task)) < 1.0 and p)
    assert abs(progress - 0.99 * half / len(body)) < 0.3
    assert x.xenapi.task.get_status(task) == "pending"
    conn.send(body[half:])
    assert conn.getresponse().status == 200
    conn.close()
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert (rec["status"], rec["progress"]) == ("success", 1.0)


def with_data(xva: bytes, data: dict[int, bytes]) -> bytes:
    """``xva`` with its first disk holding ``data`` (chunk number -> bytes) besides
    what it held: the chunk files rewritten, as an export of such a disk is."""
    entries = members(xva)
    first = next(n.split("/")[0] for n, _ in entries[1:])
    disk = {int(n.split("/")[1]): d for n, d in entries[1:]
            if n.startswith(first + "/") and not n.endswith(".xxhash")}
    disk.update(data)
    out = [entries[0]]
    for n in sorted(disk):
        out += [(f"{first}/{n:08d}", disk[n]),
                (f"{first}/{n:08d}.xxhash", xxh64_hex(disk[n]).encode())]
    out += [e for e in entries[1:] if not e[0].startswith(first + "/")]
    return build_tar(out)


def test_disks_hold_what_was_imported(xs: tuple[Simulator, Any]) -> None:
    """stream_vdi.ml recv_all/send_one: the bytes an import writes come back in an
    export, a copy of the disk holds them too, and destroying it frees them."""
    import random

    sim, x = xs
    xva = export(sim, x.handle, f"ref={vm_ref(x, 'backup-01')}").body
    rng = random.Random(7)
    data = {1: rng.randbytes(CHUNK), 5: rng.randbytes(CHUNK)}
    task = task_of(x, "import")
    put(sim, x.handle, f"task_id={task}", with_data(xva, data))
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert rec["status"] == "success", rec["error_info"]
    vm = new_vm_of(rec["result"])
    again = dict(members(export(sim, x.handle, f"ref={vm}").body))
    chunks = {n.split("/")[1]: d for n, d in again.items() if "/" in n and "xxhash" not in n}
    assert chunks["00000001"] == data[1] and chunks["00000005"] == data[5]
    assert chunks["00000000"][510:512] == b"\x55\xaa"  # the boot sector came along
    stored = sim.store.runtime.storage.contents.stored()
    assert stored >= 2 * CHUNK
    vdi = next(x.xenapi.VBD.get_VDI(b) for b in x.xenapi.VM.get_VBDs(vm)
               if x.xenapi.VBD.get_type(b) == "Disk"
               and x.xenapi.VDI.get_sm_config(x.xenapi.VBD.get_VDI(b)))
    copy = x.xenapi.VDI.copy(vdi, x.xenapi.VDI.get_SR(vdi), NULL, NULL)
    contents = sim.store.runtime.storage.contents
    held = contents.written(vdi)
    assert held is not None and held.numbers()
    assert contents.stored() == stored + len(held.numbers()) * CHUNK
    x.xenapi.VDI.destroy(copy)
    assert contents.stored() == stored


def test_cancelled_import_leaves_nothing(xs: tuple[Simulator, Any]) -> None:
    """stream_vdi.ml recv_all: the task is cancellable while disks stream and xapi
    looks for a cancel as data arrives: the task ends cancelled and nothing imported
    is left. A client that hangs up ends it with IMPORT_ERROR_PREMATURE_EOF, nothing
    left either."""
    import http.client
    import ssl

    sim, x = xs
    xva = with_data(export(sim, x.handle, f"ref={vm_ref(x, 'backup-01')}").body,
                    {n: bytes([n]) * CHUNK for n in range(1, 9)})
    vms, vdis = len(x.xenapi.VM.get_all()), len(x.xenapi.VDI.get_all())
    task = task_of(x, "import")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=30)
    conn.putrequest("PUT", f"/import?session_id={x.handle}&task_id={task}")
    conn.putheader("Content-Length", str(len(xva)))
    conn.endheaders()
    conn.send(xva[: len(xva) // 2])
    wait_for(lambda: x.xenapi.task.get_allowed_operations(task) == ["cancel"])
    x.xenapi.task.cancel(task)
    conn.send(xva[len(xva) // 2:])
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    conn.close()
    assert (rec["status"], rec["error_info"]) == ("cancelled", ["TASK_CANCELLED", task])
    assert (len(x.xenapi.VM.get_all()), len(x.xenapi.VDI.get_all())) == (vms, vdis)
    # hanging up half way
    task = task_of(x, "import")
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=30)
    conn.putrequest("PUT", f"/import?session_id={x.handle}&task_id={task}")
    conn.putheader("Content-Length", str(len(xva)))
    conn.endheaders()
    conn.send(xva[: len(xva) // 2])
    wait_for(lambda: x.xenapi.task.get_allowed_operations(task) == ["cancel"])
    conn.close()
    rec = wait_for(lambda: (t := x.xenapi.task.get_record(task))["status"] != "pending" and t)
    assert (rec["status"], rec["error_info"]) == ("failure", ["IMPORT_ERROR_PREMATURE_EOF"])
    assert (len(x.xenapi.VM.get_all()), len(x.xenapi.VDI.get_all())) == (vms, vdis)
