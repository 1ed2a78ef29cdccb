#!/usr/bin/env bash
# Makes dist/xsctl-x86_64: xsctl as one file for x86_64 Linux with glibc 2.17 or newer
# (XenServer 8 and XCP-ng 8.3 dom0), needing no Python on the host. The file is a shell
# launcher followed by a tar.xz of a CPython runtime, the dependencies and xsctl; on its
# first run it unpacks itself into the user's cache folder.
#
#   standalone/build.sh [OUTPUT]
#
# Needs apt-get and dpkg-source (dpkg-dev), make, perl, autoconf, automake and libtool,
# strip (binutils), xz, and python3 with pip and venv, on a Debian machine whose apt
# reaches a Debian mirror. The CPython runtime (runtime.sh, several minutes) is cached
# under $XSCTL_BUILD_CACHE (default: $XDG_CACHE_HOME/xsctl-build), keyed by the source
# packages taken, the zig version, runtime.sh and the sources list; the rest of the
# build takes a minute or two.
set -euo pipefail

here=$(dirname "$(realpath "$0")")
repo=$(dirname "$here")
out=$(realpath -m "${1:-$repo/dist/xsctl-x86_64}")
zig_version=0.15.2
py=3.13
xdg_cache=${XDG_CACHE_HOME:-}
[[ $xdg_cache == /* ]] || xdg_cache=$HOME/.cache
cache=${XSCTL_BUILD_CACHE:-$xdg_cache/xsctl-build}
mkdir -p "$cache"
SECONDS=0
step() { printf '==> %s (%ds)\n' "$1" "$SECONDS"; }
# pip, quiet: its warnings about index locations of this machine's configuration are noise
pip() {
    "$tools/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location '" >&2)
}

for tool in apt-get dpkg-source dpkg make perl autoreconf libtoolize strip xz tar python3; do
    command -v "$tool" >/dev/null || { echo "build.sh: needs $tool" >&2; exit 2; }
done

# --- zig, from PyPI
tools=$cache/tools/zig-$zig_version
if [ ! -x "$tools/bin/python" ]; then
    step "zig $zig_version"
    rm -rf "$tools"
    python3 -m venv "$tools"
    pip install -q "ziglang==$zig_version"
fi
zig=$("$tools/bin/python" -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')

# --- the source packages, through apt with a private state of its own: the mirrors
# this machine's apt uses, asked for Debian 13 and unstable sources
step "Debian source packages"
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
mirror_list() {  # the URIs of the configured deb entries whose suites match $1
    {
        grep -hE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -E 's/\[[^]]*\]//' | awk -v want="$1" '$3 ~ want {print $2}'
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -e "$f" ] || continue
            awk -v want="$1" '
                /^[[:space:]]*$/ { if (uris != "" && suites ~ want) print uris; uris = ""; suites = "" }
                /^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
                /^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
                END { if (uris != "" && suites ~ want) print uris }' "$f"
        done
    } | tr ' ' '\n' | grep -v '^$' | sort -u
}
{
    for uri in $(mirror_list '(^|[[:space:]])[a-z]+($|[[:space:]]|-updates)'); do
        for suite in trixie trixie-updates sid; do echo "deb-src $uri $suite main"; done
    done
    for uri in $(mirror_list -security); do
        echo "deb-src $uri trixie-security main"
    done
} >"$apt_dir/sources.list"
[ -s "$apt_dir/sources.list" ] || { echo "build.sh: no Debian mirror in /etc/apt" >&2; exit 2; }
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir" -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=root" -o "Acquire::Retries=3")
apt-get "${apt_opts[@]}" -qq update

newest_first() {  # Debian version order
    local sorted=() v i
    for v in "$@"; do
        i=0
        while ((i < ${#sorted[@]})) && dpkg --compare-versions "${sorted[i]}" ge "$v"; do
            i=$((i + 1))
        done
        sorted=("${sorted[@]:0:i}" "$v" "${sorted[@]:i}")
    done
    printf '%s\n' "${sorted[@]}"
}
sources=$cache/work/sources
rm -rf "$sources" && mkdir -p "$sources"
key_input=$(sha256sum "$here/runtime.sh" "$here/sources" | cut -c1-64)
key_input+=" zig $zig_version"
while read -r pkg series _; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    mapfile -t versions < <(apt-cache "${apt_opts[@]}" showsrc "$pkg" \
        | awk -v p="$pkg" '/^Package:/ {ours = ($2 == p)} ours && /^Version:/ {print $2}' \
        | sort -u | grep -F -- "${series:-}" || true)
    got=""
    for v in $(newest_first "${versions[@]}"); do
        # only what the package lists: a version still in the index can be gone from
        # the mirror, so the next one down is tried
        [[ $series == "" || ${v#*:} == "$series"* ]] || continue
        dl=$cache/downloads/$pkg/${v//[:~]/_}
        mkdir -p "$dl"
        if (cd "$dl" && apt-get "${apt_opts[@]}" -qq source --download-only "$pkg=$v" \
                >/dev/null 2>&1); then
            got=$v
            break
        fi
        rm -rf "$dl"
    done
    [ -n "$got" ] || { echo "build.sh: no version of $pkg could be fetched" >&2; exit 1; }
    echo "    $pkg $got"
    ln -s "$dl" "$sources/$pkg"
    key_input+=" $pkg=$got $(cat "$dl"/*.dsc | sha256sum | cut -c1-64)"
done <"$here/sources"
key=$(echo "$key_input" | sha256sum | cut -c1-16)

# --- the runtime, from the cache or built
runtime=$cache/runtime/$key
if [ -x "$runtime/bin/python3" ]; then
    step "runtime $key (cached)"
else
    step "runtime $key: building (several minutes)"
    mkdir -p "$cache/runtime"
    rm -rf "$runtime.partial"
    "$here/runtime.sh" "$sources" "$zig" "$runtime.partial"
    mv -T "$runtime.partial" "$runtime"
    # older runtimes are left for their own checkouts only while they are young
    find "$cache/runtime" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -mtime +30 \
        -exec rm -rf {} +
fi

# --- the app on top: xsctl's wheel and its dependencies, as wheels built for
# manylinux2014 (glibc 2.17) or for any platform
step "xsctl and its dependencies"
work=$cache/work/app
rm -rf "$work" && mkdir -p "$work"
stage=$work/xsctl
cp -a "$runtime" "$stage"
site=$stage/lib/python$py/site-packages
pip wheel -q --no-deps -w "$work/wheel" "$repo"
pip install -q --target "$site" --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version "$py" --implementation cp \
    --no-compile "$work"/wheel/xsctl-*.whl
rm -rf "${site:?}/bin"
find "$site" -depth \( -name tests -o -name __pycache__ \) -type d -exec rm -rf {} +
# compiled once here, against their contents, not their dates: nothing is written on
# the host, and a clock behind the build's cannot make them stale
"$stage/bin/python3" -I -m compileall -q -j0 --invalidation-mode unchecked-hash \
    "$stage/lib/python$py" >/dev/null
pip freeze --path "$site" >>"$stage/xsctl-runtime.txt"

step "ELF check"
python3 "$here/elfcheck.py" "$stage"

step "archive"
# a fixed order, owner and date make the same inputs give the same payload
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf - xsctl \
    | xz -T0 -9 >"$work/payload.tar.xz"
id=$(sha256sum "$work/payload.tar.xz" | cut -c1-16)
mkdir -p "$(dirname "$out")"
# the launcher with its id and the payload's offset, written in a field of fixed width
sed "s/@ID@/$id/" "$here/launcher.sh" >"$work/launcher"
size=$(stat -c %s "$work/launcher")
sed -i "s/@OFFSET@/$(printf '%-8s' $((size + 1)))/" "$work/launcher"
[ "$(stat -c %s "$work/launcher")" = "$size" ] || { echo "build.sh: launcher offset" >&2; exit 1; }
cat "$work/launcher" "$work/payload.tar.xz" >"$out.partial"
chmod 755 "$out.partial"
mv -f "$out.partial" "$out"
step "$out: $(du -h "$out" | cut -f1), payload $id"
