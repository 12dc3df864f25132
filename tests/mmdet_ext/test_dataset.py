"""The synthetic data through mmdet's own data pipeline (boxes, labels and masks)."""

import json

import numpy as np
import pytest

import loce_cli.mmdet_ext  # noqa: F401  (registers LoceLVISDataset, applies numpy compat)
from tests.conftest import TINY

PIPELINE = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
    dict(type="Resize", img_scale=(96, 96), keep_ratio=True),
    dict(type="RandomFlip", flip_ratio=0.0),
    dict(type="Normalize", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True),
    dict(type="Pad", size_divisor=32),
    dict(type="DefaultFormatBundle"),
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks"]),
]


def _build(root, split="train", **kw):
    from mmdet.datasets import build_dataset

    cfg = dict(type="LoceLVISDataset", ann_file=str(root / "annotations" / f"lvis_v1_{split}.json"),
               img_prefix=str(root), pipeline=PIPELINE, **kw)
    return build_dataset(cfg)


def test_loce_dataset_reads_classes_and_masks(tiny_dataset):
    ds = _build(tiny_dataset)
    data = json.loads((tiny_dataset / "annotations" / "lvis_v1_train.json").read_text())
    assert ds.CLASSES == tuple(c["name"] for c in data["categories"])
    assert ds.class_frequency == tuple(c["frequency"] for c in data["categories"])
    with_objects = {a["image_id"] for a in data["annotations"]}
    assert len(ds) == len(with_objects) <= TINY["train_images"]  # mmdet drops images without objects in training
    item = ds[0]
    img = item["img"].data
    boxes = item["gt_bboxes"].data
    labels = item["gt_labels"].data
    masks = item["gt_masks"].data
    assert img.shape[0] == 3 and img.shape[1] % 32 == 0
    assert boxes.shape[0] == labels.shape[0] == len(masks) > 0
    assert int(labels.max()) < len(ds.CLASSES)
    # each mask lies inside its box (rescaled to 96 px) and covers a good part of it
    m = masks.to_ndarray()
    for k in range(len(masks)):
        ys, xs = np.nonzero(m[k])
        x1, y1, x2, y2 = boxes[k].tolist()
        assert xs.min() >= x1 - 1.5 and xs.max() <= x2 + 1.5 and ys.min() >= y1 - 1.5 and ys.max() <= y2 + 1.5
        assert m[k].sum() >= 0.3 * (x2 - x1) * (y2 - y1)


def test_labels_follow_category_ids(tiny_dataset):
    ds = _build(tiny_dataset)
    info = ds.get_ann_info(0)
    cat_of_label = {label: cat for cat, label in ds.cat2label.items()}
    raw = ds.coco.load_anns(ds.coco.get_ann_ids(img_ids=[ds.data_infos[0]["id"]]))
    assert sorted(cat_of_label[int(x)] for x in info["labels"]) == sorted(a["category_id"] for a in raw)


def test_stock_mmdet_lvis_v1_dataset_resolves_images(tiny_dataset):
    from mmdet.datasets import build_dataset

    data = json.loads((tiny_dataset / "annotations" / "lvis_v1_val.json").read_text())
    names = [c["name"] for c in data["categories"]]
    ds = build_dataset(dict(type="LVISV1Dataset", ann_file=str(tiny_dataset / "annotations" / "lvis_v1_val.json"),
                            img_prefix=str(tiny_dataset), pipeline=PIPELINE, classes=names))
    assert ds[0]["gt_masks"].data.masks.shape[0] > 0


def test_mismatched_classes_are_refused(tiny_dataset):
    with pytest.raises(ValueError, match="differ from"):
        _build(tiny_dataset, classes=["a", "b"])
