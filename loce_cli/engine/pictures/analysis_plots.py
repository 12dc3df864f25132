"""``loce analyze --plot``: per run, one row of three panels: the AP50 each error type costs per group (stacked
bars), who takes each group's objects (a small heat map of fractions) and the reliability curves by group."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from loce_cli.engine.analysis import ERROR_TYPES, Analysis, Comparison
from loce_cli.engine.pictures.colours import GROUP_COLOURS
from loce_cli.engine.pictures.figures import plt, save_figure

_ERROR_COLOURS = ("#8c564b", "#9467bd", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_TAKERS = ("own", "r", "c", "f", "none")


def _errors(a: Analysis, ax) -> None:
    groups = ["all", "r", "c", "f"]
    bottom = np.zeros(len(groups))
    for t, colour in zip(ERROR_TYPES, _ERROR_COLOURS):
        vals = np.array([100 * (a.errors[g]["gain"][t] or 0.0) for g in groups])
        ax.bar(groups, vals, bottom=bottom, color=colour, label=t)
        bottom += vals
    # the zero-height segments on top are sticky edges that stop autoscaling's margin: room for the bars and legend
    ax.set_ylim(0, max(float(bottom.max()), 1.0) * 1.3)
    ax.set_ylabel("AP50 gained by fixing (points)")
    ax.set_title(f"{a.label}: errors by group", fontsize=10)
    ax.legend(fontsize=7, ncol=2)


def _confusion(a: Analysis, ax) -> None:
    counts = np.array([[a.confusion[g][k] for k in _TAKERS] for g in ("r", "c", "f")], np.float64)
    frac = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(len(_TAKERS)):
            ax.text(j, i, f"{frac[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if frac[i, j] > 0.6 else "black")
    labels = ["own class", "another\nrare", "another\ncommon", "another\nfrequent", "none"]
    ax.set_xticks(range(len(_TAKERS)), labels, fontsize=7)
    ax.set_yticks(range(3), ["rare", "common", "frequent"], fontsize=8)
    ax.set_xlabel("taken by")
    ax.set_title(f"{a.label}: who takes each group's objects", fontsize=10)


def _reliability(a: Analysis, ax) -> None:
    ax.plot([0, 1], [0, 1], color="#999999", linestyle=":", linewidth=1)
    for g in ("r", "c", "f"):
        cal = a.calibration[g]
        pts = [(b["mean_score"], b["fraction_right"]) for b in cal["bins"] if b["count"]]
        if pts:
            x, y = zip(*pts)
            ece = "-" if cal["ece"] is None else f"{cal['ece']:.3f}"
            ax.plot(x, y, marker="o", markersize=3, color=GROUP_COLOURS[g], label=f"{g} (ECE {ece})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean score in bin")
    ax.set_ylabel("fraction right (IoU 0.5)")
    ax.set_title(f"{a.label}: reliability by group", fontsize=10)
    ax.legend(fontsize=7)


def plot_analysis(result, path: Path) -> Path:
    """One row per run (two for a comparison), written to ``path``."""
    runs: List[Analysis] = [result.run, result.other] if isinstance(result, Comparison) else [result]
    fig, axes = plt.subplots(len(runs), 3, figsize=(15, 4.2 * len(runs)), squeeze=False)
    for row, a in zip(axes, runs):
        _errors(a, row[0])
        _confusion(a, row[1])
        _reliability(a, row[2])
    fig.suptitle(" vs ".join(a.label for a in runs) + f" ({runs[0].metric}, LVIS rules)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, Path(path), dpi=120)
