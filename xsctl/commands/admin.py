"""``xsctl profile ...`` and ``xsctl trust ...``: local configuration only."""

from __future__ import annotations

import argparse

from xsctl import secrets
from xsctl.commands.output import print_json, print_table, warn_unencrypted
from xsctl.config import Config, Profile, known_hosts_file, local_profile
from xsctl.xapi.trust import KnownHosts


def cmd_profile_add(args: argparse.Namespace) -> int:
    cfg = Config()
    p = Profile(name=args.name, url=args.profile_url, user=args.profile_user,
                ca_file=args.profile_ca_file, ssh=args.ssh, read_only=args.profile_read_only,
                insecure_http=args.profile_insecure_http, profiling=args.profiling,
                host_tools=args.host_tools)
    cfg.add(p, replace=args.replace)
    if args.default:
        cfg.default = p.name
    cfg.save()
    print(f"profile {p.name}: {p.display}")
    if p.url.startswith("http://"):
        warn_unencrypted(p.url)
    return 0


def cmd_profile_list(args: argparse.Namespace) -> int:
    cfg = Config()
    profiles = list(cfg.profiles.values())
    local = local_profile()
    if local is not None and local.name not in cfg.profiles:
        profiles.insert(0, local)
    if args.json:
        print_json([
            {"name": p.name, "url": p.url, "user": p.user, "ca_file": p.ca_file, "ssh": p.ssh,
             "read_only": p.read_only, "insecure_http": p.insecure_http,
             "profiling": p.profiling, "host_tools": p.host_tools,
             "default": p.name == cfg.default,
             "password_in_keyring": secrets.get_password(p.user, p.url) is not None
             if not p.is_local else False}
            for p in profiles
        ])
        return 0
    print_table(
        ["", "name", "url", "user", "options"],
        [["*" if p.name == cfg.default else "", p.name, p.url, p.user,
          " ".join(x for x in ("read-only" if p.read_only else "",
                               "insecure-http" if p.insecure_http else "",
                               f"ca={p.ca_file}" if p.ca_file else "",
                               f"ssh={p.ssh}" if p.ssh else "",
                               "profiling" if p.profiling else "") if x)]
         for p in profiles],
    )
    return 0


def cmd_profile_remove(args: argparse.Namespace) -> int:
    cfg = Config()
    p = cfg.remove(args.name)
    cfg.save()
    if args.forget_password:
        secrets.delete_password(p.user, p.url)
    print(f"removed profile {p.name}")
    return 0


def cmd_trust_list(args: argparse.Namespace) -> int:
    pins = KnownHosts(known_hosts_file()).entries()
    if args.json:
        print_json([{"host": p.host, "fingerprint": p.fingerprint, "added": p.added,
                     "note": p.note} for p in pins])
        return 0
    print_table(["host", "fingerprint", "added", "note"],
                [[p.host, p.fingerprint, p.added, p.note] for p in pins])
    return 0


def cmd_trust_forget(args: argparse.Namespace) -> int:
    gone = KnownHosts(known_hosts_file()).forget(args.host)
    if not gone:
        print(f"no certificate pinned for {args.host}")
        return 1
    for p in gone:
        print(f"forgot {p.host} {p.fingerprint}")
    return 0
