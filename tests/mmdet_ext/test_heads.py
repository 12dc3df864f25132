"""LOCE's mmdet components on a tiny Mask R-CNN, on CPU."""

import pytest
import torch

from tests.mmdet_ext import tiny


def _train_step(model, data, **kw):
    imgs, metas, boxes, labels, masks = data
    model.train()
    losses = model.forward_train(imgs, metas, boxes, labels, gt_masks=masks, **kw)
    total, _ = model._parse_losses(losses)
    return losses, total


def test_forward_train_finite_losses_fills_memory_and_updates_scores():
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg())
    roi = model.roi_head
    before = roi.score_tracker.scores.clone()
    losses, total = _train_step(model, tiny.batch())
    for key in ("loss_cls", "loss_bbox", "loss_mask", "loss_rpn_cls"):
        assert key in losses
    assert torch.isfinite(total)
    total.backward()
    # 5 ground truths x 16 jitters pushed, each queue capped at its size (16 here)
    counts = roi.memory.counts
    assert 16 <= int(counts.sum()) <= 80 and int(counts.max()) <= 16
    assert not torch.equal(before, roi.score_tracker.scores)
    assert roi.score_tracker.scores[-1].item() == pytest.approx(0.01)
    # second step draws 8 x 4 features from the memory into the box head batch
    losses, total = _train_step(model, tiny.batch(seed=1))
    assert torch.isfinite(total)


def test_memory_features_enter_the_box_head_batch(monkeypatch):
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg())
    _train_step(model, tiny.batch())
    seen = {}
    real = model.roi_head.bbox_head.forward

    def spy(x):
        seen["n"] = x.shape[0]
        return real(x)

    monkeypatch.setattr(model.roi_head.bbox_head, "forward", spy)
    _train_step(model, tiny.batch(seed=1))
    # 2 images x 64 sampled RoIs + 8 x 4 memory features
    assert seen["n"] == 2 * 64 + 32


@pytest.mark.parametrize("gts", [(0, 2), (0, 0)])
def test_images_or_batches_without_ground_truth(gts):
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg())
    _train_step(model, tiny.batch(gts=(2, 2)))  # give the memory something to sample
    losses, total = _train_step(model, tiny.batch(gts=gts, seed=2))
    assert torch.isfinite(total)
    total.backward()


def test_memory_disabled_keeps_score_tracking():
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(memory=dict(enabled=False)))
    _train_step(model, tiny.batch())
    assert int(model.roi_head.memory.counts.sum()) == 0
    assert not torch.allclose(model.roi_head.score_tracker.scores, torch.full((6,), 0.01))


def test_checkpoint_round_trip_restores_scores_and_memory_bit_exactly(tmp_path):
    from mmcv.runner import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(memory=dict(dtype="float16")))
    for seed in range(3):
        _train_step(model, tiny.batch(seed=seed))
    save_checkpoint(model, str(tmp_path / "loce.pth"))
    fresh = tiny.build(tiny.model_cfg(memory=dict(dtype="float16")))
    load_checkpoint(fresh, str(tmp_path / "loce.pth"), map_location="cpu", strict=True)
    a, b = model.state_dict(), fresh.state_dict()
    for key in [k for k in a if "score_tracker" in k or "memory" in k]:
        x, y = a[key], b[key]
        if x.is_floating_point():
            x, y = x.view(torch.uint8), y.view(torch.uint8)
        assert torch.equal(x, y), key
    assert not fresh.roi_head.memory.is_empty()


def test_base_checkpoint_in_stock_mmdet_layout_loads_strictly(tmp_path):
    """A stock Mask R-CNN checkpoint (Shared2FCBBoxHead + FCNMaskHead names, no LOCE state) loads into the LOCE
    model with strict=True: same parameter names, LOCE state kept fresh."""
    from mmcv.runner import load_checkpoint, save_checkpoint

    stock = tiny.build(tiny.model_cfg(loce=False))
    save_checkpoint(stock, str(tmp_path / "base.pth"))
    model = tiny.build(tiny.model_cfg())
    load_checkpoint(model, str(tmp_path / "base.pth"), map_location="cpu", strict=True)
    for name, p in stock.state_dict().items():
        assert torch.equal(model.state_dict()[name], p), name
    assert model.roi_head.memory.is_empty()
    assert torch.allclose(model.roi_head.score_tracker.scores, torch.full((6,), 0.01))
    model.eval()
    imgs, metas, *_ = tiny.batch()
    with torch.no_grad():
        out = model.simple_test(imgs, metas, rescale=True)
    assert len(out) == 2 and len(out[0][0]) == 5  # (bbox, segm) per image, one array per class


def test_normed_mask_head_is_cosine_times_scale():
    from mmdet.models import build_head

    head = build_head(dict(type="NormedMaskHead", num_convs=1, in_channels=4, conv_out_channels=4, num_classes=3,
                           loss_mask=dict(type="CrossEntropyLoss", use_mask=True, loss_weight=1.0)))
    head.init_weights()
    x = torch.randn(2, 4, 7, 7)
    out = head(x)
    feat = head.relu(head.upsample(head.convs[0](x)))
    w = head.conv_logits.weight.flatten(1)
    cos = torch.einsum("nchw,kc->nkhw", torch.nn.functional.normalize(feat, dim=1),
                       torch.nn.functional.normalize(w, dim=1))
    assert torch.allclose(out, 20 * cos + head.conv_logits.bias.view(1, -1, 1, 1), atol=1e-5)
    assert "conv_logits.weight" in head.state_dict()


def test_finetune_freezing_and_norm_eval():
    model = tiny.build(tiny.model_cfg(trainable=["fc_cls", "fc_reg", "rpn", "mask_head"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(any(k in n for k in ("fc_cls", "fc_reg", "rpn", "mask_head")) for n in trainable)
    assert "roi_head.bbox_head.shared_fcs.0.weight" in model.frozen_params
    assert any(n.startswith("backbone.") for n in model.frozen_params)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    _, total = _train_step(model, tiny.batch())
    total.backward()
    assert model.backbone.conv1.weight.grad is None
    assert model.roi_head.bbox_head.fc_cls.weight.grad is not None


def test_equilibrium_loss_registered_and_needs_scores():
    from mmdet.models import build_loss

    loss = build_loss(dict(type="EquilibriumLoss", loss_weight=2.0))
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 2])
    s = torch.tensor([0.2, 0.3, 0.01])
    from loce_cli.core.equilibrium_loss import equilibrium_loss

    assert torch.allclose(loss(logits, labels, mean_scores=s), 2 * equilibrium_loss(logits, labels, s))
    with pytest.raises(ValueError, match="mean_scores"):
        loss(logits, labels)


def test_roi_head_requires_loce_box_head():
    cfg = tiny.model_cfg()
    cfg["roi_head"]["bbox_head"]["type"] = "Shared2FCBBoxHead"
    cfg["roi_head"]["bbox_head"]["loss_cls"] = dict(type="CrossEntropyLoss", loss_weight=1.0)
    with pytest.raises(TypeError, match="LoceBBoxHead"):
        tiny.build(cfg)


def test_memory_roi_features_equal_the_box_extractor():
    from mmdet.core import bbox2roi

    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg())
    imgs, metas, boxes, *_ = tiny.batch(gts=(6, 4), size=128)
    with torch.no_grad():
        x = model.extract_feat(imgs)
        rois = bbox2roi([b * 1.5 for b in boxes])  # spread over several FPN levels
        ours = model.roi_head.memory_roi_features(x, rois)
        ref = model.roi_head.bbox_roi_extractor(x[:4], rois)
    assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-6)
