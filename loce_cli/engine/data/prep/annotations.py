"""Validating one LVIS-format annotation file: shape, version, categories, images, annotations (ids,
references, boxes, segmentations, areas), per-class counts and the image files. Column-wise numpy checks, with a
per-item pass only over a column that failed the fast check (to name every bad item)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from loce_cli.core.annotations import all_exhaustive, image_relpath  # shared with the dataset
from loce_cli.core.frequency import GROUPS
from loce_cli.engine.data.prep.columns import duplicates, int_column, num_column
from loce_cli.engine.data.prep.formats import OFFICIAL, VERSIONS
from loce_cli.engine.data.prep.images import check_image_files
from loce_cli.engine.data.prep.item_checks import check_boxes, check_image_category_lists, check_segmentations
from loce_cli.engine.data.prep.problems import EXAMPLES, Problems
from loce_cli.engine.data.prep.reading import read_json_file
from loce_cli.engine.data.prep.reports import FileReport
from loce_cli.engine.json_files import gc_paused

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


@dataclass
class ParsedFile:
    """What a validated file contributes to the meta (arrays in label order)."""

    cat_ids: List[int]
    names: List[str]
    frequency: List[Optional[str]]
    image_count: np.ndarray
    instance_count: np.ndarray
    image_dirs: List[str]
    cutoffs: Optional[Tuple[int, int]] = None  # (rare_max, common_max) the file's groups were made with, if it says


def recorded_cutoffs(data: Any) -> Optional[Tuple[int, int]]:
    """The (rare_max, common_max) that ``loce data import`` recorded in the file's ``info.loce_import``, if any."""
    info = data.get("info") if isinstance(data, dict) and isinstance(data.get("info"), dict) else {}
    rec = info.get("loce_import") if isinstance(info.get("loce_import"), dict) else {}
    rare, common = rec.get("rare_max"), rec.get("common_max")
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (rare, common))
    return (rare, common) if ok and 0 <= rare < common else None


def validate_annotation_file(path: Path, role: str = "other", expected_version: Optional[str] = None,
                             image_root: Optional[Path] = None, check_images: str = "none",
                             sample: int = SAMPLE_IMAGES, seed: int = 0,
                             parsed_already: Optional[Tuple[Any, int, str]] = None
                             ) -> Tuple[FileReport, Optional[ParsedFile]]:
    """Validate one LVIS-format annotation file; the report lists problems by kind (nothing raised for them).
    ``parsed_already``: (the file's parsed content, its size, its sha256) from a caller that has just written it
    (``loce data import``), so it is not parsed again."""
    path = Path(path)
    start = time.perf_counter()
    problems = Problems()
    report = FileReport(path=str(path), role=role)
    with gc_paused():
        data, report.size, report.sha256 = parsed_already or read_json_file(path, problems)
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
    if not _check_shape(data, name, problems):
        return None
    images, anns, cats = data["images"], data["annotations"], data["categories"]
    report.images, report.annotations, report.categories = len(images), len(anns), len(cats)
    version, evidence = detect_version(data, path)
    report.version = version
    if expected_version and version and version != expected_version:
        problems.add("wrong-version", f"{name} looks like LVIS {version} ({evidence}), not {expected_version}")
        return None
    categories = _check_categories(cats, name, problems)
    if categories is None:
        return None
    img = _check_images(images, categories.index, problems, all_exhaustive(data))
    if not anns:
        problems.add("no-annotations", f"{name}: 'annotations' is []")
        return None
    found = _check_annotations(anns, img, categories, problems)
    crowd = _crowd_column(anns)
    image_count, instance_count = _class_counts(found, img, categories, problems, crowd)
    image_dirs = sorted({p.split("/", 1)[0] for p in img.relpaths if p and "/" in p})
    if image_root is not None:
        check_image_files(image_root, images, img.relpaths, img.widths, img.heights, img.ids, image_dirs,
                          check_images, sample, seed, problems, report)
    return ParsedFile(cat_ids=[int(c) for c in categories.ids], names=categories.names,
                      frequency=categories.freqs, image_count=image_count, instance_count=instance_count,
                      image_dirs=image_dirs, cutoffs=recorded_cutoffs(data))


