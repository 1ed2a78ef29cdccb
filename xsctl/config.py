"""Profiles and paths. Profiles live in ``$XDG_CONFIG_HOME/xsctl/config.toml``; they
never hold a password (those go to the keyring, see secrets.py)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xsctl.files import write_private
from xsctl.paths import (
    cache_dir,
    config_dir,
    config_file,
    known_hosts_file,
    log_file,
    state_dir,
)
from xsctl.xapi.errors import UsageError, XsctlError

if TYPE_CHECKING:
    from xsctl.xapi.client import Target
from xsctl.xapi.urls import format_url, parse_url, plain_http_refused

XAPI_SOCKET = "/var/lib/xcp/xapi"
INVENTORY = "/etc/xensource-inventory"
LOCAL_PROFILE = "local"
__all__ = ["Config", "Profile", "cache_dir", "config_dir", "config_file", "known_hosts_file",
           "local_profile", "log_file", "normalize_url", "state_dir"]


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_profile_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(
            f"bad profile name {name!r}: up to 64 letters, digits, '.', '_' and '-', "
            "starting with a letter or a digit"
        )
    if name == LOCAL_PROFILE:
        raise UsageError(
            f"{LOCAL_PROFILE!r} is the built-in profile of a host's own xapi (its Unix "
            "socket, in dom0): choose another name"
        )
    return name


@dataclass
class Profile:
    name: str
    url: str
    user: str = "root"
    ca_file: str | None = None
    ssh: str | None = None  # ssh target for the profiling tab, e.g. root@host
    read_only: bool = False
    insecure_http: bool = False  # the user accepts http://: everything in clear
    profiling: bool = False  # the Profiling view may run tools in the hosts' dom0
    host_tools: str | None = None  # the simulator's dom0 tools (xsctl sim prints it)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.url.startswith("unix://")

    def target(self, **overrides: Any) -> Target:
        """Where and how to connect for this profile; None overrides are ignored."""
        from xsctl.xapi.client import Target

        t = Target(url=self.url, user=self.user, ca_file=self.ca_file,
                   read_only=self.read_only, profile=self.name, ssh=self.ssh,
                   insecure_http=self.insecure_http, profiling=self.profiling,
                   host_tools=self.host_tools)
        for k, v in overrides.items():
            if v is not None:
                setattr(t, k, v)
        return t

    @property
    def display(self) -> str:
        return self.url if self.is_local else f"{self.user}@{self.url}"


def normalize_url(url: str) -> str:
    """``host``, ``host:port``, ``https://host[:port]``, ``http://...`` or
    ``unix:///path``; a bare host means HTTPS."""
    return format_url(*parse_url(url))


def _quote(s: str) -> str:
    # a JSON string is a TOML basic string, once DEL is escaped too
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


class Config:
    """The profile file. Unknown keys are kept as they were."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_file()
        self.profiles: dict[str, Profile] = {}
        self.default: str | None = None
        self.load()

    def _bad(self, key: str, what: str) -> UsageError:
        return UsageError(f"{self.path}: {key}: {what}")

    def load(self) -> None:
        self.profiles.clear()
        self.default = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            raise UsageError(f"cannot read {self.path}: {e.strerror}") from e
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise UsageError(f"{self.path}: not UTF-8 text (byte {e.start})") from e
        except tomllib.TOMLDecodeError as e:
            raise UsageError(f"{self.path}: {e}") from e
        default = data.get("default")
        if default is not None and not isinstance(default, str):
            raise self._bad("default", "must be the name of a profile, in quotes")
        self.default = default
        profiles = data.get("profiles", {})
        if not isinstance(profiles, dict):
            raise self._bad("profiles", 'must be a table of [profiles."NAME"] sections')
        for name, p in profiles.items():
            key = f"profiles.{name}"
            try:
                check_profile_name(name)
            except UsageError as e:
                raise self._bad(key, str(e)) from None
            if not isinstance(p, dict):
                raise self._bad(key, "must be a table (url = ..., user = ...)")
            self.profiles[name] = self._profile(name, p, key)

    def _profile(self, name: str, p: dict[str, object], key: str) -> Profile:
        def text(k: str, default: str | None = None) -> str | None:
            v = p.get(k, default)
            if v is not None and not isinstance(v, str):
                raise self._bad(f"{key}.{k}", "must be a string, in quotes")
            return v

        def flag(k: str) -> bool:
            v = p.get(k, False)
            if not isinstance(v, bool):
                raise self._bad(f"{key}.{k}", "must be true or false")
            return v

        url = text("url")
        if url is None:
            raise self._bad(f"{key}.url", "missing (url = \"https://host\")")
        try:
            url = normalize_url(url)
        except UsageError as e:
            raise self._bad(f"{key}.url", str(e)) from None
        known = {"url", "user", "ca_file", "ssh", "read_only", "insecure_http", "profiling",
                 "host_tools"}
        return Profile(
            name=name, url=url, user=text("user", "root") or "root",
            ca_file=text("ca_file"), ssh=text("ssh"), read_only=flag("read_only"),
            insecure_http=flag("insecure_http"), profiling=flag("profiling"),
            host_tools=text("host_tools"),
            extra={k: str(v) for k, v in p.items() if k not in known},
        )

    def save(self) -> None:
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
            if p.insecure_http:
                lines.append("insecure_http = true")
            if p.profiling:
                lines.append("profiling = true")
            if p.host_tools:
                lines.append(f"host_tools = {_quote(p.host_tools)}")
            for k, v in p.extra.items():
                lines.append(f"{_quote(k)} = {_quote(v)}")
        try:
            write_private(self.path, "\n".join(lines) + "\n")
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror}") from e

    def add(self, profile: Profile, *, replace: bool = False) -> None:
        check_profile_name(profile.name)
        if profile.name in self.profiles and not replace:
            raise UsageError(f"profile {profile.name!r} exists (use --replace to overwrite)")
        profile.url = normalize_url(profile.url)
        if profile.url.startswith("http://") and not profile.insecure_http:
            raise UsageError(plain_http_refused(profile.url, "add --insecure-http"))
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


def vnc_viewer(profile: str | None) -> str | None:
    """The VNC viewer a profile names (``vnc_viewer = "vncviewer {address}"``), or
    None; a profile file that cannot be read names none."""
    if not profile:
        return None
    try:
        p = Config().profiles.get(profile)
    except XsctlError:
        return None
    return p.extra.get("vnc_viewer") if p is not None else None
