"""An LVIS results JSON read in blocks, validated, and kept as columns: memory bounded by the block size plus a
few dozen bytes per detection, however large the file (LVIS v1 val at 300 per image: 5.9M detections, ~2 GB).

The top-level array is cut into blocks of whole detections (a cut after a ``}`` that is followed by ``,`` and
``{``; a cut that is not between two top-level objects cannot decode, so the block is cut earlier or read
further) and each block is decoded by msgspec into typed records. Mask RLE counts go to a temporary spill file;
the evaluator reads back only the masks it needs (detections in an (image, category) with ground truth).
Everything is validated before any image is evaluated: not an array, truncated, not JSON, missing fields,
non-finite numbers, unknown images or categories, masks of the wrong size here; scores outside [0, 1], boxes
not finite or of size <= 0 and exact duplicates in ``validation`` (every evaluator goes through both).
"""

from __future__ import annotations

import os
import re
from itertools import chain
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple, Union

import msgspec
import numpy as np

from loce_cli.engine.evaluation.ground_truth import GroundTruth, _rle_counts
from loce_cli.errors import DataError

BLOCK_BYTES = 32 << 20
_CUT = re.compile(rb"\}\s*,\s*\{")
_WS = b" \t\r\n"
_NON_FINITE = re.compile(rb"[:,\[]\s*(NaN|-?Infinity)\b")
_HINT = "expected a JSON array [{image_id, category_id, bbox, score[, segmentation]}, ...]"


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


class Rle(msgspec.Struct):
    size: List[int]
    counts: Union[str, List[int]]


class Det(msgspec.Struct):
    """The record msgspec decodes each detection into (other keys are skipped): a typed RLE makes the usual
    case fast; polygons and uncompressed RLEs still decode (a list, or ``Rle.counts`` as a list)."""

    image_id: int
    category_id: int
    score: float
    bbox: Optional[List[float]] = None
    segmentation: Union[Rle, List[Any], None] = None


def _error_position(msg: str, first: int) -> str:
    """msgspec's ``$[i]`` paths made absolute (the detection's index in the file)."""
    return re.sub(r"\$\[(\d+)\]", lambda m: f"detection {first + int(m.group(1))}", msg)


def iter_blocks(path: Path, block_bytes: int = BLOCK_BYTES, record: type = None) -> Iterator[Tuple[int, list]]:
    """``(index of the first detection, decoded detections)`` for consecutive blocks of the top-level array
    (each detection decoded into ``record``, by default ``Det``).

    The buffer is one ``bytearray``: a block is decoded in place by turning the comma after its last detection
    into ``]`` (and then into ``[``, the opening of the next block), so no block is copied."""
    decoder = msgspec.json.Decoder(List[record or Det])
    with open(path, "rb") as f:
        buf = bytearray(f.read(block_bytes))
        start = len(buf) - len(buf.lstrip(_WS))
        if start == len(buf):
            raise DataError(f"{path} is empty", _HINT)
        if buf[start] != ord("["):
            raise DataError(f"{path} is not an LVIS results list (it does not start with '[')", _HINT)
        first, consumed, eof = 0, 0, False
        while True:
            if start:
                consumed += start
                del buf[:start]
                start = 0
            while not eof and len(buf) < block_bytes:
                more = f.read(block_bytes)
                eof = not more
                buf += more
            items, cut = (None, -1) if eof else _decode_before_last_cut(decoder, buf, first, path, consumed)
            if items is None and not eof:
                more = f.read(block_bytes)  # no usable cut yet (one huge detection?): read further
                eof = not more
                buf += more
                continue
            if items is None:  # the rest of the file: detections and the closing bracket
                end = len(buf.rstrip(_WS))
                if not end or buf[end - 1] != ord("]"):
                    raise DataError(f"{path} is not valid JSON: it stops after {consumed + len(buf):,} bytes without "
                                    "the closing ']'", "the file is truncated; write it again")
                with memoryview(buf) as view:
                    items = _decode(decoder, view[:end], first, path, consumed)
                if items:
                    yield first, items
                return
            yield first, items
            first += len(items)
            buf[cut] = ord("[")
            start = cut


def _decode_before_last_cut(decoder, buf: bytearray, first: int, path: Path, consumed: int, tries: int = 3):
    """Decode the detections before the last cut point of ``buf`` that gives valid JSON: ``(items, position of
    the comma after them)``, or ``(None, -1)`` when none of the last ``tries`` cut points does. A record that
    does not validate, or a NaN, is an error at once (reading further could not fix it)."""
    base = max(0, len(buf) - (1 << 20))
    cuts = [m.start() for m in _CUT.finditer(buf, base)][-tries:]
    for cut in reversed(cuts):
        comma = buf.index(b",", cut)
        buf[comma] = ord("]")
        try:
            with memoryview(buf) as view:
                items = decoder.decode(view[:comma + 1])
            return items, comma
        except msgspec.ValidationError:
            with memoryview(buf) as view:
                _decode(decoder, view[:comma + 1], first, path, consumed)  # raises the message
        except msgspec.DecodeError:
            _refuse_non_finite(buf[:comma + 1], path, consumed)
        finally:
            buf[comma] = ord(",")
    return None, -1


def _refuse_non_finite(raw: bytes, path: Path, consumed: int) -> None:
    if _NON_FINITE.search(raw):
        from loce_cli.engine.evaluation.validation import scan_non_finite

        first, count = scan_non_finite(path)
        raise DataError(f"{path}: {count:,} non-finite number{'s' if count > 1 else ''} (NaN or Infinity) (the "
                        f"first: detection {first})", "scores and boxes must be finite numbers; fix the model output")


