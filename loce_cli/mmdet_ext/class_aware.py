"""Class-aware (class-balanced) image sampling for training, the cRT baseline's sampler.

Turned on by mmdet 2.28's config key: ``data = dict(train_dataloader=dict(class_aware_sampler=dict(
num_sample_class=1)))``. mmdet's own ``ClassAwareSampler`` does not fit here: it reads the class of each image
through ``get_cat2imgs``, which indexes classes by LVIS category *id* (so the last LVIS class is out of range), and
it synchronises its seed with a CUDA tensor (so it fails in CPU multi-process runs). loce's sampler
(:class:`loce_cli.core.sampling.ClassAwareSampler`) takes each image's class labels from the dataset's annotations.
"""

from __future__ import annotations

from typing import Optional

from torch.utils.data import DataLoader

from loce_cli.core.sampling import ClassAwareSampler
from loce_cli.mmdet_ext.unwrap import image_labels, unwrap_dataset


def class_aware_config(cfg) -> Optional[dict]:
    """The ``data.train_dataloader.class_aware_sampler`` dict of ``cfg``, or None; refuses options loce lacks."""
    opts = (cfg.data.get("train_dataloader") or {}).get("class_aware_sampler")
    if opts is None:
        return None
    opts = dict(opts)
    unknown = set(opts) - {"num_sample_class"}
    if unknown or opts.get("num_sample_class", 1) != 1:
        raise ValueError(f"class_aware_sampler: loce supports only num_sample_class=1, got {opts}")
    return opts


def class_aware_loader(loader: DataLoader, samples_per_gpu: int, world: int, rank: int, seed: int) -> DataLoader:
    """``loader`` (as mmdet's ``build_dataloader`` made it) with its sampler replaced by the class-aware one."""
    dataset = loader.dataset
    if unwrap_dataset(dataset) is not dataset:
        raise ValueError("class_aware_sampler cannot be combined with a dataset wrapper (RepeatDataset, "
                         "ClassBalancedDataset): it already chooses every image")
    sampler = ClassAwareSampler(image_labels(dataset), samples_per_gpu=samples_per_gpu, num_replicas=world,
                                rank=rank, seed=seed)
    return DataLoader(dataset, batch_size=samples_per_gpu, sampler=sampler, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
