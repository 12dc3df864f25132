"""Session fixtures built once per test run, also when pytest-xdist runs the suite in several worker processes, and
a lock for what only one test at a time may use.

Without xdist a session fixture is built once anyway. Under xdist each worker is its own session, so a trained
model or a generated dataset would be built once per worker; :func:`built_once` builds it in the folder the workers
share (the parent of their base temp folders), under a file lock, and hands the other workers the builder's return
value (pickled next to it)."""

from __future__ import annotations

import os
import pickle
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from filelock import FileLock

T = TypeVar("T")


def built_once(tmp_path_factory, name: str, build: Callable[[Path], T]) -> T:
    """``build(folder)`` in a new empty ``folder`` named ``name``, once for the whole test run; its return value
    (picklable) is what every worker's fixture returns. Treat the folder as read-only."""
    shared = _workers_folder(tmp_path_factory)
    if shared is None:
        return build(tmp_path_factory.mktemp(name))
    folder, value_file = shared / name, shared / f"{name}.pickle"
    with FileLock(str(shared / f"{name}.lock")):
        if value_file.exists():
            return pickle.loads(value_file.read_bytes())
        if folder.exists():  # a worker that failed half-way through building it
            shutil.rmtree(folder)
        folder.mkdir()
        value = build(folder)
        value_file.write_bytes(pickle.dumps(value))
    return value


@contextmanager
def one_at_a_time(tmp_path_factory, name: str) -> Iterator[None]:
    """Held by one test of the whole run at a time (a lock file in the workers' shared folder under xdist)."""
    shared = _workers_folder(tmp_path_factory)
    if shared is None:
        yield
        return
    with FileLock(str(shared / f"{name}.lock")):
        yield


def _workers_folder(tmp_path_factory) -> Optional[Path]:
    """The temp folder all xdist workers of this run share (the parent of each one's own); None without xdist."""
    return tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None
