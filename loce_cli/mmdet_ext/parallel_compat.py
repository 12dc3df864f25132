"""mmcv 1.x's data parallelism on current torch: the GPU scatter's side stream, and one DDP wrapper for CPUs and GPUs.

``mmcv.parallel.MMDataParallel`` / ``MMDistributedDataParallel`` copy each CPU batch to the GPU on a side stream
taken from ``torch.nn.parallel._functions._get_stream(device)``, which mmcv calls with an ``int`` GPU index.
torch 2.x changed that helper to take a ``torch.device`` (it reads ``device.type``), so every CUDA training or
test step of mmdet 2.x dies with ``AttributeError: 'int' object has no attribute 'type'`` (seen on the lent H200
with torch 2.11; the CPU paths never scatter). :func:`install` gives mmcv a side-stream helper that accepts both
forms, with the old semantics: one cached copy stream per GPU, ``None`` for the CPU or without CUDA.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from typing import Dict, Optional, Union

import torch
from mmcv.parallel import MMDistributedDataParallel, scatter_kwargs
from torch.nn.parallel import DistributedDataParallel

_STREAMS: Dict[int, "torch.cuda.Stream"] = {}
_INSTALLED = False


def copy_stream(device: Union[int, torch.device, str]) -> Optional["torch.cuda.Stream"]:
    """The background stream for host-to-GPU copies to ``device`` (an index or a device); ``None`` off CUDA."""
    if isinstance(device, (str, torch.device)):
        device = torch.device(device)
        if device.type != "cuda":
            return None
        index = torch.cuda.current_device() if device.index is None and torch.cuda.is_available() else device.index
    else:
        index = int(device)
    if index is None or index < 0 or not torch.cuda.is_available():
        return None
    stream = _STREAMS.get(index)
    if stream is None:
        stream = _STREAMS[index] = torch.cuda.Stream(index)
    return stream


def install() -> None:
    """Point mmcv's scatter at :func:`copy_stream` (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    functions = importlib.import_module("mmcv.parallel._functions")
    functions._get_stream = copy_stream
    _INSTALLED = True


class LoceDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that runs on CPUs (gloo, no ``device_ids``) as on GPUs (NCCL, one device id).

    Args:
        module: the detector (parameters already frozen where they do not train: DDP registers gradient hooks
            only on parameters with ``requires_grad``, so frozen ones are neither reduced nor waited for).
        device_ids: ``[gpu]`` on CUDA, ``None`` on the CPU.
        anchor_params: add ``0 * sum_p p[0, ..., 0]`` over the trainable parameters to the training loss, so
            that each of them has a (zero) gradient on every rank whatever this rank's batch held; without it a
            parameter that some rank's graph skipped would leave DDP waiting (``find_unused_parameters=False``)
            or, with ``find_unused_parameters=True``, cost a graph traversal per step.
        **kwargs: ``broadcast_buffers`` (default ``False``: the LOCE memory is per-rank and several GB; the
            mean scores are kept equal by the tracker's own all-gather), ``find_unused_parameters``,
            ``bucket_cap_mb``... as torch's DDP.
    """

    def __init__(self, module: torch.nn.Module, device_ids=None, anchor_params: bool = True, **kwargs):
        kwargs.setdefault("broadcast_buffers", False)
        with warnings.catch_warnings():
            # torch 2.14 deprecates broadcast_buffers for forward_sync_buffers, but forward_sync_buffers=False
            # still broadcasts every buffer once at construction, the memory included: keep broadcast_buffers
            warnings.filterwarnings("ignore", message=r".*broadcast_buffers.*", category=FutureWarning)
            super().__init__(module, device_ids=device_ids, **kwargs)
        self.anchor_params = anchor_params
        self._anchored = [p for p in module.parameters() if p.requires_grad and p.numel()]
        self._method: Optional[str] = None

    # -- inputs ------------------------------------------------------------------------------------------------
    def scatter_inputs(self, inputs: tuple, kwargs: dict):
        """Open mmcv ``DataContainer``\ s and move tensors to this rank's device (the CPU without device ids)."""
        target = [self.device_ids[0]] if self.device_ids else [-1]
        inputs, kwargs = scatter_kwargs(inputs, kwargs, target, dim=self.dim)
        return (inputs[0] if inputs else ()), (kwargs[0] if kwargs else {})

    # -- steps -------------------------------------------------------------------------------------------------
    def _call(self, method: str, inputs: tuple, kwargs: dict):
        inputs, kwargs = self.scatter_inputs(inputs, kwargs)
        self._method = method
        try:
            return DistributedDataParallel.forward(self, *inputs, **kwargs)
        finally:
            self._method = None

    def train_step(self, *inputs, **kwargs):
        return self._call("train_step", inputs, kwargs)

    def val_step(self, *inputs, **kwargs):
        return self._call("val_step", inputs, kwargs)

    def forward(self, *inputs, **kwargs):
        return self._call("forward", inputs, kwargs)

    def _run_ddp_forward(self, *inputs, **kwargs):
        """Called by ``DistributedDataParallel.forward`` between its pre- and post-forward steps."""
        method = self._method or "forward"
        fn = self.module if method == "forward" else getattr(self.module, method)
        inside = getattr(self, "_inside_ddp_forward", None)
        with inside() if inside is not None else contextlib.nullcontext():
            output = fn(*inputs, **kwargs)
        if method == "train_step" and self.anchor_params and torch.is_grad_enabled() and isinstance(output, dict) \
                and torch.is_tensor(output.get("loss")):
            output = dict(output, loss=output["loss"] + self.anchor())
        return output

    def anchor(self) -> torch.Tensor:
        """A zero that depends on every trainable parameter (one element of each): added to the loss, it gives
        each of them a gradient (zero where the batch did not use it) on every rank, so DDP's reduction always
        completes and all ranks apply the same update. Cost: one view per parameter, one stack, one sum."""
        if not self._anchored:
            return torch.zeros(())
        return torch.stack([p[(0,) * p.dim()].float() for p in self._anchored]).sum() * 0.0
