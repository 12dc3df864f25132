"""``loce eval``: evaluate a checkpoint (or an existing LVIS results file) with the streaming evaluator (default),
or the official lvis API (the reference); inference in one process or N (GPUs or CPU processes, each writing its
own shard of results, merged by rank 0)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.failures import fail
from loce_cli.cli.options import (CFG_OPTIONS, DATA_DIR, DEVICE, EVALUATORS, GPUS, JSON_OUTPUT, LAUNCHER,
                                  MASTER_ADDR, MASTER_PORT, METRIC, NNODES, NODE_RANK, NPROC, PROTOCOLS, Amp, Launcher,
                                  Split, check_evaluator_name, data_cfg_options, shown)
from loce_cli.cli.render import err, inference_progress, out, print_json, say, table, warn

CONFIG = typer.Argument(None, help="mmdet config file or shipped name (with CHECKPOINT).")
CHECKPOINT = typer.Argument(None, help="Checkpoint to evaluate.")
RESULTS = typer.Option(None, "--results", help="Evaluate this LVIS results JSON instead of a model (needs --ann).")
ANN = typer.Option(None, "--ann", help="LVIS annotation JSON for --results.")
SPLIT = typer.Option("all", "--split", help="Frequency group of the per-class table.")
EVALUATOR = typer.Option("streaming", "--evaluator", metavar=shown(EVALUATORS), callback=check_evaluator_name,
                         help="streaming (default: bounded memory, the official API's numbers) or lvis (the official "
                              "API, the reference; holds every detection in memory).")
WORKERS = typer.Option(None, "--workers", min=1, help="Processes matching chunks of images (streaming evaluator; "
                                                      "default: the cores).")
MAX_DETS = typer.Option(300, "--max-dets", min=1, help="Detections per image (LVIS: 300).")
PROTOCOL = typer.Option(None, "--protocol", metavar=shown(PROTOCOLS), help="standard (LVIS AP, default), fixed "
                                                                           "(AP-fixed) and/or pooled (AP-pool) "
                                                                           "(repeatable; docs/EVALUATION.md).")
DETS_PER_CLASS = typer.Option(10_000, "--dets-per-class", help="fixed / pooled: detections kept per class over the "
                                                               "dataset.")
OUT = typer.Option(None, "--out", help="Where results.json, metrics.json and metrics.txt go (default: next to the "
                                       "checkpoint, eval/; with --results: the results file's folder).")
FORCE = typer.Option(False, "--force", help="Overwrite an existing metrics.json in --out.")
AMP = typer.Option(None, "--amp", help="Inference under autocast: bf16 (CPUs and GPUs) or fp16 (CUDA); "
                                       "docs/MIXED_PRECISION.md.")
VERBOSE = typer.Option(False, "--verbose", help="Also print mmcv's and mmdet's log records (model building, "
                                                "checkpoint loading).")


def evaluate(config: Optional[Path] = CONFIG, checkpoint: Optional[Path] = CHECKPOINT,
             results: Optional[Path] = RESULTS, ann: Optional[Path] = ANN, split: Split = SPLIT,
             metric: Optional[List[str]] = METRIC, evaluator: str = EVALUATOR, workers: Optional[int] = WORKERS,
             max_dets: int = MAX_DETS, protocol: Optional[List[str]] = PROTOCOL, dets_per_class: int = DETS_PER_CLASS,
             out_dir: Optional[Path] = OUT, cfg_options: Optional[List[str]] = CFG_OPTIONS, gpus: int = GPUS,
             nproc: int = NPROC, nnodes: int = NNODES, node_rank: int = NODE_RANK, master_addr: str = MASTER_ADDR,
             master_port: int = MASTER_PORT, launcher: Launcher = LAUNCHER, device: Optional[str] = DEVICE,
             force: bool = FORCE, amp: Optional[Amp] = AMP, data: Optional[Path] = DATA_DIR,
             json_out: bool = JSON_OUTPUT, verbose: bool = VERBOSE) -> None:
    """Per-frequency AP (AP, APr, APc, APf), the official lvis API's numbers; per-class AP by group."""
    from loce_cli.engine import evaluation as ev

    metrics, protocols = list(metric or ev.METRICS), list(protocol or ["standard"])
    if results is not None:
        if ann is None or config is not None or data is not None:
            raise fail("--results needs --ann and no CONFIG/CHECKPOINT/--data (hint: loce eval --results R.json --ann A.json)",
                       2)
        from loce_cli.engine.evaluation import evaluate_results_file

        report, written = evaluate_results_file(results, ann, out_dir, force, metrics, split, max_dets, evaluator,
                                                say, workers, protocols, dets_per_class)
    else:
        req = _model_request(config, checkpoint, out_dir, metrics, split, max_dets, cfg_options, force, evaluator,
                             workers, protocols, dets_per_class, verbose, amp, gpus=gpus, nproc=nproc, nnodes=nnodes,
                             node_rank=node_rank, master_addr=master_addr, master_port=master_port,
                             launcher=launcher, device=device, data=data)
        with inference_progress(not req.launch.starts_processes()) as progress:
            report = ev.evaluate_model(req, progress, say)
        if report is None:  # another node's or process's share; rank 0 writes and reports the results
            _print_share_done(req, node_rank)
            return
        written = f"{req.out}/metrics.json"
    warn(report.warnings)
    if json_out:
        print_json(report.to_dict())
        return
    _print_report(report, split)
    out.print(f"written: {written}")


