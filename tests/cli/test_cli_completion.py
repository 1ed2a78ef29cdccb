"""Completion in bash, zsh and fish, run by the real shells: commands and options
from the parser, and the names of the default profile's VMs, hosts and SRs from the
names file the CLI and the app keep (completing connects to nothing)."""

from __future__ import annotations

import json
import os
import shlex
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import keyring
import pytest

from tests.cli.helpers import xsctl
from xsctl.config import cache_dir
from xsctl.sim import Simulator

ENV_PATH = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")


def shell_env() -> dict[str, str]:
    return dict(os.environ, PATH=ENV_PATH)  # the scripts run `xsctl completion names`


def complete(script: str, *words: str) -> list[str]:
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    out = subprocess.run(
        ["bash", "-c", f"{script}\nCOMP_WORDS=(xsctl {quoted}); COMP_CWORD={len(words)}; "
         '_xsctl; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, check=True, env=shell_env(),
    ).stdout
    return [w for w in out.splitlines() if w]


def complete_zsh(script: str, *words: str) -> list[str]:
    """zsh runs the script's own function; compadd, which only exists inside zsh's
    completion widgets, is stood in for by one that prints what it is given and
    keeps what matches the word being completed, as compadd does."""
    stub = ('compadd() { local w; for w in "${@[${@[(i)--]}+1,-1]}"; '
            'do [[ "$w" == "$PREFIX"* ]] && print -r -- "$w"; done; }\n'
            'compdef() { : }\n_files() { print -r -- "<files>" }\n')
    arr = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("xsctl", *words))
    run = f"words=({arr}); CURRENT={len(words) + 1}; PREFIX={words[-1]!r}; _xsctl"
    done = subprocess.run(["zsh", "-f", "-c", stub + script + "\n" + run],
                          capture_output=True, text=True, env=shell_env())
    assert done.stderr == ""  # (its status is that of the last test it made)
    return [w for w in done.stdout.splitlines() if w]


def complete_fish(script: str, line: str) -> list[str]:
    # sourced from a file, as a user's config does: the script is longer than one
    # argument may be (MAX_ARG_STRLEN, 128 KiB)
    with tempfile.NamedTemporaryFile("w", suffix=".fish") as f:
        f.write(script)
        f.flush()
        out = subprocess.run(
            ["fish", "--no-config", "-c", f"source {shlex.quote(f.name)}\ncomplete -C {line!r}"],
            capture_output=True, text=True, check=True, env=shell_env()).stdout
    return [w.split("\t")[0] for w in out.splitlines() if w]


def test_bash_completion_knows_commands_and_options() -> None:
    r = xsctl("completion", "bash")
    assert r.code == 0
    script = r.out
    assert complete(script, "vm", "sh") == ["show", "shutdown"]
    assert complete(script, "vm", "shutdown", "--fo") == ["--force"]
    assert complete(script, "--read-only", "vm", "l") == ["list"]
    assert "--accept-fingerprint" in complete(script, "vm", "list", "--acc")
    assert complete(script, "tru") == ["trust"]
    assert "--password" not in complete(script, "vm", "list", "--pass")  # hidden


def test_zsh_and_fish_know_commands_and_options() -> None:
    z = xsctl("completion", "zsh").out
    assert complete_zsh(z, "vm", "sh") == ["show", "shutdown"]
    assert complete_zsh(z, "vm", "shutdown", "--fo") == ["--force"]
    assert complete_zsh(z, "tru") == ["trust"]
    f = xsctl("completion", "fish").out
    assert complete_fish(f, "xsctl vm sh") == ["show", "shutdown"]
    assert complete_fish(f, "xsctl vm shutdown --fo") == ["--force"]
    assert complete_fish(f, "xsctl tru") == ["trust"]
    assert "--completion" not in complete_fish(f, "xsctl --")