def _check_shape(data: Any, name: str, problems: Problems) -> bool:
    """Whether the top level is a dict with the three lists (else one problem says what it is)."""
    if isinstance(data, list):
        looks = ("a detection results list (image_id, category_id, bbox, score), not annotations"
                 if data and isinstance(data[0], dict) and "score" in data[0] else "a JSON list")
        problems.add("wrong-shape", f"{name}: top level is {looks}")
        return False
    if not isinstance(data, dict):
        problems.add("wrong-shape", f"{name}: top level is a {type(data).__name__}")
        return False
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        problems.add("wrong-shape", f"{name}: no list(s) {', '.join(missing)} at the top level")
        return False
    return True


@dataclass
class _Categories:
    ids: np.ndarray
    names: List[str]
    freqs: List[Optional[str]]
    index: Dict[int, int]  # category id -> label (position in the list)
    sorted_ids: np.ndarray


def _check_categories(cats: list, name: str, problems: Problems) -> Optional[_Categories]:
    if not cats:
        problems.add("wrong-shape", f"{name}: the categories list is empty")
        return None
    cat_ids, cat_ok = int_column(cats, "id", "category", "bad-category", problems)
    names: List[str] = []
    for i, c in enumerate(cats):
        nm = c.get("name") if isinstance(c, dict) else None
        if not isinstance(nm, str) or not nm:
            problems.add("bad-category", f"category #{i}: name is {nm!r}")
        names.append(str(nm))
    dup, cnt = duplicates(cat_ids, cat_ok)
    for v, n in zip(dup[:EXAMPLES], cnt[:EXAMPLES]):
        problems.add("duplicate-category", f"category id {v} appears {n} times", 0)
    if len(dup):
        problems.by_kind["duplicate-category"].count += int(len(dup))
    for nm, n in Counter(names).items():
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
    return _Categories(cat_ids, names, freqs, cat_index, np.array(sorted(cat_index), dtype=np.int64))


@dataclass
class _Images:
    ids: np.ndarray
    widths: np.ndarray
    heights: np.ndarray
    relpaths: List[Optional[str]]


def _check_images(images: list, cat_index: Dict[int, int], problems: Problems, exhaustive: bool) -> _Images:
    img_ids, img_ok = int_column(images, "id", "image", "bad-image", problems)
    widths = num_column(images, "width", "image", "bad-image", problems)
    heights = num_column(images, "height", "image", "bad-image", problems)
    bad_wh = ~(np.isfinite(widths) & np.isfinite(heights) & (widths > 0) & (heights > 0))
    for i in np.flatnonzero(bad_wh & ~np.isnan(widths) & ~np.isnan(heights))[:EXAMPLES]:
        problems.add("bad-image", f"image id {img_ids[i]}: width x height is {widths[i]} x {heights[i]}", 0)
    n_bad_wh = int((bad_wh & ~np.isnan(widths) & ~np.isnan(heights)).sum())
    if n_bad_wh:
        problems.add("bad-image", None, n_bad_wh)
    relpaths: List[Optional[str]] = []
    for im in images:
        if not isinstance(im, dict):
            relpaths.append(None)
            continue
        try:
            relpaths.append(image_relpath(im))
        except (ValueError, TypeError, AttributeError):
            problems.add("bad-image", f"image id {im.get('id')}: neither coco_url nor file_name")
            relpaths.append(None)
    dup, cnt = duplicates(img_ids, img_ok)
    if len(dup):
        problems.add("duplicate-image-id", None, int(len(dup)))
        problems.by_kind["duplicate-image-id"].examples = [f"image id {v} appears {n} times"
                                                           for v, n in zip(dup[:EXAMPLES], cnt[:EXAMPLES])]
    check_image_category_lists(images, img_ids, cat_index, problems, exhaustive)
    return _Images(img_ids, widths, heights, relpaths)


@dataclass
class _Found:
    """Per annotation: whether its image / category is listed, its image's row and its category's sorted position."""

    img: np.ndarray
    cat: np.ndarray
    img_row: np.ndarray
    cat_pos: np.ndarray


