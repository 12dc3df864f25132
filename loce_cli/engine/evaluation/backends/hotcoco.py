"""``--evaluator hotcoco``: hotcoco 1.3.0 (a pycocotools- and lvis-api-compatible evaluator in Rust) in its LVIS
mode (``LVISResults`` + ``LVISeval``: negative and not-exhaustive categories, r/c/f groups), behind loce's results
validation like every backend.

Two of lvis-api's rules hotcoco 1.3.0 does not follow, measured on the streaming evaluator's test sets: lvis-api
leaves out annotations and detections of area 0 (``get_ann_ids``' area filter), which this backend does before
handing them over (detections after the per-image cap, as lvis-api); and lvis-api honours an annotation's
``ignore`` flag, which hotcoco reads as an ordinary object: an annotation file with ``ignore`` flags is refused
(LVIS's own files have none). With that, the same AP, APr, APc, APf and per-class AP as the official API (tested
to 1e-12). hotcoco is installed by ``make setup`` but not required: without it this evaluator says so.

The standard protocol on results with boxes never holds the detections as Python objects: the streaming reader
validates the file into columns, the kept detections go to hotcoco as one array (and their masks as RLEs), so
the full LVIS v1 val set fits in a few GB. AP-fixed, AP-pool and mask-only results take the in-memory path of
``InMemoryEvaluator`` (the detections as a list of dicts)."""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from loce_cli.core.annotations import expand_exhaustive
from loce_cli.engine.evaluation.accumulate import class_aps
from loce_cli.engine.evaluation.backends.faster_coco import top_dets_per_image
from loce_cli.engine.evaluation.backends.in_memory import InMemoryEvaluator
from loce_cli.engine.data.stats import load_annotation_json
from loce_cli.engine.evaluation.evaluator import Outcome
from loce_cli.engine.evaluation.ground_truth import load_ground_truth
from loce_cli.engine.evaluation.metrics import SUMMARY_KEYS, MetricResult, class_rows
from loce_cli.engine.evaluation.protocols import Protocol
from loce_cli.engine.evaluation.results_reader import Detections, read_results
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


def _kept_columns(dets: Detections, max_dets: int) -> np.ndarray:
    """File positions lvis-api evaluates: per image the ``max_dets`` highest scores (ties in file order), then
    those whose box has area > 0; sorted by image, then score."""
    order = np.lexsort((np.arange(dets.size), -dets.score, dets.img))
    img = dets.img[order]
    order = order[np.arange(order.size) - np.searchsorted(img, img, side="left") < max_dets]
    return order[dets.box[order, 2] * dets.box[order, 3] > 0]


def _check_gt(ann_file: Path, gt_data: dict) -> dict:
    """The annotation data hotcoco gets: refused with ``ignore`` flags, annotations of area 0 left out."""
    if any(a.get("ignore") for a in gt_data["annotations"]):
        raise DataError(f"{ann_file} has annotations with an 'ignore' flag, which hotcoco does not honour",
                        "use --evaluator streaming or lvis for this file")
    counted = [a for a in gt_data["annotations"] if 0 < float(a.get("area", 0)) < math.inf]
    return dict(gt_data, annotations=counted)


class HotcocoEvaluator(InMemoryEvaluator):
    name = "hotcoco"

    def evaluate(self, results_file: Path, ann_file: Path, metrics: Sequence[str], max_dets: int,
                 protocols: Sequence[Protocol]) -> Outcome:
        if hotcoco is None or any(p.name != "standard" for p in protocols):
            return super().evaluate(results_file, ann_file, metrics, max_dets, protocols)
        gt_data = _check_gt(Path(ann_file), expand_exhaustive(load_annotation_json(Path(ann_file))))
        gt_cols = load_ground_truth(Path(ann_file), False)
        dets = read_results(Path(results_file), gt_cols, "segm" in metrics, say=self.say)  # every check
        masks = None
        try:
            if dets.box is not None:
                kept = _kept_columns(dets, max_dets)
                arr = np.column_stack([gt_cols.img_ids[dets.img[kept]], dets.box[kept], dets.score[kept],
                                       gt_cols.cat_ids[dets.cat[kept]]]).astype(np.float64)
                if "segm" in metrics:
                    h, w = gt_cols.heights[dets.img[kept]].tolist(), gt_cols.widths[dets.img[kept]].tolist()
                    masks = [{"size": [a, b], "counts": c.decode("ascii")}
                             for a, b, c in zip(h, w, dets.rle.read(kept))]
        finally:
            mask_only = dets.box is None
            dets.close()
        if mask_only:  # their areas and boxes come from the masks: the in-memory path
            return super().evaluate(results_file, ann_file, metrics, max_dets, protocols)
        self.say(f"indexing {len(gt_data['images']):,} images (hotcoco)")
        gt = hotcoco.COCO(gt_data)
        out = {}
        for m in metrics:
            dt = gt.load_res(arr, segmentation=masks if m == "segm" else None).cap_detections_per_image(None)
            out[m] = self._metric(gt, dt, gt_data, m, int(kept.size))
            del dt
        return Outcome({"standard": out})

    def _metric(self, gt, dt, gt_data: dict, metric: str, n: int) -> MetricResult:
        self.say(f"evaluating {metric} with hotcoco ({n:,} detections)")
        ev = hotcoco.LVISeval(gt, dt, metric)
        with contextlib.redirect_stdout(io.StringIO()):  # run() prints the summary table
            ev.run()
        stats = ev.get_results()
        precision = np.asarray(ev.eval["precision"])
        precision = precision[..., -1] if precision.ndim == 5 else precision  # [T, R, K, A(, M)]
        cats = {c["id"]: c for c in gt_data["categories"]}
        return MetricResult({k: float(stats[k]) for k in SUMMARY_KEYS},
                            class_rows([cats[c] for c in ev.params.cat_ids], class_aps(precision)))

    def run(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
            max_dets: Optional[int]) -> Dict[str, MetricResult]:
        if hotcoco is None:
            raise EnvironmentProblem("hotcoco is not installed: --evaluator hotcoco needs it",
                                     "run make setup (or pip install hotcoco==1.3.0), or use --evaluator streaming")
        gt_data = _check_gt(ann_file, gt_data)
        self.say(f"indexing {len(gt_data['images']):,} images (hotcoco)")
        gt = hotcoco.COCO(gt_data)
        kept = counted_detections(results, max_dets)
        return {m: self._metric(gt, hotcoco.LVISResults(gt, kept, max_dets=-1), gt_data, m, len(kept))
                for m in metrics}
