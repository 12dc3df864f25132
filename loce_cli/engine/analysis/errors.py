"""TIDE's error decomposition per frequency group: the AP50 each error type costs (the AP50 gained when every error
of that type is fixed and nothing else changes) and how many errors of each type there are.

Fixes (TIDE's oracles): a classification error becomes a true positive of its object's class, a localisation error
one of its own class (only the highest-scoring fixable error aimed at an object; the others are dropped); a duplicate,
background or both error is dropped; a missed object leaves the ground truth. AP50 is LVIS's: per class, precision at
101 recall points (101-point interpolation), classes without objects left out; a group's AP50 is the mean over its
classes. A detection's error counts in its class's group, a missed object in its own class's group. A fix may move a
detection to another group's class (a frequent class's detection on a rare object becomes a rare true positive):
the gain shows in the group that the fix helps.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from loce_cli.engine.analysis.matching import BKG, BOTH, CLS, DUPE, ERROR_TYPES, FP, IGNORED, LOC, TP, Matched, missed

RECALLS = np.linspace(0.0, 1.0, 101)


def class_ap(cls: np.ndarray, score: np.ndarray, tp: np.ndarray, npos: np.ndarray) -> np.ndarray:
    """[K] AP (101-point interpolated) of each class from its detections (order = ties' order) and object count;
    NaN where the class has no objects."""
    order = np.lexsort((np.arange(cls.size), -score, cls))
    return sorted_class_ap(cls[order], tp[order], npos)


def sorted_class_ap(cls: np.ndarray, tp: np.ndarray, npos: np.ndarray) -> np.ndarray:
    """``class_ap`` of points already sorted by class, then score (highest first), then ties' order."""
    k_all = npos.size
    aps = np.full(k_all, np.nan)
    bounds = np.searchsorted(cls, np.arange(k_all + 1))
    for k in np.flatnonzero(npos > 0).tolist():
        t = tp[bounds[k]:bounds[k + 1]]
        if not t.size:
            aps[k] = 0.0
            continue
        ctp = np.cumsum(t)
        rc = ctp / npos[k]
        pr = ctp / np.arange(1, t.size + 1)
        pr = np.maximum.accumulate(pr[::-1])[::-1]
        idx = np.searchsorted(rc, RECALLS, side="left")
        aps[k] = float(np.where(idx < t.size, pr[np.minimum(idx, t.size - 1)], 0.0).mean())
    return aps


def _points(m: Matched, fix: str, k_all: int):
    """Per kept detection: its class, whether it is a true positive and whether it still counts, and the per-class
    object counts, with every ``fix`` error fixed."""
    cls, tp = m.det_cls, m.det_state == TP
    keep = m.det_state != IGNORED
    npos = np.bincount(m.gt_cls[~m.gt_ignore], minlength=k_all).astype(np.float64)
    code = {"cls": CLS, "loc": LOC, "both": BOTH, "dupe": DUPE, "bkg": BKG}.get(fix)
    if fix == "miss":
        npos -= np.bincount(m.gt_cls[missed(m)], minlength=k_all)
    elif code is not None:
        hit = (m.det_state == FP) & (m.det_error == code)
        if code in (CLS, LOC):
            idx = np.flatnonzero(hit)
            tgt = m.det_target[idx]
            best = np.zeros(idx.size, bool)
            ok = tgt >= 0
            best[ok] = m.gt_best[tgt[ok]] == idx[ok]
            if code == CLS:
                cls = cls.copy()
                cls[idx[best]] = m.gt_cls[tgt[best]]
            tp = tp.copy()
            tp[idx[best]] = True
            keep = keep.copy()
            keep[idx[~best]] = False
        else:
            keep = keep & ~hit
    return cls, tp, keep, npos


def decompose(m: Matched, groups: np.ndarray) -> Dict[str, dict]:
    """``{"all"|"r"|"c"|"f": {"ap50": base AP50, "gain": {type: AP50 gained}, "count": {type: n}}}``."""
    k_all = groups.size
    order = np.lexsort((np.arange(m.det_cls.size), -m.det_score, m.det_cls))  # once: fixes mostly drop points

    def ap(fix: str) -> np.ndarray:
        cls, tp, keep, npos = _points(m, fix, k_all)
        if cls is m.det_cls:
            o = order[keep[order]]
        else:  # a classification fix moves detections to other classes
            o = np.flatnonzero(keep)
            o = o[np.lexsort((o, -m.det_score[o], cls[o]))]
        return sorted_class_ap(cls[o], tp[o], npos)

    base = ap("")
    members = {"all": np.ones(k_all, bool), **{g: groups == g for g in ("r", "c", "f")}}
    out: Dict[str, dict] = {}
    for g, sel in members.items():
        has = sel & ~np.isnan(base)
        out[g] = {"ap50": float(base[has].mean()) if has.any() else None, "gain": {}, "count": {}}
    miss = missed(m)
    for t in ERROR_TYPES:
        fixed = ap(t)
        fixed = np.where(np.isnan(fixed) & ~np.isnan(base), 0.0, fixed)  # a class whose every object was missed
        if t == "miss":
            counts_by_class = np.bincount(m.gt_cls[miss], minlength=k_all)
        else:
            code = ERROR_TYPES.index(t)
            counts_by_class = np.bincount(m.det_cls[(m.det_state == FP) & (m.det_error == code)], minlength=k_all)
        for g, sel in members.items():
            has = sel & ~np.isnan(base)
            gain = float(fixed[has].mean() - base[has].mean()) if has.any() else None
            out[g]["gain"][t] = None if gain is None else max(gain, 0.0)
            out[g]["count"][t] = int(counts_by_class[sel].sum())
    return out
