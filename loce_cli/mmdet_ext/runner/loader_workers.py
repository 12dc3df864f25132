"""DataLoader worker processes that never outlive their training process, and that leave stop signals to it.

- :func:`guard_workers`: each worker asks the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``,
  Linux), so a ``kill -9`` of the training process takes its workers along instead of leaving them blocked for
  ever on a full pipe nobody reads; and ignores the stop signals (SIGTERM, SIGUSR1, SIGINT), which Slurm,
  ``timeout``, systemd and a terminal's Ctrl-C send to the whole process group: the training process decides
  when to stop, and shuts its workers down then.
- :func:`stop_signals_blocked`: around the start of the workers, so that none of them gets a stop signal before
  it has set itself to ignore them (a signal that arrives meanwhile reaches the training process afterwards).
- :func:`shutdown_workers`: a run that stops early (signal, Ctrl-C, error) shuts its epoch's workers down before
  it exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from typing import Iterator

from loce_cli.mmdet_ext.runner.preemption import STOP_SIGNALS

PR_SET_PDEATHSIG = 1


class _ParentDeathInit:
    """``worker_init_fn`` wrapper: parent-death signal first, then the original initialisation (picklable)."""

    def __init__(self, inner, parent: int):
        self.inner, self.parent = inner, parent

    def __call__(self, worker_id: int) -> None:
        set_parent_death_signal(self.parent)
        for sig in STOP_SIGNALS:  # the training process stops the run; pending ones are dropped here
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if self.inner is not None:
            self.inner(worker_id)


def set_parent_death_signal(parent: int) -> bool:
    """SIGKILL this process when its parent exits; exits now if ``parent`` is already gone. False off Linux."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
    return True


def guard_workers(loader) -> None:
    """Make ``loader``'s future worker processes die with this process (see module doc)."""
    if getattr(loader, "num_workers", 0) > 0 and not isinstance(loader.worker_init_fn, _ParentDeathInit):
        loader.worker_init_fn = _ParentDeathInit(loader.worker_init_fn, os.getpid())


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals in this thread (worker processes forked meanwhile inherit the mask, until
    :class:`_ParentDeathInit` ignores and unblocks them); those that arrived are delivered on leaving."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def shutdown_workers(batches) -> None:
    """Stop the worker processes of a DataLoader iterator that will not be read to its end (no-op without)."""
    stop = getattr(batches, "_shutdown_workers", None)
    if stop is not None:
        try:
            stop()
        except Exception:  # already half shut down by the interruption: nothing more to do
            pass
