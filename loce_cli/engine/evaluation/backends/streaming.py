"""``--evaluator streaming`` (the default): the official API's numbers in bounded memory, however large the results
file (``streaming``: the ground truth as columns, the results read in blocks, chunks of images matched in worker
processes).

Standard alone is one pass over the file (``streaming.evaluate_streaming``). Under fixed / pooled, two passes: the
first decodes only image, category and score and keeps, per protocol, the chosen file positions in bounded
per-group arrays (``protocols.TopKPerGroup``: the top 300 per image for standard, the top ``dets_per_class`` per
category for fixed / pooled); the second reads (and validates) every detection but keeps only the union of the
chosen ones as columns. Protocols that choose the same detections share one matching (fixed and pooled); each then
accumulates its own way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from loce_cli.engine.evaluation.accumulate import accumulate, class_aps, summarize
from loce_cli.engine.evaluation.evaluator import Evaluator, Outcome, Say
from loce_cli.engine.evaluation.ground_truth import GroundTruth, load_ground_truth
from loce_cli.engine.evaluation.matching import warm_up
from loce_cli.engine.evaluation.metrics import MetricResult, class_rows
from loce_cli.engine.evaluation.pooled import pooled_summary
from loce_cli.engine.evaluation.protocols import Protocol, TopKPerGroup, capped_warning, union
from loce_cli.engine.evaluation.results_reader import Detections, read_results, scan_protocols
from loce_cli.engine.evaluation.streaming import default_workers, evaluate_streaming, match, num_gt
from loce_cli.errors import DataError


class StreamingEvaluator(Evaluator):
    name = "streaming"

    def evaluate(self, results_file: Path, ann_file: Path, metrics: Sequence[str], max_dets: int,
                 protocols: Sequence[Protocol]) -> Outcome:
        if [p.name for p in protocols] == ["standard"]:
            standard = {m: MetricResult(summary, class_rows(cats, aps)) for m, (summary, aps, cats)
                        in evaluate_streaming(results_file, ann_file, metrics, max_dets, self.workers,
                                              self.say).items()}
            return Outcome({"standard": standard})
        return evaluate_protocols(results_file, ann_file, metrics, protocols, self.workers or default_workers(),
                                  self.say)


def _choose(results_file: Path, gt: GroundTruth, protocols: Sequence[Protocol], say: Say):
    """The first pass: ``({selection key: chosen file positions}, warnings, detections in the file)``."""
    selectors = {}
    for key in dict.fromkeys(p.selection_key() for p in protocols):
        per_image, per_class = key
        selectors[key] = (TopKPerGroup(gt.num_images, per_image), "image") if per_class is None else \
            (TopKPerGroup(gt.num_cats, per_class), "category")
    per_image_counts = scan_protocols(results_file, gt, selectors, say)
    warnings: List[str] = []
    if any(p.per_class is not None for p in protocols):
        warning = capped_warning(per_image_counts)
        if warning:
            warnings.append(warning)
    chosen = {key: top.positions() for key, (top, _by) in selectors.items()}
    return chosen, warnings, int(per_image_counts.sum())


def evaluate_protocols(results_file: Path, ann_file: Path, metrics: Sequence[str], protocols: Sequence[Protocol],
                       workers: int, say: Say) -> Outcome:
    """Every protocol of ``protocols`` over one results file, in two passes (see the module's docstring)."""
    with_masks = "segm" in metrics
    say(f"loading {os.path.basename(str(ann_file))}")
    gt = load_ground_truth(ann_file, with_masks)
    chosen, warnings, total = _choose(results_file, gt, protocols, say)
    everything = union(chosen.values())
    say(f"{everything.size:,} of {total:,} detections chosen by " + ", ".join(p.name for p in protocols))
    dets = read_results(results_file, gt, with_masks, say=say, keep=everything)
    out: Dict[str, Dict[str, MetricResult]] = {p.name: {} for p in protocols}
    try:
        if "bbox" in metrics and dets.box is None:
            raise DataError(f"{results_file} has no boxes", "pass --metric segm for mask-only results")
        warm_up()
        for key, positions in chosen.items():
            kept = np.searchsorted(everything, positions)  # positions in the kept columns
            users = [p for p in protocols if p.selection_key() == key]
            for metric in metrics:
                _accumulate(gt, dets, kept, metric, users, workers, say, out)
    finally:
        dets.close()
    return Outcome(out, warnings)


def _accumulate(gt: GroundTruth, dets: Detections, kept: np.ndarray, metric: str, users: Sequence[Protocol],
                workers: int, say: Say, out: Dict[str, Dict[str, MetricResult]]) -> None:
    """One matching of the detections ``kept`` for ``metric``, accumulated the way of each protocol in ``users``."""
    rows, tp, fp = match(gt, dets, kept, metric, workers, say)
    cat, score, img = dets.cat[rows], dets.score[rows], dets.img[rows]
    groups, counts = gt.freq_groups(), num_gt(gt)
    for p in users:
        say(f"accumulating {metric} ({p.title})")
        if p.pooled:
            summary = pooled_summary(cat, score, img, rows, tp, fp, counts, groups)
            out[p.name][metric] = MetricResult(summary, class_rows(gt.categories, [None] * gt.num_cats))
        else:
            precision = accumulate(cat, score, img, rows, tp, fp, counts)
            out[p.name][metric] = MetricResult(summarize(precision, groups),
                                               class_rows(gt.categories, class_aps(precision)))
