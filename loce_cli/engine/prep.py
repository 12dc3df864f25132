"""``loce data prep``: find, validate and index real LVIS (or LVIS-format) data.

``prep_dataset(root)`` finds the annotation files under ``root`` (``annotations/lvis_v1_{train,val}.json``,
``lvis_v0.5_*`` or any other LVIS-format ``*.json``), validates each one (JSON, keys, ids, references,
boxes, segmentations, frequency groups, image files) and, when nothing is wrong, writes ``loce_meta.json``
next to the annotations: the dataset's version, class names in label order, frequency groups, per-class
image / instance counts of every file and the files' checksums. Training (``LoceLVISDataset``), ``report``
and ``inspect`` read class names and groups from that one file.

Speed: the file is parsed with ``msgspec`` (the least peak memory of json / orjson / msgspec, and about 2x
the standard library's ``json``; ``bench/bench_prep.py --parsers``) while a second thread hashes its bytes,
with Python's cyclic garbage collector paused (JSON makes no cycles; the collector would walk the growing
heap again and again). The checks over 1.27M annotations are column-wise numpy work, with a per-item pass
only over a column that failed the fast check (to name every bad item). ``bench/bench_prep.py`` measures it
against a plain ``lvis.LVIS(...)`` load.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import urlparse

import numpy as np

from loce_cli.core.annotations import BOX_TOLERANCE, boxes_outside  # shared with the dataset
from loce_cli.core.frequency import GROUP_NAMES, GROUPS, frequency_group
from loce_cli.engine._io import gc_paused
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError

META_NAME = "loce_meta.json"
META_FORMAT = "loce-meta/1"
VERSIONS = ("v1", "v0.5")
CHECK_IMAGES = ("all", "sample", "none")
SAMPLE_IMAGES = 200  # per annotation file with --check-images sample
EXAMPLES = 3  # examples kept per problem kind
OFFICIAL = {  # classes and classes per frequency group (r, c, f) of the official releases
    "v1": (1203, {"r": 337, "c": 461, "f": 405}),
    "v0.5": (1230, {"r": 454, "c": 461, "f": 315}),
}
FILE_NAMES = {v: {"train": f"lvis_{v}_train.json", "val": f"lvis_{v}_val.json"} for v in VERSIONS}
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM", b"RIFF")

DOWNLOAD_GUIDE = """\
expected layout (mmdet's):
  {root}/
    annotations/
      lvis_{v}_train.json     LVIS {V} train annotations
      lvis_{v}_val.json       LVIS {V} val annotations
      loce_meta.json          written by `loce data prep`
    train2017/                COCO 2017 train images (000000000009.jpg, ...)
    val2017/                  COCO 2017 val images
how to get it:
  annotations: the LVIS dataset's download page (lvisdataset.org, "Download": LVIS {V} train / val
    annotation zips), unzipped into {root}/annotations/
  images: COCO 2017 "2017 Train images" and "2017 Val images" (cocodataset.org, "Download"), unzipped into
    {root}/ (LVIS resolves each image from its coco_url: train2017/... or val2017/...; LVIS v1 val also uses
    train2017 images)
  your own data: any LVIS-format *.json under {root}/annotations/ with images resolved from coco_url or
    file_name under {root}/"""


# ----------------------------------------------------------------------------------------------- problems

# kind -> (severity, what it means, how to fix)
KINDS: Dict[str, Tuple[str, str, str]] = {
    "not-json": ("error", "not valid JSON", "the file may be truncated or not JSON; download it again"),
    "wrong-shape": ("error", "not an LVIS annotation file",
                    "expected an object with images, annotations and categories lists (LVIS format)"),
    "wrong-version": ("error", "another LVIS version than asked for", "pass --version auto or the right version"),
    "bad-image": ("error", "image entries with missing or invalid keys",
                  "each image needs an integer id, width, height > 0 and coco_url or file_name"),
    "duplicate-image-id": ("error", "duplicate image ids", "image ids must be unique"),
    "bad-category": ("error", "category entries with missing or invalid keys",
                     "each category needs an integer id and a name"),
    "duplicate-category": ("error", "duplicate category ids or names", "category ids and names must be unique"),
    "bad-frequency": ("error", "categories without a frequency group r/c/f",
                      "LVIS gives each category frequency r (1-10 training images), c (11-100) or f (> 100)"),
    "bad-image-category-list": ("error", "neg_category_ids / not_exhaustive_category_ids invalid",
                                "these lists must hold ids of listed categories (empty lists are fine)"),
    "no-annotations": ("error", "the annotation list is empty", "a detection dataset needs annotations"),
    "bad-annotation": ("error", "annotation entries with missing or invalid keys",
                       "each annotation needs integer id, image_id, category_id, a bbox, an area and a "
                       "segmentation"),
    "duplicate-annotation-id": ("error", "duplicate annotation ids", "annotation ids must be unique"),
    "missing-image": ("error", "annotations of images that are not listed", "every image_id must be a listed image"),
    "unknown-category": ("error", "annotations of unknown categories", "every category_id must be a listed category"),
    "bad-box": ("error", "boxes that are not finite or have no positive width/height",
                "bbox is [x, y, width, height] in pixels with width, height > 0"),
    "box-outside": ("error", "boxes outside their image", "bbox must lie inside the image's width x height"),
    "bad-segmentation": ("error", "missing or malformed segmentations",
                         "segmentation is a list of polygons [x1, y1, x2, y2, ...] with at least 3 points, "
                         "or an RLE dict with counts and size"),
    "categories-differ": ("error", "annotation files with different category lists",
                          "train and val must list the same categories in the same order"),
    "image-dir-missing": ("error", "image folders missing", "see the expected layout below"),
    "image-file-missing": ("error", "image files missing", "download or copy the images (see the layout below)"),
    "image-unreadable": ("error", "image files unreadable or not images", "download them again"),
    "image-size": ("error", "image files whose size differs from the annotation's width x height",
                   "the images do not belong to these annotations"),
    # tolerable oddities
    "non-standard-json": ("warning", "NaN/Infinity literals (not standard JSON)",
                          "many JSON readers reject them; write finite numbers"),
    "file-missing": ("warning", "expected annotation file not found", "see the expected layout below"),
    "images-without-annotations": ("warning", "images without annotations",
                                   "fine for LVIS (they still count for negatives); mmdet skips them in training"),
    "classes-without-instances": ("warning", "categories without instances in this file",
                                  "fine in val; in train such a class cannot be learnt"),
    "frequency-mismatch": ("warning", "frequency fields that differ from this file's training-image counts",
                           "expected for a subset; for a full train file check the categories' frequency"),
    "official-groups": ("warning", "frequency groups differ from the official release",
                        "the file is not the official LVIS annotation file"),
    "area-mismatch": ("warning", "annotations whose area is not positive", "area should be the mask area in pixels"),
}


@dataclass
class Problem:
    kind: str
    severity: str
    message: str
    hint: str
    count: int = 0
    examples: List[str] = field(default_factory=list)


class Problems:
    """Problems grouped by kind: a count and the first few examples of each."""

    def __init__(self) -> None:
        self.by_kind: Dict[str, Problem] = {}

    def add(self, kind: str, example: Optional[str] = None, count: int = 1) -> None:
        p = self.by_kind.get(kind)
        if p is None:
            severity, message, hint = KINDS[kind]
            p = self.by_kind[kind] = Problem(kind, severity, message, hint)
        p.count += count
        if example is not None and len(p.examples) < EXAMPLES:
            p.examples.append(example)

    def errors(self) -> int:
        return sum(p.count for p in self.by_kind.values() if p.severity == "error")

    def list(self) -> List[Problem]:
        return sorted(self.by_kind.values(), key=lambda p: (p.severity != "error", p.kind))


# ------------------------------------------------------------------------------------------------ results

@dataclass
class FileReport:
    path: str
    role: str  # train | val | other
    version: Optional[str] = None  # v1 | v0.5 | None (not recognised: LVIS format of one's own)
    size: int = 0
    sha256: Optional[str] = None
    images: int = 0
    annotations: int = 0
    categories: int = 0
    seconds: float = 0.0
    images_checked: int = 0
    problems: List[Problem] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(p.count for p in self.problems if p.severity == "error")


@dataclass
class PrepResult:
    root: str
    version: Optional[str]
    check_images: str
    files: List[FileReport]
    problems: List[Problem]  # dataset-level (layout, files that disagree, groups)
    num_classes: int = 0
    classes_per_group: Dict[str, int] = field(default_factory=dict)
    frequency_source: str = "categories"
    meta_path: Optional[str] = None
    seconds: float = 0.0
    layout_help: Optional[str] = None

    @property
    def errors(self) -> int:
        return sum(p.count for p in self.problems if p.severity == "error") + sum(f.errors for f in self.files)

    @property
    def warnings(self) -> int:
        return sum(p.count for _, p in self.all_problems() if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def all_problems(self) -> List[Tuple[str, Problem]]:
        out = [(self.root, p) for p in self.problems]
        for f in self.files:
            out.extend((f.path, p) for p in f.problems)
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(ok=self.ok, errors=self.errors, warnings=self.warnings)
        d["classes_per_group"] = {GROUP_NAMES[g]: n for g, n in self.classes_per_group.items()}
        return d


@dataclass
class SubsetResult:
    source: str
    out_dir: str
    fraction: float
    seed: int
    images: int
    annotations: int
    source_images: int
    source_annotations: int
    classes_without_instances: int
    prep: PrepResult

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prep"] = self.prep.to_dict()
        return d


class MissingDataError(DataError):
    """Annotation files not found; ``layout`` is the expected tree and where to get the data."""

    def __init__(self, message: str, hint: str, layout: str):
        super().__init__(message, hint)
        self.layout = layout


# ------------------------------------------------------------------------------------------ reading JSON

def _sha256_thread(data: bytes) -> Tuple[threading.Thread, Dict[str, str]]:
    box: Dict[str, str] = {}

    def run() -> None:  # hashlib releases the GIL: this runs beside the parser on a second core
        box["sha256"] = hashlib.sha256(data).hexdigest()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def read_json_file(path: Path, problems: Problems) -> Tuple[Any, int, Optional[str]]:
    """Parse ``path`` (msgspec; the standard library only for NaN/Infinity literals); also its size and sha256.

    Returns ``(data, size, sha256)``; ``data`` is None after a ``not-json`` problem.
    """
    import msgspec

    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}", "check the file's permissions") from None
    size = len(raw)
    thread, box = _sha256_thread(raw)
    try:
        try:
            data = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            data = _fallback_parse(raw, e, path, problems)
    finally:
        thread.join()
    return data, size, box.get("sha256")


def _fallback_parse(raw: bytes, first: Exception, path: Path, problems: Problems) -> Any:
    """msgspec rejects NaN/Infinity (which Python's json writes); read those with json and say so."""
    if size_is_empty(raw):
        problems.add("not-json", f"{Path(path).name} is empty")
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        where = (f"line {e.lineno}, column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else str(e))
        truncated = isinstance(e, json.JSONDecodeError) and e.pos >= len(raw.rstrip()) - 1
        problems.add("not-json", f"{Path(path).name}: {where}" + (" (the file ends early: truncated?)"
                                                                   if truncated else ""))
        return None
    problems.add("non-standard-json", f"{Path(path).name}: {str(first).splitlines()[0][:100]}")
    return data


def size_is_empty(raw: bytes) -> bool:
    return not raw.strip()


# ------------------------------------------------------------------------------------------- validation

def image_relpath(info: dict) -> str:
    """Path of an image under the image root: ``coco_url`` without its host, else ``file_name``.

    The same rule as ``loce_cli.mmdet_ext.datasets.image_relpath`` (which lives with mmdet; a test keeps the
    two equal)."""
    url = info.get("coco_url")
    if url:
        scheme, sep, rest = url.partition("://")
        if sep and scheme.isalpha() and "?" not in rest and "#" not in rest:  # fast path, same result
            return rest.partition("/")[2].lstrip("/")
        parsed = urlparse(url)
        return parsed.path.lstrip("/") if parsed.scheme else url
    name = info.get("file_name")
    if not name:
        raise ValueError(f"image {info.get('id')} has neither coco_url nor file_name")
    return name


def detect_version(data: dict, path: Path) -> Tuple[Optional[str], str]:
    """(``'v1'`` / ``'v0.5'`` / None, the evidence) from the file's info, class count, file names, name."""
    info = data.get("info") if isinstance(data.get("info"), dict) else {}
    ver = str(info.get("version", "")).strip().lower().lstrip("v")
    if ver.startswith("0.5"):
        return "v0.5", f"info.version is {info.get('version')!r}"
    if ver in ("1", "1.0") and "lvis" in str(info.get("description", "")).lower():
        return "v1", f"info.version is {info.get('version')!r}"
    cats = data.get("categories") or []
    for v, (n, _) in OFFICIAL.items():
        if len(cats) == n:
            return v, f"{n} categories"
    images = data.get("images") or []
    first = images[0] if images and isinstance(images[0], dict) else {}
    if str(first.get("file_name", "")).startswith("COCO_"):
        return "v0.5", "images named COCO_<split>2014_... (LVIS v0.5)"
    name = Path(path).name
    for v in VERSIONS:
        if f"lvis_{v}_" in name:
            return v, f"file name {name}"
    return None, "not recognised"


def _int_column(items: list, key: str, what: str, kind: str, problems: Problems,
                id_of=None) -> Tuple[np.ndarray, np.ndarray]:
    """``items[i][key]`` as int64 and a validity mask; invalid entries are reported one by one."""
    n = len(items)
    try:
        vals = [it[key] for it in items]
        arr = np.asarray(vals) if n else np.zeros(0, np.int64)
        if arr.ndim == 1 and arr.dtype.kind in "iu":
            return arr.astype(np.int64, copy=False), np.ones(n, bool)
    except (KeyError, TypeError, IndexError, ValueError, OverflowError):
        pass
    out = np.full(n, -1, np.int64)
    ok = np.zeros(n, bool)
    for i, it in enumerate(items):
        v = it.get(key) if isinstance(it, dict) else None
        if type(v) is int and -2 ** 63 <= v < 2 ** 63:
            out[i], ok[i] = v, True
        else:
            label = f"{what} #{i}" + (f" (id {id_of(it)})" if id_of and isinstance(it, dict) and key != "id" else "")
            problems.add(kind, f"{label}: {key} is {_shown(it, key, v)}")
    return out, ok


def _num_column(items: list, key: str, what: str, kind: str, problems: Problems) -> np.ndarray:
    """``items[i][key]`` as float64 (NaN where missing or not a number, reported)."""
    try:
        arr = np.asarray([it[key] for it in items], dtype=np.float64) if items else np.zeros(0)
        if arr.ndim == 1:
            return arr
    except (KeyError, TypeError, ValueError):
        pass
    out = np.full(len(items), np.nan)
    for i, it in enumerate(items):
        v = it.get(key) if isinstance(it, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[i] = v
        else:
            problems.add(kind, f"{what} #{i}: {key} is {_shown(it, key, v)}")
    return out


def _shown(item: Any, key: str, value: Any) -> str:
    return "missing" if not isinstance(item, dict) or key not in item else repr(value)[:40]


def _duplicates(ids: np.ndarray, ok: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(duplicated values, how often each occurs) among the valid ``ids``."""
    vals, counts = np.unique(ids[ok], return_counts=True)
    return vals[counts > 1], counts[counts > 1]


@dataclass
class _Parsed:
    """What a validated file contributes to the meta (arrays in label order)."""

    cat_ids: List[int]
    names: List[str]
    frequency: List[Optional[str]]
    image_count: np.ndarray
    instance_count: np.ndarray
    image_dirs: List[str]


def validate_annotation_file(path: Path, role: str = "other", expected_version: Optional[str] = None,
                             image_root: Optional[Path] = None, check_images: str = "none",
                             sample: int = SAMPLE_IMAGES, seed: int = 0) -> Tuple[FileReport, Optional[_Parsed]]:
    """Validate one LVIS-format annotation file; the report lists problems by kind (nothing raised for them)."""
    path = Path(path)
    start = time.perf_counter()
    problems = Problems()
    report = FileReport(path=str(path), role=role)
    with gc_paused():
        data, report.size, report.sha256 = read_json_file(path, problems)
        parsed = None
        if data is not None:
            parsed = _validate_data(data, path, role, expected_version, image_root, check_images, sample, seed,
                                    problems, report)
        del data
    report.problems = problems.list()
    report.seconds = time.perf_counter() - start
    return report, (parsed if problems.errors() == 0 else None)


def _validate_data(data: Any, path: Path, role: str, expected_version: Optional[str], image_root: Optional[Path],
                   check_images: str, sample: int, seed: int, problems: Problems,
                   report: FileReport) -> Optional[_Parsed]:
    name = path.name
    # ---- shape
    if isinstance(data, list):
        looks = ("a detection results list (image_id, category_id, bbox, score), not annotations"
                 if data and isinstance(data[0], dict) and "score" in data[0] else "a JSON list")
        problems.add("wrong-shape", f"{name}: top level is {looks}")
        return None
    if not isinstance(data, dict):
        problems.add("wrong-shape", f"{name}: top level is a {type(data).__name__}")
        return None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        problems.add("wrong-shape", f"{name}: no list(s) {', '.join(missing)} at the top level")
        return None
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    report.images, report.annotations, report.categories = len(images), len(anns), len(cats)

    version, evidence = detect_version(data, path)
    report.version = version
    if expected_version and version and version != expected_version:
        problems.add("wrong-version", f"{name} looks like LVIS {version} ({evidence}), not {expected_version}")
        return None

    # ---- categories
    if not cats:
        problems.add("wrong-shape", f"{name}: the categories list is empty")
        return None
    cat_ids, cat_ok = _int_column(cats, "id", "category", "bad-category", problems)
    names: List[str] = []
    for i, c in enumerate(cats):
        nm = c.get("name") if isinstance(c, dict) else None
        if not isinstance(nm, str) or not nm:
            problems.add("bad-category", f"category #{i}: name is {nm!r}")
        names.append(str(nm))
    dup, cnt = _duplicates(cat_ids, cat_ok)
    for v, n in zip(dup[:EXAMPLES], cnt[:EXAMPLES]):
        problems.add("duplicate-category", f"category id {v} appears {n} times", 0)
    if len(dup):
        problems.by_kind["duplicate-category"].count += int(len(dup))
    if len(set(names)) != len(names):
        seen: Dict[str, int] = {}
        for nm in names:
            seen[nm] = seen.get(nm, 0) + 1
        for nm, n in seen.items():
            if n > 1:
                problems.add("duplicate-category", f"category name {nm!r} appears {n} times")
    freqs = [c.get("frequency") if isinstance(c, dict) else None for c in cats]
    if all(f is None for f in freqs):
        coco = " (a COCO annotation file? LVIS categories carry frequency r/c/f)" if any(
            isinstance(c, dict) and "supercategory" in c for c in cats) else ""
        problems.add("wrong-shape", f"{name}: no category has a 'frequency' field{coco}")
        return None
    for i, f in enumerate(freqs):
        if f not in GROUPS:
            problems.add("bad-frequency", f"category #{i} ({names[i]}): frequency is {f!r}")
    cat_index = {int(c): i for i, c in enumerate(cat_ids) if cat_ok[i]}
    sorted_cats = np.array(sorted(cat_index), dtype=np.int64)

    # ---- images
    img_ids, img_ok = _int_column(images, "id", "image", "bad-image", problems)
    widths = _num_column(images, "width", "image", "bad-image", problems)
    heights = _num_column(images, "height", "image", "bad-image", problems)
    bad_wh = ~(np.isfinite(widths) & np.isfinite(heights) & (widths > 0) & (heights > 0))
    for i in np.flatnonzero(bad_wh & ~np.isnan(widths) & ~np.isnan(heights))[:EXAMPLES]:
        problems.add("bad-image", f"image id {img_ids[i]}: width x height is {widths[i]} x {heights[i]}", 0)
    n_bad_wh = int((bad_wh & ~np.isnan(widths) & ~np.isnan(heights)).sum())
    if n_bad_wh:
        problems.add("bad-image", None, n_bad_wh)
    relpaths: List[Optional[str]] = []
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            relpaths.append(None)
            continue
        try:
            relpaths.append(image_relpath(im))
        except (ValueError, TypeError, AttributeError):
            problems.add("bad-image", f"image id {im.get('id')}: neither coco_url nor file_name")
            relpaths.append(None)
    dup, cnt = _duplicates(img_ids, img_ok)
    if len(dup):
        problems.add("duplicate-image-id", None, int(len(dup)))
        problems.by_kind["duplicate-image-id"].examples = [f"image id {v} appears {n} times"
                                                           for v, n in zip(dup[:EXAMPLES], cnt[:EXAMPLES])]
    _check_image_category_lists(images, img_ids, cat_index, problems)

    # ---- annotations
    if not anns:
        problems.add("no-annotations", f"{name}: 'annotations' is []")
        return None
    ann_ids, ann_id_ok = _int_column(anns, "id", "annotation", "bad-annotation", problems)
    ann_id_of = (lambda a: a.get("id"))
    ann_img, ann_img_ok = _int_column(anns, "image_id", "annotation", "bad-annotation", problems, ann_id_of)
    ann_cat, ann_cat_ok = _int_column(anns, "category_id", "annotation", "bad-annotation", problems, ann_id_of)
    dup, cnt = _duplicates(ann_ids, ann_id_ok)
    if len(dup):
        problems.add("duplicate-annotation-id", None, int(len(dup)))
        problems.by_kind["duplicate-annotation-id"].examples = [
            f"annotation id {v} appears {n} times" for v, n in zip(dup[:EXAMPLES], cnt[:EXAMPLES])]

    order = np.argsort(img_ids, kind="stable")
    sorted_imgs = img_ids[order]
    pos = np.searchsorted(sorted_imgs, ann_img).clip(0, max(len(sorted_imgs) - 1, 0))
    img_found = ann_img_ok & (len(sorted_imgs) > 0) & (sorted_imgs[pos] == ann_img if len(sorted_imgs) else False)
    img_row = np.where(img_found, order[pos] if len(order) else 0, -1)
    for k in np.flatnonzero(ann_img_ok & ~img_found)[:EXAMPLES]:
        problems.add("missing-image", f"annotation id {ann_ids[k]}: image_id {ann_img[k]} is not listed", 0)
    n_missing = int((ann_img_ok & ~img_found).sum())
    if n_missing:
        problems.add("missing-image", None, n_missing)

    cpos = np.searchsorted(sorted_cats, ann_cat).clip(0, len(sorted_cats) - 1)
    cat_found = ann_cat_ok & (sorted_cats[cpos] == ann_cat)
    for k in np.flatnonzero(ann_cat_ok & ~cat_found)[:EXAMPLES]:
        problems.add("unknown-category", f"annotation id {ann_ids[k]}: category_id {ann_cat[k]} is not listed", 0)
    n_unknown = int((ann_cat_ok & ~cat_found).sum())
    if n_unknown:
        problems.add("unknown-category", None, n_unknown)

    _check_boxes(anns, ann_ids, img_row, widths, heights, problems)
    _check_segmentations(anns, ann_ids, problems)
    area = _num_column(anns, "area", "annotation", "bad-annotation", problems)
    n_area = int((np.isfinite(area) & (area <= 0)).sum())
    if n_area:
        k = int(np.flatnonzero(np.isfinite(area) & (area <= 0))[0])
        problems.add("area-mismatch", f"annotation id {ann_ids[k]}: area {area[k]}", n_area)

    # ---- counts per class (label order = order of the categories list, as the dataset uses)
    valid = img_found & cat_found
    label_of_sorted = np.array([cat_index[int(c)] for c in sorted_cats], dtype=np.int64)
    labels = label_of_sorted[cpos[valid]]
    rows = img_row[valid]
    n_cls = len(cats)
    instance_count = np.bincount(labels, minlength=n_cls)
    pairs = np.unique(rows.astype(np.int64) * n_cls + labels)
    image_count = np.bincount(pairs % n_cls, minlength=n_cls)
    annotated = np.zeros(len(images), bool)
    annotated[rows] = True
    if len(images) and not annotated.all():
        k = int(np.flatnonzero(~annotated)[0])
        problems.add("images-without-annotations", f"image id {img_ids[k]} (and {int((~annotated).sum()) - 1} more)",
                     int((~annotated).sum()))
    empty = np.flatnonzero(instance_count == 0)
    if len(empty):
        problems.add("classes-without-instances", ", ".join(names[i] for i in empty[:5]) + (
            f" (and {len(empty) - 5} more)" if len(empty) > 5 else ""), int(len(empty)))
        problems.by_kind["classes-without-instances"].examples = problems.by_kind[
            "classes-without-instances"].examples[:1]

    # ---- image folders and files
    image_dirs = sorted({p.split("/", 1)[0] for p in relpaths if p and "/" in p})
    if image_root is not None:
        _check_image_files(image_root, images, relpaths, widths, heights, img_ids, image_dirs, check_images,
                           sample, seed, problems, report)
    return _Parsed(cat_ids=[int(c) for c in cat_ids], names=names, frequency=freqs, image_count=image_count,
                   instance_count=instance_count, image_dirs=image_dirs)


def _check_image_category_lists(images: list, img_ids: np.ndarray, cat_index: Dict[int, int],
                                problems: Problems) -> None:
    for i, im in enumerate(images):
        if not isinstance(im, dict):
            continue
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            ids = im.get(key)
            if ids is None:
                problems.add("bad-image-category-list", f"image id {img_ids[i]}: no {key}")
                continue
            if type(ids) is not list:
                problems.add("bad-image-category-list", f"image id {img_ids[i]}: {key} is {ids!r:.40}")
                continue
            for c in ids:
                if type(c) is not int or c not in cat_index:
                    problems.add("bad-image-category-list", f"image id {img_ids[i]}: {key} holds {c!r:.20}, "
                                                            "not a listed category")
                    break


def _check_boxes(anns: list, ann_ids: np.ndarray, img_row: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                 problems: Problems) -> None:
    n = len(anns)
    boxes = None
    try:
        boxes = np.asarray([a["bbox"] for a in anns], dtype=np.float64)
        if boxes.shape != (n, 4):
            boxes = None
    except (KeyError, TypeError, ValueError):
        boxes = None
    if boxes is None:  # name each malformed box
        boxes = np.full((n, 4), np.nan)
        for i, a in enumerate(anns):
            b = a.get("bbox") if isinstance(a, dict) else None
            if (type(b) is list and len(b) == 4
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)):
                boxes[i] = b
            else:
                problems.add("bad-annotation", f"annotation id {ann_ids[i]}: bbox is {b!r:.60}")
    x, y, w, h = boxes.T
    malformed = np.isnan(boxes).all(1)  # already reported above
    bad = ~malformed & ~(np.isfinite(boxes).all(1) & (w > 0) & (h > 0))
    for i in np.flatnonzero(bad)[:EXAMPLES]:
        problems.add("bad-box", f"annotation id {ann_ids[i]}: bbox {[float(v) for v in boxes[i]]}", 0)
    if bad.any():
        problems.add("bad-box", None, int(bad.sum()))
    has_img = (img_row >= 0) & ~bad & ~malformed
    rows = np.where(has_img, img_row, 0)
    W, H = widths[rows], heights[rows]
    tol = BOX_TOLERANCE
    outside = has_img & np.isfinite(W) & np.isfinite(H) & boxes_outside(boxes, W, H, tol)
    for i in np.flatnonzero(outside)[:EXAMPLES]:
        problems.add("box-outside", f"annotation id {ann_ids[i]}: bbox {[round(float(v), 2) for v in boxes[i]]} in "
                                    f"a {W[i]:g} x {H[i]:g} image", 0)
    if outside.any():
        problems.add("box-outside", None, int(outside.sum()))


CHUNK = 200_000  # annotations whose polygon coordinates are checked at once (bounds the temporary array)


def _check_segmentations(anns: list, ann_ids: np.ndarray, problems: Problems) -> None:
    n = len(anns)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        try:
            segs = [a["segmentation"] for a in anns[start:stop]]
        except (KeyError, TypeError):
            segs = [a.get("segmentation") if isinstance(a, dict) else None for a in anns[start:stop]]
        if all(type(s) is list and s for s in segs):
            polys = list(chain.from_iterable(segs))
            try:
                lens = np.fromiter(map(len, polys), np.int64, count=len(polys))
                if (lens >= 6).all() and not (lens & 1).any():
                    coords = np.fromiter(chain.from_iterable(polys), np.float64, count=int(lens.sum()))
                    if np.isfinite(coords).all():
                        continue
            except (TypeError, ValueError):
                pass
        for i, s in enumerate(segs, start):  # the slow path names each bad segmentation
            why = _segmentation_problem(s)
            if why:
                problems.add("bad-segmentation", f"annotation id {ann_ids[i]}: {why}")


def _segmentation_problem(seg: Any) -> Optional[str]:
    if seg is None:
        return "no segmentation"
    if isinstance(seg, dict):
        size = seg.get("size")
        if "counts" not in seg or not (isinstance(size, list) and len(size) == 2):
            return "RLE segmentation without counts and size [h, w]"
        return None
    if type(seg) is not list:
        return f"segmentation is {seg!r:.40}"
    if not seg:
        return "segmentation is an empty list"
    for p in seg:
        if type(p) is not list:
            return f"polygon is {p!r:.40}, not a list of coordinates"
        if len(p) < 6 or len(p) % 2:
            return f"degenerate polygon with {len(p)} coordinate(s) (needs an even count, at least 3 points)"
        for v in p:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                return f"polygon coordinate {v!r:.20} is not a finite number"
    return None


def _check_image_files(root: Path, images: list, relpaths: List[Optional[str]], widths: np.ndarray,
                       heights: np.ndarray, img_ids: np.ndarray, image_dirs: List[str], mode: str, sample: int,
                       seed: int, problems: Problems, report: FileReport) -> None:
    missing_dirs = [d for d in image_dirs if not (root / d).is_dir()]
    for d in missing_dirs:
        problems.add("image-dir-missing", f"{root / d}/ (images of this file resolve there)")
    if mode == "none" or missing_dirs:
        return
    idx = [i for i, p in enumerate(relpaths) if p]
    if mode == "sample" and len(idx) > sample:
        rng = np.random.default_rng(seed)
        idx = sorted(int(i) for i in rng.choice(idx, size=sample, replace=False))
    from concurrent.futures import ThreadPoolExecutor

    def check(i: int) -> Optional[Tuple[str, str]]:
        p = root / relpaths[i]
        try:
            with open(p, "rb") as f:
                head = f.read(16)
                if not any(head.startswith(m) for m in IMAGE_MAGIC):
                    return "image-unreadable", f"{p}: not a JPEG/PNG/GIF/BMP/WebP file"
                from PIL import Image

                f.seek(0)
                with Image.open(f) as im:
                    w, h = im.size
        except FileNotFoundError:
            return "image-file-missing", f"{p} (image id {img_ids[i]})"
        except Exception as e:  # noqa: BLE001 - any failure to read is what we report
            return "image-unreadable", f"{p}: {type(e).__name__}: {str(e)[:60]}"
        if (w, h) != (widths[i], heights[i]):
            return "image-size", f"{p}: {w} x {h}, annotated as {widths[i]:g} x {heights[i]:g}"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        for found in pool.map(check, idx, chunksize=64):
            if found:
                problems.add(*found)
    report.images_checked = len(idx)


# ------------------------------------------------------------------------------------------ the dataset

def find_annotation_files(root: Path, version: str = "auto") -> Tuple[Optional[str], Dict[str, Path], List[str]]:
    """(version, {role: path}, missing file names) of the annotation files under ``root``.

    Looks in ``root/annotations/`` then ``root/``: the official names of ``version`` (auto: v1, then v0.5),
    else (auto only) any other ``*.json`` there (roles from 'train' / 'val' in the name)."""
    dirs = [root / "annotations", root]
    versions = VERSIONS if version == "auto" else (version,)
    for v in versions:
        found = {}
        for role, fname in FILE_NAMES[v].items():
            for d in dirs:
                if (d / fname).is_file():
                    found[role] = d / fname
                    break
        if found:
            missing = [fname for role, fname in FILE_NAMES[v].items() if role not in found]
            return v, found, missing
    if version == "auto":
        for d in dirs:
            others = sorted(p for p in d.glob("*.json") if p.name != META_NAME and not p.name.startswith("."))
            if others:
                found = {}
                for p in others:
                    role = "train" if "train" in p.name else "val" if "val" in p.name else p.stem
                    found.setdefault(role, p)
                return None, found, []
    return (None if version == "auto" else version), {}, list(FILE_NAMES.get(version, FILE_NAMES["v1"]).values())


def layout_help(root: Path, version: Optional[str]) -> str:
    v = version or "v1"
    return DOWNLOAD_GUIDE.format(root=str(root).rstrip("/"), v=v, V=v)


def prep_dataset(root: Path, version: str = "auto", check_images: str = "sample", sample: int = SAMPLE_IMAGES,
                 seed: int = 0, write: bool = True, _subset: Optional[dict] = None) -> PrepResult:
    """Validate the LVIS-format dataset under ``root`` and, if it has no errors, write ``loce_meta.json``."""
    start = time.perf_counter()
    root = Path(root)
    if version not in VERSIONS + ("auto",):
        raise LoceUsageError(f"--version must be v1, v0.5 or auto, got {version!r}", "auto detects it")
    if check_images not in CHECK_IMAGES:
        raise LoceUsageError(f"--check-images must be all, sample or none, got {check_images!r}",
                             "sample checks a random sample of images per file")
    if not root.is_dir():
        raise MissingDataError(f"--root {root} is not a directory", "point --root at the dataset folder "
                               "(e.g. data/lvis_v1)", layout_help(root, None if version == "auto" else version))
    found_version, files, missing = find_annotation_files(root, version)
    if not files:
        other = "" if version == "auto" else _other_versions_note(root, version)
        raise MissingDataError(
            f"no {'LVIS ' + version + ' ' if version != 'auto' else ''}annotation files under {root} "
            f"(looked for {', '.join(missing) if missing else 'annotations/*.json'} in {root / 'annotations'}/ "
            f"and {root}/){other}",
            "download them as shown above, or pass --root of the folder holding annotations/",
            layout_help(root, None if version == "auto" else version))
    expected = None if version == "auto" else version
    problems = Problems()
    for fname in missing:
        problems.add("file-missing", f"{root / 'annotations' / fname}")
    reports: List[FileReport] = []
    parsed: Dict[str, _Parsed] = {}
    for role, path in files.items():
        rep, p = validate_annotation_file(path, role, expected or found_version, root, check_images, sample, seed)
        reports.append(rep)
        if p is not None:
            parsed[role] = p
    versions = {r.version for r in reports if r.version}
    result_version = found_version or (versions.pop() if len(versions) == 1 else None)
    result = PrepResult(root=str(root), version=result_version, check_images=check_images, files=reports,
                        problems=[])
    if any(r.errors for r in reports) or not parsed:
        result.problems = problems.list()
        result.layout_help = layout_help(root, result_version) if any(
            p.kind.startswith("image-") for r in reports for p in r.problems) else None
        result.seconds = time.perf_counter() - start
        return result

    # ---- dataset level: same categories everywhere, groups
    roles = list(parsed)
    ref_role = "train" if "train" in parsed else roles[0]
    ref = parsed[ref_role]
    for role in roles:
        p = parsed[role]
        if (p.cat_ids, p.names, p.frequency) != (ref.cat_ids, ref.names, ref.frequency):
            problems.add("categories-differ", f"{files[role].name} vs {files[ref_role].name}: "
                                              f"{_first_difference(p, ref)}")
    groups = {g: sum(1 for f in ref.frequency if f == g) for g in GROUPS}
    if "train" in parsed and _subset is None:
        derived = [frequency_group(int(n)) for n in parsed["train"].image_count]
        diff = [i for i, (a, b) in enumerate(zip(derived, ref.frequency)) if a != b]
        if diff:
            i = diff[0]
            problems.add("frequency-mismatch", f"{ref.names[i]}: frequency {ref.frequency[i]!r} but "
                                               f"{int(parsed['train'].image_count[i])} training images "
                                               f"({derived[i]!r})", len(diff))
    official = OFFICIAL.get(result_version or "")
    if official and len(ref.names) == official[0] and groups != official[1]:
        problems.add("official-groups", f"rare/common/frequent {groups['r']}/{groups['c']}/{groups['f']}, "
                                        f"LVIS {result_version}: {'/'.join(str(official[1][g]) for g in GROUPS)}")
    result.problems = problems.list()
    result.num_classes = len(ref.names)
    result.classes_per_group = groups
    if result.ok and write:
        meta = build_meta(root, result, files, parsed, ref, _subset)
        meta_path = files[ref_role].parent / META_NAME
        _write_atomic(meta_path, json.dumps(meta).encode() + b"\n")
        result.meta_path = str(meta_path)
    result.seconds = time.perf_counter() - start
    return result


def _other_versions_note(root: Path, version: str) -> str:
    others = [v for v in VERSIONS if v != version and find_annotation_files(root, v)[1]]
    return f"; found LVIS {others[0]} files instead (pass --version {others[0]} or auto)" if others else ""


def _first_difference(a: _Parsed, b: _Parsed) -> str:
    if len(a.cat_ids) != len(b.cat_ids):
        return f"{len(a.cat_ids)} vs {len(b.cat_ids)} categories"
    for i in range(len(a.cat_ids)):
        if (a.cat_ids[i], a.names[i], a.frequency[i]) != (b.cat_ids[i], b.names[i], b.frequency[i]):
            return (f"category #{i}: {a.cat_ids[i]} {a.names[i]!r} ({a.frequency[i]}) vs "
                    f"{b.cat_ids[i]} {b.names[i]!r} ({b.frequency[i]})")
    return "same"


def build_meta(root: Path, result: PrepResult, files: Dict[str, Path], parsed: Dict[str, _Parsed], ref: _Parsed,
               subset: Optional[dict]) -> dict:
    from loce_cli import __version__

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


# --------------------------------------------------------------------------------------------- the meta

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
    from loce_cli.engine.config import train_dataset_cfg

    train = train_dataset_cfg(cfg)
    if train.get("loce_meta") != "required":
        return
    try:
        read_meta(Path(train.ann_file))
    except DataError as e:
        raise DataError(f"{e.message} (from {config_path})", e.hint) from None


# ------------------------------------------------------------------------------------------------ subset

def make_subset(root: Path, out: Path, fraction: float, seed: int = 0, version: str = "auto",
                force: bool = False, check_images: str = "none") -> SubsetResult:
    """A smaller LVIS-format train file: a random ``fraction`` of the images with all their annotations.

    ``out/annotations/<train name>`` holds the subset with the full categories list (frequency groups and
    counts as in the full set); the val file(s) and image folders are linked from ``root`` so ``out`` is a
    dataset root of its own; ``out/annotations/loce_meta.json`` describes it."""
    import msgspec

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
    _write_atomic(ann_dir / src.name, msgspec.json.encode(subset))
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


def _image_dirs(images: list) -> Iterable[str]:
    for im in images:
        try:
            p = image_relpath(im)
        except (ValueError, TypeError, AttributeError):
            continue
        if "/" in p:
            yield p.split("/", 1)[0]


def _link(target: Path, link: Path) -> Path:
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():
        shutil.rmtree(link)
    link.symlink_to(target.resolve(), target_is_directory=target.is_dir())
    return link


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary name in ``path``'s folder, then rename (mode from the umask)."""
    from loce_cli.engine._io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
