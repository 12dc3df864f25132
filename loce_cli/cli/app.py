"""The ``loce`` Typer app: top-level commands and command groups, wired here."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from loce_cli import __version__
from loce_cli.cli import analyze, data, doctor, evaluate, inspect, predict, report, train
from loce_cli.cli.configs import configs as configs_command
from loce_cli.cli.failures import STATE
from loce_cli.cli.help_format import LoceGroup

app = typer.Typer(
    name="loce",
    cls=LoceGroup,
    help="LOCE long-tailed object detection (ICCV 2021) over mmdet 2.x: data, training, evaluation, inspection.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"loce {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                           help="Print the version and exit."),
) -> None:
    if debug:
        STATE["debug"] = True


app.command("doctor")(doctor.doctor)
app.command("quickstart")(train.quickstart)
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.command("finetune")(train.finetune)
app.command("eval")(evaluate.evaluate)
app.command("report")(report.report)
app.add_typer(inspect.app, name="inspect")
app.command("analyze")(analyze.analyze)
app.command("predict")(predict.predict)
app.command("configs")(configs_command)


def expand_cfg_options(argv: List[str]) -> List[str]:
    """mmdet's form ``--cfg-options a=1 b=2`` as Typer's repeated ``--cfg-options a=1 --cfg-options b=2``: the
    ``KEY=VALUE`` words right after ``--cfg-options`` (up to the next option or a word without ``=``)."""
    out: List[str] = []
    in_options = False
    for word in argv:
        if word == "--":
            in_options = False
        elif word == "--cfg-options" or word.startswith("--cfg-options="):
            in_options = True
            out.append(word)
            continue
        elif in_options and not word.startswith("-") and "=" in word:
            if out[-1] != "--cfg-options":
                out.append("--cfg-options")
            out.append(word)
            continue
        else:
            in_options = False
        out.append(word)
    return out


def hoist_debug(argv: List[str]) -> List[str]:
    """``--debug`` anywhere before ``--`` (``loce eval ... --debug`` too) as the root option it is."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[:end]:
        return argv
    return ["--debug"] + [w for i, w in enumerate(argv) if not (w == "--debug" and i < end)]


def main() -> None:
    import logging

    logging.raiseExceptions = False  # a handler that cannot format a record drops it, no "--- Logging error ---"
    app(args=hoist_debug(expand_cfg_options(sys.argv[1:])))
