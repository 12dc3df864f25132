"""Annotation rules shared by ``loce data prep`` (engine) and the dataset's own checks (mmdet_ext)."""

from __future__ import annotations

from urllib.parse import urlparse

import numpy as np

BOX_TOLERANCE = 1.0  # pixels a box may reach beyond the image border (rounding of polygon bounds)


def boxes_outside(boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                  tolerance: float = BOX_TOLERANCE) -> np.ndarray:
    """[N] bool: xywh ``boxes`` [N, 4] that leave their ``widths`` x ``heights`` image by more than
    ``tolerance`` pixels on any side."""
    x, y, w, h = np.asarray(boxes, dtype=np.float64).T
    return (x < -tolerance) | (y < -tolerance) | (x + w > widths + tolerance) | (y + h > heights + tolerance)


def image_relpath(info: dict) -> str:
    """Path of an image under the image root: ``coco_url`` without its host, else ``file_name`` (the rule of
    ``loce data prep``'s image checks and of loce's LVIS dataset in mmdet)."""
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


# An annotation file whose ``info`` holds this key set to true follows COCO's rule in every image: every category
# is exhaustively annotated, so an image's ``neg_category_ids`` are all categories with no annotation in it and its
# ``not_exhaustive_category_ids`` is empty. Its images need not (and, from ``loce data import coco``, do not) carry
# the lists; loce's readers derive them from the flag (any lists present are not read).
EXHAUSTIVE_KEY = "all_categories_exhaustive"


def all_exhaustive(data: object) -> bool:
    """Whether the parsed annotation file ``data`` says every category is exhaustively annotated in every image."""
    info = data.get("info") if isinstance(data, dict) else None
    return isinstance(info, dict) and info.get(EXHAUSTIVE_KEY) is True


def expand_exhaustive(data: dict) -> dict:
    """``data`` itself, with each image's ``neg_category_ids`` (every category with no annotation in the image,
    ascending) and ``not_exhaustive_category_ids`` ([]) written out when its ``info`` carries the exhaustive flag:
    what the official lvis API and other LVIS tools read. A file without the flag is returned unchanged."""
    if not all_exhaustive(data):
        return data
    cat_ids = sorted(c["id"] for c in data["categories"])
    annotated: dict = {}
    for a in data["annotations"]:
        annotated.setdefault(a["image_id"], set()).add(a["category_id"])
    for im in data["images"]:
        present = annotated.get(im["id"], ())
        im["neg_category_ids"] = [c for c in cat_ids if c not in present] if present else list(cat_ids)
        im["not_exhaustive_category_ids"] = []
    return data
