"""``xsctl completion bash|zsh|fish``: completion scripts generated from the argument
parser itself, so that they always know every command and option.

Names (VMs, hosts, SRs, disks, profiles) come from ``xsctl completion names KIND``, which
reads the names file of the default profile (see xsctl/names.py) and the profile
list: completing never connects to anything. Which argument takes which kind of name
is read from the parser too: a positional ``vm`` (or metavar VM), a metavar HOST, SR,
VDI or PROFILE, and ``--profile``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

KINDS = ("vm", "host", "sr", "vdi", "profile")


@dataclass
class Node:
    """One command path (``""``, ``"vm"``, ``"vm start"``) and what follows it."""

    path: str
    subcommands: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)  # long options
    takes: str | None = None  # the kind of name its positional arguments are
    values: dict[str, str] = field(default_factory=dict)  # option -> kind of its value
    files: list[str] = field(default_factory=list)  # options whose value is a file


def _kind(action: argparse.Action) -> str | None:
    metavar = action.metavar if isinstance(action.metavar, str) else None
    if action.dest == "profile" or metavar == "PROFILE":
        return "profile"
    if metavar in ("VM", "HOST", "SR", "VDI"):
        return metavar.lower()
    if not action.option_strings and action.dest == "vm":
        return "vm"
    return None


def _walk(parser: argparse.ArgumentParser, path: str, out: list[Node]) -> None:
    node = Node(path)
    out.append(node)
    for action in parser._actions:
        if action.help == argparse.SUPPRESS and action.option_strings:
            continue  # hidden (--password, which only says it does not exist)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                node.subcommands.append(name)
                _walk(sub, f"{path} {name}".strip(), out)
            continue
        kind = _kind(action)
        if not action.option_strings:
            node.takes = node.takes or kind
            continue
        longs = [s for s in action.option_strings if s.startswith("--")]
        node.options += longs
        if action.nargs != 0:
            for s in action.option_strings:
                if kind:
                    node.values[s] = kind
                elif action.metavar == "FILE":
                    node.files.append(s)
    node.options = sorted(set(node.options))


def tree(parser: argparse.ArgumentParser) -> list[Node]:
    out: list[Node] = []
    _walk(parser, "", out)
    return sorted(out, key=lambda n: n.path)


def _step(n: Node) -> tuple[str, str]:
    """The ``"$path $word"`` a shell loop sees on the way to ``n``, and ``n``'s path."""
    parent, _, last = n.path.rpartition(" ")
    return f"{parent} {last}", n.path


# ------------------------------------------------------------------ bash

_BASH = r"""# bash completion for xsctl; load with: source <(xsctl completion bash)
_xsctl_names() {
    local n
    local -a ask=(completion names "$1") found
    [[ -n "$_xsctl_profile" ]] && ask+=(--profile "$_xsctl_profile")
    mapfile -t found < <(command xsctl "${ask[@]}" 2>/dev/null)
    for n in "${found[@]}"; do
        [[ "$n" == "$cur"* ]] && COMPREPLY+=("$(printf '%%q' "$n")")
    done
}
_xsctl() {
    local cur prev xpath word i _xsctl_profile=""
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    xpath=""
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        case "$word" in --profile|-p) _xsctl_profile="${COMP_WORDS[i+1]}" ;; esac
        [[ "$word" == -* ]] && continue
        case "$xpath $word" in
%(steps)s
        esac
    done
    case "$xpath $prev" in
%(values)s
    esac
    if [[ "$cur" != -* ]]; then
        case "$xpath" in
%(takes)s
        esac
        [[ ${#COMPREPLY[@]} -gt 0 ]] && return
    fi
    case "$xpath" in
%(words)s
    esac
}
complete -o default -F _xsctl xsctl
"""


def bash(parser: argparse.ArgumentParser) -> str:
    nodes = tree(parser)
    steps = "\n".join(f'            "{s}") xpath="{p}" ;;' for s, p in map(_step, nodes) if p)
    values = "\n".join(f'        "{n.path} {opt}") _xsctl_names {kind}; return ;;'
                       for n in nodes for opt, kind in sorted(n.values.items()))
    takes = "\n".join(f'            "{n.path}") _xsctl_names {n.takes} ;;'
                      for n in nodes if n.takes)
    words = "\n".join(
        f'        "{n.path}") COMPREPLY=($(compgen -W "{" ".join(n.subcommands + n.options)}"'
        ' -- "$cur")) ;;' for n in nodes)
    return _BASH % {"steps": steps, "values": values, "takes": takes, "words": words}


# ------------------------------------------------------------------ zsh

