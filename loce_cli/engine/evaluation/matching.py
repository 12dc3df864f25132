"""LVIS's per (image, category) greedy matching, compiled (numba), for all IoU thresholds and area ranges at once.

The rules are those of ``lvis.LVISEval.evaluate_img``, with pycocotools' crowd regions (``iscrowd``, none in
LVIS; in COCO data imported by ``loce data import coco``):
- per area range, a ground truth is ignored when its ``ignore`` flag is set or its area is outside the range;
  ground truths are visited non-ignored first (a stable sort), detections by score (highest first, ties in
  file order);
- at threshold t a detection takes, among the ground truths not yet taken, the one of highest IoU >= min(t,
  1 - 1e-10) (on equal IoU the later one), stopping at the first ignored one once it holds a non-ignored one;
- a matched detection is ignored when its ground truth is; an unmatched one when its area is outside the range
  or its category is not exhaustively annotated in the image;
- a crowd region is an ignored ground truth that any number of detections may take, and its IoU with a
  detection is the intersection over the detection's area (``COCOeval.evaluateImg`` / ``maskUtils.iou``).
Per detection only two bit masks are kept per area range: bit t of ``tp`` / ``fp`` says true / false positive at
threshold t (a detection that is neither is ignored there). That is all the accumulation needs.
"""

from __future__ import annotations

import numpy as np

from loce_cli.errors import EnvironmentProblem

try:
    import numba
except ImportError:  # pragma: no cover - numba is a runtime requirement
    numba = None

# LVIS Params: np.linspace(0.5, 0.95, 10) IoU thresholds; areas [0, 1e5^2], [0, 32^2], [32^2, 96^2], [96^2, 1e5^2]
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RNGS = np.array([[0 ** 2, 1e5 ** 2], [0 ** 2, 32 ** 2], [32 ** 2, 96 ** 2], [96 ** 2, 1e5 ** 2]],
                     dtype=np.float64)
AREA_LABELS = ("all", "small", "medium", "large")


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn)


def _box_ious(dt_box, gt_box, gt_crowd, d0, nd, q0, ng, out):
    """pycocotools' bbIou: ``out[i, j]`` = IoU of detection d0+i and ground truth q0+j (xywh); with a crowd
    ground truth the intersection over the detection's area."""
    for j in range(ng):
        gx, gy, gw, gh = gt_box[q0 + j, 0], gt_box[q0 + j, 1], gt_box[q0 + j, 2], gt_box[q0 + j, 3]
        ga = gw * gh
        for i in range(nd):
            dx, dy, dw, dh = dt_box[d0 + i, 0], dt_box[d0 + i, 1], dt_box[d0 + i, 2], dt_box[d0 + i, 3]
            da = dw * dh
            out[i, j] = 0.0
            w = min(dw + dx, gw + gx) - max(dx, gx)
            if w <= 0:
                continue
            h = min(dh + dy, gh + gy) - max(dy, gy)
            if h <= 0:
                continue
            inter = w * h
            out[i, j] = inter / da if gt_crowd[q0 + j] else inter / (da + ga - inter)


