"""Running ``torchrun`` so that stop signals end a multi-process run as they end a single-process one, whether
they reach ``loce`` alone or its whole process group (Slurm, ``timeout``, systemd, a terminal's Ctrl-C).

torchrun answers SIGTERM and SIGINT by signalling its workers, SIGKILLing them 30 s later and raising a
``SignalException`` traceback, and dies of SIGUSR1 (which it does not handle), leaving its workers behind; its
workers each run in a session of their own, so a signal to loce's group never reaches them. So loce starts
torchrun with SIGTERM, SIGUSR1 and SIGINT ignored (and not among its ``--signals-to-handle``), and itself:

- training (:func:`run_forwarding_stop_signals`): passes each such signal on to the training processes, once;
  they checkpoint at the next iteration boundary and stop, and torchrun sees them exit on their own. A second
  Ctrl-C stops everything at once (:func:`stop_tree`).
- evaluation (:func:`run_stopping_on_interrupt`): SIGINT or SIGTERM stops torchrun and every process under it,
  and returns once they are gone (nothing of theirs is written afterwards), raising ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import List, Sequence

FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
# the signals torchrun itself handles (its default adds SIGTERM and SIGINT): --signals-to-handle, read from
# PET_SIGNALS_TO_HANDLE, which it copies into TORCHELASTIC_SIGNALS_TO_HANDLE (what older versions read)
HANDLED_BY_TORCHRUN = "SIGHUP,SIGQUIT"


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


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _start(cmd: Sequence[str], env: dict) -> subprocess.Popen:
    env = dict(env, PET_SIGNALS_TO_HANDLE=HANDLED_BY_TORCHRUN, TORCHELASTIC_SIGNALS_TO_HANDLE=HANDLED_BY_TORCHRUN)
    return subprocess.Popen(list(cmd), env=env, preexec_fn=_ignore_forwarded)


def stop_tree(proc: subprocess.Popen, timeout: float = 60) -> None:
    """SIGKILL torchrun (``proc``) and every process it started (each rank's session: its DataLoader and
    evaluation workers too), and wait until they are gone. torchrun is frozen first so that it starts no more."""
    try:
        proc.send_signal(signal.SIGSTOP)
    except ProcessLookupError:
        pass
    ranks = children(proc.pid)
    proc.kill()
    for pid in ranks:
        try:
            os.killpg(pid, signal.SIGKILL)  # torchrun starts each rank as the leader of its own session
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait()
    end = time.monotonic() + timeout
    while any(running(pid) for pid in ranks) and time.monotonic() < end:
        time.sleep(0.05)


def run_forwarding_stop_signals(cmd: Sequence[str], env: dict) -> int:
    """Run ``cmd`` (torchrun) to its end; SIGTERM / SIGUSR1 / SIGINT to this process go to its children (the
    training processes), which stop at their next iteration boundary. A second SIGINT stops them at once and
    raises ``KeyboardInterrupt``."""
    proc = _start(cmd, env)
    interrupts = [0]

    def forward(signum, frame):
        if signum == signal.SIGINT:
            interrupts[0] += 1
            if interrupts[0] > 1:
                raise KeyboardInterrupt
        for pid in children(proc.pid) or [proc.pid]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    return _wait_with_handlers(proc, {sig: forward for sig in FORWARDED})


def run_stopping_on_interrupt(cmd: Sequence[str], env: dict) -> int:
    """Run ``cmd`` (torchrun) to its end; on SIGINT or SIGTERM stop it and every process under it, wait until
    they are gone, and raise ``KeyboardInterrupt``."""
    proc = _start(cmd, env)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return _wait_with_handlers(proc, {sig: interrupt for sig in (signal.SIGINT, signal.SIGTERM)})


def _wait_with_handlers(proc: subprocess.Popen, handlers: dict) -> int:
    """``proc.wait()`` with ``handlers`` installed (the previous ones restored after); a ``KeyboardInterrupt`` a
    handler raises stops ``proc`` and everything under it (those signals ignored meanwhile) and goes on up."""
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            for sig in handlers:
                signal.signal(sig, signal.SIG_IGN)
            stop_tree(proc)
            raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
