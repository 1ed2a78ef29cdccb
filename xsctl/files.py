"""Files and folders that only their owner may read: xsctl's config, state and cache
folders (0700) and every file it writes in them (0600).

A file is created with its final mode, never written first and chmod-ed after: in
between, with the usual umask, anyone on the machine could read it. Writes go to a
temporary file in the same folder, renamed over the old one, so that a crash never
leaves half a file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a folder only its owner can enter. An
    existing one of ours is narrowed to 0700."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):  # mkdir(parents=True) would make the parents 0777 & ~umask
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=PRIVATE_DIR)
    if path.stat().st_mode & 0o077:
        os.chmod(path, PRIVATE_DIR)
    return path


def open_private(path: Path, flags: int) -> int:
    """``os.open`` that creates the file 0600; an existing file is narrowed to 0600."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, PRIVATE_FILE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8), 0600 from the first byte."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover of a crash
    fd = open_private(tmp, os.O_WRONLY | os.O_EXCL)
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
