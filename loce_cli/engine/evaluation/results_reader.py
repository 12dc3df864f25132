"""An LVIS results JSON read in blocks, validated, and kept as columns: memory bounded by the block size plus a
few dozen bytes per detection, however large the file (LVIS v1 val at 300 per image: 5.9M detections, ~2 GB).

The top-level array is cut into blocks of whole detections, each decoded by msgspec into typed records
(``results_blocks``). Mask RLE counts go to a temporary spill file; the evaluator reads back only the masks it
needs (detections in an (image, category) with ground truth). Everything is validated before any image is
evaluated: not an array, truncated, not JSON, missing fields, non-finite numbers (``results_blocks``); unknown
images or categories, masks of the wrong size (here); scores outside [0, 1], boxes not finite or of size < 0 and
exact duplicates (``validation``). Every evaluator goes through all three.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.engine.evaluation.ground_truth import GroundTruth, rle_counts
from loce_cli.engine.evaluation.results_blocks import Scored, iter_blocks
from loce_cli.engine.evaluation.validation import check_boxes, check_duplicates, check_scores
from loce_cli.errors import DataError


class RleSpill:
    """Compressed RLE counts of every detection, concatenated in a temporary file (deleted by ``close``)."""

    def __init__(self, directory: Optional[str] = None):
        fd, self.path = tempfile.mkstemp(prefix="loce-eval-rle-", suffix=".bin", dir=directory)
        self._f = os.fdopen(fd, "wb")
        self._chunks_off: List[np.ndarray] = []
        self._chunks_len: List[np.ndarray] = []
        self._size = 0
        self.offsets: Optional[np.ndarray] = None
        self.lengths: Optional[np.ndarray] = None
        self._fd: Optional[int] = None

    def append(self, counts: List[bytes]) -> None:
        lens = np.fromiter((len(c) for c in counts), np.int64, len(counts))
        offs = np.empty_like(lens)
        if lens.size:
            offs[0] = self._size
            np.cumsum(lens[:-1], out=offs[1:])
            offs[1:] += self._size
        self._f.write(b"".join(counts))
        self._size += int(lens.sum())
        self._chunks_off.append(offs)
        self._chunks_len.append(lens)

    def finish(self) -> None:
        self._f.close()
        self.offsets = np.concatenate(self._chunks_off) if self._chunks_off else np.zeros(0, np.int64)
        self.lengths = np.concatenate(self._chunks_len) if self._chunks_len else np.zeros(0, np.int64)
        self._chunks_off, self._chunks_len = [], []

    def read(self, indices: np.ndarray) -> List[bytes]:
        """The counts of detections ``indices`` (file order positions), in that order."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size == 0:
            return []
        offs, lens = self.offsets[indices], self.lengths[indices]
        lo, hi = int(offs.min()), int((offs + lens).max())
        if hi - lo <= 4 * int(lens.sum()) + (1 << 20):  # near one another (results sorted by image): one read
            buf = os.pread(self._fd, hi - lo, lo)
            return [buf[o - lo:o - lo + n] for o, n in zip(offs.tolist(), lens.tolist())]
        return [os.pread(self._fd, n, o) for o, n in zip(offs.tolist(), lens.tolist())]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._f.closed:
            self._f.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __getstate__(self):  # worker processes reopen the file by path
        state = dict(self.__dict__)
        state["_fd"], state["_f"] = None, None
        return state


@dataclass
class Detections:
    """The results file as columns in file order (index = position in the file)."""

    img: np.ndarray  # [N] int32 image index into GroundTruth.img_ids
    cat: np.ndarray  # [N] int32 category index
    score: np.ndarray  # [N] float64
    box: Optional[np.ndarray]  # [N, 4] float64 xywh; None when the file has no boxes
    mask_area: Optional[np.ndarray]  # [N] float64 mask areas (masks without boxes only: LVIS's area rule)
    rle: Optional[RleSpill]  # masks, when they were asked for

    @property
    def size(self) -> int:
        return int(self.score.shape[0])

    def close(self) -> None:
        if self.rle is not None:
            self.rle.close()


