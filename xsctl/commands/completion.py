"""``xsctl completion bash``: a completion script generated from the argument parser
itself, so it always knows every command and option."""

from __future__ import annotations

import argparse

_TEMPLATE = """# bash completion for xsctl; load with: source <(xsctl completion bash)
_xsctl() {
    local cur path word i
    cur="${COMP_WORDS[COMP_CWORD]}"
    path=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        [[ "$word" == -* ]] && continue
        case "$path $word" in
%(cases)s
        esac
    done
    case "$path" in
%(words)s
    esac
}
complete -o default -F _xsctl xsctl
"""


def _walk(parser: argparse.ArgumentParser, path: str, out: dict[str, list[str]]) -> None:
    words = [s for a in parser._actions for s in a.option_strings if s.startswith("--")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                words.append(name)
                _walk(sub, f"{path} {name}".strip(), out)
    out[path] = sorted(set(words))


def bash(parser: argparse.ArgumentParser) -> str:
    table: dict[str, list[str]] = {}
    _walk(parser, "", table)
    def pattern(p: str) -> str:  # "$path $word" as the loop builds it
        parent = p.rsplit(" ", 1)[0] if " " in p else ""
        return f"{parent} {p.split(' ')[-1]}"

    cases = "\n".join(
        f'            "{pattern(p)}") path="{p}" ;;' for p in sorted(table) if p
    )
    words = "\n".join(
        f'        "{p}") COMPREPLY=($(compgen -W "{" ".join(w)}" -- "$cur")) ;;'
        for p, w in sorted(table.items())
    )
    return _TEMPLATE % {"cases": cases, "words": words}
