"""A config's dataset against the data on disk, checked before any process starts (``loce train base``,
``loce finetune``, ``loce eval``).

Refused, each with one ``DataError`` naming the config, the file and the fix:

- a data root that holds the *other* LVIS version (the config reads ``lvis_v1_*.json`` but the root has
  ``lvis_v0.5_*.json``, or the annotation file itself is the other version);
- a class count that differs from the annotation file's (``model.roi_head.bbox_head.num_classes`` and
  ``mask_head.num_classes``), which would otherwise crash or silently mislabel at the first iteration;
- an image folder missing under the image prefix: LoceLVISDataset (and mmdet's ``LVISV1Dataset``) resolve each
  image as ``img_prefix + <coco_url path>`` (``train2017/000000391895.jpg``), so ``img_prefix`` must be the data
  root; ``data_root + 'train2017/'`` (the old v0.5 LOCE config) would look in ``train2017/train2017/``.

The facts come from ``loce_meta.json`` when ``loce data prep`` has written it (no parse of a 1 GB file), else from
the annotation file itself when it is small enough (``PARSE_LIMIT``); a config with ``loce_meta='required'``
whose data has not been prepared is refused here too, naming ``loce data prep``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Tuple

from loce_cli.engine.data.prep import (META_NAME, VERSIONS, dataset_root_of, detect_version, find_annotation_files,
                                       image_relpath, read_meta)
from loce_cli.engine.json_files import decode_json, gc_paused
from loce_cli.errors import DataError

PARSE_LIMIT = 256 * 1024 * 1024  # bytes: larger annotation files without loce_meta.json are not parsed here
URL_DATASETS = ("LoceLVISDataset", "LVISV1Dataset")  # image path = img_prefix + coco_url's path (else file_name)
_VERSION_IN_NAME = re.compile(r"lvis_(v1|v0\.5)_")


@dataclass
class DataFacts:
    version: Optional[str]
    num_classes: int
    image_dirs: List[str] = field(default_factory=list)
    source: str = ""


def split_dataset_cfg(cfg: Any, split: str):
    """``cfg.data.<split>`` under mmdet's wrappers (ClassBalancedDataset, RepeatDataset)."""
    ds = cfg.data.get(split)
    while ds is not None and hasattr(ds, "get") and "dataset" in ds and "ann_file" not in ds:
        ds = ds.dataset
    return ds


def expected_version(ann_file: Path) -> Optional[str]:
    m = _VERSION_IN_NAME.search(Path(ann_file).name)
    return m.group(1) if m else None


def model_class_counts(cfg: Any) -> List[Tuple[str, int]]:
    """(key, num_classes) of the heads that classify: ``model.roi_head.bbox_head`` (one or a list) and
    ``model.roi_head.mask_head``."""
    out: List[Tuple[str, int]] = []
    roi = (cfg.get("model") or {}).get("roi_head") or {}
    for name in ("bbox_head", "mask_head"):
        heads = roi.get(name)
        if heads is None:
            continue
        for i, h in enumerate(heads if isinstance(heads, (list, tuple)) else [heads]):
            n = h.get("num_classes") if hasattr(h, "get") else None
            if isinstance(n, int):
                key = f"model.roi_head.{name}" + (f".{i}" if isinstance(heads, (list, tuple)) else "")
                out.append((f"{key}.num_classes", n))
    return out


def _facts_from_meta(ann_file: Path) -> DataFacts:
    meta = read_meta(ann_file)  # DataError when not prepared or changed since
    entry = meta["files"][ann_file.name]
    return DataFacts(meta.get("version"), int(meta["num_classes"]), list(entry.get("image_dirs") or []),
                     str(ann_file.parent / META_NAME))


def _facts_from_file(ann_file: Path) -> Optional[DataFacts]:
    try:
        if ann_file.stat().st_size > PARSE_LIMIT:
            return None
        with gc_paused():
            data = decode_json(ann_file.read_bytes())
    except (OSError, ValueError):
        return None  # unreadable or not JSON: the dataset reports it with its own words
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        return None
    version, _ = detect_version(data, ann_file)
    dirs = set()
    for im in data.get("images") or []:
        try:
            p = image_relpath(im)
        except (ValueError, TypeError, AttributeError):
            continue
        if "/" in p:
            dirs.add(p.split("/", 1)[0])
    return DataFacts(version, len(data["categories"]), sorted(dirs), str(ann_file))


def _other_version_note(root: Path, want: str) -> Optional[Tuple[str, List[str]]]:
    if not root.is_dir():
        return None
    for v in VERSIONS:
        if v != want:
            _, files, _ = find_annotation_files(root, v)
            if files:
                return v, sorted(p.name for p in files.values())
    return None


def check_config_data(cfg: Any, config: Any, split: str = "train") -> None:
    """Refuse (``DataError``) a config whose ``data.<split>`` does not fit the data on disk (module docstring).

    Says nothing when the annotation file is missing and the root holds no other LVIS version: the callers'
    own checks name the missing file."""
    ds = split_dataset_cfg(cfg, split)
    if ds is None or not isinstance(ds.get("ann_file"), str):
        return
    ann = Path(ds.ann_file)
    name = Path(str(config)).name
    want = expected_version(ann)
    root = dataset_root_of(ann)
    if not ann.is_file():
        other = _other_version_note(root, want) if want else None
        if other:
            v, files = other
            raise DataError(f"{root} holds LVIS {v} data ({', '.join(files)}), but {name} is an LVIS {want} "
                            f"config (its data.{split}.ann_file is {ann})",
                            f"use the LVIS {v} config (configs/lvis/*_lvis_{v}.py) or point data_root at LVIS "
                            f"{want} data")
        return
    try:
        facts = _facts_from_meta(ann)
    except DataError as e:
        if ds.get("loce_meta") == "required":
            raise DataError(f"{e.message} (from {name})", e.hint) from None
        facts = _facts_from_file(ann)
    if facts is None:
        return
    if want and facts.version and facts.version != want:
        raise DataError(f"{ann} holds LVIS {facts.version} annotations ({facts.num_classes} classes), but {name} is "
                        f"an LVIS {want} config", f"use the LVIS {facts.version} config (configs/lvis/*_lvis_"
                        f"{facts.version}.py) or LVIS {want} annotations")
    for key, n in model_class_counts(cfg):
        if n != facts.num_classes:
            raise DataError(f"{name}: {key} is {n} but {ann} has {facts.num_classes} classes",
                            f"set model.roi_head.bbox_head.num_classes and mask_head.num_classes to "
                            f"{facts.num_classes} (LVIS v1: 1203, v0.5: 1230), or use the config made for this data")
    if ds.get("type") in URL_DATASETS:
        prefix = Path(ds.get("img_prefix") or "")
        for d in facts.image_dirs:
            if not (prefix / d).is_dir():
                if prefix.name == d:
                    hint = (f"set img_prefix to the data root ({prefix.parent}/), not its {d}/ folder: "
                            f"{ds.type} reads '{d}/...' from each image's coco_url")
                else:
                    folders = ", ".join(f + "/" for f in facts.image_dirs)
                    hint = f"put the images of {ann.name} under {prefix}/ ({folders}) or fix data.{split}.img_prefix"
                raise DataError(f"image folder {prefix / d} does not exist ({name}: data.{split} images resolve to "
                                f"img_prefix + '{d}/...', from {Path(facts.source).name})", hint)
