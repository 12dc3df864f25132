"""What a report row's numbers are: the protocol and its detection limits, per evaluated run. Numbers of different
definitions (another ``--max-dets``, AP-fixed of results capped per image beside true AP-fixed) are never
averaged over seeds nor subtracted from each other by ``loce report``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from loce_cli.engine.evaluation import EvalReport
from loce_cli.errors import DataError

PROTOCOL_TITLES = {"fixed": "AP-fixed", "pooled": "AP-pool"}  # rows "<metric> <title>"; standard rows: "<metric>"
_CAPPED = re.compile(r"look capped at (\d+) detections per image")


def protocol_of(key: str) -> Tuple[str, str]:
    """``(metric, protocol name)`` of a row key: ``bbox`` -> (bbox, standard), ``segm AP-fixed`` -> (segm, fixed)."""
    metric, _, title = key.partition(" ")
    if not title:
        return metric, "standard"
    return metric, next(n for n, t in PROTOCOL_TITLES.items() if t == title)


def capped_at(rep: EvalReport) -> Optional[int]:
    """The per-image cap the results looked capped at (loce eval's warning in metrics.json), else None."""
    for w in rep.warnings:
        m = _CAPPED.search(w)
        if m:
            return int(m.group(1))
    return None


def definition(rep: EvalReport, key: str) -> str:
    """The row's definition in words, e.g. ``max 300 dets/image`` or ``top 10000 dets/class, results capped at
    300 dets/image: not AP-fixed as defined``."""
    _metric, name = protocol_of(key)
    if name == "standard":
        return f"max {rep.max_dets} dets/image"
    text = f"top {rep.protocols[name].dets_per_class} dets/class"
    cap = capped_at(rep)
    if cap is not None:
        return text + f", results capped at {cap} dets/image: not {PROTOCOL_TITLES[name]} as defined"
    return text + ", no per-image cap"


def seed_definitions(label: str, items: Sequence[Tuple[Path, EvalReport]], key: str,
                     has) -> Optional[str]:
    """The one definition of ``key`` over a run's seeds (None where no seed has the row); refuses seeds whose
    numbers are defined differently, whose mean would mean nothing."""
    found: Dict[str, Path] = {}
    for src, rep in items:
        if has(rep, key):
            found.setdefault(definition(rep, key), src)
    if len(found) > 1:
        (d1, s1), (d2, s2) = list(found.items())[:2]
        raise DataError(f"run {label!r} averages unlike {key} numbers: {s1} ({d1}) and {s2} ({d2})",
                        "average only seeds evaluated the same way (--max-dets, --protocol, inference)")
    return next(iter(found), None)


def unlike_notes(labels: List[str], defs: Dict[str, List[Optional[str]]]) -> List[str]:
    """A note per row key where a run's definition differs from the first run's (no delta is shown there)."""
    notes = []
    for key, per_run in defs.items():
        first = per_run[0]
        for label, d in zip(labels[1:], per_run[1:]):
            if d is not None and first is not None and d != first:
                notes.append(f"{key} of {label!r} ({d}) is not the same number as of {labels[0]!r} ({first}): "
                             "shown in its own row, no delta")
    return notes
