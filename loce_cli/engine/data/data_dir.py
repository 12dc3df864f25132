"""``--data DIR``: point any config at a dataset folder made by ``loce data synth``, ``loce data prep`` or
``loce data import``, as the ``--cfg-options`` a user would otherwise write by hand.

The folder's annotation files are found as ``loce data prep`` finds them (``annotations/lvis_v1_{train,val}.json``,
``lvis_v0.5_*``, or any other LVIS-format ``*.json`` with 'train' / 'val' in its name). The class count and names
come from the prepared ``loce_meta.json`` when there is one (no parse of a large file), else from the training
file's ``categories``. The options set every split's ``ann_file`` and ``img_prefix`` (under mmdet's dataset
wrappers), every ``num_classes`` of the RoI head's classifying heads (box head, mask head, and losses that carry
one), and a ``classes`` the config names to None: the dataset then reads the names, in label order, from the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Tuple

from loce_cli.engine.config.loading import load_config
from loce_cli.engine.data.prep import META_NAME, find_annotation_files, read_meta
from loce_cli.errors import DataError, LoceUsageError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DataDir:
    """What a dataset folder holds: its annotation files, image root and classes (label order)."""

    root: Path
    train: Path
    val: Path
    image_root: Path
    classes: Tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _classes_from_file(ann_file: Path) -> Tuple[str, ...]:
    try:
        with open(ann_file, "rb") as f:
            cats = json.load(f)["categories"]
        cats = sorted(cats, key=lambda c: int(c["id"]))  # label order: category ids ascending (LoceLVISDataset)
        return tuple(str(c["name"]) for c in cats)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"cannot read the categories of {ann_file} ({type(e).__name__}: {e})",
                        "--data expects LVIS-format annotation files (loce data synth / prep / import)") from None


def read_data_dir(root: Path) -> DataDir:
    """The dataset folder ``root``: refused (``DataError``) when it holds no train and val annotation files."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--data {root} is not a directory",
                        "pass the folder made by `loce data synth --out`, `loce data import` or prepared by "
                        "`loce data prep --root`")
    _version, files, _missing = find_annotation_files(root)
    missing = [role for role in ("train", "val") if role not in files]
    if missing:
        raise DataError(f"--data {root} has no {' or '.join(missing)} annotation file (looked for "
                        f"annotations/lvis_v1_train.json and lvis_v1_val.json, or *train*.json / *val*.json)",
                        "make the folder with `loce data synth`, `loce data import coco` or `loce data prep`")
    train, val = files["train"], files["val"]
    image_root = root
    if (train.parent / META_NAME).is_file():
        meta = read_meta(train)  # refuses a changed file, naming `loce data prep`
        classes = tuple(str(c) for c in meta["classes"])
        if meta.get("image_root"):
            image_root = (train.parent / meta["image_root"]).resolve()
    else:
        classes = _classes_from_file(train)
    if not classes:
        raise DataError(f"{train} has no categories", "--data needs a dataset with at least one class")
    return DataDir(root, train, val, image_root, classes)


def _split_key(cfg: Any, split: str) -> Optional[str]:
    """``data.train`` or, under wrappers (RepeatDataset, ClassBalancedDataset), ``data.train.dataset...``."""
    ds = cfg.data.get(split)
    if ds is None:
        return None
    key = f"data.{split}"
    while hasattr(ds, "get") and "dataset" in ds and "ann_file" not in ds:
        ds, key = ds.dataset, key + ".dataset"
    return key if hasattr(ds, "get") and "ann_file" in ds else None


def num_classes_keys(node: Any, prefix: str = "model.roi_head") -> List[str]:
    """Every ``num_classes`` key under the RoI head (box / mask heads and their losses), as dotted paths."""
    keys: List[str] = []
    items = node.items() if hasattr(node, "items") else enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        path = f"{prefix}.{k}"
        if k == "num_classes" and isinstance(v, int):
            keys.append(path)
        elif hasattr(v, "items") or isinstance(v, (list, tuple)):
            keys.extend(num_classes_keys(v, path))
    return keys


def data_options(config: Any, data: DataDir) -> List[str]:
    """The ``--cfg-options`` that point ``config`` at ``data`` (module docstring)."""
    cfg = load_config(Path(config))
    opts: List[str] = []
    for split in SPLITS:
        key = _split_key(cfg, split)
        if key is None:
            continue
        ann = data.train if split == "train" else data.val
        opts += [f"{key}.ann_file={ann}", f"{key}.img_prefix={data.image_root}/"]
        ds = cfg.data.get(split)
        for part in key.split(".")[2:]:
            ds = ds[part]
        if ds.get("classes") is not None:  # LoceLVISDataset: None takes the names (and order) from the file
            opts.append(f"{key}.classes=None")
    roi = (cfg.get("model") or {}).get("roi_head")
    if roi is None:
        raise LoceUsageError(f"--data sets the class count of model.roi_head, which {Path(str(config)).name} lacks",
                             "use a two-stage config (loce configs), or --cfg-options for this one")
    opts += [f"{key}={data.num_classes}" for key in num_classes_keys(roi)]
    return opts

