"""Writing the annotation files of ``loce data import coco`` piece by piece, in bounded memory.

A parsed file is written as JSON one top-level key at a time, each list in chunks of items, so the whole text is
never held; the size and sha256 (for ``loce_meta.json``) are taken on the way. The val file's images each get
``neg_category_ids`` (every category not annotated in the image, ascending) as text cut from one precomputed text
of all category ids, so the lists never exist as Python objects (at 1,203 classes they are almost all of the
file). The files go into the import's staging folder, renamed into place only when everything is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional, Tuple

import msgspec
import numpy as np

CHUNK = 4096  # list items encoded at a time


class NegativeLists:
    """Text of each image's ``neg_category_ids``: ``cat_ids`` ascending with the image's present ones cut out.

    ``present``: sorted unique codes ``image row * K + rank`` (rank: position of the category in ascending id
    order) of the categories annotated in each image (crowd regions included: their class is not verified
    absent)."""

    def __init__(self, cat_ids: np.ndarray, present: np.ndarray, num_images: int):
        ids = np.sort(np.asarray(cat_ids, dtype=np.int64))
        self.k = int(ids.size)
        pieces = [str(c).encode("ascii") for c in ids.tolist()]
        self.full = b",".join(pieces)
        lens = np.array([len(p) for p in pieces], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(lens + 1)[:-1]]) if self.k else np.zeros(0, np.int64)
        self.start, self.end = start.tolist(), (start + lens).tolist()
        present = np.asarray(present, dtype=np.int64)
        self.rank = (present % max(self.k, 1)).tolist()
        self.bounds = np.searchsorted(present // max(self.k, 1), np.arange(num_images + 1)).tolist()

    def __call__(self, row: int) -> bytes:
        lo, hi = self.bounds[row], self.bounds[row + 1]
        if lo == hi:
            return self.full
        runs, nxt = [], 0  # nxt: the first rank not yet written or cut
        for r in self.rank[lo:hi]:
            if r > nxt:
                runs.append(self.full[self.start[nxt]:self.end[r - 1]])
            nxt = r + 1
        if nxt < self.k:
            runs.append(self.full[self.start[nxt]:])
        return b",".join(runs)


def write_json(path: Path, data: dict, image_fields: Optional[Callable[[int], bytes]] = None) -> Tuple[int, str]:
    """Write ``data`` (a dict of JSON values) to ``path``; ``image_fields(row)``: text of more fields
    (``"key":value,...``) appended to ``data["images"][row]``. Returns (size in bytes, sha256 hex)."""
    enc = msgspec.json.Encoder()
    digest = hashlib.sha256()
    size = 0
    with open(path, "wb") as f:
        def put(chunk: bytes) -> None:
            nonlocal size
            f.write(chunk)
            digest.update(chunk)
            size += len(chunk)

        put(b"{")
        for n, (key, value) in enumerate(data.items()):
            put((b"," if n else b"") + enc.encode(key) + b":")
            if key == "images" and image_fields is not None:
                _put_images(put, enc, value, image_fields)
            elif isinstance(value, list):
                put(b"[")
                for lo in range(0, len(value), CHUNK):
                    put((b"," if lo else b"") + enc.encode(value[lo:lo + CHUNK])[1:-1])
                put(b"]")
            else:
                put(enc.encode(value))
        put(b"}")
    return size, digest.hexdigest()


def _put_images(put, enc: msgspec.json.Encoder, images: list, image_fields: Callable[[int], bytes]) -> None:
    put(b"[")
    for lo in range(0, len(images), CHUNK):
        parts = []
        for row in range(lo, min(lo + CHUNK, len(images))):
            record = enc.encode(images[row])  # an image record is never empty: it has an id
            parts.append(record[:-1] + b"," + image_fields(row) + b"}")
        put((b"," if lo else b"") + b",".join(parts))
    put(b"]")


def negative_fields(lists: NegativeLists) -> Callable[[int], bytes]:
    """``image_fields`` for ``write_json``: each image's ``neg_category_ids`` and an empty
    ``not_exhaustive_category_ids``."""
    return lambda row: b'"neg_category_ids":[' + lists(row) + b'],"not_exhaustive_category_ids":[]'
