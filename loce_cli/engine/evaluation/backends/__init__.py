"""The evaluators, one module each, and the registry that maps an ``--evaluator`` name to one (the one place
the name is dispatched). A new evaluator: its module here and one line in ``BACKENDS``."""

from __future__ import annotations

from typing import Dict, Optional, Type

from loce_cli.engine.evaluation.backends.lvis_api import LvisApiEvaluator
from loce_cli.engine.evaluation.backends.streaming import StreamingEvaluator
from loce_cli.engine.evaluation.evaluator import Evaluator, Say
from loce_cli.errors import LoceUsageError

BACKENDS: Dict[str, Type[Evaluator]] = {
    "streaming": StreamingEvaluator,  # the default: bounded memory, the official API's numbers
    "lvis": LvisApiEvaluator,  # the official API (the reference)
}
EVALUATORS = tuple(BACKENDS)
DEFAULT_EVALUATOR = "streaming"
# evaluators loce had and removed (issue 30: measured at the full LVIS v1 val size, docs/EVALUATION.md): the name
# is refused with what to use instead
REMOVED_EVALUATORS = {"fast": "faster-coco-eval needs over 8 GB at the full LVIS v1 val size",
                      "hotcoco": "slower than streaming behind loce's results checks, and over 8 GB for segm"}
USE_INSTEAD = "use streaming (the default) or lvis (the official API)"


def check_evaluator(evaluator: str, workers: Optional[int]) -> None:
    """A usage error for an unknown ``--evaluator`` or a ``--workers`` below 1."""
    if evaluator in REMOVED_EVALUATORS:
        raise LoceUsageError(f"--evaluator {evaluator} was removed ({REMOVED_EVALUATORS[evaluator]})", USE_INSTEAD)
    if evaluator not in BACKENDS:
        raise LoceUsageError(f"--evaluator {evaluator!r} is not supported", USE_INSTEAD)
    if workers is not None and workers < 1:
        raise LoceUsageError("--workers must be >= 1", "leave it out to use every core")


def make_evaluator(evaluator: str, workers: Optional[int] = None, say: Optional[Say] = None) -> Evaluator:
    """The evaluator named ``evaluator`` (checked), using ``workers`` processes where it can."""
    check_evaluator(evaluator, workers)
    return BACKENDS[evaluator](workers, say)
