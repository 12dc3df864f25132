"""Bad input refused before any process starts (issue 22): a data root holding the other LVIS version, a class
count that differs from the annotation file, an image folder missing under the data root. Each: one line on
stderr, exit 1, nothing written. Through the CLI (``loce train base`` / ``loce finetune`` / ``loce eval``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app

ROOT = Path(__file__).resolve().parents[2]
LVIS = ROOT / "configs" / "lvis"
BASE_V1 = str(LVIS / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py")
LOCE_V1 = str(LVIS / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py")
BASE_V05 = str(LVIS / "mask_rcnn_r50_fpn_normed_2x_lvis_v0.5.py")
LOCE_V05 = str(LVIS / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5.py")
runner = CliRunner()


def _commands(config: str, tmp: Path, extra=()):
    """The three commands on ``config``, each with its own output location under ``tmp``."""
    return {
        "train base": ["train", "base", config, "--work-dir", str(tmp / "w_base"), *extra],
        "finetune": ["finetune", config, "--from", str(tmp / "base.pth"), "--work-dir", str(tmp / "w_ft"), *extra],
        "eval": ["eval", config, str(tmp / "base.pth"), "--out", str(tmp / "eval_out"), *extra],
    }


def _snapshot(folder: Path) -> set:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _refused(args, text, watch: Path):
    before = _snapshot(watch)
    r = runner.invoke(app, args)
    assert r.exit_code == 1, (args, r.output)
    assert text in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert _snapshot(watch) == before  # nothing written: no work dir, no eval out, no file in the data
    return r.stderr


@pytest.fixture
def swapped(tmp_path, lvis_v1_root, lvis_v05_root, monkeypatch):
    """A working folder whose data/lvis_v1 holds LVIS v0.5 data and data/lvis_v0.5 holds LVIS v1 data."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "lvis_v1").symlink_to(lvis_v05_root, target_is_directory=True)
    (tmp_path / "data" / "lvis_v0.5").symlink_to(lvis_v1_root, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("command", ["train base", "finetune", "eval"])
def test_data_root_holding_the_other_version(swapped, command):
    config = LOCE_V1 if command == "finetune" else BASE_V1
    extra = ["--nproc", "2"] if command != "eval" else []  # refused before torchrun would start
    err = _refused(_commands(config, swapped, extra)[command], "holds LVIS v0.5 data", swapped)
    assert "lvis_v0.5_train.json" in err and "is an LVIS v1 config" in err
    config = LOCE_V05 if command == "finetune" else BASE_V05
    _refused(_commands(config, swapped)[command], "holds LVIS v1 data", swapped)


@pytest.mark.parametrize("command", ["train base", "finetune", "eval"])
def test_class_count_that_differs_from_the_annotation_file(in_lvis_workdir, command, tmp_path):
    config = LOCE_V1 if command == "finetune" else BASE_V1
    wrong = ["--cfg-options", "model.roi_head.bbox_head.num_classes=1230",
             "--cfg-options", "model.roi_head.mask_head.num_classes=1230"]
    args = _commands(config, tmp_path, wrong)[command]
    err = _refused(args, "model.roi_head.bbox_head.num_classes is 1230 but", tmp_path)
    assert "has 1203 classes" in err
    # only the mask head wrong: still refused, naming it
    args = _commands(config, tmp_path, wrong[2:])[command]
    _refused(args, "model.roi_head.mask_head.num_classes is 1230 but", tmp_path)


@pytest.mark.parametrize("command", ["train base", "finetune", "eval"])
def test_image_folder_missing_under_the_data_root(tmp_path, lvis_v1_root, monkeypatch, command):
    """The annotations (prepared) are there, an image folder is not."""
    root = tmp_path / "data" / "lvis_v1"
    root.mkdir(parents=True)
    (root / "annotations").symlink_to(lvis_v1_root / "annotations", target_is_directory=True)
    (root / "train2017").symlink_to(lvis_v1_root / "train2017", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    config = LOCE_V1 if command == "finetune" else BASE_V1
    if command == "eval":  # v1 val resolves to train2017/ and val2017/: val2017/ is missing
        _refused(_commands(config, tmp_path)[command], "image folder data/lvis_v1/val2017 does not exist", tmp_path)
    else:  # with train2017/ present the training set is complete; take it away
        (root / "train2017").unlink()
        (root / "val2017").symlink_to(lvis_v1_root / "val2017", target_is_directory=True)
        _refused(_commands(config, tmp_path)[command], "image folder data/lvis_v1/train2017 does not exist",
                 tmp_path)


def test_old_v05_loce_config_is_refused_naming_the_prefix(in_lvis_workdir, tmp_path):
    """The config as it was before the fix (img_prefix = data_root + 'train2017/')."""
    old = tmp_path / "old_loce_v05.py"
    old.write_text(OLD_LOCE_V05.format(base=LOCE_V1))
    for command, folder in (("finetune", "train2017"), ("eval", "val2017")):
        err = _refused(_commands(str(old), tmp_path)[command],
                       f"image folder data/lvis_v0.5/{folder}/{folder} does not exist", tmp_path)
        assert "set img_prefix to the data root (data/lvis_v0.5/)" in err


def test_shipped_configs_pass_the_checks_on_matching_data(in_lvis_workdir):
    from loce_cli.engine.config.loading import load_config
    from loce_cli.engine.data.checks import check_config_data

    for config in sorted(LVIS.glob("*.py")):
        cfg = load_config(config)
        for split in ("train", "val", "test"):
            check_config_data(cfg, config, split)  # raises on any problem


def test_unprepared_data_is_refused_for_eval_too(tmp_path, lvis_v1_root, monkeypatch):
    """loce_meta='required' configs: eval used to stop inside the worker; now before it starts."""
    root = tmp_path / "data" / "lvis_v1"
    (root / "annotations").mkdir(parents=True)
    for name in ("lvis_v1_train.json", "lvis_v1_val.json"):
        os.symlink(lvis_v1_root / "annotations" / name, root / "annotations" / name)
    monkeypatch.chdir(tmp_path)
    _refused(_commands(BASE_V1, tmp_path)["eval"], "has not been prepared", tmp_path)


OLD_LOCE_V05 = """
_base_ = '{base}'
data_root = 'data/lvis_v0.5/'
data = dict(
    train=dict(ann_file=data_root + 'annotations/lvis_v0.5_train.json', img_prefix=data_root + 'train2017/'),
    val=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'),
    test=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'))
model = dict(roi_head=dict(bbox_head=dict(num_classes=1230), mask_head=dict(num_classes=1230)))
"""
