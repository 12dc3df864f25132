"""The one checkpoint loader of loce: every checkpoint read (loce's own checks, inference, ``loce inspect``, and
mmcv's ``load_checkpoint`` / ``runner.resume`` / mmdet's ``init_detector`` through
:mod:`loce_cli.mmdet_ext.checkpoint_hooks`) ends in :func:`load_checkpoint_file`.

- ``torch.load(..., weights_only=True)`` always, passed explicitly: torch's ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
  only overrides call sites that leave ``weights_only`` unset, so the setting has no effect here. A file that
  needs pickle (any global outside torch's allow-list) is refused in one line, without running anything.
- No check-then-load gap: the file is opened once and torch reads that open file (through ``/proc/self/fd/N``,
  which names the inode we hold, not the path: renaming another file over the path changes nothing); the
  memory-mapped storages of ``mmap=True`` come from the same inode. Checking and loading are one call.
- Layouts: loce's, stock mmdet 2.x (``meta`` with ``mmcv_version``, ``CLASSES``, the config text, ``optimizer``),
  the authors' mmdet 2.8 code, a bare ``state_dict``, and legacy (pre-zip) files all load: they hold only
  tensors, containers, numbers and strings.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import stat
from pathlib import Path
from typing import Any, Union

import torch

from loce_cli.errors import DataError

ZIP_MAGIC = b"PK\x03\x04"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global|Unsupported global: GLOBAL (\S+)|"
                     r"whose module (\S+) is blocked")


class UnsafeCheckpointError(DataError):
    """The file needs Python pickle (code) to load; loce loads weights only."""


def _needs_pickle(e: BaseException) -> bool:
    """A weights-only refusal of a Python object (a global outside the allow-list), not a damaged file (which
    the weights-only unpickler reports as an unsupported operand)."""
    text = str(e)
    return isinstance(e, pickle.UnpicklingError) and ("GLOBAL " in text or " is blocked" in text
                                                       or " must be " in text)


def _pickle_reason(e: BaseException) -> str:
    text = _ANSI.sub("", str(e))
    m = _GLOBAL.search(text)
    if m:
        name = next(g for g in m.groups() if g)
        return f"it refers to the Python object {name.rstrip('.,')}"
    return "it holds Python objects other than tensors, containers, numbers and strings"


def checkpoint_file(path: Union[str, Path]) -> Path:
    """The checkpoint a path names, for every command that reads one: a file as given; a directory (a work dir)
    its ``latest.pth``, the file that link points at (``epoch_N.pth``). A directory without one is refused in one
    line naming the ``.pth`` files it holds."""
    path = Path(os.path.expanduser(str(path)))
    if not path.is_dir():
        return path
    latest = path / "latest.pth"
    if latest.is_file():
        return latest.resolve() if latest.is_symlink() else latest
    held = sorted(p.name for p in path.iterdir() if p.suffix == ".pth" and p.is_file())
    if not held:
        raise DataError(f"checkpoint {path} is a directory with no .pth file in it",
                        "pass a checkpoint file, e.g. WORK_DIR/latest.pth of a finished run")
    shown = ", ".join(held[:6]) + (f", ... ({len(held)} in all)" if len(held) > 6 else "")
    raise DataError(f"checkpoint {path} is a directory without latest.pth; it holds {shown}",
                    f"pass one of them, e.g. {path / held[-1]}")


def load_checkpoint_file(path: Union[str, Path], map_location: Any = "cpu", mmap: bool = False) -> Any:
    """Load the checkpoint at ``path`` with ``weights_only=True`` (whatever the environment says).

    ``mmap=True`` maps the tensors of a zip-format file instead of reading them (only what is touched is paged
    in); a legacy file is read normally. A directory reads its ``latest.pth`` (:func:`checkpoint_file`). Raises :class:`UnsafeCheckpointError` for a file that needs pickle and
    :class:`~loce_cli.errors.DataError` for a missing, empty, truncated or foreign file, each one line."""
    path = checkpoint_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise DataError(f"checkpoint {path} does not exist", "check the path (e.g. WORK_DIR/latest.pth)") from None
    except OSError as e:
        raise DataError(f"checkpoint {path} cannot be opened ({e.strerror})", "check its permissions") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise DataError(f"checkpoint {path} is not a regular file", "pass a .pth file")
        source: Any = f"/proc/self/fd/{fd}" if os.path.exists(f"/proc/self/fd/{fd}") else None
        head = os.pread(fd, 4, 0)
        if not head:
            raise DataError(f"checkpoint {path} is empty (0 bytes)", "the write was interrupted; use another one")
        if source is None:  # no /proc: read the bytes once and load those
            size = os.fstat(fd).st_size
            source, mmap = io.BytesIO(os.pread(fd, size, 0)), False
        try:
            return torch.load(source, map_location=map_location, weights_only=True,
                              mmap=bool(mmap and head == ZIP_MAGIC))
        except Exception as e:
            if _needs_pickle(e):
                raise UnsafeCheckpointError(
                    f"{path} needs Python pickle to load ({_pickle_reason(e)}); loce loads weights only and "
                    "refused it without running anything",
                    "use a checkpoint written by loce or mmdet; if you trust this file, load it yourself and "
                    "save its state_dict (tensors only) again") from None
            first = _ANSI.sub("", str(e)).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            raise DataError(f"{path} is not a readable checkpoint ({type(e).__name__}: {first})",
                            "the file may be truncated or not a PyTorch checkpoint; use another one") from None
    finally:
        os.close(fd)
