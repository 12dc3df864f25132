"""Checkpoints from elsewhere, built here from a tiny model in each layout from facts about it (DESIGN.md): the LOCE
authors' (mmdet 2.8: stock Mask R-CNN keys, meta mmdet_version '2.8.0+hash', tuple CLASSES, config text with
FCNNormMaskHead, env_info, epoch, iter, mmcv_version, seed None, an SGD optimizer state; no scores, no memory) and
mmdetection 2.28's model zoo (standard FCNMaskHead), both in torch's legacy (non-zip) serialisation. A head of
another kind than the config's is refused before training or inference; LVIS's known spelling variants pass with a
note, other class differences name the index and both names; predict takes frequency groups from the config's
data when the meta has none."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from mmdet.models import build_detector

from loce_cli.engine.config.loading import load_config
from loce_cli.engine.evaluation import EvalRequest
from loce_cli.engine.evaluation.model_eval import evaluate_model
from loce_cli.engine.predict.images import read_classes
from loce_cli.engine.training.run import TrainRequest, validate
from loce_cli.errors import DataError
from tests.conftest import tiny_train_options

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
LOCE = ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py"


def _foreign_text(text: str, mask_head: str, sigmoid: bool = False) -> str:
    """A config text as mmdet dumps it, with mmdet's detector type and the given mask head type."""
    text = text.replace("LoceMaskRCNN", "MaskRCNN").replace("NormedMaskHead", mask_head)
    if mask_head == "FCNMaskHead":
        text = re.sub(r"\bscale=20\.0,\s*", "", text)
    if sigmoid:
        text = text.replace("type='CrossEntropyLoss', use_sigmoid=False", "type='CrossEntropyLoss', use_sigmoid=True")
        assert "use_sigmoid=True, loss_weight=1.0)" in text
    return text


def _write(path: Path, state: dict, meta: dict, optimizer: bool = False) -> Path:
    ckpt = {"state_dict": state, "meta": meta}
    if optimizer:  # what mmcv 1.2's runner saved from torch.optim.SGD
        ckpt["optimizer"] = {"state": {}, "param_groups": [dict(lr=0.02, momentum=0.9, dampening=0,
                                                                weight_decay=0.0001, nesterov=False,
                                                                params=list(range(len(state))))]}
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)  # legacy serialisation
    return path


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset):
    return tiny_model_parts(tiny_dataset)


def tiny_model_parts(tiny_dataset):
    """An untrained tiny Mask R-CNN of the synthetic base config sized for ``tiny_dataset``: its state_dict, its
    config's text, the dataset's class names and categories."""
    cfg = load_config(BASE, tiny_train_options(tiny_dataset))
    model = build_detector(cfg.model)
    model.init_weights()
    cats = json.loads((tiny_dataset / "annotations" / "lvis_v1_train.json").read_text())["categories"]
    names = tuple(c["name"] for c in sorted(cats, key=lambda c: c["id"]))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, cfg.pretty_text, names, cats


def zoo_checkpoint(path: Path, tiny_model, classes=None, sigmoid=False) -> Path:
    state, text, names, _ = tiny_model
    return _write(path, state, dict(mmdet_version="2.28.2", CLASSES=tuple(classes or names),
                                    config=_foreign_text(text, "FCNMaskHead", sigmoid)))


def authors_checkpoint(path: Path, tiny_model, classes=None) -> Path:
    state, text, names, _ = tiny_model
    meta = dict(env_info="sys.platform: linux\nPython: 3.7.9", config=_foreign_text(text, "FCNNormMaskHead"),
                seed=None, exp_name="loce_mask_rcnn_r50_fpn_normed_mask_mstrain_2x_lvis_v1.py",
                mmdet_version="2.8.0+8b3e7a4", CLASSES=tuple(classes or names), epoch=24, iter=240,
                mmcv_version="1.2.4", time="Mon Mar  1 12:00:00 2021")
    return _write(path, state, meta, optimizer=True)


