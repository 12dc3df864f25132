"""``loce_meta.json``: built from a validated dataset, found next to an annotation file, read (refusing an
unprepared or changed file), and required by the real-LVIS configs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

from loce_cli import __version__
from loce_cli.engine.config.loading import train_dataset_cfg
from loce_cli.engine.data.prep.annotations import ParsedFile
from loce_cli.engine.data.prep.formats import META_FORMAT, META_NAME
from loce_cli.engine.data.prep.reports import PrepResult
from loce_cli.engine.json_files import atomic_path
from loce_cli.errors import DataError


def build_meta(root: Path, result: PrepResult, files: Dict[str, Path], parsed: Dict[str, ParsedFile], ref: ParsedFile,
               subset: Optional[dict]) -> dict:
    by_path = {r.path: r for r in result.files}
    meta_dir = files["train" if "train" in files else next(iter(files))].parent
    file_entries = {}
    for role, path in files.items():
        rep, p = by_path[str(path)], parsed[role]
        file_entries[path.name] = {
            "role": role,
            "path": os.path.relpath(path, meta_dir),
            "size": rep.size,
            "sha256": rep.sha256,
            "images": rep.images,
            "annotations": rep.annotations,
            "image_dirs": p.image_dirs,
            "image_count": [int(v) for v in p.image_count],
            "instance_count": [int(v) for v in p.instance_count],
        }
    return {
        "format": META_FORMAT,
        "generator": f"loce data prep (loce {__version__})",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "version": result.version,
        "image_root": os.path.relpath(root, meta_dir),
        "num_classes": len(ref.names),
        "category_ids": ref.cat_ids,
        "classes": ref.names,
        "frequency": ref.frequency,
        "groups": result.classes_per_group,
        "train_file": files["train"].name if "train" in files else None,
        "files": file_entries,
        "subset": subset,
    }


def find_meta(ann_file: Path) -> Path:
    return Path(ann_file).parent / META_NAME


def dataset_root_of(ann_file: Path) -> Path:
    parent = Path(ann_file).parent
    return parent.parent if parent.name == "annotations" else parent


def read_meta(ann_file: Path) -> dict:
    """The ``loce_meta.json`` entry point for an annotation file: raises DataError (naming ``loce data prep``)
    when the file has not been prepared, or has changed since."""
    ann_file = Path(ann_file)
    meta_path = find_meta(ann_file)
    prep_cmd = f"loce data prep --root {dataset_root_of(ann_file)}"
    if not meta_path.is_file():
        raise DataError(f"{ann_file} has not been prepared (no {META_NAME} next to it)",
                        f"run `{prep_cmd}` first: it validates the data and writes {META_NAME}")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {meta_path}: {e}", f"run `{prep_cmd}` again") from None
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise DataError(f"{meta_path} is not a {META_FORMAT} file", f"run `{prep_cmd}` again")
    entry = (meta.get("files") or {}).get(ann_file.name)
    if entry is None:
        raise DataError(f"{ann_file.name} is not among the files {meta_path} describes",
                        f"run `{prep_cmd}` again")
    try:
        size = ann_file.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read {ann_file}: {e.strerror}", "check the path") from None
    if size != entry.get("size"):
        raise DataError(f"{ann_file} changed since `loce data prep` ({size} bytes, prepared {entry.get('size')})",
                        f"run `{prep_cmd}` again")
    return meta


def check_prepared(cfg: Any, config_path: Any) -> None:
    """For configs whose training set says ``loce_meta='required'`` (the real-LVIS configs), fail early when
    its annotation file has no valid ``loce_meta.json``."""
    train = train_dataset_cfg(cfg)
    if train.get("loce_meta") != "required":
        return
    try:
        read_meta(Path(train.ann_file))
    except DataError as e:
        raise DataError(f"{e.message} (from {config_path})", e.hint) from None


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary name in ``path``'s folder, then rename (mode from the umask)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
