"""Which shell reaches a host's dom0.

- The simulator's dom0s: the profile names a folder of simulated host tools
  (``host_tools``, what ``xsctl sim`` prints); each host's are in the subfolder named
  by its address, and run here, with that folder first on PATH.
- xsctl in dom0, asked about its own host (``INSTALLATION_UUID`` in the inventory):
  here.
- Otherwise the user's OpenSSH client. The profile's ``ssh`` names the destination:
  with ``{address}``, ``{hostname}`` or ``{name}`` in it, it is a pattern for every
  host (``admin@{address}``); without, it is the pool master's, and the others are
  reached as the same user at their address. With no ``ssh`` at all: root@ the host's
  address. ``XSCTL_SSH`` replaces the client (``ssh -F ~/.ssh/pool.conf``), split as a
  shell would split it but never run by one.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from xsctl.profiling.shell import LocalShell, Shell, SshShell, check_destination
from xsctl.xapi.client import Target
from xsctl.xapi.errors import UsageError
from xsctl.xapi.models import Host
from xsctl.xapi.text import printable

INVENTORY = "/etc/xensource-inventory"
SSH_ENV = "XSCTL_SSH"

# a host's address as a folder name and an ssh host: an IPv4/IPv6 address or a DNS name
_ADDRESS = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,252}")


def this_host_uuid(inventory: str = INVENTORY) -> str | None:
    """The UUID of the host xsctl runs on, when it runs in dom0."""
    try:
        text = Path(inventory).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "INSTALLATION_UUID":
            return value.strip().strip("'\"") or None
    return None


def _address(host: Host) -> str:
    addr = host.address.strip()
    if not _ADDRESS.fullmatch(addr) or ".." in addr:
        raise UsageError(f"host {printable(host.name_label)!r} has no usable address "
                         f"({printable(addr)!r}): name an ssh destination in the profile "
                         "(ssh = \"root@{address}\" or a Host of your ssh config)")
    return addr


def ssh_program() -> list[str]:
    spec = os.environ.get(SSH_ENV, "").strip()
    if not spec:
        return ["ssh"]
    try:
        words = shlex.split(spec)
    except ValueError as e:
        raise UsageError(f"{SSH_ENV}: {e}") from None
    return words or ["ssh"]


def destination(target: Target | None, host: Host) -> str:
    """The ssh destination of ``host`` under ``target``'s profile."""
    addr = _address(host)
    spec = (target.ssh or "").strip() if target is not None else ""
    if not spec:
        return check_destination(f"root@{addr}")
    if "{" in spec:
        try:
            dest = spec.format(address=addr, hostname=host.hostname or addr,
                               name=host.name_label)
        except (KeyError, IndexError, ValueError) as e:
            raise UsageError(f"ssh = {spec!r}: only {{address}}, {{hostname}} and {{name}} "
                             f"may be filled in ({e})") from None
        return check_destination(dest)
    if host.is_master:
        return check_destination(spec)
    user = spec.split("@", 1)[0] if "@" in spec else "root"
    return check_destination(f"{user}@{addr}")


def shell_for(target: Target | None, host: Host, *, inventory: str = INVENTORY) -> Shell:
    name = printable(host.name_label) or host.uuid
    tools = target.host_tools if target is not None else None
    if tools:
        folder = Path(tools) / _address(host)
        return LocalShell(where=f"on {name} (simulated dom0 here)", tools=[str(folder)],
                          how="its simulated dom0, run here")
    if host.uuid and host.uuid == this_host_uuid(inventory):
        return LocalShell(where=f"on {name} (here, in dom0)", how="here, in its dom0")
    dest = destination(target, host)
    return SshShell(dest, where=f"on {name} (ssh {dest})", program=ssh_program())
