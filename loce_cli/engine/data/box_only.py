"""Box-only data (annotations without ``segmentation``, as many COCO exports are) against a config with a mask head.

mmdet's mask loader fails on such annotations inside the data loader with an error about the image, long after the
run started. ``check_masks_for_config`` refuses the run before any process starts, naming the Faster R-CNN config
that trains on boxes alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from loce_cli.engine.config.loading import train_dataset_cfg
from loce_cli.engine.json_files import decode_json, gc_paused
from loce_cli.errors import DataError

PARSE_LIMIT = 256 * 1024 * 1024  # bytes: larger files are not parsed for this check
BOX_CONFIGS = {  # (family, stage) -> the shipped Faster R-CNN config
    ("synthetic", "base"): "synthetic/faster_rcnn_r18_fpn_synth",
    ("synthetic", "finetune"): "synthetic/loce_faster_rcnn_r18_fpn_synth",
    ("lvis", "base"): "lvis/faster_rcnn_r50_fpn_2x_lvis_v1",
    ("lvis", "finetune"): "lvis/loce_faster_rcnn_r50_fpn_6e_lvis_v1",
}


def model_has_masks(cfg: Any) -> bool:
    """Whether the config's model has a mask head."""
    roi = (cfg.get("model") or {}).get("roi_head") or {}
    return roi.get("mask_head") is not None


def annotations_have_masks(ann_file: Path) -> Optional[bool]:
    """Whether any annotation of ``ann_file`` carries a non-empty ``segmentation``; None when the file cannot be told
    (unreadable, not JSON, larger than ``PARSE_LIMIT``, or without annotations)."""
    try:
        if Path(ann_file).stat().st_size > PARSE_LIMIT:
            return None
        with gc_paused():
            data = decode_json(Path(ann_file).read_bytes())
    except (OSError, ValueError):
        return None
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list) or not anns:
        return None
    return any(isinstance(a, dict) and bool(a.get("segmentation")) for a in anns)


def box_config_for(cfg: Any, stage: str) -> str:
    """The shipped Faster R-CNN config of the same family (synthetic R18 or LVIS R50) and stage."""
    depth = ((cfg.get("model") or {}).get("backbone") or {}).get("depth")
    family = "synthetic" if depth == 18 else "lvis"
    return BOX_CONFIGS[(family, "finetune" if stage == "finetune" else "base")]


def check_masks_for_config(cfg: Any, config: Any, stage: str) -> None:
    """Refuse (``DataError``) a config with a mask head whose training annotations carry no segmentation."""
    if not model_has_masks(cfg):
        return
    train = train_dataset_cfg(cfg)
    ann = train.get("ann_file")
    if not isinstance(ann, str) or annotations_have_masks(Path(ann)) is not False:
        return
    target = box_config_for(cfg, stage)
    raise DataError(f"{ann} has boxes only (no annotation carries a segmentation), but {Path(str(config)).name} is a "
                    f"Mask R-CNN config (it has a mask head)",
                    f"train a box-only model: {target} (loce configs lists them)")
