"""``loce eval``: LVIS-style evaluation (official ``lvis`` API) of a model or of an existing results file."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from loce_cli.core.frequency import parse_split
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError

METRICS = ("bbox", "segm")
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


@dataclass
class ClassAP:
    id: int
    name: str
    frequency: str
    image_count: Optional[int]
    ap: Optional[float]  # None when the class has no ground truth in the evaluated set


@dataclass
class MetricResult:
    summary: Dict[str, float]
    per_class: List[ClassAP] = field(default_factory=list)


@dataclass
class EvalReport:
    annotation_file: str
    results_file: str
    evaluator: str
    max_dets: int
    split: str
    metrics: Dict[str, MetricResult]
    seconds: float
    checkpoint: Optional[str] = None
    config: Optional[str] = None

    def to_dict(self) -> dict:
        return asdict(self)

    def split_view(self, metric: str) -> List[ClassAP]:
        """The per-class rows of the selected split, sorted by AP (lowest first; classes without AP last)."""
        groups = parse_split(self.split)
        rows = [c for c in self.metrics[metric].per_class if c.frequency in groups]
        return sorted(rows, key=lambda c: (c.ap is None, c.ap if c.ap is not None else 0.0, c.name))


def _check_metrics(metrics: Sequence[str]) -> List[str]:
    out = []
    for m in metrics or METRICS:
        if m not in METRICS:
            raise LoceUsageError(f"--metric {m!r} is not supported", "use bbox and/or segm")
        if m not in out:
            out.append(m)
    return out


def _check_split(split: str) -> None:
    try:
        parse_split(split)
    except ValueError as e:
        raise LoceUsageError(str(e), "--split all|rare|common|frequent") from None


def _load_results(path: Path) -> list:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"results file {path} does not exist", "pass an LVIS results JSON")
    try:
        with open(path, "rb") as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})",
                        "the file may be truncated; write it again") from None
    if not isinstance(results, list):
        raise DataError(f"{path} is not an LVIS results list", "expected [{image_id, category_id, bbox, score}, ...]")
    if not results:
        raise DataError(f"{path} holds no detections", "nothing to evaluate; check the model or the score threshold")
    return results


def evaluate_results(results_file: Path, ann_file: Path, metrics: Sequence[str] = METRICS, split: str = "all",
                     max_dets: int = 300) -> EvalReport:
    """Evaluate an LVIS results JSON against an LVIS annotation file with the official ``lvis`` API."""
    from loce_cli import compat

    compat.apply()
    compat.quiet_known_noise()
    from lvis import LVIS, LVISEval, LVISResults

    from loce_cli.engine.stats import load_annotation_json

    metrics = _check_metrics(metrics)
    _check_split(split)
    if max_dets < 1:
        raise LoceUsageError("--max-dets must be >= 1", "LVIS uses 300")
    start = time.perf_counter()
    gt_data = load_annotation_json(Path(ann_file))
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
    gt = LVIS(str(ann_file))
    out: Dict[str, MetricResult] = {}
    for metric in metrics:
        dt = LVISResults(gt, results, max_dets=max_dets)
        ev = LVISEval(gt, dt, iou_type=metric)
        ev.params.max_dets = max_dets
        ev.run()
        summary = {k: float(ev.results[k]) for k in SUMMARY_KEYS}
        precision = ev.eval["precision"]  # [T, R, K, A]
        per_class = []
        for k, cat_id in enumerate(ev.params.cat_ids):
            p = precision[:, :, k, 0]
            p = p[p > -1]
            cat = gt.cats[cat_id]
            per_class.append(ClassAP(int(cat_id), str(cat["name"]), str(cat.get("frequency", "")),
                                     cat.get("image_count"), float(p.mean()) if p.size else None))
        out[metric] = MetricResult(summary, per_class)
    return EvalReport(str(ann_file), str(results_file), "lvis", max_dets, split, out, time.perf_counter() - start)


def write_report(report: EvalReport, out: Path) -> Path:
    """metrics.json and a plain-text table in ``out`` (written atomically)."""
    from loce_cli.engine._io import atomic_path, write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "metrics.json", report.to_dict(), indent=2)
    lines = [f"{'metric':<6} " + " ".join(f"{k:>6}" for k in SUMMARY_KEYS)]
    for metric, r in report.metrics.items():
        lines.append(f"{metric:<6} " + " ".join(f"{100 * r.summary[k]:6.1f}" for k in SUMMARY_KEYS))
    with atomic_path(out / "metrics.txt") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return out / "metrics.json"


def evaluate_model(config: Path, checkpoint: Path, out: Path, metrics: Sequence[str] = METRICS, split: str = "all",
                   max_dets: int = 300, cfg_options: Sequence[str] = (), device: str = "cpu", force: bool = False,
                   progress=None) -> EvalReport:
    """Single-process inference of ``checkpoint`` on the config's test set, LVIS results JSON, evaluation."""
    import torch

    from loce_cli.engine._io import atomic_path
    from loce_cli.engine.config import load_config
    from loce_cli.engine.train import read_checkpoint

    metrics = _check_metrics(metrics)
    _check_split(split)
    out = Path(out)
    if (out / "metrics.json").exists() and not force:
        raise OutputExistsError(f"--out {out} already holds metrics.json", "pass --force or another --out")
    cfg = load_config(Path(config), cfg_options)
    ckpt = read_checkpoint(Path(checkpoint))
    if not (ckpt.get("meta") or {}).get("CLASSES"):
        raise DataError(f"{checkpoint} has no class names in its meta", "evaluate a checkpoint written by loce "
                        "(loce train base / loce finetune)")
    test = cfg.data.test
    ann_file = Path(test.ann_file)
    if not ann_file.is_file():
        raise DataError(f"test annotations {ann_file} do not exist", "set --cfg-options data.test.ann_file=...")
    if device == "cuda" and not torch.cuda.is_available():
        raise LoceUsageError("--device cuda but no CUDA device is present", "use --device cpu")
    from loce_cli.mmdet_ext.inference import lvis_detections

    dets, has_masks = lvis_detections(cfg, Path(checkpoint), device, max_dets, progress)
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.json"
    with atomic_path(results_file) as tmp:
        tmp.write_text(json.dumps(dets))
    if not has_masks:
        metrics = [m for m in metrics if m != "segm"]
    report = evaluate_results(results_file, ann_file, metrics, split, max_dets)
    report.checkpoint, report.config = str(checkpoint), str(config)
    write_report(report, out)
    return report

