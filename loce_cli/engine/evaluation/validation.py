"""The checks every evaluator's input passes before anything is evaluated (the streaming evaluator and the
official lvis API alike: the in-memory backend runs the streaming reader's validation first), on the column
arrays the reader (``results_reader``) builds, so memory stays bounded at the full LVIS val size.

Refused, each in one line naming the first offending detection (its position in the file, image and category)
and how many there are: scores that are not finite numbers in [0, 1], boxes with a non-finite number or a
negative width or height (0 stays legal, as in the official API: such a box has area 0 and is not counted),
exact duplicates (same image, category, score, box and mask), and (from the reader) unknown images or
categories, masks of another size than their image, NaN / Infinity literals.

Duplicates: one 64-bit hash per detection (8 bytes each, 47 MB at 5.9M detections), sorted; only when two are
equal is the order computed and the rows whose hashes collide compared exactly (columns, then the masks' RLE
bytes), so a hash collision never refuses a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from loce_cli.errors import DataError

_HINT_SCORE = "scores must be finite numbers in [0, 1] (a model's class probabilities); fix the model output"
_HINT_BOX = "bbox is [x, y, width, height] with finite numbers and width, height >= 0"
_HINT_DUP = "each detection must appear once; remove the repeated entries (a merge that wrote a shard twice?)"


def _who(gt, img: np.ndarray, cat: np.ndarray, k: int) -> str:
    return f"detection {k}: image {int(gt.img_ids[img[k]])}, category {int(gt.cat_ids[cat[k]])}"


def refuse(path: Path, bad: np.ndarray, what: str, hint: str, describe) -> None:
    """Raise the one-line error for the detections where ``bad`` is True (no-op when none is)."""
    count = int(np.count_nonzero(bad))
    if count:
        first = int(np.argmax(bad))
        raise DataError(f"{path}: {count:,} detection{'s' if count > 1 else ''} {what} (the first: "
                        f"{describe(first)})", hint)


def check_scores(path: Path, gt, img: np.ndarray, cat: np.ndarray, score: np.ndarray) -> None:
    bad = ~np.isfinite(score) | (score < 0) | (score > 1)
    refuse(path, bad, "have a score that is not a finite number in [0, 1]", _HINT_SCORE,
           lambda k: f"{_who(gt, img, cat, k)}, score {score[k]!r}")


def check_boxes(path: Path, gt, img: np.ndarray, cat: np.ndarray, box: Optional[np.ndarray]) -> None:
    if box is None:
        return
    bad = ~np.isfinite(box).all(axis=1)
    refuse(path, bad, "have a box with a non-finite number", _HINT_BOX,
           lambda k: f"{_who(gt, img, cat, k)}, bbox {box[k].tolist()}")
    bad = (box[:, 2] < 0) | (box[:, 3] < 0)  # 0 is legal LVIS output (a box clipped to an edge): area 0, dropped
    refuse(path, bad, "have a negative box width or height", _HINT_BOX,
           lambda k: f"{_who(gt, img, cat, k)}, bbox {box[k].tolist()}")


_M = np.uint64(0x9E3779B97F4A7C15)


def _mix(h: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Fold the 64-bit words ``v`` into the running hashes ``h`` (multiply-xorshift; wraps modulo 2^64)."""
    h ^= v
    h *= _M
    h ^= h >> np.uint64(29)
    return h


def _row_hashes(img, cat, score, box) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = (img.astype(np.uint64) << np.uint64(32)) | cat.astype(np.uint32).astype(np.uint64)
        h = _mix(h * _M, np.ascontiguousarray(score, np.float64).view(np.uint64))
        if box is not None:
            for j in range(4):
                h = _mix(h, np.ascontiguousarray(box[:, j], np.float64).view(np.uint64))
    return h


def check_duplicates(path: Path, gt, img: np.ndarray, cat: np.ndarray, score: np.ndarray,
                     box: Optional[np.ndarray], rle=None) -> None:
    """Refuse exact duplicates; ``rle`` (the reader's mask spill, or None) decides between candidates whose
    columns are equal but whose masks may differ."""
    n = score.shape[0]
    if n < 2 or (box is None and rle is None):  # neither boxes nor masks read: nothing tells detections apart
        return
    h = _row_hashes(img, cat, score, box)
    hs = np.sort(h)  # the usual case, no equal hashes, needs only this sort (cheaper than an argsort)
    if not (hs[1:] == hs[:-1]).any():
        return
    del hs
    order = np.argsort(h)
    hs = h[order]
    same = np.flatnonzero(hs[1:] == hs[:-1])  # positions in `order` whose next row has the same hash
    del hs
    a, b = order[same], order[same + 1]  # candidate pairs (b after a in hash order, both file positions)
    equal = (img[a] == img[b]) & (cat[a] == cat[b]) & (score[a] == score[b])
    if box is not None:
        equal &= (box[a] == box[b]).all(axis=1)
    a, b = a[equal], b[equal]
    if rle is not None and a.size:
        keep = np.array([x == y for x, y in zip(rle.read(a), rle.read(b))], dtype=bool)
        a, b = a[keep], b[keep]
    if a.size == 0:
        return
    later = np.maximum(a, b)  # each repeat counted once: the later copy of every equal pair
    bad = np.zeros(n, dtype=bool)
    bad[later] = True
    first = int(np.argmax(bad))
    pair = np.flatnonzero(later == first)[0]
    earlier = int(min(a[pair], b[pair]))
    refuse(path, bad, "repeat an earlier detection exactly", _HINT_DUP,
           lambda k: f"{_who(gt, img, cat, k)}, the same as detection {earlier}")
