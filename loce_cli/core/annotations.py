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
