"""What an evaluator that holds every detection in memory needs (the official ``lvis`` API): the results file
validated by the streaming reader and then loaded as a list, and the protocols built from nothing but the
library's standard LVIS AP, both unmodified.

- standard: the library's LVIS AP (at most ``max_dets`` per image).
- fixed: per category the top ``per_class`` detections by score (stable sort: equal scores in file order, as the
  paper's ``evaluate_ap_fixed.py``), then the library with no per-image cap.
- pooled: the same detections; each pool (all / r / c / f) becomes a one-category problem (``pooled.pool_problem``)
  evaluated the same way; the pool's AP is that category's AP.

A backend subclasses ``InMemoryEvaluator`` and says, in ``run``, how its library evaluates a list of detections.
"""

from __future__ import annotations

import json
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

import numpy as np

from loce_cli.core.annotations import expand_exhaustive
from loce_cli.engine.data.stats import load_annotation_json
from loce_cli.engine.evaluation.evaluator import Evaluator, Outcome
from loce_cli.engine.evaluation.ground_truth import load_ground_truth
from loce_cli.engine.evaluation.metrics import MetricResult, class_rows
from loce_cli.engine.evaluation.pooled import POOLS, pool_members, pool_problem
from loce_cli.engine.evaluation.protocols import Protocol, capped_warning
from loce_cli.engine.evaluation.results_reader import read_results
from loce_cli.engine.json_files import decode_json
from loce_cli.errors import DataError

_WHOLE_POOL_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


class InMemoryEvaluator(Evaluator):
    reads_annotation_file: ClassVar[bool] = False  # True: ``run`` reads ``ann_file`` (a pool's is written out)

    @abstractmethod
    def run(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
            max_dets: Optional[int]) -> Dict[str, MetricResult]:
        """LVIS AP of ``results`` against the annotations (``gt_data``, read from ``ann_file``) per metric, at
        most ``max_dets`` per image (None: no per-image cap). The library may annotate the dicts in place."""

    def evaluate(self, results_file: Path, ann_file: Path, metrics: Sequence[str], max_dets: int,
                 protocols: Sequence[Protocol]) -> Outcome:
        gt_data, dets = load_checked(results_file, ann_file, metrics, self.say)
        warnings: List[str] = []
        if any(p.per_class is not None for p in protocols):
            img, _cat, _score = columns(dets, gt_data)
            warning = capped_warning(np.bincount(img, minlength=len(gt_data["images"])))
            if warning:
                warnings.append(warning)
        out: Dict[str, Dict[str, MetricResult]] = {}
        for n, p in enumerate(protocols):
            if n < len(protocols) - 1:  # the libraries annotate the detection dicts in place
                dets, original = [copy_detection(d) for d in dets], dets
            if p.name == "standard":
                out[p.name] = self.run(Path(ann_file), gt_data, dets, metrics, max_dets)
            elif p.pooled:
                cats = sorted(gt_data["categories"], key=lambda c: c["id"])
                summaries = self._pooled(Path(ann_file), gt_data, dets, metrics, p)
                out[p.name] = {m: MetricResult(summaries[m], class_rows(cats, [None] * len(cats))) for m in metrics}
            else:
                out[p.name] = self._fixed(Path(ann_file), gt_data, dets, metrics, p)
            if n < len(protocols) - 1:
                dets = original
        return Outcome(out, warnings)

    def _fixed(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
               protocol: Protocol) -> Dict[str, MetricResult]:
        kept = chosen(results, gt_data, protocol)
        self.say(f"AP-fixed: {len(kept):,} of {len(results):,} detections kept (top {protocol.per_class:,} per "
                 "class)")
        return self.run(ann_file, gt_data, kept, metrics, None)

    def _pooled(self, ann_file: Path, gt_data: dict, results: List[dict], metrics: Sequence[str],
                protocol: Protocol) -> Dict[str, Dict[str, float]]:
        """``{metric: AP-pool summary}`` (AP, AP50, AP75, APs, APm, APl of the pool of all categories; APr, APc,
        APf of the frequency pools)."""
        kept = chosen(results, gt_data, protocol)
        cats = sorted(gt_data["categories"], key=lambda c: c["id"])
        freq = np.array([str(c.get("frequency", "")) for c in cats])
        members = pool_members([np.flatnonzero(freq == g) for g in ("r", "c", "f")], len(cats))
        out: Dict[str, Dict[str, float]] = {m: {} for m in metrics}
        with tempfile.TemporaryDirectory(prefix="loce-pool-") as tmp:
            for pool in POOLS:
                gt_pool, dets = pool_problem(gt_data, kept, [cats[k]["id"] for k in members[pool].tolist()])
                self.say(f"AP-pool, pool {pool}: {len(dets):,} detections over {len(gt_pool['images']):,} "
                         "(image, category) pairs")
                if not dets or not gt_pool["annotations"]:
                    value = 0.0 if any(a.get("area", 0) > 0 for a in gt_pool["annotations"]) else -1.0
                    for m in metrics:
                        out[m].update(dict.fromkeys(_WHOLE_POOL_KEYS, value) if pool == "all" else {f"AP{pool}": value})
                    continue
                pool_file = Path(tmp) / f"pool_{pool}.json"
                if self.reads_annotation_file:
                    pool_file.write_text(json.dumps(gt_pool))
                res = self.run(pool_file, gt_pool, dets, metrics, None)
                for m in metrics:
                    s = res[m].summary
                    out[m].update({k: s[k] for k in _WHOLE_POOL_KEYS} if pool == "all" else {f"AP{pool}": s["AP"]})
        return out


