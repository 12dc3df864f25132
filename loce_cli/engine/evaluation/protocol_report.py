"""``loce eval --protocol ...``: one results file evaluated under the requested protocols by the chosen evaluator,
as one ``EvalReport`` (standard under ``metrics``, as before; fixed / pooled under ``protocols``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from loce_cli.engine.evaluation.protocols import Protocol, capped_warning


def _rows(cats: List[dict], aps: Sequence[Optional[float]]):
    from loce_cli.engine.evaluation.evaluate import ClassAP

    return [ClassAP(int(c["id"]), str(c["name"]), str(c.get("frequency", "")), c.get("image_count"), ap,
                    c.get("instance_count")) for c, ap in zip(cats, aps)]


def evaluate_protocol_results(results_file: Path, ann_file: Path, metrics: List[str], split: str, max_dets: int,
                              evaluator: str, protocols: Sequence[Protocol], workers: Optional[int],
                              say: Optional[Callable[[str], None]]):
    from loce_cli.engine.evaluation.evaluate import EvalReport, MetricResult, ProtocolResult

    say = say or (lambda _m: None)
    start = time.perf_counter()
    results: Dict[str, Dict[str, MetricResult]] = {}
    if evaluator == "streaming":
        from loce_cli.engine.evaluation.protocol_stream import evaluate_protocols

        outcome, warnings = evaluate_protocols(results_file, ann_file, metrics, protocols, workers, say)
        for name, per_metric in outcome.items():
            results[name] = {m: MetricResult(summary, _rows(cats, aps)) for m, (summary, aps, cats)
                             in per_metric.items()}
    else:
        results, warnings = _in_memory(results_file, ann_file, metrics, max_dets, evaluator, protocols, say)
    return EvalReport(str(ann_file), str(results_file), evaluator, max_dets, split, results.get("standard", {}),
                      time.perf_counter() - start,
                      protocols={p.name: ProtocolResult(p.name, p.per_class, results[p.name])
                                 for p in protocols if p.name != "standard"}, warnings=warnings)


def _in_memory(results_file: Path, ann_file: Path, metrics: List[str], max_dets: int, evaluator: str,
               protocols: Sequence[Protocol], say):
    """The lvis API or faster-coco-eval under each protocol (every detection in memory)."""
    from loce_cli.engine.evaluation.evaluate import MetricResult, _copy_det, _run_fast, _run_lvis, load_checked
    from loce_cli.engine.evaluation.protocol_adapters import columns, run_fixed, run_pooled

    gt_data, dets = load_checked(results_file, ann_file, metrics, say)
    warnings: List[str] = []
    if any(p.per_class is not None for p in protocols):
        img, _cat, _score = columns(dets, gt_data)
        warning = capped_warning(np.bincount(img, minlength=len(gt_data["images"])))
        if warning:
            warnings.append(warning)
    cats = sorted(gt_data["categories"], key=lambda c: c["id"])
    out: Dict[str, Dict[str, MetricResult]] = {}
    for n, p in enumerate(protocols):
        if n < len(protocols) - 1:  # the evaluators annotate the detection dicts in place
            dets, original = [_copy_det(d) for d in dets], dets
        if p.name == "standard":
            out[p.name] = (_run_fast(gt_data, dets, metrics, max_dets, say) if evaluator == "fast"
                           else _run_lvis(Path(ann_file), dets, metrics, max_dets, say))
        elif p.pooled:
            summaries = run_pooled(evaluator, Path(ann_file), gt_data, dets, metrics, p, say)
            out[p.name] = {m: MetricResult(summaries[m], _rows(cats, [None] * len(cats))) for m in metrics}
        else:
            out[p.name] = run_fixed(evaluator, Path(ann_file), gt_data, dets, metrics, p, say)
        if n < len(protocols) - 1:
            dets = original
    return out, warnings
