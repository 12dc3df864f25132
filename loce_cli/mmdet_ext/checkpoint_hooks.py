"""Routes every checkpoint load inside mmcv 1.x / mmdet 2.x through loce's one loader
(:func:`loce_cli.core.checkpoint_io.load_checkpoint_file`, ``weights_only=True`` always).

mmcv's ``load_checkpoint`` (used by ``runner.load_checkpoint``, ``runner.resume``, mmdet's ``init_detector`` and
``init_cfg=dict(type='Pretrained')``) picks a loader by URL scheme and each calls ``torch.load`` without
``weights_only``, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns them into pickle loads. :func:`install`
(called when :mod:`loce_cli.mmdet_ext` is imported; idempotent):

- registers loce's loader for local paths (the ``''`` scheme),
- replaces the ``load_url`` that the http(s) / torchvision / open-mmlab / mmcls schemes call by a download into
  torch's hub cache followed by loce's loader,
- gives ``mmcv.runner.checkpoint`` a ``torch`` whose ``load`` is loce's (the remaining pavi / s3 / open-mmlab
  local-file loaders), everything else being torch itself.
"""

from __future__ import annotations

import os
import types
from typing import Any
from urllib.parse import urlparse

import torch
from mmcv.runner import checkpoint as mmcv_checkpoint
from torch.hub import HASH_REGEX, download_url_to_file, get_dir

from loce_cli.core.checkpoint_io import load_checkpoint_file

_INSTALLED = False


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmcv's local-path scheme (the name is what mmcv logs: 'load checkpoint from local path')."""
    return load_checkpoint_file(filename, map_location=map_location)


def _load_url(url: str, model_dir: str = None, map_location: Any = None, progress: bool = True,
              check_hash: bool = False, file_name: str = None, **_ignored: Any) -> Any:
    """torch.hub's download-and-cache, then loce's loader on the cached file."""
    model_dir = model_dir or os.path.join(get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir, file_name or os.path.basename(urlparse(url).path))
    if not os.path.exists(cached):
        match = HASH_REGEX.search(os.path.basename(cached)) if check_hash else None
        download_url_to_file(url, cached, match.group(1) if match else None, progress=progress)
    return load_checkpoint_file(cached, map_location=map_location)


def _safe_load(f: Any, map_location: Any = None, **_ignored: Any) -> Any:
    """``torch.load`` as mmcv calls it, weights only: paths through loce's loader, buffers directly."""
    if isinstance(f, (str, os.PathLike)):
        return load_checkpoint_file(f, map_location=map_location)
    return torch.load(f, map_location=map_location, weights_only=True)


class _TorchWithSafeLoad(types.ModuleType):
    """``torch`` for mmcv's checkpoint module: every attribute is torch's, except ``load``."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.load = _safe_load

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def install() -> None:
    global _INSTALLED
    if _INSTALLED:
        return
    mmcv_checkpoint.CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
    mmcv_checkpoint.load_url = _load_url
    mmcv_checkpoint.torch = _TorchWithSafeLoad()
    _INSTALLED = True
