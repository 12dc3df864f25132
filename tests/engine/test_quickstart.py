"""loce quickstart end to end on a tiny synthetic set; a second run skips every finished step."""

from pathlib import Path

import pytest

from loce_cli.engine.quickstart.steps import run_quickstart
from loce_cli.engine.data.synth import SynthOptions

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
    assert "APr" in first.metrics["loce"]["bbox AP-fixed"]  # AP-fixed next to AP
    assert (tmp_path / "eval" / "loce" / "metrics.json").is_file()
    assert any(line.startswith("[4/5] eval") for line in lines)
    _check_pictures(tmp_path)
    assert len(first.gain) == 2 and first.gain[0].startswith("rare objects taken by their own class")
    assert first.gain[0] in lines  # the closing lines: where LOCE's gain came from (loce analyze --compare)
    second = run_quickstart(tmp_path, cfg_options={"base": SMALL, "finetune": SMALL}, synth_options=synth)
    assert [s.status for s in second.steps] == ["skipped"] * 5
    assert second.metrics == first.metrics
    # the command ends with loce report's table: base vs LOCE with deltas
    from typer.testing import CliRunner

    from loce_cli.cli import app
    from loce_cli.engine.quickstart import steps as qs

    monkeypatch.setattr(qs, "run_quickstart", lambda work_dir, echo=None, verbose=False: run_quickstart(
        work_dir, echo, cfg_options={"base": SMALL, "finetune": SMALL}, synth_options=synth, verbose=verbose))
    r = CliRunner().invoke(app, ["quickstart", "--work-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "ΔAPr" in r.stdout and "loce report" in r.stdout
    loce_row = next(line for line in r.stdout.splitlines() if "│ loce" in line and "bbox" in line)
    assert f"{100 * first.metrics['loce']['bbox']['APr']:.1f}" in loce_row
    fixed_row = next(line for line in r.stdout.splitlines() if "│ loce" in line and "bbox AP-fixed" in line)
    assert f"{100 * first.metrics['loce']['bbox AP-fixed']['AP']:.1f}" in fixed_row


def _check_pictures(work):
    """predictions/: loce predict of both models on every val image with rare classes, and side-by-side pictures
    (ground truth | base | LOCE, each panel the image drawn SCALE times larger) for those where LOCE finds the
    most rare objects the base model misses, listed in pictures.json with the counts."""
    import json

    import numpy as np
    from PIL import Image

    from loce_cli.engine.quickstart.pictures import SCALE, SCORE_THR, rare_found, rare_images

    data = work / "data"
    ann = json.loads((data / "annotations" / "lvis_v1_val.json").read_text())
    rare = {c["id"] for c in ann["categories"] if c["frequency"] == "r"}
    chosen = rare_images(data / "annotations" / "lvis_v1_val.json")
    assert chosen and all(any(a["image_id"] == im["id"] and a["category_id"] in rare for a in ann["annotations"])
                          for im in chosen)
    dets = {run: json.loads((work / "predictions" / run / "predictions.json").read_text()) for run in ("base", "loce")}
    for run in ("base", "loce"):
        assert all(d["score"] >= SCORE_THR for d in dets[run])
        for im in chosen:
            with Image.open(work / "predictions" / run / f"{Path(im['file_name']).stem}.png") as p:
                assert p.size == (im["width"], im["height"])
    manifest = json.loads((work / "predictions" / "pictures.json").read_text())
    assert manifest["images_with_rare"] == len(chosen) and 1 <= len(manifest["pictures"]) <= 4
    found = {}
    for run in ("base", "loce"):  # the counts, recomputed from the predictions
        found[run] = {im["id"]: rare_found([d for d in dets[run] if Path(d["file_name"]).name ==
                                             Path(im["file_name"]).name], ann, im) for im in chosen}
        assert manifest["rare_found"][run] == sum(found[run].values())
    gain = sorted((found["loce"][i] - found["base"][i] for i in found["base"]), reverse=True)
    assert [p["rare_found"]["loce"] - p["rare_found"]["base"] for p in manifest["pictures"]] == \
        gain[:len(manifest["pictures"])]
    images = {im["id"]: im for im in chosen}
    for pic in manifest["pictures"]:
        im = images[pic["image_id"]]
        with Image.open(pic["file"]) as p:
            w, h = p.size
            arr = np.asarray(p.convert("RGB"))
        assert w == 3 * SCALE * im["width"] + 4 * 8 and h > SCALE * im["height"]
        src = np.asarray(Image.open(data / im["file_name"]).convert("RGB"))
        panel = arr[h - 8 - SCALE * im["height"]:h - 8, 8:8 + SCALE * im["width"]]  # the ground-truth panel
        assert (panel != np.repeat(np.repeat(src, SCALE, 0), SCALE, 1)).any()  # its objects are drawn
