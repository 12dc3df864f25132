"""Class-balanced image lists (memory initialisation before the LOCE fine-tune)."""

from __future__ import annotations

import random
from typing import Iterable, List, Sequence


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
