"""The LOCE memory fill: :func:`fill_memory` (one class-balanced pass that fills the feature memory and warms the
mean scores) and ``LoceMemoryInitHook``, which runs it before the LOCE fine-tune starts."""

from __future__ import annotations

import time
from typing import List, Optional, Tuple

import torch
from mmcv.parallel import collate
from mmcv.runner import HOOKS, Hook

from loce_cli.core.sampling import class_balanced_indices
from loce_cli.mmdet_ext.unwrap import image_labels, unwrap_dataset, unwrap_model


def _proposals(detector, x, metas: List[dict], batch: dict, device) -> List[torch.Tensor]:
    """Proposals as in training: the RPN's with ``train_cfg.rpn_proposal`` (``[n, 5]`` per image)."""
    if not detector.with_rpn:
        if "proposals" not in batch:
            raise ValueError("warming the LOCE mean scores needs an RPN or precomputed proposals in the data")
        return [p.to(device) for p in batch["proposals"].data[0]]
    train_cfg = detector.train_cfg or {}
    proposal_cfg = train_cfg.get("rpn_proposal", detector.test_cfg.rpn)
    outs = detector.rpn_head(x)
    return detector.rpn_head.get_bboxes(*outs, img_metas=metas, cfg=proposal_cfg)


def _schedule(indices: List[int], rank: int, world_size: int, shard: bool):
    """Steps of the initialisation on this rank: ``(image index or None, whether its score pairs count here)``.

    Every rank gets the same number of steps (each step may hold one collective score update). ``shard``:
    step ``j`` is image ``indices[j * W + rank]`` (``None`` past the end), each image counted on its rank.
    Otherwise every rank runs every image (each fills its own memory) and image ``i``'s pairs count only on
    rank ``i % W``, so that after the all-reduce each image has been counted once.
    """
    world = max(1, int(world_size))
    if shard:
        for j in range(-(-len(indices) // world)):
            k = j * world + rank
            yield (indices[k] if k < len(indices) else None), True
    else:
        for i, idx in enumerate(indices):
            yield idx, i % world == rank


@torch.no_grad()
def fill_memory(model, dataset, images_per_class: Optional[int] = None, rank: int = 0, world_size: int = 1,
                shard: bool = False, seed: int = 0, logger=None, warm_scores: bool = True,
                max_images: Optional[int] = None) -> dict:
    """One pass over a class-balanced image list (``queue_size // 16`` images per class by default) that pushes
    jittered ground-truth features into the memory and, with ``warm_scores``, fits the mean scores to the model.

    ``warm_scores`` does per image what a training step does to the scores, as the authors' initialisation (the
    full training forward over the list) does: RPN proposals with ``train_cfg.rpn_proposal``, the train-cfg
    RoI assigner and sampler, the box head over the sampled RoIs plus a draw from the memory as filled so far
    (drawn features contribute, as in the authors' forward), then one tracker update with the pairs (per
    ground truth with positives: its positives' mean probability of its class; per distinct drawn class: the
    mean over its drawn features), then the push. No loss, no gradient, no optimizer step. Off, only features
    are pushed and the fine-tune starts from the tracker's initial scores.

    The model runs in eval mode under ``torch.no_grad()`` and is put back in its previous mode afterwards.
    Images go through the dataset's own (training) pipeline. ``shard`` splits the list across ranks; by
    default each rank fills its own memory from the whole list (memory is per-rank state). With several
    processes the score update is a collective (all-reduce): every rank must call this with the same dataset,
    options and seed; each image's pairs are counted once over all ranks and all ranks end with identical
    scores (see :func:`_schedule`).

    Returns a summary: ``images`` (on this rank), ``features`` pushed, ``seconds``, the memory's ``full`` /
    ``partial`` / ``empty`` queue counts, ``warm_scores``, ``score_updates`` (tracker updates applied) and
    ``classes_warmed`` (classes whose score moved off its value before the pass).
    """
    detector = unwrap_model(model)
    roi_head = detector.roi_head
    tracker = roi_head.score_tracker
    per_class = images_per_class or max(1, roi_head.memory.queue_size // 16)
    base = unwrap_dataset(dataset)
    indices = class_balanced_indices(image_labels(base), per_class, seed=seed)
    if max_images is not None:  # a cap for quick checks (tests, rehearsals): the first images of the list
        indices = indices[:max(0, int(max_images))]
    steps = list(_schedule(indices, rank, world_size, shard))
    scores_before = tracker.scores.clone()
    was_training = detector.training
    detector.eval()
    start = time.perf_counter()
    try:
        images, pushed, updates = _fill_pass(detector, base, steps, warm_scores, logger)
    finally:
        detector.train(was_training)
    num_classes = tracker.num_classes
    moved = tracker.scores[:num_classes] != scores_before[:num_classes].to(tracker.scores.device)
    summary = dict(images=images, features=pushed, seconds=time.perf_counter() - start,
                   **roi_head.memory.fill_summary(), warm_scores=bool(warm_scores), score_updates=updates,
                   classes_warmed=int(moved.sum()))
    if logger is not None:
        _log_fill(logger, summary, tracker)
    return summary


def _fill_pass(detector, dataset, steps, warm_scores: bool, logger) -> Tuple[int, int, int]:
    """The steps of :func:`fill_memory` (see :func:`_schedule`): per image the features, the score update (every
    step on every rank with ``warm_scores``), the push. Returns the images read, features pushed, updates."""
    roi_head = detector.roi_head
    device = next(detector.parameters()).device
    pushed = images = updates = 0
    no_pairs = (torch.zeros(0, dtype=torch.long, device=device), torch.zeros(0, device=device),
                torch.zeros(0, device=device))
    for n, (idx, counts_here) in enumerate(steps):
        if idx is not None:
            batch = collate([dataset[idx]], samples_per_gpu=1)
            img = batch["img"].data[0].to(device)
            metas = batch["img_metas"].data[0]
            gt_bboxes = [b.to(device) for b in batch["gt_bboxes"].data[0]]
            gt_labels = [lab.to(device) for lab in batch["gt_labels"].data[0]]
            feats = detector.extract_feat(img)
            images += 1
        if warm_scores:
            pairs = no_pairs
            if idx is not None and counts_here:
                ignore = [b.to(device) for b in batch["gt_bboxes_ignore"].data[0]] \
                    if "gt_bboxes_ignore" in batch else None
                pairs = roi_head.warm_score_pairs(feats, _proposals(detector, feats, metas, batch, device),
                                                  gt_bboxes, gt_labels, ignore)
            roi_head.score_tracker.update(*pairs)  # every rank, every step: the all-reduce inside must match up
            updates += 1
        if idx is not None:
            pushed += roi_head.push_gt_features(feats, gt_bboxes, gt_labels, metas)
        if logger is not None and (n + 1) % 100 == 0:
            logger.info(f"LOCE memory init: {n + 1}/{len(steps)} steps")
    return images, pushed, updates


def _log_fill(logger, summary: dict, tracker) -> None:
    logger.info(f"LOCE memory init: {summary['images']} images, {summary['features']} features pushed in "
                f"{summary['seconds']:.1f} s; queues full {summary['full']}, partial {summary['partial']}, "
                f"empty {summary['empty']}")
    if summary["warm_scores"]:
        num_classes = tracker.num_classes
        fg = tracker.scores[:num_classes].float()
        logger.info(f"LOCE memory init: mean scores warmed ({summary['score_updates']} updates): "
                    f"{summary['classes_warmed']} of {num_classes} classes moved off their initial score; now mean "
                    f"{float(fg.mean()):.4f}, min {float(fg.min()):.4f}, max {float(fg.max()):.4f}")
    else:
        logger.info("LOCE memory init: mean scores not warmed (warm_scores=False); the fine-tune starts from "
                    "the tracker's initial scores")


@HOOKS.register_module()
class LoceMemoryInitHook(Hook):
    """Before training, fill the LOCE feature memory (``queue_size // 16`` images per class) and warm the mean
    scores over the same pass (see :func:`fill_memory`), unless the memory was restored from a checkpoint
    (resume; the scores come from it too).

    Args:
        images_per_class: images per class in the list (default ``queue_size // 16``).
        shard: split the list across ranks (default: every rank runs it all and fills its own memory).
        seed: seed of the class-balanced choice of images.
        warm_scores: update the mean scores during the pass as a training step would (the authors' behaviour;
            default). ``False``: only fill the memory, the fine-tune starts at the tracker's initial scores.
            From a config: ``custom_hooks = [dict(type='LoceMemoryInitHook', warm_scores=False)]``; from the
            command line ``--cfg-options custom_hooks.0.warm_scores=False`` (the key must be in the config).
    """

    def __init__(self, images_per_class: Optional[int] = None, shard: bool = False, seed: int = 0,
                 warm_scores: bool = True, max_images: Optional[int] = None):
        self.images_per_class = images_per_class
        self.shard = shard
        self.seed = seed
        self.warm_scores = bool(warm_scores)
        self.max_images = max_images  # None: the whole class-balanced list (the paper); a number caps it
        self.summary: Optional[dict] = None
        self._done = False

    def before_train_epoch(self, runner) -> None:
        self._fill_once(runner)

    def before_train_iter(self, runner) -> None:  # iteration-based runners
        self._fill_once(runner)

    def _fill_once(self, runner) -> None:
        # Runs at the first training epoch/iteration: the data loader is known there, and a resumed
        # checkpoint has already been loaded.
        if self._done:
            return
        self._done = True
        memory = unwrap_model(runner.model).roi_head.memory
        if not memory.is_empty():
            runner.logger.info("LOCE memory init skipped: the memory was restored from the checkpoint "
                               f"({memory.fill_summary()})")
            return
        loader = getattr(runner, "data_loader", None)
        if loader is None:
            raise RuntimeError("LoceMemoryInitHook needs the training data loader")
        self.summary = fill_memory(runner.model, loader.dataset, self.images_per_class, rank=runner.rank,
                                   world_size=runner.world_size, shard=self.shard, seed=self.seed,
                                   logger=runner.logger, warm_scores=self.warm_scores,
                                   max_images=self.max_images)
