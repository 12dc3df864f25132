"""``loce train base``, ``loce finetune`` and ``loce quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.options import (CFG_OPTIONS, CHECKPOINT_EVERY, DATA_DIR, DETERMINISTIC, DEVICE, FORCE_RESTART,
                                  GPUS, JSON_RESULT, LAUNCHER, MASTER_ADDR, MASTER_PORT, NNODES, NO_VALIDATE,
                                  NODE_RANK, NPROC, REQUEUE, RESUME, RESUME_FROM, SEED, TENSORBOARD, TRAIN_AMP,
                                  TRAIN_VERBOSE, WORK_DIR, Amp, Launcher, data_cfg_options)
from loce_cli.cli.render import err, out, print_json

app = typer.Typer(help="Training: stage 1 (base Mask R-CNN).", no_args_is_help=True)


def _request(config: Path, stage: str, work_dir, resume, resume_from, seed, deterministic, cfg_options, force, gpus,
             nproc, nnodes, node_rank, master_addr, master_port, launcher, device, base_checkpoint=None,
             tensorboard=False, no_validate=False, checkpoint_every=0, requeue=False, verbose=False, amp=None,
             data=None):
    from loce_cli.engine.training.resume import AUTO, IF_ANY
    from loce_cli.engine.training.run import LaunchOptions, TrainRequest
    from loce_cli.errors import LoceUsageError

    if resume and resume_from:
        raise LoceUsageError("--resume and --resume-from exclude each other",
                             "--resume continues the newest checkpoint, --resume-from FILE that one")
    if data is not None and (resume or resume_from):
        raise LoceUsageError("--data and --resume exclude each other",
                             "a resumed run keeps its own data (drop --data)")
    data_opts = data_cfg_options(config, data, base_checkpoint, "fine-tune from")
    resume_arg = None
    if resume_from:
        resume_arg = IF_ANY if str(resume_from) == AUTO else str(resume_from)
    elif resume:
        resume_arg = "auto"
    return TrainRequest(
        config=str(config), stage=stage, work_dir=str(work_dir) if work_dir else None,
        base_checkpoint=str(base_checkpoint) if base_checkpoint else None,
        resume=resume_arg, seed=seed, checkpoint_every=checkpoint_every, requeue=requeue,
        deterministic=deterministic, cfg_options=data_opts + list(cfg_options or []), force=force,
        data_dir=str(data) if data is not None else None, data_options=data_opts, tensorboard=tensorboard,
        no_validate=no_validate, verbose=verbose, amp=amp,
        launch=LaunchOptions(gpus=gpus, nproc=nproc, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                             master_port=master_port, launcher=launcher, device=device))


def _report(result, json_out: bool) -> None:
    if result.rank != 0:
        # one of several processes sharing a terminal (srun, torchrun): rank 0 alone reports, so that
        # `srun ... --json > result.json` holds one document
        err.print(f"rank {result.rank}: done; rank 0 reports the run")
        return
    if json_out:
        print_json(result.to_dict())
        return
    if result.note:
        out.print(f"[green]done[/]: {result.note}")
        return
    out.print(f"[green]done[/]: {result.epochs} epochs, {result.iterations} iterations in {result.seconds:.0f} s "
              f"on {result.world_size} process(es) ({result.device})")
    out.print(f"checkpoint: {result.checkpoint}")
    if result.final_loss is not None:
        from loce_cli.core.progress import LOSS_WINDOW

        out.print(f"final loss: {result.final_loss:.4f} (mean of the last {min(LOSS_WINDOW, result.iterations)} "
                  f"iterations; per-iteration values in {result.work_dir}/*.log.json)", soft_wrap=True)
    for epoch, metrics in (result.evaluations or {}).items():
        line = ", ".join(f"{metric} AP {100 * s['AP']:.1f}" for metric, s in metrics.items())
        out.print(f"evaluation after epoch {epoch}: {line} ({result.work_dir}/eval_epoch_{epoch}/metrics.json)")
    if result.memory_init:
        m = result.memory_init
        out.print(f"memory filled from {m['images']} images: queues full {m['full']}, partial {m['partial']}, "
                  f"empty {m['empty']}")
    if result.next_command:
        out.print(f"next: {result.next_command}", markup=False, soft_wrap=True)  # one line: copy-paste


@app.command("base")
def base(config: Path = typer.Argument(..., help="mmdet config file, or a shipped config's name (loce configs), "
                                                 "e.g. synthetic/mask_rcnn_r18_fpn_normed_synth"),
         work_dir: Optional[Path] = WORK_DIR, resume: bool = RESUME, resume_from: Optional[Path] = RESUME_FROM,
         seed: int = SEED, deterministic: bool = DETERMINISTIC, cfg_options: Optional[List[str]] = CFG_OPTIONS,
         force: bool = FORCE_RESTART, gpus: int = GPUS, nproc: int = NPROC, nnodes: int = NNODES,
         node_rank: int = NODE_RANK, master_addr: str = MASTER_ADDR, master_port: int = MASTER_PORT,
         launcher: Launcher = LAUNCHER, device: Optional[str] = DEVICE, tensorboard: bool = TENSORBOARD,
         no_validate: bool = NO_VALIDATE, checkpoint_every: int = CHECKPOINT_EVERY, requeue: bool = REQUEUE,
         amp: Optional[Amp] = TRAIN_AMP, data: Optional[Path] = DATA_DIR, json_out: bool = JSON_RESULT,
         verbose: bool = TRAIN_VERBOSE,
         backbone_weights: Optional[Path] = typer.Option(
             None, "--backbone-weights", help="Local file of the backbone's pretrained weights (e.g. torchvision's "
             "resnet50-0676ba61.pth), instead of the config's download; refused when its keys or shapes do not "
             "fit the backbone.")) -> None:
    """Stage 1: train the base model (Mask R-CNN, or Faster R-CNN for box-only data; plain softmax CE)."""
    from loce_cli.engine.training.run import train

    req = _request(config, "base", work_dir, resume, resume_from, seed, deterministic, cfg_options, force, gpus, nproc,
                   nnodes, node_rank, master_addr, master_port, launcher, device, tensorboard=tensorboard,
                   no_validate=no_validate, checkpoint_every=checkpoint_every, requeue=requeue, verbose=verbose,
                   amp=amp, data=data)
    req.backbone_weights = str(backbone_weights) if backbone_weights else None
    _report(train(req), json_out)


def finetune(config: Path = typer.Argument(..., help="LOCE config file, or a shipped config's name (loce "
                                                     "configs), e.g. synthetic/loce_mask_rcnn_r18_fpn_normed_synth"),
             base_checkpoint: Path = typer.Option(..., "--from", help="Checkpoint of the base run."),
             work_dir: Optional[Path] = WORK_DIR, resume: bool = RESUME, resume_from: Optional[Path] = RESUME_FROM,
             seed: int = SEED, deterministic: bool = DETERMINISTIC, cfg_options: Optional[List[str]] = CFG_OPTIONS,
             force: bool = FORCE_RESTART, gpus: int = GPUS, nproc: int = NPROC, nnodes: int = NNODES,
             node_rank: int = NODE_RANK, master_addr: str = MASTER_ADDR, master_port: int = MASTER_PORT,
             launcher: Launcher = LAUNCHER, device: Optional[str] = DEVICE, tensorboard: bool = TENSORBOARD,
             no_validate: bool = NO_VALIDATE, checkpoint_every: int = CHECKPOINT_EVERY, requeue: bool = REQUEUE,
             amp: Optional[Amp] = TRAIN_AMP, data: Optional[Path] = DATA_DIR, json_out: bool = JSON_RESULT,
             verbose: bool = TRAIN_VERBOSE) -> None:
    """Stage 2: LOCE fine-tune from a base checkpoint (fills the memory, freezes, trains with EBL + MFS)."""
    from loce_cli.engine.training.run import train

    _report(train(_request(config, "finetune", work_dir, resume, resume_from, seed, deterministic, cfg_options,
                           force, gpus, nproc, nnodes, node_rank, master_addr, master_port, launcher, device,
                           base_checkpoint=base_checkpoint, tensorboard=tensorboard,
                           no_validate=no_validate, checkpoint_every=checkpoint_every, requeue=requeue,
                           verbose=verbose, amp=amp, data=data)), json_out)


def quickstart(work_dir: Path = typer.Option(Path("work/quickstart"), "--work-dir",
                                             help="Where data, runs and results go."),
               json_out: bool = JSON_RESULT, verbose: bool = TRAIN_VERBOSE) -> None:
    """The main job on built-in synthetic data: synth -> base train -> LOCE fine-tune -> eval of both -> report
    (steps already done are skipped)."""
    from loce_cli.engine.quickstart.steps import run_quickstart

    result = run_quickstart(work_dir, echo=None if json_out else out.print, verbose=verbose)
    if json_out:
        print_json(result.to_dict())
        return
    from loce_cli.cli.report import print_report_table
    from loce_cli.engine.report.runs import build_report

    evals = Path(result.work_dir) / "eval"
    print_report_table(build_report([f"base={evals / 'base'}", f"loce={evals / 'loce'}"]))
    out.print(f"same table later: loce report {evals / 'base'} {evals / 'loce'} (--plot report.png for figures)")
