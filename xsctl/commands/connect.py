"""Turning command-line options into a connected client: the profile or --url, the
password (keyring, --password-file, --password-stdin, or a prompt), first-use trust
(a prompt on a terminal, --accept-fingerprint for scripts)."""

from __future__ import annotations

import argparse
import getpass
import os
import stat
import sys
from collections.abc import Iterable

from xsctl import names, secrets
from xsctl.commands.output import warn, warn_unencrypted
from xsctl.config import Config, Profile, local_profile, normalize_url
from xsctl.xapi.cache import CLASSES
from xsctl.xapi.client import Client, Target, ensure_trusted
from xsctl.xapi.errors import UsageError


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def target_from_args(args: argparse.Namespace) -> Target:
    url = getattr(args, "url", None)
    overrides = {
        "read_only": True if getattr(args, "read_only", False) else None,
        "insecure_http": True if getattr(args, "insecure_http", False) else None,
        "transport": getattr(args, "transport", None),
        "timeout": getattr(args, "timeout", None),
        "accept_fingerprint": getattr(args, "accept_fingerprint", None),
        "ca_file": getattr(args, "ca_file", None),
    }
    if url:
        t = Target(url=normalize_url(url), user=getattr(args, "user", None) or "root")
        for k, v in overrides.items():
            if v is not None:
                setattr(t, k, v)
        return t
    cfg = Config()
    name = getattr(args, "profile", None) or cfg.default
    if not name:
        local = local_profile()
        if local is not None:
            return local.target(**overrides)
        raise UsageError(
            "no pool to talk to: give --url https://HOST (and --user), or --profile NAME "
            "(xsctl profile add NAME --url https://HOST)"
        )
    p: Profile = cfg.get(name)
    if getattr(args, "user", None):
        overrides["user"] = args.user
    return p.target(**overrides)


def _read_password_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            line = f.readline()
    except IsADirectoryError:
        raise UsageError(f"the password file {path} is a folder") from None
    except OSError as e:
        raise UsageError(f"cannot read the password file {path}: {e.strerror}") from e
    if stat.S_ISREG(mode) and mode & 0o077:
        # as ssh says of a private key anyone else can read
        warn(f"warning: permissions {stat.S_IMODE(mode):04o} for {path!r} are too open: other "
             f"users may read the password. chmod 600 {path}")
    try:
        return line.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise UsageError(f"the password file {path} is not UTF-8 text (xapi takes "
                         "passwords in UTF-8)") from None


def password_for(args: argparse.Namespace, target: Target) -> tuple[str | None, bool]:
    """(password, prompted) — None for dom0's local socket, which needs none."""
    if target.is_local:
        return "", False
    pf = getattr(args, "password_file", None)
    if pf:
        return _read_password_file(pf), False
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        if not line:
            raise UsageError("--password-stdin: nothing on standard input")
        return line.rstrip("\r\n"), False
    stored = secrets.get_password(target.user, target.url)
    if stored is not None:
        return stored, False
    if interactive():
        return getpass.getpass(f"Password for {target.user}@{target.url}: "), True
    raise UsageError(
        f"no password for {target.user}@{target.url}: none in the keyring and no terminal "
        "to ask on (use --password-file FILE or --password-stdin)"
    )


def confirm_fingerprint(host: str, fingerprint: str) -> bool:
    if not interactive():
        return False
    sys.stderr.write(
        f"The authenticity of {host} cannot be established.\n"
        f"Its certificate's fingerprint is\n  {fingerprint}\n"
        "Compare it with the one the host shows (xsconsole's status screen, or "
        "openssl x509 -noout -fingerprint -sha256 -in /etc/xensource/xapi-ssl.pem).\n"
    )
    answer = input("Trust this certificate and connect? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def open_client(args: argparse.Namespace, classes: Iterable[str] = CLASSES,
                load: bool = True) -> Client:
    target = target_from_args(args)
    # like ssh: settle the host's identity before anything secret is typed
    ensure_trusted(target, confirm_fingerprint)
    if target.url.startswith("http://"):
        warn_unencrypted(target.url)  # on every run, not only the first
    password, prompted = password_for(args, target)
    client: Client | None = None
    try:
        client = Client.connect(target, password, confirm=confirm_fingerprint,
                                classes=classes)
        if prompted and password and secrets.available() and interactive():
            answer = input(f"Save the password for {target.user}@{target.url} in the "
                           "keyring? [y/N] ").strip().lower()
            if answer in ("y", "yes"):
                why = secrets.set_password(target.user, target.url, password)
                if why:
                    warn(f"the password was not saved: {why}; it will be asked again")
        if load:
            client.load()
            names.remember(target.profile, target.url, client.cache)
    except BaseException:
        if client is not None:
            client.close()
        raise
    return client
