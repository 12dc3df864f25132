"""Checks of single items of an annotation file: an image's negative / not-exhaustive category lists, boxes
against their image, segmentations (polygons and RLE)."""

from __future__ import annotations

import math
from itertools import chain
from typing import Any, Dict, Optional

import numpy as np

from loce_cli.core.annotations import BOX_TOLERANCE, boxes_outside
from loce_cli.engine.data.prep.problems import EXAMPLES, Problems


def check_image_category_lists(images: list, img_ids: np.ndarray, cat_index: Dict[int, int],
                                problems: Problems, exhaustive: bool = False) -> None:
    """Each image's lists hold listed category ids; ``exhaustive`` (the file's flag, ``core.annotations``): the
    lists may be absent (the flag stands for them)."""
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        lists = [im.get(key) if type(im) is dict else [] for im in images]
        given = [ids for ids in lists if ids is not None] if exhaustive else lists
        if all(type(ids) is list for ids in given):  # the fast path: one C-level pass over every id
            flat = list(chain.from_iterable(given))
            if set(map(type, flat)) <= {int} and set(flat) <= cat_index.keys():
                continue
        for i, ids in enumerate(lists):  # name each bad list
            if ids is None and exhaustive:
                continue
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


def check_boxes(anns: list, ann_ids: np.ndarray, img_row: np.ndarray, widths: np.ndarray, heights: np.ndarray,
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


def check_segmentations(anns: list, ann_ids: np.ndarray, problems: Problems) -> None:
    """Every segmentation well-formed; a box-only file (no annotation with a segmentation) passes."""
    n = len(anns)
    try:
        every = [a.get("segmentation") for a in anns]
    except AttributeError:
        every = [a.get("segmentation") if isinstance(a, dict) else None for a in anns]
    if not any(every):
        return
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        segs = every[start:stop]
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
            why = segmentation_problem(s)
            if why:
                problems.add("bad-segmentation", f"annotation id {ann_ids[i]}: {why}")


def segmentation_problem(seg: Any) -> Optional[str]:
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
