"""Which annotation file a run was evaluated on, as a sha256: recorded in every ``metrics.json`` by ``loce eval``
and compared by ``loce report`` (runs evaluated on different val sets give deltas that mean nothing).

The hash comes from ``loce_meta.json`` when ``loce data prep`` described the file as it is now (same size), else
from reading the file (a streaming hash: about 1 s per GB).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

from loce_cli.engine.data.prep import read_meta

CHUNK = 8 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                return h.hexdigest()
            h.update(block)


def annotation_sha256(ann_file: Path) -> Optional[str]:
    """The sha256 of ``ann_file`` (None when it cannot be read)."""
    ann_file = Path(ann_file)
    try:
        entry = (read_meta(ann_file).get("files") or {}).get(ann_file.name) or {}
        if entry.get("sha256"):
            return str(entry["sha256"])
    except Exception:  # not prepared, changed since, unreadable meta: hash the file itself
        pass
    try:
        return file_sha256(ann_file)
    except OSError:
        return None
