"""What a simulated disk holds: real bytes, stored sparsely.

A VDI nobody has written to reads as a deterministic image (a boot sector that names
the disk, then zeros), so that an export carries real bytes without the simulator
holding a disk's worth of data. A VDI written by an import holds exactly what was
written (zeros elsewhere). Written chunks go to a sparse temporary file per VDI, not
to memory: a 10 GiB import costs the simulator disk space for its non-zero chunks and
no more than a chunk of RAM. VDI.copy and VDI.clone copy the contents; VDI.destroy
drops them.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

CHUNK = 1024 * 1024  # stream_vdi.ml chunk_size
SECTOR = 512


def boot_sector(uuid: str) -> bytes:
    """The first chunk of a disk nobody wrote: an MBR with one Linux partition, the
    disk's uuid in its boot code area so that two disks differ."""
    mbr = bytearray(SECTOR)
    mbr[:16] = b"\xeb\x63\x90XSCTL-SIM".ljust(16, b"\x00")
    label = uuid.encode("ascii", "replace")[:40]
    mbr[16:16 + len(label)] = label
    mbr[446:462] = bytes([0x80, 0x20, 0x21, 0x00, 0x83, 0xFE, 0xFF, 0xFF,
                          0x00, 0x08, 0x00, 0x00, 0x00, 0xF8, 0xFF, 0x01])
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr) + bytes(CHUNK - SECTOR)


class Written:
    """The chunks written to one VDI, in a sparse temporary file (opened at the first
    chunk that is not all zeros)."""

    def __init__(self) -> None:
        self.file: IO[bytes] | None = None
        self.chunks: set[int] = set()
        self.lock = threading.Lock()

    def write(self, n: int, data: bytes) -> None:
        with self.lock:
            if data.count(0) == len(data):
                if n in self.chunks and self.file is not None:  # a hole again
                    os.pwrite(self.file.fileno(), bytes(len(data)), n * CHUNK)
                    self.chunks.discard(n)
                return
            if self.file is None:
                # held for the VDI's life: closed (and so deleted) by close()
                self.file = tempfile.TemporaryFile(prefix="xsctl-sim-vdi-")  # noqa: SIM115
            os.pwrite(self.file.fileno(), data, n * CHUNK)
            self.chunks.add(n)

    def read(self, n: int, length: int) -> bytes:
        with self.lock:
            if n not in self.chunks or self.file is None:
                return bytes(length)
            data = os.pread(self.file.fileno(), length, n * CHUNK)
        return data.ljust(length, b"\x00")

    def numbers(self) -> set[int]:
        with self.lock:
            return set(self.chunks)

    @property
    def stored(self) -> int:
        return len(self.chunks) * CHUNK

    def close(self) -> None:
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None
            self.chunks.clear()


class DiskContents:
    """Every VDI's contents in one simulator: what was written to it, or the image of
    a disk nobody wrote (its own, or its source's for a clone of such a disk)."""

    def __init__(self) -> None:
        self._written: dict[str, Written] = {}
        self._image_of: dict[str, str] = {}  # VDI ref -> uuid its unwritten image names
        self._lock = threading.Lock()

    def written(self, vdi: str) -> Written | None:
        with self._lock:
            return self._written.get(vdi)

    def blank(self, vdi: str) -> Written:
        """Make ``vdi`` hold zeros from now on, then what is written to it (an
        imported disk starts so, as a new VDI does in xapi)."""
        w = Written()
        with self._lock:
            old = self._written.pop(vdi, None)
            self._image_of.pop(vdi, None)
            self._written[vdi] = w
        if old is not None:
            old.close()
        return w

    def drop(self, vdi: str) -> None:
        with self._lock:
            w = self._written.pop(vdi, None)
            self._image_of.pop(vdi, None)
        if w is not None:
            w.close()

    def copy(self, src: str, src_uuid: str, dst: str, size: int) -> None:
        """``dst`` holds what ``src`` holds (VDI.copy, VDI.clone, VDI.snapshot)."""
        if self.written(src) is None:
            with self._lock:
                self._image_of[dst] = self._image_of.get(src, src_uuid)
            return
        w = self.blank(dst)
        for n, data in self.chunks(src, src_uuid, size):
            w.write(n, data)

    def chunks(self, vdi: str, uuid: str, size: int) -> Iterator[tuple[int, bytes]]:
        """The disk's chunks as xapi's export sends them (stream_vdi.ml send_one):
        the first and the last always, the others when not all zero."""
        if size <= 0:
            return
        last = (size - 1) // CHUNK
        w = self.written(vdi)
        with self._lock:
            image = self._image_of.get(vdi, uuid)
        numbers = sorted({0, last, *(n for n in (w.numbers() if w else ()) if n <= last)})
        for n in numbers:
            length = min(CHUNK, size - n * CHUNK)
            if w is not None:
                data = w.read(n, length)
            else:
                data = boot_sector(image)[:length] if n == 0 else bytes(length)
            yield n, data

    def stored(self) -> int:
        with self._lock:
            return sum(w.stored for w in self._written.values())

    def close(self) -> None:
        with self._lock:
            items = list(self._written.values())
            self._written.clear()
            self._image_of.clear()
        for w in items:
            w.close()
