"""``loce data import coco OUT``: a user's COCO-format data (train + val, with masks or boxes only) as an LVIS-format
dataset folder that ``loce data prep`` accepts and every command reads.

What the import writes, in a staging folder beside OUT that is renamed into place at the end (an interrupted or
refused import leaves nothing under OUT; the input files and images are never changed):

- ``annotations/train.json`` / ``val.json``: the user's records with their ids and names, plus what LVIS format
  needs. Each category gets ``frequency`` from the number of training images holding one of its (non-crowd)
  instances, by LVIS's rule (rare <= 10 images, common <= 100, frequent above; ``rare_max`` / ``common_max``
  change the cut-offs), ``image_count`` and ``instance_count``; both files carry the same categories list.
  COCO annotates every category exhaustively in every image, so LVIS's federated AP on the val file is COCO's AP
  when each image's ``neg_category_ids`` = every category not annotated in it (``not_exhaustive_category_ids``
  = []): the val file lists them (written as text, ``coco_writing``), for the official lvis API and any outside
  tool; the train file, read by every training process and never for its negatives, says it once instead
  (``info.all_categories_exhaustive``: true, ``core.annotations``), which loce's readers honour. Each image's
  ``file_name`` gets the split folder in front (``train/...``, ``val/...``) and a ``coco_url`` is kept as
  ``source_coco_url`` (loce resolves images from coco_url first). ``iscrowd`` regions stay crowd regions: never
  positives (no training targets; ignored regions in evaluation), not counted in the class counts. An
  annotation's ``ignore`` flag, which pycocotools' COCOeval overwrites with ``iscrowd``, is kept as
  ``source_ignore``: such an object is an ordinary one, in training and in evaluation, as in COCOeval.
- ``train/`` and ``val/``: links to the image folders (``copy``: the listed images copied instead).
- ``annotations/loce_meta.json``: written by ``loce data prep``'s own validation and meta builder run on the result.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from loce_cli.core.annotations import EXHAUSTIVE_KEY
from loce_cli.core.frequency import COMMON_MAX_IMAGES, GROUP_NAMES, GROUPS, RARE_MAX_IMAGES
from loce_cli.engine.data.coco_checks import CocoFile, read_coco
from loce_cli.engine.data.coco_writing import NegativeLists, negative_fields, write_json
from loce_cli.engine.data.prep import prep_dataset
from loce_cli.engine.data.staging import install_staged, prepare_out, staging_folder
from loce_cli.engine.data.stats import ClassStat, DatasetStats, GroupStat
from loce_cli.engine.json_files import gc_paused
from loce_cli.errors import DataError, LoceUsageError

SPLITS = ("train", "val")
ENTRIES = ("train", "val", "annotations")  # what an import puts under OUT


@dataclass
class ImportedSplit:
    images: int
    annotations: int
    crowd: int
    annotation_file: str
    images_from: str


@dataclass
class ImportResult:
    out_dir: str
    num_classes: int
    classes_per_group: Dict[str, int]
    rare_max: int
    common_max: int
    masks: bool
    copied: bool
    train: ImportedSplit
    val: ImportedSplit
    meta_path: str
    stats: DatasetStats
    val_only: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stats"] = self.stats.to_dict()
        d["classes_per_group"] = {GROUP_NAMES[g]: n for g, n in self.classes_per_group.items()}
        return d


def check_import_options(out: Path, inputs: List[Path], rare_max: int, common_max: int) -> None:
    """Usage errors: cut-offs out of order, OUT holding one of the inputs."""
    if rare_max < 0 or common_max <= rare_max:
        raise LoceUsageError(f"--rare-max {rare_max} / --common-max {common_max}: need 0 <= rare-max < common-max",
                             f"LVIS uses --rare-max {RARE_MAX_IMAGES} --common-max {COMMON_MAX_IMAGES}")
    o = Path(out).resolve()
    for p in inputs:
        r = Path(p).resolve()
        if r == o or o in r.parents:
            raise LoceUsageError(f"OUT {out} holds the input {p}", "the inputs are never changed: choose a new "
                                                                  "folder for OUT")


def _positives(f: CocoFile, k: int) -> np.ndarray:
    """Sorted unique codes image row * K + category position of the file's non-crowd annotations."""
    keep = ~f.ann_crowd
    return np.unique(f.ann_img_row[keep].astype(np.int64) * k + f.ann_cat_pos[keep])


def _class_counts(f: CocoFile, k: int):
    """(training images, instances) per category (file order of the categories), crowd regions left out."""
    pairs = _positives(f, k)
    return np.bincount(pairs % k, minlength=k), np.bincount(f.ann_cat_pos[~f.ann_crowd], minlength=k)


