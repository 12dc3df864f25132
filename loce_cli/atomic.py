"""Writing a file under its real name only once it is complete: a temporary name in the same folder, then a rename.

The temporary file gets the mode an ordinary ``open(path, "w")`` would give (``0o666`` less the umask: 0644 under
the usual 022), not ``mkstemp``'s private 0600, so teammates can read results on a shared disk. Running out of
space while writing is one :class:`~loce_cli.errors.DiskFullError` naming the file and the bytes involved.
Shared by every layer (engine writers and the training runner's checkpoints); imports nothing heavy.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Optional

from loce_cli.errors import DiskFullError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def current_umask() -> int:
    """The process's umask, read without changing it (Linux ``/proc``), else by the set-and-restore dance."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a newly created regular file gets here: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def disk_full(path, written: int, cause: OSError, needed: Optional[int] = None) -> DiskFullError:
    """The one-line error for ``cause`` (ENOSPC / EDQUOT) while writing ``path`` (a file, or a description of
    several) after ``written`` bytes; ``needed``: the bytes the write needs, when known."""
    folder = Path(path).parent if isinstance(path, Path) else Path(str(path).rsplit(" in ", 1)[-1])
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    what = "quota exceeded" if cause.errno == errno.EDQUOT else "no space left on the device"
    have = f", {free:,} bytes free there" if free is not None else ""
    need = (f"it needs {needed:,} bytes" if needed is not None
            else f"it needs more than the {written:,} bytes written before the disk filled")
    return DiskFullError(f"{what} while writing {path}: {need}{have}",
                         f"free at least {max(needed or written, 1):,} bytes there (or choose another output folder) "
                         "and run again; nothing was left under the real name")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (mode from the umask); on success it is renamed to ``path``, on
    error removed. A full disk becomes :class:`DiskFullError` naming ``path``."""
    path = Path(path)
    with _temp_for(path) as tmp_path:
        try:
            yield tmp_path
            os.replace(tmp_path, path)
        except (OSError, RuntimeError) as e:  # torch.save wraps its zip writer's OSError in a RuntimeError
            if not _is_disk_full(e):
                raise
            written = tmp_path.stat().st_size if tmp_path.exists() else 0
            raise disk_full(path, written, e if isinstance(e, OSError) else
                            OSError(errno.ENOSPC, "No space left on device")) from None


def _is_disk_full(e: BaseException) -> bool:
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False


@contextmanager
def atomic_paths(paths, needed: Optional[int] = None) -> Iterator[list]:
    """Several files written as a set: yield one temporary path per target; when the body succeeds every one is
    renamed, in the order given (put the file others test for, e.g. ``metrics.json``, last); when it fails none
    is, so an interrupted or failed write leaves none of them under its real name. ``needed``: their total size
    when known (for the disk-full message)."""
    paths = [Path(p) for p in paths]
    with ExitStack() as stack:
        temps = [stack.enter_context(_temp_for(p)) for p in paths]
        try:
            yield temps
        except (OSError, RuntimeError) as e:
            if not _is_disk_full(e):
                raise
            where = f"{', '.join(p.name for p in paths)} in {paths[0].parent}" if len(paths) > 1 else paths[0]
            raise disk_full(where, sum(t.stat().st_size for t in temps if t.exists()),
                            e if isinstance(e, OSError) else OSError(errno.ENOSPC, str(e)), needed) from None
        for path, tmp in zip(paths, temps):
            os.replace(tmp, path)


@contextmanager
def _temp_for(path: Path) -> Iterator[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
