"""Validating one LVIS-format annotation file: shape, version, categories, images, annotations (ids,
references, boxes, segmentations, areas), per-class counts and the image files. Column-wise numpy checks, with a
per-item pass only over a column that failed the fast check (to name every bad item)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from loce_cli.core.annotations import BOX_TOLERANCE, boxes_outside, image_relpath  # shared with the dataset
from loce_cli.core.frequency import GROUPS
from loce_cli.engine.json_files import gc_paused
from loce_cli.engine.data.prep.formats import OFFICIAL, VERSIONS
from loce_cli.engine.data.prep.images import check_image_files
from loce_cli.engine.data.prep.problems import EXAMPLES, Problems
from loce_cli.engine.data.prep.reading import read_json_file
from loce_cli.engine.data.prep.reports import FileReport

SAMPLE_IMAGES = 200  # per annotation file with --check-images sample


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
class ParsedFile:
    """What a validated file contributes to the meta (arrays in label order)."""

    cat_ids: List[int]
    names: List[str]
    frequency: List[Optional[str]]
    image_count: np.ndarray
    instance_count: np.ndarray
    image_dirs: List[str]


def validate_annotation_file(path: Path, role: str = "other", expected_version: Optional[str] = None,
                             image_root: Optional[Path] = None, check_images: str = "none",
                             sample: int = SAMPLE_IMAGES, seed: int = 0) -> Tuple[FileReport, Optional[ParsedFile]]:
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
                   report: FileReport) -> Optional[ParsedFile]:
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
        check_image_files(image_root, images, relpaths, widths, heights, img_ids, image_dirs, check_images,
                           sample, seed, problems, report)
    return ParsedFile(cat_ids=[int(c) for c in cat_ids], names=names, frequency=freqs, image_count=image_count,
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
