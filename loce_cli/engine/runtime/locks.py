"""One live run per directory: a lock file (``DIR/.loce.lock``) held with ``flock`` by the process that runs the
work (the launcher, or rank 0 of a run whose processes someone else started), for training work dirs, eval
``--out`` folders and the quickstart's folder.

- A second run, a ``--force`` or a ``--resume`` against a live run is refused in one line naming the holder
  (pid, host, start time, command); the kernel releases the lock when the holder dies, however it dies.
- The file records who holds it. A clean exit empties it; a file that still names a holder whose lock the kernel
  has released (killed, crashed, machine rebooted) is a stale lock: it is taken over with a warning on stderr.
- The file is not deleted (deleting a locked file lets two runs lock two different files of one name), except
  with a folder the lock itself created and nothing else was written to (a run refused or failed at once).
- Reentrant within one process (quickstart -> train of a sub-folder is another file; the same folder twice
  is counted, not locked twice).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

from loce_cli.engine.runtime.launch import env_rank
from loce_cli.errors import OutputExistsError

LOCK_NAME = ".loce.lock"

_HELD: Dict[str, Tuple[int, int]] = {}  # resolved lock path -> (fd, depth) in this process


class RunInProgressError(OutputExistsError):
    """The directory is in use by a live loce process."""


def _describe(info: dict) -> str:
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    command = info.get("command") or ""
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {when}"
            + (f" ({command[:80]})" if command else ""))


def _read(fd: int) -> Optional[dict]:
    size = os.fstat(fd).st_size
    raw = os.pread(fd, size, 0) if size else b""
    if not raw.strip():
        return None
    try:
        info = json.loads(raw)
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def acquire(directory: Path, what: str = "--work-dir") -> None:
    """Lock ``directory`` for this process (created if needed); raises :class:`RunInProgressError` when a live
    process holds it. Pair with :func:`release` (or use :func:`locked`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = str((directory / LOCK_NAME).resolve())
    if path in _HELD:
        fd, depth = _HELD[path]
        _HELD[path] = (fd, depth + 1)
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = _read(fd) or {}
        os.close(fd)
        raise RunInProgressError(f"{what} {directory} is in use by a live run: {_describe(info)}",
                                 "wait for it to finish, or stop it first; --force and --resume do not override a "
                                 "live run (or choose another directory)") from None
    except OSError:
        os.close(fd)
        raise
    previous = _read(fd)
    if previous is not None:
        print(f"warning: {what} {directory}: taking over the lock of a run that is no longer running "
              f"({_describe(previous)})", file=sys.stderr)
    me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.time(), command=" ".join(sys.argv))
    data = json.dumps(me).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    _HELD[path] = (fd, 1)


def release(directory: Path) -> None:
    """Undo one :func:`acquire` of ``directory``; the last one empties the file and unlocks it."""
    path = str((Path(directory) / LOCK_NAME).resolve())
    if path not in _HELD:
        return
    fd, depth = _HELD[path]
    if depth > 1:
        _HELD[path] = (fd, depth - 1)
        return
    del _HELD[path]
    try:
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def locked(directory: Optional[Path], what: str = "--work-dir", take: bool = True) -> Iterator[None]:
    """``with locked(dir):`` the body runs holding ``dir``'s lock. ``take=False`` (a rank other than 0, another
    node of a run) or ``directory=None`` holds nothing: the ranks of one run never refuse each other."""
    if directory is None or not take:
        yield
        return
    created = not Path(directory).exists()
    acquire(directory, what)
    try:
        yield
    finally:
        release(directory)
        if created and [p.name for p in Path(directory).iterdir()] == [LOCK_NAME]:
            _remove_empty(Path(directory))  # a run that failed before writing anything leaves no folder


def _remove_empty(directory: Path) -> None:
    """Remove a folder this process created that holds only an empty, unlocked lock file."""
    lock = directory / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_size == 0:
            lock.unlink()
            directory.rmdir()
    except OSError:
        pass
    finally:
        os.close(fd)


def takes_lock(launch) -> bool:
    """Whether this process holds the run's lock: the launcher on node 0 (``--launcher none``), or global rank 0
    of processes started by torchrun / srun. Workers loce starts itself never call this."""
    return launch.node_rank == 0 and env_rank() == 0