@dataclass
class _Columns:
    """The columns of the detections kept so far, block by block, and the first offender of each kind that is
    reported once the whole file is read (unknown images, unknown categories, masks of the wrong size)."""

    path: Path
    gt: GroundTruth
    spill: Optional[RleSpill]  # masks, when they were asked for
    keep: Optional[np.ndarray]  # sorted file positions to keep (None: every detection)
    has_box: Optional[bool] = None
    parts: dict = field(default_factory=lambda: dict(img=[], cat=[], score=[], box=[], area=[]))
    bad: dict = field(default_factory=lambda: dict(img=0, cat=0, size=0))
    first_bad: dict = field(default_factory=dict)  # kind -> (file position, what) of the first offender

    def add(self, first: int, items: list) -> None:
        """Check one block (ids, bbox presence and length, masks) and keep its chosen detections' columns."""
        n, gt = len(items), self.gt
        img_id = np.fromiter((d.image_id for d in items), np.int64, n)
        cat_id = np.fromiter((d.category_id for d in items), np.int64, n)
        img, cat = gt.image_index(img_id), gt.cat_index(cat_id)
        self._count("img", first, img < 0, lambda k: f"image_id {int(img_id[k])}")
        self._count("cat", first, cat < 0, lambda k: f"category_id {int(cat_id[k])}")
        self._check_bbox_presence(first, items)
        if self.keep is not None:  # only the chosen detections are kept
            lo, hi = np.searchsorted(self.keep, [first, first + n])
            sel = self.keep[lo:hi] - first
        else:
            sel = slice(None)
        if self.has_box:
            if any(len(d.bbox) != 4 for d in items):
                k = next(i for i, d in enumerate(items) if len(d.bbox) != 4)
                raise DataError(f"{self.path}: detection {first + k} has a bbox of {len(items[k].bbox)} numbers",
                                "bbox is [x, y, width, height]")
            box = np.fromiter(chain.from_iterable(d.bbox for d in items), np.float64, 4 * n).reshape(n, 4)
            self.parts["box"].append(box[sel])
        self.parts["img"].append(img.astype(np.int32)[sel])
        self.parts["cat"].append(cat.astype(np.int32)[sel])
        self.parts["score"].append(np.fromiter((d.score for d in items), np.float64, n)[sel])
        if self.spill is not None:
            self._add_masks(first, items, img_id, img, sel)

    def _count(self, kind: str, first: int, wrong: np.ndarray, what: Callable[[int], str]) -> None:
        self.bad[kind] += int(wrong.sum())
        if kind not in self.first_bad and wrong.any():
            k = int(np.argmax(wrong))
            self.first_bad[kind] = (first + k, what(k))

    def _check_bbox_presence(self, first: int, items: list) -> None:
        block_has = [d.bbox is not None for d in items]
        if self.has_box is None:
            self.has_box = block_has[0]
        if any(b != self.has_box for b in block_has):
            k = next(i for i, b in enumerate(block_has) if b != self.has_box)
            raise DataError(f"{self.path}: detection {first + k} {'lacks' if self.has_box else 'has'} a bbox unlike "
                            "detection 0", "give every detection a bbox, or none")

    def _add_masks(self, first: int, items: list, img_id: np.ndarray, img: np.ndarray, sel) -> None:
        gt = self.gt
        counts, wrong = _block_masks(items, img, gt, first, self.path)
        self._count("size", first, wrong, lambda k: f"image_id {int(img_id[k])} is {int(gt.heights[img[k]])}x"
                                                    f"{int(gt.widths[img[k]])}")
        if self.keep is not None:
            counts, img = [counts[i] for i in sel.tolist()], img[sel]
        self.spill.append(counts)
        if not self.has_box:
            self.parts["area"].append(_mask_areas(counts, img, gt))

    def refuse_offenders(self) -> None:
        """The errors only the whole file shows: no detections, unknown ids, masks of the wrong size."""
        path, bad = self.path, self.bad
        if not self.parts["score"]:
            raise DataError(f"{path} holds no detections", "nothing to evaluate; check the model or the score "
                                                           "threshold")
        if bad["img"] or bad["cat"]:
            k, what = self.first_bad.get("img") or self.first_bad["cat"]
            raise DataError(f"{path} does not match {self.gt.path}: {bad['img']:,} detections for unknown images, "
                            f"{bad['cat']:,} for unknown categories (the first: detection {k}, {what})",
                            "evaluate against the annotation file the results were made for")
        if bad["size"]:
            k, what = self.first_bad["size"]
            raise DataError(f"{path}: {bad['size']:,} masks differ in size from their image (the first: detection "
                            f"{k}; {what})", "an RLE's size is [image height, width]")

    def detections(self) -> Detections:
        p = self.parts
        return Detections(np.concatenate(p["img"]), np.concatenate(p["cat"]), np.concatenate(p["score"]),
                          np.concatenate(p["box"]) if self.has_box else None,
                          np.concatenate(p["area"]) if (self.spill is not None and not self.has_box) else None,
                          self.spill)


