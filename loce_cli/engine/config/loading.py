"""Loading mmdet configs (through ``loce_cli.mmdet_ext.config``) and finding the data paths they name."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Sequence

from loce_cli.engine.config.names import resolve_config
from loce_cli.mmdet_ext.authors_config import authors_translation_lines
from loce_cli.mmdet_ext.config import load_config as load_mmcv_config

_ANNOUNCED: set = set()


def load_config(path: Path, cfg_options: Sequence[str] = ()):
    """An ``mmcv.Config`` from ``path`` (a file, or a shipped config's name: :mod:`loce_cli.engine.config.names`)
    with ``cfg_options`` merged; every option must name an existing key.
    (The mmcv part lives in ``loce_cli.mmdet_ext.config``.)"""
    path = resolve_config(path)  # a wrong name fails before any file is parsed
    cfg = load_mmcv_config(path, cfg_options)
    lines = authors_translation_lines(cfg)
    if lines and str(path) not in _ANNOUNCED:  # one line per file and process; the run's log names every key
        _ANNOUNCED.add(str(path))
        print(f"note: {lines[0]}; the run's log names each", file=sys.stderr, flush=True)
    return cfg


def train_dataset_cfg(cfg):
    """The training set's own config, under mmdet's wrappers (RepeatDataset, ClassBalancedDataset)."""
    train = cfg.data.train
    while "dataset" in train and "ann_file" not in train:
        train = train.dataset
    return train


def dataset_paths(cfg) -> List[Path]:
    """Annotation files and image folders the training set needs."""
    train = train_dataset_cfg(cfg)
    paths = [Path(train.ann_file)]
    if train.get("img_prefix"):
        paths.append(Path(train.img_prefix))
    return paths
