"""Comparing two lists of class names (a checkpoint's and a dataset's), with LVIS's known spelling variants: names
that one source spells differently from another for the same category, accepted as equal with a note."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

# Pairs of spellings of one LVIS category. mmdet 2.28's hard-coded LVISV1Dataset.CLASSES (and so the meta of its
# model-zoo checkpoints) says 'speaker_(stereo_equipment)' where the LVIS v1 annotation file and mmdet 2.8 say
# 'speaker_(stero_equipment)' (index 654 of v1).
SPELLING_VARIANTS = (frozenset({"speaker_(stereo_equipment)", "speaker_(stero_equipment)"}),)


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
