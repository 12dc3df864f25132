"""How ``loce --help`` reads: commands in the order of the work, option types as users read them, examples.

Typer builds the whole command tree before it constructs the root group, so :class:`LoceGroup` (the root's
``cls``) walks the finished tree once and, for every command:

- shows each option's type as a word (``PATH``, ``INTEGER``, ``TEXT``, ``FLOAT``), choices as ``[a|b|c]`` and
  flags with no type at all (Typer 0.29 prints ``<bool>`` for a flag, yet ``--json true`` is refused);
- joins the lines of each paragraph of help text (docstrings are wrapped in the source, not on the screen);
- appends the command's examples from :data:`loce_cli.cli.examples.EXAMPLES` as its epilog.

Sub-groups list their commands in the order they were registered (the order of the work), not alphabetically.
The type words come from Typer's own description of each parameter, so the rendering follows the code.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Iterator, List, Optional, Tuple

from typer import core as typer_core

from loce_cli.cli.failures import command_errors, exit_standalone

try:  # Typer 0.29 (requirements/runtime.txt); an older Typer (a GPU image's own) gets its plain help and errors
    from typer import _click
except ImportError:  # pragma: no cover - exercised only where an older Typer is installed
    _click = None

# the order of the work; a command not named here follows in registration order
ROOT_ORDER = ("data", "configs", "train", "finetune", "eval", "report", "inspect", "predict", "quickstart", "doctor")

_SCALARS = {int: "INTEGER", float: "FLOAT", str: "TEXT"}
_PATH_WORDS = {"file": "FILE", "directory": "DIR"}


def readable_type(param: Any) -> Optional[str]:
    """The type word shown after an option (None for a flag): PATH, INTEGER, TEXT, FLOAT or [a|b|c]."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar and not isinstance(param, typer_core.TyperArgument):
        return param.metavar
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        return "[" + "|".join(str(c) for c in desc.choices) + "]"
    if desc.is_path:
        return _PATH_WORDS.get(str(desc.path_type).lower(), "PATH")
    annotation = desc.annotation
    args = getattr(annotation, "__args__", None)
    if desc.is_list and args:
        annotation = args[0]
    return _SCALARS.get(annotation, "TEXT")


class _ReadableOption(typer_core.TyperOption):
    def display_type_rich(self, ctx):  # noqa: D102 - Typer's hook
        return readable_type(self)


class _ReadableArgument(typer_core.TyperArgument):
    def display_type_rich(self, ctx):  # noqa: D102 - Typer's hook
        return readable_type(self)


def _flag_help_option(command: Any) -> None:
    """The ``--help`` option (made lazily by click) is a flag too: shown with no type word."""
    make = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if type(option) is typer_core.TyperOption:
            option.__class__ = _ReadableOption
        return option

    command.get_help_option = get_help_option


def unwrap(text: Optional[str]) -> Optional[str]:
    """Join the lines of each paragraph (paragraphs are separated by blank lines); keep the paragraphs."""
    if not text:
        return text
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines() if line.strip()) for p in paragraphs)


def walk(command: Any, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], Any]]:
    """Every command of the tree with its path (``("train", "base")``), groups included, root first."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from walk(sub, path + (name,))


def _epilog(lines: List[str]) -> str:
    # Typer's rich help keeps a line break only at a blank line, so each example is its own paragraph
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


def polish(command: Any, path: Tuple[str, ...]) -> None:
    """Readable types, unwrapped help and the examples of one command (in place)."""
    from loce_cli.cli.examples import EXAMPLES

    _flag_help_option(command)
    command.help = unwrap(command.help)
    if getattr(command, "short_help", None):
        command.short_help = unwrap(command.short_help)
    for param in command.params:
        if type(param) is typer_core.TyperOption:
            param.__class__ = _ReadableOption
        elif type(param) is typer_core.TyperArgument:
            param.__class__ = _ReadableArgument
            if param.metavar is None:  # CONFIG, not config, in the usage line and the arguments panel
                param.metavar = param.name.upper()
        if getattr(param, "help", None):
            param.help = unwrap(param.help)
    examples = EXAMPLES.get(" ".join(path))
    if examples:
        command.epilog = _epilog(examples)


class LoceGroup(typer_core.TyperGroup):
    """The root group: orders the commands, polishes the help of the whole tree once it is built, and runs the
    command line inside the CLI's one exception boundary (:mod:`loce_cli.cli.failures`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if _click is None:
            return
        for path, command in walk(self):
            polish(command, path)

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None, standalone_mode: bool = True,
             **extra: Any) -> Any:
        """Typer's own main, except that a usage error is one line (``error: ... (hint: ...)``), exit 2."""
        if not standalone_mode or _click is None:
            return super().main(args, prog_name, complete_var, standalone_mode=standalone_mode, **extra)
        exit_standalone(functools.partial(super().main, args, prog_name, complete_var, standalone_mode=False, **extra))

    def invoke(self, ctx: Any) -> Any:
        """The command, inside the one exception boundary (:func:`loce_cli.cli.failures.command_errors`)."""
        with command_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx: Any) -> List[str]:
        names = list(self.commands)
        ranked = [n for n in ROOT_ORDER if n in self.commands]
        return ranked + [n for n in names if n not in ranked]
