"""``loce train base`` and ``loce finetune``: validation, launching (one process, torchrun, Slurm) and the
training run itself over mmcv's runner."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed as dist

import loce_cli.mmdet_ext  # noqa: F401  (registers loce's components)
from loce_cli.engine.checkpoint_heads import check_head_types
from loce_cli.engine.checkpoints import check_base_checkpoint, read_checkpoint
from loce_cli.engine.config.loading import dataset_paths, load_config
from loce_cli.engine.config.names import config_file_name, resolve_config
from loce_cli.engine.data.box_only import check_masks_for_config
from loce_cli.engine.data.checks import check_config_data
from loce_cli.engine.data.prep import check_prepared
from loce_cli.engine.evaluation import METRICS, EvalRequest, evaluate_results, write_report, write_results
from loce_cli.engine.json_files import write_json_atomic
from loce_cli.engine.runtime import amp
from loce_cli.engine.runtime.launch import LaunchOptions, check_launch, env_rank, init_distributed, run_torchrun
from loce_cli.engine.runtime.locks import locked, takes_lock
from loce_cli.engine.training.next_step import next_command
from loce_cli.engine.training.resume import (STOPPED_FILE, interrupted, plan_resume, read_stopped, saved_config,
                                             stopped_by_signal, warn, write_stopped)
from loce_cli.errors import DataError, LoceUsageError, OutputExistsError
from loce_cli.mmdet_ext.backbone_weights import check_weights_file, use_weights_file
from loce_cli.mmdet_ext.runner import (Preempted, ignore_stop_signals, newest_checkpoint, remove_stale_tmp,
                                      requeue_slurm_job, run_training)

STAGES = ("base", "finetune")


@dataclass
class TrainRequest:
    config: str
    stage: str = "base"
    work_dir: Optional[str] = None
    base_checkpoint: Optional[str] = None
    resume: Optional[str] = None  # None, "auto" (newest in work dir) or a checkpoint path
    seed: int = 0
    deterministic: bool = False
    cfg_options: List[str] = field(default_factory=list)  # --data's options (data_options) first, then the user's
    force: bool = False
    data_dir: Optional[str] = None  # --data DIR (engine.config.data_dir)
    data_options: List[str] = field(default_factory=list)  # the --cfg-options that --data stands for
    launch: LaunchOptions = field(default_factory=LaunchOptions)
    tensorboard: bool = False  # also log to WORK_DIR/tf_logs through mmcv's TensorboardLoggerHook
    no_validate: bool = False  # skip the config's evaluation = dict(interval=N) during training
    checkpoint_every: int = 0  # a mid-epoch checkpoint every N iterations (0: epoch ends only)
    requeue: bool = False  # stopped by a signal inside a Slurm job: `scontrol requeue $SLURM_JOB_ID` (rank 0)
    amp: Optional[str] = None  # --amp fp16|bf16 (None: the config's fp16/amp key, else fp32); engine/amp.py
    verbose: bool = False  # mmcv's log records on the terminal too (always in WORK_DIR/<timestamp>.log)
    backbone_weights: Optional[str] = None  # train base --backbone-weights: a local file instead of the download


@dataclass
class TrainResult:
    work_dir: str
    checkpoint: str
    epochs: int
    iterations: int
    seconds: float
    world_size: int
    device: str
    memory_init: Optional[dict] = None
    note: str = ""
    rank: int = 0  # the global rank of the process that returns it; only rank 0's is the run's result
    evaluations: Optional[dict] = None  # epoch -> {metric: summary} of the evaluations during training (rank 0)
    final_loss: Optional[float] = None  # mean loss of the last iterations (core.progress.LOSS_WINDOW)
    next_command: str = ""  # what to run next (engine.next_step)

    def to_dict(self) -> dict:
        return asdict(self)


RESULT_FILE = "loce_train_result.json"
EVAL_DIR = "eval_epoch_{}"  # WORK_DIR/eval_epoch_N/metrics.json: the evaluation after epoch N
EVAL_KEYS = ("interval", "metric")  # the keys of mmdet's `evaluation` dict that loce honours
EVAL_MAX_DETS = 300  # as `loce eval`'s default: LVIS's 300 detections per image


def default_work_dir(config: str, stage: str) -> str:
    return str(Path("work_dirs") / Path(config).stem)


def _has_run(work_dir: Path) -> bool:
    return work_dir.is_dir() and any(p.name.startswith(("epoch_", "iter_")) and p.suffix == ".pth"
                                     for p in work_dir.iterdir())


def validate(req: TrainRequest):
    """Everything that can be checked before starting processes; returns the loaded config."""
    launch = req.launch
    if req.stage not in STAGES:
        raise LoceUsageError(f"unknown stage {req.stage!r}", "base or finetune")
    check_launch(launch)
    if req.tensorboard:
        if importlib.util.find_spec("tensorboard") is None:
            raise LoceUsageError("--tensorboard needs the tensorboard package", "pip install tensorboard "
                                 "(scripts/dev/setup.sh installs it)")

    if req.checkpoint_every < 0:
        raise LoceUsageError(f"--checkpoint-every must be >= 0, got {req.checkpoint_every}", "e.g. 500 (iterations)")
    if req.requeue and not os.environ.get("SLURM_JOB_ID"):
        raise LoceUsageError("--requeue works inside a Slurm job (SLURM_JOB_ID is not set)",
                             "submit with sbatch --requeue, or drop --requeue")
    cfg = run_config(req, announce=True)  # mixed precision (--amp, fp16 = dict(...)) resolved and checked there
    check_config_data(cfg, req.config, "train")  # other LVIS version, class count, image folders
    for path in dataset_paths(cfg):
        if not path.exists():
            raise DataError(f"training data {path} does not exist (from {req.config})",
                            "generate it (loce data synth --out DIR) or point the config at your data with "
                            "--cfg-options data.train.ann_file=... data.train.img_prefix=...")
    check_prepared(cfg, req.config)  # real-LVIS configs: the data must have been through `loce data prep`
    check_masks_for_config(cfg, req.config, req.stage)  # a mask head on box-only data: name the Faster R-CNN config
    if not req.no_validate:
        check_evaluation(cfg, req.config)
    if req.backbone_weights:
        if req.stage != "base" or req.resume:
            raise LoceUsageError("--backbone-weights is for a new base run", "a fine-tune or a resume loads every "
                                 "weight from its checkpoint; drop --backbone-weights")
        check_weights_file(Path(req.backbone_weights), cfg.model.backbone)
    if req.stage == "finetune":
        if not req.base_checkpoint:
            raise LoceUsageError("finetune needs the base checkpoint", "pass --from BASE_CKPT")
        ckpt = check_base_checkpoint(Path(req.base_checkpoint), cfg)
        check_head_types(ckpt, cfg, Path(req.base_checkpoint), req.config)
    return cfg


def config_named(config: str) -> str:
    """The CONFIG argument as a file path (a shipped config's name resolved), or as given where it is gone."""
    try:
        return str(resolve_config(Path(config)))
    except DataError:
        return str(config)


def run_config(req: TrainRequest, announce: bool = False):
    """The config the run trains with: the config file with --cfg-options, or for a resume the run's own config
    saved in its checkpoint (with the options a resume may change; :mod:`loce_cli.engine.training.resume`); its mixed
    precision resolved into one ``amp`` key (:mod:`loce_cli.engine.runtime.amp`)."""
    if req.resume:
        cfg = saved_config(read_checkpoint(Path(req.resume)), req.cfg_options, req.resume,
                           filename=config_named(req.config))  # messages name the CONFIG, not a temporary file
    else:
        cfg = load_config(Path(req.config), req.cfg_options)
        if req.backbone_weights:
            use_weights_file(cfg.model, Path(req.backbone_weights))
    return amp.apply(cfg, req.amp, req.launch.resolved_device(), req.config, resumed=bool(req.resume),
                     warn=warn if announce and env_rank() == 0 else None)


def evaluation_interval(cfg) -> Optional[int]:
    """The config's ``evaluation.interval`` when training will reach it (an evaluation will run), else None."""
    ev = cfg.get("evaluation") or {}
    interval = ev.get("interval")
    if interval is None:
        return None
    max_epochs = int((cfg.get("runner") or {}).get("max_epochs", cfg.get("total_epochs", 0)) or 0)
    return int(interval) if 0 < int(interval) <= max_epochs else None


def check_evaluation(cfg, config: str) -> None:
    """Refuse an ``evaluation`` dict loce would not honour, or one whose test data is missing, before training."""
    ev = cfg.get("evaluation") or {}
    unknown = sorted(set(ev) - set(EVAL_KEYS))
    if unknown:
        raise LoceUsageError(f"{config}: evaluation = dict(...) sets {', '.join(unknown)}, which loce does not "
                             f"support (it honours {', '.join(EVAL_KEYS)})",
                             "remove those keys, or pass --no-validate and evaluate with `loce eval`")
    interval = ev.get("interval")
    if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool) or interval < 1):
        raise LoceUsageError(f"{config}: evaluation.interval must be a whole number of epochs >= 1, got {interval!r}",
                             "e.g. --cfg-options evaluation.interval=1")
    metrics = ev.get("metric", list(METRICS))
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
        raise LoceUsageError(f"{config}: evaluation.metric {bad} is not one of {', '.join(METRICS)}",
                             "e.g. metric=['bbox', 'segm']")
    if evaluation_interval(cfg) is None:
        return
    test = cfg.get("data", {}).get("test")
    ann = Path(test.ann_file) if test is not None and test.get("ann_file") else None
    if ann is None or not ann.is_file():
        raise DataError(f"{config} evaluates every {interval} epoch(s) but its test annotations {ann} do not exist",
                        "point data.test at your val set (--cfg-options data.test.ann_file=... "
                        "data.test.img_prefix=...) or pass --no-validate")


