"""Inference for AP-fixed: with no per-image cap, the 300-per-image output is the prefix of the uncapped one (so one
inference serves every protocol), and the per-class cap keeps each class's top k per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmcv import Config

from tests.mmdet_ext import tiny


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = Config(dict(model=tiny.model_cfg(num_classes=5, loce=False)))
    m = tiny.build(cfg.model)
    m.eval()
    return m


def _data(seed):
    img = torch.randn(1, 3, 64, 80, generator=torch.Generator().manual_seed(seed))
    meta = dict(img_shape=(64, 80, 3), ori_shape=(64, 80, 3), pad_shape=(64, 80, 3),
                scale_factor=np.ones(4, dtype=np.float32), flip=False, batch_input_shape=(64, 80))
    return dict(img=[img], img_metas=[[meta]])


def _run(model, data, max_per_img=None, per_class=None, keep_per_image=300, cap=None):
    from loce_cli.mmdet_ext.mask_rle import detect
    from loce_cli.mmdet_ext.per_class_cap import per_class_cap

    cfg = model.roi_head.test_cfg
    before = cfg.max_per_img
    try:
        with torch.no_grad():
            if per_class is not None:
                with per_class_cap(model, per_class, keep_per_image, cap):
                    assert cfg.max_per_img == -1
                    return detect(model, data)[0]
            cfg.max_per_img = max_per_img
            return detect(model, data)[0]
    finally:
        cfg.max_per_img = before


@pytest.mark.parametrize("seed", [1, 2])
def test_capped_output_is_the_prefix_of_the_uncapped_one(model, seed):
    data = _data(seed)
    cap = 40
    boxes, rles = _run(model, data, max_per_img=cap)
    all_boxes, all_rles = _run(model, data, per_class=10_000)
    total = sum(len(b) for b in all_boxes)
    assert total > 3 * cap  # the cap matters on this image
    assert sum(len(b) for b in boxes) == cap
    scores = np.concatenate([b[:, 4] for b in all_boxes])
    threshold = np.sort(scores)[::-1][cap - 1]
    for label, (b, r, ab, ar) in enumerate(zip(boxes, rles, all_boxes, all_rles)):
        n = int((ab[:, 4] >= threshold).sum())  # this class's share of the image's top `cap`
        assert b.shape[0] == n, label
        np.testing.assert_array_equal(b, ab[:n])  # same boxes, scores, order
        assert [x["counts"] for x in r] == [x["counts"] for x in ar[:n]]  # same masks, byte for byte
    assert model.roi_head.test_cfg.max_per_img == 300  # restored
    assert "simple_test_bboxes" not in vars(model.roi_head)


def test_per_class_cap_keeps_each_class_top_k(model):
    data = _data(3)
    full, _ = _run(model, data, per_class=10_000)
    capped, capped_rles = _run(model, data, per_class=3, keep_per_image=0)
    assert any(len(b) > 3 for b in full)
    for b, r, f in zip(capped, capped_rles, full):
        assert len(b) == min(3, len(f)) == len(r)
        np.testing.assert_array_equal(b, f[:len(b)])  # the class's highest scores, in order


def test_keep_top_per_class_ties_and_empty():
    from loce_cli.mmdet_ext.per_class_cap import keep_top_per_class

    boxes = torch.tensor([[0, 0, 1, 1, s] for s in (0.9, 0.5, 0.5, 0.5, 0.4, 0.3)], dtype=torch.float32)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    assert keep_top_per_class(boxes, labels, 2).tolist() == [0, 1, 2, 3]  # equal scores: the earlier row
    assert keep_top_per_class(boxes[:0], labels[:0], 2).numel() == 0


def test_running_class_threshold_is_lossless_for_both_protocols(model):
    """Over several images with one RunningCap (k per class, thresholds refreshed often), the emitted detections
    hold each class's top k over all images and each image's top `keep` — what the uncapped output holds — while
    dropping detections below the running thresholds."""
    from loce_cli.mmdet_ext.per_class_cap import RunningCap

    k, keep = 15, 10
    cap = RunningCap(5, k, keep, min_buffer=8)
    full, emitted = [], []
    for seed in range(4, 10):
        data = _data(seed)
        full.append(_run(model, data, per_class=10_000)[0])
        emitted.append(_run(model, data, per_class=k, keep_per_image=keep, cap=cap)[0])
    assert cap.dropped_by_threshold > 0
    assert sum(len(b) for img in emitted for b in img) < sum(len(b) for img in full for b in img)

    def top_per_class(images):
        return [sorted((float(s) for img in images for s in img[c][:, 4]), reverse=True)[:k] for c in range(5)]

    assert top_per_class(emitted) == top_per_class(full)
    for f, e in zip(full, emitted):
        image_top = sorted((float(s) for b in f for s in b[:, 4]), reverse=True)[:keep]
        got = sorted((float(s) for b in e for s in b[:, 4]), reverse=True)[:keep]
        assert got == image_top
        for fb, eb in zip(f, e):  # what is emitted of a class is a subset of its uncapped output, in order
            rows = {tuple(r) for r in fb.tolist()}
            assert all(tuple(r) in rows for r in eb.tolist())
