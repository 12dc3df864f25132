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


def top_k_per_group(group: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Positions (sorted) of the ``k`` highest scores of each group, equal scores in position order."""
    n = score.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(n), -score, group))
    g = group[order]
    rank = np.arange(n) - np.searchsorted(g, g, side="left")
    return np.sort(order[rank < k])


class TopKPerGroup:
    """The ``k`` highest scores per group over a stream of blocks, equal scores in stream order.

    ``add`` takes one block's group indices and scores (positions ``first ... first + n - 1``, increasing from
    block to block). Survivors are compacted whenever the buffer outgrows them, and each full group's k-th score
    becomes its entry threshold: a later detection with a score at or below it can never enter (it would lose
    the tie on position), so it is dropped at once. Memory: at most ``2 * (survivors) + one block`` entries of
    20 bytes."""

    def __init__(self, num_groups: int, k: int, min_buffer: int = 1 << 20):
        self.k = int(k)
        self.num_groups = int(num_groups)
        self.min_buffer = int(min_buffer)
        self._thr = np.full(self.num_groups, -np.inf)
        self._g = np.zeros(0, np.int32)
        self._s = np.zeros(0, np.float64)
        self._p = np.zeros(0, np.int64)
        self._pending: list = []
        self._pending_n = 0
        self.seen = 0
        self.peak_entries = 0

    def add(self, group: np.ndarray, score: np.ndarray, first: int) -> None:
        n = score.shape[0]
        self.seen += n
        ok = score > self._thr[group]
        if not ok.any():
            return
        pos = first + np.flatnonzero(ok)
        self._pending.append((group[ok].astype(np.int32), score[ok].astype(np.float64), pos.astype(np.int64)))
        self._pending_n += pos.size
        self.peak_entries = max(self.peak_entries, self._g.size + self._pending_n)
        if self._pending_n > max(self._g.size, self.min_buffer):
            self._compact()

    def _compact(self) -> None:
        if not self._pending:
            return
        g = np.concatenate([self._g] + [b[0] for b in self._pending])
        s = np.concatenate([self._s] + [b[1] for b in self._pending])
        p = np.concatenate([self._p] + [b[2] for b in self._pending])
        self._pending, self._pending_n = [], 0
        order = np.lexsort((p, -s, g))
        gs = g[order]
        rank = np.arange(gs.size) - np.searchsorted(gs, gs, side="left")
        keep = order[rank < self.k]  # by (group, -score, position)
        self._g, self._s, self._p = g[keep], s[keep], p[keep]
        counts = np.bincount(self._g, minlength=self.num_groups)
        full = np.flatnonzero(counts >= self.k)
        if full.size:
            last = np.searchsorted(self._g, full, side="right") - 1  # each full group's lowest kept score
            self._thr[full] = self._s[last]

    def positions(self) -> np.ndarray:
        """Positions of the survivors, sorted (the stream is complete)."""
        self._compact()
        return np.sort(self._p)

    def counts(self) -> np.ndarray:
        self._compact()
        return np.bincount(self._g, minlength=self.num_groups)


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
