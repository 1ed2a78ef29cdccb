"""Checks that every ELF file under a folder would load on CentOS 7 (XenServer 8 and
XCP-ng 8.3 dom0): x86_64, glibc's program interpreter, symbol versions no newer than
CentOS 7's glibc 2.17 and GCC 4.8 runtime (the manylinux2014 ceilings of PEP 599), and
shared libraries that are either CentOS 7's own or shipped in the folder and found
there through the file's $ORIGIN run path.

    python3 elfcheck.py FOLDER

Prints one line per problem and exits 1, or one summary line and exits 0. Reads the ELF
structures itself (no binutils), so it runs wherever Python does.
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The newest version of each versioned interface that CentOS 7 provides: glibc 2.17,
# and GCC 4.8.5's libgcc_s and libstdc++ (PEP 599).
CEILINGS: dict[str, tuple[int, ...]] = {
    "GLIBC": (2, 17),
    "GLIBCXX": (3, 4, 19),
    "CXXABI": (1, 3, 7),
    "GCC": (4, 8, 0),
}
# versions that carry no number to compare, and that CentOS 7 has
OTHER_VERSIONS = {"CXXABI_TM_1"}

# The libraries a minimal CentOS 7 (a dom0 has no X11 or GLib) always has: glibc's own,
# and GCC's runtime. Anything else must be shipped.
SYSTEM_LIBRARIES = {
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2",
    "librt.so.1", "libutil.so.1", "libresolv.so.2", "libnsl.so.1", "libcrypt.so.1",
    "libanl.so.1", "libgcc_s.so.1", "libstdc++.so.6",
}
INTERPRETER = "/lib64/ld-linux-x86-64.so.2"

EM_X86_64 = 62
PT_INTERP = 3
SHT_DYNAMIC = 6
SHT_GNU_VERNEED = 0x6FFFFFFE
DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 14, 15, 29


class NotElf(Exception):
    pass


@dataclass
class Elf:
    """What the dynamic loader will ask of the system for one file."""

    path: Path
    machine: int
    interpreter: str | None = None
    needed: list[str] = field(default_factory=list)
    run_paths: list[str] = field(default_factory=list)
    # the versions each needed library must define: {"libc.so.6": {"GLIBC_2.17", ...}}
    versions: dict[str, set[str]] = field(default_factory=dict)


def _cstr(data: bytes, at: int) -> str:
    end = data.index(b"\0", at)
    return data[at:end].decode("utf-8", "replace")


def read_elf(path: Path) -> Elf:
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise NotElf(path)
    if data[4] != 2 or data[5] != 1:  # ELFCLASS64, ELFDATA2LSB
        return Elf(path, machine=-1)
    (e_machine,) = struct.unpack_from("<H", data, 18)
    e_phoff, e_shoff = struct.unpack_from("<QQ", data, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", data, 54)
    elf = Elf(path, machine=e_machine)

    for i in range(e_phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, e_phoff + i * e_phentsize)
        if p_type == PT_INTERP:
            elf.interpreter = data[p_offset:p_offset + p_filesz].rstrip(b"\0").decode()

    sections = [struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * e_shentsize)
                for i in range(e_shnum)]

    def contents(index: int) -> bytes:
        s = sections[index]
        return data[s[4]:s[4] + s[5]]

    for _name, sh_type, _fl, _addr, off, size, link, info, _al, _es in sections:
        if sh_type == SHT_DYNAMIC:
            strings = contents(link)
            for at in range(off, off + size, 16):
                tag, val = struct.unpack_from("<qQ", data, at)
                if tag == DT_NULL:
                    break
                if tag == DT_NEEDED:
                    elf.needed.append(_cstr(strings, val))
                elif tag in (DT_RPATH, DT_RUNPATH):
                    elf.run_paths += _cstr(strings, val).split(":")
        elif sh_type == SHT_GNU_VERNEED:
            strings = contents(link)
            at = off
            for _ in range(info):  # sh_info: the number of Elf64_Verneed entries
                _ver, count, file_at, aux, nxt = struct.unpack_from("<HHIII", data, at)
                names = elf.versions.setdefault(_cstr(strings, file_at), set())
                aux_at = at + aux
                for _ in range(count):
                    _hash, _flags, _other, name_at, aux_next = struct.unpack_from(
                        "<IHHII", data, aux_at)
                    names.add(_cstr(strings, name_at))
                    aux_at += aux_next
                at += nxt
    return elf


def _number(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return None


def version_problem(version: str) -> str | None:
    """Why CentOS 7's libraries lack this symbol version, or None if they have it."""
    if version in OTHER_VERSIONS:
        return None
    interface, _, number = version.rpartition("_")
    ceiling = CEILINGS.get(interface)
    if ceiling is None:
        return "CentOS 7's libraries define no such version"
    n = _number(number)
    if n is None or n > ceiling:
        return f"CentOS 7 has {interface} {'.'.join(map(str, ceiling))}"
    return None


def _expand(run_path: str, origin: Path) -> Path:
    for token in ("$ORIGIN", "${ORIGIN}"):
        run_path = run_path.replace(token, str(origin))
    return Path(os.path.normpath(run_path))


def check_file(elf: Elf, root: Path) -> list[str]:
    rel = elf.path.relative_to(root)
    if elf.machine != EM_X86_64:
        return [f"{rel}: not an x86_64 ELF file"]
    problems = []
    if elf.interpreter is not None and elf.interpreter != INTERPRETER:
        problems.append(f"{rel}: loaded by {elf.interpreter}, not {INTERPRETER}")
    search = []
    for run_path in elf.run_paths:
        d = _expand(run_path, elf.path.parent)
        if not d.is_relative_to(root):
            problems.append(f"{rel}: run path {run_path} leads outside the artifact")
        else:
            search.append(d)
    from_system = set()
    for lib in elf.needed:
        if any((d / lib).is_file() for d in search):
            continue  # shipped: checked as a file of its own
        if lib in SYSTEM_LIBRARIES:
            from_system.add(lib)
        else:
            problems.append(f"{rel}: needs {lib}, which neither CentOS 7 nor the artifact "
                            "provides")
    for lib, versions in sorted(elf.versions.items()):
        if lib not in from_system:
            continue
        for version in sorted(versions):
            why = version_problem(version)
            if why is not None:
                problems.append(f"{rel}: needs {version} from {lib}; {why}")
    return problems


def check_tree(root: Path) -> tuple[int, list[str]]:
    """(the number of ELF files, the problems found)."""
    count, problems = 0, []
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            with path.open("rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            count += 1
            try:
                problems += check_file(read_elf(path), root)
            except (struct.error, IndexError, ValueError) as e:
                problems.append(f"{path.relative_to(root)}: unreadable ELF file ({e})")
    return count, problems


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: elfcheck.py FOLDER", file=sys.stderr)
        return 2
    root = Path(argv[0]).resolve()
    count, problems = check_tree(root)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {count} ELF files: would not run on CentOS 7")
        return 1
    if count == 0:
        print(f"no ELF file under {root}")
        return 1
    print(f"{count} ELF files: all load on glibc 2.17 (CentOS 7) with what they ship")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
