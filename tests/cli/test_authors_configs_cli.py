"""The LOCE authors' config files run as given with `loce eval`, `predict`, `finetune` and `train base` (files in
their layout from tests/authors_layout.py, on the synthetic data; the checkpoint is the session's tiny base)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.authors_layout import write_tiny_set
from tests.conftest import TINY_CLASSES

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--cfg-options", "runner.max_epochs=1", "data.workers_per_gpu=0", "lr_config.warmup_iters=5",
        "log_config.interval=5"]


def _loce(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    exe = Path(sys.executable).with_name("loce")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, timeout=900,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def theirs(tmp_path_factory, tiny_dataset):
    return write_tiny_set(tmp_path_factory.mktemp("authors") / "configs" / "loce", tiny_dataset, TINY_CLASSES)


@pytest.mark.slow
def test_eval_and_predict_with_their_base_config(theirs, tiny_base_model, tiny_dataset, tmp_path):
    _, ckpt, _ = tiny_base_model
    out = _loce("eval", theirs["base"], ckpt, "--out", tmp_path / "eval", "--json",
                "--cfg-options", "data.workers_per_gpu=0")
    assert out.returncode == 0, out.stderr
    assert "LOCE authors' layout" in out.stderr and "registry" not in out.stderr
    ours = _loce("eval", "synthetic/mask_rcnn_r18_fpn_normed_synth", ckpt, "--out", tmp_path / "ours", "--json",
                 "--cfg-options", *tiny_base_model[2])
    assert ours.returncode == 0, ours.stderr
    # the same model and test set: the same AP through their file as through the shipped one
    assert json.loads(out.stdout)["metrics"] == json.loads(ours.stdout)["metrics"]
    image = next((tiny_dataset / "val2017").glob("*.jpg"))
    pred = _loce("predict", theirs["base"], ckpt, image, "--out", tmp_path / "pred")
    assert pred.returncode == 0, pred.stderr
    assert any((tmp_path / "pred").iterdir())


@pytest.mark.slow
def test_finetune_and_train_base_with_their_files(theirs, tiny_base_model, tmp_path):
    _, ckpt, _ = tiny_base_model
    out = _loce("finetune", theirs["loce"], "--from", ckpt, "--work-dir", tmp_path / "ft", "--no-validate", *FAST)
    assert out.returncode == 0, out.stderr
    log = "\n".join(p.read_text() for p in (tmp_path / "ft").glob("*.log"))
    for key in ("LoceShared2FCBBoxHead", "EquilibriumLoss", "FCNNormMaskHead", "InitializerHook", "selectp",
                "total_epochs", "load_from", "mfs", "alpha"):
        assert f"translated: " in log and key in log, key
    assert (tmp_path / "ft" / "latest.pth").exists() or list((tmp_path / "ft").glob("epoch_*.pth"))
    base = _loce("train", "base", theirs["base"], "--work-dir", tmp_path / "base", "--no-validate", *FAST)
    assert base.returncode == 0, base.stderr
    assert "LOCE authors' layout" in base.stderr