def epoch_evaluator(req: TrainRequest, device: str):
    """``evaluate(checkpoint, epoch)`` for the training's evaluation hook: what `loce eval CONFIG CHECKPOINT` with
    the run's --cfg-options does (same inference, same results file, same metrics.json), written to
    ``WORK_DIR/eval_epoch_N/``. Runs on rank 0 alone; returns ``{metric: summary}``."""

    def evaluate(checkpoint: str, epoch: int) -> dict:
        evaluator = next(f.default for f in fields(EvalRequest) if f.name == "evaluator")  # `loce eval`'s default
        cfg = load_config(Path(req.config), req.cfg_options)
        metrics = (cfg.get("evaluation") or {}).get("metric", list(METRICS))
        metrics = [metrics] if isinstance(metrics, str) else list(metrics)
        out = Path(req.work_dir) / EVAL_DIR.format(epoch)
        results_file, has_masks = write_results(cfg, Path(checkpoint), device, EVAL_MAX_DETS, out)  # streamed
        metrics = metrics if has_masks else [m for m in metrics if m != "segm"]
        report = evaluate_results(results_file, Path(cfg.data.test.ann_file), metrics, "all", EVAL_MAX_DETS,
                                  evaluator)
        report.checkpoint, report.config = str(checkpoint), str(req.config)
        write_report(report, out)
        return {metric: dict(r.summary) for metric, r in report.metrics.items()}

    return evaluate


