"""What xsctl keeps on disk is its user's alone: the config, state and cache folders
are 0700 and every file in them 0600, from the moment it is created.

The commands run in a child process with umask 000 (so that anything created with
default permissions would be world-readable), under an audit hook that looks at each
file of ours at the moment it is chmod-ed or renamed into place: a file written
first and narrowed after would be caught open in between."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.cli.helpers import conn_args, password_file
from xsctl.sim import Simulator

CHILD = r"""
import json, os, stat, sys
os.umask(0)
roots = [os.environ[k] for k in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")]
seen = []

def hook(event, args):
    if event in ("os.chmod", "os.rename") and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(os.fspath(args[0]))
        if any(path.startswith(r) for r in roots) and os.path.isfile(path):
            seen.append([event, path, stat.S_IMODE(os.stat(path).st_mode)])

sys.addaudithook(hook)
from xsctl import cli
from xsctl.ui.screens.connect import remember_last
for argv in json.loads(sys.argv[1]):
    code = cli.main(argv)
    assert code == 0, (argv, code)
remember_last("lab")
with open(sys.argv[2], "w") as out:  # stdout has the commands' own output
    json.dump(seen, out)
"""


def test_every_file_is_private_from_its_first_byte(sim: Simulator, tmp_path: Path,
                                                   isolated_home: dict[str, str]) -> None:
    conn = conn_args(sim, password_file(sim, tmp_path))
    runs = [
        ["profile", "add", "lab", "--url", sim.url],  # config.toml
        [*conn, "vm", "list"],  # known_hosts (the accepted pin) and the log
        ["--profile", "lab", "--password-file", conn[3], "host", "list"],
        ["trust", "forget", "127.0.0.1:" + str(sim.port)],  # known_hosts rewritten
        [*conn, "sr", "list"],
    ]
    report = tmp_path / "seen.json"
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(runs), str(report)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    seen = json.loads(report.read_text())
    assert seen  # the hook did see our files being put in place
    caught = [(event, path, oct(mode)) for event, path, mode in seen if mode & 0o077]
    assert caught == []  # no file of ours was ever open to others, even for a moment

    files: dict[str, str] = {}
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        ours = Path(isolated_home[var]) / "xsctl"
        if not ours.exists():
            continue
        for p in [ours, *ours.rglob("*")]:
            mode = stat.S_IMODE(p.stat().st_mode)
            if p.is_dir():
                assert mode == 0o700, (p, oct(mode))
            else:
                files[p.name] = oct(mode)
    assert files == {"config.toml": "0o600", "known_hosts": "0o600", "xsctl.log": "0o600",
                     "last_profile": "0o600", "lab.json": "0o600"}  # names, for completion


def test_an_old_open_config_folder_is_narrowed(sim: Simulator, tmp_path: Path) -> None:
    """Folders made 0755 by an earlier version are made 0700 on the next run."""
    from tests.cli.helpers import xsctl
    from xsctl.config import config_dir, state_dir

    for d in (config_dir(), state_dir()):
        d.mkdir(parents=True)
        d.chmod(0o755)
    assert xsctl("profile", "list").code == 0
    assert stat.S_IMODE(config_dir().stat().st_mode) == 0o700
    assert stat.S_IMODE(state_dir().stat().st_mode) == 0o700