def read_results(path: Path, gt: GroundTruth, with_masks: bool, spill_dir: Optional[str] = None,
                 say: Optional[Callable[[str], None]] = None, keep: Optional[np.ndarray] = None) -> Detections:
    """Read and validate ``path`` against ``gt``; raises ``DataError`` before anything is evaluated. With
    ``keep`` (sorted file positions) only those detections are kept, in file order (the columns' index is then
    the rank in ``keep``): every detection passes the per-block checks (ids, bbox length, mask sizes), the
    column checks (scores, boxes, duplicates) see the kept ones."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file {path} does not exist", "pass an LVIS results JSON")
    say = say or (lambda _m: None)
    say(f"reading {path.name} ({path.stat().st_size / 1e6:,.0f} MB, streaming)")
    spill = RleSpill(spill_dir) if with_masks else None
    columns = _Columns(path, gt, spill, keep)
    try:
        for first, items in iter_blocks(path):
            columns.add(first, items)
            del items
        columns.refuse_offenders()
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    if spill is not None:
        spill.finish()
    dets = columns.detections()
    try:
        validate_columns(path, gt, dets)
    except BaseException:
        dets.close()
        raise
    return dets


def scan_protocols(path: Path, gt: GroundTruth, selectors: dict,
                   say: Optional[Callable[[str], None]] = None) -> np.ndarray:
    """One light pass over ``path`` (image, category and score only): feeds each block to ``selectors`` (name ->
    ``(TopKPerGroup, "image" | "category")``) and returns the number of detections per image. Unknown image or
    category ids are left to ``read_results`` to report."""
    say = say or (lambda _m: None)
    say(f"choosing detections in {Path(path).name} (streaming, {len(selectors)} selection"
        f"{'s' if len(selectors) > 1 else ''})")
    per_image = np.zeros(gt.num_images, np.int64)
    for first, items in iter_blocks(Path(path), record=Scored):
        n = len(items)
        img = gt.image_index(np.fromiter((d.image_id for d in items), np.int64, n))
        cat = gt.cat_index(np.fromiter((d.category_id for d in items), np.int64, n))
        score = np.fromiter((d.score for d in items), np.float64, n)
        img, cat = img.clip(0).astype(np.int32), cat.clip(0).astype(np.int32)
        per_image += np.bincount(img, minlength=gt.num_images)
        for top, by in selectors.values():
            top.add(img if by == "image" else cat, score, first)
        del items
    return per_image


def validate_columns(path: Path, gt: GroundTruth, dets: Detections) -> None:
    """The column checks every evaluator's input passes (:mod:`~loce_cli.engine.evaluation.validation`)."""
    check_scores(path, gt, dets.img, dets.cat, dets.score)
    check_boxes(path, gt, dets.img, dets.cat, dets.box)
    check_duplicates(path, gt, dets.img, dets.cat, dets.score, dets.box, dets.rle)


def _block_masks(items: list, img: np.ndarray, gt: GroundTruth, first: int,
                 path: Path) -> Tuple[List[bytes], np.ndarray]:
    """Compressed counts of each detection's mask, and which have a size other than their image's."""
    segs = [d.segmentation for d in items]
    missing = [i for i, s in enumerate(segs) if s is None]
    if missing:
        raise DataError(f"{path} has detections without 'segmentation' (the first: detection {first + missing[0]})",
                        "pass --metric bbox for box-only results")
    try:  # the usual case: compressed RLEs
        counts = [s.counts.encode("ascii") for s in segs]
        sizes = np.fromiter(chain.from_iterable(s.size for s in segs), np.int64, 2 * len(segs)).reshape(-1, 2)
    except (AttributeError, ValueError, UnicodeEncodeError):
        counts, sizes = [], np.zeros((len(segs), 2), np.int64)
        for i, s in enumerate(segs):
            h, w = (int(gt.heights[img[i]]), int(gt.widths[img[i]])) if img[i] >= 0 else (0, 0)
            size = list(s.size) if hasattr(s, "size") else [h, w]
            try:
                as_dict = {"size": size, "counts": s.counts} if hasattr(s, "counts") else s
                counts.append(rle_counts(as_dict, h, w))
            except (TypeError, ValueError, KeyError, UnicodeEncodeError):
                raise DataError(f"{path}: detection {first + i} has a segmentation that is neither an RLE nor "
                                "polygons", "segmentation is {size: [h, w], counts: str}") from None
            if len(size) != 2:
                raise DataError(f"{path}: detection {first + i} has an RLE size of {len(size)} numbers",
                                "an RLE's size is [height, width]")
            sizes[i] = size
    known = img >= 0
    wrong = known & ((sizes[:, 0] != gt.heights[img.clip(0)]) | (sizes[:, 1] != gt.widths[img.clip(0)]))
    return counts, wrong


def _mask_areas(counts: List[bytes], img: np.ndarray, gt: GroundTruth) -> np.ndarray:
    h, w = gt.heights[img.clip(0)], gt.widths[img.clip(0)]
    rles = [{"size": [int(a), int(b)], "counts": c} for a, b, c in zip(h.tolist(), w.tolist(), counts)]
    return np.asarray(mask_utils.area(rles), dtype=np.float64).reshape(len(rles))
