"""The CLI's side of the operation catalogue: one subcommand per verb (``xsctl vm
shutdown``), generated from the declarations in ``xsctl.xapi.ops``, and the one
function that runs any of them: resolve each object, read the parameters, plan
(``--dry-run`` stops there), confirm what must be confirmed, run, report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from xsctl.commands import block
from xsctl.commands.connect import interactive, open_client
from xsctl.commands.output import print_json, say, warn
from xsctl.xapi.client import Client
from xsctl.xapi.errors import UsageError, XsctlError
from xsctl.xapi.ops import block as block_ops
from xsctl.xapi.ops import catalogue
from xsctl.xapi.ops.base import Plan, StepProgress, TransferProgress, outcome, outcome_text
from xsctl.xapi.ops.catalogue import Context, Operation, Param, ParamKind
from xsctl.xapi.ops.console import console_step
from xsctl.xapi.transfer import Progress

AddLeaf = Callable[..., argparse.ArgumentParser]


def flag_dest(flag: str) -> str:
    return "flag_" + flag.lstrip("-").replace("-", "_")


def add_verbs(sub: Any, group: str, leaf: AddLeaf) -> None:
    """A subcommand per CLI verb of ``xsctl GROUP``, with every variant's options."""
    for verb, variants in catalogue.verbs(group).items():
        kind = variants[0].kind
        base = variants[0]
        multi = any(op.multi for op in variants)
        extra = []
        for op in variants[1:]:
            if op.flag:
                extra.append(f"{op.flag}: {op.label.lower()}")
            elif op.via:
                via = next(p for p in op.params if p.name == op.via)
                extra.append(f"with {via.flags[0]}: {op.label.lower()}")
        help = base.help + (f" ({'; '.join(extra)})" if extra else "") + f" (xe {base.xe})"
        p = leaf(sub, verb, run_verb, help, dry_run=True)
        rules = [op.rules for op in variants if op.rules]
        if rules:
            p.description = f"{help}. Rules: {' '.join(rules)}"
        if kind.implicit:
            p.set_defaults(targets=[])
        elif kind.parent is not None:
            p.add_argument("parent", metavar=kind.parent.cls.upper(),
                           help=f"name, UUID or unique UUID prefix of the {kind.parent.noun}")
            p.add_argument("targets", metavar=kind.noun.upper(),
                           help=kind.spec_help or f"the {kind.noun}")
        elif kind.select is not None and multi:
            # named one by one, or chosen by filters with --all
            p.add_argument("targets", nargs="*", metavar=kind.noun.upper(),
                           help=(kind.spec_help or f"name, UUID or unique UUID prefix of "
                                 f"the {kind.noun}") + "; or --all")
            p.add_argument("--all", dest="select_all", action="store_true",
                           help=f"every {kind.noun} the filters below keep (every one, "
                           "without a filter); typing their count confirms it")
            add_selectors(p, kind)
        else:
            p.add_argument("targets", nargs="+" if multi else None, metavar=kind.cls.upper(),
                           help=f"name, UUID or unique UUID prefix of the {kind.noun}"
                           + ("(s)" if multi else ""))
        seen: dict[str, Param] = {}
        for op in variants:
            if op.flag and flag_dest(op.flag) not in seen:
                p.add_argument(op.flag, dest=flag_dest(op.flag), action="store_true",
                               help=op.help[0].lower() + op.help[1:])
                seen[flag_dest(op.flag)] = Param(op.flag, ParamKind.FLAG, op.label, (op.flag,), "")
            for prm in op.params:
                if prm.name in seen:
                    continue
                seen[prm.name] = prm
                required = prm.required and len(variants) == 1
                kw: dict[str, Any] = {"dest": prm.name, "help": prm.help}
                if prm.switches:  # --ro / --rw: each sets the value
                    either = p.add_mutually_exclusive_group()
                    for flag in prm.flags:
                        either.add_argument(flag, dest=prm.name, metavar=prm.metavar or "X",
                                           help=prm.help)
                    for flag, value in prm.switches:
                        either.add_argument(flag, dest=prm.name, action="store_const",
                                           const=value, help=f"{prm.label}: {value}")
                elif prm.positional:  # after the object: the file, the disk
                    p.add_argument(prm.name, metavar=prm.metavar or prm.name.upper(),
                                   help=prm.help, nargs=None if prm.required else "?")
                elif prm.kind is ParamKind.FLAG:
                    p.add_argument(*prm.flags, action="store_true", **kw)
                elif prm.kind in (ParamKind.PICK_MANY, ParamKind.PAIRS):
                    p.add_argument(*prm.flags, action="append", metavar=prm.metavar or "X",
                                   required=required and prm.kind is ParamKind.PAIRS, **kw)
                else:
                    p.add_argument(*prm.flags, metavar=prm.metavar or "X", required=required, **kw)
        if any(op.impact >= catalogue.Impact.DESTRUCTIVE for op in variants):
            p.add_argument("--yes", action="store_true",
                           help="do not ask: confirm what would be asked on a terminal")
        p.set_defaults(operations=[op.id for op in variants])


