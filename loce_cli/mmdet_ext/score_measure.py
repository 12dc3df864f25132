"""Per-class mean classification scores of any Mask R-CNN checkpoint measured on a config's training data: LOCE's
indicator (the paper's), computed without training. For each ground-truth box of each image of the class-balanced
list LOCE's memory initialisation reads (``queue_size // 16`` images per class): the mean, over the RoIs the
train-cfg assigner and sampler make positives of that box, of the softmax probability of its class. A class's
score is the mean over its boxes. Memory stays bounded: one image at a time, two floats per class."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import time
from typing import Callable, List, Optional, Tuple

import torch
from mmcv.parallel import collate
from mmdet.core import bbox2roi
from mmdet.datasets import build_dataset
from mmdet.models import build_detector

from loce_cli.core.checkpoint_io import load_checkpoint_file
from loce_cli.core.sampling import class_balanced_indices
from loce_cli.mmdet_ext.unwrap import image_labels, unwrap_dataset


def measuring_model(cfg, checkpoint, device: str = "cpu"):
    """The detector of ``cfg`` with its training assigner and sampler, the weights of ``checkpoint`` (non-strict:
    a base checkpoint has no tracker or memory), in eval mode; a one-slot memory for a LOCE head (never read).
    Returns ``(model, missing keys, unexpected keys)``."""
    model_cfg = copy.deepcopy(cfg.model)
    if "pretrained" in model_cfg:
        model_cfg.pretrained = None
    if "init_cfg" in model_cfg.get("backbone", {}):
        model_cfg.backbone.init_cfg = None
    if isinstance(model_cfg.get("roi_head", {}).get("memory"), dict):
        model_cfg.roi_head.memory["queue_size"] = 1
    model_cfg.pop("trainable", None)
    model = build_detector(model_cfg)
    ckpt = load_checkpoint_file(checkpoint, map_location="cpu", mmap=True)
    state = {k[len("module."):] if k.startswith("module.") else k: v
             for k, v in ckpt.get("state_dict", ckpt).items()}
    state = {k: v for k, v in state.items() if not k.startswith(("roi_head.memory.", "roi_head.bbox_head.score"))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("roi_head.memory.", "roi_head.bbox_head.score"))]
    return model.to(device).eval(), missing, list(unexpected)


def build_training_dataset(dataset_cfg):
    """The training set of a config (its own training pipeline), as the memory initialisation reads it."""
    return build_dataset(dataset_cfg)


def measure_list(dataset, images_per_class: int, seed: int = 0) -> List[int]:
    """The class-balanced image list (as the memory initialisation's, :func:`class_balanced_indices`)."""
    return class_balanced_indices(image_labels(unwrap_dataset(dataset)), images_per_class, seed=seed)


@torch.no_grad()
def gt_score_pairs(detector, batch: dict, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image's ``(labels [G'], mean probabilities [G'])`` for its ground truths with positive RoIs."""
    img = batch["img"].data[0].to(device)
    metas = batch["img_metas"].data[0]
    gt_bboxes = [b.to(device) for b in batch["gt_bboxes"].data[0]]
    gt_labels = [lab.to(device) for lab in batch["gt_labels"].data[0]]
    feats = detector.extract_feat(img)
    proposal_cfg = (detector.train_cfg or {}).get("rpn_proposal", detector.test_cfg.rpn)
    proposals = detector.rpn_head.get_bboxes(*detector.rpn_head(feats), img_metas=metas, cfg=proposal_cfg)
    roi_head = detector.roi_head
    assign = roi_head.bbox_assigner.assign(proposals[0], gt_bboxes[0], None, gt_labels[0])
    sample = roi_head.bbox_sampler.sample(assign, proposals[0], gt_bboxes[0], gt_labels[0],
                                          feats=[lvl[0][None] for lvl in feats])
    num_pos = sample.pos_bboxes.shape[0]
    if num_pos == 0:
        return gt_labels[0][:0], torch.zeros(0, device=device)
    rois = bbox2roi([sample.pos_bboxes])
    bbox_feats = roi_head.bbox_roi_extractor(feats[:roi_head.bbox_roi_extractor.num_inputs], rois)
    cls_score, _ = roi_head.bbox_head(bbox_feats)
    probs = torch.softmax(cls_score.float(), dim=1)
    gt_of = sample.pos_assigned_gt_inds
    labels = gt_labels[0][gt_of]
    own = probs[torch.arange(num_pos, device=device), labels]
    num_gt = gt_labels[0].shape[0]
    sums = torch.zeros(num_gt, device=device).index_add_(0, gt_of, own)
    counts = torch.zeros(num_gt, device=device).index_add_(0, gt_of, torch.ones_like(own))
    has = counts > 0
    return gt_labels[0][has], sums[has] / counts[has]


def return_freed_memory() -> None:
    """Hand the memory freed by one image back to the system (glibc's ``malloc_trim``; nothing elsewhere). The
    multi-scale training pipeline gives every image other tensor sizes, and glibc keeps the freed blocks of one
    size fragmented in its heap: measured at LVIS v1 shape (R50, 1333 x 640-800), RSS grew from 1.9 GB after 10
    images to 3.2 GB after 60 without it (bench/bench_measure_scores.py)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


@torch.no_grad()
def measure_scores(detector, dataset, indices: List[int], seed: int = 0,
                   progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """Per-class ``sums`` and ``counts`` (tensors ``[C]``, on the CPU) of the per-box means over ``indices`` of
    ``dataset`` (its own training pipeline), ``images`` read and ``seconds``."""
    base = unwrap_dataset(dataset)
    device = next(detector.parameters()).device
    num_classes = detector.roi_head.bbox_head.num_classes
    sums = torch.zeros(num_classes, dtype=torch.float64)
    counts = torch.zeros(num_classes, dtype=torch.float64)
    torch.manual_seed(seed)
    start = time.perf_counter()
    for n, idx in enumerate(indices):
        labels, means = gt_score_pairs(detector, collate([base[idx]], samples_per_gpu=1), device)
        sums.index_add_(0, labels.cpu(), means.double().cpu())
        counts.index_add_(0, labels.cpu(), torch.ones_like(means, dtype=torch.float64).cpu())
        return_freed_memory()
        if progress is not None:
            progress(n + 1, len(indices))
    return dict(sums=sums, counts=counts, images=len(indices), seconds=time.perf_counter() - start)