def _groups(image_count: np.ndarray, rare_max: int, common_max: int) -> List[str]:
    return np.where(image_count <= rare_max, "r", np.where(image_count <= common_max, "c", "f")).tolist()


def _same_categories(train: CocoFile, val: CocoFile) -> None:
    a = dict(zip(train.cat_ids.tolist(), train.names))
    b = dict(zip(val.cat_ids.tolist(), val.names))
    if a != b:
        only = sorted(set(a.items()) ^ set(b.items()))
        cid, name = only[0]
        where = train.path.name if (cid, name) in a.items() else val.path.name
        raise DataError(f"{train.path.name} and {val.path.name} list different categories ({len(only)} differ; "
                        f"first: id {cid} {name!r} only in {where})",
                        "both files must list the same categories (id and name); a class without training "
                        "images may be listed in both")


def _to_lvis(f: CocoFile, split: str, categories: list, cutoffs: Tuple[int, int]) -> int:
    """Turn ``f``'s parsed object into LVIS format in place, all but the val file's negative lists (written as
    text, ``_write``); see the module docstring. Returns how many objects had ``ignore`` set without ``iscrowd``."""
    for im in f.data["images"]:
        im.pop("neg_category_ids", None)
        im.pop("not_exhaustive_category_ids", None)
        im["file_name"] = f"{split}/{im['file_name']}"
        url = im.pop("coco_url", None)
        if url is not None:
            im["source_coco_url"] = url
    ignored = 0
    for a in f.data["annotations"]:
        if "ignore" in a:
            flag = a.pop("ignore")
            a["source_ignore"] = flag
            ignored += bool(flag) and not a.get("iscrowd")
    f.data["categories"] = categories
    info = f.data.get("info") if isinstance(f.data.get("info"), dict) else {}
    info["loce_import"] = {"format": "coco", "source": str(f.path.resolve()), "rare_max": cutoffs[0],
                           "common_max": cutoffs[1]}  # the groups' cut-offs, which a later `loce data prep` keeps
    if split == "train":
        info[EXHAUSTIVE_KEY] = True
    f.data["info"] = info
    return ignored


def _write(path: Path, f: CocoFile, split: str) -> tuple:
    """Write ``f``'s LVIS-format object to ``path``; (what prep validates, size, sha256). The val file's images
    get their negative lists as text; prep gets the same content with the exhaustive flag standing for them."""
    if split == "train":
        return (f.data, *write_json(path, f.data))
    k = len(f.cat_ids)
    rank = np.empty(k, np.int64)
    rank[np.argsort(f.cat_ids, kind="stable")] = np.arange(k)
    present = np.unique(f.ann_img_row.astype(np.int64) * k + rank[f.ann_cat_pos])  # crowd regions too
    size, sha = write_json(path, f.data, negative_fields(NegativeLists(f.cat_ids, present, len(f.img_ids))))
    return dict(f.data, info=dict(f.data["info"], **{EXHAUSTIVE_KEY: True})), size, sha


def _ignore_note(counts: Dict[str, int]) -> List[str]:
    n = sum(counts.values())
    if not n:
        return []
    return [f"{n:,} object(s) ({counts['train']:,} train, {counts['val']:,} val) have 'ignore' set without "
            "'iscrowd': kept as ordinary objects (in training and evaluation), as pycocotools' COCOeval treats "
            "them (it reads only iscrowd); the flag is kept as 'source_ignore'. Mark regions to leave out with "
            "iscrowd 1"]


def _place_images(staging: Path, split: str, f: CocoFile, images_dir: Path, copy: bool) -> None:
    target = staging / split
    if not copy:
        target.symlink_to(images_dir.resolve(), target_is_directory=True)
        return
    for im in f.data["images"]:
        name = im["file_name"].split("/", 1)[1]
        dest = target / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(images_dir / name, dest)
    target.mkdir(exist_ok=True)


