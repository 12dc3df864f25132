"""Per-rank result shards: each inference process appends its images' detections to its own file as it goes, and
rank 0 merges the shards into ``results.json`` by streaming, so no process ever holds every detection.

A shard is ``.results.rank<R>.<token>.json.part`` while written; ``close`` flushes it to disk and writes its
index (which images, where, how many detections) as ``.results.rank<R>.<token>.index.json``, atomically, last.
The merge takes only complete shards of this run (its token, its world size, every rank, sizes that match the
index): a shard left by a crashed rank or by another run is never merged.

The merged file is byte-identical to what one process writes with ``json.dumps`` of the whole list sorted by
(image id, -score) with a stable sort: per image the detections are ordered by score (stable), images by id,
joined with ``", "`` inside ``[`` ``]``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Dict, List, Optional

from loce_cli.engine.json_files import atomic_path, write_json_atomic
from loce_cli.errors import DataError

_PREFIX = ".results.rank"


def new_token() -> str:
    return uuid.uuid4().hex[:16]


def _data_path(out: Path, rank: int, token: str) -> Path:
    return Path(out) / f"{_PREFIX}{rank}.{token}.json.part"


def _index_path(out: Path, rank: int, token: str) -> Path:
    return Path(out) / f"{_PREFIX}{rank}.{token}.index.json"


class ShardWriter:
    """This rank's shard. ``add`` one image's detections at a time (any order of images)."""

    def __init__(self, out: Path, rank: int, world: int, token: str):
        self.out, self.rank, self.world, self.token = Path(out), rank, world, token
        self.path = _data_path(self.out, rank, token)
        self.out.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self._images: List[int] = []
        self._offsets: List[int] = []
        self._lengths: List[int] = []
        self._counts: List[int] = []
        self._size = 0
        self.detections = 0

    def add(self, image_id: int, dets: List[dict]) -> None:
        if not dets:
            return
        dets = sorted(dets, key=lambda d: -d["score"])  # stable: equal scores keep the model's order
        text = ", ".join(json.dumps(d) for d in dets).encode("utf-8")
        self._f.write(text)
        self._images.append(int(image_id))
        self._offsets.append(self._size)
        self._lengths.append(len(text))
        self._counts.append(len(dets))
        self._size += len(text)
        self.detections += len(dets)

    def close(self) -> None:
        """Make the shard complete: data on disk first, then its index (atomically)."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        write_json_atomic(_index_path(self.out, self.rank, self.token), dict(
            rank=self.rank, world=self.world, token=self.token, bytes=self._size, images=self._images,
            offsets=self._offsets, lengths=self._lengths, counts=self._counts))

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()
        self.path.unlink(missing_ok=True)
        _index_path(self.out, self.rank, self.token).unlink(missing_ok=True)


def _read_index(out: Path, rank: int, world: int, token: str) -> dict:
    path = _index_path(out, rank, token)
    if not path.is_file():
        raise DataError(f"the results shard of rank {rank} is incomplete or missing in {out}",
                        "a process stopped before finishing its images; run the evaluation again")
    try:
        index = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise DataError(f"{path} is not a valid shard index", "run the evaluation again") from None
    data = _data_path(out, rank, token)
    if (index.get("token"), index.get("world"), index.get("rank")) != (token, world, rank) or \
            not data.is_file() or data.stat().st_size != index.get("bytes"):
        raise DataError(f"the results shard of rank {rank} in {out} does not belong to this run or is damaged",
                        "run the evaluation again")
    return index


def merge_shards(out: Path, world: int, token: str, results_file: Path) -> int:
    """Merge the ``world`` shards of run ``token`` into ``results_file`` (atomically); returns the number of
    detections. The shards are removed afterwards."""
    out = Path(out)
    indexes = [_read_index(out, r, world, token) for r in range(world)]
    where: Dict[int, tuple] = {}
    for r, index in enumerate(indexes):
        for img, off, length in zip(index["images"], index["offsets"], index["lengths"]):
            if img in where:
                raise DataError(f"image {img} appears in two results shards", "each image belongs to one rank")
            where[img] = (r, off, length)
    fds = [os.open(_data_path(out, r, token), os.O_RDONLY) for r in range(world)]
    try:
        with atomic_path(results_file) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"[")
                for n, img in enumerate(sorted(where)):
                    r, off, length = where[img]
                    if n:
                        f.write(b", ")
                    f.write(os.pread(fds[r], length, off))
                f.write(b"]")
    finally:
        for fd in fds:
            os.close(fd)
    for r in range(world):
        _data_path(out, r, token).unlink(missing_ok=True)
        _index_path(out, r, token).unlink(missing_ok=True)
    return sum(sum(index["counts"]) for index in indexes)


def remove_stale(out: Path, keep_token: Optional[str] = None) -> List[Path]:
    """Delete shard files of other runs (e.g. left by a crash) from ``out``; returns what was removed."""
    removed = []
    for p in Path(out).glob(f"{_PREFIX}*"):
        if keep_token is None or f".{keep_token}." not in p.name:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
