"""The ELF check that stands between the standalone build and a dom0 (standalone/
elfcheck.py): it passes what CentOS 7's glibc 2.17 can load and stops what it cannot.

The ELF files are compiled here with this machine's own compilers, whose glibc and
libstdc++ are newer than CentOS 7's: a library that uses one of their newer functions
is the real thing the check exists for (a build that picks up a host library)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

CHECK = Path(REPO) / "standalone" / "elfcheck.py"


def compile_library(path: Path, source: str, *, cxx: bool = False,
                    flags: tuple[str, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_name(path.name + (".cc" if cxx else ".c"))
    src.write_text(source)
    subprocess.run(["g++" if cxx else "cc", "-shared", "-fPIC", "-O1", "-o", str(path), str(src),
                    *flags], check=True, capture_output=True, timeout=60)
    src.unlink()
    return path


def check(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(tree)], capture_output=True,
                          text=True, timeout=60)


OLD = "#include <stdio.h>\nvoid hello(void) { puts(\"hello\"); }\n"
# getrandom came with glibc 2.25
NEWER = "#include <sys/random.h>\nint fill(char *b) { return getrandom(b, 8, 0); }\n"


def test_a_library_within_glibc_2_17_passes(tmp_path: Path) -> None:
    compile_library(tmp_path / "lib" / "libold.so", OLD)
    done = check(tmp_path)
    assert done.returncode == 0, done.stdout
    assert "1 ELF files: all load on glibc 2.17" in done.stdout


def test_a_planted_newer_glibc_library_fails(tmp_path: Path) -> None:
    compile_library(tmp_path / "lib" / "libold.so", OLD)
    compile_library(tmp_path / "lib" / "python3.13" / "libnew.so", NEWER)
    done = check(tmp_path)
    assert done.returncode == 1
    assert ("lib/python3.13/libnew.so: needs GLIBC_2.25 from libc.so.6; CentOS 7 has GLIBC 2.17"
            in done.stdout.splitlines())
    assert "libold" not in done.stdout
    assert "would not run on CentOS 7" in done.stdout


def test_a_newer_libstdcxx_fails(tmp_path: Path) -> None:
    # std::string's C++11 ABI came with GCC 5 (GLIBCXX_3.4.21); CentOS 7 has GCC 4.8
    source = "#include <string>\nstd::string name(const char *s) { return std::string(s); }\n"
    compile_library(tmp_path / "libcxx.so", source, cxx=True)
    done = check(tmp_path)
    assert done.returncode == 1
    assert ("libcxx.so: needs GLIBCXX_3.4.21 from libstdc++.so.6; CentOS 7 has GLIBCXX 3.4.19"
            in done.stdout.splitlines())


def test_a_library_is_shipped_only_where_its_run_path_finds_it(tmp_path: Path) -> None:
    shipped = compile_library(tmp_path / "pkg" / "pkg.libs" / "libshipped.so.1", OLD,
                              flags=("-Wl,-soname,libshipped.so.1",))
    user = "void hello(void);\nvoid greet(void) { hello(); }\n"
    link = ("-L" + str(shipped.parent), "-l:libshipped.so.1")
    compile_library(tmp_path / "pkg" / "found.so", user,
                    flags=(*link, "-Wl,-rpath,$ORIGIN/pkg.libs"))
    compile_library(tmp_path / "pkg" / "lost.so", user, flags=link)
    compile_library(tmp_path / "pkg" / "leaks.so", user,
                    flags=(*link, "-Wl,-rpath," + str(shipped.parent) + ":/usr/local/lib"))
    done = check(tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert not any(line.startswith("pkg/found.so") for line in lines)
    assert ("pkg/lost.so: needs libshipped.so.1, which neither CentOS 7 nor the artifact provides"
            in lines)
    assert "pkg/leaks.so: run path /usr/local/lib leads outside the artifact" in lines


def test_no_elf_file_at_all_fails(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not a program")
    done = check(tmp_path)
    assert done.returncode == 1
    assert "no ELF file" in done.stdout
