"""Bad input on the command line, in the config files and in what they point to: each
case is one clear message and the right exit code (2 usage or configuration, naming
the file and the key; 3 connection or trust), never a traceback. The CLI runs in this
process, so an exception that escaped would fail the test itself."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cli.helpers import Run, password_file, xsctl
from xsctl.config import config_dir, config_file, known_hosts_file
from xsctl.sim import Simulator

SECRET = "hunter2-not-shown"


@dataclass
class Case:
    argv: list[str]  # {url}, {pw}, {fp}, {tmp} are filled in
    code: int
    says: str
    setup: Callable[[Path], None] | None = None
    never: list[str] = field(default_factory=list)  # must not appear anywhere


def config(text: str | bytes) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        path = config_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return write


def known_hosts(text: bytes | None) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        path = known_hosts_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            path.mkdir()
        else:
            path.write_bytes(text)
    return write


def file_at(name: str, content: bytes | None, mode: int = 0o600) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        p = tmp / name
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
            p.chmod(mode)
    return write


def config_dir_is_a_file(tmp: Path) -> None:
    config_dir().parent.mkdir(parents=True, exist_ok=True)
    config_dir().write_text("not a folder")


CONN = ["--url", "{url}", "--password-file", "{pw}", "--accept-fingerprint", "{fp}"]
NOSIM = ["--url", "https://127.0.0.1:9", "--password-file", "{pw}"]

CASES = {
    # --timeout
    "timeout -1": Case(["--timeout", "-1", *NOSIM, "vm", "list"], 2, "a timeout is a number of seconds"),
    "timeout nan": Case(["--timeout", "nan", *NOSIM, "vm", "list"], 2, "a timeout is a number"),
    "timeout inf": Case(["--timeout", "inf", *NOSIM, "vm", "list"], 2, "a timeout is a number"),
    "timeout 1e309": Case(["--timeout", "1e309", *NOSIM, "vm", "list"], 2, "at most 86400"),
    "timeout word": Case(["--timeout", "soon", *NOSIM, "vm", "list"], 2, "not a number of seconds"),
    # URLs
    "300-character host": Case(["--url", "https://" + "a" * 300, "vm", "list"], 2,
                               "not a valid host name"),
    "bad zone id": Case(["--url", "https://[fe80::1%lo]", "vm", "list"], 2,
                        "write it as [fe80::1%25eth0]"),
    "not IPv6": Case(["--url", "https://[fe80::zz]", "vm", "list"], 2,
                     "does not appear to be an IPv4 or IPv6 address"),
    "port 0": Case(["--url", "https://127.0.0.1:0", "vm", "list"], 2, "bad port"),
    "port 70000": Case(["--url", "https://127.0.0.1:70000", "vm", "list"], 2, "bad port"),
    "unclosed bracket": Case(["--url", "https://[::1", "vm", "list"], 2, "not a xapi URL"),
    "ftp": Case(["--url", "ftp://pool", "vm", "list"], 2, "not a xapi URL"),
    "relative socket": Case(["--url", "unix://var/lib/xcp/xapi", "vm", "list"], 2,
                            "absolute path"),
    "escape codes": Case(["--url", "https://pool\x1b[2J", "vm", "list"], 2,
                         "control characters", never=["\x1b"]),
    "credentials in the URL": Case(["--url", f"https://root:{SECRET}@127.0.0.1", "vm", "list"],
                                   2, "cannot carry a user name or a password", never=[SECRET]),
    "plain http": Case([*NOSIM[:1], "http://127.0.0.1:9", *NOSIM[2:], "vm", "list"], 3,
                       "--insecure-http"),
    # passwords
    "--password": Case(["--password", SECRET, "vm", "list"], 2, "there is no password option",
                       never=[SECRET]),
    "--password=": Case(["vm", "list", f"--password={SECRET}"], 2, "--password-stdin",
                        never=[SECRET]),
    "--passwd": Case(["vm", "start", "web-01", "--passwd", SECRET], 2,
                     "there is no password option", never=[SECRET]),
    "password file missing": Case([*CONN[:2], "--password-file", "{tmp}/nope", *CONN[4:],
                                   "vm", "list"], 2, "cannot read the password file"),
    "password file a folder": Case([*CONN[:2], "--password-file", "{tmp}/pwdir", *CONN[4:],
                                    "vm", "list"], 2, "is a folder",
                                   setup=file_at("pwdir", None)),
    "password file not UTF-8": Case([*CONN[:2], "--password-file", "{tmp}/latin1", *CONN[4:],
                                     "vm", "list"], 2, "not UTF-8",
                                    setup=file_at("latin1", b"caf\xe9\n")),
    # trust
    "wrong fingerprint": Case([*CONN[:4], "--accept-fingerprint", "SHA256:" + "00:" * 31 + "00",
                               "vm", "list"], 3, "the server's certificate is"),
    "known_hosts not UTF-8": Case([*CONN[:4], "vm", "list"], 2, "known_hosts: not UTF-8",
                                  setup=known_hosts(b"\xff\xfe\x00garbage")),
    "known_hosts a folder": Case([*CONN[:4], "vm", "list"], 2, "known_hosts",
                                 setup=known_hosts(None)),
    "CA file garbage": Case([*CONN[:4], "--ca-file", "{tmp}/ca.pem", "vm", "list"], 2,
                            "holds no PEM certificate", setup=file_at("ca.pem", b"garbage\n")),
    "CA file a folder": Case([*CONN[:4], "--ca-file", "{tmp}/cadir", "vm", "list"], 2,
                             "is a folder", setup=file_at("cadir", None)),
    "CA file missing": Case([*CONN[:4], "--ca-file", "{tmp}/none.pem", "vm", "list"], 2,
                            "CA file not found"),
    # config.toml
    "profiles a string": Case(["vm", "list"], 2, "config.toml: profiles: must be a table",
                              setup=config('profiles = "x"\n')),
    "profiles a list": Case(["profile", "list"], 2, "config.toml: profiles: must be a table",
                            setup=config("profiles = [1, 2]\n")),
    "default a number": Case(["vm", "list"], 2, "config.toml: default: must be the name",
                             setup=config("default = 3\n")),
    "url a number": Case(["--profile", "lab", "vm", "list"], 2,
                         "config.toml: profiles.lab.url: must be a string",
                         setup=config("[profiles.lab]\nurl = 5\n")),
    "ca_file a number": Case(["--profile", "lab", "vm", "list"], 2,
                             "profiles.lab.ca_file: must be a string",
                             setup=config('[profiles.lab]\nurl = "https://h"\nca_file = 1\n')),
    "read_only a word": Case(["profile", "list"], 2, "profiles.lab.read_only: must be true or false",
                             setup=config('[profiles.lab]\nurl = "https://h"\nread_only = "yes"\n')),
    "profile URL unclosed": Case(["vm", "list"], 2, "profiles.lab.url: not a xapi URL",
                                 setup=config('[profiles.lab]\nurl = "https://[::1"\n')),
    "profile a string": Case(["vm", "list"], 2, "profiles.lab: must be a table",
                             setup=config('[profiles]\nlab = "https://h"\n')),
    "profile named local": Case(["profile", "list"], 2, "profiles.local: 'local' is the built-in",
                                setup=config('[profiles.local]\nurl = "https://h"\n')),
    "config not UTF-8": Case(["vm", "list"], 2, "config.toml: not UTF-8",
                             setup=config(b'[profiles.lab]\nurl = "https://h\xff"\n')),
    "config not TOML": Case(["vm", "list"], 2, "config.toml: ",
                            setup=config("[profiles.lab\n")),
    "config a folder": Case(["vm", "list"], 2, "cannot read",
                            setup=lambda tmp: config_file().mkdir(parents=True)),
    "config folder a file": Case(["profile", "list"], 2, "cannot read",
                                 setup=config_dir_is_a_file),
    "the app with a broken config": Case([], 2, "config.toml: profiles: must be a table",
                                         setup=config('profiles = "x"\n')),
    # profiles
    "profile add local": Case(["profile", "add", "local", "--url", "https://h"], 2,
                              "built-in profile"),
    "profile add newline": Case(["profile", "add", "lab\n", "--url", "https://h"], 2,
                                "bad profile name"),
    "profile add http": Case(["profile", "add", "lab", "--url", "http://h"], 2,
                             "--insecure-http"),
    "profile add credentials": Case(["profile", "add", "lab", "--url", f"https://u:{SECRET}@h"],
                                    2, "cannot carry", never=[SECRET]),
    "profile remove unknown": Case(["profile", "remove", "nope"], 2, "no profile named 'nope'"),
    # names
    "vm start --on ''": Case([*CONN, "vm", "start", "web-staging", "--on", ""], 2,
                             "no host given"),
    "vm resume --on ' '": Case([*CONN, "vm", "resume", "k8s-node-03", "--on", " "], 2,
                               "no host given"),
    # sizes and counts xapi's int64 cannot take, refused before it is asked
    "size in Arabic-Indic digits": Case([*CONN, "vm", "set-memory", "web-staging",
                                         "--static-max", "٣G"], 2, "not a size"),
    "size past int64": Case([*CONN, "vm", "set-memory", "web-staging",
                             "--static-max", "9" * 25 + "G"], 2, "too large"),
    "size of 400 digits": Case([*CONN, "vm", "set-memory", "web-staging",
                                "--static-max", "9" * 400], 2, "not a size"),
    "vCPUs past int64": Case([*CONN, "vm", "set-vcpus", "web-staging", "--vcpus",
                              str(2**63)], 2, "vCPU"),
    "vCPUs in Arabic-Indic digits": Case([*CONN, "vm", "set-vcpus", "web-staging", "--vcpus",
                                          "٣"], 2, "is not a whole number"),
    "vm show ''": Case([*CONN, "vm", "show", ""], 2, "no VM given"),
    "unknown VM": Case([*CONN, "vm", "show", "no-such-vm"], 2, "no VM named 'no-such-vm'"),
    "transport": Case(["--transport", "carrier-pigeon", "vm", "list"], 2, "invalid choice"),
}


def run(case: Case, sim: Simulator, tmp: Path) -> Run:
    pw = password_file(sim, tmp)
    if case.setup is not None:
        case.setup(tmp)
    argv = [a.format(url=sim.url, pw=pw, fp=sim.fingerprint, tmp=tmp) for a in case.argv]
    return xsctl(*argv)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_error(shared_sim: Simulator, tmp_path: Path, name: str) -> None:
    case = CASES[name]
    sessions = shared_sim.live_sessions()
    r = run(case, shared_sim, tmp_path)
    assert r.code == case.code, (r.code, r.err)
    assert "Traceback" not in r.err
    assert case.says in r.err, r.err
    line = next(x for x in r.err.splitlines() if x.startswith("xsctl"))
    assert case.says in r.err[r.err.index(line):]  # said in the error, not only in the usage
    for word in case.never:
        assert word not in r.err and word not in r.out
    assert r.out == "" or case.argv[:2] == ["profile", "list"]
    assert shared_sim.live_sessions() == sessions  # nothing was left logged in
