"""The bash completion script, run by a real bash."""

from __future__ import annotations

import subprocess

from tests.cli.helpers import xsctl


def complete(script: str, *words: str) -> list[str]:
    quoted = " ".join(f"'{w}'" for w in words)
    out = subprocess.run(
        ["bash", "-c", f"{script}\nCOMP_WORDS=(xsctl {quoted}); COMP_CWORD={len(words)}; "
         '_xsctl; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, check=True,
    ).stdout
    return [w for w in out.splitlines() if w]


def test_bash_completion_knows_commands_and_options() -> None:
    r = xsctl("completion", "bash")
    assert r.code == 0
    script = r.out
    assert complete(script, "vm", "sh") == ["show", "shutdown"]
    assert complete(script, "vm", "shutdown", "--fo") == ["--force"]
    assert complete(script, "--read-only", "vm", "l") == ["list"]
    assert "--accept-fingerprint" in complete(script, "vm", "list", "--acc")
    assert complete(script, "tru") == ["trust"]