def test_zoo_standard_mask_head_is_refused_by_a_normed_config(tiny_model, tiny_dataset, tmp_path):
    ckpt = zoo_checkpoint(tmp_path / "zoo.pth", tiny_model)
    options = tiny_train_options(tiny_dataset)
    with pytest.raises(DataError) as e:
        validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                              base_checkpoint=str(ckpt), cfg_options=options))
    assert "FCNMaskHead (standard)" in str(e.value) and "NormedMaskHead (normed)" in str(e.value)
    assert "lvis/loce_mask_rcnn_r50_fpn_6e_lvis_v1" in e.value.hint
    assert "model.roi_head.mask_head.type=FCNMaskHead" in e.value.hint
    with pytest.raises(DataError, match=r"mask head FCNMaskHead \(standard\)"):
        evaluate_model(EvalRequest(str(BASE), str(ckpt), str(tmp_path / "ev"), cfg_options=options))
    assert not (tmp_path / "ev" / "metrics.json").exists()
    with pytest.raises(DataError, match=r"mask head FCNMaskHead \(standard\)"):
        read_classes(ckpt, load_config(BASE, options))
    # the config switched to the standard head with --cfg-options accepts it (and builds: no 'scale' left over)
    switched = options + ["model.roi_head.mask_head.type=FCNMaskHead"]
    validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                          base_checkpoint=str(ckpt), cfg_options=switched))
    cfg = load_config(LOCE, switched)
    model = build_detector(cfg.model)
    assert type(model.roi_head.mask_head).__name__ == "FCNMaskHead"


def test_authors_normed_mask_head_is_refused_by_a_standard_config(tiny_model, tiny_dataset, tmp_path):
    ckpt = authors_checkpoint(tmp_path / "authors.pth", tiny_model)
    switched = tiny_train_options(tiny_dataset) + ["model.roi_head.mask_head.type=FCNMaskHead"]
    with pytest.raises(DataError) as e:
        validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                              base_checkpoint=str(ckpt), cfg_options=switched))
    assert "FCNNormMaskHead (normed)" in str(e.value) and "FCNMaskHead (standard)" in str(e.value)
    assert "lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1" in e.value.hint
    # with the normed config (as shipped) the authors' file passes
    validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                          base_checkpoint=str(ckpt), cfg_options=tiny_train_options(tiny_dataset)))


def test_sigmoid_classifier_into_softmax_config_is_refused(tiny_model, tiny_dataset, tmp_path):
    state, text, names, _ = tiny_model
    ckpt = zoo_checkpoint(tmp_path / "sigmoid.pth", tiny_model, sigmoid=True)
    options = tiny_train_options(tiny_dataset) + ["model.roi_head.mask_head.type=FCNMaskHead"]
    with pytest.raises(DataError, match=r"trained with a sigmoid classifier \(CrossEntropyLoss\) but .* has a "
                                        r"softmax one"):
        evaluate_model(EvalRequest(str(BASE), str(ckpt), str(tmp_path / "ev"), cfg_options=options))


def test_predict_reads_an_authors_checkpoint_with_groups_from_the_config_data(tiny_model, tiny_dataset, tmp_path,
                                                                              capsys):
    _, _, names, cats = tiny_model
    ckpt = authors_checkpoint(tmp_path / "authors.pth", tiny_model)
    got_names, groups, ids = read_classes(ckpt, load_config(BASE, tiny_train_options(tiny_dataset)))
    by_id = sorted(cats, key=lambda c: c["id"])
    assert got_names == names and groups == tuple(c["frequency"] for c in by_id)
    assert ids == tuple(c["id"] for c in by_id)
    assert "class names and groups from" in capsys.readouterr().err
    other = authors_checkpoint(tmp_path / "other.pth", tiny_model, classes=names[:2] + ("zebra",) + names[3:])
    with pytest.raises(DataError, match=rf"first difference at index 2: 'zebra' vs {names[2]!r}"):
        read_classes(other, load_config(BASE, tiny_train_options(tiny_dataset)))


