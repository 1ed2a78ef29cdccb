"""What an import checks in a file before sending a byte (transfer.check_xva): an
XVA is a tar whose first member is ova.xml, or that tar compressed; a plain one is
walked to its end-of-archive marker, so a file cut anywhere is refused."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from xsctl.xapi.transfer import BadXva, Progress, check_xva

OVA = (b"<value><struct><member><name>version</name><value><struct></struct></value>"
       b"</member><member><name>objects</name><value><array><data><value><struct>"
       b"<member><name>class</name><value>VM</value></member><member><name>id</name>"
       b"<value>Ref:1</value></member><member><name>snapshot</name><value><struct>"
       b"<member><name>name_label</name><value>web-01</value></member></struct>"
       b"</value></member></struct></value></data></array></value></member></struct></value>")


def tar(*members: tuple[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


XVA = tar(("ova.xml", OVA), ("Ref:2/00000000", bytes(range(256)) * 4096),
          ("Ref:2/00000000.xxhash", b"0123456789ABCDEF"))
SECOND = 512 + -(-len(OVA) // 512) * 512  # where the header after ova.xml starts
# the members without the end-of-archive blocks (and tarfile's record padding)
MEMBERS = SECOND + 512 + 4096 * 256 + 512 + 512


def write(tmp_path: Path, data: bytes, name: str = "f.xva") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_a_whole_file_is_read_for_what_it_holds(tmp_path: Path) -> None:
    x = check_xva(write(tmp_path, XVA))
    assert (x.compression, x.vms, x.disks, x.size) == (None, ("web-01",), 1, len(XVA))
    z = check_xva(write(tmp_path, gzip.compress(XVA)))
    assert (z.compression, z.vms) == ("gzip", ("web-01",))


@pytest.mark.parametrize(("data", "words"), [
    (XVA[:MEMBERS], "is truncated: it ends after Ref:2/00000000.xxhash without the end"),
    (XVA[:SECOND + 2048], "is truncated: it ends inside Ref:2/00000000"),
    (XVA[:700], "is truncated: it ends inside its ova.xml"),
    (tar(("hello.txt", b"hi")), "is not an XVA export"),
    (b"\x00" * 100, "is not an XVA export"),
    (b"", "is empty"),
    (gzip.compress(tar(("hello.txt", b"hi")), mtime=0), "is compressed, but not an XVA export"),
    (gzip.compress(XVA, mtime=0)[:40], "is damaged or truncated (gzip"),
    (XVA[:SECOND] + b"\x07" * 512 + XVA[SECOND + 512:], "is damaged: what follows ova.xml"),
])
def test_a_cut_damaged_or_foreign_file_is_refused(tmp_path: Path, data: bytes,
                                                  words: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(BadXva) as e:
        check_xva(path)
    assert str(e.value).startswith(str(path)) and words in str(e.value)


def test_what_cannot_be_read_is_said(tmp_path: Path) -> None:
    with pytest.raises(BadXva, match="no such file"):
        check_xva(tmp_path / "missing.xva")
    with pytest.raises(BadXva, match="is a folder"):
        check_xva(tmp_path)


def test_the_progress_line() -> None:
    p = Progress(done=120 * 2**20, total=None, fraction=0.42, rate=35.2 * 2**20, eta=12.4)
    assert p.line() == " 42% [########------------] 120 MiB, 35.2 MiB/s, 0:12 left"
    assert p.short() == "35.2 MiB/s, 0:12 left"
    assert Progress(0, None, 0.0, 0.0, None).short() == "0 B/s"
    assert "1:01:05 left" in Progress(1, 2, 0.5, 1.0, 3665).line()
