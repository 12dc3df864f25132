"""--cfg-options (issue 15): values parsed as mmdet's tools parse them (mmcv's DictAction) and checked against the
type of the key they replace; mmdet's space-separated form; a bad value is one line, exit 2, nothing written."""

import os
import subprocess
import sys

import pytest

from loce_cli.cli.app import expand_cfg_options
from loce_cli.engine.config.loading import load_config
from loce_cli.errors import LoceUsageError
from tests.engine.test_train import BASE


@pytest.fixture(scope="module")
def cfg_of():
    return lambda *options: load_config(BASE, list(options))


def test_values_take_the_type_of_the_key(cfg_of):
    cfg = cfg_of("runner.max_epochs=3", "optimizer.lr=1", "lr_config.step=2,4", "lr_config.warmup_ratio=1e-3",
                 "data.train.img_prefix=/data/with,comma/", "model.backbone.init_cfg=None")
    assert cfg.runner.max_epochs == 3 and isinstance(cfg.runner.max_epochs, int)
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)  # an int where a float is: a float
    assert list(cfg.lr_config.step) == [2, 4] and cfg.lr_config.warmup_ratio == 0.001
    assert cfg.data.train.img_prefix == "/data/with,comma/"  # a string key keeps the text (no list split)
    assert cfg.model.backbone.get("init_cfg") is None
    cfg = cfg_of("model.test_cfg.rcnn.max_per_img=100", "auto_scale_lr.enable=True",
                 "data.train.pipeline.2.img_scale=160,96")
    assert cfg.model.test_cfg.rcnn.max_per_img == 100 and cfg.auto_scale_lr.enable is True
    assert cfg.data.train.pipeline[2].img_scale == (160, 96)  # a tuple key stays a tuple
    assert list(cfg_of("lr_config.step=3").lr_config.step) == [3]  # mmdet's habit: a number for a list
    with pytest.raises(LoceUsageError, match="is a tuple in the config"):
        cfg_of("data.train.pipeline.2.img_scale=160")


@pytest.mark.parametrize("option, text", [
    ("runner.max_epochs=abc", "runner.max_epochs is an int in the config (now 6), not a string"),
    ("runner.max_epochs=2.5", "is an int in the config (now 6), not a number"),
    ("optimizer.lr=fast", "optimizer.lr is a number in the config"),
    ("lr_config.step=x", "lr_config.step is a list in the config"),
    ("model.roi_head=3", "model.roi_head is a dict in the config"),
    ("auto_scale_lr.enable=1", "auto_scale_lr.enable is a bool (true or false) in the config"),
    ("lr_config.step=[1,2", "unbalanced brackets"),
])
def test_bad_values_are_usage_errors(cfg_of, option, text):
    with pytest.raises(LoceUsageError, match=text.replace("(", r"\(").replace(")", r"\)")) as e:
        cfg_of(option)
    assert e.value.exit_code == 2 and "\n" not in e.value.one_line()


def test_mmdet_space_separated_form_is_expanded():
    assert expand_cfg_options(["train", "base", "--cfg-options", "a=1", "b=[1, 2]", "C.py", "--seed", "1"]) == [
        "train", "base", "--cfg-options", "a=1", "--cfg-options", "b=[1, 2]", "C.py", "--seed", "1"]
    assert expand_cfg_options(["--cfg-options=a=1", "b=2", "--json"]) == ["--cfg-options=a=1", "--cfg-options",
                                                                          "b=2", "--json"]


def _loce(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "loce_cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_cli_space_form_and_bad_value(tmp_path):
    work = tmp_path / "run"
    # both words after --cfg-options are options (the second is reached and refused): mmdet's form works
    r = _loce("train", "base", BASE, "--work-dir", work, "--cfg-options", "data.samples_per_gpu=2",
              "runner.max_epochs=abc")
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "runner.max_epochs is an int" in lines[0] and "Logging error" not in r.stderr
    assert not work.exists()  # nothing written: no log, no config dump
