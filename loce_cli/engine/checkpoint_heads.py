"""Refusing a checkpoint whose heads are of another kind than the config's, before training or inference: a mask
head trained as mmdet's standard ``FCNMaskHead`` has the same parameter names as loce's normed (cosine) mask head, so
it would load silently and predict other masks; a sigmoid or normed-linear classifier read as a softmax one likewise.
The checkpoint's kinds come from its ``meta['config']`` (written by mmdet and loce alike), read without running it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from loce_cli.core.config_text import config_variable
from loce_cli.engine.checkpoints import meta
from loce_cli.errors import DataError

NORMED_MASK_HEADS = ("NormedMaskHead", "FCNNormMaskHead")  # loce's name, the LOCE authors' name
STANDARD_MASK_HEADS = ("FCNMaskHead",)
SIGMOID_LOSSES = ("EQLv2Loss", "EQLv2", "FederatedLoss", "FocalLoss")
STANDARD_MASK_CONFIG = "lvis/loce_mask_rcnn_r50_fpn_6e_lvis_v1"  # LOCE with the standard mask head (zoo models)
NORMED_MASK_CONFIG = "lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1"


def mask_head_kind(mask_head) -> Optional[str]:
    """'normed' or 'standard' for the mask heads loce knows, None otherwise."""
    kind = (mask_head or {}).get("type") if hasattr(mask_head, "get") else None
    if kind in NORMED_MASK_HEADS:
        return "normed"
    return "standard" if kind in STANDARD_MASK_HEADS else None


def classifier_kind(bbox_head) -> Optional[str]:
    """'normed-linear', 'sigmoid' or 'softmax': how a box head's classifier scores classes; None when unknown."""
    if not hasattr(bbox_head, "get"):
        return None
    predictor = bbox_head.get("cls_predictor_cfg") or {}
    if hasattr(predictor, "get") and predictor.get("type") == "NormedLinear":
        return "normed-linear"
    loss = bbox_head.get("loss_cls") or {}
    if not hasattr(loss, "get"):
        return None
    return "sigmoid" if loss.get("use_sigmoid") or loss.get("type") in SIGMOID_LOSSES else "softmax"


def _roi_head(model) -> dict:
    head = model.get("roi_head") if hasattr(model, "get") else None
    return head if hasattr(head, "get") else {}


def _describe(head, kind: str) -> str:
    return f"{head.get('type')} ({kind})"


def check_head_types(ckpt: dict, cfg, checkpoint: Path, config: str) -> None:
    """Refuse ``checkpoint`` when its mask head or classifier (from its meta's config) is of another kind than
    ``cfg``'s, naming both types and the config to use; checkpoints without a readable config pass."""
    text = meta(ckpt).get("config")
    model = config_variable(text, "model") if isinstance(text, str) else None
    if not hasattr(model, "get"):
        return
    have, want = _roi_head(model), _roi_head(cfg.model)
    have_mask, want_mask = have.get("mask_head"), want.get("mask_head")
    have_kind, want_kind = mask_head_kind(have_mask), mask_head_kind(want_mask)
    if have_kind and want_kind and have_kind != want_kind:
        if have_kind == "standard":
            use = (f"a config with the standard mask head: {STANDARD_MASK_CONFIG} to fine-tune into LOCE, or "
                   f"--cfg-options model.roi_head.mask_head.type=FCNMaskHead")
        else:
            use = (f"a config with the normed mask head: {NORMED_MASK_CONFIG}, or --cfg-options "
                   f"model.roi_head.mask_head.type=NormedMaskHead")
        raise DataError(f"{checkpoint} was trained with mask head {_describe(have_mask, have_kind)} but {config} "
                        f"has {_describe(want_mask, want_kind)}: its weights would load into a head that computes "
                        f"other masks", f"use {use}")
    have_cls, want_cls = classifier_kind(have.get("bbox_head")), classifier_kind(want.get("bbox_head"))
    if have_cls in ("sigmoid", "normed-linear") and want_cls == "softmax":
        theirs = have["bbox_head"]
        what = (theirs.get("cls_predictor_cfg") or {}).get("type") if have_cls == "normed-linear" \
            else (theirs.get("loss_cls") or {}).get("type")
        ours = (want["bbox_head"].get("loss_cls") or {}).get("type")
        raise DataError(f"{checkpoint} was trained with a {have_cls} classifier ({what}) but {config} has a softmax "
                        f"one ({ours}): its scores would be read wrongly",
                        "use a config whose classifier matches: the checkpoint's own config (mmdet's, e.g. "
                        "mask_rcnn_r50_fpn_normed_seesaw_2x_lvis_v1 for Seesaw models) or an eqlv2_/federated_ one "
                        "for sigmoid classifiers")
