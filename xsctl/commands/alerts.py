"""``xsctl alert list`` and ``alert show``: the pool's alerts (xapi messages), newest
first, filtered as ``alert dismiss --all`` filters them. Dismissing comes from the
operation catalogue (xsctl/xapi/ops/alert.py)."""

from __future__ import annotations

import argparse

from xsctl.commands.connect import open_client
from xsctl.commands.ops import selector_values
from xsctl.commands.output import print_fields, print_json, print_table, say
from xsctl.xapi.models import Message
from xsctl.xapi.ops.alert import MESSAGE, ObjectNames, matching, resolve_message


def cmd_alert_list(args: argparse.Namespace) -> int:
    with open_client(args, MESSAGE.classes) as client:
        cache = client.cache
        msgs = matching(cache, selector_values(MESSAGE, args))
        names = ObjectNames(cache)
        if args.json:
            # the records' exact strings: JSON escapes what a terminal must not see
            out = []
            for m in msgs:
                r = cache.get("message", m.ref) or {}
                out.append({"uuid": r.get("uuid"), "name": r.get("name"),
                            "priority": m.priority, "priority_name": m.priority_name,
                            "class": r.get("cls"), "obj_uuid": r.get("obj_uuid"),
                            "object": names.exact.get(m.obj_uuid),
                            "timestamp": m.timestamp.isoformat() if m.timestamp else None,
                            "body": r.get("body")})
            print_json(out)
            return 0
        print_table(
            ["priority", "when", "class", "object", "alert", "uuid"],
            [[m.priority_short, m.when, m.cls, names.name(m), m.title,
              m.uuid] for m in msgs],
        )
        return 0


def cmd_alert_show(args: argparse.Namespace) -> int:
    with open_client(args, MESSAGE.classes) as client:
        cache = client.cache
        msgs = [m for m in (Message.get(cache, resolve_message(cache, spec))
                            for spec in args.alert) if m is not None]
        names = ObjectNames(cache)
        if args.json:
            print_json([{**(cache.get("message", m.ref) or {}),
                         "object": names.exact.get(m.obj_uuid)} for m in msgs])
            return 0
        for i, m in enumerate(msgs):
            if i:
                say("")
            print_fields([("alert", m.title), ("name", m.name),
                          ("priority", f"{m.priority} ({m.priority_name})"),
                          ("about", f"{m.cls} {names.name(m)}"), ("when", m.when),
                          ("uuid", m.uuid)])
            say("")
            say(m.body or "(no text)")  # printable, line breaks kept
        return 0