def _decode(decoder, raw, first: int, path: Path, consumed: int) -> list:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as e:
        raise DataError(f"{path}: {_error_position(str(e), first)}", _HINT) from None
    except msgspec.DecodeError as e:
        _refuse_non_finite(raw, path, consumed)
        raise DataError(f"{path} is not valid JSON after byte {consumed:,} ({e})",
                        "the file may be truncated or corrupted; write it again") from None


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
    imgs, cats, scores, boxes, areas = [], [], [], [], []
    spill = RleSpill(spill_dir) if with_masks else None
    has_box: Optional[bool] = None
    bad_img = bad_cat = bad_size = 0
    first_img = first_cat = first_size = None  # (file position, what) of the first offender of each kind
    try:
        for first, items in iter_blocks(path):
            n = len(items)
            img_id = np.fromiter((d.image_id for d in items), np.int64, n)
            cat_id = np.fromiter((d.category_id for d in items), np.int64, n)
            img, cat = gt.image_index(img_id), gt.cat_index(cat_id)
            bad_img += int((img < 0).sum())
            bad_cat += int((cat < 0).sum())
            if first_img is None and (img < 0).any():
                k = int(np.argmax(img < 0))
                first_img = (first + k, f"image_id {int(img_id[k])}")
            if first_cat is None and (cat < 0).any():
                k = int(np.argmax(cat < 0))
                first_cat = (first + k, f"category_id {int(cat_id[k])}")
            block_has = [d.bbox is not None for d in items]
            if has_box is None:
                has_box = block_has[0]
            if any(b != has_box for b in block_has):
                k = next(i for i, b in enumerate(block_has) if b != has_box)
                raise DataError(f"{path}: detection {first + k} {'lacks' if has_box else 'has'} a bbox unlike "
                                "detection 0", "give every detection a bbox, or none")
            if keep is not None:  # only the chosen detections are kept
                lo, hi = np.searchsorted(keep, [first, first + n])
                sel = keep[lo:hi] - first
            else:
                sel = slice(None)
            if has_box:
                if any(len(d.bbox) != 4 for d in items):
                    k = next(i for i, d in enumerate(items) if len(d.bbox) != 4)
                    raise DataError(f"{path}: detection {first + k} has a bbox of {len(items[k].bbox)} numbers",
                                    "bbox is [x, y, width, height]")
                box = np.fromiter(chain.from_iterable(d.bbox for d in items), np.float64, 4 * n).reshape(n, 4)
                boxes.append(box[sel])
            imgs.append(img.astype(np.int32)[sel])
            cats.append(cat.astype(np.int32)[sel])
            scores.append(np.fromiter((d.score for d in items), np.float64, n)[sel])
            if with_masks:
                counts, wrong = _block_masks(items, img, gt, first, path)
                bad_size += int(wrong.sum())
                if first_size is None and wrong.any():
                    k = int(np.argmax(wrong))
                    first_size = (first + k, f"image_id {int(img_id[k])} is {int(gt.heights[img[k]])}x"
                                             f"{int(gt.widths[img[k]])}")
                if keep is not None:
                    counts, img = [counts[i] for i in sel.tolist()], img[sel]
                spill.append(counts)
                if not has_box:
                    areas.append(_mask_areas(counts, img, gt))
            del items
        if not scores:
            raise DataError(f"{path} holds no detections", "nothing to evaluate; check the model or the score "
                                                           "threshold")
        if bad_img or bad_cat:
            k, what = first_img or first_cat
            raise DataError(f"{path} does not match {gt.path}: {bad_img:,} detections for unknown images, "
                            f"{bad_cat:,} for unknown categories (the first: detection {k}, {what})",
                            "evaluate against the annotation file the results were made for")
        if bad_size:
            k, what = first_size
            raise DataError(f"{path}: {bad_size:,} masks differ in size from their image (the first: detection {k}; "
                            f"{what})", "an RLE's size is [image height, width]")
    except BaseException:
        if spill is not None:
            spill.close()
        raise
    if spill is not None:
        spill.finish()
    dets = Detections(np.concatenate(imgs), np.concatenate(cats), np.concatenate(scores),
                      np.concatenate(boxes) if has_box else None,
                      np.concatenate(areas) if (with_masks and not has_box) else None, spill)
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
    for first, items in iter_blocks(Path(path), record=_Scored):
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


class _Scored(msgspec.Struct):
    image_id: int
    category_id: int
    score: float


def validate_columns(path: Path, gt: GroundTruth, dets: Detections) -> None:
    """The column checks every evaluator's input passes (:mod:`~loce_cli.engine.evaluation.validation`)."""
    from loce_cli.engine.evaluation import validation

    validation.check_scores(path, gt, dets.img, dets.cat, dets.score)
    validation.check_boxes(path, gt, dets.img, dets.cat, dets.box)
    validation.check_duplicates(path, gt, dets.img, dets.cat, dets.score, dets.box, dets.rle)


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
                counts.append(_rle_counts(as_dict, h, w))
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
    from pycocotools import mask as mask_utils

    h, w = gt.heights[img.clip(0)], gt.widths[img.clip(0)]
    rles = [{"size": [int(a), int(b)], "counts": c} for a, b, c in zip(h.tolist(), w.tolist(), counts)]
    return np.asarray(mask_utils.area(rles), dtype=np.float64).reshape(len(rles))
