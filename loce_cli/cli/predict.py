"""``loce predict``: drawn detections on the user's own images, and their LVIS-format JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from loce_cli.cli.failures import fail
from loce_cli.cli.options import DATA_DIR, JSON_OUTPUT, Amp, data_cfg_options
from loce_cli.cli.render import inference_progress, out, print_json, table

CONFIG = typer.Argument(..., help="mmdet config (file or shipped name) the checkpoint was trained with.")
CHECKPOINT = typer.Argument(..., help="A loce checkpoint (loce train base / loce finetune).")
INPUTS = typer.Argument(..., help="Image files, folders or quoted globs.")
OUT = typer.Option(..., "--out", help="Folder for the pictures and predictions.json.")
SCORE_THR = typer.Option(0.3, "--score-thr", min=0.0, max=1.0, help="Keep detections scoring at least this.")
MAX_DETS = typer.Option(100, "--max-dets", min=1, help="Detections per image at most.")
DEVICE = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available, else cpu).")
SPLIT = typer.Option("all", "--split", help="Draw only this group: rare, common, frequent (predictions.json keeps "
                                            "all).")
CFG_OPTIONS = typer.Option(None, "--cfg-options", help="KEY=VALUE (repeatable).")
FORCE = typer.Option(False, "--force", help="Write into an existing, non-empty --out.")
AMP = typer.Option(None, "--amp", help="Inference under autocast: bf16 (CPUs and GPUs) or fp16 (CUDA).")


def predict(config: Path = CONFIG, checkpoint: Path = CHECKPOINT, inputs: List[str] = INPUTS, out_dir: Path = OUT,
            score_thr: float = SCORE_THR, max_dets: int = MAX_DETS, device: Optional[str] = DEVICE,
            split: str = SPLIT, cfg_options: Optional[List[str]] = CFG_OPTIONS, force: bool = FORCE,
            amp: Optional[Amp] = AMP, data: Optional[Path] = DATA_DIR, json_out: bool = JSON_OUTPUT) -> None:
    """Detect objects in your own images: one picture per image in --out (masks, boxes, 'name score' labels,
    coloured by frequency group) and predictions.json (LVIS results format)."""
    from loce_cli.engine.predict.images import PredictRequest, predict as run

    data_opts = data_cfg_options(config, data, checkpoint, "predict with")
    req = PredictRequest(str(config), str(checkpoint), list(inputs), str(out_dir), score_thr, max_dets, device,
                         split, data_opts + list(cfg_options or []), force, amp=amp)
    with inference_progress(not json_out) as progress:
        report = run(req, progress, lambda msg: print(f"warning: {msg}", file=sys.stderr, flush=True))
    if json_out:
        print_json(report.to_dict())
    else:
        _print_images(report)
    if report.failed:
        done = len(report.images)
        raise fail(f"{len(report.failed)} of {len(report.failed) + done} images could not be read (warnings above); "
                   f"{'the other ' + str(done) + ' are in ' + report.out if done else 'nothing was written'} "
                   "(hint: convert them to JPEG or PNG)")


def _print_images(report) -> None:
    images = table(f"detections with score >= {report.score_thr:g} ({report.device}); pictures in {report.out}",
                   ("image", "size", "detections", "rare", "common", "frequent", "picture"),
                   left=("image", "picture"))
    for im in report.images:
        images.add_row(Path(im.input).name, f"{im.width}x{im.height}", str(im.detections),
                       str(im.per_group["rare"]), str(im.per_group["common"]), str(im.per_group["frequent"]),
                       Path(im.output).name)
    out.print(images)
    if report.predictions_file:
        out.print(f"written: {report.predictions_file}")
