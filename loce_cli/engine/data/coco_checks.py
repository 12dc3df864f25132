"""One COCO-format annotation file read and checked for ``loce data import coco``: the top level, categories,
images and annotations as numpy columns (ids unique, references resolved, boxes finite, positive and inside their
image, areas positive), and the image files present. The first problem of each kind raises a one-line
``DataError`` naming the file, the count and the first offending item; nothing is changed on disk."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List

import msgspec
import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.core.annotations import boxes_outside
from loce_cli.errors import DataError

COCO_HINT = ("a COCO annotation file is an object with 'images' (id, width, height, file_name), 'annotations' "
             "(id, image_id, category_id, bbox [x, y, w, h], optional segmentation, area, iscrowd) and "
             "'categories' (id, name)")


@dataclass
class CocoFile:
    """A checked COCO file: the parsed object (modified in place by the import, never written back) and its
    columns, images and categories in file order."""

    path: Path
    data: dict
    cat_ids: np.ndarray  # [K] int64
    names: List[str]
    img_ids: np.ndarray  # [I] int64
    ann_img_row: np.ndarray  # [M] row of each annotation's image in ``images``
    ann_cat_pos: np.ndarray  # [M] position of each annotation's category in ``categories``
    ann_crowd: np.ndarray  # [M] bool
    has_masks: bool


def _fail(path: Path, what: str, hint: str = COCO_HINT) -> DataError:
    return DataError(f"{path}: {what}", hint)


def _int_ids(items: list, key: str, what: str, path: Path) -> np.ndarray:
    """The integer ``key`` of every item (each a dict), or a one-line error naming the first that is not."""
    try:
        values = [it[key] for it in items]
        if set(map(type, values)) <= {int}:
            return np.array(values, dtype=np.int64).reshape(len(items))
    except (KeyError, TypeError):
        pass
    for i, it in enumerate(items):
        if type(it) is not dict or type(it.get(key)) is not int:
            shown = it.get(key) if type(it) is dict else it
            raise _fail(path, f"{what} #{i} has no integer {key!r} (found {shown!r:.40})")
    raise _fail(path, f"{what} ids out of range")


def _unique(ids: np.ndarray, what: str, path: Path) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise _fail(path, f"{dup.size:,} duplicate {what} id(s) (first: {what} id {int(dup[0])} appears "
                          f"{int(counts[counts > 1][0])} times)", f"{what} ids must be unique")


def _positions(sorted_ids: np.ndarray, order: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row (in file order) of each of ``ids``; -1 where it is not listed."""
    pos = np.searchsorted(sorted_ids, ids).clip(0, max(sorted_ids.size - 1, 0))
    found = sorted_ids[pos] == ids if sorted_ids.size else np.zeros(ids.shape, bool)
    return np.where(found, order[pos] if order.size else 0, -1)


def decode(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"annotation file {path} does not exist", "check the path")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}", "check the file's permissions") from None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as e:
        raise _fail(path, f"not valid JSON ({e})", "the file may be truncated; export it again") from None


def _check_top(data: Any, path: Path) -> None:
    if isinstance(data, list):
        looks = "a detection results list" if data and isinstance(data[0], dict) and "score" in data[0] else \
            "a JSON list"
        raise _fail(path, f"not a COCO annotation file (top level is {looks})")
    if not isinstance(data, dict):
        raise _fail(path, f"not a COCO annotation file (top level is a {type(data).__name__})")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise _fail(path, f"not a COCO annotation file (no list(s) {', '.join(missing)} at the top level)")
    if not data["categories"]:
        raise _fail(path, "the categories list is empty")
    if not data["images"]:
        raise _fail(path, "the images list is empty")


def _check_categories(cats: list, path: Path) -> List[str]:
    ids = _int_ids(cats, "id", "category", path)
    _unique(ids, "category", path)
    names = []
    for c in cats:
        name = c.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(path, f"category id {c['id']} has no name (found {name!r:.40})")
        names.append(name)
    if len(set(names)) != len(names):
        seen = set()
        first = next(n for n in names if n in seen or seen.add(n))
        raise _fail(path, f"category name {first!r} appears more than once", "category names must be unique")
    return names


def _check_images(images: list, path: Path, images_dir: Path):
    ids = _int_ids(images, "id", "image", path)
    _unique(ids, "image", path)
    sizes = np.zeros((len(images), 2), np.float64)
    for i, im in enumerate(images):
        w, h, name = im.get("width"), im.get("height"), im.get("file_name")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (w, h)) or not (w > 0 and h > 0):
            raise _fail(path, f"image id {ids[i]}: width x height is {w!r} x {h!r} (must be positive numbers)")
        if not isinstance(name, str) or not name:
            raise _fail(path, f"image id {ids[i]} has no file_name")
        sizes[i] = (w, h)
    missing = _missing_files(images_dir, [im["file_name"] for im in images])
    if missing:
        raise DataError(f"{len(missing):,} image file(s) of {path.name} missing under {images_dir} (first: "
                        f"{os.path.join(images_dir, missing[0])})",
                        "pass the folder the file_name fields are relative to")
    return ids, sizes


def _missing_files(images_dir: Path, names: List[str]) -> List[str]:
    """The ``names`` (relative to ``images_dir``) that are no files there: one directory listing per folder,
    a stat only for names not listed."""
    listed: dict = {}
    out = []
    for name in names:
        folder, _, base = name.rpartition("/")
        if folder not in listed:
            try:
                listed[folder] = set(os.listdir(os.path.join(images_dir, folder)))
            except OSError:
                listed[folder] = set()
        if base not in listed[folder] or not base:
            if not os.path.isfile(os.path.join(images_dir, name)):
                out.append(name)
    return out


