"""A user's plain COCO box-only dataset, end to end through the CLI: ``loce data import coco``, ``loce train base
synthetic/faster_rcnn_r18_fpn_synth --data DIR``, ``loce eval`` of the checkpoint on the imported val set (box AP
equal to pycocotools' COCOeval at maxDets 300 on the same detections and the user's own COCO val file) and
``loce predict``.

The COCO files are ``loce data synth --no-masks`` output rewritten the way other tools write COCO: categories
with id, name and supercategory (no frequency), images with file_name (relative to the split's image folder),
width and height only, annotations with iscrowd and area, no neg_category_ids; two val objects marked crowd."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from typer.testing import CliRunner

from loce_cli.cli import app

runner = CliRunner()
CONFIG = "synthetic/faster_rcnn_r18_fpn_synth"
TINY = ["--cfg-options", "runner.max_epochs=2", "--cfg-options", "data.samples_per_gpu=4", "--cfg-options",
        "data.workers_per_gpu=0", "--cfg-options", "lr_config.warmup_iters=5", "--cfg-options",
        "log_config.interval=5"]


def _invoke(args: list) -> str:
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, f"loce {' '.join(map(str, args))}\n{r.output}"
    return r.output


def _plain_coco(synth: Path, split: str, dest: Path, crowd: int) -> Path:
    """``synth``'s LVIS-format ``split`` file as a plain COCO export, images copied to ``dest/{split}_img``."""
    data = json.loads((synth / "annotations" / f"lvis_v1_{split}.json").read_text())
    img_dir = dest / f"{split}_img"
    img_dir.mkdir(parents=True)
    images = []
    for im in data["images"]:
        name = Path(im["file_name"]).name
        shutil.copy(synth / im["file_name"], img_dir / name)
        images.append({"id": im["id"], "file_name": name, "width": im["width"], "height": im["height"]})
    anns = [{"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "area": a["area"], "iscrowd": int(n < crowd)} for n, a in enumerate(data["annotations"])]
    cats = [{"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in data["categories"]]
    path = dest / f"{split}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def _cocoeval_ap(val: Path, dets: list) -> dict:
    gt = COCO(str(val))
    ev = COCOeval(gt, gt.loadRes(copy.deepcopy(dets)), iouType="bbox")
    ev.params.maxDets = [1, 10, 300]
    ev.evaluate()
    ev.accumulate()
    p = ev.eval["precision"][..., 0, -1]  # [T, R, K] all areas, maxDets 300
    return {"AP": float(p[p > -1].mean()), "AP50": float(p[0][p[0] > -1].mean())}


@pytest.mark.slow
def test_plain_coco_box_only_import_train_eval_predict(tmp_path):
    synth = tmp_path / "synth"
    _invoke(["data", "synth", "--out", synth, "--no-masks", "--num-classes", "5", "--train-images", "32",
             "--val-images", "12", "--image-size", "64", "--seed", "1"])
    coco = tmp_path / "export"
    train, val = _plain_coco(synth, "train", coco, 0), _plain_coco(synth, "val", coco, 2)
    data = tmp_path / "mydata"
    _invoke(["data", "import", "coco", data, "--train", train, "--train-images", coco / "train_img", "--val", val,
             "--val-images", coco / "val_img"])
    work = tmp_path / "run"
    _invoke(["train", "base", CONFIG, "--data", data, "--work-dir", work, *TINY])
    ckpt = work / "latest.pth"
    out = _invoke(["eval", CONFIG, ckpt, "--data", data, "--out", tmp_path / "ev", "--metric", "bbox"])
    assert "APr" in out
    dets = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert dets and "segmentation" not in dets[0]  # a box-only model
    got = json.loads((tmp_path / "ev" / "metrics.json").read_text())["metrics"]["bbox"]["summary"]
    ref = _cocoeval_ap(val, dets)
    assert got["AP"] == pytest.approx(ref["AP"], abs=1e-4) and got["AP50"] == pytest.approx(ref["AP50"], abs=1e-4)
    assert ref["AP50"] > 0  # real detections, scored
    _invoke(["predict", CONFIG, ckpt, coco / "val_img", "--data", data, "--out", tmp_path / "pred", "--score-thr",
             "0.01"])
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert preds and len(list((tmp_path / "pred").glob("*.png"))) == 12
