"""Where xsctl keeps its files: the XDG config, state and cache folders. A leaf module
(it imports nothing of xsctl), so that the core can find known_hosts without
importing the profiles."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "config_dir", "config_file", "known_hosts_file", "log_file",
           "state_dir"]


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