def _check_annotations(anns: list, img: _Images, categories: _Categories, problems: Problems) -> _Found:
    ann_ids, ann_id_ok = int_column(anns, "id", "annotation", "bad-annotation", problems)
    ann_id_of = (lambda a: a.get("id"))
    ann_img, ann_img_ok = int_column(anns, "image_id", "annotation", "bad-annotation", problems, ann_id_of)
    ann_cat, ann_cat_ok = int_column(anns, "category_id", "annotation", "bad-annotation", problems, ann_id_of)
    dup, cnt = duplicates(ann_ids, ann_id_ok)
    if len(dup):
        problems.add("duplicate-annotation-id", None, int(len(dup)))
        problems.by_kind["duplicate-annotation-id"].examples = [
            f"annotation id {v} appears {n} times" for v, n in zip(dup[:EXAMPLES], cnt[:EXAMPLES])]
    order = np.argsort(img.ids, kind="stable")
    sorted_imgs = img.ids[order]
    pos = np.searchsorted(sorted_imgs, ann_img).clip(0, max(len(sorted_imgs) - 1, 0))
    img_found = ann_img_ok & (len(sorted_imgs) > 0) & (sorted_imgs[pos] == ann_img if len(sorted_imgs) else False)
    img_row = np.where(img_found, order[pos] if len(order) else 0, -1)
    _report_missing(problems, "missing-image", ann_img_ok & ~img_found,
                    lambda k: f"annotation id {ann_ids[k]}: image_id {ann_img[k]} is not listed")
    sorted_cats = categories.sorted_ids
    cpos = np.searchsorted(sorted_cats, ann_cat).clip(0, len(sorted_cats) - 1)
    cat_found = ann_cat_ok & (sorted_cats[cpos] == ann_cat)
    _report_missing(problems, "unknown-category", ann_cat_ok & ~cat_found,
                    lambda k: f"annotation id {ann_ids[k]}: category_id {ann_cat[k]} is not listed")
    check_boxes(anns, ann_ids, img_row, img.widths, img.heights, problems)
    check_segmentations(anns, ann_ids, problems)
    area = num_column(anns, "area", "annotation", "bad-annotation", problems)
    n_area = int((np.isfinite(area) & (area <= 0)).sum())
    if n_area:
        k = int(np.flatnonzero(np.isfinite(area) & (area <= 0))[0])
        problems.add("area-mismatch", f"annotation id {ann_ids[k]}: area {area[k]}", n_area)
    return _Found(img_found, cat_found, img_row, cpos)


def _crowd_column(anns: list) -> np.ndarray:
    """[M] bool: the annotations marked ``iscrowd`` (COCO data; none in LVIS)."""
    try:
        flags = [a.get("iscrowd") for a in anns]
    except AttributeError:
        flags = [a.get("iscrowd") if type(a) is dict else None for a in anns]
    if not any(flags):
        return np.zeros(len(anns), np.bool_)
    return np.fromiter((bool(f) for f in flags), np.bool_, len(flags))


def _report_missing(problems: Problems, kind: str, bad: np.ndarray, describe) -> None:
    """The first examples of ``bad`` annotations one by one, then their count."""
    for k in np.flatnonzero(bad)[:EXAMPLES]:
        problems.add(kind, describe(k), 0)
    n = int(bad.sum())
    if n:
        problems.add(kind, None, n)


def _class_counts(found: _Found, img: _Images, categories: _Categories, problems: Problems,
                  crowd: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Training images and instances per class (label order = the categories list's order, as the dataset uses);
    crowd regions (``iscrowd``, COCO data) are ignored regions, not instances."""
    valid = found.img & found.cat & ~crowd
    label_of_sorted = np.array([categories.index[int(c)] for c in categories.sorted_ids], dtype=np.int64)
    labels = label_of_sorted[found.cat_pos[valid]]
    rows = found.img_row[valid]
    n_cls = len(categories.names)
    instance_count = np.bincount(labels, minlength=n_cls)
    pairs = np.unique(rows.astype(np.int64) * n_cls + labels)
    image_count = np.bincount(pairs % n_cls, minlength=n_cls)
    annotated = np.zeros(len(img.ids), bool)
    annotated[rows] = True
    if len(img.ids) and not annotated.all():
        k = int(np.flatnonzero(~annotated)[0])
        problems.add("images-without-annotations", f"image id {img.ids[k]} (and {int((~annotated).sum()) - 1} more)",
                     int((~annotated).sum()))
    empty = np.flatnonzero(instance_count == 0)
    if len(empty):
        names = categories.names
        problems.add("classes-without-instances", ", ".join(names[i] for i in empty[:5]) + (
            f" (and {len(empty) - 5} more)" if len(empty) > 5 else ""), int(len(empty)))
        problems.by_kind["classes-without-instances"].examples = problems.by_kind[
            "classes-without-instances"].examples[:1]
    return image_count, instance_count
