"""Cross-group confusion: who takes each object. For every counted object (not ``ignore``), the highest-scoring of
its image's kept detections (``matching.kept_detections``: the 300 by score, of classes the image verifies) with box
IoU >= 0.5, of any class; counted per object group as its own class, another class of group r, c or f, or none."""

from __future__ import annotations

from collections import Counter
from typing import Dict, List

import numpy as np

from loce_cli.engine.analysis.matching import Matched

GROUPS = ("r", "c", "f")


def confusion(m: Matched, groups: np.ndarray) -> Dict[str, Dict[str, int]]:
    """``{object group: {"own": n, "r": n, "c": n, "f": n, "none": n}}`` (an object another class of its own group
    takes counts under that group's key)."""
    out: Dict[str, Dict[str, int]] = {}
    counted = ~m.gt_ignore
    taker = m.gt_taker
    for g in GROUPS:
        sel = counted & (groups[m.gt_cls] == g)
        t, c = taker[sel], m.gt_cls[sel]
        row = {"own": int((t == c).sum())}
        other = (t >= 0) & (t != c)
        for h in GROUPS:
            row[h] = int((other & (groups[np.maximum(t, 0)] == h)).sum())
        row["none"] = int((t < 0).sum())
        out[g] = row
    return out


def top_pairs(m: Matched, categories: List[dict], groups: np.ndarray, n: int = 20) -> List[dict]:
    """The ``n`` most frequent (object class -> another detected class) pairs, with their groups and counts."""
    sel = ~m.gt_ignore & (m.gt_taker >= 0) & (m.gt_taker != m.gt_cls)
    pairs = Counter(zip(m.gt_cls[sel].tolist(), m.gt_taker[sel].tolist()))
    ranked = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    return [{"gt": categories[a]["name"], "gt_group": str(groups[a]), "det": categories[b]["name"],
             "det_group": str(groups[b]), "count": int(c)} for (a, b), c in ranked]
