"""``--evaluator fast``: faster-coco-eval's C++ evaluator in LVIS mode (negative / not-exhaustive categories, r/c/f
groups); the same AP, APr, APc, APf as the official API (tested to 1e-4), several times faster on large sets.
faster-coco-eval is installed by ``make setup`` but not required: without it this evaluator says so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from loce_cli.engine.evaluation.accumulate import class_aps
from loce_cli.engine.evaluation.backends.in_memory import InMemoryEvaluator, copy_detection
from loce_cli.engine.evaluation.metrics import SUMMARY_KEYS, MetricResult, class_rows
from loce_cli.errors import EnvironmentProblem

try:
    from faster_coco_eval import COCO, COCOeval_faster
except ImportError:  # pragma: no cover - installed by make setup
    COCO = COCOeval_faster = None

_FAST_KEYS = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APs": "AP_small", "APm": "AP_medium",
              "APl": "AP_large"}


def _max_per_image(results: List[dict]) -> int:
    counts: Dict[int, int] = {}
    for r in results:
        counts[r["image_id"]] = counts.get(r["image_id"], 0) + 1
    return max(counts.values()) if counts else 1


def top_dets_per_image(results: List[dict], max_dets: int) -> List[dict]:
    """The detections LVISResults keeps: per image, the ``max_dets`` highest scores (stable sort)."""
    by_image: Dict[int, list] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    kept = []
    for dets in by_image.values():
        if len(dets) > max_dets:
            dets = sorted(dets, key=lambda r: r["score"], reverse=True)[:max_dets]
        kept.extend(dets)
    return kept


class FasterCocoEvaluator(InMemoryEvaluator):
    name = "fast"

    def run(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
            max_dets: Optional[int]) -> Dict[str, MetricResult]:
        if COCO is None:
            raise EnvironmentProblem("faster-coco-eval is not installed: --evaluator fast needs it",
                                     "run make setup (or pip install faster-coco-eval), or use --evaluator streaming")
        max_dets = _max_per_image(results) if max_dets is None else max_dets  # None: every detection of an image
        logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
        self.say(f"indexing {len(gt_data['images']):,} images (faster-coco-eval)")
        gt = COCO(gt_data)
        kept = top_dets_per_image(results, max_dets)
        cats = {c["id"]: c for c in gt_data["categories"]}
        out: Dict[str, MetricResult] = {}
        for n, metric in enumerate(metrics):
            self.say(f"evaluating {metric} with faster-coco-eval ({len(kept):,} detections)")
            # loadRes annotates the detection dicts in place (area, id, RLE): each metric gets its own copies
            dt = gt.loadRes(kept if n == len(metrics) - 1 else [copy_detection(r) for r in kept])
            ev = COCOeval_faster(gt, dt, iouType=metric, lvis_style=True, print_function=lambda *_a: None)
            ev.params.maxDets = [max_dets]
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            stats = ev.stats_as_dict
            summary = {k: float(stats[_FAST_KEYS.get(k, k)]) for k in SUMMARY_KEYS}
            precision = np.asarray(ev.eval["precision"])[..., 0]  # [T, R, K, A] at the one maxDets
            out[metric] = MetricResult(summary, class_rows([cats[c] for c in ev.params.catIds],
                                                           class_aps(precision)))
        return out
