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
   ``_do_paste_mask``:

   - ``paste="box"`` (mmdet's CPU branch, the default on CPU): like ``_do_paste_mask(skip_empty=True)`` one box
     at a time over ``[floor(x0) - 1, ceil(x1) + 1)`` clamped to the image, one ``grid_sample`` per box on the
     same grid values (computed for all boxes at once: a few tensor operations per box instead of ~25);
   - ``paste="full"`` (mmdet's GPU branch, the default on other devices): mmdet pastes over the whole image
     (``skip_empty=False``); a box's bilinear samples are non-zero only where its normalised grid coordinate
     ``u`` (computed exactly as mmdet computes it, ``inf`` set to 0) has ``|u| < 1 + 1/M`` (M: mask size), so
     the region is the pixels with ``|u| < 1 + 2/M`` (or ``u`` NaN) along each axis; outside it mmdet's
     samples are exactly 0, below any threshold > 0. Degenerate boxes (``x1 == x0``: ``u`` is ``inf`` -> 0
     everywhere) get the full width, as in mmdet. Boxes are pasted in batches of similar region size, each
     region's pixels laid out along one axis of the sampling grid (little padding), on the device; only the
     ends of the runs of True come to the host;
3. COCO RLE is column-major: the full-image runs of a crop placed at ``(x0, y0)`` in an ``H x W`` image follow
   from the rows where the crop changes value down each column (a False row above and below it): a run starts
   or ends at flat index ``(x0 + col) * H + y0 + row``; a run ending at the bottom of one column that meets one
   starting at the top of the next is joined (crops of full height). The counts are compressed by pycocotools
   (``frPyObjects`` of the uncompressed RLE, the same string code as ``encode``).

Entry points: :func:`segm_rles` (``get_seg_masks`` + ``encode_mask_results`` in one call),
:func:`simple_test_mask_rles` (``simple_test_mask`` with RLE output) and :func:`detect`, which gives what
``model(return_loss=False, rescale=True, **data)`` followed by ``encode_mask_results`` gives, for mmdet's
single-scale two-stage mask detectors (others take the stock path, so it is always safe to call).
"""

from __future__ import annotations

import contextlib
import types
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F

from mmdet.core import bbox2roi, encode_mask_results
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead
from mmdet.models.roi_heads.standard_roi_head import StandardRoIHead
from mmdet.models.roi_heads.test_mixins import MaskTestMixin

# "full" paste: pixels (padding included) per batch of boxes; about 60 bytes of device memory a pixel at the
# peak (the grid, the samples, the int64 pixel indices): 2**22 pixels, about 250 MB
BATCH_PIXELS = 2 ** 22
_SUPPORT_MARGIN = 2.0  # region = |u| < 1 + _SUPPORT_MARGIN / M; samples are non-zero only for |u| < 1 + 1 / M


# ---------------------------------------------------------------------------------------------------------------
# runs from crops


def counts_from_runs(det: np.ndarray, starts: np.ndarray, ends: np.ndarray, n: int, height: int, width: int,
                     ordered: bool = False) -> List[np.ndarray]:
    """Uncompressed COCO RLE counts of ``n`` full ``height x width`` masks from their runs of True.

    ``det, starts, ends``: for every run of True pixels within a column of a crop, its mask (``0..n-1``) and
    its first and one-past-last pixel as column-major flat indices of the full image (``col * height + row``),
    in increasing order within each mask (the masks in any order, unless ``ordered``). A run that ends where
    the next one starts (the bottom of a column and the top of the next) is joined to it. Counts alternate
    False / True runs starting with False (a leading 0 when the first pixel is True), with no trailing empty
    run, as pycocotools writes them.
    """
    total = height * width
    det = np.asarray(det, dtype=np.int64)
    if det.size:
        starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
        if not ordered:
            order = np.argsort(det, kind="stable")  # masks together, each one's runs kept in their order
            det, starts, ends = det[order], starts[order], ends[order]
        join = (ends[:-1] == starts[1:]) & (det[:-1] == det[1:])
        if join.any():
            starts, det = starts[np.r_[True, ~join]], det[np.r_[True, ~join]]
            ends = ends[np.r_[~join, True]]
        bounds = np.empty(2 * starts.size, np.int64)
        bounds[0::2], bounds[1::2] = starts, ends
        prev = np.empty_like(bounds)
        prev[0], prev[1:] = 0, bounds[:-1]
        prev[0::2][np.r_[True, det[1:] != det[:-1]]] = 0  # each mask's first run of False starts at pixel 0
        runs = bounds - prev
        per_mask = np.bincount(det, minlength=n) * 2
        last = np.r_[det[1:] != det[:-1], True]
        last_end = np.zeros(n, np.int64)
        last_end[det[last]] = ends[last]
    else:
        runs, per_mask, last_end = np.zeros(0, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    out = []
    at = 0
    for i, k in enumerate(per_mask.tolist()):
        if k == 0:
            out.append(np.array([total], np.int64))
            continue
        seg = runs[at:at + k]
        at += k
        tail = total - int(last_end[i])  # the last run of False, absent when the last pixel is True
        out.append(np.append(seg, tail) if tail else seg)
    return out


def _crop_runs(crop: np.ndarray, x0: int, y0: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the runs of True down the columns of a ``[h, w]`` bool crop at ``(x0, y0)``, as
    full-image column-major flat indices (see :func:`counts_from_runs`)."""
    h, w = crop.shape
    padded = np.zeros((w, h + 2), bool)  # a False row above and below each column
    padded[:, 1:h + 1] = crop.T
    flat = np.flatnonzero(padded[:, 1:] != padded[:, :-1])  # alternately a run's first row and one past its last
    col = flat // (h + 1)
    pos = (x0 + col) * height + y0 + (flat - col * (h + 1))
    return pos[0::2], pos[1::2]


def crop_rle_counts(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> np.ndarray:
    """Uncompressed COCO RLE counts of the ``height x width`` mask that is ``crop`` (``[h, w]`` bool) at
    ``(x0, y0)`` and False elsewhere; the crop must lie inside the image."""
    h, w = crop.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(f"crop {h}x{w} at ({x0}, {y0}) is not inside a {height}x{width} image")
    starts, ends = _crop_runs(np.asarray(crop, dtype=bool), x0, y0, height)
    return counts_from_runs(np.zeros(starts.size, np.int64), starts, ends, 1, height, width)[0]


def compress(counts: Sequence[np.ndarray], height: int, width: int) -> List[dict]:
    """COCO compressed RLEs (``{'size': [height, width], 'counts': bytes}``, as ``pycocotools.mask.encode``)."""
    if not counts:
        return []
    return mask_util.frPyObjects([{"size": [height, width], "counts": c} for c in counts], height, width)


# ---------------------------------------------------------------------------------------------------------------
# pasting


def _grid_coords(lo: torch.Tensor, hi: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """mmdet's normalised sampling coordinates ``(p + 0.5 - lo) / (hi - lo) * 2 - 1``, ``inf`` -> 0.

    ``lo, hi``: ``[n, 1]`` float32; ``pixels``: ``[n, m]`` or ``[m]`` integer pixel indices. The same
    operations in the same order as ``_do_paste_mask``, so each value is the same float."""
    u = (pixels.to(torch.float32) + 0.5 - lo) / (hi - lo) * 2 - 1
    return torch.where(torch.isinf(u), torch.zeros_like(u), u)


def _box_mode_rles(masks: torch.Tensor, bboxes: torch.Tensor, img_h: int, img_w: int,
                   threshold: float) -> List[np.ndarray]:
    """mmdet's CPU branch: each box pasted over the extent ``_do_paste_mask(skip_empty=True)`` gives it,
    ``[floor(x0) - 1, ceil(x1) + 1)`` clamped to the image, with one ``grid_sample`` per box on the same
    ``[1, h, w, 2]`` grid values (the coordinates of all boxes computed at once, by the same operations)."""
    n = masks.shape[0]
    device = masks.device
    x0, y0, x1, y1 = torch.split(bboxes, 1, dim=1)  # each [n, 1], as _do_paste_mask
    ex0 = torch.clamp(x0[:, 0].floor() - 1, min=0).to(torch.int32).to(torch.int64)
    ey0 = torch.clamp(y0[:, 0].floor() - 1, min=0).to(torch.int32).to(torch.int64)
    ex1 = torch.clamp(x1[:, 0].ceil() + 1, max=img_w).to(torch.int32).to(torch.int64)
    ey1 = torch.clamp(y1[:, 0].ceil() + 1, max=img_h).to(torch.int32).to(torch.int64)
    # boxes whose extent is empty or inverted (mmdet's torch.arange fails on the latter) are all False here
    ew = (ex1 - ex0).clamp(min=0)
    eh = (ey1 - ey0).clamp(min=0)
    gx = _grid_coords(x0, x1, ex0[:, None] + torch.arange(int(ew.max()), device=device))  # [n, max w]
    gy = _grid_coords(y0, y1, ey0[:, None] + torch.arange(int(eh.max()), device=device))  # [n, max h]
    masks = masks.to(dtype=torch.float32)
    dets, starts, ends = [], [], []
    for i, (x, y, w, h) in enumerate(zip(ex0.tolist(), ey0.tolist(), ew.tolist(), eh.tolist())):
        if h == 0 or w == 0:
            continue
        grid = torch.stack([gx[i:i + 1, None, :w].expand(1, h, w), gy[i:i + 1, :h, None].expand(1, h, w)], dim=3)
        crop = F.grid_sample(masks[i:i + 1], grid, align_corners=False)[0, 0] >= threshold
        s, e = _crop_runs(crop.cpu().numpy(), x, y, img_h)
        if s.size:
            dets.append(np.full(s.size, i, np.int64))
            starts.append(s)
            ends.append(e)
    if not dets:
        return counts_from_runs(np.zeros(0), np.zeros(0), np.zeros(0), n, img_h, img_w)
    return counts_from_runs(np.concatenate(dets), np.concatenate(starts), np.concatenate(ends), n, img_h, img_w,
                            ordered=True)


def _support(lo: torch.Tensor, hi: torch.Tensor, size: int, mask_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """``[n]`` start and end (exclusive) of the pixels along one axis where a full-image paste of each box can be
    non-zero (``start == end == 0`` when there are none)."""
    u = _grid_coords(lo, hi, torch.arange(size, device=lo.device))
    inside = ~(u.abs() >= 1 + _SUPPORT_MARGIN / mask_size)  # NaN counts as inside
    found = inside.any(1)
    first = inside.to(torch.uint8).argmax(1)
    last = size - inside.flip(1).to(torch.uint8).argmax(1)
    zero = torch.zeros_like(first)
    return torch.where(found, first, zero), torch.where(found, last, zero)


def _batches(area: np.ndarray, budget: int, slack: float = 1.25, small: int = 1 << 16) -> Iterator[np.ndarray]:
    """Indices of the non-empty regions, largest first, in batches of similar size: a batch's padded size
    (``len * its largest area``) stays within ``slack`` x its pixels (or ``small`` pixels more) and ``budget``
    (a region larger than the budget is a batch of its own)."""
    batch: List[int] = []
    top = total = 0
    for i in np.argsort(-area, kind="stable").tolist():
        a = int(area[i])
        if a == 0:
            break
        if batch and ((len(batch) + 1) * top > max(slack * (total + a), total + a + small)
                      or (len(batch) + 1) * top > budget):
            yield np.array(batch)
            batch, total = [], 0
        if not batch:
            top = a
        batch.append(i)
        total += a
    if batch:
        yield np.array(batch)


def _full_mode_rles(masks: torch.Tensor, bboxes: torch.Tensor, img_h: int, img_w: int, threshold: float,
                    budget: int = BATCH_PIXELS) -> List[np.ndarray]:
    """mmdet's GPU branch (every box pasted over the whole image), computed over each box's support only.

    The boxes go in batches of similar region size; in a batch, box ``i``'s region pixels are laid along one
    axis of the sampling grid (``[b, 1, L, 2]``) in column-major order, padded to the batch's largest region,
    so almost no pixel outside a region is sampled; the runs of True are found on the device and only their
    ends come to the host."""
    n, _, mh, mw = masks.shape
    device = masks.device
    x0, y0, x1, y1 = torch.split(bboxes, 1, dim=1)  # each [n, 1], as _do_paste_mask
    if threshold > 0:
        sx0, sx1 = _support(x0, x1, img_w, mw)
        sy0, sy1 = _support(y0, y1, img_h, mh)
    else:  # 0 >= 0: mmdet's pixels are True everywhere
        sx0, sy0 = (torch.zeros(n, dtype=torch.int64, device=device),) * 2
        sx1 = torch.full((n,), img_w, dtype=torch.int64, device=device)
        sy1 = torch.full((n,), img_h, dtype=torch.int64, device=device)
    region = torch.stack([sx0, sy0, sx1 - sx0, sy1 - sy0], 1)  # x, y, w, h: [n, 4] on the device
    area = (region[:, 2] * region[:, 3]).cpu().numpy()
    masks = masks.to(dtype=torch.float32)
    dets, starts, ends = [], [], []
    for idx in _batches(area, budget):
        sel = torch.from_numpy(idx).to(device)
        rx, ry, rw, rh = (t[:, None] for t in region[sel].unbind(1))  # each [b, 1]
        length = int(area[idx[0]])
        j = torch.arange(length, device=device)[None, :]
        col = torch.div(j, rh, rounding_mode="floor")
        row = j - col * rh
        valid = j < rw * rh
        grid = torch.stack([_grid_coords(x0[sel], x1[sel], rx + col), _grid_coords(y0[sel], y1[sel], ry + row)],
                           dim=2)[:, None]  # [b, 1, L, 2]
        v = F.grid_sample(masks[sel], grid, align_corners=False)[:, 0, 0] >= threshold
        del grid
        v &= valid
        # runs within each column of the region: a start where the pixel above (same column) is False, an
        # end after a pixel whose next one in the column is False
        above = torch.zeros_like(v)
        above[:, 1:] = v[:, :-1]
        above &= row > 0
        below = torch.zeros_like(v)
        below[:, :-1] = v[:, 1:]
        below &= row < rh - 1
        pos = (rx + col) * img_h + ry + row
        b_s, j_s = (v & ~above).nonzero(as_tuple=True)
        b_e, j_e = (v & ~below).nonzero(as_tuple=True)
        s, e = pos[b_s, j_s], pos[b_e, j_e] + 1
        dets.append(idx[b_s.cpu().numpy()])
        starts.append(s.cpu().numpy())
        ends.append(e.cpu().numpy())
    if not dets:
        return counts_from_runs(np.zeros(0), np.zeros(0), np.zeros(0), n, img_h, img_w)
    return counts_from_runs(np.concatenate(dets), np.concatenate(starts), np.concatenate(ends), n, img_h, img_w)


# ---------------------------------------------------------------------------------------------------------------
# mmdet's get_seg_masks / simple_test_mask / forward with RLE output


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
        counts = _box_mode_rles(mask_pred, bboxes, img_h, img_w, threshold)
    elif mode == "full":
        counts = _full_mode_rles(mask_pred, bboxes, img_h, img_w, threshold, budget)
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
