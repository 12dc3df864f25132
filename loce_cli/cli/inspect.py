"""``loce inspect scores|memory``: the LOCE state inside a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.options import CFG_OPTIONS, Split, check_plot_path
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


MEASURE = typer.Option(None, "--measure", help="Measure the scores of each checkpoint on this config's training "
                        "data (any checkpoint: base, baseline, LOCE, the authors'); the config builds the model.")
MEASURE_DATA = typer.Option(None, "--data", help="With --measure: dataset root holding annotations/<the config's "
                            "training file> (default: the config's own paths).")
IMAGES_PER_CLASS = typer.Option(None, "--images-per-class", min=1, help="With --measure: images per class in the "
                                "class-balanced list (default: LOCE's queue_size // 16 = 5).")
SCORES_CKPTS = typer.Argument(..., help="A LOCE checkpoint (loce finetune); with --measure, one or more of any kind.")


@app.command("scores")
def scores(checkpoints: List[Path] = SCORES_CKPTS, split: Split = SPLIT, lowest: int = LOWEST,
           plot: Optional[Path] = SCORES_PLOT, json_out: bool = SCORES_JSON, measure: Optional[Path] = MEASURE,
           data: Optional[Path] = MEASURE_DATA, images_per_class: Optional[int] = IMAGES_PER_CLASS,
           cfg_options: Optional[List[str]] = CFG_OPTIONS) -> None:
    """Per-class mean classification scores: summary per frequency group and the weakest classes; stored in a
    LOCE checkpoint, or measured on the training data with --measure (the paper's indicator)."""
    from loce_cli.engine.inspect.state import inspect_scores
    from loce_cli.engine.pictures.inspect_plots import plot_score_comparison, plot_scores

    check_plot_path(plot)
    if measure is None and (data is not None or images_per_class is not None or cfg_options):
        raise typer.BadParameter("--data, --images-per-class and --cfg-options go with --measure CONFIG")
    if measure is None and len(checkpoints) > 1:
        raise typer.BadParameter("several checkpoints need --measure CONFIG (stored scores: one at a time)")
    if measure is not None:
        from loce_cli.engine.inspect.measure import measure_checkpoint_scores
        reports = [measure_checkpoint_scores(c, measure, data=data, images_per_class=images_per_class,
                                             cfg_options=cfg_options or (), lowest=lowest) for c in checkpoints]
    else:
        reports = [inspect_scores(checkpoints[0], split=split, lowest=lowest)]
    if plot is not None:
        plot_score_comparison(reports, plot) if len(reports) > 1 else plot_scores(reports[0], plot)
    if json_out:
        print_json([r.to_dict() for r in reports] if measure is not None else reports[0].to_dict())
        return
    for report, checkpoint in zip(reports, checkpoints):
        _print_scores(report, checkpoint, split, measured=measure is not None)
    if len(reports) > 1:
        _print_comparison(reports, checkpoints)
    if plot is not None:
        out.print(f"plot written to {plot}")


def _print_comparison(reports, checkpoints) -> None:
    groups = list(reports[0].groups)
    t = table("measured mean scores per group", ("checkpoint", *groups), left=("checkpoint",))
    for report, checkpoint in zip(reports, checkpoints):
        t.add_row(str(checkpoint), *(_fmt(report.groups[g]["mean"]) for g in groups))
    out.print(t)


def _print_scores(report, checkpoint: Path, split: str, measured: bool = False) -> None:
    title = (f"mean classification scores of {checkpoint}, measured on the training data" if measured else
             f"mean classification scores in {checkpoint} (background held at {report.background:.3f})")
    groups = table(title,
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
