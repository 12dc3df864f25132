"""The LOCE authors' config files (their layout, written by tests/authors_layout.py from facts) read as loce
configs: the model equals the matching shipped config's; a key with no loce equivalent is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from loce_cli.engine.config.loading import load_config
from loce_cli.errors import DataError
from loce_cli.mmdet_ext.authors_config import AUTHORS_KEY, authors_translation_lines
from tests.authors_layout import (BASE_R101, BASE_V05, BASE_V1, LOCE_R101, LOCE_V05, LOCE_V1, base_text, loce_text,
                                  write_lvis_set)

PAIRS = [(LOCE_V1, "lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1"),
         (LOCE_V05, "lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5"),
         (LOCE_R101, "lvis/loce_mask_rcnn_r101_fpn_normed_6e_lvis_v1"),
         (BASE_V1, "lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1"),
         (BASE_V05, "lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v0.5"),
         (BASE_R101, "lvis/mask_rcnn_r101_fpn_normed_2x_lvis_v1")]


@pytest.fixture(scope="module")
def authors(tmp_path_factory):
    return write_lvis_set(tmp_path_factory.mktemp("authors") / "configs" / "loce")


def _model_dict(cfg) -> dict:
    model = cfg.model.to_dict()
    memory = model["roi_head"].get("memory")
    if memory:  # theirs keeps the queues on the host (gpu_statictics=False); the only intended difference
        assert memory.pop("device") in ("cpu", "model")
    return model


@pytest.mark.parametrize("theirs,ours", PAIRS)
def test_their_config_reads_as_the_matching_shipped_config(authors, theirs, ours, capsys):
    cfg, shipped = load_config(authors[theirs]), load_config(Path(ours))
    assert "LOCE authors' layout" in capsys.readouterr().err
    assert _model_dict(cfg) == _model_dict(shipped)  # heads, loss, memory size, freeze list, sampler, test_cfg
    assert cfg.runner == shipped.runner and cfg.lr_config == shipped.lr_config and cfg.optimizer == shipped.optimizer
    assert cfg.data.train.type == shipped.data.train.type or cfg.data.train.type == "LVISV05Dataset"
    if theirs.startswith("loce"):
        assert cfg.model.roi_head.memory.device == "cpu"  # gpu_statictics=False
        assert [h.type for h in cfg.custom_hooks] == ["LoceMemoryInitHook"] and cfg.custom_hooks[0].warm_scores
        assert cfg.load_from is None


def test_every_translated_key_is_named(authors):
    lines = authors_translation_lines(load_config(authors[LOCE_V1]))
    assert "LOCE authors' layout" in lines[0]
    text = "\n".join(lines[1:])
    for key in ("LoceShared2FCBBoxHead", "EquilibriumLoss", "FCNNormMaskHead", "InitializerHook", "rcnn.alpha",
                "bg_score", "mfs", "gpu_statictics", "selectp", "total_epochs", "load_from", "model.pretrained",
                "max_num", "nms_thr", "LVISV1Dataset"):
        assert key in text, key
    assert authors_translation_lines(load_config(Path("lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1"))) == []


@pytest.mark.parametrize("theirs,ours", PAIRS[:3])
def test_their_loce_model_has_the_shipped_state_dict_and_freeze_list(authors, theirs, ours):
    from mmdet.models import build_detector

    small = ["model.roi_head.memory.queue_size=1"]  # 1203 x 80 x 256 x 49 floats would be 4.8 GB here
    built = []
    for path in (authors[theirs], Path(ours)):
        cfg = load_config(path, small)
        model = build_detector(cfg.model)
        state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        frozen = sorted(n for n, p in model.named_parameters() if not p.requires_grad)
        built.append((state, frozen, type(model.roi_head.bbox_head.loss_cls).__name__))
    assert built[0] == built[1]
    assert built[0][2] == "EquilibriumLoss" and built[0][1]  # the backbone, FPN and shared FCs frozen


def _one(tmp_path: Path, **loce_kwargs) -> Path:
    base = tmp_path / BASE_V1
    base.write_text(base_text(classes=1203, dataset="LVISV1Dataset", root="data/", train_json="t.json",
                              val_json="v.json", train_images="", val_images=""))
    path = tmp_path / LOCE_V1
    path.write_text(loce_text(BASE_V1, "x.pth", **loce_kwargs))
    return path


@pytest.mark.parametrize("kwargs,named", [
    (dict(mfs_extra=", balanced=True"), "train_cfg.rcnn.mfs.balanced"),
    (dict(selectp=2), "selectp=2"),
])
def test_a_key_without_loce_equivalent_is_refused_by_name(tmp_path, kwargs, named):
    with pytest.raises(DataError) as e:
        load_config(_one(tmp_path, **kwargs))
    assert named in str(e.value) and "authors' layout" in str(e.value)


def test_sigmoid_equilibrium_loss_is_refused(tmp_path):
    path = _one(tmp_path)
    path.write_text(path.read_text().replace("use_sigmoid=False", "use_sigmoid=True"))
    with pytest.raises(DataError, match="use_sigmoid=True"):
        load_config(path)


def test_cfg_options_apply_to_loce_keys_after_translation(authors):
    cfg = load_config(authors[LOCE_V1], ["runner.max_epochs=2", "model.roi_head.memory.device=model"])
    assert cfg.runner.max_epochs == 2 and cfg.model.roi_head.memory.device == "model"
    assert cfg[AUTHORS_KEY]["translated"]
