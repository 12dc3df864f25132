"""``loce report``: evaluated runs side by side (AP / APr / APc / APf), deltas against the first, plots."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.failures import fail
from loce_cli.cli.options import METRIC, PROTOCOLS, ReportFormat, Split, check_plot_path, shown
from loce_cli.cli.render import err, out, print_json

RUNS = typer.Argument(..., help="Evaluated runs: an eval --out directory or its metrics.json, optionally LABEL=PATH; "
                                "a quoted glob averages seeds (e.g. 'loce=runs/loce_seed*/eval').")
SPLIT = typer.Option("all", "--split", help="Per-class table of this frequency group.")
FORMAT = typer.Option("table", "--format", help="table (terminal), md, json or csv.")
PROTOCOL = typer.Option(None, "--protocol", metavar=shown(PROTOCOLS),
                        help="standard, fixed (AP-fixed) and/or pooled (AP-pool) (repeatable; default: standard and "
                             "every protocol all runs were evaluated with).")
PLOT = typer.Option(None, "--plot", help="Write per-class AP vs training instances (FILE.png) and AP bars per group "
                                         "(FILE_groups.png).")
ALLOW_DIFFERENT_DATA = typer.Option(False, "--allow-different-data",
                                    help="Compare runs evaluated on different annotation files (refused otherwise), "
                                         "with a warning.")


def print_report_table(report, console=None) -> None:
    """The summary as a rich table: deltas green when up, red when down (plain when not a terminal)."""
    from rich.table import Table

    from loce_cli.engine.report.runs import class_rows, summary_rows

    console = console or out
    if not console.is_terminal:  # a file or a pipe: never cut columns to 80 characters
        from rich.console import Console

        console = Console(file=console.file, width=240, highlight=False, no_color=True)
    rows = summary_rows(report)
    n_keys = len(report.keys())
    table = Table(title="LVIS AP by frequency group" + (" (mean ± sd over seeds)" if any(
        len(r.sources) > 1 for r in report.runs) else ""), title_justify="left")
    for i, col in enumerate(rows[0]):
        table.add_column(col, justify="left" if i < 2 else "right")
    for row in rows[1:]:
        cells = row[:3 + n_keys] + [_coloured(c) for c in row[3 + n_keys:]]
        table.add_row(*cells)
    console.print(table)
    for metric in report.classes:
        crow = class_rows(report, metric)
        t = Table(title=f"{metric}: {report.split} classes by training images", title_justify="left")
        for i, col in enumerate(crow[0]):
            t.add_column(col, justify="left" if i < 2 else "right")
        first_delta = 4 + len(report.runs)
        for row in crow[1:]:
            t.add_row(*(row[:first_delta] + [_coloured(c) for c in row[first_delta:]]))
        console.print(t)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")


def _coloured(delta: str) -> str:
    if delta.startswith("+") and delta.strip("+0.") != "":
        return f"[green]{delta}[/]"
    if delta.startswith("-") and delta != "-" and delta.strip("-0.") != "":
        return f"[red]{delta}[/]"
    return delta


def report(runs: List[str] = RUNS, split: Split = SPLIT, metric: Optional[List[str]] = METRIC,
           fmt: ReportFormat = FORMAT, protocol: Optional[List[str]] = PROTOCOL, plot: Optional[Path] = PLOT,
           allow_different_data: bool = ALLOW_DIFFERENT_DATA) -> None:
    """AP / APr / APc / APf of one or more evaluated runs, with deltas against the first run."""
    from loce_cli.engine.report.runs import FORMATS, build_report, render_csv, render_markdown
    from loce_cli.engine.pictures.report_plots import plot_report

    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r} is not supported (hint: one of {', '.join(FORMATS)})", 2)
    check_plot_path(plot)
    result = build_report(runs, list(metric or []), split, allow_different_data, list(protocol or []) or None)
    from rich.markup import escape

    for note in result.notes:
        if note.startswith("WARNING"):
            err.print(f"[bold red]{escape(note)}[/]")  # loud, on stderr, whatever the --format
    if fmt == "json":
        print_json(result.to_dict())
    elif fmt == "md":
        typer.echo(render_markdown(result), nl=False)
    elif fmt == "csv":
        typer.echo(render_csv(result), nl=False)
        for note in result.notes:  # the table has no place for them: stderr, as the warnings
            if not note.startswith("WARNING"):
                err.print(f"note: {escape(note)}", highlight=False)
    else:
        print_report_table(result)
    if plot is not None:
        written = plot_report(result, plot)
        err.print("plots: " + ", ".join(str(p) for p in written))
