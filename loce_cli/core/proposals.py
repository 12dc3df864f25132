"""Jittered boxes around ground truths: the RoIs whose features LOCE stores in its memory."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

NUM_JITTERS = 16
MAX_OFFSET = 1.0 / 6.0


def _sign_patterns(device, dtype) -> torch.Tensor:
    """``[16, 4]``: all sign patterns of (x1, y1, x2, y2)."""
    bits = torch.arange(NUM_JITTERS, device=device).unsqueeze(1).bitwise_right_shift(
        torch.arange(4, device=device)).bitwise_and(1)
    return (bits * 2 - 1).to(dtype)


def jitter_boxes(gt_bboxes: torch.Tensor, img_shape: Sequence[int],
                 generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """16 jittered copies of each ground-truth box, clamped to the image.

    Offsets are ``(1/6) * sign * U(0, 1) * (w, h, w, h)`` for the 16 sign patterns of (x1, y1, x2, y2).

    Args:
        gt_bboxes: ``[n, 4]`` boxes ``(x1, y1, x2, y2)``.
        img_shape: ``(height, width, ...)`` of the (resized) image the boxes live in.

    Returns:
        ``(boxes [16 * n, 4], gt_index [16 * n])``; the boxes of ground truth ``i`` are rows ``16 i .. 16 i + 15``.
    """
    n = gt_bboxes.shape[0]
    device, dtype = gt_bboxes.device, gt_bboxes.dtype
    if n == 0:
        return gt_bboxes.new_zeros((0, 4)), torch.zeros((0,), dtype=torch.long, device=device)
    wh = (gt_bboxes[:, 2:] - gt_bboxes[:, :2]).repeat(1, 2)  # [n, 4] = (w, h, w, h)
    u = torch.rand((n, NUM_JITTERS, 4), device=device, dtype=dtype, generator=generator)
    offsets = MAX_OFFSET * _sign_patterns(device, dtype).unsqueeze(0) * u * wh.unsqueeze(1)
    boxes = (gt_bboxes.unsqueeze(1) + offsets).reshape(-1, 4)
    h, w = float(img_shape[0]), float(img_shape[1])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
    gt_index = torch.arange(n, device=device).repeat_interleave(NUM_JITTERS)
    return boxes, gt_index
