#!/usr/bin/env bash
# CI's step for the standalone artifact (README "Running in dom0"): the build tools when
# missing, the build with its ELF check (the CPython runtime comes from the cache while
# its sources and scripts are unchanged), then the artifact's smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in autoreconf:autoconf automake:automake libtoolize:libtool dpkg-source:dpkg-dev \
    make:make perl:perl strip:binutils xz:xz-utils tmux:tmux unshare:util-linux; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo -n"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

SECONDS=0
standalone/build.sh dist/xsctl-x86_64
echo "standalone: build took ${SECONDS}s"
standalone/smoke.sh dist/xsctl-x86_64