@pytest.fixture
def remembered(sim: Simulator, tmp_path: Path) -> Simulator:
    """The default profile used once: its names are on disk; then the pool goes away."""
    vm = next(r for r, v in sim.store.all("VM").items() if v["name_label"] == "db-02")
    sim.store.update(vm, {"name_label": "evil\x1b]0;PWNED\x07"})
    assert xsctl("profile", "add", "lab", "--url", sim.url, "--default").code == 0
    assert xsctl("profile", "add", "other", "--url", "https://other.example").code == 0
    keyring.set_password("xsctl", f"root@{sim.url}", sim.password)
    accept = ["--accept-fingerprint", sim.fingerprint]
    assert xsctl(*accept, "vm", "list").code == 0
    assert xsctl("sr", "list").code == 0
    sim.stop()  # completing must not need it
    return sim


def test_the_names_file_holds_names_only_and_is_private(remembered: Simulator) -> None:
    path = cache_dir() / "names" / "lab.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    data = json.loads(path.read_text())
    assert set(data) == {"url", "written", "vm", "host", "sr", "vdi"}
    assert "web-01" in data["vm"] and "[lab] test-vm" in data["vm"]
    assert not [n for n in data["vm"] if "\x1b" in n or "PWNED" in n]  # not typeable
    assert not [n for n in data["vm"] if "Control domain" in n]  # guests only
    assert data["host"] == ["xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
    assert "NFS storage" in data["sr"]
    # local SRs as they are named: every host has a "Local storage"
    assert "Local storage on xcp-ng-02" in data["sr"] and "Local storage" not in data["sr"]
    assert "old-web 0" in data["vdi"]
    r = xsctl("completion", "names", "vm")
    assert r.code == 0 and "web-01" in r.out.splitlines()
    assert xsctl("completion", "names", "profile").out.splitlines() == ["lab", "other"]
    assert xsctl("completion", "names", "vm", "--profile", "other").out == ""
    assert xsctl("completion", "names", "nonsense").out == ""


def test_bash_completes_names(remembered: Simulator) -> None:
    script = xsctl("completion", "bash").out
    assert complete(script, "vm", "start", "web-0") == ["web-01", "web-02", "web-03"]
    assert complete(script, "vm", "show", "web-01", "db") == ["db-01"]  # several VMs
    assert complete(script, "vm", "start", "[l") == [r"\[lab\]\ test-vm"]
    assert complete(script, "vm", "start", "web-01", "--on", "xcp") == [
        "xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
    assert complete(script, "vm", "migrate", "web-01", "--to", "") == [
        "xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
    assert complete(script, "--profile", "") == ["lab", "other"]
    assert complete(script, "sr", "scan", "Local") == [
        r"Local\ storage\ on\ xcp-ng-01", r"Local\ storage\ on\ xcp-ng-02",
        r"Local\ storage\ on\ xcp-ng-03"]
    assert complete(script, "vdi", "destroy", "old-") == [r"old-web\ 0"]
    assert complete(script, "vdi", "copy", "scratch", "--sr", "Arc") == ["Archive"]
    assert complete(script, "profile", "remove", "o") == ["other"]
    assert complete(script, "-p", "other", "vm", "start", "web") == []  # not remembered
    assert sorted(complete(script, "vm", "start", "--pa")) == [
        "--password-file", "--password-stdin", "--paused"]


def test_zsh_and_fish_complete_names(remembered: Simulator) -> None:
    z = xsctl("completion", "zsh").out
    assert complete_zsh(z, "vm", "start", "web-0") == ["web-01", "web-02", "web-03"]
    assert complete_zsh(z, "vm", "start", "[l") == ["[lab] test-vm"]  # compadd quotes
    assert complete_zsh(z, "vm", "start", "web-01", "--on", "") == [
        "xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
    assert complete_zsh(z, "--profile", "") == ["lab", "other"]
    assert complete_zsh(z, "--password-file", "x") == ["<files>"]
    f = xsctl("completion", "fish").out
    assert complete_fish(f, "xsctl vm start web-0") == ["web-01", "web-02", "web-03"]
    assert complete_fish(f, "xsctl vm start web-01 --on xcp") == [
        "xcp-ng-01", "xcp-ng-02", "xcp-ng-03"]
    assert complete_fish(f, "xsctl --profile ") == ["lab", "other"]
    assert complete_fish(f, "xsctl profile remove o") == ["other"]
    assert complete_fish(f, "xsctl -p other vm start web") == []