def _renamed_data(tiny_dataset: Path, tmp_path: Path, index: int, name: str) -> list:
    """--cfg-options pointing at copies of the tiny annotation files whose class ``index`` is called ``name``."""
    options = tiny_train_options(tiny_dataset)
    for split in ("train", "val"):
        data = json.loads((tiny_dataset / "annotations" / f"lvis_v1_{split}.json").read_text())
        sorted(data["categories"], key=lambda c: c["id"])[index]["name"] = name
        (tmp_path / f"lvis_v1_{split}.json").write_text(json.dumps(data))
    return [o for o in options if ".ann_file=" not in o] + [f"data.train.ann_file={tmp_path / 'lvis_v1_train.json'}",
                                                           f"data.test.ann_file={tmp_path / 'lvis_v1_val.json'}"]


def test_lvis_spelling_variant_is_accepted_with_a_note_and_other_names_are_named(tiny_model, tiny_dataset,
                                                                                tmp_path, capsys):
    from loce_cli.mmdet_ext.inference import check_test_classes

    _, _, names, _ = tiny_model
    options = _renamed_data(tiny_dataset, tmp_path, 4, "speaker_(stero_equipment)")  # the LVIS v1 file's spelling
    zoo_names = names[:4] + ("speaker_(stereo_equipment)",) + names[5:]  # mmdet 2.28's hard-coded spelling
    ckpt = zoo_checkpoint(tmp_path / "zoo.pth", tiny_model, classes=zoo_names)
    switched = options + ["model.roi_head.mask_head.type=FCNMaskHead"]
    validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                          base_checkpoint=str(ckpt), cfg_options=switched))
    err = capsys.readouterr().err
    assert err.count("known spelling variants") == 1 and "index 4" in err
    test_names = names[:4] + ("speaker_(stero_equipment)",) + names[5:]
    check_test_classes(zoo_names, test_names, ckpt, "val.json")
    assert "known spelling variants" in capsys.readouterr().err
    with pytest.raises(DataError, match=rf"first difference at index 3: 'zebra' vs {names[3]!r}") as e:
        check_test_classes(names[:3] + ("zebra",) + names[4:], names, ckpt, "val.json")
    assert "evaluate on the dataset it was trained on" in e.value.hint
    wrong = zoo_checkpoint(tmp_path / "wrong.pth", tiny_model, classes=names[:1] + ("zebra",) + names[2:])
    with pytest.raises(DataError, match=rf"index 1: 'zebra' vs {names[1]!r}"):
        validate(TrainRequest(config=str(LOCE), stage="finetune", work_dir=str(tmp_path / "ft"),
                              base_checkpoint=str(wrong), cfg_options=switched))
    with pytest.raises(DataError, match=rf"index 1: 'zebra' vs {names[1]!r}"):  # eval names them too
        evaluate_model(EvalRequest(str(BASE), str(wrong), str(tmp_path / "ev"),
                                   cfg_options=switched))


@pytest.mark.slow
def test_foreign_layouts_through_eval_and_predict(tiny_model, tiny_dataset, tmp_path):
    """The authors' layout through `loce predict` (no frequency groups in its meta: from the config's data) and
    the zoo layout (standard mask head, legacy file) through `loce eval` with the config switched to that head."""
    from loce_cli.engine.predict.images import PredictRequest, predict

    options = tiny_train_options(tiny_dataset)
    authors = authors_checkpoint(tmp_path / "authors.pth", tiny_model)
    image = sorted((tiny_dataset / "val2017").glob("*.jpg"))[0]
    report = predict(PredictRequest(str(BASE), str(authors), [str(image)], str(tmp_path / "pred"), score_thr=0.0,
                                    max_dets=20, device="cpu", cfg_options=options))
    dets = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    names = dict(zip((c["id"] for c in tiny_model[3]), (c["name"] for c in tiny_model[3])))
    assert report is not None and (tmp_path / "pred" / f"{image.stem}.png").is_file()
    assert dets and all(names[d["category_id"]] == d["category_name"] for d in dets)
    zoo = zoo_checkpoint(tmp_path / "zoo.pth", tiny_model)
    switched = options + ["model.roi_head.mask_head.type=FCNMaskHead"]
    evaluate_model(EvalRequest(str(BASE), str(zoo), str(tmp_path / "ev"), max_dets=20, cfg_options=switched))
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics
