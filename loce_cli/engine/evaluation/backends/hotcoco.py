"""``--evaluator hotcoco``: hotcoco 1.3.0 (a pycocotools- and lvis-api-compatible evaluator in Rust) in its LVIS
mode (``LVISResults`` + ``LVISeval``: negative and not-exhaustive categories, r/c/f groups), behind loce's results
validation like every backend.

Two of lvis-api's rules hotcoco 1.3.0 does not follow, measured on the streaming evaluator's test sets: lvis-api
leaves out annotations and detections of area 0 (``get_ann_ids``' area filter), which this backend does before
handing them over (detections after the per-image cap, as lvis-api); and lvis-api honours an annotation's
``ignore`` flag, which hotcoco reads as an ordinary object: an annotation file with ``ignore`` flags is refused
(LVIS's own files have none). With that, the same AP, APr, APc, APf and per-class AP as the official API (tested
to 1e-12). hotcoco is installed by ``make setup`` but not required: without it this evaluator says so."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.engine.evaluation.accumulate import class_aps
from loce_cli.engine.evaluation.backends.faster_coco import top_dets_per_image
from loce_cli.engine.evaluation.backends.in_memory import InMemoryEvaluator
from loce_cli.engine.evaluation.metrics import SUMMARY_KEYS, MetricResult, class_rows
from loce_cli.errors import DataError, EnvironmentProblem

try:
    import hotcoco
except ImportError:  # pragma: no cover - installed by make setup
    hotcoco = None


def _area(det: dict, by_box: bool) -> float:
    if by_box:
        return float(det["bbox"][2]) * float(det["bbox"][3])
    return float(mask_utils.area(det["segmentation"]))


def counted_detections(results: List[dict], max_dets: Optional[int]) -> List[dict]:
    """What lvis-api evaluates of ``results``: per image the ``max_dets`` highest scores (None: all), then those of
    area > 0 (a box's area when the results have boxes, as ``LVISResults`` decides from the first one)."""
    kept = results if max_dets is None else top_dets_per_image(results, max_dets)
    by_box = bool(results) and "bbox" in results[0]
    return [d for d in kept if _area(d, by_box) > 0]


class HotcocoEvaluator(InMemoryEvaluator):
    name = "hotcoco"

    def run(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
            max_dets: Optional[int]) -> Dict[str, MetricResult]:
        if hotcoco is None:
            raise EnvironmentProblem("hotcoco is not installed: --evaluator hotcoco needs it",
                                     "run make setup (or pip install hotcoco==1.3.0), or use --evaluator streaming")
        if any(a.get("ignore") for a in gt_data["annotations"]):
            raise DataError(f"{ann_file} has annotations with an 'ignore' flag, which hotcoco does not honour",
                            "use --evaluator streaming or lvis for this file")
        counted = [a for a in gt_data["annotations"] if 0 < float(a.get("area", 0)) < math.inf]
        self.say(f"indexing {len(gt_data['images']):,} images (hotcoco)")
        gt = hotcoco.COCO(dict(gt_data, annotations=counted))
        kept = counted_detections(results, max_dets)
        cats = {c["id"]: c for c in gt_data["categories"]}
        out: Dict[str, MetricResult] = {}
        for metric in metrics:
            self.say(f"evaluating {metric} with hotcoco ({len(kept):,} detections)")
            dt = hotcoco.LVISResults(gt, kept, max_dets=-1)  # capped above; hotcoco copies what it needs
            ev = hotcoco.LVISeval(gt, dt, metric)
            with contextlib.redirect_stdout(io.StringIO()):  # run() prints the summary table
                ev.run()
            stats = ev.get_results()
            summary = {k: float(stats[k]) for k in SUMMARY_KEYS}
            precision = np.asarray(ev.eval["precision"])
            precision = precision[..., -1] if precision.ndim == 5 else precision  # [T, R, K, A(, M)]
            out[metric] = MetricResult(summary, class_rows([cats[c] for c in ev.params.cat_ids],
                                                           class_aps(precision)))
        return out
