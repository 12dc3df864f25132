"""Annotation rules shared by ``loce data prep`` (engine) and the dataset's own checks (mmdet_ext)."""

from __future__ import annotations

import numpy as np

BOX_TOLERANCE = 1.0  # pixels a box may reach beyond the image border (rounding of polygon bounds)


def boxes_outside(boxes: np.ndarray, widths: np.ndarray, heights: np.ndarray,
                  tolerance: float = BOX_TOLERANCE) -> np.ndarray:
    """[N] bool: xywh ``boxes`` [N, 4] that leave their ``widths`` x ``heights`` image by more than
    ``tolerance`` pixels on any side."""
    x, y, w, h = np.asarray(boxes, dtype=np.float64).T
    return (x < -tolerance) | (y < -tolerance) | (x + w > widths + tolerance) | (y + h > heights + tolerance)
