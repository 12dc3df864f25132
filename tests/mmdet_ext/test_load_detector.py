"""Inference loads a LOCE checkpoint without its feature memory (training state: 4.8 GB at LVIS v1), and gives
exactly what mmdet's init_detector gives."""

from __future__ import annotations

import numpy as np
import torch
from mmcv import Config

from tests.mmdet_ext import tiny


def _saved(tmp_path, loce=True):
    from mmcv.runner import save_checkpoint

    torch.manual_seed(0)
    cfg = Config(dict(model=tiny.model_cfg(num_classes=5, loce=loce)))
    model = tiny.build(cfg.model)
    if loce:  # a filled memory and warm scores, as a fine-tune leaves them
        memory = model.roi_head.memory
        memory.push(torch.randn(40, 32, 7, 7), torch.arange(40) % 5, torch.randn(40, 4))
        model.roi_head.bbox_head.score_tracker.scores.uniform_(0.1, 0.9)
    path = tmp_path / "ckpt.pth"
    save_checkpoint(model, str(path), meta=dict(CLASSES=tuple(f"c{i}" for i in range(5))))
    return cfg, path, model


def _detect(model, seed=1):
    img = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    meta = dict(img_shape=(64, 64, 3), ori_shape=(64, 64, 3), pad_shape=(64, 64, 3), scale_factor=np.ones(4,
                dtype=np.float32), flip=False, batch_input_shape=(64, 64))
    with torch.no_grad():
        return model(img=[img], img_metas=[[meta]], return_loss=False, rescale=True)


def test_same_detections_as_init_detector_without_the_memory(tmp_path, capsys):
    from mmdet.apis import init_detector

    from loce_cli.mmdet_ext.inference import load_detector

    cfg, path, trained = _saved(tmp_path)
    ours = load_detector(cfg, path, "cpu")
    stock = init_detector(cfg, str(path), device="cpu")
    a, b = _detect(ours)[0], _detect(stock)[0]
    for boxes_a, boxes_b in zip(a[0], b[0]):
        np.testing.assert_array_equal(boxes_a, boxes_b)
    assert sum(len(x) for x in a[0]) > 0
    for masks_a, masks_b in zip(a[1], b[1]):
        assert all(np.array_equal(x, y) for x, y in zip(masks_a, masks_b))
    assert ours.CLASSES == stock.CLASSES == tuple(f"c{i}" for i in range(5))
    memory = ours.roi_head.memory
    assert memory.queue_size == 1 and memory.is_empty()  # the checkpoint's 16-slot memory was not loaded
    assert stock.roi_head.memory.nbytes() > 10 * memory.nbytes()
    assert torch.equal(ours.roi_head.bbox_head.score_tracker.scores,
                       trained.roi_head.bbox_head.score_tracker.scores)  # other LOCE state still loads
    assert "warning" not in capsys.readouterr().err
    assert cfg.model.roi_head.memory.queue_size == 16  # the caller's config is left alone


def test_mismatched_checkpoint_is_reported(tmp_path, capsys):
    from loce_cli.mmdet_ext.inference import load_detector

    cfg, path, _ = _saved(tmp_path, loce=False)  # a stock Mask R-CNN checkpoint into a LOCE model: it fits
    load_detector(Config(dict(model=tiny.model_cfg(num_classes=5, loce=True))), path, "cpu")
    assert "warning" not in capsys.readouterr().err
    other = Config(dict(model=tiny.model_cfg(num_classes=5, loce=True)))
    other.model.neck.out_channels = 32
    other.model.backbone.depth = 34  # more blocks than the checkpoint has
    load_detector(other, path, "cpu")
    assert "does not fit the config's model exactly" in capsys.readouterr().err
