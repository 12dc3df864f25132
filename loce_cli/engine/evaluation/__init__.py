"""LVIS evaluation of a model or of a results file, at the size of the real val set: one ``Evaluator`` interface.

- ``model_eval``: ``loce eval CONFIG CHECKPOINT``: inference streamed to per-rank ``shards``, then the results file
  evaluated (``EvalRequest``, ``evaluate_model``, ``run_eval_worker``, ``write_results``).
- ``results_eval``: a results file evaluated by the chosen evaluator under the requested protocols
  (``evaluate_results``; ``loce eval --results``: ``evaluate_results_file``); ``checks``: the options' usage checks.
- ``evaluator``: the ``Evaluator`` interface; ``backends/``: one module per evaluator (``streaming``, ``lvis_api``
  on ``in_memory``) and the registry of ``--evaluator`` names.
- ``metrics``: the result dataclasses (``EvalReport``, ``MetricResult``, ``ClassAP``, ``ProtocolResult``) and
  metrics.json; ``protocols``: standard / fixed / pooled as objects that choose the detections evaluated.
- the streaming evaluator's parts: ``ground_truth`` (the annotation file as compact arrays), ``results_blocks`` (the
  results JSON cut into decoded blocks), ``results_reader`` (the results as validated columns, masks spilled to a
  temporary file), ``validation`` (the column checks every evaluator's input passes), ``matching`` (LVIS's greedy
  matching as a compiled kernel), ``accumulate`` (precision and the summary), ``pooled`` (AP-pool), ``streaming``
  (the evaluator that ties them together, chunks of images matched in worker processes).
"""

from loce_cli.engine.evaluation.backends import (BACKENDS, DEFAULT_EVALUATOR, EVALUATORS, REMOVED_EVALUATORS,
                                                make_evaluator)
from loce_cli.engine.evaluation.evaluator import Evaluator, Outcome
from loce_cli.engine.evaluation.metrics import (METRICS, SUMMARY_KEYS, ClassAP, EvalReport, MetricResult,
                                                ProtocolResult, ap_text, read_report, write_report)
from loce_cli.engine.evaluation.model_eval import EvalRequest, evaluate_model, run_eval_worker, write_results
from loce_cli.engine.evaluation.protocols import DEFAULT_DETS_PER_CLASS, PROTOCOLS, Protocol, make_protocols
from loce_cli.engine.evaluation.results_eval import evaluate_results, evaluate_results_file

__all__ = ["BACKENDS", "DEFAULT_DETS_PER_CLASS", "DEFAULT_EVALUATOR", "EVALUATORS", "METRICS", "PROTOCOLS",
           "REMOVED_EVALUATORS", "SUMMARY_KEYS", "ClassAP", "EvalReport", "EvalRequest", "Evaluator", "MetricResult",
           "Outcome", "Protocol", "ProtocolResult", "ap_text", "evaluate_model", "evaluate_results",
           "evaluate_results_file", "make_evaluator", "make_protocols", "read_report", "run_eval_worker",
           "write_report", "write_results"]
