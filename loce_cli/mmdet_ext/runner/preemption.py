"""Stopping a training run on a signal, and checkpointing every N iterations.

A SIGTERM or SIGUSR1 (Slurm sends one before a time limit with ``sbatch --signal=USR1@120``; a preempting
scheduler, ``timeout``, systemd or ``kill`` sends SIGTERM) or a SIGINT (Ctrl-C) only sets a flag. At the next
iteration boundary the ranks agree on the flag (an all-reduce of it over the process group: a signal to one rank
stops all of them), write one mid-epoch checkpoint and leave with :data:`PREEMPTED_EXIT_CODE` (SIGINT:
:data:`INTERRUPTED_EXIT_CODE`). A second SIGINT does not wait for the boundary (``KeyboardInterrupt``).
``--requeue`` then asks Slurm to queue the job again (``scontrol requeue $SLURM_JOB_ID``, rank 0).
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Optional

import torch
import torch.distributed as dist

PREEMPTED_EXIT_CODE = 75  # sysexits' EX_TEMPFAIL: stopped on purpose, a checkpoint to resume from was written
INTERRUPTED_EXIT_CODE = 130  # Ctrl-C, as shells report a SIGINT death (128 + 2)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def stop_exit_code(signame: str) -> int:
    """The exit code of a run stopped by ``signame`` with a checkpoint: 130 for SIGINT, else 75."""
    return INTERRUPTED_EXIT_CODE if signame == signal.SIGINT.name else PREEMPTED_EXIT_CODE


class Preempted(Exception):
    """The run stopped at an iteration boundary after a signal; ``checkpoint`` holds its state."""

    def __init__(self, signame: str, checkpoint: str, epoch: int, inner_iter: int, epoch_len: int, iteration: int):
        self.signame, self.checkpoint = signame, checkpoint
        self.epoch, self.inner_iter, self.epoch_len, self.iteration = epoch, inner_iter, epoch_len, iteration
        super().__init__(f"stopped by {signame} after iteration {iteration} (epoch {epoch}, {inner_iter}/{epoch_len})"
                         f": saved {checkpoint}")


class StopPolicy:
    """When the runner writes a mid-epoch checkpoint, and whether it stops afterwards.

    Args:
        checkpoint_every: write a mid-epoch checkpoint every N iterations (global count; 0: never).
        distributed: agree on a received signal with the other ranks at each iteration boundary.
        device: where the flag lives for the all-reduce (``cuda`` under NCCL).
    """

    def __init__(self, checkpoint_every: int = 0, distributed: bool = False, device: str = "cpu"):
        self.checkpoint_every = int(checkpoint_every or 0)
        self.distributed = bool(distributed)
        self.device = device
        self.received: Optional[int] = None  # the signal number, once one arrived on this rank
        self._previous: dict = {}

    # -- signals ------------------------------------------------------------------------------------------------
    def install(self) -> None:
        """Catch SIGTERM, SIGUSR1 and SIGINT in this (main) thread until :meth:`restore`."""
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _on_signal(self, signum, frame) -> None:  # async-signal context: set the flag, nothing else
        if self.received is None:
            self.received = signum
        elif signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: now, without the checkpoint

    # -- decisions at an iteration boundary ----------------------------------------------------------------------
    def stop_now(self) -> Optional[str]:
        """The name of the signal that stops the run (on any rank), or None. Collective when distributed: every
        rank calls it at every iteration boundary."""
        mine = int(self.received or 0)
        if self.distributed:
            flag = torch.tensor([mine], dtype=torch.int64, device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            mine = int(flag.item())
        return signal.Signals(mine).name if mine else None

    def checkpoint_due(self, iteration: int) -> bool:
        return self.checkpoint_every > 0 and iteration % self.checkpoint_every == 0


def ignore_stop_signals() -> None:
    """For the rest of this process, SIGTERM and SIGUSR1 change nothing (a run that already stopped, with its
    checkpoint written, and whose job is being requeued: see :func:`requeue_slurm_job`)."""
    for sig in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)


def requeue_slurm_job() -> str:
    """``scontrol requeue $SLURM_JOB_ID``; returns a line saying what happened (never raises).

    A requeue ends the job's running steps: slurmstepd sends SIGTERM to every task at once (SIGKILL after
    ``KillWait``), while the run still has its report to print. The run stopped already and its checkpoint is on
    disk, so this process (every rank calls :func:`ignore_stop_signals` first) ignores SIGTERM and SIGUSR1 from here
    to its exit; Slurm's SIGKILL stays the backstop."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return "--requeue: not inside a Slurm job (no SLURM_JOB_ID); not requeued"
    try:
        proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return f"--requeue: scontrol requeue {job} failed ({e})"
    if proc.returncode != 0:
        return f"--requeue: scontrol requeue {job} failed: {(proc.stderr or proc.stdout).strip()[:200]}"
    return f"requeued Slurm job {job}"
