"""mmcv's compiled RoIAlign and NMS under autocast: half-precision inputs computed in fp32.

Under ``torch.autocast`` the FPN features and the RPN's boxes come out in bf16 / fp16, and mmcv-full 1.7's CPU
kernels of RoIAlign and NMS accept fp32 only ("expected scalar type Float but found BFloat16"). Autocast does not
know mmcv's ops, so :func:`install` wraps them, under mmcv's own functions (the chain of
:mod:`loce_cli.mmdet_ext.cuda_ops`'s wrappers stays underneath): inputs in a half type are computed in fp32 and
the results written back in the caller's dtype (RoIAlign's output and gradient buffers are allocated by mmcv in the
input's dtype). fp32 inputs pass through untouched, so nothing changes outside autocast.
"""

from __future__ import annotations

import torch

from loce_cli.mmdet_ext.cuda_ops import wrap_ext_ops

_HALF = (torch.float16, torch.bfloat16)
_INSTALLED = False


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.float() if t.dtype in _HALF else t


def _roi_align_forward(original):
    def forward(input, rois, output, argmax_y, argmax_x, **kw):
        if input.dtype not in _HALF and rois.dtype not in _HALF:
            return original(input, rois, output, argmax_y, argmax_x, **kw)
        out = torch.zeros(output.shape, dtype=torch.float32, device=output.device)
        ay, ax = _f32(argmax_y), _f32(argmax_x)
        original(_f32(input), _f32(rois), out, ay, ax, **kw)
        output.copy_(out)
        if ay is not argmax_y:  # max pooling: the arg positions too
            argmax_y.copy_(ay)
            argmax_x.copy_(ax)
        return None

    return forward


def _roi_align_backward(original):
    def backward(grad_output, rois, argmax_y, argmax_x, grad_input, **kw):
        if grad_output.dtype not in _HALF and rois.dtype not in _HALF and grad_input.dtype not in _HALF:
            return original(grad_output, rois, argmax_y, argmax_x, grad_input, **kw)
        grad = torch.zeros(grad_input.shape, dtype=torch.float32, device=grad_input.device)
        original(_f32(grad_output).contiguous(), _f32(rois), _f32(argmax_y), _f32(argmax_x), grad, **kw)
        grad_input.copy_(grad)
        return None

    return backward


def _nms(original):
    def nms(bboxes, scores, iou_threshold, offset=0):
        return original(_f32(bboxes), _f32(scores), iou_threshold=iou_threshold, offset=offset)

    return nms


def install() -> None:
    """Wrap mmcv's RoIAlign / NMS kernels so that half-precision inputs are computed in fp32 (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    wrap_ext_ops(_roi_align_forward, _roi_align_backward, _nms)
    _INSTALLED = True
