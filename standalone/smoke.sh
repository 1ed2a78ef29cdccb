#!/usr/bin/env bash
# Runs the standalone artifact as an admin in dom0 would: copied into a folder whose path
# has spaces, with no Python on PATH, and a fresh home. It unpacks itself (timed);
# --version and --help; the runtime's own modules and OpenSSL's CentOS 7 defaults;
# `xsctl sim` and a CLI session against it over HTTPS; the same over the Unix socket
# (--url unix://...); a new version replacing the old runtime, but not while it runs;
# the implicit `local` profile, with xapi's socket and inventory where a dom0 has them
# (in a mount namespace of its own, so the host is not touched); the TUI in tmux until
# the demo's first screen (timed); and last, that nothing was written outside xsctl's
# own folders. Ends with "smoke: N passed, N failed".
#
#   standalone/smoke.sh [ARTIFACT]     (default: dist/xsctl-x86_64)
#
# Needs tmux, unshare (util-linux), and root or unprivileged user namespaces.
set -euo pipefail

here=$(dirname "$(realpath "$0")")
artifact=$(realpath "${1:-$here/../dist/xsctl-x86_64}")
version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$here/../xsctl/__init__.py")
for tool in tmux unshare python3; do
    command -v "$tool" >/dev/null || { echo "smoke.sh: needs $tool" >&2; exit 2; }
done