def _match(g_dt, g_gt, dt_box, dt_area, dt_nel, gt_box, gt_area, gt_ign, gt_crowd, iou_flat, iou_off, use_boxes,
           thrs, area_lo, area_hi, tp, fp):
    """Fill ``tp`` / ``fp`` ``[N, A]`` (uint16 bit masks over thresholds) for every group.

    ``g_dt`` / ``g_gt`` ``[G, 2]``: each group's detection and ground-truth ranges (detections sorted by score,
    ground truths in file order); IoUs come from the boxes (``use_boxes``) or from ``iou_flat`` (row-major
    ``[nd, ng]`` per group, starting at ``iou_off[g]``)."""
    num_thr = thrs.shape[0]
    num_area = area_lo.shape[0]
    buf = np.zeros((1, 1), np.float64)
    for g in range(g_dt.shape[0]):
        d0, d1 = g_dt[g, 0], g_dt[g, 1]
        q0, q1 = g_gt[g, 0], g_gt[g, 1]
        nd, ng = d1 - d0, q1 - q0
        if nd == 0:
            continue
        if ng > 0:
            if use_boxes:
                if buf.shape[0] < nd or buf.shape[1] < ng:
                    buf = np.zeros((max(nd, buf.shape[0]), max(ng, buf.shape[1])), np.float64)
                _box_ious(dt_box, gt_box, gt_crowd, d0, nd, q0, ng, buf)
                ious = buf
            else:
                ious = iou_flat[iou_off[g]:iou_off[g] + nd * ng].reshape((nd, ng))
        else:
            ious = buf
        gig = np.zeros(ng, np.bool_)
        order = np.zeros(ng, np.int64)
        taken = np.zeros(ng, np.bool_)
        for a in range(num_area):
            lo, hi = area_lo[a], area_hi[a]
            k = 0
            for j in range(ng):
                ar = gt_area[q0 + j]
                gig[j] = gt_ign[q0 + j] or gt_crowd[q0 + j] or ar < lo or ar > hi
                if not gig[j]:
                    order[k] = j
                    k += 1
            for j in range(ng):
                if gig[j]:
                    order[k] = j
                    k += 1
            for t in range(num_thr):
                bit = np.uint16(1 << t)
                for j in range(ng):
                    taken[j] = False
                thr = min(thrs[t], 1 - 1e-10)
                for i in range(nd):
                    best = thr
                    m = -1
                    for jj in range(ng):
                        j = order[jj]
                        if taken[j] and not gt_crowd[q0 + j]:
                            continue
                        if m > -1 and not gig[m] and gig[j]:
                            break
                        if ious[i, j] < best:
                            continue
                        best = ious[i, j]
                        m = j
                    di = d0 + i
                    if m == -1:
                        ar = dt_area[di]
                        if not (ar < lo or ar > hi or dt_nel[di]):
                            fp[di, a] |= bit
                    else:
                        taken[m] = True
                        if not gig[m]:
                            tp[di, a] |= bit


if numba is not None:
    _box_ious = _jit(_box_ious)
    _match = _jit(_match)


def match_groups(g_dt: np.ndarray, g_gt: np.ndarray, dt_box: np.ndarray, dt_area: np.ndarray, dt_nel: np.ndarray,
                 gt_box: np.ndarray, gt_area: np.ndarray, gt_ign: np.ndarray, iou_flat=None, iou_off=None,
                 gt_crowd=None):
    """``(tp, fp)``: ``[N, A]`` uint16 bit masks (bit t: IoU threshold ``IOU_THRS[t]``) for the ``N`` detections
    of the groups. Without ``iou_flat`` the IoUs are computed from the boxes; ``gt_crowd`` (default none) marks
    crowd regions."""
    if numba is None:
        raise EnvironmentProblem("numba is not installed: the streaming evaluator needs it",
                                 "run make setup (or pip install numba), or pass --evaluator lvis")
    n = dt_area.shape[0]
    tp = np.zeros((n, AREA_RNGS.shape[0]), np.uint16)
    fp = np.zeros_like(tp)
    use_boxes = iou_flat is None
    if gt_crowd is None:
        gt_crowd = np.zeros(gt_area.shape[0], np.bool_)
    if use_boxes:
        iou_flat, iou_off = np.zeros(0, np.float64), np.zeros(g_dt.shape[0], np.int64)
    _match(np.ascontiguousarray(g_dt, np.int64), np.ascontiguousarray(g_gt, np.int64),
           np.ascontiguousarray(dt_box, np.float64), np.ascontiguousarray(dt_area, np.float64),
           np.ascontiguousarray(dt_nel, np.bool_), np.ascontiguousarray(gt_box, np.float64),
           np.ascontiguousarray(gt_area, np.float64), np.ascontiguousarray(gt_ign, np.bool_),
           np.ascontiguousarray(gt_crowd, np.bool_), np.ascontiguousarray(iou_flat, np.float64), np.ascontiguousarray(iou_off, np.int64), use_boxes,
           IOU_THRS, AREA_RNGS[:, 0].copy(), AREA_RNGS[:, 1].copy(), tp, fp)
    return tp, fp


def warm_up() -> None:
    """Compile (or load from numba's cache) before worker processes fork, so each does not compile again."""
    one = np.array([[0, 1]], np.int64)
    box = np.array([[0.0, 0.0, 2.0, 2.0]])
    match_groups(one, one, box, np.ones(1), np.zeros(1, np.bool_), box, np.ones(1), np.zeros(1, np.bool_))
    match_groups(one, one, box, np.ones(1), np.zeros(1, np.bool_), box, np.ones(1), np.zeros(1, np.bool_),
                 np.ones(1), np.zeros(1, np.int64))
