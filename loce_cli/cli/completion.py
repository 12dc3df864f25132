"""Static shell completion scripts (bash, zsh, fish) generated from the Typer app.

Static scripts list every command and option, so TAB never starts Python. ``scripts/dev/gen_completions.py``
writes them to ``completions/``; a test regenerates them and fails when the committed files are stale.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple


SHELLS = ("bash", "zsh", "fish")
HEADER = "generated from the loce Typer app by scripts/dev/gen_completions.py; do not edit"


def _tree(app) -> Dict[Tuple[str, ...], Any]:
    """Every command path (``()`` is the root) mapped to its click command."""
    import typer

    root = typer.main.get_command(app)
    found: Dict[Tuple[str, ...], Any] = {}

    def walk(path: Tuple[str, ...], cmd: Any) -> None:
        found[path] = cmd
        if _is_group(cmd):
            for name in sorted(cmd.commands):
                walk(path + (name,), cmd.commands[name])

    walk((), root)
    return found


def _is_group(cmd: Any) -> bool:
    # Duck-typed: typer >= 0.2x vendors click (typer._click), older typer uses click itself.
    return isinstance(getattr(cmd, "commands", None), dict)


def _options(cmd: Any) -> List[Tuple[List[str], bool, str]]:
    """(names, takes_value, help) for each option of a command, including --help."""
    result = []
    for p in cmd.params:
        if getattr(p, "param_type_name", "") == "option" and not getattr(p, "hidden", False):
            names = [n for n in p.opts + p.secondary_opts]
            result.append((names, not p.is_flag and not getattr(p, "count", False), (p.help or "").split("\n")[0]))
    result.append((["--help", "-h"], False, "Show help and exit."))
    return result


def _subcommands(cmd: Any) -> List[Tuple[str, str]]:
    if not _is_group(cmd):
        return []
    return [(n, (c.get_short_help_str(80) or "")) for n, c in sorted(cmd.commands.items()) if not c.hidden]


def bash_script(app, prog: str = "loce") -> str:
    tree = _tree(app)
    groups = [" ".join(p) for p, c in tree.items() if p]
    lines = [
        f"# bash completion for {prog} ({HEADER})",
        f"_{prog}_complete() {{",
        '    local cur prev path i w words opts valued',
        '    cur="${COMP_WORDS[COMP_CWORD]}"',
        '    prev="${COMP_WORDS[COMP_CWORD-1]}"',
        '    path=""',
        "    for ((i=1; i<COMP_CWORD; i++)); do",
        '        w="${COMP_WORDS[i]}"',
        '        case "${path:+$path }$w" in',
        "            " + "|".join(f'"{g}"' for g in groups) + ') path="${path:+$path }$w" ;;',
        "        esac",
        "    done",
        '    case "$path" in',
    ]
    for path, cmd in tree.items():
        opts = _options(cmd)
        words = [n for n, _ in _subcommands(cmd)] + [n for names, _, _ in opts for n in names]
        valued = [n for names, takes, _ in opts if takes for n in names]
        lines.append(f'        "{" ".join(path)}") opts="{" ".join(words)}"; valued="{" ".join(valued)}" ;;')
    lines += [
        "    esac",
        '    # an option that takes a value: fall back to file-name completion',
        '    if [[ -n "$prev" && " $valued " == *" $prev "* ]]; then',
        "        COMPREPLY=()",
        "        return 0",
        "    fi",
        '    COMPREPLY=( $(compgen -W "$opts" -- "$cur") )',
        "}",
        f"complete -o default -F _{prog}_complete {prog}",
        "",
    ]
    return "\n".join(lines)


def zsh_script(app, prog: str = "loce") -> str:
    body = bash_script(app, prog).split("\n", 1)[1]
    return "\n".join([
        f"#compdef {prog}",
        f"# zsh completion for {prog} ({HEADER})",
        "# uses zsh's bash-completion emulation",
        "autoload -U +X compinit && compinit",
        "autoload -U +X bashcompinit && bashcompinit",
        body,
    ])


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(app, prog: str = "loce") -> str:
    tree = _tree(app)
    lines = [f"# fish completion for {prog} ({HEADER})", f"complete -c {prog} -e"]
    for path, cmd in tree.items():
        subs = _subcommands(cmd)
        if path:
            cond = f"__fish_seen_subcommand_from {path[-1]}"
            if len(path) == 1 and subs:
                cond += "; and not __fish_seen_subcommand_from " + " ".join(n for n, _ in subs)
        else:
            cond = "__fish_use_subcommand"
        for name, help_text in subs:
            lines.append(f"complete -c {prog} -f -n {_fish_quote(cond)} -a {name} -d {_fish_quote(help_text)}")
        for names, takes, help_text in _options(cmd):
            flags = " ".join((f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}") for n in names)
            lines.append(f"complete -c {prog} -n {_fish_quote(cond)} {flags}{' -r' if takes else ''} "
                         f"-d {_fish_quote(help_text)}")
    return "\n".join(lines) + "\n"


def generate(shell: str, app=None) -> str:
    if app is None:
        from loce_cli.cli.app import app
    return {"bash": bash_script, "zsh": zsh_script, "fish": fish_script}[shell](app)


FILE_NAMES = {"bash": "loce.bash", "zsh": "_loce", "fish": "loce.fish"}
