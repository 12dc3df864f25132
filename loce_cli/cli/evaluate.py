"""``loce eval``: evaluate a checkpoint (or an existing LVIS results file) with the official lvis API."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli._common import engine_errors, fail, out, print_json



@engine_errors
def evaluate(config: Optional[Path] = typer.Argument(None, help="mmdet config (with CHECKPOINT)."),
             checkpoint: Optional[Path] = typer.Argument(None, help="Checkpoint to evaluate."),
             results: Optional[Path] = typer.Option(None, "--results", help="Evaluate this LVIS results JSON instead "
                                                                            "of a model (needs --ann)."),
             ann: Optional[Path] = typer.Option(None, "--ann", help="LVIS annotation JSON for --results."),
             split: str = typer.Option("all", "--split", help="all, rare, common or frequent."),
             metric: Optional[List[str]] = typer.Option(None, "--metric", help="bbox and/or segm (repeatable; "
                                                                               "default both)."),
             max_dets: int = typer.Option(300, "--max-dets", min=1, help="Detections per image (LVIS: 300)."),
             out_dir: Optional[Path] = typer.Option(None, "--out", help="Where results.json, metrics.json and "
                                                                       "metrics.txt go (default: next to the "
                                                                       "checkpoint, eval/)."),
             cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", help="KEY=VALUE (repeatable)."),
             device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
             force: bool = typer.Option(False, "--force", help="Overwrite an existing --out."),
             json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Per-frequency AP (AP, APr, APc, APf) with the official lvis API; per-class AP by group."""
    from loce_cli.engine import evaluate as ev

    metrics = list(metric or ev.METRICS)
    if results is not None:
        if ann is None or config is not None:
            raise fail("--results needs --ann and no CONFIG/CHECKPOINT (hint: loce eval --results R.json --ann A.json)",
                       2)
        report = ev.evaluate_results(results, ann, metrics, split, max_dets)
        if out_dir is not None:
            ev.write_report(report, out_dir)
    else:
        if config is None or checkpoint is None:
            raise fail("give CONFIG and CHECKPOINT, or --results and --ann (hint: loce eval CONFIG CKPT)", 2)
        target = out_dir or checkpoint.parent / "eval"
        report = ev.evaluate_model(config, checkpoint, target, metrics, split, max_dets, cfg_options or [], device,
                                   force)
    if json_out:
        print_json(report.to_dict())
        return
    from rich.table import Table

    table = Table(title=f"LVIS evaluation ({report.evaluator} API, max {report.max_dets} dets/image)",
                  title_justify="left")
    table.add_column("metric")
    for k in ev.SUMMARY_KEYS:
        table.add_column(k, justify="right")
    for m, r in report.metrics.items():
        table.add_row(m, *(f"{100 * r.summary[k]:.1f}" if r.summary[k] >= 0 else "-" for k in ev.SUMMARY_KEYS))
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
    if out_dir is not None or results is None:
        out.print(f"written: {(out_dir or checkpoint.parent / 'eval')}/metrics.json")
