"""Evaluation during training, at the interval of the config's ``evaluation = dict(interval=N)`` (mmdet's key).

Every ``interval`` epochs, after the runner's checkpoint hook, rank 0 evaluates this epoch's checkpoint file
(``epoch_N.pth``, written first if the checkpoint interval skipped this epoch) through ``evaluate(checkpoint,
epoch)``, a callable the engine supplies (it runs the same inference and evaluation as ``loce eval`` and writes
``WORK_DIR/eval_epoch_N/metrics.json``; this module stays below the engine). The other ranks wait for rank 0 on a
gloo group of their own whose timeout is long enough for an LVIS-sized evaluation (the default process group's
30 minutes are not), and learn from rank 0 whether it succeeded: a failed evaluation stops every rank, none is
left waiting. Rank 0's random streams are put back after the evaluation, so that a run with evaluation trains
exactly as one without (and resumes exactly: the checkpoint's RNG state is the pre-evaluation one).
"""

from __future__ import annotations

import os
import os.path as osp
import time
from datetime import timedelta
from typing import Any, Callable, Dict, Optional

import torch.distributed as dist
from mmcv.runner import HOOKS, Hook

from loce_cli.mmdet_ext.runner.rng_state import rng_state, set_rng_state

DEFAULT_WAIT_S = 48 * 3600.0  # rank 0 alone infers on the whole val set: hours on LVIS v1 with one device


class EvalFailedError(RuntimeError):
    """Rank 0's evaluation raised; every rank raises this (the message is rank 0's)."""


@HOOKS.register_module()
class LoceEvalHook(Hook):
    """Evaluate the checkpoint of every ``interval``-th epoch on rank 0.

    Args:
        evaluate: ``evaluate(checkpoint_path, epoch) -> summary`` (run on rank 0 only; its summary is kept in
            :attr:`results` by epoch).
        interval: epochs between evaluations (the config's ``evaluation.interval``); epoch N is evaluated when
            ``N % interval == 0``.
        wait_s: how long the other ranks wait for rank 0's evaluation.
    """

    def __init__(self, evaluate: Callable[[str, int], Any], interval: int = 1, wait_s: float = DEFAULT_WAIT_S):
        if int(interval) < 1:
            raise ValueError(f"evaluation interval must be >= 1, got {interval}")
        self.evaluate = evaluate
        self.interval = int(interval)
        self.wait_s = float(wait_s)
        self.results: Dict[int, Any] = {}
        self._group = None
        self._epoch_started = 0.0

    def before_run(self, runner) -> None:
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # collective: every rank builds the hook, so every rank gets here
            self._group = dist.new_group(backend="gloo", timeout=timedelta(seconds=self.wait_s))

    def before_train_epoch(self, runner) -> None:
        self._epoch_started = time.time()

    def after_train_epoch(self, runner) -> None:
        if not self.every_n_epochs(runner, self.interval):
            return
        epoch = runner.epoch + 1
        failure: Optional[str] = None
        error: Optional[BaseException] = None
        if runner.rank == 0:
            state = rng_state()  # building the evaluation model draws random numbers: training must not notice
            try:
                checkpoint = self.checkpoint_of_this_epoch(runner)
                self.results[epoch] = self.evaluate(checkpoint, epoch)
            except Exception as e:  # reported to the other ranks, then raised here too
                failure = f"{type(e).__name__}: {e}"
                if self._group is None:
                    raise
                error = e
            finally:
                set_rng_state(state)
        if self._group is not None:
            status = [failure]
            dist.broadcast_object_list(status, src=0, group=self._group)
            if status[0] is not None:
                if error is not None:
                    raise error
                raise EvalFailedError(f"evaluation after epoch {epoch} failed on rank 0: {status[0]}")

    def checkpoint_of_this_epoch(self, runner) -> str:
        """``epoch_N.pth`` as the checkpoint hook wrote it this epoch, or written now (with the optimizer, so that
        it is as good a resume point as any other)."""
        out_dir = runner.work_dir
        for hook in runner.hooks:
            if type(hook).__name__ == "CheckpointHook" and getattr(hook, "out_dir", None):
                out_dir = hook.out_dir
        path = osp.join(out_dir, f"epoch_{runner.epoch + 1}.pth")
        if not (osp.isfile(path) and os.stat(path).st_mtime >= self._epoch_started - 1.0):
            runner.save_checkpoint(out_dir, filename_tmpl="epoch_{}.pth", save_optimizer=True)
        return path
