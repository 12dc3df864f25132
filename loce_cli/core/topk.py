"""The ``k`` highest scores per group (image or class) of a stream of scored items, in bounded memory.

Used by the evaluation protocols (the top 10,000 detections per class of a results file read block by block,
the top 300 per image) and by inference for AP-fixed (a running per-class threshold). numpy only.
"""

from __future__ import annotations

import numpy as np


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

    def threshold(self) -> np.ndarray:
        """``[num_groups]``: a lower bound of each group's k-th best score so far (-inf while not full)."""
        return self._thr

    def counts(self) -> np.ndarray:
        self._compact()
        return np.bincount(self._g, minlength=self.num_groups)