def copy_detection(det: dict) -> dict:
    """A copy that an evaluator may annotate in place (the mask dict copied too)."""
    det = dict(det)
    if isinstance(det.get("segmentation"), dict):
        det["segmentation"] = dict(det["segmentation"])
    return det


def columns(results: List[dict], gt_data: dict) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image index, category index (sorted ids, as the evaluators order them) and score of each detection."""
    img_ids = np.array(sorted(im["id"] for im in gt_data["images"]), np.int64)
    cat_ids = np.array(sorted(c["id"] for c in gt_data["categories"]), np.int64)
    img = np.searchsorted(img_ids, np.fromiter((r["image_id"] for r in results), np.int64, len(results)))
    cat = np.searchsorted(cat_ids, np.fromiter((r["category_id"] for r in results), np.int64, len(results)))
    score = np.fromiter((r["score"] for r in results), np.float64, len(results))
    return img, cat, score


def chosen(results: List[dict], gt_data: dict, protocol: Protocol) -> List[dict]:
    """The detections ``protocol`` evaluates, in file order."""
    img, cat, score = columns(results, gt_data)
    return [results[i] for i in protocol.select(img, cat, score).tolist()]


def validate_file(results_file: Path, ann_file: Path, with_masks: bool, say=None) -> int:
    """The streaming reader's checks, for an evaluator that reads the file its own way: one pass over
    ``results_file`` (bounded memory), nothing kept. Returns the count."""
    gt = load_ground_truth(Path(ann_file), False)
    dets = read_results(Path(results_file), gt, with_masks, say=say)
    try:
        if dets.box is None and not with_masks:
            raise DataError(f"{results_file} has no boxes", "pass --metric segm for mask-only results")
        return dets.size
    finally:
        dets.close()


def _load_results(path: Path) -> list:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file {path} does not exist", "pass an LVIS results JSON")
    try:
        results = decode_json(path.read_bytes())
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                        "the file may be truncated; write it again") from None
    if not isinstance(results, list):
        raise DataError(f"{path} is not an LVIS results list", "expected [{image_id, category_id, bbox, score}, ...]")
    if not results:
        raise DataError(f"{path} holds no detections", "nothing to evaluate; check the model or the score threshold")
    return results


def load_checked(results_file: Path, ann_file: Path, metrics: Sequence[str], say=None) -> Tuple[dict, list]:
    """The annotation file and the results list for an in-memory evaluator, checked against each other."""
    validate_file(results_file, ann_file, "segm" in metrics, say or (lambda _m: None))  # the streaming checks
    gt_data = expand_exhaustive(load_annotation_json(Path(ann_file)))  # a flagged file's lists, as LVIS tools read
    results = _load_results(Path(results_file))
    img_ids = {im["id"] for im in gt_data["images"]}
    cat_ids = {c["id"] for c in gt_data["categories"]}
    bad_img = sum(1 for r in results if r.get("image_id") not in img_ids)
    bad_cat = sum(1 for r in results if r.get("category_id") not in cat_ids)
    if bad_img or bad_cat:
        raise DataError(f"{results_file} does not match {ann_file}: {bad_img} detections for unknown images, "
                        f"{bad_cat} for unknown categories", "evaluate against the annotation file the results "
                        "were made for")
    if "segm" in metrics and any("segmentation" not in r for r in results):
        raise DataError(f"{results_file} has detections without 'segmentation'", "pass --metric bbox for box-only "
                        "results")
    return gt_data, results
