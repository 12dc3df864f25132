"""Every kept detection labelled the way TIDE (Bolya et al. 2020) labels it, under LVIS's federated rules, one image
at a time.

Per image: the detections LVIS keeps (the ``max_dets`` highest scores), then only those of a class the image
verifies (one with an object there, or one of its ``neg_category_ids``). In score order each detection takes the
unmatched object of its class with the highest IoU when that IoU is >= 0.5 (a true positive). An unmatched one is
ignored (neither right nor wrong, never an error) when it overlaps an ``ignore`` object of its class by >= 0.5 or
when its class is not exhaustively annotated in the image. Every other one is a false positive with one error type,
tested in TIDE's order: localisation (0.1 <= IoU <= 0.5 with an object of its class), classification (IoU >= 0.5
with an object of another class), duplicate (IoU >= 0.5 with an object of its class already taken), background
(IoU <= 0.1 with every object), else both. A classification or localisation error whose object is still unmatched
may be fixed; of several aimed at one object only the highest-scoring one (TIDE's rule). An object nobody took and
no fixable error aims at is missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.engine.evaluation.ground_truth import GroundTruth
from loce_cli.engine.evaluation.results_reader import Detections

FG, BG = 0.5, 0.1
ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "miss")
CLS, LOC, BOTH, DUPE, BKG = range(5)
TP, FP, IGNORED = 0, 1, 2


@dataclass
class Matched:
    """The kept detections (``det_*``, index = rank in ``kept``) and the counted objects (``gt_*``)."""

    kept: np.ndarray  # [N] positions in the results file
    det_img: np.ndarray  # [N] image index
    det_cls: np.ndarray  # [N] category index
    det_score: np.ndarray  # [N]
    det_state: np.ndarray  # [N] TP / FP / IGNORED
    det_error: np.ndarray  # [N] error type of a false positive (CLS ... BKG), -1 otherwise
    det_target: np.ndarray  # [N] object a classification / localisation error aims at, -1 otherwise
    gt_cls: np.ndarray  # [M] category index of every annotation the evaluation counts
    gt_ignore: np.ndarray  # [M] bool
    gt_used: np.ndarray  # [M] bool: taken by a true positive
    gt_best: np.ndarray  # [M] the fixable error that would take it (-1: none; not used and -1: missed)
    gt_taker: np.ndarray  # [M] category index of the highest-scoring kept detection with box IoU >= 0.5, -1: none


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of xywh boxes (pycocotools' definition)."""
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def kept_detections(gt: GroundTruth, dets: Detections, max_dets: int) -> np.ndarray:
    """File positions of the detections LVIS evaluates: per image the ``max_dets`` highest scores (equal scores in
    file order), of a class the image verifies, of area > 0; sorted by image, then score."""
    n = dets.size
    order = np.lexsort((np.arange(n), -dets.score, dets.img))
    img = dets.img[order]
    start = np.searchsorted(img, img, side="left")
    order = order[np.arange(n) - start < max_dets]
    code = dets.img[order].astype(np.int64) * gt.num_cats + dets.cat[order]
    verified = gt.verified(code)
    if dets.box is not None:
        area = dets.box[order, 2] * dets.box[order, 3]
    else:
        area = dets.mask_area[order]
    return order[verified & (area > 0)]  # LVIS drops detections of area 0 (its area filter)


def _det_boxes(dets: Detections, idx: np.ndarray, rles: Optional[list]) -> np.ndarray:
    if dets.box is not None:
        return dets.box[idx]
    return np.asarray(mask_utils.toBbox(rles), np.float64).reshape(-1, 4)


def match_all(gt: GroundTruth, dets: Detections, metric: str, max_dets: int = 300) -> Matched:
    """Label every kept detection and every counted object (``metric``: the IoU of boxes or of masks)."""
    kept = kept_detections(gt, dets, max_dets)
    n, m = kept.size, gt.ann_cat.size
    out = Matched(kept, dets.img[kept].astype(np.int64), dets.cat[kept].astype(np.int64), dets.score[kept],
                  np.full(n, FP, np.int8), np.full(n, -1, np.int8), np.full(n, -1, np.int64),
                  gt.ann_cat.astype(np.int64), gt.ann_ignore.copy(), np.zeros(m, bool), np.full(m, -1, np.int64),
                  np.full(m, -1, np.int64))
    d_bounds = np.searchsorted(out.det_img, np.arange(gt.num_images + 1))
    g_bounds = np.searchsorted(gt.ann_img, np.arange(gt.num_images + 1))
    nel = np.isin(out.det_img * gt.num_cats + out.det_cls, gt.nel_codes)  # not-exhaustive (image, class)
    for i in range(gt.num_images):
        d0, d1, g0, g1 = d_bounds[i], d_bounds[i + 1], g_bounds[i], g_bounds[i + 1]
        if d0 == d1 and g0 == g1:
            continue
        d_idx = np.arange(d0, d1)
        g_idx = np.arange(g0, g1)
        d_rles = g_rles = None
        if metric == "segm" or dets.box is None:
            h, w = int(gt.heights[i]), int(gt.widths[i])
            d_rles = [{"size": [h, w], "counts": c} for c in dets.rle.read(kept[d_idx])]
            g_rles = [{"size": [h, w], "counts": c} for c in gt.ann_rle[g0:g1]] if gt.ann_rle is not None else None
        d_box = _det_boxes(dets, kept[d_idx], d_rles)
        g_box = gt.ann_box[g0:g1]
        b_iou = box_iou(d_box, g_box) if d_idx.size and g_idx.size else np.zeros((d_idx.size, g_idx.size))
        if metric == "segm" and d_idx.size and g_idx.size:
            iou = np.asarray(mask_utils.iou(d_rles, g_rles, [0] * len(g_rles)), np.float64).reshape(b_iou.shape)
        else:
            iou = b_iou
        _label_image(out, d_idx, g_idx, iou, nel[d0:d1])
        _takers(out, d_idx, g_idx, b_iou)
    return out


