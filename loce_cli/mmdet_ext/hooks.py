"""``LoceMemoryInitHook``: fill the feature memory before the LOCE fine-tune starts."""

from __future__ import annotations

import time
from typing import List, Optional

import torch
from mmcv.parallel import collate, is_module_wrapper
from mmcv.runner import HOOKS, Hook

from loce_cli.core.sampling import class_balanced_indices


def _unwrap(model):
    return model.module if is_module_wrapper(model) else model


def _image_labels(dataset) -> List[List[int]]:
    """Class labels (``0..C-1``) present in each image of an mmdet dataset, read from its annotations."""
    labels = []
    cat2label = getattr(dataset, "cat2label", None)
    for i in range(len(dataset)):
        if cat2label is not None:  # COCO/LVIS-style: category ids only, no box parsing
            labels.append(sorted({cat2label[c] for c in dataset.get_cat_ids(i) if c in cat2label}))
        else:
            labels.append(sorted({int(x) for x in dataset.get_ann_info(i)["labels"]}))
    return labels


def unwrap_dataset(dataset):
    """The dataset holding annotations, under mmdet's wrappers (RepeatDataset, ClassBalancedDataset: these
    forward ``get_ann_info`` but hold no ``data_infos`` and none of the class statistics)."""
    while hasattr(dataset, "dataset") and not hasattr(dataset, "data_infos"):
        dataset = dataset.dataset
    return dataset


@torch.no_grad()
def fill_memory(model, dataset, images_per_class: Optional[int] = None, rank: int = 0, world_size: int = 1,
                shard: bool = False, seed: int = 0, logger=None) -> dict:
    """One pass over a class-balanced image list, pushing jittered ground-truth features into the memory.

    The model runs in eval mode under ``torch.no_grad()`` and is put back in its previous mode afterwards.
    Images go through the dataset's own (training) pipeline. ``shard`` splits the list across ranks; by
    default each rank fills its own memory from the whole list (memory is per-rank state).
    """
    detector = _unwrap(model)
    roi_head = detector.roi_head
    memory = roi_head.memory
    per_class = images_per_class or max(1, memory.queue_size // 16)
    base = unwrap_dataset(dataset)
    indices = class_balanced_indices(_image_labels(base), per_class,
                                     num_replicas=world_size if shard else 1, rank=rank if shard else 0,
                                     seed=seed)
    device = next(detector.parameters()).device
    was_training = detector.training
    detector.eval()
    start = time.perf_counter()
    pushed = 0
    try:
        for n, idx in enumerate(indices):
            batch = collate([base[idx]], samples_per_gpu=1)
            img = batch["img"].data[0].to(device)
            metas = batch["img_metas"].data[0]
            gt_bboxes = [b.to(device) for b in batch["gt_bboxes"].data[0]]
            gt_labels = [lab.to(device) for lab in batch["gt_labels"].data[0]]
            feats = detector.extract_feat(img)
            pushed += roi_head.push_gt_features(feats, gt_bboxes, gt_labels, metas)
            if logger is not None and (n + 1) % 100 == 0:
                logger.info(f"LOCE memory init: {n + 1}/{len(indices)} images")
    finally:
        detector.train(was_training)
    summary = dict(images=len(indices), features=pushed, seconds=time.perf_counter() - start,
                   **memory.fill_summary())
    if logger is not None:
        logger.info(f"LOCE memory init: {summary['images']} images, {pushed} features pushed in "
                    f"{summary['seconds']:.1f} s; queues full {summary['full']}, partial {summary['partial']}, "
                    f"empty {summary['empty']}")
    return summary


@HOOKS.register_module()
class LoceMemoryInitHook(Hook):
    """Before training, fill the LOCE feature memory (``queue_size // 16`` images per class), unless the memory
    was restored from a checkpoint (resume)."""

    def __init__(self, images_per_class: Optional[int] = None, shard: bool = False, seed: int = 0):
        self.images_per_class = images_per_class
        self.shard = shard
        self.seed = seed
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
        memory = _unwrap(runner.model).roi_head.memory
        if not memory.is_empty():
            runner.logger.info("LOCE memory init skipped: the memory was restored from the checkpoint "
                               f"({memory.fill_summary()})")
            return
        loader = getattr(runner, "data_loader", None)
        if loader is None:
            raise RuntimeError("LoceMemoryInitHook needs the training data loader")
        self.summary = fill_memory(runner.model, loader.dataset, self.images_per_class, rank=runner.rank,
                                   world_size=runner.world_size, shard=self.shard, seed=self.seed,
                                   logger=runner.logger)
