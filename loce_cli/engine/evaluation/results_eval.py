"""Evaluating an LVIS results file: ``evaluate_results`` (what every ``loce eval`` runs once the results exist: the
chosen evaluator under the requested protocols, one ``EvalReport``) and ``loce eval --results R.json``
(``evaluate_results_file``: the same, with metrics.json + metrics.txt written).

Where ``--results``' outputs go: without ``--out`` next to the results file (``R.json``'s folder); an existing
``metrics.json`` there is refused without ``--force``; the folder is locked while the evaluation runs (one live
evaluation per folder); ``metrics.json`` and ``metrics.txt`` are written as a set (``metrics.write_report``), so
a failed evaluation leaves neither and its rerun is not refused.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

from loce_cli import compat
from loce_cli.engine.data.identity import annotation_sha256
from loce_cli.engine.evaluation.annotation_rules import check_rules
from loce_cli.engine.evaluation.backends import DEFAULT_EVALUATOR, make_evaluator
from loce_cli.engine.evaluation.checks import check_max_dets, check_usage
from loce_cli.engine.evaluation.metrics import METRICS, EvalReport, ProtocolResult, write_report
from loce_cli.engine.evaluation.protocols import DEFAULT_DETS_PER_CLASS, make_protocols
from loce_cli.engine.json_files import gc_paused
from loce_cli.engine.runtime.locks import locked
from loce_cli.errors import OutputExistsError


def evaluate_results(results_file: Path, ann_file: Path, metrics: Sequence[str] = METRICS, split: str = "all",
                     max_dets: int = 300, evaluator: str = DEFAULT_EVALUATOR,
                     say: Optional[Callable[[str], None]] = None, workers: Optional[int] = None,
                     protocols: Sequence[str] = ("standard",),
                     dets_per_class: int = DEFAULT_DETS_PER_CLASS) -> EvalReport:
    """Evaluate an LVIS results JSON against an LVIS annotation file: ``evaluator="streaming"`` (the default)
    reads the results in blocks and matches chunks of images in ``workers`` processes (default: the cores), with
    the official API's numbers; ``"lvis"`` is the official API (the reference; it holds every detection in
    memory). ``say`` hears what each step is doing. ``protocols``: standard
    (``metrics``), fixed and / or pooled (``protocols``, top ``dets_per_class`` per class, no per-image cap)."""
    compat.apply()
    compat.quiet_known_noise()
    metrics = check_usage(metrics, split, evaluator, workers)
    check_max_dets(max_dets)
    chosen = make_protocols(protocols, max_dets, dets_per_class)
    backend = make_evaluator(evaluator, workers, say)
    results_file, ann_file = Path(results_file), Path(ann_file)
    rule_warnings = check_rules(ann_file, evaluator)  # a plain COCO file, crowd regions under the lvis API
    with gc_paused():  # millions of acyclic objects (results, the APIs' indexes): no cyclic-GC rescans
        start = time.perf_counter()
        outcome = backend.evaluate(results_file, ann_file, metrics, max_dets, chosen)
        report = EvalReport(str(ann_file), str(results_file), backend.name, max_dets, split,
                            outcome.results.get("standard", {}), time.perf_counter() - start,
                            protocols={p.name: ProtocolResult(p.name, p.per_class, outcome.results[p.name])
                                       for p in chosen if p.name != "standard"},
                            warnings=rule_warnings + outcome.warnings)
    report.annotation_sha256 = annotation_sha256(ann_file)
    return report


def results_out_dir(results_file: Path, out: Optional[Path]) -> Path:
    """``--out`` when given, else the results file's folder."""
    return Path(out) if out is not None else Path(results_file).resolve().parent


def check_out(out: Path, force: bool, flag: str = "--out") -> None:
    if (Path(out) / "metrics.json").exists() and not force:
        raise OutputExistsError(f"{flag} {out} already holds metrics.json",
                                "pass --force to overwrite it, or --out DIR for another folder")


def evaluate_results_file(results_file: Path, ann_file: Path, out: Optional[Path], force: bool,
                          metrics: Sequence[str], split: str, max_dets: int, evaluator: str,
                          say: Optional[Callable[[str], None]] = None,
                          workers: Optional[int] = None, protocols: Sequence[str] = ("standard",),
                          dets_per_class: int = DEFAULT_DETS_PER_CLASS) -> Tuple[EvalReport, Path]:
    """Evaluate ``results_file`` and write metrics.json + metrics.txt to ``out`` (default: next to the results);
    returns ``(report, metrics.json path)``. Refuses an existing metrics.json before evaluating anything."""
    check_usage(metrics, split, evaluator, workers)  # usage errors first (exit 2), before any file question
    make_protocols(protocols, max_dets, dets_per_class)  # --protocol / --dets-per-class usage errors too
    flag = "--out" if out is not None else "the results file's folder"
    out = results_out_dir(results_file, out)
    check_out(out, force, flag)
    with locked(out, flag):
        check_out(out, force, flag)  # again under the lock: another evaluation may just have finished there
        report = evaluate_results(Path(results_file), Path(ann_file), metrics, split, max_dets, evaluator, say,
                                  workers, protocols, dets_per_class)
        return report, write_report(report, out)
