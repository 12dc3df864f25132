"""``loce inspect scores|memory --plot``: one point per class against its training instances, by group."""

from __future__ import annotations

import os
from pathlib import Path

from loce_cli.core.frequency import GROUP_NAMES, GROUPS
from loce_cli.engine.pictures.colours import GROUP_COLOURS
from loce_cli.engine.pictures.figures import check_plot_path, plt, save_figure


def path_title(path: str, width: int = 60) -> str:
    """A checkpoint path for a plot title that names the run: the file (``latest.pth`` with the file it points at)
    with at least its two parent folders and as many more as fit in ``width`` characters (``.../`` for the rest),
    broken across lines only at path separators, never inside a name."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))  # a bare latest.pth still names its folder
    name = f"{p.name} ({Path(os.readlink(p)).name})" if p.is_symlink() else p.name
    parts = [q for q in p.parent.parts if q != p.anchor]
    kept = [name]
    for part in reversed(parts):
        if len(kept) >= 3 and len("/".join([part] + kept)) + 4 > width:
            break
        kept.insert(0, part)
    shown = ("/" if len(kept) - 1 == len(parts) else ".../") + "/".join(kept)
    pieces = shown.split("/")
    lines, line = [], pieces[0]
    for piece in pieces[1:]:
        add = f"{line}/{piece}"
        if len(add) > width and line not in ("", "..."):
            lines.append(line + "/")
            line = piece
        else:
            line = add
    lines.append(line)
    return "\n".join(lines)


def class_scatter(report, out: Path, value, ylabel: str, title: str, decorate=None,
                   legend_loc: str = "best") -> Path:
    """One point per class of ``report.classes``: ``value(class)`` against its training instances (or images), log
    x, coloured by frequency group; ``decorate(ax)`` adds to the axes; written atomically to ``out``."""
    out = check_plot_path(out, "use a .png file name")
    use_instances = all(c.train_instances is not None for c in report.classes)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for g in GROUPS:
        pts = [c for c in report.classes if c.group == g]
        xs = [max(1, (c.train_instances if use_instances else c.train_images) or 1) for c in pts]
        ax.scatter(xs, [value(c) for c in pts], s=18, color=GROUP_COLOURS[g], alpha=0.8,
                   label=f"{GROUP_NAMES[g]} ({len(pts)})")
    if decorate is not None:
        decorate(ax)
    ax.set_xscale("log")
    ax.set_xlabel("training instances per class (log)" if use_instances else "training images per class (log)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{path_title(report.checkpoint)}\n{title}", fontsize=10)
    ax.legend(frameon=False, loc=legend_loc)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out)


def plot_scores(report, out: Path) -> Path:
    """Mean score against training instances (or images) per class, log x, coloured by group."""
    return class_scatter(report, out, lambda c: c.score, "mean classification score", "per-class mean scores")


def plot_memory(report, out: Path) -> Path:
    """Features stored in each class's queue against the class's training instances (or images), log x,
    coloured by group, the queue size as a dashed line."""
    q = report.queue_size

    def queue_line(ax):
        ax.axhline(q, color="0.4", linestyle="--", linewidth=1, label=f"queue size {q}")
        ax.set_ylim(-0.04 * q, 1.1 * q)

    return class_scatter(report, out, lambda c: c.stored, "stored features in the queue",
                          "feature-memory fill per class", decorate=queue_line, legend_loc="lower right")


def plot_score_comparison(reports, out: Path) -> Path:
    """Measured mean score per frequency group, one bar per checkpoint (`inspect scores A B --measure C --plot`)."""
    out = check_plot_path(out, "use a .png file name")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    width = 0.8 / max(1, len(reports))
    for k, report in enumerate(reports):
        means = [report.groups[GROUP_NAMES[g]]["mean"] or 0.0 for g in GROUPS]
        ax.bar([i + k * width for i in range(len(GROUPS))], means, width, label=path_title(report.checkpoint, 40))
    ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(GROUPS))])
    ax.set_xticklabels([GROUP_NAMES[g] for g in GROUPS])
    ax.set_ylabel("mean classification score (measured)")
    ax.set_title("per-group mean scores measured on the training data", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return save_figure(fig, out)