def _check_boxes(anns: list, ann_ids: np.ndarray, row: np.ndarray, sizes: np.ndarray, path: Path) -> np.ndarray:
    try:
        boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(len(anns), 4)
    except (KeyError, TypeError, ValueError):
        for a in anns:
            b = a.get("bbox")
            if not (type(b) is list and len(b) == 4 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)):
                raise _fail(path, f"annotation id {a['id']}: bbox is {b!r:.60} (expected [x, y, width, height])")
        raise
    bad = ~(np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{int(bad.sum()):,} box(es) without a positive finite size (first: annotation id "
                          f"{ann_ids[k]}: bbox {boxes[k].tolist()})", "bbox is [x, y, width, height], width and "
                                                                     "height > 0")
    outside = boxes_outside(boxes, sizes[row, 0], sizes[row, 1])
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise _fail(path, f"{int(outside.sum()):,} box(es) outside their image (first: annotation id {ann_ids[k]}: "
                          f"bbox {boxes[k].tolist()} in a {sizes[row[k], 0]:g} x {sizes[row[k], 1]:g} image)",
                    "boxes must lie inside the image's width x height (1 pixel of tolerance)")
    return boxes


def _check_areas(anns: list, boxes: np.ndarray, sizes: np.ndarray, row: np.ndarray, path: Path) -> None:
    """Fill a missing ``area`` (the mask's, else the box's, as pycocotools would); refuse a non-positive one."""
    areas = [a.get("area") for a in anns]
    if not set(map(type, areas)) <= {int, float}:
        for k, a in enumerate(anns):
            if a.get("area") is None:
                a["area"] = areas[k] = _area(a.get("segmentation"), boxes[k], sizes[row[k]])
            elif isinstance(a["area"], bool) or not isinstance(a["area"], (int, float)):
                raise _fail(path, f"annotation id {a['id']}: area is {a['area']!r:.40} (must be a positive number)",
                            "area is the object's size in pixels")
    values = np.array(areas, dtype=np.float64).reshape(len(anns))
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise _fail(path, f"{int(bad.sum()):,} annotation(s) without a positive area (first: annotation id "
                          f"{anns[k]['id']}: area is {areas[k]!r})", "area is the object's size in pixels")


def _area(seg: Any, box: np.ndarray, size: np.ndarray) -> float:
    if not seg:
        return float(box[2] * box[3])
    h, w = int(size[1]), int(size[0])
    if isinstance(seg, list) or isinstance(seg.get("counts"), list):
        rles = mask_utils.frPyObjects(seg, h, w)
        return float(mask_utils.area(mask_utils.merge(rles) if isinstance(rles, list) else rles))
    return float(mask_utils.area(seg))


def read_coco(path: Path, images_dir: Path) -> CocoFile:
    """Read and check one COCO file whose ``file_name``s are relative to ``images_dir``."""
    path, images_dir = Path(path), Path(images_dir)
    if not images_dir.is_dir():
        raise DataError(f"image folder {images_dir} does not exist", "pass the folder holding the images")
    data = decode(path)
    _check_top(data, path)
    cats, images, anns = data["categories"], data["images"], data["annotations"]
    names = _check_categories(cats, path)
    cat_ids = np.fromiter((c["id"] for c in cats), np.int64, len(cats))
    img_ids, sizes = _check_images(images, path, images_dir)
    ann_ids = _int_ids(anns, "id", "annotation", path)
    _unique(ann_ids, "annotation", path)
    a_img = _int_ids(anns, "image_id", "annotation", path)
    a_cat = _int_ids(anns, "category_id", "annotation", path)
    img_order = np.argsort(img_ids, kind="stable")
    row = _positions(img_ids[img_order], img_order, a_img)
    cat_order = np.argsort(cat_ids, kind="stable")
    cpos = _positions(cat_ids[cat_order], cat_order, a_cat)
    for col, ids, what in ((row, a_img, "image_id"), (cpos, a_cat, "category_id")):
        if (col < 0).any():
            k = int(np.flatnonzero(col < 0)[0])
            raise _fail(path, f"{int((col < 0).sum()):,} annotation(s) name an unlisted {what} (first: annotation "
                              f"id {ann_ids[k]}: {what} {ids[k]})", f"every {what} must be listed in the file")
    boxes = _check_boxes(anns, ann_ids, row, sizes, path)
    _check_areas(anns, boxes, sizes, row, path)
    flags = [a.get("iscrowd", 0) for a in anns]
    if set(map(type, flags)) - {int, bool}:
        k = next(i for i, f in enumerate(flags) if type(f) not in (int, bool))
        raise _fail(path, f"annotation id {ann_ids[k]}: iscrowd is {flags[k]!r:.40} (0 or 1)")
    crowd = np.array(flags, dtype=np.int64).reshape(len(anns))
    if ((crowd != 0) & (crowd != 1)).any():
        k = int(np.flatnonzero((crowd != 0) & (crowd != 1))[0])
        raise _fail(path, f"annotation id {ann_ids[k]}: iscrowd is {crowd[k]} (0 or 1)")
    segs = [a.get("segmentation") for a in anns]
    has_seg = np.fromiter(map(bool, segs), np.bool_, len(segs)) if any(segs) else np.zeros(len(segs), np.bool_)
    if has_seg.any() and not has_seg.all():
        k = int(np.flatnonzero(~has_seg)[0])
        raise _fail(path, f"{int((~has_seg).sum()):,} annotation(s) without a segmentation while others have one "
                          f"(first: annotation id {ann_ids[k]})",
                    "give every annotation a mask, or none (box-only data)")
    return CocoFile(path, data, cat_ids, names, img_ids, row, cpos, crowd.astype(bool), bool(has_seg.any()))
