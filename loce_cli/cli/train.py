"""``loce train base``, ``loce finetune`` and ``loce quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.choices import Amp, Launcher

from loce_cli.cli._common import engine_errors, err, out, print_json

app = typer.Typer(help="Training: stage 1 (base Mask R-CNN).", no_args_is_help=True)

WORK_DIR = typer.Option(None, "--work-dir", help="Run directory (default: work_dirs/<config name>).")
RESUME = typer.Option(False, "--resume", help="Continue the run in --work-dir exactly, from its newest checkpoint "
                                               "(epoch-end or mid-epoch), with the run's own saved settings.")
RESUME_FROM = typer.Option(None, "--resume-from", help="Continue from this checkpoint instead of the newest; "
                                                       "'auto': the newest if there is one, else start (for "
                                                       "requeued batch jobs).")
CHECKPOINT_EVERY = typer.Option(0, "--checkpoint-every", min=0, help="Also write a mid-epoch checkpoint every N "
                                                                      "iterations (iter_N.pth; 0: epoch ends only).")
REQUEUE = typer.Option(False, "--requeue", help="Inside a Slurm job: when a signal stops the run, requeue the job "
                                                "(scontrol requeue $SLURM_JOB_ID).")
SEED = typer.Option(0, "--seed", help="Random seed.")
DETERMINISTIC = typer.Option(False, "--deterministic", help="Deterministic kernels (slower).")
CFG_OPTIONS = typer.Option(None, "--cfg-options", help="Override config keys: KEY=VALUE ... (mmdet's form, or the "
                                                        "option repeated); each key must exist and the value have "
                                                        "its type, e.g. runner.max_epochs=2 optimizer.lr=0.01.")
FORCE = typer.Option(False, "--force", help="Start over in a --work-dir that already holds a run.")
GPUS = typer.Option(0, "--gpus", min=0, help="GPUs on this node (torchrun, NCCL).")
NPROC = typer.Option(1, "--nproc", min=1, help="CPU processes on this node (torchrun, gloo).")
NNODES = typer.Option(1, "--nnodes", min=1, help="Number of nodes.")
NODE_RANK = typer.Option(0, "--node-rank", min=0, help="This node's rank.")
MASTER_ADDR = typer.Option("127.0.0.1", "--master-addr", help="Address of node 0.")
MASTER_PORT = typer.Option(29500, "--master-port", min=1, max=65535, help="Free port on node 0.")
LAUNCHER = typer.Option("none", "--launcher", help="none (loce starts the processes), pytorch (inside torchrun), "
                                                    "slurm (inside srun).")
DEVICE = typer.Option(None, "--device", help="cpu or cuda (default: cuda with --gpus, else cpu).")
JSON = typer.Option(False, "--json", help="Machine-readable result.")
VERBOSE = typer.Option(False, "--verbose", help="Also print mmcv's log records (hook table, init messages, a line "
                                                "per logged iteration) on the terminal; they, and the "
                                                "per-parameter init table, are always in WORK_DIR/*.log.")
TENSORBOARD = typer.Option(False, "--tensorboard", help="Also log scalars for TensorBoard to WORK_DIR/tf_logs.")
AMP = typer.Option(None, "--amp", help="Mixed precision: bf16 (autocast; CPUs and GPUs) or fp16 (autocast + "
                                          "GradScaler; CUDA). Same as the config key fp16 = dict(loss_scale=...); "
                                          "a resume keeps the run's own (docs/MIXED_PRECISION.md).")
NO_VALIDATE = typer.Option(False, "--no-validate", help="Skip the config's evaluation = dict(interval=N) during "
                                                        "training (otherwise rank 0 writes "
                                                        "WORK_DIR/eval_epoch_N/metrics.json every N epochs).")


def _request(config: Path, stage: str, work_dir, resume, resume_from, seed, deterministic, cfg_options, force, gpus,
             nproc, nnodes, node_rank, master_addr, master_port, launcher, device, base_checkpoint=None,
             tensorboard=False, no_validate=False, checkpoint_every=0, requeue=False, verbose=False, amp=None):
    from loce_cli.engine.training.resume import AUTO, IF_ANY
    from loce_cli.engine.training.run import LaunchOptions, TrainRequest
    from loce_cli.errors import LoceUsageError

    if resume and resume_from:
        raise LoceUsageError("--resume and --resume-from exclude each other",
                             "--resume continues the newest checkpoint, --resume-from FILE that one")
    resume_arg = None
    if resume_from:
        resume_arg = IF_ANY if str(resume_from) == AUTO else str(resume_from)
    elif resume:
        resume_arg = "auto"
    return TrainRequest(
        config=str(config), stage=stage, work_dir=str(work_dir) if work_dir else None,
        base_checkpoint=str(base_checkpoint) if base_checkpoint else None,
        resume=resume_arg, seed=seed, checkpoint_every=checkpoint_every, requeue=requeue,
        deterministic=deterministic, cfg_options=list(cfg_options or []), force=force, tensorboard=tensorboard,
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
@engine_errors
def base(config: Path = typer.Argument(..., help="mmdet config file, or a shipped config's name (loce configs), "
                                                 "e.g. synthetic/mask_rcnn_r18_fpn_normed_synth"),
         work_dir: Optional[Path] = WORK_DIR, resume: bool = RESUME, resume_from: Optional[Path] = RESUME_FROM,
         seed: int = SEED, deterministic: bool = DETERMINISTIC, cfg_options: Optional[List[str]] = CFG_OPTIONS,
         force: bool = FORCE, gpus: int = GPUS, nproc: int = NPROC, nnodes: int = NNODES, node_rank: int = NODE_RANK,
         master_addr: str = MASTER_ADDR, master_port: int = MASTER_PORT, launcher: Launcher = LAUNCHER,
         device: Optional[str] = DEVICE, tensorboard: bool = TENSORBOARD, no_validate: bool = NO_VALIDATE,
         checkpoint_every: int = CHECKPOINT_EVERY, requeue: bool = REQUEUE, amp: Optional[Amp] = AMP,
         json_out: bool = JSON, verbose: bool = VERBOSE) -> None:
    """Stage 1: train the base Mask R-CNN (plain softmax CE)."""
    from loce_cli.engine.training.run import train

    _report(train(_request(config, "base", work_dir, resume, resume_from, seed, deterministic, cfg_options, force,
                           gpus, nproc, nnodes, node_rank, master_addr, master_port, launcher, device,
                           tensorboard=tensorboard, no_validate=no_validate, checkpoint_every=checkpoint_every,
                           requeue=requeue, verbose=verbose, amp=amp)), json_out)


@engine_errors
def finetune(config: Path = typer.Argument(..., help="LOCE config file, or a shipped config's name (loce "
                                                     "configs), e.g. synthetic/loce_mask_rcnn_r18_fpn_normed_synth"),
             base_checkpoint: Path = typer.Option(..., "--from", help="Checkpoint of the base run."),
             work_dir: Optional[Path] = WORK_DIR, resume: bool = RESUME, resume_from: Optional[Path] = RESUME_FROM,
             seed: int = SEED, deterministic: bool = DETERMINISTIC, cfg_options: Optional[List[str]] = CFG_OPTIONS,
             force: bool = FORCE, gpus: int = GPUS, nproc: int = NPROC, nnodes: int = NNODES,
             node_rank: int = NODE_RANK, master_addr: str = MASTER_ADDR, master_port: int = MASTER_PORT,
             launcher: Launcher = LAUNCHER, device: Optional[str] = DEVICE, tensorboard: bool = TENSORBOARD,
             no_validate: bool = NO_VALIDATE, checkpoint_every: int = CHECKPOINT_EVERY, requeue: bool = REQUEUE,
             amp: Optional[Amp] = AMP, json_out: bool = JSON, verbose: bool = VERBOSE) -> None:
    """Stage 2: LOCE fine-tune from a base checkpoint (fills the memory, freezes, trains with EBL + MFS)."""
    from loce_cli.engine.training.run import train

    _report(train(_request(config, "finetune", work_dir, resume, resume_from, seed, deterministic, cfg_options,
                           force, gpus, nproc, nnodes, node_rank, master_addr, master_port, launcher, device,
                           base_checkpoint=base_checkpoint, tensorboard=tensorboard,
                           no_validate=no_validate, checkpoint_every=checkpoint_every, requeue=requeue,
                           verbose=verbose, amp=amp)), json_out)


@engine_errors
def quickstart(work_dir: Path = typer.Option(Path("work/quickstart"), "--work-dir",
                                             help="Where data, runs and results go."),
               json_out: bool = JSON, verbose: bool = VERBOSE) -> None:
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
