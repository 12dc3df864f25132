"""``loce eval CONFIG CHECKPOINT``: evaluating a model. Inference of the checkpoint on the config's test set (this
process, or N processes through torchrun, each streaming its share to its own results shard, merged by rank 0 into
results.json), then ``results_eval.evaluate_results`` and metrics.json + metrics.txt."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch.distributed as dist

import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
from loce_cli.engine.checkpoint_heads import check_head_types
from loce_cli.engine.checkpoints import check_unnamed_checkpoint, read_checkpoint
from loce_cli.engine.config.loading import load_config
from loce_cli.engine.data.checks import check_config_data
from loce_cli.engine.evaluation.annotation_rules import check_rules
from loce_cli.engine.evaluation.backends import DEFAULT_EVALUATOR
from loce_cli.engine.evaluation.checks import check_max_dets, check_usage
from loce_cli.engine.evaluation.metrics import METRICS, EvalReport, read_report, write_report
from loce_cli.engine.evaluation.protocols import DEFAULT_DETS_PER_CLASS, make_protocols
from loce_cli.engine.evaluation.results_eval import evaluate_results
from loce_cli.engine.evaluation.shards import ShardWriter, merge_shards, new_token, remove_stale
from loce_cli.engine.runtime.amp import check_inference
from loce_cli.engine.runtime.launch import LaunchOptions, check_launch, init_distributed, run_torchrun
from loce_cli.engine.runtime.locks import locked, takes_lock
from loce_cli.errors import DataError, OutputExistsError
from loce_cli.mmdet_ext.inference import iter_image_detections
from loce_cli.mmdet_ext.run_output import Terminal, routed_logs


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
    amp: Optional[str] = None  # inference under autocast: bf16 / fp16 (CUDA); engine/runtime/amp.py
    verbose: bool = False  # mmcv's / mmdet's log records on the terminal (else only their warnings)

    def per_class_inference(self) -> Optional[int]:
        """The per-class cap per image of the inference (fixed / pooled asked for), else None (300 per image)."""
        chosen = make_protocols(self.protocols, self.max_dets, self.dets_per_class)
        return self.dets_per_class if any(p.per_class is not None for p in chosen) else None


def _validate_eval(req: EvalRequest):
    """Everything that can be checked before inference starts; returns the loaded config."""
    req.metrics = check_usage(req.metrics, req.split, req.evaluator, req.workers)
    check_max_dets(req.max_dets)
    req.per_class_inference()  # checks --protocol / --dets-per-class
    check_launch(req.launch)
    check_inference(req.amp, req.launch.resolved_device())
    out = Path(req.out)
    if (out / "metrics.json").exists() and not req.force:
        raise OutputExistsError(f"--out {out} already holds metrics.json", "pass --force or another --out")
    cfg = load_config(Path(req.config), req.cfg_options)
    check_config_data(cfg, req.config, "test")  # other LVIS version, class count, image folders
    ckpt = read_checkpoint(Path(req.checkpoint))
    check_head_types(ckpt, cfg, Path(req.checkpoint), req.config)
    ann_file = Path(cfg.data.test.ann_file)
    if not ann_file.is_file():
        raise DataError(f"test annotations {ann_file} do not exist", "set --cfg-options data.test.ann_file=...")
    if not (ckpt.get("meta") or {}).get("CLASSES"):  # a bare state_dict, a converted model: the test set's names
        check_unnamed_checkpoint(ckpt, req.checkpoint, int(cfg.model.roi_head.bbox_head.num_classes),
                                 f"the test set {ann_file}", "evaluate on the dataset it was trained on, with its "
                                 "config", cfg)
    check_rules(ann_file, req.evaluator)  # refusals before inference (the warnings come with the evaluation)
    return cfg


def evaluate_model(req: EvalRequest, progress: Optional[Callable[[int, int], None]] = None,
                   say: Optional[Callable[[str], None]] = None) -> Optional[EvalReport]:
    """Inference of ``req.checkpoint`` on the config's test set (this process, or N processes through torchrun,
    results gathered on rank 0), the LVIS results JSON, evaluation, ``metrics.json`` + ``metrics.txt``. None on a
    node other than the first (rank 0 writes the report)."""
    _validate_eval(req)
    with locked(Path(req.out), "--out", take=takes_lock(req.launch)):  # one live evaluation per --out
        return _evaluate_model(req, progress, say)


def _evaluate_model(req: EvalRequest, progress, say) -> Optional[EvalReport]:
    if req.launch.starts_processes():
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
    say = say or (lambda _msg: None)
    rank, _local, world = init_distributed(req.launch)
    device = req.launch.resolved_device()
    cfg = load_config(Path(req.config), req.cfg_options)
    if world > 1 and rank == 0 and progress is None:
        progress = _text_progress(f"inference ({world} processes, rank 0's share)")
    out = Path(req.out)
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
        dist.barrier()
        dist.destroy_process_group()
    return report


def _share_token(rank: int, world: int) -> str:
    """Rank 0's new shard token, known to every rank."""
    token = [new_token() if rank == 0 else None]
    if world > 1:
        dist.broadcast_object_list(token, src=0)
    return token[0]


def write_results(cfg, checkpoint: Path, device: str, max_dets: int, out: Path, progress=None, rank: int = 0,
                  world: int = 1, say=None, per_class: Optional[int] = None, amp: Optional[str] = None):
    """Inference of this process's share of ``cfg.data.test``, streamed image by image to its own results shard;
    rank 0 then merges every rank's shard into ``out/results.json`` (byte-identical to one process's file).
    Returns ``(results file on rank 0 else None, whether masks came)``; with ``world > 1`` a process group must
    be initialised. ``amp``: the inference under autocast (bf16 / fp16)."""
    say = say or (lambda _msg: None)
    out = Path(out)
    token = _share_token(rank, world)
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
    last = [-1]

    def update(done: int, total: int) -> None:
        step = done * 10 // max(total, 1)
        if step != last[0]:
            last[0] = step
            print(f"{label}: {done}/{total} images", file=sys.stderr, flush=True)

    return update