def add_selectors(p: argparse.ArgumentParser, kind: catalogue.Kind) -> None:
    """The options that choose ``kind`` objects by filters (``--priority 5``)."""
    for prm in kind.selectors:
        p.add_argument(*prm.flags, dest=f"select_{prm.name}", metavar=prm.metavar or "X",
                       help=prm.help)


def selector_values(kind: catalogue.Kind, args: argparse.Namespace) -> dict[str, Any]:
    return {prm.name: getattr(args, f"select_{prm.name}", None) for prm in kind.selectors}


def _selected(op: Operation, args: argparse.Namespace, client: Client) -> list[str] | None:
    """The refs ``--all`` and the filters choose (None: objects named one by one)."""
    kind = op.kind
    if kind.select is None or not hasattr(args, "select_all"):
        return None
    given = [prm.flags[0] for prm in kind.selectors
             if getattr(args, f"select_{prm.name}", None) is not None]
    if not args.select_all:
        if given:
            raise UsageError(f"{given[0]} chooses {kind.nouns} with --all")
        if not args.targets:
            raise UsageError(f"name the {kind.nouns} to {op.verb}, or give --all")
        return None
    if args.targets:
        raise UsageError(f"name the {kind.nouns} or give --all, not both")
    if op.plan_many is None:
        raise UsageError(f"--all does not go with {op.flag or op.verb}")
    return kind.select(client.cache, selector_values(kind, args))


def _variant(args: argparse.Namespace) -> Operation:
    variants = [catalogue.get(i) for i in args.operations]
    if all(op.via for op in variants) and len(variants) > 1:
        # one verb, one setting at a time (``host set --hostname`` or ``--dns``): each
        # is a plan of its own, and none is the plain variant
        flags = [next(p for p in op.params if p.name == op.via).flags[0] for op in variants]
        given = [f for op, f in zip(variants, flags, strict=True)
                 if getattr(args, op.via or "", None) is not None]
        if len(given) != 1:
            raise UsageError(f"{variants[0].verb}: give one of {', '.join(flags)}"
                             + (f" (not {' and '.join(given)} together)" if given else ""))
    for op in variants[1:]:
        if op.flag and getattr(args, flag_dest(op.flag), False):
            return op
        if op.via and getattr(args, op.via, None) is not None:
            return op
    return variants[0]


