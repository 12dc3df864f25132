"""``loce eval``: evaluate a checkpoint (or an existing LVIS results file) with the streaming evaluator (default),
the official lvis API or faster-coco-eval; inference in one process or N (GPUs or CPU processes, each writing its
own shard of results, merged by rank 0)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.choices import Amp, Evaluator, Launcher, METRICS, PROTOCOLS, Split, shown
from loce_cli.cli._common import engine_errors, err, fail, out, print_json
from loce_cli.cli.train import CFG_OPTIONS, GPUS, LAUNCHER, MASTER_ADDR, MASTER_PORT, NNODES, NODE_RANK, NPROC


@contextlib.contextmanager
def _inference_progress(enabled: bool):
    """A rich progress bar over images on stderr (a terminal only); yields the callback or None."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("inference"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("inference", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _say(msg: str) -> None:
    err.print(f"[dim]{msg}...[/]")


@engine_errors
def evaluate(config: Optional[Path] = typer.Argument(None, help="mmdet config file or shipped name (with "
                                                                       "CHECKPOINT)."),
             checkpoint: Optional[Path] = typer.Argument(None, help="Checkpoint to evaluate."),
             results: Optional[Path] = typer.Option(None, "--results", help="Evaluate this LVIS results JSON instead "
                                                                            "of a model (needs --ann)."),
             ann: Optional[Path] = typer.Option(None, "--ann", help="LVIS annotation JSON for --results."),
             split: Split = typer.Option("all", "--split", help="Frequency group of the per-class table."),
             metric: Optional[List[str]] = typer.Option(None, "--metric", metavar=shown(METRICS), help="Repeatable; default both."),
             evaluator: Evaluator = typer.Option("streaming", "--evaluator",
                                           help="streaming (default: bounded memory, the official API's numbers), "
                                                "lvis (the official API, the reference) or fast (faster-coco-eval)."),
             workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                                   help="Processes matching chunks of images (streaming evaluator; "
                                                        "default: the cores)."),
             max_dets: int = typer.Option(300, "--max-dets", min=1, help="Detections per image (LVIS: 300)."),
             protocol: Optional[List[str]] = typer.Option(None, "--protocol", metavar=shown(PROTOCOLS),
                                                          help="standard (LVIS AP, default), fixed (AP-fixed) and/or "
                                                               "pooled (AP-pool) (repeatable; docs/EVALUATION.md)."),
             dets_per_class: int = typer.Option(10_000, "--dets-per-class",
                                                help="fixed / pooled: detections kept per class over the dataset."),
             out_dir: Optional[Path] = typer.Option(None, "--out", help="Where results.json, metrics.json and "
                                                                       "metrics.txt go (default: next to the "
                                                                       "checkpoint, eval/; with --results: the "
                                                                       "results file's folder)."),
             cfg_options: Optional[List[str]] = CFG_OPTIONS,
             gpus: int = GPUS, nproc: int = NPROC, nnodes: int = NNODES, node_rank: int = NODE_RANK,
             master_addr: str = MASTER_ADDR, master_port: int = MASTER_PORT, launcher: Launcher = LAUNCHER,
             device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda with --gpus, "
                                                                          "else cpu)."),
             force: bool = typer.Option(False, "--force", help="Overwrite an existing metrics.json in --out."),
             amp: Optional[Amp] = typer.Option(None, "--amp", help="Inference under autocast: bf16 (CPUs and GPUs) "
                                                                   "or fp16 (CUDA); docs/MIXED_PRECISION.md."),
             json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
             verbose: bool = typer.Option(False, "--verbose", help="Also print mmcv's and mmdet's log records "
                                                                   "(model building, checkpoint loading).")) -> None:
    """Per-frequency AP (AP, APr, APc, APf), the official lvis API's numbers; per-class AP by group."""
    from loce_cli.engine.evaluation import evaluate as ev

    metrics = list(metric or ev.METRICS)
    if results is not None:
        if ann is None or config is not None:
            raise fail("--results needs --ann and no CONFIG/CHECKPOINT (hint: loce eval --results R.json --ann A.json)",
                       2)
        from loce_cli.engine.evaluation.outputs import evaluate_results_file

        report, written = evaluate_results_file(results, ann, out_dir, force, metrics, split, max_dets, evaluator,
                                                _say, workers, list(protocol or ["standard"]), dets_per_class)
    else:
        if config is None or checkpoint is None:
            raise fail("give CONFIG and CHECKPOINT, or --results and --ann (hint: loce eval CONFIG CKPT)", 2)
        from loce_cli.core.checkpoint_io import checkpoint_file
        from loce_cli.engine.runtime.launch import LaunchOptions

        checkpoint = checkpoint_file(checkpoint)  # a work dir: its latest.pth (the default --out: beside it)
        launch = LaunchOptions(gpus=gpus, nproc=nproc, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr,
                               master_port=master_port, launcher=launcher, device=device)
        req = ev.EvalRequest(str(config), str(checkpoint), str(out_dir or checkpoint.parent / "eval"), metrics,
                             split, max_dets, list(cfg_options or []), force, evaluator, workers, launch,
                             list(protocol or ["standard"]), dets_per_class, verbose=verbose,
                             amp=amp)
        with _inference_progress(not launch.starts_processes()) as progress:
            report = ev.evaluate_model(req, progress, _say)
        if report is None:  # another node's or process's share; rank 0 writes and reports the results
            from loce_cli.engine.runtime.launch import env_rank

            who = f"node {node_rank}" if launch.starts_processes() else f"rank {env_rank()}"
            err.print(f"{who}: inference done; rank 0 writes {req.out}/metrics.json")
            return
    for w in report.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    if json_out:
        print_json(report.to_dict())
        return
    from rich.table import Table

    title = {"lvis": "official lvis API", "fast": "faster-coco-eval, LVIS mode"}.get(report.evaluator,
                                                                                    "streaming evaluator")
    table = Table(title=f"LVIS evaluation ({title}, max {report.max_dets} dets/image)", title_justify="left")
    table.add_column("metric")
    for k in ev.SUMMARY_KEYS:
        table.add_column(k, justify="right")
    for m, r in report.metrics.items():
        table.add_row(m, *(ev.ap_text(r.summary[k]) for k in ev.SUMMARY_KEYS))
    titles = {"fixed": "AP-fixed", "pooled": "AP-pool"}
    for name, p in report.protocols.items():  # no per-image cap, top --dets-per-class per class
        for m, r in p.metrics.items():
            table.add_row(f"{m} {titles.get(name, name)}",
                          *(ev.ap_text(r.summary[k]) for k in ev.SUMMARY_KEYS))
    out.print(table)
    if split != "all":
        for m in report.metrics:
            rows = report.split_view(m)
            t = Table(title=f"{m}: {split} classes by AP", title_justify="left")
            for col in ("class", "AP", "train images"):
                t.add_column(col, justify="left" if col == "class" else "right")
            for c in rows:
                t.add_row(c.name, "-" if c.ap is None else f"{100 * c.ap:.1f}",
                          "-" if c.image_count is None else str(c.image_count))
            out.print(t)
    out.print(f"written: {written if results is not None else (out_dir or checkpoint.parent / 'eval')}"
              f"{'' if results is not None else '/metrics.json'}")
