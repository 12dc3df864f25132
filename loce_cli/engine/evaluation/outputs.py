"""``loce eval --results R.json``: where its outputs go and when they may be written.

Without ``--out`` the metrics go next to the results file (``R.json``'s folder); an existing ``metrics.json``
there is refused without ``--force``; the folder is locked while the evaluation runs (one live evaluation per
folder); ``metrics.json`` and ``metrics.txt`` are written as a set (see ``evaluate.write_report``), so a failed
evaluation leaves neither and its rerun is not refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple

from loce_cli.errors import OutputExistsError


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
                          dets_per_class: int = 10_000) -> Tuple[object, Path]:
    """Evaluate ``results_file`` and write metrics.json + metrics.txt to ``out`` (default: next to the results);
    returns ``(report, metrics.json path)``. Refuses an existing metrics.json before evaluating anything."""
    from loce_cli.engine.evaluation.evaluate import _check_evaluator, _check_metrics, _check_split, evaluate_results, write_report
    from loce_cli.engine.runtime.locks import locked

    _check_metrics(metrics)  # usage errors first (exit 2), before any file question
    _check_split(split)
    _check_evaluator(evaluator, workers)
    from loce_cli.engine.evaluation.protocols import make_protocols

    make_protocols(protocols, max_dets, dets_per_class)  # --protocol / --dets-per-class usage errors too
    flag = "--out" if out is not None else "the results file's folder"
    out = results_out_dir(results_file, out)
    check_out(out, force, flag)
    with locked(out, flag):
        check_out(out, force, flag)  # again under the lock: another evaluation may just have finished there
        report = evaluate_results(Path(results_file), Path(ann_file), metrics, split, max_dets, evaluator, say,
                                  workers, protocols, dets_per_class)
        return report, write_report(report, out)
