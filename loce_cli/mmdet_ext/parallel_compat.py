"""mmcv 1.x's data-parallel scatter on current torch.

``mmcv.parallel.MMDataParallel`` / ``MMDistributedDataParallel`` copy each CPU batch to the GPU on a side stream
taken from ``torch.nn.parallel._functions._get_stream(device)``, which mmcv calls with an ``int`` GPU index.
torch 2.x changed that helper to take a ``torch.device`` (it reads ``device.type``), so every CUDA training or
test step of mmdet 2.x dies with ``AttributeError: 'int' object has no attribute 'type'`` (seen on the lent H200
with torch 2.11; the CPU paths never scatter). :func:`install` gives mmcv a side-stream helper that accepts both
forms, with the old semantics: one cached copy stream per GPU, ``None`` for the CPU or without CUDA.
"""

from __future__ import annotations

from typing import Dict, Optional, Union

import torch

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
    import importlib

    functions = importlib.import_module("mmcv.parallel._functions")
    functions._get_stream = copy_stream
    _INSTALLED = True
