"""Precision per (IoU threshold, recall threshold, category, area range) and the LVIS summary, computed as
``lvis.LVISEval.accumulate`` / ``summarize`` do, from two bit masks per detection instead of per-image records."""

from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from loce_cli.engine.evaluation.matching import AREA_LABELS, IOU_THRS, REC_THRS


def accumulate(cat: np.ndarray, score: np.ndarray, img: np.ndarray, pos: np.ndarray, tp: np.ndarray,
               fp: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
    """``precision [T, R, K, A]`` (-1 where a category has no non-ignored ground truth in that area range).

    Per category the detections are ranked by score; equal scores keep the order LVIS's stable sorts give them
    (image id, then position in the results file). ``tp`` / ``fp`` are ``[N, A]`` bit masks over thresholds,
    ``num_gt`` ``[K, A]`` the non-ignored ground truths."""
    num_thr, num_rec = IOU_THRS.size, REC_THRS.size
    num_cats, num_area = num_gt.shape
    precision = -np.ones((num_thr, num_rec, num_cats, num_area))
    order = np.lexsort((pos, img, -score, cat))
    bounds = np.searchsorted(cat[order], np.arange(num_cats + 1))
    shifts = np.arange(num_thr, dtype=np.uint16)[:, None]
    eps = np.spacing(1)
    for k in np.flatnonzero(num_gt.max(axis=1) > 0):
        rows = order[bounds[k]:bounds[k + 1]]
        n = rows.size
        for a in range(num_area):
            ng = num_gt[k, a]
            if ng == 0:
                continue
            if n == 0:
                precision[:, :, k, a] = 0.0
                continue
            tps = (tp[rows, a][None, :] >> shifts) & 1
            fps = (fp[rows, a][None, :] >> shifts) & 1
            tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
            fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
            rc = tp_sum / ng
            pr = tp_sum / (fp_sum + tp_sum + eps)
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # the best precision at >= this recall
            for t in range(num_thr):
                at = np.searchsorted(rc[t], REC_THRS, side="left")
                precision[t, :, k, a] = np.where(at < n, pr[t, np.minimum(at, n - 1)], 0.0)
    return precision


def mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def summarize(precision: np.ndarray, freq_groups: List[np.ndarray]) -> Dict[str, float]:
    """AP, AP50, AP75, APs, APm, APl, APr, APc, APf (``LVISEval.summarize``'s AP entries)."""

    def ap(iou_thr: Optional[float] = None, area: str = "all", group: Optional[int] = None) -> float:
        aidx = [AREA_LABELS.index(area)]
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRS)[0]]
        s = s[:, :, freq_groups[group], aidx] if group is not None else s[:, :, :, aidx]
        return mean_valid(s)

    return {"AP": ap(), "AP50": ap(iou_thr=0.50), "AP75": ap(iou_thr=0.75), "APs": ap(area="small"),
            "APm": ap(area="medium"), "APl": ap(area="large"), "APr": ap(group=0), "APc": ap(group=1),
            "APf": ap(group=2)}


def class_aps(precision: np.ndarray) -> List[Optional[float]]:
    """Each category's AP over IoU and recall thresholds (area all), None where it has none."""
    out: List[Optional[float]] = []
    for k in range(precision.shape[2]):
        p = precision[:, :, k, 0]
        p = p[p > -1]
        out.append(float(p.mean()) if p.size else None)
    return out
