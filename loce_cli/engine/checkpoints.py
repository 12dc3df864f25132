"""The one reader of checkpoints and their meta, used by every command (train, resume, eval, predict, inspect)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from loce_cli.core.class_names import compare_names
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


def checkpoint_classes(ckpt: dict, path: Path, num: Optional[int] = None, cfg=None) -> CheckpointClasses:
    """Class names and frequency groups from a checkpoint's meta; ``num``: the class count they must have. With
    ``cfg``, a meta without them (the LOCE authors' checkpoints carry names only, mmdet's zoo ones names only) takes
    them from the config's training data (its ``loce_meta.json`` or its LVIS annotation file)."""
    info = meta(ckpt)
    names = tuple(info.get("CLASSES") or ())
    freq = tuple(info.get("class_frequency") or ())
    num = len(names) if num is None and names else num
    if cfg is not None and not names:
        return _unnamed_classes_from_data(ckpt, cfg, path)
    if cfg is not None and (len(freq) != len(names) or any(f not in GROUPS for f in freq)):
        return _classes_from_data(names, cfg, path, num)
    if not names or len(names) != num:
        what = f"for its {num} classes " if names else ""
        raise DataError(f"{path} has no class names {what}in its meta (a bare state_dict or a converted model?)",
                        "the commands given a config take them from its dataset: loce eval / predict CONFIG "
                        "CHECKPOINT, loce inspect scores CHECKPOINT --measure CONFIG")
    if len(freq) != num or any(f not in GROUPS for f in freq):
        raise DataError(f"{path} has no frequency groups in its meta (a checkpoint from elsewhere?)",
                        "pass the config it was trained with: its LVIS dataset gives the frequency groups")
    images = tuple(info.get("class_image_count") or ()) or (None,) * num
    instances = tuple(info.get("class_instance_count") or ()) or (None,) * num
    ids = tuple(info.get("class_ids") or ()) or None
    if ids is not None and len(ids) != num:
        ids = None
    return CheckpointClasses(names, freq, images, instances, ids)


def dataset_classes(cfg) -> Optional[CheckpointClasses]:
    """Names, frequency groups, counts and category ids of a config's training set, in label order (category id
    order), from its ``loce_meta.json`` or its LVIS annotation file; None when neither can be read."""
    train = train_dataset_cfg(cfg)
    try:
        info = read_meta(Path(train.ann_file))
        entry = (info.get("files") or {}).get(Path(train.ann_file).name) or {}
        num = len(info["classes"])
        return CheckpointClasses(tuple(info["classes"]), tuple(info["frequency"]),
                                 tuple(entry.get("image_count") or (None,) * num),
                                 tuple(entry.get("instance_count") or (None,) * num),
                                 tuple(info.get("category_ids") or ()) or None)
    except (DataError, KeyError, TypeError, AttributeError):
        pass
    try:
        with open(train.ann_file, "rb") as f:
            cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
        return CheckpointClasses(tuple(c["name"] for c in cats), tuple(c.get("frequency") for c in cats),
                                 tuple(c.get("image_count") for c in cats),
                                 tuple(c.get("instance_count") for c in cats), tuple(int(c["id"]) for c in cats))
    except Exception:
        return None


def _grouped_data(cfg, lacks: str, gives: str, hint: str) -> Tuple[CheckpointClasses, Path]:
    """The config's training data's classes and their source file, refused (``{path} lacks``, the data ``gives``
    nothing either) when it has no frequency groups."""
    data = dataset_classes(cfg)
    source = Path(train_dataset_cfg(cfg).get("ann_file") or "?")
    if data is None or any(f not in GROUPS for f in data.groups):
        raise DataError(f"{lacks}, and {source} (the config's training data) gives {gives}",
                        f"point the config at the LVIS annotation file the model was trained on "
                        f"(--cfg-options data.train.ann_file=...){hint}")
    return data, source


def _classes_from_data(names: tuple, cfg, path: Path, num: Optional[int]) -> CheckpointClasses:
    data, source = _grouped_data(cfg, f"{path} has no frequency groups in its meta", "none",
                                 ": its categories carry 'frequency'")
    if num is not None and len(data.names) != num:
        raise DataError(f"{path} has {num} classes but the config's training data {source} has {len(data.names)}",
                        "pass the config of the dataset the checkpoint was trained on")
    if names:
        check_same_classes(names, data.names, path, f"{source}'s", "pass the config of the dataset the "
                           "checkpoint was trained on")
    print(f"note: {path} carries no frequency groups: class names and groups from {source}", file=sys.stderr)
    return CheckpointClasses(names or data.names, data.groups, data.image_counts, data.instance_counts, data.ids)


