"""Calibration by frequency group, at IoU 0.5 under LVIS's rules: a kept, counted detection (not ignored) is right
when it is a true positive. Per group of the detection's class: the mean score of the true and of the false
positives, the expected calibration error over 10 equal-width score bins (the count-weighted mean of |fraction
right - mean score| per bin), the reliability curve (each bin's mean score against its fraction right), and per
class the paper's indicator, its detections' mean score, beside how often they are right."""

from __future__ import annotations

from typing import Dict, List

import numpy as np

from loce_cli.engine.analysis.matching import IGNORED, TP, Matched

BINS = 10


def _mean(x: np.ndarray):
    return float(x.mean()) if x.size else None


def calibration_of(score: np.ndarray, right: np.ndarray) -> dict:
    """Mean scores, ECE and the reliability bins of one set of detections."""
    b = np.minimum((score * BINS).astype(np.int64), BINS - 1)
    count = np.bincount(b, minlength=BINS)
    s_sum = np.bincount(b, weights=score, minlength=BINS)
    r_sum = np.bincount(b, weights=right.astype(np.float64), minlength=BINS)
    nz = count > 0
    ece = float((np.abs(r_sum[nz] - s_sum[nz])).sum() / count.sum()) if count.sum() else None
    bins = [{"lo": i / BINS, "hi": (i + 1) / BINS, "count": int(count[i]),
             "mean_score": float(s_sum[i] / count[i]) if count[i] else None,
             "fraction_right": float(r_sum[i] / count[i]) if count[i] else None} for i in range(BINS)]
    return {"detections": int(score.size), "tp": int(right.sum()), "fp": int((~right).sum()),
            "tp_mean_score": _mean(score[right]), "fp_mean_score": _mean(score[~right]), "ece": ece, "bins": bins}


def calibration(m: Matched, groups: np.ndarray, categories: List[dict]) -> Dict[str, dict]:
    """``{"all"|"r"|"c"|"f": calibration_of(...) + {"classes": [{name, mean_score, fraction_right, detections}]}}``."""
    counted = m.det_state != IGNORED
    cls, score, right = m.det_cls[counted], m.det_score[counted], m.det_state[counted] == TP
    k_all = groups.size
    n = np.bincount(cls, minlength=k_all)
    s = np.bincount(cls, weights=score, minlength=k_all)
    r = np.bincount(cls, weights=right.astype(np.float64), minlength=k_all)
    out: Dict[str, dict] = {"all": calibration_of(score, right)}
    for g in ("r", "c", "f"):
        sel = groups[cls] == g
        out[g] = calibration_of(score[sel], right[sel])
        out[g]["classes"] = [{"name": categories[k]["name"], "mean_score": float(s[k] / n[k]),
                              "fraction_right": float(r[k] / n[k]), "detections": int(n[k])}
                             for k in np.flatnonzero((groups == g) & (n > 0)).tolist()]
    return out