def _values(op: Operation, ctx: Context, obj: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The parameters as given on the command line, typed as the planner takes them."""
    out: dict[str, Any] = {}
    for p in op.params:
        raw = getattr(args, p.name, None)
        if p.kind is ParamKind.FLAG:
            out[p.name] = bool(raw)
        elif raw is None:
            if p.required:
                raise UsageError(f"{op.verb} needs {p.flags[0]} {p.metavar or ''}".rstrip())
            out[p.name] = (frozenset() if p.kind is ParamKind.PICK_MANY
                           else {} if p.kind is ParamKind.PAIRS else None)
        elif p.kind is ParamKind.PAIRS:
            out[p.name] = p.parse_pairs(raw)
        elif p.kind is ParamKind.PICK_MANY:
            assert p.resolve is not None
            out[p.name] = frozenset(p.resolve(ctx, obj, t) for t in raw)
        elif p.kind is ParamKind.PICK:
            assert p.resolve is not None
            out[p.name] = p.resolve(ctx, obj, raw)
        else:
            out[p.name] = p.parse(raw)
    return out


def resolve_target(kind: catalogue.Kind, ctx: Context, spec: str,
                   args: argparse.Namespace) -> str:
    """The ref the command line names: within its parent for a VM's device."""
    cache = ctx.cache
    if kind.parent is not None and kind.resolve_in is not None:
        return kind.resolve_in(cache, kind.parent.resolve(cache, args.parent), spec)
    return kind.resolve(cache, spec)


def plan_one(op: Operation, ctx: Context, spec: str, args: argparse.Namespace) -> Plan:
    cache = ctx.cache
    if op.kind.implicit:
        spec = next(iter(op.kind.members(cache)), ("", ""))[0]
    ref = resolve_target(op.kind, ctx, spec, args)
    obj = op.kind.load(cache, ref)
    if obj is None:
        raise UsageError(f"no {op.kind.noun} {spec!r}")
    return catalogue.prepare(op, ctx, obj, _values(op, ctx, obj, args))


def _confirmed(plan: Plan, args: argparse.Namespace) -> bool:
    if plan.confirm_text is None or getattr(args, "yes", False):
        return True
    if not interactive():
        raise UsageError(f"{plan.title} destroys data: add --yes to confirm it "
                         "(or run it on a terminal to be asked)")
    sys.stderr.write(plan.describe() + "\n\n")
    typed = input(f"Type {plan.confirm_text!r} to confirm: ")
    return typed == plan.confirm_text


def _progress(label: str) -> tuple[StepProgress | None, TransferProgress | None]:
    """One line on stderr, on a terminal only: the percentage, or for a transfer its
    bar, bytes, rate and time left."""
    if not sys.stderr.isatty():
        return None, None
    moving: set[int] = set()

    def show(step: int, fraction: float) -> None:
        if step in moving:
            return
        sys.stderr.write(f"\r{label}: {int(fraction * 100):3d}%")
        sys.stderr.flush()

    def rate(step: int, p: Progress) -> None:
        moving.add(step)
        sys.stderr.write(f"\r\033[K{label}: {p.line()}")
        sys.stderr.flush()

    return show, rate


def run_verb(args: argparse.Namespace) -> int:
    op = _variant(args)
    specs: Sequence[str] = args.targets if isinstance(args.targets, list) else [args.targets]
    if op.kind.implicit:
        specs = [op.kind.noun]
    with open_client(args, op.kind.classes) as client:
        chosen = _selected(op, args, client)
        if chosen is not None:
            if not chosen:
                warn(f"no {op.kind.noun} matches: nothing to {op.verb}")
                if args.json:
                    print_json([])
                return 0
            return run_batch(args, client, op, chosen, chosen=True)
        if op.plan_many is not None and len(specs) > 1:
            return run_batch(args, client, op, specs)
        return run_plans(args, client, op, specs)


def run_batch(args: argparse.Namespace, client: Client, op: Operation,
              specs: Sequence[str], chosen: bool = False) -> int:
    """One plan for every named object (an operation with ``plan_many``): what cannot
    be resolved is reported and the rest go ahead, as with one plan each. ``chosen``
    by filters rather than named, their count must be typed to confirm."""
    ctx = client.context()
    objs: list[Any] = []
    failures = 0
    for spec in specs:
        try:
            obj = op.kind.load(ctx.cache, resolve_target(op.kind, ctx, spec, args))
            if obj is None:
                raise UsageError(f"no {op.kind.noun} {spec!r}")
            objs.append(obj)
        except XsctlError as e:
            failures += 1
            warn(f"{spec}: {e}")
    if not objs:
        return 1 if failures else 0
    plan = catalogue.prepare_many(op, ctx, objs, _values(op, ctx, objs[0], args))
    if chosen and len(objs) > 1:
        plan = replace(plan, confirm_text=str(len(objs)))
    if args.dry_run:
        if args.json:
            print_json([plan.as_dict()])
        else:
            say(plan.describe() + "\n")
        return 1 if failures else 0
    if not _confirmed(plan, args):
        raise UsageError("not confirmed; nothing was done")
    client.run(plan)
    what = f"{len(objs)} {op.kind.nouns if len(objs) > 1 else op.kind.noun}"
    if args.json:
        print_json([{op.kind.cls: op.kind.name(o), "uuid": getattr(o, "uuid", ""),
                     "ok": True} for o in objs])
    else:
        say(f"{what}: {op.done}")
    return 1 if failures else 0


def run_plans(args: argparse.Namespace, client: Client, op: Operation,
              specs: Sequence[str]) -> int:
    """Plan for each named object, then run each; report per object."""
    ctx = client.context()
    noun = op.kind.cls
    failures = 0
    results: list[dict[str, Any]] = []
    single = len(specs) == 1 and not args.json
    printed = False
    if not args.dry_run and not client.conn.read_only and block.inspecting(client, op.id, specs):
        for gone in block.clean_stale(client):
            warn(f"detached {gone}, left attached by an interrupted run")

    def failed(name: str, e: XsctlError) -> None:
        nonlocal failures
        if single:
            # a gate's reason speaks of "it": the object it is about goes first
            if isinstance(e, catalogue.Refused) and str(e).startswith("it "):
                raise catalogue.Refused(f"{name}: {e}") from e
            raise e
        failures += 1
        warn(f"{name}: {e}")
        results.append({noun: name, "ok": False, "error": getattr(e, "details", [str(e)])})

    for spec in specs:
        try:
            plan = plan_one(op, ctx, spec, args)
        except XsctlError as e:
            failed(spec, e)
            continue
        name = plan.names.get(plan.targets[0], spec)
        if args.dry_run:
            if args.json:
                exact = {r: str((client.cache.find(r) or ("", {}))[1].get("name_label", n))
                         for r, n in plan.names.items()}
                results.append(plan.as_dict(exact))
            else:
                say(plan.describe() + "\n")
            continue
        if console_step(plan) is not None:  # the terminal or a tunnel, not calls
            from xsctl.commands.console import hand_over

            return hand_over(args, client, plan)
        for w in plan.warnings:
            warn(f"warning: {w}")
        if not _confirmed(plan, args):
            failed(name, UsageError("not confirmed; nothing was done"))
            continue
        held = block_ops.is_inspection(plan)
        try:
            progress, rate = _progress(plan.title)
            ran = client.run(plan, progress, rate=rate)
            done = outcome(plan, ran)
            if progress is not None:
                sys.stderr.write("\r\033[K")
            if not args.json:
                say(f"{name}: {op.done}" + (f" {outcome_text(done)}" if done else ""))
            if held:  # prints the device (JSON too), waits for the user, detaches it
                block.hold(client, plan, ran, args)
                printed = True
                continue
            results.append({noun: name, "ok": True, **({"result": done} if done else {})})
        except XsctlError as e:
            if sys.stderr.isatty():
                sys.stderr.write("\r\033[K")
            failed(name, e)
    if args.json and not printed:
        print_json(results)
    return 1 if failures else 0
