"""The evaluators, one module each, and the registry that maps an ``--evaluator`` name to one (the one place
the name is dispatched). A new evaluator: its module here and one line in ``BACKENDS``."""

from __future__ import annotations

from typing import Dict, Optional, Type

from loce_cli.engine.evaluation.backends.faster_coco import FasterCocoEvaluator
from loce_cli.engine.evaluation.backends.hotcoco import HotcocoEvaluator
from loce_cli.engine.evaluation.backends.lvis_api import LvisApiEvaluator
from loce_cli.engine.evaluation.backends.streaming import StreamingEvaluator
from loce_cli.engine.evaluation.evaluator import Evaluator, Say
from loce_cli.errors import LoceUsageError

BACKENDS: Dict[str, Type[Evaluator]] = {
    "streaming": StreamingEvaluator,  # the default: bounded memory, the official API's numbers
    "lvis": LvisApiEvaluator,  # the official API (the reference)
    "fast": FasterCocoEvaluator,  # faster-coco-eval's LVIS mode
    "hotcoco": HotcocoEvaluator,  # hotcoco's LVIS mode (Rust)
}
EVALUATORS = tuple(BACKENDS)
DEFAULT_EVALUATOR = "streaming"


def check_evaluator(evaluator: str, workers: Optional[int]) -> None:
    """A usage error for an unknown ``--evaluator`` or a ``--workers`` below 1."""
    if evaluator not in BACKENDS:
        raise LoceUsageError(f"--evaluator {evaluator!r} is not supported",
                             "use streaming (the default), lvis (the official API), fast or hotcoco")
    if workers is not None and workers < 1:
        raise LoceUsageError("--workers must be >= 1", "leave it out to use every core")


def make_evaluator(evaluator: str, workers: Optional[int] = None, say: Optional[Say] = None) -> Evaluator:
    """The evaluator named ``evaluator`` (checked), using ``workers`` processes where it can."""
    check_evaluator(evaluator, workers)
    return BACKENDS[evaluator](workers, say)
