"""Evaluation protocols as small objects that choose which detections are evaluated.

- ``standard``: LVIS AP. Per image the ``max_dets`` (300) highest scores (``LVISResults.limit_dets_per_image``).
- ``fixed``: AP-fixed (Dave et al. 2021). No per-image cap; per category the ``dets_per_class`` (10,000) highest
  scores over the whole dataset, then LVIS AP of those detections (``LVISResults(..., max_dets=-1)``).
- ``pooled``: AP-pool (Dave et al. 2021). The detections AP-fixed chooses, matched per category as LVIS does, then
  one precision/recall curve per pool of categories (all, rare, common, frequent) over the detections of every
  category of the pool ranked together by score; AP of the pool is that curve's AP (see ``pooled``).

Both caps keep the highest scores with equal scores in file order (Python's stable sort, which the official API
and the paper's script use). ``TopKPerGroup`` keeps such a cap while a results file is read block by block: a
bounded array per group (at most ``k`` survivors each, plus one buffer), so the top 10,000 per class of an
uncapped results file of any size is found without holding its detections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import numpy as np

from loce_cli.core.topk import TopKPerGroup, top_k_per_group  # noqa: F401  (re-exported)
from loce_cli.errors import LoceUsageError

PROTOCOLS = ("standard", "fixed", "pooled")
DEFAULT_DETS_PER_CLASS = 10_000
STANDARD_MAX_DETS = 300


@dataclass(frozen=True)
class Protocol:
    """``per_image``: the cap per image (standard); ``per_class``: the cap per category over the dataset (fixed,
    pooled); ``pooled``: AP per pool of categories instead of the mean of per-category APs."""

    name: str
    per_image: Optional[int] = None
    per_class: Optional[int] = None
    pooled: bool = False

    @property
    def title(self) -> str:
        return {"standard": "AP", "fixed": "AP-fixed", "pooled": "AP-pool"}[self.name]

    def selection_key(self) -> tuple:
        """Protocols with equal keys evaluate the same detections (fixed and pooled share their matching)."""
        return (self.per_image, self.per_class)

    def select(self, img: np.ndarray, cat: np.ndarray, score: np.ndarray) -> np.ndarray:
        """File positions of the detections this protocol evaluates (in file order), from in-memory columns."""
        if self.per_class is not None:
            return top_k_per_group(cat, score, self.per_class)
        return top_k_per_group(img, score, self.per_image)


def make_protocols(names: Sequence[str], max_dets: int = STANDARD_MAX_DETS,
                   dets_per_class: int = DEFAULT_DETS_PER_CLASS) -> List[Protocol]:
    """The protocols named (each once, in the order given; default: standard), checked: an unknown name or a
    cap below 1 is a usage error."""
    names = list(names or ["standard"])
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown:
        raise LoceUsageError(f"--protocol {unknown[0]!r} is not supported", "use standard, fixed and/or pooled")
    if dets_per_class is None or int(dets_per_class) < 1:
        raise LoceUsageError("--dets-per-class must be >= 1", f"AP-fixed uses {DEFAULT_DETS_PER_CLASS:,}")
    if max_dets < 1:
        raise LoceUsageError("--max-dets must be >= 1", "LVIS uses 300")
    out: List[Protocol] = []
    for n in dict.fromkeys(names):
        if n == "standard":
            out.append(Protocol("standard", per_image=int(max_dets)))
        else:
            out.append(Protocol(n, per_class=int(dets_per_class), pooled=n == "pooled"))
    return out


def union(selections: Iterable[np.ndarray]) -> np.ndarray:
    sel = [np.asarray(s, np.int64) for s in selections]
    return np.unique(np.concatenate(sel)) if sel else np.zeros(0, np.int64)


def capped_warning(per_image_counts: np.ndarray, cap: int = STANDARD_MAX_DETS) -> Optional[str]:
    """A warning when results look capped per image (no image has more than ``cap`` detections and some have
    exactly ``cap``): AP-fixed of such a file is not AP-fixed as defined."""
    counts = per_image_counts[per_image_counts > 0]
    if counts.size and int(counts.max()) == cap:
        share = float((counts == cap).mean())
        return (f"the results look capped at {cap} detections per image ({100 * share:.0f}% of the images with "
                f"detections have exactly {cap}, none more): AP-fixed needs uncapped results, so this number is "
                "not AP-fixed as defined (hint: let loce eval CONFIG CKPT --protocol fixed run the inference)")
    return None
