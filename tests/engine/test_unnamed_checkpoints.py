"""Checkpoints whose meta carries no class names, in the two layouts users arrive with (DESIGN.md): a bare
``state_dict`` (``torch.save(model.state_dict(), path)``: no ``meta``, no ``state_dict`` key) and what mmcv 1.x's
``save_checkpoint`` writes for a model without a ``CLASSES`` attribute (``meta`` = ``mmcv_version`` and ``time``
only, as a converted model carries). eval, predict, finetune --from, report and inspect scores --measure take the
class names (and frequency groups) from the data, with one note saying they could not be checked, when the
classifier's class count (rows of ``roi_head.bbox_head.fc_cls.weight`` less the background row) is the data's; a
count that differs is refused naming both counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from loce_cli.engine.config.loading import load_config
from loce_cli.engine.evaluation import EvalRequest
from loce_cli.engine.evaluation.model_eval import evaluate_model
from loce_cli.engine.inspect.measure import measure_checkpoint_scores
from loce_cli.engine.predict.images import read_classes
from loce_cli.engine.training.run import TrainRequest, validate
from loce_cli.errors import DataError
from tests.conftest import TINY_CLASSES, tiny_train_options
from tests.engine.test_foreign_checkpoints import BASE, LOCE, tiny_model_parts

NOTE = "carries no class names, so they could not be checked"


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset):
    return tiny_model_parts(tiny_dataset)


def bare_checkpoint(path: Path, state: dict) -> Path:
    torch.save(state, path)  # what `torch.save(model.state_dict(), path)` writes
    return path


def mmcv_checkpoint(path: Path, state: dict) -> Path:
    """mmcv's save_checkpoint of a model without CLASSES: a meta with mmcv_version and time, no class names."""
    torch.save({"meta": {"mmcv_version": "1.7.2", "time": "Sat Dec  5 03:00:00 2026"}, "state_dict": state}, path)
    return path


def fewer_classes(state: dict, classes: int) -> dict:
    """``state`` with a box classifier (and class-specific regressor and mask logits) for ``classes`` classes."""
    out = dict(state)
    for key, rows in (("roi_head.bbox_head.fc_cls", classes + 1), ("roi_head.bbox_head.fc_reg", 4 * classes),
                      ("roi_head.mask_head.conv_logits", classes)):
        out[f"{key}.weight"] = state[f"{key}.weight"][:rows].clone()
        out[f"{key}.bias"] = state[f"{key}.bias"][:rows].clone()
    return out


@pytest.mark.parametrize("layout", [bare_checkpoint, mmcv_checkpoint])
def test_names_come_from_the_data_with_one_note(layout, tiny_model, tiny_dataset, tmp_path, capsys):
    state, _, names, cats = tiny_model
    ckpt = layout(tmp_path / "model.pth", state)
    options = tiny_train_options(tiny_dataset)
    got_names, groups, ids = read_classes(ckpt, load_config(BASE, options))  # loce predict
    by_id = sorted(cats, key=lambda c: c["id"])
    assert got_names == names and groups == tuple(c["frequency"] for c in by_id)
    assert ids == tuple(c["id"] for c in by_id)
    err = capsys.readouterr().err
    assert err.count(NOTE) == 1 and f"{TINY_CLASSES} classes" in err and "frequency groups from" in err
    validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),  # finetune --from
                          base_checkpoint=str(ckpt), cfg_options=options))
    assert capsys.readouterr().err.count(NOTE) == 1


@pytest.mark.parametrize("layout", [bare_checkpoint, mmcv_checkpoint])
def test_another_class_count_is_refused_naming_both(layout, tiny_model, tiny_dataset, tmp_path):
    state, _, _, _ = tiny_model
    ckpt = layout(tmp_path / "five.pth", fewer_classes(state, TINY_CLASSES - 1))
    options = tiny_train_options(tiny_dataset)
    both = rf"trained for {TINY_CLASSES - 1} classes,? but .* has {TINY_CLASSES}"
    with pytest.raises(DataError, match=both):
        read_classes(ckpt, load_config(BASE, options))
    with pytest.raises(DataError, match=both):
        validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                              base_checkpoint=str(ckpt), cfg_options=options))
    with pytest.raises(DataError, match=both) as e:
        evaluate_model(EvalRequest(str(BASE), str(ckpt), str(tmp_path / "ev"), cfg_options=options))
    assert "no class names" in str(e.value) and "lvis_v1_val.json" in str(e.value)
    assert not (tmp_path / "ev").exists()
    with pytest.raises(DataError, match=both):
        measure_checkpoint_scores(ckpt, BASE, images_per_class=1, cfg_options=options)


def test_without_a_classifier_the_classes_cannot_be_told(tiny_model, tiny_dataset, tmp_path):
    state, _, _, _ = tiny_model
    ckpt = bare_checkpoint(tmp_path / "backbone.pth", {k: v for k, v in state.items() if k.startswith("backbone.")})
    with pytest.raises(DataError, match=r"no class names and has no box classifier"):
        read_classes(ckpt, load_config(BASE, tiny_train_options(tiny_dataset)))


@pytest.mark.slow
def test_eval_report_and_measure_of_a_bare_state_dict(tiny_base_model, tmp_path, capsys):
    """The session's trained base model saved as a bare state_dict: eval gives the same metrics as the original
    checkpoint's (names from the test set), report reads it, inspect scores --measure measures it."""
    from loce_cli.engine.report import build_report

    config, original, options = tiny_base_model
    state = torch.load(original, map_location="cpu", weights_only=True)["state_dict"]
    bare = bare_checkpoint(tmp_path / "bare.pth", state)
    evaluate_model(EvalRequest(str(config), str(bare), str(tmp_path / "bare_ev"), max_dets=50, cfg_options=options))
    assert capsys.readouterr().err.count(NOTE) == 1
    evaluate_model(EvalRequest(str(config), str(original), str(tmp_path / "orig_ev"), max_dets=50,
                               cfg_options=options))
    bare_metrics = json.loads((tmp_path / "bare_ev" / "metrics.json").read_text())["metrics"]
    orig_metrics = json.loads((tmp_path / "orig_ev" / "metrics.json").read_text())["metrics"]
    assert bare_metrics == orig_metrics
    report = build_report([str(tmp_path / "orig_ev"), str(tmp_path / "bare_ev")])
    assert len(report.runs) == 2
    measured = measure_checkpoint_scores(bare, config, images_per_class=1, cfg_options=options)
    assert capsys.readouterr().err.count(NOTE) == 1
    assert any(c.score is not None for c in measured.classes)
