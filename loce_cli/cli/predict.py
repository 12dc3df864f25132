"""``loce predict``: drawn detections on the user's own images, and their LVIS-format JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.choices import Amp

from loce_cli.cli._common import engine_errors, fail, out, print_json


@engine_errors
def predict(config: Path = typer.Argument(..., help="mmdet config (file or shipped name) the checkpoint was "
                                                       "trained with."),
            checkpoint: Path = typer.Argument(..., help="A loce checkpoint (loce train base / loce finetune)."),
            inputs: List[str] = typer.Argument(..., help="Image files, folders or quoted globs."),
            out_dir: Path = typer.Option(..., "--out", help="Folder for the pictures and predictions.json."),
            score_thr: float = typer.Option(0.3, "--score-thr", min=0.0, max=1.0,
                                            help="Keep detections scoring at least this."),
            max_dets: int = typer.Option(100, "--max-dets", min=1, help="Detections per image at most."),
            device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda when "
                                                                        "available, else cpu)."),
            split: str = typer.Option("all", "--split", help="Draw only this group: rare, common, frequent "
                                                             "(predictions.json keeps all)."),
            cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", help="KEY=VALUE (repeatable)."),
            force: bool = typer.Option(False, "--force", help="Write into an existing, non-empty --out."),
            amp: Optional[Amp] = typer.Option(None, "--amp", help="Inference under autocast: bf16 (CPUs and GPUs) "
                                                                  "or fp16 (CUDA)."),
            json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Detect objects in your own images: one picture per image in --out (masks, boxes, 'name score' labels,
    coloured by frequency group) and predictions.json (LVIS results format)."""
    from loce_cli.cli.evaluate import _inference_progress
    from loce_cli.engine.predict.images import PredictRequest, predict as run

    req = PredictRequest(str(config), str(checkpoint), list(inputs), str(out_dir), score_thr, max_dets, device,
                         split, list(cfg_options or []), force, amp=amp)
    with _inference_progress(not json_out) as progress:
        report = run(req, progress, lambda msg: print(f"warning: {msg}", file=sys.stderr, flush=True))
    if json_out:
        print_json(report.to_dict())
    else:
        from rich.table import Table

        table = Table(title=f"detections with score >= {report.score_thr:g} ({report.device}); pictures in "
                            f"{report.out}", title_justify="left")
        for col in ("image", "size", "detections", "rare", "common", "frequent", "picture"):
            table.add_column(col, justify="left" if col in ("image", "picture") else "right")
        for im in report.images:
            table.add_row(Path(im.input).name, f"{im.width}x{im.height}", str(im.detections),
                          str(im.per_group["rare"]), str(im.per_group["common"]), str(im.per_group["frequent"]),
                          Path(im.output).name)
        out.print(table)
        if report.predictions_file:
            out.print(f"written: {report.predictions_file}")
    if report.failed:
        done = len(report.images)
        raise fail(f"{len(report.failed)} of {len(report.failed) + done} images could not be read (warnings above); "
                   f"{'the other ' + str(done) + ' are in ' + report.out if done else 'nothing was written'} "
                   "(hint: convert them to JPEG or PNG)")
