"""Mask post-processing at LVIS resolution: each mask pasted only where it can be non-zero and run-length
encoded from that crop, with the same RLEs, byte for byte, as mmdet 2.28's ``FCNMaskHead.get_seg_masks``
followed by ``mmdet.core.encode_mask_results``.

mmdet writes every one of up to 300 masks into a full image-sized bool array (300 x 480 x 640 = 92 MB at
LVIS's usual original size, 320 MB at 800 x 1333), copies each full mask to Fortran order and RLE-encodes
all of its pixels. Here:

1. the sigmoid (of all classes' logits), the rescale of the boxes and the per-label selection are mmdet's own
   operations on the same tensors, so every probability is the same float (on CPU, torch's vectorised and
   scalar sigmoid differ in the last bit for a few per cent of values, and which elements take the scalar
   tail depends on the tensor's size and the threads: the selected channel's sigmoid alone would differ);
2. each mask is pasted over a small region only, with the same per-pixel arithmetic as mmdet's
   ``_do_paste_mask``, and run-length encoded from that crop (:mod:`loce_cli.mmdet_ext.mask_paste`).

Entry points: :func:`segm_rles` (``get_seg_masks`` + ``encode_mask_results`` in one call),
:func:`simple_test_mask_rles` (``simple_test_mask`` with RLE output) and :func:`detect`, which gives what
``model(return_loss=False, rescale=True, **data)`` followed by ``encode_mask_results`` gives, for mmdet's
single-scale two-stage mask detectors (others take the stock path, so it is always safe to call).
"""

from __future__ import annotations

import contextlib
import types
import warnings
from typing import Iterator, List, Optional

import numpy as np
import torch

from mmdet.core import bbox2roi, encode_mask_results
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead
from mmdet.models.roi_heads.standard_roi_head import StandardRoIHead
from mmdet.models.roi_heads.test_mixins import MaskTestMixin

from loce_cli.mmdet_ext.mask_paste import BATCH_PIXELS, box_mode_rles, compress, full_mode_rles


def detection_rles(mask_head: FCNMaskHead, mask_pred, det_bboxes: torch.Tensor, det_labels: torch.Tensor,
                   rcnn_test_cfg, ori_shape, scale_factor, rescale: bool, paste: Optional[str] = None,
                   budget: int = BATCH_PIXELS) -> List[dict]:
    """The RLE of every detection, in detection order: ``encode_mask_results(mask_head.get_seg_masks(...))``
    flattened, for the arguments of ``FCNMaskHead.get_seg_masks`` (mmdet 2.28).

    Args:
        mask_pred: ``[n, C or 1, M, M]`` mask logits of the mask head (or probabilities as an ndarray, as
            mmdet's augmented test gives them).
        det_bboxes: ``[n, 4 or 5]`` boxes at the test scale (what ``simple_test_mask`` passes).
        det_labels: ``[n]``.
        paste: ``"box"`` (mmdet's CPU branch) or ``"full"`` (its GPU branch); ``None``: the branch mmdet takes
            on ``mask_pred``'s device.
        budget: pixels per batch of boxes in ``"full"`` mode.
    """
    threshold = rcnn_test_cfg.mask_thr_binary
    if threshold < 0:  # mmdet's uint8 probability maps (a debugging mode): not binary, no shortcut
        segms = mask_head.get_seg_masks(mask_pred, det_bboxes, det_labels, rcnn_test_cfg, ori_shape,
                                        scale_factor, rescale)
        return _in_detection_order(encode_mask_results(segms), det_labels)
    # -- mmdet's own preamble, the same operations on the same tensors
    if isinstance(mask_pred, torch.Tensor):
        mask_pred = mask_pred.sigmoid()
    else:
        mask_pred = det_bboxes.new_tensor(mask_pred)
    bboxes = det_bboxes[:, :4]
    labels = det_labels
    if not isinstance(scale_factor, torch.Tensor):
        if isinstance(scale_factor, float):
            scale_factor = np.array([scale_factor] * 4)
            warnings.warn("Scale_factor should be a Tensor or ndarray with shape (4,), float would be "
                          "deprecated. ")
        scale_factor = torch.Tensor(np.asarray(scale_factor))
    if rescale:
        img_h, img_w = ori_shape[:2]
        bboxes = bboxes / scale_factor.to(bboxes)
    else:
        w_scale, h_scale = scale_factor[0], scale_factor[1]
        img_h = np.round(ori_shape[0] * h_scale.item()).astype(np.int32)
        img_w = np.round(ori_shape[1] * w_scale.item()).astype(np.int32)
    img_h, img_w = int(img_h), int(img_w)
    n = len(mask_pred)
    if n == 0:
        return []
    if not mask_head.class_agnostic:
        mask_pred = mask_pred[torch.arange(n, device=mask_pred.device), labels][:, None]
    # --
    mode = paste or ("box" if mask_pred.device.type == "cpu" else "full")
    if mode == "box":
        counts = box_mode_rles(mask_pred, bboxes, img_h, img_w, threshold)
    elif mode == "full":
        counts = full_mode_rles(mask_pred, bboxes, img_h, img_w, threshold, budget)
    else:
        raise ValueError(f"paste must be 'box', 'full' or None, not {paste!r}")
    return compress(counts, img_h, img_w)


