"""The runner plumbing of a loce training run over mmcv 1.x: build, hooks, epoch runner, checkpoints, resume, stop."""

from loce_cli.mmdet_ext.runner.build import checkpoint_meta, wrap_model
from loce_cli.mmdet_ext.runner.checkpoint_files import (checkpoints, newest_checkpoint, prune_mid_epoch,
                                                        remove_stale_tmp)
from loce_cli.mmdet_ext.runner.epoch_runner import LoceEpochBasedRunner
from loce_cli.mmdet_ext.runner.eval_hook import EvalFailedError, LoceEvalHook
from loce_cli.mmdet_ext.runner.loss_guard import NonFiniteLossError, NonFiniteLossHook
from loce_cli.mmdet_ext.runner.preemption import (PREEMPTED_EXIT_CODE, Preempted, StopPolicy, ignore_stop_signals,
                                                  requeue_slurm_job, stop_exit_code)
from loce_cli.mmdet_ext.runner.rng_state import rng_state, set_rng_state
from loce_cli.mmdet_ext.runner.run import run_training

__all__ = ["EvalFailedError", "LoceEpochBasedRunner", "LoceEvalHook", "NonFiniteLossError", "NonFiniteLossHook",
           "PREEMPTED_EXIT_CODE", "Preempted", "StopPolicy", "checkpoint_meta", "checkpoints", "ignore_stop_signals",
           "newest_checkpoint", "prune_mid_epoch", "remove_stale_tmp", "requeue_slurm_job", "rng_state",
           "run_training", "set_rng_state", "stop_exit_code", "wrap_model"]
