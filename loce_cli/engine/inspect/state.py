"""``loce inspect scores|memory``: read the LOCE state stored in a checkpoint (no model is built)."""

from __future__ import annotations

import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from loce_cli.core.frequency import GROUP_NAMES, GROUPS, parse_split
from loce_cli.engine.checkpoints import checkpoint_classes, read_checkpoint
from loce_cli.errors import DataError, LoceUsageError

SCORES_KEY = "roi_head.bbox_head.score_tracker.scores"
MEMORY_PREFIX = "roi_head.memory."


@dataclass
class ClassScore:
    name: str
    group: str
    score: float
    train_images: Optional[int]
    train_instances: Optional[int]


@dataclass
class ScoresReport:
    checkpoint: str
    num_classes: int
    background: float
    groups: Dict[str, dict]
    lowest: List[ClassScore] = field(default_factory=list)
    classes: List[ClassScore] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


BASELINE_STATE = (  # a state-dict key that only this baseline's checkpoints hold -> its name
    ("roi_head.bbox_head.loss_cls.state.ratio", "an EQLv2 baseline: its per-class state is the gradient ratio "
                                                "roi_head.bbox_head.loss_cls.state.ratio"),
    ("roi_head.bbox_head.loss_cls.state.weights", "a federated-loss baseline"),
    ("roi_head.bbox_head.loss_cls.cum_samples", "a Seesaw-loss baseline"),
)


def _kind_without_scores(state: dict) -> str:
    for key, kind in BASELINE_STATE:
        if key in state:
            return kind
    return "a base model or a fine-tune without LOCE's tracker"


def inspect_scores(path: Path, split: str = "all", lowest: int = 10) -> ScoresReport:
    """Mean classification scores per frequency group and the ``lowest`` weakest classes of ``split``."""
    try:
        groups_wanted = parse_split(split)
    except ValueError as e:
        raise LoceUsageError(str(e), "--split all|rare|common|frequent") from None
    if lowest < 0:
        raise LoceUsageError("--lowest must be >= 0", "e.g. --lowest 10")
    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    if SCORES_KEY not in state:
        raise DataError(f"{path} holds no mean classification scores ({_kind_without_scores(state)})",
                        "inspect a checkpoint of a LOCE fine-tune (`loce finetune` with a LOCE config)")
    scores = [float(x) for x in state[SCORES_KEY]]
    num = len(scores) - 1
    c = checkpoint_classes(ckpt, Path(path), num)
    names, freq, images, instances = c.names, c.groups, c.image_counts, c.instance_counts
    classes = [ClassScore(names[i], freq[i], scores[i], images[i], instances[i]) for i in range(num)]
    groups = {}
    for g in GROUPS:
        vals = [c.score for c in classes if c.group == g]
        groups[GROUP_NAMES[g]] = dict(classes=len(vals), mean=statistics.fmean(vals) if vals else None,
                                      median=statistics.median(vals) if vals else None,
                                      min=min(vals) if vals else None)
    selected = [c for c in classes if c.group in groups_wanted]
    weakest = sorted(selected, key=lambda c: (c.score, c.name))[:lowest]
    return ScoresReport(str(path), num, scores[-1], groups, weakest, classes)


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


def _class_scatter(report, out: Path, value, ylabel: str, title: str, decorate=None,
                   legend_loc: str = "best") -> Path:
    """One point per class of ``report.classes``: ``value(class)`` against its training instances (or images), log
    x, coloured by frequency group; ``decorate(ax)`` adds to the axes; written atomically to ``out``."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise LoceUsageError(f"--plot {out}: unsupported file type {out.suffix or '(none)'}", "use a .png file name")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loce_cli.engine.json_files import atomic_path
    from loce_cli.engine.data.stats import GROUP_COLOURS

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
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=out.suffix.lower().lstrip("."))
    plt.close(fig)
    return out


def plot_scores(report: ScoresReport, out: Path) -> Path:
    """Mean score against training instances (or images) per class, log x, coloured by group."""
    return _class_scatter(report, out, lambda c: c.score, "mean classification score", "per-class mean scores")


@dataclass
class ClassFill:
    name: str
    group: str
    stored: int  # features in the class's queue (at most queue_size)
    train_images: Optional[int]
    train_instances: Optional[int]


@dataclass
class MemoryReport:
    checkpoint: str
    num_classes: int
    queue_size: int
    feature_shape: List[int]
    dtype: str
    bytes: int
    fill: Dict[str, Dict[str, int]]  # group -> full / partial / empty
    empty_classes: List[str]
    stored_features: int
    classes: List[ClassFill] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def inspect_memory(path: Path) -> MemoryReport:
    """Feature-memory fill per class and group, storage dtype and size."""
    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    keys = {k[len(MEMORY_PREFIX):]: v for k, v in state.items() if k.startswith(MEMORY_PREFIX)}
    if "counts" not in keys or "flat_feats" not in keys:
        raise DataError(f"{path} holds no feature memory (a base model, or LOCE with the memory off)",
                        "inspect a checkpoint of `loce finetune`")
    counts = [int(x) for x in keys["counts"]]
    num = len(counts)
    feats = keys["flat_feats"]
    queue = (feats.shape[0] - 1) // num
    c = checkpoint_classes(ckpt, Path(path), num)
    names, freq, images, instances = c.names, c.groups, c.image_counts, c.instance_counts
    fill = {GROUP_NAMES[g]: dict(full=0, partial=0, empty=0) for g in GROUPS}
    for n, g in zip(counts, freq):
        key = "full" if n >= queue else ("empty" if n == 0 else "partial")
        fill[GROUP_NAMES[g]][key] += 1
    nbytes = sum(v.numel() * v.element_size() for v in keys.values())
    per_class = [ClassFill(names[i], freq[i], min(n, queue), images[i], instances[i]) for i, n in enumerate(counts)]
    return MemoryReport(str(path), num, queue, list(feats.shape[1:]), str(feats.dtype).replace("torch.", ""),
                        nbytes, fill, [names[i] for i, n in enumerate(counts) if n == 0], sum(counts), per_class)


def plot_memory(report: MemoryReport, out: Path) -> Path:
    """Features stored in each class's queue against the class's training instances (or images), log x,
    coloured by group, the queue size as a dashed line."""
    q = report.queue_size

    def queue_line(ax):
        ax.axhline(q, color="0.4", linestyle="--", linewidth=1, label=f"queue size {q}")
        ax.set_ylim(-0.04 * q, 1.1 * q)

    return _class_scatter(report, out, lambda c: c.stored, "stored features in the queue",
                          "feature-memory fill per class", decorate=queue_line, legend_loc="lower right")
