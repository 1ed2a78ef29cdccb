#!/bin/sh
# xsctl for x86_64 Linux with glibc 2.17 or newer (XenServer 8, XCP-ng 8.3 dom0): a
# CPython runtime and xsctl, in the tar.xz that follows this script. The first run
# unpacks it into $XDG_CACHE_HOME/xsctl/runtime/ID (~/.cache by default); the next ones
# start from there. Nothing else is written outside xsctl's own XDG folders.
id=@ID@
offset=@OFFSET@
cache=${XDG_CACHE_HOME:-}
case $cache in /*) ;; *) cache=$HOME/.cache ;; esac
runtimes=$cache/xsctl/runtime
dir=$runtimes/$id
python=$dir/xsctl/bin/python3

if [ ! -x "$python" ]; then
    self=$0
    # run as `sh xsctl-x86_64`, or found on PATH
    case $self in */*) ;; *) [ -f "$self" ] || self=$(command -v -- "$self") ;; esac
    for tool in tar xz tail; do
        command -v $tool >/dev/null 2>&1 || {
            echo "xsctl: unpacking needs $tool, which is not on PATH" >&2
            exit 2
        }
    done
    (umask 077 && mkdir -p "$runtimes") || exit 2
    [ -t 2 ] && echo "xsctl: first run of this version: unpacking into $dir" >&2
    tmp=$(mktemp -d "$runtimes/.unpacking.XXXXXX") || exit 2
    if ! tail -c "+$offset" "$self" | xz -dc | tar -xf - -C "$tmp"; then
        rm -rf "$tmp"
        echo "xsctl: could not unpack $self into $runtimes" >&2
        exit 2
    fi
    # whole or not at all: another run may be unpacking the same file at this moment
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
    # the runtimes of other versions go, unless a process still runs from one
    for other in "$runtimes"/*; do
        [ "$other" = "$dir" ] && continue
        [ -d "$other/xsctl" ] || continue
        busy=no
        for exe in /proc/[0-9]*/exe; do
            case $(readlink "$exe" 2>/dev/null) in "$other"/*) busy=yes && break ;; esac
        done
        [ $busy = no ] && rm -rf "$other"
    done
fi
# -I: the host's PYTHON* variables, user site-packages and current folder stay out
exec "$python" -I -m xsctl "$@"
