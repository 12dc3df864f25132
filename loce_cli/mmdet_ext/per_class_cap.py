"""Inference for AP-fixed / AP-pool: no cap per image, a cap per class per image instead.

mmdet 2.28's ``multiclass_nms`` does class-wise NMS on every (proposal, class) pair above ``score_thr`` and then
keeps the ``max_per_img`` highest scores of the image. With ``max_per_img = -1`` it keeps all of them, sorted by
score, and the 300-per-image output is exactly that list's first 300 (the cap is applied after the same NMS; a
test checks it). Within :func:`per_class_cap` the detector's single-scale test keeps, per image, the ``k``
highest-scored detections of each class of that uncapped list (their order unchanged) before the mask head
runs. With ``k`` = the dataset-wide cap of AP-fixed (``--dets-per-class``) this drops nothing that AP-fixed could
keep (a detection among its class's top k over the dataset is among its class's top k in its image), and the
top 300 per image of the result is still the standard output: one inference serves every protocol.
"""

from __future__ import annotations

import contextlib
import types
from typing import Iterator, List, Tuple

import numpy as np
import torch


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


def _capped_simple_test_bboxes(k: int, original):
    def simple_test_bboxes(self, x, img_metas, proposals, rcnn_test_cfg, rescale=False
                           ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        det_bboxes, det_labels = original(x, img_metas, proposals, rcnn_test_cfg, rescale=rescale)
        out_b, out_l = [], []
        for b, lab in zip(det_bboxes, det_labels):
            if rcnn_test_cfg is None or b.dim() != 2 or b.shape[-1] != 5:
                out_b.append(b)
                out_l.append(lab)
                continue
            keep = keep_top_per_class(b, lab, k)
            out_b.append(b[keep])
            out_l.append(lab[keep])
        return out_b, out_l

    return simple_test_bboxes


@contextlib.contextmanager
def per_class_cap(detector, k: int) -> Iterator[None]:
    """Within the block: no per-image cap (``test_cfg.rcnn.max_per_img = -1``) and at most ``k`` detections of
    each class per image. The detector is restored afterwards."""
    roi_head = detector.roi_head
    cfg = roi_head.test_cfg
    before_max = cfg.get("max_per_img")
    had = "simple_test_bboxes" in vars(roi_head)
    before = vars(roi_head).get("simple_test_bboxes")
    cfg.max_per_img = -1
    roi_head.simple_test_bboxes = types.MethodType(_capped_simple_test_bboxes(int(k), roi_head.simple_test_bboxes),
                                                   roi_head)
    try:
        yield
    finally:
        cfg.max_per_img = before_max
        if had:
            roi_head.simple_test_bboxes = before
        else:
            del roi_head.simple_test_bboxes
