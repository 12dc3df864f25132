"""AP-fixed and AP-pool with the in-memory evaluators: the official ``lvis`` API (the reference) and
faster-coco-eval's LVIS mode, both unmodified.

- fixed: per category the top ``per_class`` detections by score (stable sort: equal scores in file order, as the
  paper's ``evaluate_ap_fixed.py``), then the evaluator with no per-image cap (``LVISResults(..., max_dets=-1)``;
  faster-coco-eval gets ``maxDets`` = the largest number of detections any image keeps).
- pooled: the same detections; each pool (all / r / c / f) becomes a one-category problem (``pooled.pool_problem``)
  evaluated the same way; the pool's AP is that category's AP.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np

from loce_cli.engine.evaluation.pooled import POOLS, pool_members, pool_problem
from loce_cli.engine.evaluation.protocols import Protocol


def columns(results: List[dict], gt_data: dict):
    """Image index, category index (sorted ids, as the evaluators order them) and score of each detection."""
    img_ids = np.array(sorted(im["id"] for im in gt_data["images"]), np.int64)
    cat_ids = np.array(sorted(c["id"] for c in gt_data["categories"]), np.int64)
    img = np.searchsorted(img_ids, np.fromiter((r["image_id"] for r in results), np.int64, len(results)))
    cat = np.searchsorted(cat_ids, np.fromiter((r["category_id"] for r in results), np.int64, len(results)))
    score = np.fromiter((r["score"] for r in results), np.float64, len(results))
    return img, cat, score


def chosen(results: List[dict], gt_data: dict, protocol: Protocol) -> List[dict]:
    img, cat, score = columns(results, gt_data)
    return [results[i] for i in protocol.select(img, cat, score).tolist()]


def _max_per_image(results: List[dict]) -> int:
    counts: Dict[int, int] = {}
    for r in results:
        counts[r["image_id"]] = counts.get(r["image_id"], 0) + 1
    return max(counts.values()) if counts else 1


def _run(evaluator: str, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str], say):
    """The in-memory evaluator with no per-image cap: ``{metric: MetricResult}``."""
    from loce_cli.engine.evaluation.evaluate import _run_fast, _run_lvis

    if evaluator == "fast":
        return _run_fast(gt_data, results, metrics, _max_per_image(results), say)
    return _run_lvis(ann_file, results, metrics, -1, say)


def run_fixed(evaluator: str, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
              protocol: Protocol, say: Callable[[str], None]):
    kept = chosen(results, gt_data, protocol)
    say(f"AP-fixed: {len(kept):,} of {len(results):,} detections kept (top {protocol.per_class:,} per class)")
    return _run(evaluator, ann_file, gt_data, kept, metrics, say)


def run_pooled(evaluator: str, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
               protocol: Protocol, say: Callable[[str], None]) -> Dict[str, Dict[str, float]]:
    """``{metric: AP-pool summary}`` (AP, AP50, AP75, APs, APm, APl of the pool of all categories; APr, APc,
    APf of the frequency pools)."""
    kept = chosen(results, gt_data, protocol)
    cats = sorted(gt_data["categories"], key=lambda c: c["id"])
    freq = np.array([str(c.get("frequency", "")) for c in cats])
    groups = [np.flatnonzero(freq == g) for g in ("r", "c", "f")]
    members = pool_members(groups, len(cats))
    out: Dict[str, Dict[str, float]] = {m: {} for m in metrics}
    with tempfile.TemporaryDirectory(prefix="loce-pool-") as tmp:
        for pool in POOLS:
            ids = [cats[k]["id"] for k in members[pool].tolist()]
            gt_pool, dets = pool_problem(gt_data, kept, ids)
            say(f"AP-pool, pool {pool}: {len(dets):,} detections over {len(gt_pool['images']):,} "
                "(image, category) pairs")
            if not dets or not gt_pool["annotations"]:
                counted = any(a.get("area", 0) > 0 for a in gt_pool["annotations"])
                for m in metrics:
                    value = 0.0 if counted else -1.0
                    out[m].update({"AP": value, "AP50": value, "AP75": value, "APs": value, "APm": value,
                                   "APl": value} if pool == "all" else {f"AP{pool}": value})
                continue
            pool_file = Path(tmp) / f"pool_{pool}.json"
            if evaluator != "fast":  # the lvis API reads its annotations from a file
                pool_file.write_text(json.dumps(gt_pool))
            res = _run(evaluator, pool_file, gt_pool, dets, metrics, say)
            for m in metrics:
                s = res[m].summary
                if pool == "all":
                    out[m].update({k: s[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")})
                else:
                    out[m][f"AP{pool}"] = s["AP"]
    return out
