"""``loce data stats --plot``: instances per class, sorted, coloured by frequency group."""

from __future__ import annotations

from pathlib import Path

from matplotlib.patches import Patch

from loce_cli.core.frequency import GROUP_NAMES, GROUPS
from loce_cli.engine.pictures.colours import GROUP_COLOURS
from loce_cli.engine.pictures.figures import check_plot_path, plt, save_figure


def plot_stats(stats, out: Path) -> Path:
    """Log-scale plot of instances per class, sorted, coloured by frequency group; written atomically."""
    out = check_plot_path(out)
    ordered = sorted(stats.classes, key=lambda c: (-c.instances, c.name))
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    xs = range(len(ordered))
    heights = [max(c.instances, 0.8) for c in ordered]
    ax.bar(xs, heights, width=1.0, color=[GROUP_COLOURS[c.group] for c in ordered], linewidth=0)
    ax.set_yscale("log")
    ax.set_xlim(-0.5, len(ordered) - 0.5)
    ax.set_xlabel("classes, sorted by number of instances")
    ax.set_ylabel("instances (log scale)")
    title = Path(stats.annotation_file).name
    ratio = f", head/tail ratio {stats.head_tail_ratio:,.0f}" if stats.head_tail_ratio else ""
    ax.set_title(f"{title}: {stats.num_classes} classes, {stats.num_annotations:,} instances{ratio}")
    handles = [Patch(color=GROUP_COLOURS[g], label=f"{GROUP_NAMES[g]} ({stats.groups[g].classes} classes)")
               for g in GROUPS]
    ax.legend(handles=handles, loc="upper right", frameon=False)
    ax.grid(axis="y", which="major", alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return save_figure(fig, out)
