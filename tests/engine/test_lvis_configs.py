"""Every ``configs/lvis`` config, as shipped, on LVIS-shaped data (``loce data synth --like``, prepared): the
datasets build from the config, images go through the config's own train and test pipelines, and the config's
model builds with the data's class count (and, for LOCE, the full-size memory). The data root is the only thing
that differs: the tests run from a folder whose ``data/lvis_v1`` / ``data/lvis_v0.5`` are our datasets.
The heavier checks (one training iteration per model shape, memory initialisation, ``loce eval``) are in
``test_lvis_training.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from loce_cli.errors import ImageDataError

ROOT = Path(__file__).resolve().parents[2]
LVIS = ROOT / "configs" / "lvis"
CONFIGS = sorted(p.name for p in LVIS.glob("*.py"))
CLASSES = {"v1": 1203, "v0.5": 1230}
GROUPS = {"v1": {"r": 337, "c": 461, "f": 405}, "v0.5": {"r": 454, "c": 461, "f": 315}}
TRAIN_SCALES = range(640, 801, 32)


def version_of(config) -> str:
    return "v0.5" if "lvis_v0.5" in Path(str(config)).name else "v1"


def load_shipped(config, options=()):
    """The config as ``loce train`` loads it, without the ImageNet download (``init_cfg=None``)."""
    from loce_cli.engine.config.loading import load_config

    cfg = load_config(Path(config), list(options))
    cfg.model.backbone.init_cfg = None
    return cfg


def check_train_set(cfg, config, indices=(0, -1)):
    """Build ``cfg.data.train`` and run the config's train pipeline on ``indices``; returns the dataset."""
    import loce_cli.mmdet_ext  # noqa: F401
    from loce_cli.mmdet_ext.unwrap import unwrap_dataset
    from mmdet.datasets import build_dataset

    version = version_of(config)
    n = CLASSES[version]
    ds = build_dataset(cfg.data.train)
    base = unwrap_dataset(ds)
    box_only = "faster_rcnn" in Path(str(config)).name
    assert len(base.CLASSES) == n == cfg.model.roi_head.bbox_head.num_classes
    assert (cfg.model.roi_head.get("mask_head") is None) if box_only else cfg.model.roi_head.mask_head.num_classes == n
    assert base.meta is not None and base.meta["version"] == version  # read from loce_meta.json
    assert {g: base.class_frequency.count(g) for g in "rcf"} == GROUPS[version]
    assert len(base) == 1000  # every training image has annotations: none filtered
    if type(ds).__name__ == "ClassBalancedDataset":
        assert len(ds) >= len(base) and set(ds.repeat_indices) == set(range(len(base)))  # RFS: repeats only
    for i in indices:
        item = ds[i % len(ds)]
        img = item["img"].data
        meta = item["img_metas"].data
        h, w = meta["img_shape"][:2]
        assert img.shape[0] == 3 and img.shape[1] % 32 == 0 and img.shape[2] % 32 == 0
        # (1333, s), s in 640..800 step 32, keep ratio: the short side is s unless the long side hits 1333
        assert min(h, w) in {s for s in TRAIN_SCALES} or max(h, w) == 1333, (h, w)
        assert max(h, w) <= 1333 and "flip" in meta
        boxes, labels = item["gt_bboxes"].data, item["gt_labels"].data
        assert len(boxes) == len(labels) > 0 and int(labels.max()) < n
        if box_only:  # Faster R-CNN: the pipeline loads no masks (box-only data has none)
            assert "gt_masks" not in item
            continue
        masks = item["gt_masks"].data
        assert len(masks) == len(boxes) and masks.height == img.shape[1] and masks.width == img.shape[2]
        assert int(masks.masks.sum()) > 0
    return ds


def check_test_set(cfg, config, per_folder=1):
    """Build ``cfg.data.test`` and run the config's test pipeline on images of each image folder."""
    import loce_cli.mmdet_ext  # noqa: F401
    from mmdet.datasets import build_dataset

    ds = build_dataset(cfg.data.test, dict(test_mode=True))
    assert len(ds.CLASSES) == CLASSES[version_of(config)] and len(ds) == 100
    by_folder = {}
    for i, info in enumerate(ds.data_infos):
        by_folder.setdefault(info["filename"].split("/")[0], []).append(i)
    assert set(by_folder) == ({"train2017", "val2017"} if version_of(config) == "v1" else {"val2017"})
    for idxs in by_folder.values():
        for i in idxs[:per_folder]:
            item = ds[i]
            img, meta = item["img"][0], item["img_metas"][0].data
            h, w = meta["img_shape"][:2]
            assert img.shape[0] == 3 and (min(h, w) == 800 or max(h, w) == 1333), (h, w)
            assert meta["ori_shape"][:2] == (ds.data_infos[i]["height"], ds.data_infos[i]["width"])
    return ds


