"""The ``loce`` Typer app: top-level commands and command groups, wired here."""

from __future__ import annotations

from typing import Optional

import typer

from loce_cli import __version__
from loce_cli.cli import data, doctor, evaluate, inspect, predict, report, train
from loce_cli.cli._common import STATE

app = typer.Typer(
    name="loce",
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
app.command("predict")(predict.predict)


def main() -> None:
    app()
