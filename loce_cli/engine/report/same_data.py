"""``loce report``'s check that every run was evaluated on the same annotation file (by sha256: the one
``metrics.json`` records, or for a metrics.json written before loce recorded it, the file it names as it is
now)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple

from loce_cli.engine.data.identity import annotation_sha256
from loce_cli.errors import DataError


def _sha(rep) -> str | None:
    if getattr(rep, "annotation_sha256", None):
        return rep.annotation_sha256
    return annotation_sha256(Path(rep.annotation_file)) if Path(rep.annotation_file).is_file() else None


def check_same_data(items: Sequence[Tuple[Path, object]], allow_different: bool) -> List[str]:
    """``items``: (metrics.json, EvalReport) of every run and seed. Raises DataError when two were evaluated
    on different annotation files, unless ``allow_different`` (then returns the warning notes)."""
    notes: List[str] = []
    ref_src, ref = items[0]
    ref_sha = _sha(ref)
    unknown = [str(src) for src, rep in items if _sha(rep) is None]
    for src, rep in items[1:]:
        sha = _sha(rep)
        if sha is None or ref_sha is None or sha == ref_sha:
            continue
        text = (f"{src} was evaluated on {rep.annotation_file} (sha256 {sha[:12]}) but {ref_src} on "
                f"{ref.annotation_file} (sha256 {ref_sha[:12]}): different val sets")
        if not allow_different:
            raise DataError(text, "evaluate every run on the same annotation file, or pass --allow-different-data "
                                  "to compare them anyway")
        notes.append(f"WARNING: {text}; the deltas compare different data")
    if unknown:
        notes.append(f"could not check which annotation file {len(unknown)} run(s) used (metrics.json without a "
                     f"sha256 and the file is gone): {', '.join(unknown[:3])}")
    return notes