def _takers(out: Matched, d_idx: np.ndarray, g_idx: np.ndarray, b_iou: np.ndarray) -> None:
    """Per object, the class of the highest-scoring detection with box IoU >= 0.5 (detections are in score
    order, so the first one)."""
    if not d_idx.size or not g_idx.size:
        return
    hit = b_iou >= FG
    any_hit = hit.any(axis=0)
    first = hit.argmax(axis=0)
    out.gt_taker[g_idx[any_hit]] = out.det_cls[d_idx[first[any_hit]]]


def _greedy(cand_iou: np.ndarray, taken: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """LVIS's greedy matching over ``rows`` (in score order): each takes the untaken column of highest IoU when
    that IoU is >= 0.5; returns the rows that took one (``taken`` updated)."""
    took = []
    for k in rows.tolist():
        cand = np.where(taken, -1.0, cand_iou[k])
        j = int(cand.argmax())
        if cand[j] >= FG:
            taken[j] = True
            took.append(k)
    return np.array(took, np.int64)


def _label_image(out: Matched, d_idx: np.ndarray, g_idx: np.ndarray, iou: np.ndarray, nel_d: np.ndarray) -> None:
    counted = ~out.gt_ignore[g_idx]
    g_cls, d_cls = out.gt_cls[g_idx], out.det_cls[d_idx]
    same = d_cls[:, None] == g_cls[None, :]
    ign_iou = iou * (same & ~counted[None, :])
    cls_iou = iou * (same & counted[None, :])
    taken = np.zeros(g_idx.size, bool)  # an ignore object is taken once, as LVIS matches it
    if g_idx.size:  # only detections that could match one take part in the (sequential) greedy matching
        tp = _greedy(cls_iou, taken, np.flatnonzero(cls_iou.max(axis=1) >= FG))
        out.det_state[d_idx[tp]] = TP
        rest = np.ones(d_idx.size, bool)
        rest[tp] = False
        ign = _greedy(ign_iou, taken, np.flatnonzero(rest & (ign_iou.max(axis=1) >= FG)))
        out.det_state[d_idx[ign]] = IGNORED
    fp = out.det_state[d_idx] == FP
    out.det_state[d_idx[fp & nel_d]] = IGNORED  # LVIS: unmatched detections of a not-exhaustive class
    used = taken & counted
    out.gt_used[g_idx] = used
    fps = np.flatnonzero(out.det_state[d_idx] == FP)
    if fps.size:
        _classify(out, d_idx[fps], g_idx, iou[fps], same[fps], counted, used)


def _classify(out: Matched, d: np.ndarray, g_idx: np.ndarray, iou: np.ndarray, same: np.ndarray,
              counted: np.ndarray, used: np.ndarray) -> None:
    """TIDE's error type of the false positives ``d`` (score order) from their IoU rows against the image's
    objects, tested in TIDE's order; and, per object, the highest-scoring fixable error aimed at it."""
    if not counted.any():
        out.det_error[d] = BKG
        return
    cls_iou = iou * (same & counted[None, :])
    other_iou = iou * (~same & counted[None, :])
    cls_arg, other_arg = cls_iou.argmax(axis=1), other_iou.argmax(axis=1)
    rows = np.arange(d.size)
    cls_max, other_max = cls_iou[rows, cls_arg], other_iou[rows, other_arg]
    loc = (cls_max >= BG) & (cls_max <= FG)
    wrong = ~loc & (other_max >= FG)
    dupe = ~loc & ~wrong & ((cls_iou * used[None, :]).max(axis=1) >= FG)
    bkg = ~loc & ~wrong & ~dupe & ((iou * counted[None, :]).max(axis=1) <= BG)
    error = np.full(d.size, BOTH, np.int8)
    error[loc], error[wrong], error[dupe], error[bkg] = LOC, CLS, DUPE, BKG
    out.det_error[d] = error
    target = np.where(loc, cls_arg, np.where(wrong, other_arg, -1))
    aimed = target >= 0
    out.det_target[d[aimed]] = g_idx[target[aimed]]
    fixable = np.flatnonzero(aimed & ~used[np.maximum(target, 0)])
    if fixable.size:  # in score order, so the first one aimed at an object is its highest-scoring
        objs, first = np.unique(target[fixable], return_index=True)
        out.gt_best[g_idx[objs]] = d[fixable[first]]


def missed(m: Matched) -> np.ndarray:
    """Objects counted, never taken, and aimed at by no fixable error."""
    return ~m.gt_ignore & ~m.gt_used & (m.gt_best < 0)


def groups_of(gt: GroundTruth) -> np.ndarray:
    """[K] group letter per category index ('r', 'c', 'f', or '' when the file gives none)."""
    return np.array([str(c.get("frequency", "")) for c in gt.categories])


def group_names() -> List[str]:
    return ["r", "c", "f"]
