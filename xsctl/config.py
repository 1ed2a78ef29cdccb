"""Profiles and paths. Profiles live in ``$XDG_CONFIG_HOME/xsctl/config.toml``; they
never hold a password (those go to the keyring, see secrets.py)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from xsctl.xapi.errors import UsageError

XAPI_SOCKET = "/var/lib/xcp/xapi"
INVENTORY = "/etc/xensource-inventory"
LOCAL_PROFILE = "local"


def _xdg(var: str, default: str) -> Path:
    v = os.environ.get(var)
    base = Path(v) if v and os.path.isabs(v) else Path.home() / default
    return base / "xsctl"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")


def config_file() -> Path:
    return config_dir() / "config.toml"


def known_hosts_file() -> Path:
    return config_dir() / "known_hosts"


def log_file() -> Path:
    return state_dir() / "xsctl.log"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class Profile:
    name: str
    url: str
    user: str = "root"
    ca_file: str | None = None
    ssh: str | None = None  # ssh target for the profiling tab, e.g. root@host
    read_only: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.url.startswith("unix://")

    @property
    def display(self) -> str:
        return self.url if self.is_local else f"{self.user}@{self.url}"


def normalize_url(url: str) -> str:
    """``host``, ``host:port``, ``https://host[:port]``, ``http://...`` or
    ``unix:///path``; a bare host means HTTPS."""
    url = url.strip()
    if not url:
        raise UsageError("empty URL")
    if url.startswith("unix://"):
        return url
    if url.startswith("/"):
        return "unix://" + url
    if "://" not in url:
        url = "https://" + url
    try:
        parts = urlsplit(url)
    except ValueError as e:  # e.g. an unclosed IPv6 bracket
        raise UsageError(f"not a xapi URL: {url!r} ({e})") from e
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"not a xapi URL: {url!r} (use https://host[:port])")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as e:
        raise UsageError(f"bad port in {url!r}") from e
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{netloc}"


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Config:
    """The profile file. Unknown keys are kept as they were."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_file()
        self.profiles: dict[str, Profile] = {}
        self.default: str | None = None
        self.load()

    def load(self) -> None:
        self.profiles.clear()
        if not self.path.exists():
            return
        try:
            data = tomllib.loads(self.path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise UsageError(f"cannot read {self.path}: {e}") from e
        self.default = data.get("default")
        for name, p in (data.get("profiles") or {}).items():
            if not isinstance(p, dict) or "url" not in p:
                continue
            known = {"url", "user", "ca_file", "ssh", "read_only"}
            self.profiles[name] = Profile(
                name=name,
                url=str(p["url"]),
                user=str(p.get("user", "root")),
                ca_file=p.get("ca_file"),
                ssh=p.get("ssh"),
                read_only=bool(p.get("read_only", False)),
                extra={k: str(v) for k, v in p.items() if k not in known},
            )

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["# xsctl profiles (passwords live in the OS keyring, never here)"]
        if self.default:
            lines.append(f"default = {_quote(self.default)}")
        for p in self.profiles.values():
            lines.append("")
            lines.append(f"[profiles.{_quote(p.name)}]")
            lines.append(f"url = {_quote(p.url)}")
            lines.append(f"user = {_quote(p.user)}")
            if p.ca_file:
                lines.append(f"ca_file = {_quote(p.ca_file)}")
            if p.ssh:
                lines.append(f"ssh = {_quote(p.ssh)}")
            if p.read_only:
                lines.append("read_only = true")
            for k, v in p.extra.items():
                lines.append(f"{k} = {_quote(v)}")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(self.path)

    def add(self, profile: Profile, *, replace: bool = False) -> None:
        if not _NAME.match(profile.name):
            raise UsageError(
                f"bad profile name {profile.name!r}: letters, digits, '.', '_' and '-' only"
            )
        if profile.name in self.profiles and not replace:
            raise UsageError(f"profile {profile.name!r} exists (use --replace to overwrite)")
        profile.url = normalize_url(profile.url)
        self.profiles[profile.name] = profile
        if self.default is None:
            self.default = profile.name

    def remove(self, name: str) -> Profile:
        p = self.profiles.pop(name, None)
        if p is None:
            raise UsageError(f"no profile named {name!r}")
        if self.default == name:
            self.default = next(iter(self.profiles), None)
        return p

    def get(self, name: str) -> Profile:
        if name == LOCAL_PROFILE and name not in self.profiles:
            local = local_profile()
            if local is not None:
                return local
        p = self.profiles.get(name)
        if p is None:
            names = ", ".join(sorted(self.profiles)) or "none yet (xsctl profile add)"
            raise UsageError(f"no profile named {name!r}; profiles: {names}")
        return p


def in_dom0() -> bool:
    """Running on a XenServer/XCP-ng host with xapi's local socket."""
    return os.path.exists(INVENTORY) and os.path.exists(XAPI_SOCKET)


def local_profile() -> Profile | None:
    """The implicit ``local`` profile in dom0: xapi's Unix socket, no password."""
    if not in_dom0():
        return None
    return Profile(name=LOCAL_PROFILE, url="unix://" + XAPI_SOCKET, user="root")
