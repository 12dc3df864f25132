"""``loce inspect scores|memory``: read the LOCE state stored in a checkpoint (no model is built)."""

from __future__ import annotations

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
                        f"measure them on the training data: loce inspect scores {path} --measure CONFIG")
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
