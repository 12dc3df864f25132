"""``--evaluator lvis``: the official ``lvis`` API (0.5.3), the reference every other evaluator is tested against:
``LVIS``, ``LVISResults`` (keeps the top ``max_dets`` per image; -1: all) and ``LVISEval``, unmodified. A file with
the exhaustive flag (``core.annotations.EXHAUSTIVE_KEY``) reaches ``LVIS`` as the parsed content with each image's
lists written out (``expand_exhaustive``), not read from the file, which has none."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from loce_cli import compat

compat.quiet_known_noise()  # imports lvis first and takes its root-logger handler (logging.basicConfig) back off

from lvis import LVIS, LVISEval, LVISResults  # noqa: E402

from loce_cli.core.annotations import all_exhaustive  # noqa: E402
from loce_cli.engine.evaluation.accumulate import class_aps  # noqa: E402
from loce_cli.engine.evaluation.backends.in_memory import InMemoryEvaluator  # noqa: E402
from loce_cli.engine.evaluation.metrics import SUMMARY_KEYS, MetricResult, class_rows  # noqa: E402


class ParsedLVIS(LVIS):
    """``LVIS`` over content already parsed (and expanded) instead of a file: only the loading differs."""

    def __init__(self, data: dict):
        self._parsed = data
        super().__init__("<parsed annotations>")

    def _load_json(self, path):
        return self._parsed


class LvisApiEvaluator(InMemoryEvaluator):
    name = "lvis"
    reads_annotation_file = True

    def run(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
            max_dets: Optional[int]) -> Dict[str, MetricResult]:
        max_dets = -1 if max_dets is None else max_dets
        logging.getLogger("lvis").setLevel(logging.ERROR)  # "Assuming user provided the results in correct format."
        self.say(f"loading {ann_file.name} (lvis API)")
        gt = ParsedLVIS(gt_data) if all_exhaustive(gt_data) else LVIS(str(ann_file))
        out: Dict[str, MetricResult] = {}
        for metric in metrics:
            self.say(f"evaluating {metric} with the lvis API ({len(results):,} detections)")
            dt = LVISResults(gt, results, max_dets=max_dets)
            ev = LVISEval(gt, dt, iou_type=metric)
            ev.params.max_dets = max_dets
            ev.run()
            summary = {k: float(ev.results[k]) for k in SUMMARY_KEYS}
            aps = class_aps(ev.eval["precision"])  # [T, R, K, A], K in ev.params.cat_ids order
            out[metric] = MetricResult(summary, class_rows([gt.cats[c] for c in ev.params.cat_ids], aps))
        return out