_ZSH = r"""#compdef xsctl
# zsh completion for xsctl; load with: source <(xsctl completion zsh) (after
# compinit), or save it as _xsctl in a folder of $fpath.
_xsctl_names() {
    local -a found
    found=("${(@f)$(command xsctl completion names $1 ${_xsctl_profile:+--profile} $_xsctl_profile 2>/dev/null)}")
    found=(${found:#})
    (( ${#found} )) && compadd -- "${found[@]}"
}
_xsctl() {
    local xpath="" word i _xsctl_profile=""
    local prev="${words[CURRENT-1]}"
    for ((i = 2; i < CURRENT; i++)); do
        word="${words[i]}"
        case "$word" in (--profile|-p) _xsctl_profile="${words[i+1]}" ;; esac
        [[ "$word" == -* ]] && continue
        case "$xpath $word" in
%(steps)s
        esac
    done
    case "$xpath $prev" in
%(values)s
    esac
    if [[ "$PREFIX" != -* ]]; then
        case "$xpath" in
%(takes)s
        esac
    fi
    case "$xpath" in
%(words)s
    esac
}
if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then
    _xsctl "$@"
else
    compdef _xsctl xsctl
fi
"""


def zsh(parser: argparse.ArgumentParser) -> str:
    nodes = tree(parser)
    steps = "\n".join(f'            ("{s}") xpath="{p}" ;;' for s, p in map(_step, nodes) if p)
    values = "\n".join(f'        ("{n.path} {opt}") _xsctl_names {kind}; return ;;'
                       for n in nodes for opt, kind in sorted(n.values.items()))
    values += "".join(f'\n        ("{n.path} {opt}") _files; return ;;'
                      for n in nodes for opt in n.files)
    takes = "\n".join(f'            ("{n.path}") _xsctl_names {n.takes} && return ;;'
                      for n in nodes if n.takes)
    words = "\n".join(f'        ("{n.path}") compadd -- {" ".join(n.subcommands + n.options)} ;;'
                      for n in nodes)
    return _ZSH % {"steps": steps, "values": values, "takes": takes, "words": words}


# ------------------------------------------------------------------ fish

_FISH = r"""# fish completion for xsctl; load with: xsctl completion fish | source
# (or save it as ~/.config/fish/completions/xsctl.fish)
function __xsctl_path
    set -l p ""
    for w in (commandline -opc)[2..-1]
        string match -q -- '-*' $w; and continue
        switch "$p $w"
%(steps)s
        end
    end
    echo $p
end
function __xsctl_at
    set -l p (__xsctl_path)
    test "$p" = "$argv[1]"
end
function __xsctl_names
    set -l words (commandline -opc)
    set -l profile
    for i in (seq (count $words))
        if contains -- $words[$i] --profile -p; and test $i -lt (count $words)
            set profile --profile $words[(math $i + 1)]
        end
    end
    command xsctl completion names $argv[1] $profile 2>/dev/null
end
complete -c xsctl -f
%(lines)s
"""


def fish(parser: argparse.ArgumentParser) -> str:
    nodes = tree(parser)
    steps = "\n".join(f'            case "{s}"\n                set p "{p}"'
                      for s, p in map(_step, nodes) if p)
    lines: list[str] = []
    for n in nodes:
        at = f"-n '__xsctl_at \"{n.path}\"'"
        if n.subcommands:
            lines.append(f"complete -c xsctl {at} -a '{' '.join(n.subcommands)}'")
        if n.takes:
            lines.append(f"complete -c xsctl {at} -a '(__xsctl_names {n.takes})'")
        for opt in n.options:
            extra = ""
            kind = n.values.get(opt)
            if kind:
                extra = f" -x -a '(__xsctl_names {kind})'"
            elif opt in n.files:
                extra = " -r -F"
            lines.append(f"complete -c xsctl {at} -l {opt[2:]}{extra}")
        for short, kind in n.values.items():
            if not short.startswith("--"):
                lines.append(f"complete -c xsctl {at} -s {short[1:]} -x "
                             f"-a '(__xsctl_names {kind})'")
    return _FISH % {"steps": steps, "lines": "\n".join(lines)}


SCRIPTS = {"bash": bash, "zsh": zsh, "fish": fish}


def print_names(argv: list[str]) -> int:
    """``xsctl completion names KIND [--profile P]``: one name a line, from the files
    only. Quiet and successful whatever happens: a shell is waiting on it."""
    from xsctl.names import names

    try:
        kind = argv[0]
        profile = argv[argv.index("--profile") + 1] if "--profile" in argv else None
        for n in names(kind, profile):
            print(n)
    except Exception:  # a broken config, no file yet, nonsense arguments: no names
        pass
    return 0
