"""Names for shell completion: the VMs, hosts and SRs of the pool behind a profile,
remembered when the CLI or the app loads that pool, so that completing a name never
connects to anything (and never needs a password).

One file per profile, ``$XDG_CACHE_HOME/xsctl/names/PROFILE.json`` (0600, in a 0700
folder): ``{"url": ..., "written": ..., "vm": [...], "host": [...], "sr": [...],
"vdi": [...]}``,
names only. A command that loads only some classes refreshes only those lists."""

from __future__ import annotations

import contextlib
import json
import logging
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xsctl.config import Config, cache_dir, check_profile_name
from xsctl.files import write_private

if TYPE_CHECKING:
    from xsctl.xapi.cache import Cache

log = logging.getLogger(__name__)

# completion kind -> the cache's (lower-case) xapi class
KINDS = {"vm": "vm", "host": "host", "sr": "sr", "vdi": "vdi"}


def names_file(profile: str) -> Path:
    return cache_dir() / "names" / f"{check_profile_name(profile)}.json"


def _typeable(name: object) -> bool:
    """A name a shell can offer: text, not empty, no control characters (xapi sends
    whatever a VM was named, escape codes included)."""
    return isinstance(name, str) and bool(name.strip()) and not any(
        unicodedata.category(c) in ("Cc", "Cf") for c in name)


def remember(profile: str | None, url: str, cache: Cache) -> None:
    """Keep the names of the classes ``cache`` holds. Never fails a command: this is
    a convenience, and the folder may be read-only."""
    if not profile:
        return
    from xsctl.xapi.models import is_guest, sr_display_name

    try:
        path = names_file(profile)
        data = _read(path)
        if data.get("url") != url:
            data = {}  # the profile now names another pool
        for kind, cls in KINDS.items():
            if cls not in cache.classes:
                continue
            if kind == "sr":
                # local SRs as people name them: "Local storage on xcp-ng-02"
                found: list[object] = [sr_display_name(cache, ref) for ref in cache.all(cls)]
            else:
                found = [r.get("name_label") for r in cache.all(cls).values()
                         if kind != "vm" or is_guest(r)]
            data[kind] = sorted({str(n) for n in found if _typeable(n)})
        data["url"] = url
        data["written"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_private(path, json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    except Exception as e:  # see the docstring
        log.info("names for completion not saved: %s", e)


def _read(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def names(kind: str, profile: str | None = None) -> list[str]:
    """What to offer for ``kind`` (vm, host, sr or profile): from the files only."""
    cfg = Config()
    if kind == "profile":
        return sorted(cfg.profiles)
    profile = profile or cfg.default
    if kind not in KINDS or not profile:
        return []
    values = _read(names_file(profile)).get(kind, [])
    return [v for v in values if _typeable(v)] if isinstance(values, list) else []