def prepare_work_dir(req: TrainRequest) -> Path:
    work_dir = Path(req.work_dir or default_work_dir(req.config, req.stage))
    if work_dir.exists() and not work_dir.is_dir():
        raise OutputExistsError(f"--work-dir {work_dir} is a file", "choose a directory")
    if req.resume is None and _has_run(work_dir):
        if not req.force:
            raise OutputExistsError(f"--work-dir {work_dir} already holds a run (epoch_*.pth)",
                                    "pass --resume to continue it, --force to start over, or another --work-dir")
        if env_rank() == 0:  # one process cleans up
            for p in work_dir.iterdir():  # --force: start over (only our own outputs)
                if p.suffix in (".pth", ".log") or p.name.endswith(".log.json") or p.name == RESULT_FILE:
                    p.unlink(missing_ok=True)
                elif p.is_dir() and p.name.startswith("eval_epoch_") and (p / "metrics.json").exists():
                    shutil.rmtree(p)
    work_dir.mkdir(parents=True, exist_ok=True)
    return work_dir


def train(req: TrainRequest) -> TrainResult:
    """Validate, then train in this process or launch the processes (torchrun) and wait for them."""
    work_dir = Path(req.work_dir or default_work_dir(req.config, req.stage))
    if work_dir.exists() and not work_dir.is_dir():
        raise OutputExistsError(f"--work-dir {work_dir} is a file", "choose a directory")
    # the lock first: a live run's checkpoints are neither read for a resume nor deleted by --force
    with locked(work_dir, "--work-dir", take=takes_lock(req.launch)):
        plan = plan_resume(req, work_dir) if req.resume is not None else None  # the run's own settings
        req.resume = plan.checkpoint if plan is not None else None
        if plan is not None:
            req.seed = plan.seed
        validate(req)
        if plan is not None and plan.finished:
            return TrainResult(str(work_dir), plan.checkpoint, plan.epoch, plan.iteration, 0.0,
                               req.launch.world_size(), req.launch.resolved_device(),
                               note=f"the run in {work_dir} is finished ({plan.epoch} epochs, {plan.iteration} "
                                    f"iterations; {plan.checkpoint}): nothing to train (extend it with "
                                    f"--cfg-options runner.max_epochs=N)")
        work_dir = prepare_work_dir(req)
        req.work_dir = str(work_dir)
        if env_rank() == 0:
            for line in plan.warnings if plan is not None else ():
                warn(line)
            _clean_start(work_dir)
        if req.launch.starts_processes():
            return _launch_torchrun(req, work_dir)
        return run_worker(req)


