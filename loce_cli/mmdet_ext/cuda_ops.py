"""RoIAlign and NMS on CUDA tensors with an mmcv-full built without CUDA ops.

Building mmcv-full 1.x with CUDA takes long and breaks easily against current torch/CUDA releases. Mask R-CNN in
mmdet 2.x needs only two of its compiled ops on the GPU: RoIAlign (the RoI extractors and the mask targets) and
NMS (RPN proposals, test-time detections). torchvision ships CUDA kernels of both with every torch build, and its
RoIAlign follows the same sampling rule as mmcv's (its output is bit-identical on the CPU, tested). So when mmcv
reports no CUDA support, :func:`install` routes those two ops on CUDA tensors to torchvision, under mmcv's own
functions: ``mmcv.ops.RoIAlign``, ``mmcv.ops.roi_align``, ``mmcv.ops.nms`` and ``batched_nms`` keep their
signatures, gradients flow as before, and nothing changes on the CPU or with a CUDA build of mmcv.

Not covered (a clear error instead): RoIAlign with ``pool_mode='max'`` on CUDA (no such mode in torchvision);
every other mmcv op (not used by the Mask R-CNN configs here).
"""

from __future__ import annotations

import functools
import importlib

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from mmcv.ops import get_compiling_cuda_version

_INSTALLED = False
# Tests set this to route CPU tensors through torchvision too (to compare with mmcv's CPU kernels).
ROUTE_CPU = False


@functools.lru_cache(maxsize=1)
def mmcv_has_cuda_ops() -> bool:
    """Whether the installed mmcv-full was compiled with its CUDA kernels."""
    try:
        return get_compiling_cuda_version() not in ("", "not available")
    except Exception:  # an mmcv without compiled ops at all
        return False


def _routed(t: torch.Tensor) -> bool:
    return ROUTE_CPU or (t.is_cuda and not mmcv_has_cuda_ops())


class _ExtProxy:
    """Stands in for mmcv's compiled ``_ext`` module inside one mmcv.ops module: named functions are wrapped,
    every other attribute is the original."""

    def __init__(self, ext, **wrapped):
        self._ext = ext
        self.__dict__.update(wrapped)

    def __getattr__(self, name):
        return getattr(self._ext, name)


def _roi_align_forward(original):
    def forward(input, rois, output, argmax_y, argmax_x, **kw):
        if not _routed(input):
            return original(input, rois, output, argmax_y, argmax_x, **kw)
        if kw["pool_mode"] != 1:
            raise RuntimeError("RoIAlign with pool_mode='max' on CUDA needs mmcv-full built with CUDA ops "
                               "(LOCE_CUDA=1 scripts/dev/setup.sh); 'avg' runs on torchvision's kernel")
        output.copy_(torch.ops.torchvision.roi_align(input, rois, float(kw["spatial_scale"]), int(kw["aligned_height"]),
                                                     int(kw["aligned_width"]), int(kw["sampling_ratio"]),
                                                     bool(kw["aligned"])))
        return None

    return forward


def _roi_align_backward(original):
    def backward(grad_output, rois, argmax_y, argmax_x, grad_input, **kw):
        if not _routed(grad_output):
            return original(grad_output, rois, argmax_y, argmax_x, grad_input, **kw)
        n, c, h, w = grad_input.shape
        grad_input.copy_(torch.ops.torchvision._roi_align_backward(
            grad_output, rois, float(kw["spatial_scale"]), int(kw["aligned_height"]), int(kw["aligned_width"]),
            n, c, h, w, int(kw["sampling_ratio"]), bool(kw["aligned"])))
        return None

    return backward


def _nms(original):
    def nms(bboxes, scores, iou_threshold, offset=0):
        if _routed(bboxes):
            if offset:
                # mmdet v1's +1 box convention: the same IoU as torchvision's on boxes grown by 1 at x2, y2
                bboxes = torch.cat([bboxes[:, :2], bboxes[:, 2:] + offset], dim=1)
            return torch.ops.torchvision.nms(bboxes, scores, float(iou_threshold))
        return original(bboxes, scores, iou_threshold=iou_threshold, offset=offset)

    return nms


def wrap_ext_ops(roi_align_forward, roi_align_backward, nms) -> None:
    """Put wrappers around mmcv's compiled RoIAlign forward / backward and NMS, under mmcv's own functions: each
    argument makes the wrapper from the current kernel (a wrapper installed earlier stays underneath)."""
    # the modules (mmcv.ops re-exports functions of the same names)
    roi_align_module = importlib.import_module("mmcv.ops.roi_align")
    nms_module = importlib.import_module("mmcv.ops.nms")
    ext = roi_align_module.ext_module
    roi_align_module.ext_module = _ExtProxy(ext, roi_align_forward=roi_align_forward(ext.roi_align_forward),
                                           roi_align_backward=roi_align_backward(ext.roi_align_backward))
    ext = nms_module.ext_module
    nms_module.ext_module = _ExtProxy(ext, nms=nms(ext.nms))


def install() -> None:
    """Route RoIAlign / NMS on CUDA tensors to torchvision when mmcv has no CUDA ops (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    wrap_ext_ops(_roi_align_forward, _roi_align_backward, _nms)
    _INSTALLED = True