def cls_outputs(config, n: int) -> int:
    """Classifier outputs: C + 1 (softmax with background; EQLv2's and the federated loss's sigmoid with an
    objectness column), C + 2 for Seesaw (two objectness logits)."""
    return n + 2 if "seesaw" in Path(str(config)).name else n + 1


def check_model_shapes(cfg, config):
    """The config's model: heads sized for the data's classes; LOCE: the full-size memory, as configured."""
    import torch

    import loce_cli.mmdet_ext  # noqa: F401
    from mmdet.models import build_detector

    n = CLASSES[version_of(config)]
    model = build_detector(cfg.model)
    assert model.backbone.depth == (101 if "r101" in Path(config).name else 50)
    head = model.roi_head.bbox_head
    assert head.fc_cls.out_features == cls_outputs(config, n) and head.fc_reg.out_features == 4 * n
    if "faster_rcnn" in Path(config).name:
        assert not model.roi_head.with_mask and type(model).__name__ == "LoceFasterRCNN"
    else:
        assert model.roi_head.mask_head.conv_logits.out_channels == n
    if Path(config).name.startswith("loce_"):
        memory = model.roi_head.memory
        assert tuple(memory.feats.shape) == (n, 80, 256, 7, 7) and memory.dtype == torch.float32
        assert memory.feats.numel() * memory.feats.element_size() == n * 80 * 256 * 49 * 4  # v1: 4.83 GB
        assert head.score_tracker.scores.shape == (n + 1,)
    return model


@pytest.mark.parametrize("name", CONFIGS)
def test_config_runs_on_lvis_shaped_data(in_lvis_workdir, name):
    cfg = load_shipped(LVIS / name)
    check_train_set(cfg, name)
    check_test_set(cfg, name)
    check_model_shapes(cfg, name)


def test_v1_loce_memory_is_the_papers_size(in_lvis_workdir):
    cfg = load_shipped(LVIS / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py")
    model = check_model_shapes(cfg, "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py")
    nbytes = model.roi_head.memory.feats.numel() * 4
    assert nbytes == 1203 * 80 * 256 * 7 * 7 * 4 and round(nbytes / 1e9, 1) == 4.8


OLD_LOCE_V05 = """
_base_ = '{base}'
data_root = 'data/lvis_v0.5/'
data = dict(
    train=dict(ann_file=data_root + 'annotations/lvis_v0.5_train.json', img_prefix=data_root + 'train2017/'),
    val=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'),
    test=dict(ann_file=data_root + 'annotations/lvis_v0.5_val.json', img_prefix=data_root + 'val2017/'))
model = dict(roi_head=dict(bbox_head=dict(num_classes=1230), mask_head=dict(num_classes=1230)))
"""


def test_old_v05_loce_config_fails_this_test(in_lvis_workdir, tmp_path):
    """The v0.5 LOCE config as it was (img_prefix = data_root + 'train2017/' over coco_url paths): its first
    image is looked up under train2017/train2017/ and the check above fails."""
    old = tmp_path / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5.py"
    old.write_text(OLD_LOCE_V05.format(base=LVIS / "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"))
    cfg = load_shipped(old)
    with pytest.raises(ImageDataError, match=r"image \S*train2017/train2017/\S* does not exist"):  # one line
        check_train_set(cfg, old.name)
    with pytest.raises(ImageDataError, match=r"image \S*val2017/val2017/\S* does not exist"):
        check_test_set(cfg, old.name)


@pytest.mark.parametrize("option", [
    "data.train.ann_file=data/lvis_v1/annotations/lvis_v1_val.json",  # the val file as the training set
    "model.roi_head.bbox_head.num_classes=1230",
    "model.roi_head.mask_head.num_classes=1230",
])
def test_a_wrong_key_in_a_config_fails_this_test(in_lvis_workdir, option):
    cfg = load_shipped(LVIS / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py", [option])
    with pytest.raises(AssertionError):
        check_train_set(cfg, "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py", indices=())
