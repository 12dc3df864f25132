"""docs/CLI.md, the reference of every command and option, generated from the Typer app (``make docs-cli``).

The text comes from the same objects ``--help`` renders, so the page cannot drift from the code: a test
regenerates it and fails when the committed page is stale.
"""

from __future__ import annotations

from typing import Any, List

HEADER = ("<!-- generated from the loce Typer app by scripts/dev/gen_cli_reference.py (make docs-cli); "
          "do not edit -->")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False) or param.required:
        return ""
    value = param.get_default(ctx)
    if value is None or value == () or value == []:
        return ""
    return f"`{value}`"


def _names(param: Any) -> str:
    if param.param_type_name == "argument":
        return f"`{param.metavar or param.name.upper()}`"
    return ", ".join(f"`{o}`" for o in list(param.opts) + list(param.secondary_opts))


def command_section(path: tuple, command: Any) -> List[str]:
    """The markdown of one command: what it does, its usage line, a table of its arguments and options, examples."""
    from typer import _click

    from loce_cli.cli.examples import EXAMPLES
    from loce_cli.cli.help_format import readable_type

    name = " ".join(("loce",) + path)
    ctx = _click.Context(command, info_name=name)
    lines = [f"## `{name}`", "", command.help or "", ""]
    pieces = command.collect_usage_pieces(ctx)
    lines += ["```", f"{name} {' '.join(pieces)}", "```", ""]
    params = [p for p in command.params if not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument / option | value | default | what it does |", "|---|---|---|---|"]
        for p in params:
            value = readable_type(p) or "(flag)"
            required = " (required)" if p.required else ""
            lines.append(f"| {_names(p)} | {_cell(value)}{required} | {_cell(_default(p, ctx))} | "
                         f"{_cell(p.help or '')} |")
        lines.append("")
    examples = EXAMPLES.get(" ".join(path))
    if examples:
        lines += ["```bash", *examples, "```", ""]
    return lines


def generate(app: Any = None) -> str:
    """The whole page, commands in the order ``loce --help`` lists them."""
    import typer

    from loce_cli.cli.help_format import walk

    if app is None:
        from loce_cli.cli.app import app
    root = typer.main.get_command(app)
    ctx_root = None
    order: List[tuple] = []

    def visit(path: tuple, cmd: Any) -> None:
        order.append((path, cmd))
        subs = getattr(cmd, "commands", None)
        if subs:
            names = cmd.list_commands(ctx_root) if path == () else list(subs)
            for n in names:
                visit(path + (n,), subs[n])

    visit((), root)
    assert {p for p, _ in order} == {p for p, _ in walk(root)}
    out = [HEADER, "# Command reference", "",
           "Every `loce` command with every argument and option, as `loce COMMAND --help` shows them. Guides: "
           "[the README](../README.md) (the tour), [COMMANDS.md](COMMANDS.md) (what each command does and "
           "writes), [CLUSTERS.md](CLUSTERS.md) (GPUs, nodes, Slurm, preemption).", "",
           "`loce --debug COMMAND ...` (or `--debug` anywhere on the line) shows the traceback of a failure; "
           "`loce --version` prints the version.", ""]
    for path, cmd in order:
        if path == () or getattr(cmd, "commands", None):
            continue
        out += command_section(path, cmd)
    return "\n".join(out).rstrip() + "\n"