def _stats(train: CocoFile, groups: List[str], image_count, instance_count, path: Path) -> DatasetStats:
    k = len(groups)
    pairs = _positives(train, k)
    classes = [ClassStat(id=int(c), name=n, group=g, images=int(i), instances=int(m))
               for c, n, g, i, m in zip(train.cat_ids, train.names, groups, image_count, instance_count)]
    gs = np.array(groups)
    out = {}
    for g in GROUPS:
        member = gs == g
        imgs = np.unique(pairs[member[pairs % k]] // k).size
        out[g] = GroupStat(classes=int(member.sum()), images=int(imgs), instances=int(instance_count[member].sum()),
                           classes_without_instances=int((member & (instance_count == 0)).sum()))
    nonzero = instance_count[instance_count > 0]
    return DatasetStats(annotation_file=str(path), num_images=len(train.img_ids),
                        num_annotations=int((~train.ann_crowd).sum()), num_classes=k, frequency_source="categories",
                        groups=out, head_tail_ratio=float(nonzero.max() / nonzero.min()) if nonzero.size else None,
                        classes=classes)


def _warnings(train: CocoFile, val: CocoFile, image_count: np.ndarray) -> Tuple[List[str], List[str]]:
    k = len(train.names)
    val_pos = _by_train_order(train, val, np.bincount(_positives(val, k) % k, minlength=k))
    val_only = [train.names[i] for i in np.flatnonzero((image_count == 0) & (val_pos > 0))]
    unused = [train.names[i] for i in np.flatnonzero((image_count == 0) & (val_pos == 0))]
    warnings = []
    if val_only:
        warnings.append(f"{len(val_only)} categor{'y' if len(val_only) == 1 else 'ies'} in val but in no training "
                        f"image (counted as rare; a model cannot learn them): {', '.join(val_only)}")
    if unused:
        warnings.append(f"{len(unused)} categor{'y' if len(unused) == 1 else 'ies'} with no (non-crowd) instance "
                        f"in either file (counted as rare): {', '.join(unused[:10])}"
                        + (f" and {len(unused) - 10} more" if len(unused) > 10 else ""))
    return val_only, warnings


def _by_train_order(train: CocoFile, val: CocoFile, val_counts: np.ndarray) -> np.ndarray:
    """``val_counts`` (val's category order) re-ordered into train's category order (same ids, checked)."""
    order = np.argsort(val.cat_ids)
    return val_counts[order[np.searchsorted(val.cat_ids[order], train.cat_ids)]]


def import_coco(out: Path, train_json: Path, train_images: Path, val_json: Path, val_images: Path,
                rare_max: int = RARE_MAX_IMAGES, common_max: int = COMMON_MAX_IMAGES, copy: bool = False,
                force: bool = False, check_images: str = "sample") -> ImportResult:
    """Import a COCO train + val pair into ``out`` (see the module docstring); ``check_images`` is prep's."""
    start = time.perf_counter()
    out = Path(out)
    dirs = {"train": Path(train_images), "val": Path(val_images)}
    check_import_options(out, [Path(train_json), Path(val_json), *dirs.values()], rare_max, common_max)
    prepare_out(out, force)
    with gc_paused():
        files = {"train": read_coco(train_json, dirs["train"]), "val": read_coco(val_json, dirs["val"])}
        train, val = files["train"], files["val"]
        _same_categories(train, val)
        image_count, instance_count = _class_counts(train, len(train.names))
        groups = _groups(image_count, rare_max, common_max)
        categories = [dict(c, frequency=g, image_count=int(n), instance_count=int(m)) for c, g, n, m
                      in zip(train.data["categories"], groups, image_count, instance_count)]
        val_only, warnings = _warnings(train, val, image_count)
        splits = {s: ImportedSplit(len(f.img_ids), len(f.ann_crowd), int(f.ann_crowd.sum()),
                                   str(out / "annotations" / f"{s}.json"), str(dirs[s].resolve()))
                  for s, f in files.items()}
        stats = _stats(train, groups, image_count, instance_count, out / "annotations" / "train.json")
        masks = train.has_masks or val.has_masks
        with staging_folder(out) as staging:
            (staging / "annotations").mkdir()
            written, ignored = {}, {}
            for split, f in files.items():
                ignored[split] = _to_lvis(f, split, categories, (rare_max, common_max))
                written[f"{split}.json"] = _write(staging / "annotations" / f"{split}.json", f, split)
                _place_images(staging, split, f, dirs[split], copy)
            del files, train, val, f
            # prep's own validation and meta builder on what was written (its content handed over, not re-read)
            prep = prep_dataset(staging, check_images=check_images, cutoffs=(rare_max, common_max),
                                parsed_already=written)
            del written
            if not prep.ok:
                first = next(p for p in [*prep.problems, *(q for r in prep.files for q in r.problems)]
                             if p.severity == "error")
                raise DataError(f"the imported data fails `loce data prep`: {first.message}: "
                                f"{(first.examples or ['-'])[0]}", first.hint)
            install_staged(staging, out, ENTRIES)
    return ImportResult(out_dir=str(out), num_classes=len(groups), classes_per_group=prep.classes_per_group,
                        rare_max=rare_max, common_max=common_max, masks=masks, copied=copy, train=splits["train"],
                        val=splits["val"], meta_path=str(out / "annotations" / os.path.basename(prep.meta_path)),
                        stats=stats, val_only=val_only, warnings=warnings, notes=_ignore_note(ignored),
                        seconds=time.perf_counter() - start)
