"""``loce data prep --subset F``: a smaller train file (a seeded fraction of the images with all their
annotations) as a dataset root of its own, validated and described like any other."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import msgspec
import numpy as np

from loce_cli.engine.data.prep.dataset import find_annotation_files, layout_help, prep_dataset
from loce_cli.engine.data.prep.formats import META_NAME
from loce_cli.engine.data.prep.meta import write_atomic
from loce_cli.engine.data.prep.problems import Problems
from loce_cli.engine.data.prep.reading import read_json_file
from loce_cli.engine.data.prep.reports import MissingDataError, SubsetResult
from loce_cli.engine.json_files import gc_paused
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError


def make_subset(root: Path, out: Path, fraction: float, seed: int = 0, version: str = "auto",
                force: bool = False, check_images: str = "none") -> SubsetResult:
    """A smaller LVIS-format train file: a random ``fraction`` of the images with all their annotations.

    ``out/annotations/<train name>`` holds the subset with the full categories list (frequency groups and
    counts as in the full set); the val file(s) and image folders are linked from ``root`` so ``out`` is a
    dataset root of its own; ``out/annotations/loce_meta.json`` describes it."""
    root, out = Path(root), Path(out)
    if not (0.0 < fraction <= 1.0) or not math.isfinite(fraction):
        raise LoceUsageError(f"--subset must be in (0, 1], got {fraction}", "e.g. --subset 0.1 for 10% of the images")
    if out.resolve() == root.resolve():
        raise LoceUsageError("--out must differ from --root", "the inputs are never modified; choose a new folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise OutputExistsError(f"--out {out} exists and is not empty", "choose a new folder or pass --force")
    found_version, files, _ = find_annotation_files(root, version)
    if "train" not in files:
        raise MissingDataError(f"no train annotation file under {root}", "--subset samples the train file",
                               layout_help(root, found_version))
    src = files["train"]
    problems = Problems()
    with gc_paused():
        data, _, src_sha = read_json_file(src, problems)
    if data is None or not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{src} is not a valid LVIS annotation file", f"run `loce data prep --root {root}` to see why")
    images, anns = data["images"], data["annotations"]
    n_keep = max(1, int(round(fraction * len(images))))
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(images), size=n_keep, replace=False))
    try:
        keep_ids = {int(images[i]["id"]) for i in keep}
        sub_anns = [a for a in anns if a["image_id"] in keep_ids]
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{src} has malformed images or annotations",
                        f"run `loce data prep --root {root}` to see why") from None
    subset = dict(data)
    subset["images"] = [images[i] for i in keep]
    subset["annotations"] = sub_anns
    info = dict(data.get("info") or {}) if isinstance(data.get("info"), dict) else {}
    info["loce_subset"] = {"fraction": fraction, "seed": seed, "source": str(src), "source_sha256": src_sha}
    subset["info"] = info

    ann_dir = out / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    for p in (ann_dir / META_NAME,):  # a stale meta must never describe the new file
        p.unlink(missing_ok=True)
    created = [ann_dir / src.name]
    write_atomic(ann_dir / src.name, msgspec.json.encode(subset))
    for role, path in files.items():  # val files: linked, not copied
        if role != "train":
            created.append(_link(path, ann_dir / path.name))
    for entry in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "annotations"
                        and not p.name.startswith(".")):
        created.append(_link(entry, out / entry.name))  # image folders
    sub_info = {"fraction": fraction, "seed": seed, "source": str(src), "source_sha256": src_sha,
                "source_images": len(images), "source_annotations": len(anns)}
    del data, subset
    result = prep_dataset(out, found_version or "auto", check_images=check_images, seed=seed, _subset=sub_info)
    empty = 0
    if result.ok:
        meta = json.loads(Path(result.meta_path).read_bytes())
        empty = sum(1 for n in meta["files"][src.name]["instance_count"] if n == 0)
    else:  # the source has errors the subset inherited: leave nothing behind
        for p in created:
            p.unlink(missing_ok=True)
    train_rep = next(r for r in result.files if r.role == "train")
    return SubsetResult(source=str(src), out_dir=str(out), fraction=fraction, seed=seed, images=train_rep.images,
                        annotations=train_rep.annotations, source_images=sub_info["source_images"],
                        source_annotations=sub_info["source_annotations"], classes_without_instances=empty,
                        prep=result)


def _link(target: Path, link: Path) -> Path:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target.resolve(), target_is_directory=target.is_dir())
    return link
