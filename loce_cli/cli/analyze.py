"""``loce analyze``: where each frequency group's AP goes (errors, cross-group confusion, calibration), one run or
two side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from loce_cli.cli.options import JSON_OUTPUT, METRICS, check_plot_path, shown
from loce_cli.cli.render import err, out, print_json

SOURCE = typer.Argument(..., help="An eval --out directory (or its metrics.json), or an LVIS results JSON.")
ANN = typer.Option(None, "--ann", help="The annotation file the results were made for (default: the one the eval "
                                       "directory's metrics.json names).")
COMPARE = typer.Option(None, "--compare", help="Another run on the same data (e.g. the base model): every figure side "
                                               "by side with the delta (this run minus OTHER).")
METRIC_ONE = typer.Option("bbox", "--metric", metavar=shown(METRICS), help="IoU of boxes or of masks.")
PLOT = typer.Option(None, "--plot", help="Write error bars, the group confusion heat map and reliability curves "
                                         "(FILE.png).")


def analyze(source: Path = SOURCE, ann: Optional[Path] = ANN, compare: Optional[Path] = COMPARE,
            metric: Literal[METRICS] = METRIC_ONE, json_out: bool = JSON_OUTPUT, plot: Optional[Path] = PLOT) -> None:
    """Where each group's AP goes under LVIS's rules: TIDE's error types, who takes each object, calibration."""
    from loce_cli.engine.analysis import analyze as run_analysis
    from loce_cli.engine.analysis import compare as compare_runs
    from loce_cli.engine.analysis import headline, tables
    from loce_cli.engine.pictures.analysis_plots import plot_analysis

    check_plot_path(plot)
    say = None if json_out else (lambda m: err.print(f"[dim]{m}[/]"))
    result = run_analysis(source, ann, metric, say=say)
    if compare is not None:
        result = compare_runs(result, run_analysis(compare, ann, metric, say=say))
    if json_out:
        print_json(result.to_dict())
    else:
        from rich.table import Table

        for title, head, rows in tables(result):
            table = Table(title=title, title_justify="left")
            for i, col in enumerate(head):
                table.add_column(col, justify="left" if i == 0 else "right")
            for row in rows:
                table.add_row(*row)
            out.print(table)
        if compare is not None:
            for line in headline(result):
                out.print(line)
    if plot is not None:
        err.print(f"plot: {plot_analysis(result, plot)}")
