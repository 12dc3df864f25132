"""``loce analyze RUN --compare OTHER``: two analyses of runs evaluated on the same annotation file (the check
``loce report`` uses), every figure side by side with its delta (RUN minus OTHER)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loce_cli.engine.analysis.run import Analysis
from loce_cli.engine.report.same_data import check_same_data
from loce_cli.errors import LoceUsageError


@dataclass
class Comparison:
    run: Analysis
    other: Analysis
    delta: dict

    def to_dict(self) -> dict:
        return {"run": self.run.to_dict(), "other": self.other.to_dict(), "delta": self.delta}


def _delta(a: Any, b: Any) -> Any:
    """``a - b`` over matching nested dicts of numbers (None where either is missing)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _delta(a[k], b.get(k)) for k in a if not isinstance(a[k], list)}
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a - b
    return None


def compare(run: Analysis, other: Analysis) -> Comparison:
    """``run`` against ``other`` (``DataError`` when they were evaluated on different annotation files)."""
    check_same_data([(Path(run.results_file), run), (Path(other.results_file), other)], False)
    if run.metric != other.metric:
        raise LoceUsageError("both runs must be analysed with one --metric", "pass one --metric for both")
    delta = {"errors": _delta(run.errors, other.errors), "confusion": _delta(run.confusion, other.confusion),
             "calibration": _delta(run.calibration, other.calibration)}
    return Comparison(run, other, delta)
