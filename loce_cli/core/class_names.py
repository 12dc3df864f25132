"""Comparing two lists of class names (a checkpoint's and a dataset's), with LVIS's known spelling variants: names
that one source spells differently from another for the same category, accepted as equal with a note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

# Spellings of one LVIS category that differ between mmdet 2.28's hard-coded class lists (mmdet/datasets/lvis.py:
# LVISV1Dataset.CLASSES, LVISV05Dataset.CLASSES; so the meta of its model-zoo checkpoints) and the official LVIS
# annotation files' category names: (mmdet 2.28's name, the files' name, {LVIS version: label index}). Found by
# comparing both lists index by index with the category names of the official files as detectron2 records them
# (detectron2/data/datasets/lvis_v1_categories.py, from lvis_v1_val.json; lvis_v0_5_categories.py, from
# lvis_v0.5_val.json) and eql.detectron2's (projects/EQL/eql/lvis_v0_5_categories.py, from lvis_v0.5_train.json):
# 1203 v1 names and 1230 v0.5 names (twice) compared, this one pair the only difference in each.
KNOWN_VARIANTS = (("speaker_(stereo_equipment)", "speaker_(stero_equipment)", {"v1": 654, "v0.5": 668}),)
SPELLING_VARIANTS = tuple(frozenset((mmdet, official)) for mmdet, official, _ in KNOWN_VARIANTS)


def same_category(a: str, b: str) -> bool:
    return a == b or frozenset({a, b}) in SPELLING_VARIANTS


@dataclass(frozen=True)
class NameComparison:
    """``first_difference``: the first index whose names differ (beyond a known variant; the shorter list's length
    when one list is a prefix of the other), None when the lists match; ``variants``: ``(index, a, b)`` per known
    spelling variant accepted."""

    first_difference: Optional[int]
    variants: Tuple[Tuple[int, str, str], ...]

    @property
    def same(self) -> bool:
        return self.first_difference is None

    def names_at(self, a: Sequence[str], b: Sequence[str]) -> Tuple[str, str]:
        """Both names at the first difference (``-`` where a list has none)."""
        i = self.first_difference
        return (a[i] if i is not None and i < len(a) else "-", b[i] if i is not None and i < len(b) else "-")

    def note(self) -> str:
        """One line on the accepted spelling variants ('' when none)."""
        if not self.variants:
            return ""
        shown = ", ".join(f"index {i}: {a!r} / {b!r}" for i, a, b in self.variants[:3])
        more = f" and {len(self.variants) - 3} more" if len(self.variants) > 3 else ""
        return f"class names differ only by LVIS's known spelling variants ({shown}{more}); taken as the same classes"


def compare_names(a: Sequence[str], b: Sequence[str]) -> NameComparison:
    """Compare two class-name lists, index by index."""
    variants = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            if not same_category(x, y):
                return NameComparison(i, tuple(variants))
            variants.append((i, x, y))
    if len(a) != len(b):
        return NameComparison(min(len(a), len(b)), tuple(variants))
    return NameComparison(None, tuple(variants))
