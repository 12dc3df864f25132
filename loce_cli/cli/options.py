"""The options several commands share: their declarations (one help text each) and the value sets of the choice
options.

Single-value choice options are typed with ``Literal``: Typer lists the values in ``--help`` and refuses any other
with a usage error (exit 2). Repeatable options (Typer takes no list of ``Literal``) show the values through
:func:`shown` and are checked by the engine. Each value set equals the engine's own constant (tests/cli/test_help.py
checks), kept here so that ``loce --help`` imports no engine module.
"""

from __future__ import annotations

from typing import Literal, Sequence

import typer

from loce_cli.cli.failures import fail

SPLITS = ("all", "rare", "common", "frequent")
METRICS = ("bbox", "segm")
EVALUATORS = ("streaming", "lvis")
# removed evaluators and why (the engine's backends.REMOVED_EVALUATORS): refused with what to use instead
REMOVED_EVALUATORS = {"fast": "faster-coco-eval needs over 8 GB at the full LVIS v1 val size",
                      "hotcoco": "slower than streaming behind loce's results checks, and over 8 GB for segm"}
PROTOCOLS = ("standard", "fixed", "pooled")
REPORT_FORMATS = ("table", "md", "json", "csv")
LAUNCHERS = ("none", "pytorch", "slurm")
LVIS_VERSIONS = ("auto", "v1", "v0.5")
CHECK_IMAGES = ("all", "sample", "none")
LIKES = ("lvis-v1", "lvis-v0.5")
AMP = ("fp16", "bf16")

Split = Literal[SPLITS]
ReportFormat = Literal[REPORT_FORMATS]
Launcher = Literal[LAUNCHERS]
LvisVersion = Literal[LVIS_VERSIONS]
CheckImages = Literal[CHECK_IMAGES]
Amp = Literal[AMP]


def shown(values: Sequence[str]) -> str:
    """The metavar of a repeatable choice option: ``[bbox|segm]``."""
    return "[" + "|".join(values) + "]"


# output
JSON_OUTPUT = typer.Option(False, "--json", help="Machine-readable output.")
METRIC = typer.Option(None, "--metric", metavar=shown(METRICS), help="Repeatable; default both.")


def check_evaluator_name(value: str) -> str:
    """``--evaluator``: one of :data:`EVALUATORS` (a usage error otherwise, a removed name saying so). A plain string
    option rather than a ``Literal`` so that a removed name gets its own line instead of Typer's."""
    if value in REMOVED_EVALUATORS:
        raise typer.BadParameter(f"{value} was removed ({REMOVED_EVALUATORS[value]}); use streaming (the default) "
                                 "or lvis (the official API)")
    if value not in EVALUATORS:
        raise typer.BadParameter(f"{value!r} is not one of " + ", ".join(repr(v) for v in EVALUATORS))
    return value


def check_plot_path(plot) -> None:
    """``--plot FILE``: refuse (usage error) a file type matplotlib is not asked to write here."""
    if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise fail(f"--plot {plot}: unsupported file type {plot.suffix or '(none)'} (hint: use a .png file name)", 2)


# the config
CFG_OPTIONS = typer.Option(None, "--cfg-options", help="Override config keys: KEY=VALUE ... (mmdet's form, or the "
                                                        "option repeated); each key must exist and the value have "
                                                        "its type, e.g. runner.max_epochs=2 optimizer.lr=0.01.")
DATA_DIR = typer.Option(None, "--data", help="Dataset folder (made by loce data synth / import, or prepared by loce "
                                             "data prep): sets the config's annotation files, image folder and "
                                             "class count from it, instead of --cfg-options.")


def data_cfg_options(config, data, checkpoint=None, command: str = "use") -> list:
    """``--data DIR``'s ``--cfg-options`` for ``config`` (none without ``--data``), after refusing a ``checkpoint``
    trained for another class count than the data has (``command``: what the hint tells to do with a model of the
    data's, e.g. 'evaluate')."""
    if data is None:
        return []
    from pathlib import Path

    from loce_cli.engine.checkpoints import check_class_count
    from loce_cli.engine.data.data_dir import data_options, read_data_dir

    found = read_data_dir(Path(data))
    if checkpoint is not None and Path(checkpoint).is_file():
        check_class_count(Path(checkpoint), found.num_classes, f"--data {found.root}",
                          f"{command} a model trained on this dataset (loce train base CONFIG --data {found.root})")
    return data_options(config, found)


# processes, GPUs and nodes (loce train base, loce finetune, loce eval)
GPUS = typer.Option(0, "--gpus", min=0, help="GPUs on this node (torchrun, NCCL).")
NPROC = typer.Option(1, "--nproc", min=1, help="CPU processes on this node (torchrun, gloo).")
NNODES = typer.Option(1, "--nnodes", min=1, help="Number of nodes.")
NODE_RANK = typer.Option(0, "--node-rank", min=0, help="This node's rank.")
MASTER_ADDR = typer.Option("127.0.0.1", "--master-addr", help="Address of node 0.")
MASTER_PORT = typer.Option(29500, "--master-port", min=1, max=65535, help="Free port on node 0.")
LAUNCHER = typer.Option("none", "--launcher", help="none (loce starts the processes), pytorch (inside torchrun), "
                                                    "slurm (inside srun).")
DEVICE = typer.Option(None, "--device", help="cpu or cuda (default: cuda with --gpus, else cpu).")

# training runs (loce train base, loce finetune; loce quickstart: --json and --verbose)
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
FORCE_RESTART = typer.Option(False, "--force", help="Start over in a --work-dir that already holds a run.")
JSON_RESULT = typer.Option(False, "--json", help="Machine-readable result.")
TRAIN_VERBOSE = typer.Option(False, "--verbose", help="Also print mmcv's log records (hook table, init messages, a "
                                                      "line per logged iteration) on the terminal; they, and the "
                                                      "per-parameter init table, are always in WORK_DIR/*.log.")
TENSORBOARD = typer.Option(False, "--tensorboard", help="Also log scalars for TensorBoard to WORK_DIR/tf_logs.")
TRAIN_AMP = typer.Option(None, "--amp", help="Mixed precision: bf16 (autocast; CPUs and GPUs) or fp16 (autocast + "
                                             "GradScaler; CUDA). Same as the config key fp16 = dict(loss_scale=...); "
                                             "a resume keeps the run's own (docs/MIXED_PRECISION.md).")
NO_VALIDATE = typer.Option(False, "--no-validate", help="Skip the config's evaluation = dict(interval=N) during "
                                                        "training (otherwise rank 0 writes "
                                                        "WORK_DIR/eval_epoch_N/metrics.json every N epochs).")