def _in_detection_order(cls_rles: List[list], labels: torch.Tensor) -> List[dict]:
    taken = [0] * len(cls_rles)
    out = []
    for label in labels.tolist():
        out.append(cls_rles[label][taken[label]])
        taken[label] += 1
    return out


def segm_rles(mask_head: FCNMaskHead, mask_pred, det_bboxes: torch.Tensor, det_labels: torch.Tensor,
              rcnn_test_cfg, ori_shape, scale_factor, rescale: bool, paste: Optional[str] = None) -> List[list]:
    """``encode_mask_results(mask_head.get_seg_masks(...))``: per class, the RLEs of its detections in order."""
    cls_rles: List[list] = [[] for _ in range(mask_head.num_classes)]
    rles = detection_rles(mask_head, mask_pred, det_bboxes, det_labels, rcnn_test_cfg, ori_shape, scale_factor,
                          rescale, paste)
    for label, rle in zip(det_labels.tolist(), rles):
        cls_rles[label].append(rle)
    return cls_rles


def simple_test_mask_rles(roi_head: StandardRoIHead, x, img_metas, det_bboxes, det_labels, rescale=False):
    """``roi_head.simple_test_mask(...)`` (mmdet 2.28's ``MaskTestMixin``) with the masks as RLE lists."""
    ori_shapes = tuple(meta["ori_shape"] for meta in img_metas)
    scale_factors = tuple(meta["scale_factor"] for meta in img_metas)
    if isinstance(scale_factors[0], float):  # deprecated in mmdet 2.28 (and mishandled there): its own path
        segms = MaskTestMixin.simple_test_mask(roi_head, x, img_metas, det_bboxes, det_labels, rescale=rescale)
        return [encode_mask_results(s) for s in segms]
    num_classes = roi_head.mask_head.num_classes
    if all(b.shape[0] == 0 for b in det_bboxes):
        return [[[] for _ in range(num_classes)] for _ in det_bboxes]
    if rescale:
        scale_factors = [torch.from_numpy(s).to(det_bboxes[0].device) for s in scale_factors]
    boxes = [det_bboxes[i][:, :4] * scale_factors[i] if rescale else det_bboxes[i][:, :4]
             for i in range(len(det_bboxes))]
    mask_pred = roi_head._mask_forward(x, bbox2roi(boxes))["mask_pred"]
    mask_preds = mask_pred.split([len(b) for b in det_bboxes], 0)
    out = []
    for i in range(len(det_bboxes)):
        if det_bboxes[i].shape[0] == 0:
            out.append([[] for _ in range(num_classes)])
        else:
            out.append(segm_rles(roi_head.mask_head, mask_preds[i], boxes[i], det_labels[i], roi_head.test_cfg,
                                 ori_shapes[i], scale_factors[i], rescale))
    return out


def supports_rles(detector) -> bool:
    """Whether :func:`detect` can take the fast path: mmdet's StandardRoIHead test code (single scale) and an
    FCNMaskHead whose ``get_seg_masks`` is mmdet's, thresholding at >= 0."""
    roi_head = getattr(detector, "roi_head", None)
    if not isinstance(roi_head, StandardRoIHead) or not roi_head.with_mask:
        return False
    head = roi_head.mask_head
    return (type(roi_head).simple_test is StandardRoIHead.simple_test
            and type(roi_head).simple_test_mask is MaskTestMixin.simple_test_mask
            and isinstance(head, FCNMaskHead) and type(head).get_seg_masks is FCNMaskHead.get_seg_masks
            and roi_head.test_cfg is not None and roi_head.test_cfg.get("mask_thr_binary", -1) >= 0)


@contextlib.contextmanager
def rle_masks(detector) -> Iterator[bool]:
    """Within the block, the detector's single-scale test gives RLE lists instead of bool masks (yields whether
    it does: False for detectors :func:`supports_rles` rejects, left as they are)."""
    if not supports_rles(detector):
        yield False
        return
    roi_head = detector.roi_head
    had = "simple_test_mask" in vars(roi_head)
    before = vars(roi_head).get("simple_test_mask")
    roi_head.simple_test_mask = types.MethodType(simple_test_mask_rles, roi_head)
    try:
        yield True
    finally:
        if had:
            roi_head.simple_test_mask = before
        else:
            del roi_head.simple_test_mask


def _encoded(segm) -> bool:
    for masks in (segm[0] if isinstance(segm, tuple) else segm):
        for m in masks:
            return isinstance(m, dict)
    return True


def detect(model, data: dict, rescale: bool = True) -> list:
    """``model(return_loss=False, rescale=rescale, **data)`` with every mask result encoded as mmdet's
    ``encode_mask_results`` encodes it: per image ``(bbox_results, rle_results)`` (or ``bbox_results`` for a
    detector without masks). ``model`` may be wrapped (``MMDataParallel``); the RLEs are the same bytes."""
    detector = getattr(model, "module", model)
    with rle_masks(detector):
        results = model(return_loss=False, rescale=rescale, **data)
    out = []
    for res in results:
        if isinstance(res, tuple) and not _encoded(res[1]):  # the stock path (augmented test, other heads)
            res = (res[0], encode_mask_results(res[1]))
        out.append(res)
    return out
