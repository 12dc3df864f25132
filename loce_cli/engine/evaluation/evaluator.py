"""The one interface every evaluator (``--evaluator NAME``) implements, in the style of detectron2's
``DatasetEvaluator``: an object that evaluates an LVIS results file against an annotation file under the requested
protocols and returns its metric results. The backends (one module each) are in ``backends/``; the registry that
maps ``--evaluator`` names to them is ``backends/__init__.py``.

Adding an evaluator: a module in ``backends/`` with a subclass of ``Evaluator`` (or of
``backends.in_memory.InMemoryEvaluator`` for a library that takes the detections as a list and computes LVIS AP
itself; it then only says how to run that library), and one line in the registry. A library that may be missing
is imported at the top of its backend module in a ``try`` and refused with ``EnvironmentProblem`` when chosen.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Dict, List, Optional, Sequence

from loce_cli.engine.evaluation.metrics import MetricResult
from loce_cli.engine.evaluation.protocols import Protocol

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass
class Outcome:
    """What an evaluator returns: ``{protocol name: {metric: MetricResult}}`` (pooled rows carry no per-class AP)
    and warnings about the input (e.g. results that look capped per image under AP-fixed)."""

    results: Dict[str, Dict[str, MetricResult]]
    warnings: List[str] = field(default_factory=list)


class Evaluator(ABC):
    """One way to compute LVIS AP. ``workers``: processes it may use (None: its default); ``say`` hears what each
    step is doing."""

    name: ClassVar[str]  # the --evaluator name

    def __init__(self, workers: Optional[int] = None, say: Optional[Say] = None):
        self.workers = workers
        self.say = say or _quiet

    @abstractmethod
    def evaluate(self, results_file: Path, ann_file: Path, metrics: Sequence[str], max_dets: int,
                 protocols: Sequence[Protocol]) -> Outcome:
        """Validate ``results_file`` against ``ann_file`` (``DataError`` before anything is evaluated), then
        evaluate ``metrics`` (bbox / segm) under each of ``protocols`` (standard: at most ``max_dets`` per
        image)."""
