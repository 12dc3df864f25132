"""The one reader of checkpoints and their meta, used by every command (train, resume, eval, predict, inspect)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from loce_cli.core.checkpoint_io import load_checkpoint_file
from loce_cli.core.frequency import GROUPS
from loce_cli.engine.config.loading import train_dataset_cfg
from loce_cli.engine.data.prep import read_meta
from loce_cli.errors import DataError

CLS_WEIGHT = "roi_head.bbox_head.fc_cls.weight"


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's dict on the CPU (weights only, memory-mapped: reading a LOCE checkpoint's meta does not read
    its 4.8 GB feature memory), with one-line errors for missing, truncated, foreign or pickled files."""
    path = Path(path)
    ckpt = load_checkpoint_file(path, map_location="cpu", mmap=True)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict", ckpt), dict):
        kind = f"a {type(ckpt).__name__}" if not isinstance(ckpt, dict) else "a dict without a state_dict"
        raise DataError(f"{path} is not a model checkpoint (holds {kind})",
                        "pass a checkpoint written by loce or mmdet")
    return ckpt


def state_dict(ckpt: dict) -> dict:
    """The tensors of a checkpoint dict (mmcv's ``state_dict`` entry, or the dict itself for a bare one)."""
    return ckpt.get("state_dict", ckpt)


def meta(ckpt: dict) -> dict:
    value = ckpt.get("meta")
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class CheckpointClasses:
    """What a checkpoint's meta says about its classes (label order)."""

    names: Tuple[str, ...]
    groups: Tuple[str, ...]  # 'r' / 'c' / 'f' per class
    image_counts: Tuple[Optional[int], ...]
    instance_counts: Tuple[Optional[int], ...]
    ids: Optional[Tuple[int, ...]]  # the dataset's category ids, when recorded


def checkpoint_classes(ckpt: dict, path: Path, num: Optional[int] = None) -> CheckpointClasses:
    """Class names and frequency groups from a checkpoint's meta; ``num``: the class count they must have."""
    info = meta(ckpt)
    names = tuple(info.get("CLASSES") or ())
    num = len(names) if num is None else num
    if not names or len(names) != num:
        what = f"for its {num} classes " if names else ""
        raise DataError(f"{path} has no class names {what}in its meta",
                        "use a checkpoint written by `loce train base` / `loce finetune`")
    freq = tuple(info.get("class_frequency") or ())
    if len(freq) != num or any(f not in GROUPS for f in freq):
        raise DataError(f"{path} has no frequency groups in its meta",
                        "train on an LVIS-format dataset whose categories carry 'frequency'")
    images = tuple(info.get("class_image_count") or ()) or (None,) * num
    instances = tuple(info.get("class_instance_count") or ()) or (None,) * num
    ids = tuple(info.get("class_ids") or ()) or None
    if ids is not None and len(ids) != num:
        ids = None
    return CheckpointClasses(names, freq, images, instances, ids)


def dataset_class_names(cfg) -> Optional[tuple]:
    """The class names of a config's training set: its ``classes``, the prepared dataset's ``loce_meta.json``, or
    the annotation file's categories; None when none can be read."""
    train = train_dataset_cfg(cfg)
    if train.get("classes"):
        return tuple(train.classes)
    try:  # a prepared dataset: loce_meta.json has the names (real LVIS: no 1 GB parse just for them)
        return tuple(read_meta(Path(train.ann_file))["classes"])
    except (DataError, KeyError, TypeError):
        pass
    try:
        with open(train.ann_file, "rb") as f:
            cats = json.load(f)["categories"]
    except Exception:
        return None
    return tuple(c["name"] for c in cats)


def check_base_checkpoint(path: Path, cfg) -> None:
    """Refuse a base checkpoint whose class count or class names differ from the config's dataset."""
    ckpt = read_checkpoint(path)
    weight = state_dict(ckpt).get(CLS_WEIGHT)
    if weight is None:
        raise DataError(f"{path} has no {CLS_WEIGHT}: not a Mask R-CNN checkpoint",
                        "pass the checkpoint of a base run (loce train base)")
    want = int(cfg.model.roi_head.bbox_head.num_classes)
    have = int(weight.shape[0]) - 1
    if have != want:
        raise DataError(f"{path} was trained for {have} classes but {Path(cfg.filename).name} has {want}",
                        "fine-tune from a base model of the same dataset")
    classes = meta(ckpt).get("CLASSES")
    if classes:
        names = dataset_class_names(cfg)
        if names is not None and tuple(classes) != tuple(names):
            diff = next(i for i, (a, b) in enumerate(zip(classes, names)) if a != b) if len(classes) == len(names) \
                else min(len(classes), len(names))
            raise DataError(f"{path} classes differ from the dataset's (first difference at index {diff}: "
                            f"{classes[diff] if diff < len(classes) else '-'!r} vs "
                            f"{names[diff] if diff < len(names) else '-'!r})",
                            "fine-tune from a base model trained on this dataset")


def check_class_count(path: Path, num_classes: int, where: str, hint: str) -> None:
    """Refuse (``DataError``) a checkpoint whose classifier was trained for another class count than
    ``num_classes`` (``where``: what has that count, e.g. ``--data DIR``). Says nothing for a checkpoint without
    a box classifier: the command's own checks name it."""
    weight = state_dict(read_checkpoint(Path(path))).get(CLS_WEIGHT)
    if weight is None:
        return
    have = int(weight.shape[0]) - 1
    if have != num_classes:
        raise DataError(f"{path} was trained for {have} classes but {where} has {num_classes}", hint)