def _clean_start(work_dir: Path) -> None:
    """Before a run starts in ``work_dir``: remove the temporary files an interrupted write left, and the
    previous stop's note."""
    removed = remove_stale_tmp(str(work_dir))
    if removed:
        warn(f"removed {len(removed)} temporary file(s) an interrupted write left in {work_dir} "
             f"({', '.join(removed[:3])}{', ...' if len(removed) > 3 else ''})")
    (work_dir / STOPPED_FILE).unlink(missing_ok=True)


def _launch_torchrun(req: TrainRequest, work_dir: Path) -> TrainResult:
    launch = req.launch
    try:
        run_torchrun(launch, dict(kind="train", **asdict(req)), work_dir / "loce_launch.json", "training",
                     f"see the log in {work_dir} and the output above", stop_signals=True,
                     failed=lambda: read_stopped(work_dir))
    except KeyboardInterrupt:
        raise interrupted(req) from None
    result = work_dir / RESULT_FILE
    if launch.node_rank != 0:
        return TrainResult(str(work_dir), "", 0, 0, 0.0, launch.procs_per_node() * launch.nnodes,
                           launch.resolved_device(),
                           note=f"node {launch.node_rank}'s processes finished; node 0 writes the checkpoints")
    return TrainResult(**json.loads(result.read_text()))


def run_worker(req: TrainRequest) -> TrainResult:
    """One training process (rank taken from the launcher's environment)."""
    rank, local, world = init_distributed(req.launch)
    distributed = world > 1
    device = req.launch.resolved_device()
    cfg = run_config(req)
    cfg.work_dir = req.work_dir
    cfg.device = device
    cfg.gpu_ids = [local]
    cfg.seed = req.seed
    if req.stage == "finetune":
        cfg.load_from = req.base_checkpoint
    cfg.resume_from = req.resume
    if req.tensorboard and not any(h.get("type") == "TensorboardLoggerHook" for h in cfg.log_config.hooks):
        cfg.log_config.hooks = list(cfg.log_config.hooks) + [
            dict(type="TensorboardLoggerHook", log_dir=os.path.join(req.work_dir, "tf_logs"))]
    if req.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    start = time.perf_counter()
    interval = None if req.no_validate else evaluation_interval(cfg)
    evaluation = (interval, epoch_evaluator(req, device)) if interval else None
    started = list((read_checkpoint(Path(req.resume)).get("meta") or {}).get("cfg_options") or []) \
        if req.resume else []
    try:
        summary = run_training(cfg, distributed=distributed, rank=rank, world=world, device=device,
                               stage=req.stage, config_name=config_file_name(req.config), seed=req.seed,
                               deterministic=req.deterministic, evaluation=evaluation,
                               checkpoint_every=req.checkpoint_every,
                               meta_extra=dict(cfg_options=tuple(started + list(req.cfg_options))),
                               verbose=req.verbose)
    except Preempted as stop:
        if req.requeue:  # the requeue SIGTERMs every task of the step: not before this run has said how it stopped
            ignore_stop_signals()
        requeued = requeue_slurm_job() if req.requeue and rank == 0 else ""
        error = stopped_by_signal(req, stop, requeued)
        if rank == 0:
            write_stopped(req.work_dir, error)
        _leave(distributed)
        raise error from None
    except KeyboardInterrupt:
        raise interrupted(req) from None
    seconds = time.perf_counter() - start
    result = TrainResult(work_dir=req.work_dir, checkpoint=newest_checkpoint(req.work_dir) or "",
                         epochs=summary["epochs"], iterations=summary["iterations"], seconds=seconds,
                         world_size=world, device=device, memory_init=summary.get("memory_init"), rank=rank,
                         evaluations=summary.get("evaluations"), final_loss=summary.get("final_loss"))
    if rank == 0:
        given = [o for o in started + list(req.cfg_options) if o not in req.data_options]
        result.next_command = next_command(req.stage, req.config, result.checkpoint, req.work_dir, given,
                                           req.data_dir)
        write_json_atomic(Path(req.work_dir) / RESULT_FILE, result.to_dict(), indent=2)
    if distributed:
        dist.barrier()
    _leave(distributed)
    return result


def _leave(distributed: bool) -> None:
    if distributed:
        if dist.is_initialized():
            dist.destroy_process_group()
