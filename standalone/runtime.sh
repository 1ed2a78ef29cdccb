#!/usr/bin/env bash
# Builds the CPython runtime of the standalone artifact: CPython and the C libraries it
# needs, compiled with zig for x86_64 Linux with glibc 2.17 (CentOS 7, so XenServer 8 and
# XCP-ng 8.3 dom0), the libraries linked in statically so that the only shared libraries
# left are glibc's own. Relocatable: the interpreter finds its library from where it lies.
#
#   runtime.sh SOURCES ZIG PREFIX
#
# SOURCES holds one folder per source package, as build.sh fetches them (each with its
# .dsc); ZIG is the zig binary; PREFIX, which must not exist yet, receives the runtime.
# build.sh caches the result under a key that includes this file.
set -euo pipefail

sources=$(realpath "$1")
zig=$(realpath "$2")
prefix=$3
[ ! -e "$prefix" ] || { echo "runtime.sh: $prefix exists" >&2; exit 2; }
jobs=${XSCTL_BUILD_JOBS:-$(nproc)}

work=$(mktemp -d "${TMPDIR:-/tmp}/xsctl-runtime.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 1' INT TERM HUP
deps=$work/deps
mkdir -p "$work/bin" "$deps/lib" "$deps/include"

# The compiler: zig's clang with its own glibc 2.17 link stubs and headers, so nothing
# of this machine's newer glibc (or its /usr/include) can get in. Optimised builds only:
# an unoptimised zig build traps on undefined behaviour, which configure tests contain.
# CPython's build information has the build's date in it, which zig counts an error.
cat >"$work/bin/cc" <<EOF
#!/bin/sh
exec "$zig" cc -target x86_64-linux-gnu.2.17 -mcpu=x86_64 -fno-sanitize=undefined \\
    -Wno-error=date-time "\$@"
EOF
for tool in ar ranlib; do
    printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$zig" "$tool" >"$work/bin/$tool"
done
chmod +x "$work/bin/"*
export ZIG_GLOBAL_CACHE_DIR=$work/zig-cache ZIG_LOCAL_CACHE_DIR=$work/zig-cache
export CC=$work/bin/cc AR=$work/bin/ar RANLIB=$work/bin/ranlib
export CFLAGS="-O2 -fPIC" CPPFLAGS="-I$deps/include" LDFLAGS="-L$deps/lib"
# only our own .pc files: the host's would add its include and library folders
export PKG_CONFIG_LIBDIR=$deps/lib/pkgconfig PKG_CONFIG_PATH=""

# unpack PACKAGE: the source tree of a fetched package with Debian's patches applied;
# prints its folder
unpack() {
    local dsc
    dsc=$(echo "$sources/$1"/*.dsc)
    mkdir -p "$work/src"
    dpkg-source --no-check --no-copy -x "$dsc" "$work/src/$1" >/dev/null
    echo "$work/src/$1"
}

step() { printf '==> %s (%ds)\n' "$1" "$SECONDS"; }
# quiet COMMAND...: its output goes to a log, shown (its end) only if it fails
quiet() {
    "$@" >"$work/log" 2>&1 || { tail -40 "$work/log" >&2; echo "runtime.sh: failed: $*" >&2; exit 1; }
}

step zlib
cd "$(unpack zlib)"
quiet ./configure --static --prefix="$deps"
quiet make -j"$jobs" libz.a
quiet make install

step bzip2
cd "$(unpack bzip2)"
quiet make -j"$jobs" libbz2.a CC="$CC" AR="$AR" RANLIB="$RANLIB" \
    CFLAGS="$CFLAGS -D_FILE_OFFSET_BITS=64"
cp libbz2.a "$deps/lib/" && cp bzlib.h "$deps/include/"

step xz
cd "$(unpack xz-utils)"
quiet ./configure --prefix="$deps" --disable-shared --enable-static --with-pic --disable-nls \
    --disable-xz --disable-xzdec --disable-lzmadec --disable-lzmainfo \
    --disable-lzma-links --disable-scripts --disable-doc
quiet make -j"$jobs"
quiet make install

step libffi
cd "$(unpack libffi)"
# Debian's source is a snapshot of the repository: configure is generated here
quiet autoreconf -fi
quiet ./configure --prefix="$deps" --disable-shared --enable-static --with-pic --disable-docs \
    --disable-multi-os-directory
quiet make -j"$jobs"
quiet make install

step openssl
cd "$(unpack openssl)"
# The configuration and CA bundle of the host's own OpenSSL: /etc/pki/tls is where
# CentOS 7 keeps them, so that its CA bundle is the default. No engines or modules
# to load at run time: everything is in the static library.
quiet ./Configure linux-x86_64 --prefix="$deps" --libdir=lib --openssldir=/etc/pki/tls \
    no-shared no-module no-engine no-tests no-docs no-apps -fPIC
quiet make -j"$jobs" build_libs
quiet make install_dev

step "CPython"
python_src=$work/src/python
mkdir -p "$python_src"
tar -xf "$(echo "$sources"/python3.*/*.orig.tar.*[!c])" -C "$python_src" --strip-components=1
cd "$python_src"
# Modules whose libraries a dom0 lacks or the app never uses are left out, as are the
# test modules; decimal and expat use the copies CPython carries.
nomods=()
for m in _tkinter _curses _curses_panel readline _dbm _gdbm _sqlite3 _uuid; do
    nomods+=("py_cv_module_$m=n/a")
done
# _ssl and _hashlib each carry a static OpenSSL: built into the interpreter, they share one
printf '*static*\n_ssl _ssl.c\n_hashlib _hashopenssl.c\n' >Modules/Setup.local
quiet env "${nomods[@]}" ./configure --prefix=/opt/xsctl --without-ensurepip \
    --disable-test-modules --with-openssl="$deps" --with-openssl-rpath=no \
    --without-system-libmpdec --without-system-expat
quiet make -j"$jobs"
# a module that failed to build is only a line in make's output: none may be missing
if grep -E -A3 "^(Failed to build|The necessary bits to build these optional modules were not found|Following modules built successfully but were removed)" "$work/log"; then
    exit 1
fi
stage=$work/stage
quiet make install DESTDIR="$stage"

step trim
root=$stage/opt/xsctl
lib=$root/lib/python3.13
# what an interpreter that runs one application needs: no headers, no static library,
# no test suites, no Tk, no IDLE, no pip bootstrap
rm -rf "$root/include" "$root/share" "$root/lib/pkgconfig" "$root/lib/libpython"* \
    "$lib/config-"* "$lib/test" "$lib/idlelib" "$lib/tkinter" "$lib/turtledemo" \
    "$lib/turtle.py" "$lib/ensurepip" "$lib/sqlite3" "$lib/curses" "$lib/pydoc_data" \
    "$lib/lib2to3" "$lib/__phello__"
find "$lib" -depth \( -name __pycache__ -o -name tests -o -name idle_test \) -type d \
    -exec rm -rf {} +
find "$root/bin" -mindepth 1 ! -name python3.13 -delete
ln -s python3.13 "$root/bin/python3"
strip --strip-all "$root/bin/python3.13"
find "$lib/lib-dynload" -name '*.so' -exec strip --strip-unneeded {} +

# the versions that went in, for anyone asking what an artifact holds
for d in "$sources"/*/; do
    basename "$(echo "$d"*.dsc)" .dsc
done >"$root/xsctl-runtime.txt"
"$zig" version | sed 's/^/zig /' >>"$root/xsctl-runtime.txt"

mv "$root" "$prefix"
step built
