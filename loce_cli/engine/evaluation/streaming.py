"""The streaming LVIS evaluator: the official API's numbers (same AP, AP50, AP75, APs/m/l, APr/c/f and per-class
AP) with memory that grows by a few dozen bytes per detection instead of a Python dict per detection.

Steps: the ground truth as columns (``ground_truth``); the results read in blocks and validated
(``results_reader``); per image the top ``max_dets`` by score (``LVISResults.limit_dets_per_image``); detections
with area <= 0 dropped (``get_ann_ids``' area filter); the federated rule (a detection counts only for the
image's positive and negative categories); chunks of images matched in worker processes (``matching``), each
returning two bit masks per detection; the accumulation per category (``accumulate``).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.engine.evaluation.accumulate import accumulate, class_aps, summarize
from loce_cli.engine.evaluation.ground_truth import GroundTruth, load_ground_truth, sorted_member
from loce_cli.engine.evaluation.matching import AREA_RNGS, match_groups, warm_up
from loce_cli.engine.evaluation.results_reader import Detections, read_results
from loce_cli.errors import DataError

CHUNK_DETECTIONS = 50_000


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def select_top(score: np.ndarray, img: np.ndarray, max_dets: int) -> np.ndarray:
    """File positions of the detections LVISResults keeps: per image the ``max_dets`` highest scores, equal
    scores in file order (Python's stable sort), returned in file order."""
    n = score.shape[0]
    order = np.lexsort((np.arange(n), -score, img))
    img_sorted = img[order]
    rank = np.arange(n) - np.searchsorted(img_sorted, img_sorted, side="left")
    return np.sort(order[rank < max_dets])


class _Job:
    """What every chunk needs (set before the worker processes fork; read there, never written)."""

    def __init__(self, gt: GroundTruth, dets: Detections, metric: str, rows: np.ndarray, area: np.ndarray):
        k = gt.num_cats
        self.gt, self.dets, self.metric = gt, dets, metric
        self.rows = rows  # file positions of the evaluated detections, by (image, category, -score, position)
        self.area = area[rows]
        self.codes = dets.img[rows].astype(np.int64) * k + dets.cat[rows]
        self.nel = sorted_member(self.codes, gt.nel_codes)
        self.gt_codes = gt.ann_img.astype(np.int64) * k + gt.ann_cat
        self.box = dets.box[rows] if dets.box is not None else None


_JOB: Optional[_Job] = None


def _chunk(bounds: Tuple[int, int]) -> Tuple[int, np.ndarray, np.ndarray]:
    """Match the detections ``rows[lo:hi]`` (whole images): ``(lo, tp, fp)``."""
    job = _JOB
    lo, hi = bounds
    codes = job.codes[lo:hi]
    uniq, starts = np.unique(codes, return_index=True)
    ends = np.append(starts[1:], hi - lo)
    g_dt = np.stack([starts, ends], axis=1)
    g_gt = np.stack([np.searchsorted(job.gt_codes, uniq, "left"), np.searchsorted(job.gt_codes, uniq, "right")],
                    axis=1)
    gt = job.gt
    if job.metric == "bbox":
        return (lo, *match_groups(g_dt, g_gt, job.box[lo:hi], job.area[lo:hi], job.nel[lo:hi], gt.ann_box,
                                  gt.ann_area, gt.ann_ignore, gt_crowd=gt.ann_crowd))
    iou_flat, iou_off = _mask_ious(job, lo, g_dt, g_gt)
    return (lo, *match_groups(g_dt, g_gt, np.zeros((hi - lo, 4)), job.area[lo:hi], job.nel[lo:hi], gt.ann_box,
                              gt.ann_area, gt.ann_ignore, iou_flat, iou_off, gt.ann_crowd))


def _mask_ious(job: _Job, lo: int, g_dt: np.ndarray, g_gt: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Mask IoUs (pycocotools, as the official API) of the groups that have ground truth, flattened."""
    gt, dets = job.gt, job.dets
    nd = g_dt[:, 1] - g_dt[:, 0]
    ng = g_gt[:, 1] - g_gt[:, 0]
    need = np.flatnonzero(ng > 0)
    sizes = nd * ng
    iou_off = np.zeros(g_dt.shape[0], np.int64)
    iou_off[need] = np.concatenate([[0], np.cumsum(sizes[need])[:-1]]) if need.size else []
    flat = np.zeros(int(sizes[need].sum()), np.float64)
    if not need.size:
        return flat, iou_off
    det_local = np.concatenate([np.arange(g_dt[g, 0], g_dt[g, 1]) for g in need])
    counts = dets.rle.read(job.rows[lo + det_local])
    at = 0
    for g in need.tolist():
        img = dets.img[job.rows[lo + g_dt[g, 0]]]
        size = [int(gt.heights[img]), int(gt.widths[img])]
        dt_rles = [{"size": size, "counts": c} for c in counts[at:at + nd[g]]]
        at += nd[g]
        gt_rles = [{"size": size, "counts": gt.ann_rle[j]} for j in range(g_gt[g, 0], g_gt[g, 1])]
        crowd = [int(c) for c in gt.ann_crowd[g_gt[g, 0]:g_gt[g, 1]]]
        ious = np.asarray(mask_utils.iou(dt_rles, gt_rles, crowd), dtype=np.float64)
        flat[iou_off[g]:iou_off[g] + sizes[g]] = ious.reshape(-1)
    return flat, iou_off


def _chunks(img_sorted: np.ndarray, target: int) -> List[Tuple[int, int]]:
    """Ranges of about ``target`` detections that never split an image."""
    n = img_sorted.shape[0]
    out, lo = [], 0
    while lo < n:
        hi = min(n, lo + target)
        if hi < n:
            hi = int(np.searchsorted(img_sorted, img_sorted[hi - 1], side="right"))
        out.append((lo, hi))
        lo = hi
    return out


def num_gt(gt: GroundTruth) -> np.ndarray:
    """``[K, A]`` non-ignored ground truths per category and area range (``lo <= area <= hi``)."""
    out = np.zeros((gt.num_cats, AREA_RNGS.shape[0]), np.int64)
    for a, (lo, hi) in enumerate(AREA_RNGS):
        ok = ~gt.ann_ignore & (gt.ann_area >= lo) & (gt.ann_area <= hi)
        out[:, a] = np.bincount(gt.ann_cat[ok], minlength=gt.num_cats)
    return out


def _evaluate_metric(gt: GroundTruth, dets: Detections, kept: np.ndarray, metric: str, workers: int,
                     say: Callable[[str], None]):
    rows, tp, fp = match(gt, dets, kept, metric, workers, say)
    say(f"accumulating {metric}")
    precision = accumulate(dets.cat[rows], dets.score[rows], dets.img[rows], rows, tp, fp, num_gt(gt))
    return summarize(precision, gt.freq_groups()), class_aps(precision)


def match(gt: GroundTruth, dets: Detections, kept: np.ndarray, metric: str, workers: int,
          say: Callable[[str], None]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match the detections at positions ``kept`` (LVIS's area and federated filters applied here):
    ``(rows, tp, fp)``, the evaluated positions and their ``[N, A]`` true / false positive bit masks."""
    global _JOB
    if dets.box is not None:
        area = dets.box[:, 2] * dets.box[:, 3]  # LVISResults: with boxes, a detection's area is w * h (segm too)
    else:
        area = dets.mask_area
    with np.errstate(invalid="ignore"):
        rows = kept[(area[kept] > 0) & (area[kept] < math.inf)]
    codes = dets.img[rows].astype(np.int64) * gt.num_cats + dets.cat[rows]
    rows = rows[gt.verified(codes)]
    rows = rows[np.lexsort((rows, -dets.score[rows], dets.cat[rows], dets.img[rows]))]
    _JOB = _Job(gt, dets, metric, rows, area)
    tp = np.zeros((rows.size, AREA_RNGS.shape[0]), np.uint16)
    fp = np.zeros_like(tp)
    tasks = _chunks(dets.img[rows], CHUNK_DETECTIONS)
    say(f"matching {metric}: {rows.size:,} detections of {gt.num_images:,} images in {len(tasks)} chunks, "
        f"{workers} worker{'s' if workers > 1 else ''}")
    try:
        if workers > 1 and len(tasks) > 1:
            with mp.get_context("fork").Pool(min(workers, len(tasks))) as pool:
                for lo, t, f in pool.imap_unordered(_chunk, tasks):
                    tp[lo:lo + t.shape[0]], fp[lo:lo + f.shape[0]] = t, f
        else:
            for task in tasks:
                lo, t, f = _chunk(task)
                tp[lo:lo + t.shape[0]], fp[lo:lo + f.shape[0]] = t, f
    finally:
        _JOB = None
    return rows, tp, fp


def evaluate_streaming(results_file, ann_file, metrics: Sequence[str], max_dets: int = 300,
                       workers: Optional[int] = None, say: Optional[Callable[[str], None]] = None
                       ) -> Dict[str, Tuple[Dict[str, float], List[Optional[float]], List[dict]]]:
    """``{metric: (summary, per-category AP in category-id order, category records)}``."""
    say = say or (lambda _m: None)
    workers = workers or default_workers()
    with_masks = "segm" in metrics
    say(f"loading {os.path.basename(str(ann_file))}")
    gt = load_ground_truth(ann_file, with_masks)
    dets = read_results(results_file, gt, with_masks, say=say)
    try:
        if "bbox" in metrics and dets.box is None:
            raise DataError(f"{results_file} has no boxes", "pass --metric segm for mask-only results")
        warm_up()  # compile once here, before any fork
        kept = select_top(dets.score, dets.img, max_dets)
        return {m: (*_evaluate_metric(gt, dets, kept, m, workers, say), gt.categories) for m in metrics}
    finally:
        dets.close()
