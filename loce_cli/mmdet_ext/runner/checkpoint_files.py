"""The files of a run's checkpoints in its work dir: names, atomic writing, pruning, stale temporary files.

- ``epoch_N.pth``: written at the end of epoch N (mmcv's ``CheckpointHook``).
- ``iter_N.pth``: a mid-epoch checkpoint after N iterations (``--checkpoint-every`` or a stop signal).
- ``<name>.rank<R>.pth`` beside either, in runs of several processes: rank R's own state (its feature memory,
  random streams and data order), written before rank 0's file, so a checkpoint whose rank-0 file exists is
  complete.
- ``latest.pth``: a symlink to the newest checkpoint, switched atomically.

Every file is written to ``.<name>.<random>.tmp`` in the same folder, flushed to disk and renamed. The work dir
holds no pickle loader; callers read checkpoints through one function (engine's ``read_checkpoint``).
"""

from __future__ import annotations

import os
import os.path as osp
import re
from pathlib import Path
from typing import Callable, List, Optional

from loce_cli.atomic import atomic_path
from loce_cli.core.checkpoint_io import load_checkpoint_file

CHECKPOINT_RE = re.compile(r"^(epoch|iter)_(\d+)\.pth$")
RANK_FILE_RE = re.compile(r"^((?:epoch|iter)_\d+)\.rank(\d+)\.pth$")
# loce's temporary names: tempfile's ".<name>.<8 chars>.tmp" and the symlink's ".latest.pth.<pid>.tmp"
STALE_TMP_RE = re.compile(r"^\.(?:[\w.-]+\.(?:pth|json|txt|py))\.(?:[a-z0-9_]{8}|\d+)\.tmp$")


def write_atomic(path: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary name beside ``path`` (mode from the umask), fsync, rename; on any error
    nothing under ``path`` changes and the temporary file is removed; a full disk is one line naming ``path``
    (:func:`loce_cli.atomic.atomic_path`)."""
    with atomic_path(Path(path)) as tmp:
        write(str(tmp))
        with open(tmp, "rb") as f:  # on disk before the rename: a crash never leaves a short file under `path`
            os.fsync(f.fileno())


def point_latest(work_dir: str, filename: str) -> None:
    """``latest.pth`` -> ``filename``, switched in one rename."""
    link = osp.join(work_dir, "latest.pth")
    tmp_link = osp.join(work_dir, f".latest.pth.{os.getpid()}.tmp")
    if osp.lexists(tmp_link):
        os.remove(tmp_link)
    os.symlink(filename, tmp_link)
    os.replace(tmp_link, link)


def rank_file(checkpoint: str, rank: int) -> str:
    """Rank ``rank``'s file beside ``checkpoint`` (``.../iter_7.pth`` -> ``.../iter_7.rank1.pth``)."""
    stem = checkpoint[:-len(".pth")] if checkpoint.endswith(".pth") else checkpoint
    return f"{stem}.rank{rank}.pth"


def checkpoints(work_dir: str) -> List[str]:
    """Every ``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir``, newest first by modification time (names break
    ties: a mid-epoch checkpoint and the epoch-end one of the same second)."""
    if not osp.isdir(work_dir):
        return []
    found = []
    for name in os.listdir(work_dir):
        m = CHECKPOINT_RE.match(name)
        path = osp.join(work_dir, name)
        if m and osp.isfile(path):
            found.append((os.stat(path).st_mtime_ns, m.group(1) == "epoch", int(m.group(2)), path))
    return [p for *_, p in sorted(found, reverse=True)]


def newest_checkpoint(work_dir: str) -> Optional[str]:
    """``latest.pth``'s target when it resolves, else the newest checkpoint file, else None."""
    link = osp.join(work_dir, "latest.pth")
    if osp.exists(link):
        return osp.realpath(link)
    found = checkpoints(work_dir)
    return found[0] if found else None


def prune_mid_epoch(work_dir: str, keep: int, epoch_end_iter: Optional[int] = None) -> List[str]:
    """Remove mid-epoch checkpoints (and their rank files) that an epoch-end checkpoint written after
    ``epoch_end_iter`` iterations supersedes, and all but the newest ``keep`` of the others; never the file
    ``latest.pth`` points to. Also removes rank files whose rank-0 file is gone. Returns the removed paths."""
    latest = newest_checkpoint(work_dir)
    mids = []
    for name in os.listdir(work_dir):
        m = CHECKPOINT_RE.match(name)
        if m and m.group(1) == "iter":
            mids.append((int(m.group(2)), osp.join(work_dir, name)))
    mids.sort(reverse=True)
    doomed = [p for i, (n, p) in enumerate(mids)
              if (epoch_end_iter is not None and n <= epoch_end_iter) or i >= max(1, keep)]
    removed = []
    for path in doomed:
        if latest and osp.realpath(path) == latest:
            continue
        os.remove(path)
        removed.append(path)
    return removed + prune_orphan_rank_files(work_dir)


def prune_orphan_rank_files(work_dir: str) -> List[str]:
    """Remove the rank files (``epoch_N.rankR.pth``, ``iter_N.rankR.pth``) whose rank-0 file is gone (pruned by
    :func:`prune_mid_epoch` or by mmcv's ``max_keep_ckpts``), except those newer than the newest checkpoint (a
    save in progress: rank files are written first). Returns the removed paths."""
    latest = newest_checkpoint(work_dir)
    newest_mtime = os.stat(latest).st_mtime_ns if latest and osp.exists(latest) else None
    removed = []
    for name in os.listdir(work_dir):
        m = RANK_FILE_RE.match(name)
        if not m or osp.exists(osp.join(work_dir, m.group(1) + ".pth")):
            continue
        path = osp.join(work_dir, name)
        if newest_mtime is not None and os.stat(path).st_mtime_ns <= newest_mtime:  # not a save in progress
            os.remove(path)
            removed.append(path)
    return removed


def remove_stale_tmp(work_dir: str) -> List[str]:
    """Remove the temporary files that an interrupted write of loce's left in ``work_dir`` (only names of
    loce's own pattern, see :data:`STALE_TMP_RE`). Call it before a run starts there. Returns their names."""
    if not osp.isdir(work_dir):
        return []
    removed = []
    for name in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, name)
        if STALE_TMP_RE.match(name) and (osp.islink(path) or osp.isfile(path)):
            os.remove(path)
            removed.append(name)
    return removed


def load_state_file(path: str) -> dict:
    """Read one of loce's own state files (a rank file) on the CPU, tensors and plain containers only."""
    return load_checkpoint_file(path, map_location="cpu")
