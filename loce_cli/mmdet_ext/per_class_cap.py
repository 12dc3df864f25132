"""Inference for AP-fixed / AP-pool: no cap per image, a cap per class per image instead.

mmdet 2.28's ``multiclass_nms`` does class-wise NMS on every (proposal, class) pair above ``score_thr`` and then
keeps the ``max_per_img`` highest scores of the image. With ``max_per_img = -1`` it keeps all of them, sorted by
score, and the 300-per-image output is exactly that list's first 300 (the cap is applied after the same NMS; a
test checks it). Within :func:`per_class_cap` the detector's single-scale test keeps, per image, the ``k``
highest-scored detections of each class of that uncapped list (their order unchanged) before the mask head
runs. With ``k`` = the dataset-wide cap of AP-fixed (``--dets-per-class``) this drops nothing that AP-fixed could
keep (a detection among its class's top k over the dataset is among its class's top k in its image), and the
top 300 per image of the result is still the standard output: one inference serves every protocol.

At LVIS scale an uncapped output is large (with score_thr 1e-4 many classes pass on every proposal), so the
context also keeps, per class, a running threshold: the k-th best score of that class among the detections this
process emitted so far (``core.topk.TopKPerGroup``). A detection strictly below it can never be among its
class's top k of the final file (that k-th score can only rise), so it is dropped unless it is among its image's
``keep_per_image`` (300) highest scores, which the standard protocol needs. Lossless for both protocols; it
bounds the output near 300 per image + k per class (the paper's inference reaches the same bound with a
dataset-wide threshold pass).
"""

from __future__ import annotations

import contextlib
import types
from typing import Iterator, List, Tuple

import numpy as np
import torch

from loce_cli.core.topk import TopKPerGroup


def keep_top_per_class(bboxes: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (in their order) of the ``k`` highest-scored rows of each label; ``bboxes`` ``[n, 5]`` with the
    score last, ``labels`` ``[n]``. Equal scores keep the earlier row."""
    n = labels.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=labels.device)
    lab = labels.detach().cpu().numpy()
    score = bboxes[:, -1].detach().float().cpu().numpy()
    order = np.lexsort((np.arange(n), -score, lab))
    ranked = lab[order]
    rank = np.arange(n) - np.searchsorted(ranked, ranked, side="left")
    keep = np.sort(order[rank < k])
    return torch.from_numpy(keep).to(labels.device)


class RunningCap:
    """What :func:`per_class_cap` keeps of each image's uncapped, score-sorted detections."""

    def __init__(self, num_classes: int, k: int, keep_per_image: int = 300, min_buffer: int = 1 << 18):
        self.k, self.keep_per_image = int(k), int(keep_per_image)
        self.top = TopKPerGroup(num_classes, self.k, min_buffer=min_buffer)
        self.seen = 0
        self.emitted = 0
        self.dropped_by_threshold = 0

    def keep(self, bboxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Indices (in order) of the detections to emit; ``bboxes`` ``[n, 5]`` sorted by score (descending)."""
        n = labels.shape[0]
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=labels.device)
        in_class = np.zeros(n, np.bool_)
        in_class[keep_top_per_class(bboxes, labels, self.k).cpu().numpy()] = True
        lab = labels.detach().cpu().numpy()
        score = bboxes[:, -1].detach().float().cpu().numpy().astype(np.float64)
        passing = in_class & (score >= self.top.threshold()[lab])
        emit = passing.copy()
        emit[:self.keep_per_image] = True  # the image's top scores: the standard protocol's detections
        self.top.add(lab[passing].astype(np.int64), score[passing], self.seen)
        self.seen += n
        self.emitted += int(emit.sum())
        self.dropped_by_threshold += int((in_class & ~passing).sum())
        return torch.from_numpy(np.flatnonzero(emit)).to(labels.device)


def _capped_simple_test_bboxes(cap: RunningCap, original):
    def simple_test_bboxes(self, x, img_metas, proposals, rcnn_test_cfg, rescale=False
                           ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        det_bboxes, det_labels = original(x, img_metas, proposals, rcnn_test_cfg, rescale=rescale)
        out_b, out_l = [], []
        for b, lab in zip(det_bboxes, det_labels):
            if rcnn_test_cfg is None or b.dim() != 2 or b.shape[-1] != 5:
                out_b.append(b)
                out_l.append(lab)
                continue
            keep = cap.keep(b, lab)
            out_b.append(b[keep])
            out_l.append(lab[keep])
        return out_b, out_l

    return simple_test_bboxes


@contextlib.contextmanager
def per_class_cap(detector, k: int, keep_per_image: int = 300, cap: RunningCap = None) -> Iterator[RunningCap]:
    """Within the block: no per-image cap (``test_cfg.rcnn.max_per_img = -1``); per image, each class's top
    ``k`` detections that reach the class's running threshold, plus the image's top ``keep_per_image``. Pass
    the same ``cap`` to every image of a run (its thresholds carry over). The detector is restored afterwards."""
    roi_head = detector.roi_head
    cfg = roi_head.test_cfg
    if cap is None:
        cap = RunningCap(roi_head.bbox_head.num_classes, k, keep_per_image)
    before_max = cfg.get("max_per_img")
    had = "simple_test_bboxes" in vars(roi_head)
    before = vars(roi_head).get("simple_test_bboxes")
    cfg.max_per_img = -1
    roi_head.simple_test_bboxes = types.MethodType(_capped_simple_test_bboxes(cap, roi_head.simple_test_bboxes),
                                                   roi_head)
    try:
        yield cap
    finally:
        cfg.max_per_img = before_max
        if had:
            roi_head.simple_test_bboxes = before
        else:
            del roi_head.simple_test_bboxes
