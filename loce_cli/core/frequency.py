"""LVIS frequency groups.

LVIS assigns each category a group from the number of *training images* that contain it:
rare ``r`` (1-10 images), common ``c`` (11-100), frequent ``f`` (> 100).
"""

from __future__ import annotations

from typing import Dict, Iterable, List

GROUPS = ("r", "c", "f")
GROUP_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
NAME_TO_GROUP = {name: key for key, name in GROUP_NAMES.items()}
RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100


def frequency_group(image_count: int, rare_max: int = RARE_MAX_IMAGES, common_max: int = COMMON_MAX_IMAGES) -> str:
    """Group key (``'r'``, ``'c'`` or ``'f'``) for a class seen in ``image_count`` training images (LVIS's
    cut-offs unless ``rare_max`` / ``common_max`` say otherwise).

    A class seen in no training image is counted as rare (LVIS has none such; user data may).
    """
    if image_count < 0:
        raise ValueError(f"image_count must be >= 0, got {image_count}")
    if image_count <= rare_max:
        return "r"
    if image_count <= common_max:
        return "c"
    return "f"


def group_counts(groups: Iterable[str]) -> Dict[str, int]:
    """Number of classes per group key, always with all three keys."""
    counts = {g: 0 for g in GROUPS}
    for g in groups:
        if g not in counts:
            raise ValueError(f"unknown frequency group {g!r} (expected one of r, c, f)")
        counts[g] += 1
    return counts


def parse_split(name: str) -> List[str]:
    """Group keys selected by a split name: ``all``, ``rare``, ``common``, ``frequent`` (or ``r``/``c``/``f``)."""
    key = name.strip().lower()
    if key == "all":
        return list(GROUPS)
    if key in NAME_TO_GROUP:
        return [NAME_TO_GROUP[key]]
    if key in GROUPS:
        return [key]
    raise ValueError(f"unknown split {name!r} (expected all, rare, common or frequent)")
