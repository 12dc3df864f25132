"""The backbone's pretrained weights: where a config's ``torchvision://`` / ``open-mmlab://`` name resolves to (the
URL, the file name and the folder torch's hub caches it in), whether it is cached, the one-line error when it cannot
be fetched, leaving it out when a checkpoint will replace every weight, and checking a local file against the
backbone (``loce train base --backbone-weights PATH``)."""

from __future__ import annotations

import os
import socket
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch
from mmcv.runner.checkpoint import get_deprecated_model_names, get_external_models, get_torchvision_models
from mmdet.models import build_backbone

from loce_cli.core.checkpoint_io import load_checkpoint_file
from loce_cli.errors import DataError

SCHEMES = ("torchvision://", "modelzoo://", "open-mmlab://", "openmmlab://")


@dataclass(frozen=True)
class BackboneWeights:
    """Where a config's backbone weights come from: ``name`` as the config gives it, the ``url`` it resolves to,
    and ``path``: the file torch's hub reads it from (``$TORCH_HOME/hub/checkpoints/<file name>``)."""

    name: str
    url: str
    path: Path

    @property
    def cached(self) -> bool:
        return self.path.is_file()


def weights_name(model_cfg) -> Optional[str]:
    """The backbone's pretrained checkpoint a model config names (``backbone.init_cfg.checkpoint`` or mmdet 2.8's
    model-level ``pretrained``), or None."""
    init_cfg = (model_cfg.get("backbone") or {}).get("init_cfg")
    if isinstance(init_cfg, dict) and init_cfg.get("type") == "Pretrained" and init_cfg.get("checkpoint"):
        return str(init_cfg["checkpoint"])
    pretrained = model_cfg.get("pretrained")
    return str(pretrained) if isinstance(pretrained, str) and pretrained else None


def resolve(name: Optional[str]) -> Optional[BackboneWeights]:
    """The URL and cache file of a ``torchvision://`` / ``open-mmlab://`` name, resolved as mmcv and torch do;
    None for a local path, a plain URL or an unknown name."""
    if not name or not name.startswith(SCHEMES):
        return None
    model = name.split("://", 1)[1]
    if name.startswith(("torchvision://", "modelzoo://")):
        url = get_torchvision_models().get(model.lower().replace("_weights", ""))
    else:
        model = get_deprecated_model_names().get(model, model)
        url = get_external_models().get(model)
    if not url or not url.startswith(("http://", "https://")):
        return None
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return BackboneWeights(name, url, folder / os.path.basename(urlparse(url).path))


def drop_pretrained(model_cfg) -> None:
    """Leave the backbone's pretrained weights out of ``model_cfg`` (in place): a checkpoint loaded next replaces
    every weight, so there is nothing to fetch."""
    if model_cfg.get("pretrained") is not None:
        model_cfg.pretrained = None
    backbone = model_cfg.get("backbone")
    if backbone is not None and backbone.get("init_cfg") is not None:
        backbone.init_cfg = None


def _offline(error: BaseException) -> bool:
    seen = error
    while seen is not None:
        if isinstance(seen, (urllib.error.URLError, socket.error, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def init_weights(model, model_cfg) -> None:
    """``model.init_weights()``; a backbone download that fails becomes one line naming the URL, the file name and
    the folder to put it in, or ``--backbone-weights``."""
    try:
        model.init_weights()
    except Exception as e:
        weights = resolve(weights_name(model_cfg))
        if weights is None or not _offline(e):
            raise
        raise DataError(f"cannot download the backbone weights {weights.name} from {weights.url} ({e})",
                        f"put {weights.path.name} into {weights.path.parent}/ (or pass --backbone-weights PATH)") \
            from None


def check_weights_file(path: Path, backbone_cfg) -> None:
    """Refuse a local backbone weights file whose keys or shapes do not fit the config's backbone, naming the first
    mismatch (a classifier's extra keys, e.g. torchvision's ``fc.*``, are ignored as mmcv's loader ignores them)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"backbone weights {path} do not exist", "pass the file of the backbone's pretrained weights")
    ckpt = load_checkpoint_file(path, map_location="cpu")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise DataError(f"{path} is not a weights file (holds a {type(ckpt).__name__})",
                        "pass a state_dict saved with torch.save, e.g. torchvision's resnet50-0676ba61.pth")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    cfg = dict(backbone_cfg)
    cfg["init_cfg"] = None
    want = build_backbone(cfg).state_dict()
    for key, tensor in want.items():
        if key.endswith("num_batches_tracked"):
            continue
        if key not in state:
            raise DataError(f"{path} does not fit the {cfg.get('type')} backbone: it has no {key}",
                            "pass the weights of the config's backbone (e.g. torchvision's for ResNet)")
        have = tuple(getattr(state[key], "shape", ()))
        if have != tuple(tensor.shape):
            raise DataError(f"{path} does not fit the {cfg.get('type')} backbone: {key} has shape {list(have)}, the "
                            f"backbone needs {list(tensor.shape)}",
                            "pass the weights of the config's backbone (same depth and widths)")


def use_weights_file(model_cfg, path: Path) -> None:
    """Initialise ``model_cfg``'s backbone from the local file ``path`` (in place) instead of a download."""
    model_cfg.pretrained = None
    model_cfg.backbone.init_cfg = dict(type="Pretrained", checkpoint=str(Path(path).resolve()))
