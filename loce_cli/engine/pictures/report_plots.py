"""``loce report --plot``: per-class AP against training instances per run, and AP by frequency group."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

from loce_cli.core.frequency import GROUP_NAMES
from loce_cli.engine.pictures.colours import GROUP_COLOURS
from loce_cli.engine.pictures.figures import plt, save_figure
from loce_cli.engine.report.runs import KEYS, SPLIT_KEY, fmt, per_class_by_run


def plot_report(report, path: Path, metric: Optional[str] = None) -> List[Path]:
    """Two PNGs: ``path`` with per-class AP against training instances (log x), one panel per run and metric (a
    row of panels per metric: bbox and segm when the table has both), coloured by frequency group;
    ``<stem>_groups<suffix>`` with AP / APr / APc / APf bars per run, one panel per metric (error bars: sd over
    seeds). ``metric``: draw that one only."""
    metrics = [metric] if metric else list(report.metrics)
    n = len(report.runs)
    cols = min(n, 3)
    run_rows = math.ceil(n / cols)
    rows = run_rows * len(metrics)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.8 * rows), squeeze=False, sharey=True)
    x_labels = []
    for m, name in enumerate(metrics):
        x_labels.append(_scatter_panels(report, name, [axes[m * run_rows + r] for r in range(run_rows)], cols))
    x_label = x_labels[0]
    fig.suptitle(f"per-class {' and '.join(metrics)} AP vs {x_label.split(' (')[0]}", fontsize=11)
    fig.tight_layout()
    written = [save_figure(fig, Path(path), dpi=140)]

    width_one = max(6.0, 1.6 * n + 3)
    fig, group_axes = plt.subplots(1, len(metrics), figsize=(width_one * len(metrics), 4.0), squeeze=False)
    for ax, name in zip(group_axes[0], metrics):
        _group_bars(report, name, ax)
    fig.tight_layout()
    groups_path = Path(path).with_name(f"{Path(path).stem}_groups{Path(path).suffix}")
    written.append(save_figure(fig, groups_path, dpi=140))
    return written


def _scatter_panels(report, metric: str, axes_rows, cols: int) -> str:
    """One metric's per-class scatter, a panel per run over ``axes_rows``; returns the x axis label."""
    per_run = per_class_by_run(report, metric)
    n = len(report.runs)
    # metrics.json files of older loce versions have no instance counts. The runs share one class list
    # (checked), so counts from any run serve all; with none anywhere fall back to image counts and say so.
    count = "instance_count" if any(c["instance_count"] for run_rows in per_run for c in run_rows) else "image_count"
    x_label = "training instances (log)" if count == "instance_count" else "training images (log)"
    known = {}
    for run_rows in per_run:
        for k, c in enumerate(run_rows):
            if c[count]:
                known.setdefault(k, c[count])
    for run_rows in per_run:
        for k, c in enumerate(run_rows):
            c[count] = c[count] or known.get(k)
    for i, run in enumerate(report.runs):
        ax = axes_rows[i // cols][i % cols]
        for g in ("f", "c", "r"):
            pts = [(c[count], 100 * c["ap"]) for c in per_run[i]
                   if c["frequency"] == g and c["ap"] is not None and c[count]]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.scatter(xs, ys, s=18, alpha=0.8, color=GROUP_COLOURS[g],
                       label=f"{GROUP_NAMES[g]} ({fmt(run.metrics[metric][SPLIT_KEY[g]].mean)})")
        ax.set_xscale("log")
        ax.set_ylim(-3, 103)
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(f"{run.label}: {metric} AP {fmt(run.metrics[metric]['AP'].mean)}", fontsize=10)
        ax.set_xlabel(x_label)
        if i % cols == 0:
            ax.set_ylabel(f"class {metric} AP")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    for j in range(n, len(axes_rows) * cols):
        axes_rows[j // cols][j % cols].axis("off")
    return x_label


def _group_bars(report, metric: str, ax) -> None:
    """AP / APr / APc / APf bars of each run for one metric."""
    n = len(report.runs)
    width = 0.8 / n
    for i, run in enumerate(report.runs):
        stats = run.metrics[metric]
        means = [100 * (stats[k].mean or 0) for k in KEYS]
        errs = [100 * (stats[k].sd or 0) for k in KEYS]
        xs = [x + (i - (n - 1) / 2) * width for x in range(len(KEYS))]
        bars = ax.bar(xs, means, width, yerr=errs if any(errs) else None, capsize=3, label=run.label)
        for b, v in zip(bars, means):
            ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(KEYS)), KEYS)
    ax.set_ylabel(f"{metric} AP")
    ax.set_ylim(0, 105)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=min(n, 3))
    ax.set_title(f"{metric} AP by frequency group" + (" (error bars: sd over seeds)" if any(
        len(r.sources) > 1 for r in report.runs) else ""), fontsize=10)


