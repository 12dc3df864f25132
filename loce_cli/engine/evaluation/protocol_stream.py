"""The streaming evaluator under several protocols at once, in bounded memory however large the results file.

Two passes over the file. The first decodes only image, category and score and keeps, per protocol, the chosen
file positions in bounded per-group arrays (``protocols.TopKPerGroup``: the top 300 per image for standard, the
top ``dets_per_class`` per category for fixed / pooled). The second reads (and validates) every detection
but keeps only the union of the chosen ones as columns. Protocols that choose the same detections share one
matching (fixed and pooled); each then accumulates its own way.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from loce_cli.engine.evaluation.accumulate import accumulate, class_aps, summarize
from loce_cli.engine.evaluation.ground_truth import load_ground_truth
from loce_cli.engine.evaluation.matching import warm_up
from loce_cli.engine.evaluation.pooled import pooled_summary
from loce_cli.engine.evaluation.protocols import TopKPerGroup, capped_warning, Protocol, union
from loce_cli.engine.evaluation.results_reader import read_results, scan_protocols
from loce_cli.engine.evaluation.streaming import default_workers, match, num_gt
from loce_cli.errors import DataError

Outcome = Dict[str, Tuple[Dict[str, float], List[Optional[float]], List[dict]]]


def evaluate_protocols(results_file, ann_file, metrics: Sequence[str], protocols: Sequence[Protocol],
                       workers: Optional[int] = None, say: Optional[Callable[[str], None]] = None
                       ) -> Tuple[Dict[str, Outcome], List[str]]:
    """``({protocol name: {metric: (summary, per-category AP or None, category records)}}, warnings)``."""
    say = say or (lambda _m: None)
    workers = workers or default_workers()
    with_masks = "segm" in metrics
    say(f"loading {os.path.basename(str(ann_file))}")
    gt = load_ground_truth(ann_file, with_masks)
    keys = list(dict.fromkeys(p.selection_key() for p in protocols))
    selectors = {}
    for key in keys:
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
    everything = union(chosen.values())
    say(f"{everything.size:,} of {int(per_image_counts.sum()):,} detections chosen by "
        + ", ".join(p.name for p in protocols))
    dets = read_results(results_file, gt, with_masks, say=say, keep=everything)
    out: Dict[str, Outcome] = {p.name: {} for p in protocols}
    try:
        if "bbox" in metrics and dets.box is None:
            raise DataError(f"{results_file} has no boxes", "pass --metric segm for mask-only results")
        warm_up()
        groups = gt.freq_groups()
        counts = num_gt(gt)
        for key in keys:
            kept = np.searchsorted(everything, chosen[key])  # positions in the kept columns
            users = [p for p in protocols if p.selection_key() == key]
            for metric in metrics:
                rows, tp, fp = match(gt, dets, kept, metric, workers, say)
                cat, score, img = dets.cat[rows], dets.score[rows], dets.img[rows]
                for p in users:
                    say(f"accumulating {metric} ({p.title})")
                    if p.pooled:
                        summary = pooled_summary(cat, score, img, rows, tp, fp, counts, groups)
                        out[p.name][metric] = (summary, [None] * gt.num_cats, gt.categories)
                    else:
                        precision = accumulate(cat, score, img, rows, tp, fp, counts)
                        out[p.name][metric] = (summarize(precision, groups), class_aps(precision), gt.categories)
    finally:
        dets.close()
    return out, warnings
