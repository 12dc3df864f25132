"""Running ``torchrun`` for a training so that a stop signal reaches the training processes and they get the
time to write their checkpoint.

torchrun answers SIGTERM by signalling its workers and SIGKILLing them 30 s later, and dies of SIGUSR1 (which it
does not handle), leaving its workers behind. So loce starts torchrun with SIGTERM and SIGUSR1 ignored (the
workers install their own handlers when training starts), and forwards those signals, when loce itself gets
them, to the training processes directly; torchrun then sees them exit on their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
from typing import List, Sequence

FORWARDED = (signal.SIGTERM, signal.SIGUSR1)


def _ignore_forwarded() -> None:  # in the child, before exec: SIG_IGN survives exec
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_IGN)


def children(pid: int) -> List[int]:
    """Direct child processes of ``pid`` (Linux /proc); empty when unknown."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def run_forwarding_stop_signals(cmd: Sequence[str], env: dict) -> int:
    """Run ``cmd`` (torchrun) to its end; SIGTERM / SIGUSR1 to this process go to its children (the training
    processes). Ctrl-C (SIGINT reaches the whole terminal group): wait for it to stop, then re-raise."""
    env = dict(env, TORCHELASTIC_SIGNALS_TO_HANDLE="SIGINT,SIGHUP,SIGQUIT")
    proc = subprocess.Popen(list(cmd), env=env, preexec_fn=_ignore_forwarded)

    def forward(signum, frame):
        for pid in children(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
