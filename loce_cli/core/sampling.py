"""Class-balanced image lists: the memory initialisation before the LOCE fine-tune, and the class-aware sampler of
the cRT baseline."""

from __future__ import annotations

import math
import random
from typing import Iterable, Iterator, List, Sequence

import torch
from torch.utils.data import Sampler


def class_balanced_indices(image_class_ids: Sequence[Iterable[int]], per_class: int, num_replicas: int = 1,
                           rank: int = 0, seed: int = 0) -> List[int]:
    """Indices of images such that every class is covered by up to ``per_class`` images containing it.

    For each class (in ascending id order), ``per_class`` images are drawn without replacement among those
    that contain it (all of them if fewer), with a seeded RNG. The union keeps first-seen order, without
    duplicates, and is split across ``num_replicas`` ranks round-robin (``rank`` gets ``[rank::num_replicas]``).

    Args:
        image_class_ids: for each image, the class ids it contains.
        per_class: images per class (LOCE: ``queue_size // 16``).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
    by_class: dict = {}
    for idx, classes in enumerate(image_class_ids):
        for c in set(classes):
            by_class.setdefault(int(c), []).append(idx)
    rng = random.Random(seed)
    chosen: List[int] = []
    seen = set()
    for c in sorted(by_class):
        images = by_class[c]
        picks = images if len(images) <= per_class else rng.sample(images, per_class)
        for i in picks:
            if i not in seen:
                seen.add(i)
                chosen.append(i)
    return chosen[rank::num_replicas]


class _Cycle:
    """Endless walk over ``items`` in a fresh random order each pass (``generator`` draws the orders)."""

    def __init__(self, items: Sequence[int], generator: torch.Generator):
        self.items = list(items)
        self.generator = generator
        self.order: List[int] = []
        self.pos = 0

    def next(self) -> int:
        if self.pos == len(self.order):
            self.order = [self.items[i] for i in torch.randperm(len(self.items), generator=self.generator).tolist()]
            self.pos = 0
        self.pos += 1
        return self.order[self.pos - 1]


def class_aware_indices(image_class_ids: Sequence[Iterable[int]], total: int, seed: int) -> List[int]:
    """``total`` image indices, class-balanced: each draw takes the next class of a cycle over the classes that occur
    (a new random order every pass) and then the next image of that class's own cycle over its images. Every class
    is drawn equally often (within one), whatever its frequency; images of rare classes repeat."""
    by_class: dict = {}
    for idx, classes in enumerate(image_class_ids):
        for c in set(int(x) for x in classes):
            by_class.setdefault(c, []).append(idx)
    if not by_class:
        raise ValueError("class-aware sampling needs at least one image with a labelled object")
    g = torch.Generator()
    g.manual_seed(int(seed))
    classes = _Cycle(sorted(by_class), g)
    images = {c: _Cycle(v, g) for c, v in sorted(by_class.items())}
    return [images[classes.next()].next() for _ in range(total)]


class ClassAwareSampler(Sampler):
    """Class-balanced image sampling (cRT, Kang et al. 2020), split across ranks.

    An epoch has ``ceil(len / (samples_per_gpu * num_replicas)) * samples_per_gpu`` images per rank (the dataset's
    size, rounded up to whole batches on every rank), drawn by :func:`class_aware_indices` with the seed ``seed +
    epoch`` (identical on every rank); rank ``r`` takes the ``r``-th contiguous share. ``set_epoch`` is called by
    the runner's sampler-seed hook (mmcv's ``DistSamplerSeedHook`` in distributed runs, else loce's own).
    """

    def __init__(self, image_class_ids: Sequence[Iterable[int]], samples_per_gpu: int = 1, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.image_class_ids = [list(c) for c in image_class_ids]
        self.num_samples = int(math.ceil(len(self.image_class_ids) / (samples_per_gpu * num_replicas))) \
            * samples_per_gpu
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, int(seed), 0

    def __iter__(self) -> Iterator[int]:
        total = self.num_samples * self.num_replicas
        indices = class_aware_indices(self.image_class_ids, total, self.seed + self.epoch)
        return iter(indices[self.rank * self.num_samples:(self.rank + 1) * self.num_samples])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