top=$(mktemp -d "${TMPDIR:-/tmp}/xsctl-smoke.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    tmux -L xsctl-smoke kill-server 2>/dev/null || true
    rm -rf "$top"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
t="$top/admin's files/xsctl for dom0"
home="$top/home of root"
bin="$top/tools no python"
mkdir -p "$t" "$home" "$bin" "$top/tmp"
cp "$artifact" "$t/xsctl-x86_64"
x="$t/xsctl-x86_64"

# PATH holds only what the launcher and a shell need: no Python of any kind
for tool in sh bash env tar xz tail mkdir mktemp mv rm readlink cat sleep; do
    ln -s "$(command -v "$tool")" "$bin/$tool"
done
# the artifact's environment: a clean one, as a dom0 login shell gives
# (no LANG: a dom0 may have none, and CentOS 7 has no C.UTF-8 locale to fall back on)
run_env=(env -i HOME="$home" PATH="$bin" TERM=dumb TMPDIR="$top/tmp")
run() { "${run_env[@]}" "$@"; }
passed=0
ok() { passed=$((passed + 1)); echo "smoke: ok: $*"; }
fail() { echo "smoke: FAIL: $*" >&2; echo "smoke: $passed passed, 1 failed"; exit 1; }
trap 'fail "line $LINENO: $BASH_COMMAND"' ERR
if run sh -c 'command -v python3 || command -v python || command -v python3.13' >/dev/null; then
    fail "a python is on the smoke PATH"
fi
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

cd "$t"
start=$(now)
out=$(run ./xsctl-x86_64 --version)
first=$(since "$start")
[ "$out" = "xsctl $version" ] || fail "--version printed '$out'"
runtime=$(echo "$home/.cache/xsctl/runtime/"*)
[ -x "$runtime/xsctl/bin/python3" ] || fail "nothing unpacked into $home/.cache/xsctl/runtime"
start=$(now)
run "$x" --version >/dev/null
second=$(since "$start")
ok "--version: $out (first run, unpacking: ${first}s; next runs: ${second}s)"

run "$x" --help | grep -q "^usage: xsctl" || fail "--help"
ok "--help"

# the interpreter's own modules that xsctl and its dependencies load, with OpenSSL's
# defaults where CentOS 7 keeps its configuration and CA bundle
probe='
import ssl, hashlib, ctypes, lzma, bz2, zlib, decimal, pyexpat, _cffi_backend
from cryptography.hazmat.bindings import _rust
import textual, keyring, XenAPI, xsctl.ui.app
paths = ssl.get_default_verify_paths()
assert paths.openssl_cafile == "/etc/pki/tls/cert.pem", paths
assert hashlib.sha256(b"").hexdigest().startswith("e3b0c442")
ctypes.CDLL(None)
print(ssl.OPENSSL_VERSION)'
openssl=$(run "$runtime/xsctl/bin/python3" -I -c "$probe") || fail "the runtime's modules"
ok "the runtime's modules: ssl ($openssl, CA bundle /etc/pki/tls/cert.pem), hashlib, ctypes, lzma, bz2, zlib, decimal, pyexpat, cffi, cryptography"

# --- the simulator, over HTTPS and its Unix socket
sock_dir="$top/run dir"
mkdir -p "$sock_dir"
"${run_env[@]}" "$x" sim --json --unix "$sock_dir/xapi" >"$top/sim.json" 2>"$top/sim.err" &
pids+=($!)
for _ in $(seq 300); do [ -s "$top/sim.json" ] && [ -S "$sock_dir/xapi" ] && break; sleep 0.1; done
[ -s "$top/sim.json" ] || { cat "$top/sim.err"; fail "xsctl sim printed nothing"; }
sim() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$top/sim.json" "$1"; }
exe=$(readlink "/proc/${pids[0]}/exe")
[[ $exe == "$runtime"/* ]] || fail "the simulator runs $exe, not the artifact's interpreter"
ok "xsctl sim serves $(sim url) and $sock_dir/xapi, run by the artifact's own interpreter"

(umask 077 && sim password >"$top/pw")
https=(--url "$(sim url)" --password-file "$top/pw" --accept-fingerprint "$(sim fingerprint)")
json_count() { python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
n=$(run "$x" "${https[@]}" vm list --json | json_count)
[ "$n" -gt 0 ] || fail "vm list over HTTPS found no VM"
run "$x" "${https[@]}" host list | grep -q xcp-ng-01 || fail "host list"
run "$x" "${https[@]}" sr list >/dev/null || fail "sr list"
vm=$(run "$x" "${https[@]}" vm list --json | python3 -c '
import json, sys
print(next(v["name_label"] for v in json.load(sys.stdin) if v["power_state"] == "Running"))')
run "$x" "${https[@]}" vm shutdown "$vm" --dry-run | grep -q "xe vm-shutdown" \
    || fail "vm shutdown --dry-run"
run "$x" "${https[@]}" vm shutdown "$vm" >/dev/null || fail "vm shutdown $vm"
state() { run "$x" "$@" vm show "$vm" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["power_state"])'; }
[ "$(state "${https[@]}")" = Halted ] || fail "$vm did not halt"
ok "CLI over HTTPS: vm list ($n VMs), host list, sr list, vm shutdown $vm"

unix=(--url "unix://$sock_dir/xapi")
[ "$(state "${unix[@]}")" = Halted ] || fail "the Unix socket sees another pool"
run "$x" "${unix[@]}" vm start "$vm" >/dev/null || fail "vm start over the Unix socket"
[ "$(state "${unix[@]}")" = Running ] || fail "$vm did not start"
ok "CLI over the Unix socket (--url unix://...): vm show, vm start $vm"

# --- a new version replaces the runtime of the old one, but not while it runs: a copy
# of the artifact under another id stands for the new version
other_version() {  # other_version ID: the artifact as version ID would be
    local offset
    offset=$(head -c 2048 "$x" | sed -n 's/^offset=\([0-9]*\).*/\1/p')
    { head -c $((offset - 1)) "$x" | sed "s/^id=.*/id=$1/"; tail -c "+$offset" "$x"; } \
        >"$top/xsctl-$1"
    chmod +x "$top/xsctl-$1"
}
other_version 00000000000000b1
(cd "$top" && run sh xsctl-00000000000000b1 --version >/dev/null) || fail "sh xsctl-x86_64"
[ -d "$runtime" ] || fail "the runtime the simulator runs from was removed"
[ -d "$home/.cache/xsctl/runtime/00000000000000b1" ] || fail "the new version did not unpack"
kill "${pids[@]}"
wait "${pids[@]}" 2>/dev/null || true
pids=()
other_version 00000000000000b2
"${run_env[@]/#PATH=*/PATH=$top:$bin}" xsctl-00000000000000b2 --version >/dev/null \
    || fail "xsctl-x86_64 found on PATH"
left=$(ls "$home/.cache/xsctl/runtime")
[ "$left" = 00000000000000b2 ] || fail "old runtimes left: $left"
rm "$top"/xsctl-00000000000000b?
run "$x" --version >/dev/null  # back to the one under test
runtime=$(echo "$home/.cache/xsctl/runtime/"*)
ok "a new version (run as sh FILE, and from PATH) keeps an old runtime while a process runs from it, and removes it after"

# --- the implicit `local` profile: xapi's socket and inventory where a dom0 has them, in
# a mount namespace whose /etc and /var/lib are overlays that vanish with it
ns=(unshare --mount --propagation private)
[ "$(id -u)" = 0 ] || ns=(unshare --user --map-root-user --mount --propagation private)
cat >"$top/local.sh" <<'EOF'
set -euo pipefail
top=$1; x=$2; shift 2
for d in etc var/lib; do
    mkdir -p "$top/ov/$d/upper" "$top/ov/$d/work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$top/ov/$d/upper,workdir=$top/ov/$d/work" "/$d"
done
echo "INSTALLATION_UUID='smoke'" >/etc/xensource-inventory
mkdir -p /var/lib/xcp
"$@" "$x" sim --unix /var/lib/xcp/xapi >/dev/null 2>&1 &
sim=$!
trap 'kill $sim' EXIT
for _ in $(seq 300); do [ -S /var/lib/xcp/xapi ] && break; sleep 0.1; done
"$@" "$x" host list
"$@" "$x" --profile local vm list --json >"$top/local.json"
EOF
"${ns[@]}" bash "$top/local.sh" "$top" "$x" "${run_env[@]}" >"$top/local.out" 2>&1 \
    || { cat "$top/local.out"; fail "the implicit local profile"; }
grep -q "xcp-ng-01" "$top/local.out" || { cat "$top/local.out"; fail "host list via local"; }
n=$(json_count <"$top/local.json")
[ "$n" -gt 0 ] || fail "--profile local found no VM"
[ ! -e /etc/xensource-inventory ] || fail "the namespace leaked /etc/xensource-inventory"
ok "the implicit local profile: /var/lib/xcp/xapi with no --url, and --profile local ($n VMs)"

# --- the TUI: the demo in tmux at a dom0 console's 80x24, timed to its first screen
cat >"$top/demo.sh" <<'EOF'
top=$1; shift
"$@" ./xsctl-x86_64 demo
echo $? >"$top/demo.rc"
exec sleep 60
EOF
start=$(now)
tmux -L xsctl-smoke -f /dev/null new-session -d -s demo -x 80 -y 24 -c "$t" \
    bash "$top/demo.sh" "$top" env -i HOME="$home" PATH="$bin" TERM=xterm-256color \
    TMPDIR="$top/tmp"
screen() { tmux -L xsctl-smoke capture-pane -p -t demo; }
for _ in $(seq 600); do screen | grep -Eq "xcp-ng-01 +master" && break; sleep 0.05; done
startup=$(since "$start")
screen | grep -Eq "xcp-ng-01 +master" || { screen; fail "the demo's status screen did not show"; }
screen | grep -q "Demo pool" || { screen; fail "no pool name in the header"; }
tmux -L xsctl-smoke send-keys -t demo 2
for _ in $(seq 200); do screen | grep -q "web-01" && break; sleep 0.05; done
screen | grep -q "web-01" || { screen; fail "the VM view did not show"; }
tmux -L xsctl-smoke send-keys -t demo q
for _ in $(seq 200); do screen | grep -q "Demo pool" || break; sleep 0.05; done
for _ in $(seq 200); do [ -s "$top/demo.rc" ] && break; sleep 0.05; done
[ "$(cat "$top/demo.rc" 2>/dev/null)" = 0 ] || { screen; fail "q did not quit the app"; }
ok "the TUI: the demo's first screen at 80x24 in ${startup}s, the VM view, q quits"

# --- what it wrote: its runtime in the cache, and xsctl's own XDG folders; nothing in
# the folder it was run from, nothing left in TMPDIR
stray=$(cd "$home" && find . -mindepth 1 \( -path ./.cache -o -path ./.cache/xsctl -o \
    -path './.cache/xsctl/*' -o -path ./.config -o -path ./.config/xsctl -o \
    -path './.config/xsctl/*' -o -path ./.local -o -path ./.local/state -o \
    -path ./.local/state/xsctl -o -path './.local/state/xsctl/*' \) -prune -o -print)
[ -z "$stray" ] || fail "written outside xsctl's folders: $stray"
[ "$(ls -A "$t")" = xsctl-x86_64 ] || fail "written beside the artifact: $(ls -A "$t")"
[ -z "$(ls -A "$top/tmp")" ] || fail "left in TMPDIR: $(ls -A "$top/tmp")"
ok "wrote only $(cd "$home" && find . -maxdepth 3 -path './.*/xsctl' | sort | tr '\n' ' ')"
echo "smoke: artifact $(du -k "$artifact" | cut -f1) KiB, unpacked $(du -sk "$runtime" | cut -f1) KiB"
echo "smoke: $passed passed, 0 failed"
