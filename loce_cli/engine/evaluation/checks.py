"""The usage checks of ``loce eval``'s options (exit 2), made before any file is read, in one order for every
way in: metrics, split, evaluator and workers, then the caps."""

from __future__ import annotations

from typing import List, Optional, Sequence

from loce_cli.core.frequency import parse_split
from loce_cli.engine.evaluation.backends import check_evaluator
from loce_cli.engine.evaluation.metrics import METRICS
from loce_cli.errors import LoceUsageError


def check_metrics(metrics: Sequence[str]) -> List[str]:
    """The metrics asked for, each once in the order given (default: bbox and segm)."""
    out = []
    for m in metrics or METRICS:
        if m not in METRICS:
            raise LoceUsageError(f"--metric {m!r} is not supported", "use bbox and/or segm")
        if m not in out:
            out.append(m)
    return out


def check_split(split: str) -> None:
    try:
        parse_split(split)
    except ValueError as e:
        raise LoceUsageError(str(e), "--split all|rare|common|frequent") from None


def check_max_dets(max_dets: int) -> None:
    if max_dets < 1:
        raise LoceUsageError("--max-dets must be >= 1", "LVIS uses 300")


def check_usage(metrics: Sequence[str], split: str, evaluator: str, workers: Optional[int]) -> List[str]:
    """``check_metrics``, ``check_split`` and the evaluator's name and workers; returns the metrics."""
    metrics = check_metrics(metrics)
    check_split(split)
    check_evaluator(evaluator, workers)
    return metrics
