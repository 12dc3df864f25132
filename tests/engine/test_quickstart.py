"""loce quickstart end to end on a tiny synthetic set; a second run skips every finished step."""

from pathlib import Path

import pytest

from loce_cli.engine.quickstart import run_quickstart
from loce_cli.engine.synth import SynthOptions

SMALL = ["model.roi_head.bbox_head.num_classes=6", "model.roi_head.mask_head.num_classes=6", "runner.max_epochs=1",
         "data.workers_per_gpu=0", "lr_config.warmup_iters=5", "lr_config.step=[1]"]


@pytest.mark.slow
def test_quickstart_runs_all_steps_then_skips_them(tmp_path, monkeypatch):
    synth = SynthOptions(num_classes=6, train_images=24, val_images=10, image_size=64, seed=1)
    lines = []
    first = run_quickstart(tmp_path, echo=lines.append, cfg_options={"base": SMALL, "finetune": SMALL},
                           synth_options=synth)
    assert [s.name for s in first.steps] == ["data", "base", "finetune", "eval", "predictions"]
    assert all(s.status == "done" for s in first.steps)
    assert set(first.metrics) == {"base", "loce"} and "APr" in first.metrics["loce"]["bbox"]
    assert (tmp_path / "eval" / "loce" / "metrics.json").is_file()
    assert any(line.startswith("[4/5] eval") for line in lines)
    _check_pictures(tmp_path)
    second = run_quickstart(tmp_path, cfg_options={"base": SMALL, "finetune": SMALL}, synth_options=synth)
    assert [s.status for s in second.steps] == ["skipped"] * 5
    assert second.metrics == first.metrics
    # the command ends with loce report's table: base vs LOCE with deltas
    from typer.testing import CliRunner

    from loce_cli.cli import app
    from loce_cli.engine import quickstart as qs

    monkeypatch.setattr(qs, "run_quickstart", lambda work_dir, echo=None: run_quickstart(
        work_dir, echo, cfg_options={"base": SMALL, "finetune": SMALL}, synth_options=synth))
    r = CliRunner().invoke(app, ["quickstart", "--work-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "ΔAPr" in r.stdout and "loce report" in r.stdout
    loce_row = next(line for line in r.stdout.splitlines() if "│ loce" in line and "bbox" in line)
    assert f"{100 * first.metrics['loce']['bbox']['APr']:.1f}" in loce_row


def _check_pictures(work):
    """predictions/: loce predict of both models on val images with rare classes, and one side-by-side picture
    per image (ground truth | base | LOCE), each panel the image drawn 4x larger."""
    import json

    import numpy as np
    from PIL import Image

    from loce_cli.engine.quickstart_pictures import SCALE, SCORE_THR, rare_images

    data = work / "data"
    chosen = rare_images(data / "annotations" / "lvis_v1_val.json", 4)
    ann = json.loads((data / "annotations" / "lvis_v1_val.json").read_text())
    rare = {c["id"] for c in ann["categories"] if c["frequency"] == "r"}
    assert chosen and all(any(a["image_id"] == im["id"] and a["category_id"] in rare for a in ann["annotations"])
                          for im in chosen)
    for im in chosen:
        stem = Path(im["file_name"]).stem
        for run in ("base", "loce"):
            with Image.open(work / "predictions" / run / f"{stem}.png") as p:
                assert p.size == (im["width"], im["height"])
        with Image.open(work / "predictions" / f"{stem}.png") as p:
            w, h = p.size
            pic = np.asarray(p.convert("RGB"))
        assert w > 3 * SCALE * im["width"] and h > SCALE * im["height"]
        src = np.asarray(Image.open(data / im["file_name"]).convert("RGB"))
        panel = pic[h - 8 - SCALE * im["height"]:h - 8, 8:8 + SCALE * im["width"]]  # the ground-truth panel
        assert (panel != np.repeat(np.repeat(src, SCALE, 0), SCALE, 1)).any()  # the rare objects are drawn
    for run in ("base", "loce"):
        dets = json.loads((work / "predictions" / run / "predictions.json").read_text())
        assert all(d["score"] >= SCORE_THR for d in dets)
