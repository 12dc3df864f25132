"""``loce eval``: LVIS evaluation of a model or of an existing results file: the streaming evaluator (the default;
bounded memory at the full LVIS val size, the official API's numbers), the official ``lvis`` API (the reference)
or faster-coco-eval's LVIS mode."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from loce_cli.core.frequency import parse_split
from loce_cli.engine.checkpoints import read_checkpoint
from loce_cli.engine.evaluation.protocols import DEFAULT_DETS_PER_CLASS, make_protocols
from loce_cli.engine.runtime.launch import LaunchOptions, check_launch, init_distributed
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError

METRICS = ("bbox", "segm")
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


@dataclass
class ClassAP:
    id: int
    name: str
    frequency: str
    image_count: Optional[int]  # training images with the class (the annotation file's category field)
    ap: Optional[float]  # None when the class has no ground truth in the evaluated set
    instance_count: Optional[int] = None  # training instances of the class


@dataclass
class MetricResult:
    summary: Dict[str, float]
    per_class: List[ClassAP] = field(default_factory=list)


@dataclass
class ProtocolResult:
    """AP-fixed or AP-pool results (``evaluation/protocols.py``); pooled rows carry no per-class AP."""

    name: str
    dets_per_class: int
    metrics: Dict[str, MetricResult]


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
    annotation_sha256: Optional[str] = None  # what `loce report` compares (engine/data_identity.py)
    protocols: Dict[str, "ProtocolResult"] = field(default_factory=dict)  # fixed / pooled (standard: metrics)
    warnings: List[str] = field(default_factory=list)

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
    from loce_cli.engine.json_files import decode_json

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


EVALUATORS = ("streaming", "lvis", "fast")
DEFAULT_EVALUATOR = "streaming"


def _check_evaluator(evaluator: str, workers: Optional[int]) -> None:
    if evaluator not in EVALUATORS:
        raise LoceUsageError(f"--evaluator {evaluator!r} is not supported",
                             "use streaming (the default), lvis (the official API) or fast")
    if workers is not None and workers < 1:
        raise LoceUsageError("--workers must be >= 1", "leave it out to use every core")


def evaluate_results(results_file: Path, ann_file: Path, metrics: Sequence[str] = METRICS, split: str = "all",
                     max_dets: int = 300, evaluator: str = DEFAULT_EVALUATOR,
                     say: Optional[Callable[[str], None]] = None, workers: Optional[int] = None,
                     protocols: Sequence[str] = ("standard",),
                     dets_per_class: int = DEFAULT_DETS_PER_CLASS) -> EvalReport:
    """Evaluate an LVIS results JSON against an LVIS annotation file: ``evaluator="streaming"`` (the default)
    reads the results in blocks and matches chunks of images in ``workers`` processes (default: the cores), with
    the official API's numbers; ``"lvis"`` is the official API (the reference), ``"fast"`` faster-coco-eval's LVIS
    mode (both hold every detection in memory). ``say`` hears what each step is doing. ``protocols``: standard
    (``metrics``), fixed and / or pooled (``protocols``, top ``dets_per_class`` per class, no per-image cap)."""
    from loce_cli import compat

    compat.apply()
    compat.quiet_known_noise()
    metrics = _check_metrics(metrics)
    _check_split(split)
    _check_evaluator(evaluator, workers)
    say = say or (lambda _msg: None)
    if max_dets < 1:
        raise LoceUsageError("--max-dets must be >= 1", "LVIS uses 300")
    chosen = make_protocols(protocols, max_dets, dets_per_class)
    from loce_cli.engine.json_files import gc_paused

    from loce_cli.engine.data.identity import annotation_sha256

    with gc_paused():  # millions of acyclic objects (results, the APIs' indexes): no cyclic-GC rescans
        if [p.name for p in chosen] != ["standard"]:
            from loce_cli.engine.evaluation.protocol_report import evaluate_protocol_results

            report = evaluate_protocol_results(Path(results_file), Path(ann_file), metrics, split, max_dets,
                                               evaluator, chosen, workers, say)
        elif evaluator == "streaming":
            report = _evaluate_streaming(Path(results_file), Path(ann_file), metrics, split, max_dets, workers, say)
        else:
            report = _evaluate(Path(results_file), Path(ann_file), metrics, split, max_dets, evaluator, say)
    report.annotation_sha256 = annotation_sha256(Path(ann_file))
    return report


def _evaluate_streaming(results_file: Path, ann_file: Path, metrics: List[str], split: str, max_dets: int,
                        workers: Optional[int], say: Callable[[str], None]) -> EvalReport:
    from loce_cli.engine.evaluation.streaming import evaluate_streaming

    start = time.perf_counter()
    out: Dict[str, MetricResult] = {}
    for metric, (summary, aps, cats) in evaluate_streaming(results_file, ann_file, metrics, max_dets, workers,
                                                           say).items():
        rows = [ClassAP(int(c["id"]), str(c["name"]), str(c.get("frequency", "")), c.get("image_count"), ap,
                        c.get("instance_count")) for c, ap in zip(cats, aps)]
        out[metric] = MetricResult(summary, rows)
    return EvalReport(str(ann_file), str(results_file), "streaming", max_dets, split, out,
                      time.perf_counter() - start)


def _evaluate(results_file: Path, ann_file: Path, metrics: List[str], split: str, max_dets: int, evaluator: str,
              say: Callable[[str], None]) -> EvalReport:
    start = time.perf_counter()
    gt_data, results = load_checked(results_file, ann_file, metrics, say)
    if evaluator == "fast":
        out = _run_fast(gt_data, results, metrics, max_dets, say)
    else:
        out = _run_lvis(Path(ann_file), results, metrics, max_dets, say)
    return EvalReport(str(ann_file), str(results_file), evaluator, max_dets, split, out, time.perf_counter() - start)


def load_checked(results_file: Path, ann_file: Path, metrics: Sequence[str], say=None):
    """The annotation file and the results list for an in-memory evaluator, checked against each other."""
    from loce_cli.engine.evaluation.validation import validate_file
    from loce_cli.engine.data.stats import load_annotation_json

    validate_file(results_file, ann_file, "segm" in metrics, say or (lambda _m: None))  # the streaming checks
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
    return gt_data, results


def _class_ap(precision_k) -> Optional[float]:
    """A class's AP from its precision slice (IoU x recall), LVIS's rule: the mean over the entries > -1."""
    p = precision_k[precision_k > -1]
    return float(p.mean()) if p.size else None


def _class_row(cat: dict, precision_k) -> ClassAP:
    return ClassAP(int(cat["id"]), str(cat["name"]), str(cat.get("frequency", "")), cat.get("image_count"),
                   _class_ap(precision_k), cat.get("instance_count"))


def _run_lvis(ann_file: Path, results: list, metrics: Sequence[str], max_dets: int, say) -> Dict[str, MetricResult]:
    """The reference: the official ``lvis`` API (LVIS, LVISResults keeps the top ``max_dets`` per image, LVISEval)."""
    import logging

    from lvis import LVIS, LVISEval, LVISResults

    logging.getLogger("lvis").setLevel(logging.ERROR)  # "Assuming user provided the results in correct format."
    say(f"loading {ann_file.name} (lvis API)")
    gt = LVIS(str(ann_file))
    out: Dict[str, MetricResult] = {}
    for metric in metrics:
        say(f"evaluating {metric} with the lvis API ({len(results):,} detections)")
        dt = LVISResults(gt, results, max_dets=max_dets)
        ev = LVISEval(gt, dt, iou_type=metric)
        ev.params.max_dets = max_dets
        ev.run()
        summary = {k: float(ev.results[k]) for k in SUMMARY_KEYS}
        precision = ev.eval["precision"]  # [T, R, K, A]
        per_class = []
        for k, cat_id in enumerate(ev.params.cat_ids):
            cat = gt.cats[cat_id]
            per_class.append(_class_row(cat, precision[:, :, k, 0]))
        out[metric] = MetricResult(summary, per_class)
    return out


def _top_dets_per_image(results: list, max_dets: int) -> list:
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


_FAST_KEYS = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APs": "AP_small", "APm": "AP_medium",
              "APl": "AP_large"}


def _copy_det(det: dict) -> dict:
    det = dict(det)
    if isinstance(det.get("segmentation"), dict):
        det["segmentation"] = dict(det["segmentation"])
    return det


def _run_fast(gt_data: dict, results: list, metrics: Sequence[str], max_dets: int, say) -> Dict[str, MetricResult]:
    """faster-coco-eval's C++ evaluator in LVIS mode (negative / not-exhaustive categories, r/c/f groups); the
    same AP, APr, APc, APf as the official API (tested to 1e-4), several times faster on large sets."""
    import logging

    import numpy as np
    from faster_coco_eval import COCO, COCOeval_faster

    logging.getLogger("faster_coco_eval").setLevel(logging.WARNING)
    say(f"indexing {len(gt_data['images']):,} images (faster-coco-eval)")
    gt = COCO(gt_data)
    kept = _top_dets_per_image(results, max_dets)
    cats = {c["id"]: c for c in gt_data["categories"]}
    out: Dict[str, MetricResult] = {}
    for n, metric in enumerate(metrics):
        say(f"evaluating {metric} with faster-coco-eval ({len(kept):,} detections)")
        # loadRes annotates the detection dicts in place (area, id, RLE): each metric gets its own copies
        dt = gt.loadRes(kept if n == len(metrics) - 1 else [_copy_det(r) for r in kept])
        ev = COCOeval_faster(gt, dt, iouType=metric, lvis_style=True, print_function=lambda *_a: None)
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        stats = ev.stats_as_dict
        summary = {k: float(stats[_FAST_KEYS.get(k, k)]) for k in SUMMARY_KEYS}
        precision = np.asarray(ev.eval["precision"])[..., 0]  # [T, R, K, A] at the one maxDets
        per_class = []
        for k, cat_id in enumerate(ev.params.catIds):
            cat = cats[cat_id]
            per_class.append(_class_row(cat, precision[:, :, k, 0]))
        out[metric] = MetricResult(summary, per_class)
    return out


def ap_text(value: float) -> str:
    """An AP summary value as the table and metrics.txt show it: percent with one decimal; ``-`` where LVIS has
    no value (its -1: no ground truth of that size or group)."""
    return f"{100 * value:.1f}" if value >= 0 else "-"


def write_report(report: EvalReport, out: Path) -> Path:
    """metrics.json and a plain-text table in ``out``, written as a set: both or neither (metrics.json, the file
    the next eval tests for, is renamed last)."""
    from loce_cli.atomic import atomic_paths

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"{'metric':<6} " + " ".join(f"{k:>6}" for k in SUMMARY_KEYS)]
    for metric, r in report.metrics.items():
        lines.append(f"{metric:<6} " + " ".join(f"{ap_text(r.summary[k]):>6}" for k in SUMMARY_KEYS))
    for name, p in report.protocols.items():  # AP-fixed / AP-pool rows
        for metric, r in p.metrics.items():
            lines.append(f"{metric:<6} " + " ".join(f"{ap_text(r.summary[k]):>6}" for k in SUMMARY_KEYS)
                         + f"  {name}")
    payloads = [("\n".join(lines) + "\n").encode(), (json.dumps(report.to_dict(), indent=2) + "\n").encode()]
    with atomic_paths([out / "metrics.txt", out / "metrics.json"], sum(map(len, payloads))) as temps:
        for tmp, payload in zip(temps, payloads):
            tmp.write_bytes(payload)
    return out / "metrics.json"


@dataclass
class EvalRequest:
    """``loce eval CONFIG CHECKPOINT``: what to run, where the outputs go, and how many processes infer."""

    config: str
    checkpoint: str
    out: str
    metrics: List[str] = field(default_factory=lambda: list(METRICS))
    split: str = "all"
    max_dets: int = 300
    cfg_options: List[str] = field(default_factory=list)
    force: bool = False
    evaluator: str = DEFAULT_EVALUATOR
    workers: Optional[int] = None
    launch: LaunchOptions = field(default_factory=LaunchOptions)
    protocols: List[str] = field(default_factory=lambda: ["standard"])
    dets_per_class: int = DEFAULT_DETS_PER_CLASS
    amp: Optional[str] = None  # inference under autocast: bf16 / fp16 (CUDA); engine/amp.py
    verbose: bool = False  # mmcv's / mmdet's log records on the terminal (else only their warnings)

    def per_class_inference(self) -> Optional[int]:
        """The per-class cap per image of the inference (fixed / pooled asked for), else None (300 per image)."""
        chosen = make_protocols(self.protocols, self.max_dets, self.dets_per_class)
        return self.dets_per_class if any(p.per_class is not None for p in chosen) else None


def _validate_eval(req: EvalRequest):
    """Everything that can be checked before inference starts; returns the loaded config."""
    from loce_cli.engine.config.loading import load_config
    from loce_cli.engine.data.checks import check_config_data

    req.metrics = _check_metrics(req.metrics)
    _check_split(req.split)
    _check_evaluator(req.evaluator, req.workers)
    if req.max_dets < 1:
        raise LoceUsageError("--max-dets must be >= 1", "LVIS uses 300")
    req.per_class_inference()  # checks --protocol / --dets-per-class
    check_launch(req.launch)
    from loce_cli.engine.runtime.amp import check_inference

    check_inference(req.amp, req.launch.resolved_device())
    out = Path(req.out)
    if (out / "metrics.json").exists() and not req.force:
        raise OutputExistsError(f"--out {out} already holds metrics.json", "pass --force or another --out")
    cfg = load_config(Path(req.config), req.cfg_options)
    check_config_data(cfg, req.config, "test")  # other LVIS version, class count, image folders
    ckpt = read_checkpoint(Path(req.checkpoint))
    if not (ckpt.get("meta") or {}).get("CLASSES"):
        raise DataError(f"{req.checkpoint} has no class names in its meta", "evaluate a checkpoint written by loce "
                        "(loce train base / loce finetune)")
    ann_file = Path(cfg.data.test.ann_file)
    if not ann_file.is_file():
        raise DataError(f"test annotations {ann_file} do not exist", "set --cfg-options data.test.ann_file=...")
    return cfg


def evaluate_model(req: EvalRequest, progress: Optional[Callable[[int, int], None]] = None,
                   say: Optional[Callable[[str], None]] = None) -> EvalReport:
    """Inference of ``req.checkpoint`` on the config's test set (this process, or N processes through torchrun,
    results gathered on rank 0), the LVIS results JSON, evaluation, ``metrics.json`` + ``metrics.txt``."""
    from loce_cli.engine.runtime.locks import locked, takes_lock

    _validate_eval(req)
    with locked(Path(req.out), "--out", take=takes_lock(req.launch)):  # one live evaluation per --out
        return _evaluate_model(req, progress, say)


def _evaluate_model(req: EvalRequest, progress, say) -> Optional[EvalReport]:
    if req.launch.starts_processes():
        from loce_cli.engine.runtime.launch import run_torchrun

        out = Path(req.out)
        out.mkdir(parents=True, exist_ok=True)
        spec = out / ".loce_eval_launch.json"
        try:
            run_torchrun(req.launch, dict(kind="eval", **asdict(req)), spec, "evaluation",
                         "see the output above")
        finally:
            spec.unlink(missing_ok=True)
        if req.launch.node_rank != 0:
            return None
        return read_report(out / "metrics.json")
    return run_eval_worker(req, progress, say)


def run_eval_worker(req: EvalRequest, progress=None, say=None) -> Optional[EvalReport]:
    """One inference process: its share of the images, streamed to its own results shard; rank 0 merges the
    shards into results.json (never holding every detection) and evaluates it."""
    import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
    from loce_cli.engine.config.loading import load_config

    say = say or (lambda _msg: None)
    rank, _local, world = init_distributed(req.launch)
    device = req.launch.resolved_device()
    cfg = load_config(Path(req.config), req.cfg_options)
    if world > 1 and rank == 0 and progress is None:
        progress = _text_progress(f"inference ({world} processes, rank 0's share)")
    out = Path(req.out)
    from loce_cli.mmdet_ext.run_output import Terminal, routed_logs

    with routed_logs(None, rank, Terminal(), req.verbose):  # as training: mmcv's records only with --verbose
        results_file, has_masks = write_results(cfg, Path(req.checkpoint), device, req.max_dets, out, progress,
                                                rank, world, say, per_class=req.per_class_inference(),
                                                amp=req.amp)
    report = None
    if rank == 0:
        metrics = req.metrics if has_masks else [m for m in req.metrics if m != "segm"]
        report = evaluate_results(results_file, Path(cfg.data.test.ann_file), metrics, req.split, req.max_dets,
                                  req.evaluator, say, req.workers, req.protocols, req.dets_per_class)
        report.checkpoint, report.config = str(req.checkpoint), str(req.config)
        write_report(report, out)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return report


def write_results(cfg, checkpoint: Path, device: str, max_dets: int, out: Path, progress=None, rank: int = 0,
                  world: int = 1, say=None, per_class: Optional[int] = None, amp: Optional[str] = None):
    """Inference of this process's share of ``cfg.data.test``, streamed image by image to its own results shard;
    rank 0 then merges every rank's shard into ``out/results.json`` (byte-identical to one process's file).
    Returns ``(results file on rank 0 else None, whether masks came)``; with ``world > 1`` a process group must
    be initialised. ``amp``: the inference under autocast (bf16 / fp16)."""
    from loce_cli.engine.evaluation.shards import ShardWriter, merge_shards, new_token, remove_stale
    from loce_cli.mmdet_ext.inference import iter_image_detections

    say = say or (lambda _msg: None)
    out = Path(out)
    token = [new_token() if rank == 0 else None]
    if world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(token, src=0)
    token = token[0]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale(out)  # shards of an earlier, interrupted evaluation are never merged
    if world > 1:
        dist.barrier()
    writer = ShardWriter(out, rank, world, token)
    has_masks = False
    try:
        for img_id, dets, masks in iter_image_detections(cfg, Path(checkpoint), device, max_dets, progress, rank,
                                                         world, per_class, amp):
            writer.add(img_id, dets)
            has_masks = has_masks or masks
        writer.close()
    except BaseException:
        writer.abort()
        raise
    if world > 1:
        flags = [None] * world
        dist.all_gather_object(flags, has_masks)
        has_masks = any(flags)
    if rank != 0:
        return None, has_masks
    results_file = out / "results.json"
    count = merge_shards(out, world, token, results_file)
    say(f"wrote {count:,} detections to {results_file}")
    return results_file, has_masks


def _text_progress(label: str):
    """A progress callback printing every 10% to stderr (for processes without a rich console)."""
    import sys

    last = [-1]

    def update(done: int, total: int) -> None:
        step = done * 10 // max(total, 1)
        if step != last[0]:
            last[0] = step
            print(f"{label}: {done}/{total} images", file=sys.stderr, flush=True)

    return update


def read_report(path: Path) -> EvalReport:
    """An ``EvalReport`` from a ``metrics.json`` written by ``write_report``, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist", "pass an eval --out directory or its metrics.json")
    try:
        data = json.loads(path.read_text())
        metrics = {m: MetricResult(r["summary"], [ClassAP(**c) for c in r["per_class"]])
                   for m, r in data["metrics"].items()}
        data["metrics"] = metrics
        data["protocols"] = {name: ProtocolResult(name, r["dets_per_class"], {
            m: MetricResult(x["summary"], [ClassAP(**c) for c in x["per_class"]]) for m, x in r["metrics"].items()})
            for name, r in (data.get("protocols") or {}).items()}
        return EvalReport(**data)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path} is not a loce metrics.json ({type(e).__name__}: {str(e)[:80]})",
                        "pass the metrics.json that loce eval wrote") from None
