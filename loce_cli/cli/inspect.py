"""``loce inspect scores|memory``: the LOCE state inside a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from loce_cli.cli.choices import Split
from loce_cli.cli._common import check_plot_path, engine_errors, group_label, out, print_json

app = typer.Typer(help="Inspect the LOCE state stored in a checkpoint: mean scores, feature memory.",
                  no_args_is_help=True)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


@app.command("scores")
@engine_errors
def scores(checkpoint: Path = typer.Argument(..., help="A LOCE checkpoint (loce finetune)."),
           split: Split = typer.Option("all", "--split", help="Frequency group for --lowest."),
           lowest: int = typer.Option(10, "--lowest", min=0, help="How many of the weakest classes to list."),
           plot: Optional[Path] = typer.Option(None, "--plot", help="Score vs training instances plot (.png)."),
           json_out: bool = typer.Option(False, "--json", help="Machine-readable output (all classes).")) -> None:
    """Per-class mean classification scores: summary per frequency group and the weakest classes."""
    from loce_cli.engine.inspect.state import inspect_scores
    from loce_cli.engine.pictures.inspect_plots import plot_scores

    check_plot_path(plot)
    report = inspect_scores(checkpoint, split=split, lowest=lowest)
    if plot is not None:
        plot_scores(report, plot)
    if json_out:
        print_json(report.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"mean classification scores in {checkpoint} (background held at "
                        f"{report.background:.3f})", title_justify="left")
    for col in ("group", "classes", "mean", "median", "min"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for g, s in report.groups.items():
        table.add_row(group_label(g), str(s["classes"]), _fmt(s["mean"]), _fmt(s["median"]), _fmt(s["min"]))
    out.print(table)
    if report.lowest:
        weak = Table(title=f"{len(report.lowest)} weakest classes ({split})", title_justify="left")
        for col in ("class", "group", "score", "train images", "train instances"):
            weak.add_column(col, justify="left" if col in ("class", "group") else "right")
        for c in report.lowest:
            weak.add_row(c.name, group_label(c.group), f"{c.score:.4f}",
                         "-" if c.train_images is None else str(c.train_images),
                         "-" if c.train_instances is None else str(c.train_instances))
        out.print(weak)
    if plot is not None:
        out.print(f"plot written to {plot}")


@app.command("memory")
@engine_errors
def memory(checkpoint: Path = typer.Argument(..., help="A LOCE checkpoint (loce finetune)."),
           plot: Optional[Path] = typer.Option(None, "--plot", help="Queue fill vs training instances plot "
                                                                    "(.png)."),
           json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Feature-memory fill per frequency group, storage dtype and size, classes with empty queues."""
    from loce_cli.engine.inspect.state import inspect_memory
    from loce_cli.engine.pictures.inspect_plots import plot_memory

    check_plot_path(plot)
    report = inspect_memory(checkpoint)
    if plot is not None:
        plot_memory(report, plot)
    if json_out:
        print_json(report.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"feature memory in {checkpoint}: {report.num_classes} queues x {report.queue_size}, "
                        f"features {'x'.join(map(str, report.feature_shape))} {report.dtype}, "
                        f"{report.bytes / 1e6:,.1f} MB", title_justify="left")
    for col in ("group", "full", "partial", "empty"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for g, f in report.fill.items():
        table.add_row(group_label(g), str(f["full"]), str(f["partial"]), str(f["empty"]))
    out.print(table)
    out.print(f"{report.stored_features:,} stored features")
    if report.empty_classes:
        out.print("empty queues: " + ", ".join(report.empty_classes))
    if plot is not None:
        out.print(f"plot written to {plot}")
