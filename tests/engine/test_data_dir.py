"""``--data DIR`` (engine.config.data_dir) and box-only data (``loce data synth --no-masks``, engine.data.box_only):
the options --data stands for on shipped configs by name, the refusals (a checkpoint of another class count, a
Mask R-CNN config on box-only data), through the CLI as a user types it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.errors import DataError

runner = CliRunner()


@pytest.fixture(scope="module")
def box_data(tmp_path_factory) -> Path:
    """A box-only synthetic dataset (8 classes), as `loce data synth --no-masks` writes it."""
    out = tmp_path_factory.mktemp("box") / "data"
    r = runner.invoke(app, ["data", "synth", "--out", str(out), "--no-masks", "--num-classes", "8",
                            "--train-images", "40", "--val-images", "20", "--image-size", "64"])
    assert r.exit_code == 0, r.output
    return out


def test_synth_no_masks_writes_boxes_only(box_data):
    for split in ("train", "val"):
        data = json.loads((box_data / "annotations" / f"lvis_v1_{split}.json").read_text())
        assert data["annotations"] and all("segmentation" not in a for a in data["annotations"])
        for a in data["annotations"]:  # the box's area, as a COCO export without masks has it
            assert a["area"] == pytest.approx(a["bbox"][2] * a["bbox"][3], abs=0.01)
        assert len(data["categories"]) == 8 and all(c["frequency"] in "rcf" for c in data["categories"])
        assert data["info"]["options"]["masks"] is False


def _loaded(config, data):
    from loce_cli.engine.data.data_dir import data_options, read_data_dir
    from loce_cli.engine.config.loading import load_config

    opts = data_options(config, read_data_dir(data))
    return load_config(Path(config), opts), opts


@pytest.mark.parametrize("name", ["synthetic/loce_mask_rcnn_r18_fpn_normed_synth", "synthetic/ablation_rfs_synth",
                                  "synthetic/baseline_seesaw_synth", "synthetic/loce_faster_rcnn_r18_fpn_synth"])
def test_data_points_a_shipped_config_by_name_at_the_folder(tiny_dataset, name):
    from loce_cli.engine.config.loading import train_dataset_cfg
    from tests.conftest import TINY_CLASSES

    cfg, opts = _loaded(name, tiny_dataset)
    ann = tiny_dataset / "annotations"
    train = train_dataset_cfg(cfg)  # under the RFS wrapper too
    assert train.ann_file == str(ann / "lvis_v1_train.json") and train.img_prefix == f"{tiny_dataset}/"
    for split in ("val", "test"):
        assert cfg.data[split].ann_file == str(ann / "lvis_v1_val.json")
        assert cfg.data[split].img_prefix == f"{tiny_dataset}/"
    roi = cfg.model.roi_head
    assert roi.bbox_head.num_classes == TINY_CLASSES != 40  # adapted from the config's 40
    if roi.get("mask_head") is not None:
        assert roi.mask_head.num_classes == TINY_CLASSES
    if "seesaw" in name:  # a loss that carries its own class count follows too
        assert roi.bbox_head.loss_cls.num_classes == TINY_CLASSES
    assert all(str(tiny_dataset) in o or o.endswith(f"={TINY_CLASSES}") for o in opts)


def test_data_without_annotation_files_is_refused(tmp_path):
    from loce_cli.engine.data.data_dir import read_data_dir

    (tmp_path / "annotations").mkdir()
    with pytest.raises(DataError, match="has no train or val annotation file"):
        read_data_dir(tmp_path)
    with pytest.raises(DataError, match="is not a directory"):
        read_data_dir(tmp_path / "nope")


def _checkpoint(path: Path, num_classes: int) -> Path:
    """A two-stage detector checkpoint as mmcv saves one: its classifier has num_classes + 1 rows."""
    import torch

    torch.save({"meta": {}, "state_dict": {"roi_head.bbox_head.fc_cls.weight": torch.zeros(num_classes + 1, 4)}},
               path)
    return path


def test_eval_and_finetune_refuse_a_checkpoint_of_another_class_count(box_data, tmp_path):
    ckpt = _checkpoint(tmp_path / "forty.pth", 40)
    for args in (["eval", "synthetic/loce_faster_rcnn_r18_fpn_synth", str(ckpt), "--data", str(box_data),
                  "--out", str(tmp_path / "ev")],
                 ["finetune", "synthetic/loce_faster_rcnn_r18_fpn_synth", "--from", str(ckpt), "--data",
                  str(box_data), "--work-dir", str(tmp_path / "ft")],
                 ["predict", "synthetic/loce_faster_rcnn_r18_fpn_synth", str(ckpt), str(box_data / "val2017"),
                  "--data", str(box_data), "--out", str(tmp_path / "pr")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (args, r.output)
        assert f"was trained for 40 classes but --data {box_data} has 8" in r.output, r.output
        assert "Traceback" not in r.output
    assert not any((tmp_path / d).exists() for d in ("ev", "ft", "pr"))  # nothing written


def test_a_mask_rcnn_config_on_box_only_data_is_refused_naming_the_faster_rcnn_config(box_data, tmp_path):
    for stage, config, named in (("base", "synthetic/mask_rcnn_r18_fpn_normed_synth",
                                  "synthetic/faster_rcnn_r18_fpn_synth"),
                                 ("base", "lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1",
                                  "lvis/faster_rcnn_r50_fpn_2x_lvis_v1")):
        r = runner.invoke(app, ["train", stage, config, "--data", str(box_data), "--work-dir", str(tmp_path / "w")])
        assert r.exit_code == 1, r.output
        if config.startswith("synthetic"):
            assert "has boxes only" in r.output and named in r.output, r.output
        assert "Traceback" not in r.output
    assert not (tmp_path / "w").exists()
    from loce_cli.engine.data.data_dir import data_options, read_data_dir
    from loce_cli.engine.config.loading import load_config
    from loce_cli.engine.data.box_only import check_masks_for_config

    name = "synthetic/loce_mask_rcnn_r18_fpn_normed_synth"
    cfg = load_config(Path(name), data_options(name, read_data_dir(box_data)))
    with pytest.raises(DataError, match="has boxes only") as e:
        check_masks_for_config(cfg, name, "finetune")
    assert "synthetic/loce_faster_rcnn_r18_fpn_synth" in e.value.hint
    name = "synthetic/faster_rcnn_r18_fpn_synth"  # the box-only config passes
    check_masks_for_config(load_config(Path(name), data_options(name, read_data_dir(box_data))), name, "base")


def test_the_train_request_keeps_data_and_the_user_s_options_apart(box_data, monkeypatch):
    from loce_cli.engine.training.run import TrainResult

    seen = {}

    def fake_train(req):
        seen["req"] = req
        return TrainResult(work_dir="w", checkpoint="", epochs=1, iterations=1, seconds=1.0, world_size=1,
                           device="cpu")

    monkeypatch.setattr("loce_cli.engine.training.run.train", fake_train)
    r = runner.invoke(app, ["train", "base", "synthetic/faster_rcnn_r18_fpn_synth", "--data", str(box_data),
                            "--cfg-options", "runner.max_epochs=1"])
    assert r.exit_code == 0, r.output
    req = seen["req"]
    assert req.data_dir == str(box_data) and req.cfg_options[-1] == "runner.max_epochs=1"
    assert req.cfg_options[:-1] == req.data_options
    assert "model.roi_head.bbox_head.num_classes=8" in req.data_options
    r = runner.invoke(app, ["train", "base", "synthetic/faster_rcnn_r18_fpn_synth", "--data", str(box_data),
                            "--resume"])
    assert r.exit_code == 2 and "--data and --resume exclude each other" in r.output