def _unnamed_classes_from_data(ckpt: dict, cfg, path: Path) -> CheckpointClasses:
    """A checkpoint without class names: the names and groups of the config's training data, when its classifier's
    class count is the data's."""
    data, source = _grouped_data(cfg, f"{path} carries no class names in its meta", "no names and frequency groups",
                                 "")
    check_unnamed_checkpoint(ckpt, path, len(data.names), str(source), "pass the config of the dataset the "
                             "checkpoint was trained on", cfg, "class names and frequency groups")
    return data


def classifier_class_count(ckpt: dict, cfg=None) -> Optional[int]:
    """The class count a checkpoint's box classifier was trained for: the rows of ``roi_head.bbox_head.fc_cls.weight``
    less the background row (less two for a ``cfg`` whose box head has Seesaw loss's C + 2 outputs); None for a
    checkpoint without that weight."""
    state = state_dict(ckpt)
    weight = state.get(CLS_WEIGHT, state.get("module." + CLS_WEIGHT))
    if weight is None or len(getattr(weight, "shape", ())) != 2:
        return None
    head = cfg.model.get("roi_head", {}).get("bbox_head", {}) if cfg is not None else {}
    loss = head.get("loss_cls", {}) if hasattr(head, "get") else {}
    return int(weight.shape[0]) - (2 if hasattr(loss, "get") and loss.get("type") == "SeesawLoss" else 1)


def check_unnamed_checkpoint(ckpt: dict, path, num: int, where: str, hint: str, cfg=None,
                             taken: str = "class names") -> None:
    """A checkpoint whose meta carries no class names (a bare ``state_dict``, a converted model): refuse it when its
    classifier was trained for another class count than ``num`` (``where``: what has ``num`` classes), naming both;
    else say in one line (stderr) that its names could not be checked and that ``taken`` come from ``where``."""
    have = classifier_class_count(ckpt, cfg)
    if have is None:
        raise DataError(f"{path} carries no class names and has no box classifier ({CLS_WEIGHT}): its classes "
                        f"cannot be told", "pass a Mask or Faster R-CNN checkpoint")
    if have != num:
        raise DataError(f"{path} carries no class names and its classifier ({CLS_WEIGHT}) was trained for {have} "
                        f"classes, but {where} has {num}", hint)
    print(f"note: {path} carries no class names, so they could not be checked (its classifier has {have} classes, "
          f"as {where}): {taken} from {where}", file=sys.stderr)


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


def check_base_checkpoint(path: Path, cfg) -> dict:
    """Refuse a base checkpoint whose class count or class names differ from the config's dataset (LVIS's known
    spelling variants are accepted with a note); returns the checkpoint's dict."""
    ckpt = read_checkpoint(path)
    weight = state_dict(ckpt).get(CLS_WEIGHT)
    if weight is None:
        raise DataError(f"{path} has no {CLS_WEIGHT}: not a Mask or Faster R-CNN checkpoint",
                        "pass the checkpoint of a base run (loce train base)")
    want = int(cfg.model.roi_head.bbox_head.num_classes)
    have = int(weight.shape[0]) - 1
    if have != want:
        raise DataError(f"{path} was trained for {have} classes but {Path(cfg.filename).name} has {want}",
                        "fine-tune from a base model of the same dataset")
    classes = meta(ckpt).get("CLASSES")
    if not classes:
        source = Path(train_dataset_cfg(cfg).get("ann_file") or "?")
        check_unnamed_checkpoint(ckpt, path, want, f"{source} (the config's training data)", "fine-tune from a "
                                 "base model of the same dataset")
        return ckpt
    names = dataset_class_names(cfg)
    if names is not None:
        check_same_classes(tuple(classes), tuple(names), path, "the dataset's", "fine-tune from a base model "
                           "trained on this dataset, or point the config at the data it was trained on")
    return ckpt


def check_same_classes(have: tuple, want: tuple, path, whose: str, hint: str,
                       note: Optional[Callable[[str], None]] = None) -> None:
    """Refuse checkpoint class names ``have`` that differ from ``want`` beyond LVIS's known spelling variants,
    naming the first index and both names; an accepted variant is said once through ``note`` (stderr by default)."""
    comparison = compare_names(have, want)
    if not comparison.same:
        a, b = comparison.names_at(have, want)
        count = f" ({len(have)} vs {len(want)} classes)" if len(have) != len(want) else ""
        raise DataError(f"{path} classes differ from {whose}{count}: first difference at index "
                        f"{comparison.first_difference}: {a!r} vs {b!r}", hint)
    if comparison.variants:
        (note or (lambda line: print(f"note: {path}: {line}", file=sys.stderr)))(comparison.note())


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
