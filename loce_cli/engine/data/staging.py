"""A generated dataset is built in a staging folder beside ``--out`` and moved into place at the end, so an
interrupted run leaves no partial dataset under ``--out`` (``loce data synth``, ``--like lvis-*``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence, Tuple

from loce_cli.errors import OutputExistsError


def prepare_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"--out {out} exists and is not a directory", "choose another --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"--out {out} is not empty",
                                "choose an empty or new directory, or pass --force to replace its dataset")



def install_staged(staging: Path, out: Path,
                   entries: Sequence[str] = ("train2017", "val2017", "annotations")) -> Tuple[int, int]:
    """Move a dataset built in ``staging`` (``entries``: the image folders, then ``annotations/``) into ``out``,
    replacing those entries; returns (files, bytes). Images first, annotations last: a reader never sees
    annotations pointing at missing images."""
    files = sum(len(names) for _, _, names in os.walk(staging))
    nbytes = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file())
    out.mkdir(parents=True, exist_ok=True)
    for entry in entries:
        target = out / entry
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(staging / entry, target)
    return files, nbytes


@contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """A new empty folder beside ``out`` (same file system: the final moves are renames), removed afterwards."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.synth-", dir=out.parent))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