def _model_request(config, checkpoint, out_dir, metrics, split, max_dets, cfg_options, force, evaluator, workers,
                   protocols, dets_per_class, verbose, amp, data=None, **launch):
    """The engine's request for CONFIG CHECKPOINT (a work dir: its latest.pth; --out by default: eval/ beside it)."""
    if config is None or checkpoint is None:
        raise fail("give CONFIG and CHECKPOINT, or --results and --ann (hint: loce eval CONFIG CKPT)", 2)
    from loce_cli.core.checkpoint_io import checkpoint_file
    from loce_cli.engine.evaluation import EvalRequest
    from loce_cli.engine.runtime.launch import LaunchOptions

    checkpoint = checkpoint_file(checkpoint)
    data_opts = data_cfg_options(config, data, checkpoint, "evaluate")
    return EvalRequest(str(config), str(checkpoint), str(out_dir or checkpoint.parent / "eval"), metrics, split,
                       max_dets, data_opts + list(cfg_options or []), force, evaluator, workers, LaunchOptions(**launch),
                       protocols, dets_per_class, verbose=verbose, amp=amp)


def _print_share_done(req, node_rank: int) -> None:
    from loce_cli.engine.runtime.launch import env_rank

    who = f"node {node_rank}" if req.launch.starts_processes() else f"rank {env_rank()}"
    err.print(f"{who}: inference done; rank 0 writes {req.out}/metrics.json")


def _print_report(report, split: str) -> None:
    """The summary table (one row per metric and protocol) and, for --split, the classes of that group by AP."""
    from loce_cli.engine.evaluation import SUMMARY_KEYS, ap_text

    title = "official lvis API" if report.evaluator == "lvis" else "streaming evaluator"
    limits = ([f"max {report.max_dets} dets/image"] if report.metrics else []) + [  # what each row's AP is
        f"{'AP-fixed' if n == 'fixed' else 'AP-pool'}: top {p.dets_per_class} dets/class, no per-image cap"
        for n, p in report.protocols.items()]
    summary = table(f"LVIS evaluation ({title}; {'; '.join(limits)})", ("metric", *SUMMARY_KEYS), left=("metric",))
    for m, r in report.metrics.items():
        summary.add_row(m, *(ap_text(r.summary[k]) for k in SUMMARY_KEYS))
    titles = {"fixed": "AP-fixed", "pooled": "AP-pool"}
    for name, p in report.protocols.items():  # no per-image cap, top --dets-per-class per class
        for m, r in p.metrics.items():
            summary.add_row(f"{m} {titles.get(name, name)}", *(ap_text(r.summary[k]) for k in SUMMARY_KEYS))
    out.print(summary)
    if split == "all":
        return
    for m in report.metrics:
        classes = table(f"{m}: {split} classes by AP", ("class", "AP", "train images"), left=("class",))
        for c in report.split_view(m):
            classes.add_row(c.name, "-" if c.ap is None else f"{100 * c.ap:.1f}",
                            "-" if c.image_count is None else str(c.image_count))
        out.print(classes)
