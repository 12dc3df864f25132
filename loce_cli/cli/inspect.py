"""``loce inspect scores|memory``: the LOCE state inside a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from loce_cli.cli.options import Split, check_plot_path
from loce_cli.cli.render import group_label, out, print_json, table

app = typer.Typer(help="Inspect the LOCE state stored in a checkpoint: mean scores, feature memory.",
                  no_args_is_help=True)

CHECKPOINT = typer.Argument(..., help="A LOCE checkpoint (loce finetune).")
SPLIT = typer.Option("all", "--split", help="Frequency group for --lowest.")
LOWEST = typer.Option(10, "--lowest", min=0, help="How many of the weakest classes to list.")
SCORES_PLOT = typer.Option(None, "--plot", help="Score vs training instances plot (.png).")
SCORES_JSON = typer.Option(False, "--json", help="Machine-readable output (all classes).")
MEMORY_PLOT = typer.Option(None, "--plot", help="Queue fill vs training instances plot (.png).")
MEMORY_JSON = typer.Option(False, "--json", help="Machine-readable output.")


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


@app.command("scores")
def scores(checkpoint: Path = CHECKPOINT, split: Split = SPLIT, lowest: int = LOWEST,
           plot: Optional[Path] = SCORES_PLOT, json_out: bool = SCORES_JSON) -> None:
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
    _print_scores(report, checkpoint, split)
    if plot is not None:
        out.print(f"plot written to {plot}")


def _print_scores(report, checkpoint: Path, split: str) -> None:
    groups = table(f"mean classification scores in {checkpoint} (background held at {report.background:.3f})",
                   ("group", "classes", "mean", "median", "min"), left=("group",))
    for g, s in report.groups.items():
        groups.add_row(group_label(g), str(s["classes"]), _fmt(s["mean"]), _fmt(s["median"]), _fmt(s["min"]))
    out.print(groups)
    if not report.lowest:
        return
    weak = table(f"{len(report.lowest)} weakest classes ({split})",
                 ("class", "group", "score", "train images", "train instances"), left=("class", "group"))
    for c in report.lowest:
        weak.add_row(c.name, group_label(c.group), f"{c.score:.4f}",
                     "-" if c.train_images is None else str(c.train_images),
                     "-" if c.train_instances is None else str(c.train_instances))
    out.print(weak)


@app.command("memory")
def memory(checkpoint: Path = CHECKPOINT, plot: Optional[Path] = MEMORY_PLOT,
           json_out: bool = MEMORY_JSON) -> None:
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
    fill = table(f"feature memory in {checkpoint}: {report.num_classes} queues x {report.queue_size}, "
                 f"features {'x'.join(map(str, report.feature_shape))} {report.dtype}, "
                 f"{report.bytes / 1e6:,.1f} MB", ("group", "full", "partial", "empty"), left=("group",))
    for g, f in report.fill.items():
        fill.add_row(group_label(g), str(f["full"]), str(f["partial"]), str(f["empty"]))
    out.print(fill)
    out.print(f"{report.stored_features:,} stored features")
    if report.empty_classes:
        out.print("empty queues: " + ", ".join(report.empty_classes))
    if plot is not None:
        out.print(f"plot written to {plot}")
