"""RoIAlign / NMS through torchvision (what runs on CUDA when mmcv-full has no CUDA ops), compared on the CPU with
mmcv's own compiled kernels: the routing is forced for CPU tensors with ``cuda_ops.ROUTE_CPU``."""

import pytest
import torch

import loce_cli.mmdet_ext  # noqa: F401  (installs the routing)
from loce_cli.mmdet_ext import cuda_ops
from tests.mmdet_ext import tiny


@pytest.fixture
def routed(monkeypatch):
    def run(fn):
        monkeypatch.setattr(cuda_ops, "ROUTE_CPU", False)
        ref = fn()
        monkeypatch.setattr(cuda_ops, "ROUTE_CPU", True)
        got = fn()
        monkeypatch.setattr(cuda_ops, "ROUTE_CPU", False)
        return ref, got

    return run


def _rois(n, size, g):
    xy = torch.rand(n, 2, generator=g) * size * 0.7
    wh = torch.rand(n, 2, generator=g) * size * 0.4 + 0.5
    idx = torch.randint(0, 2, (n, 1), generator=g).float()
    return torch.cat([idx, xy, xy + wh], 1)


@pytest.mark.parametrize("aligned,sampling_ratio", [(True, 0), (True, 2), (False, 0), (False, 2)])
def test_roi_align_layer_forward_and_gradient_match_mmcv(routed, aligned, sampling_ratio):
    from mmcv.ops import RoIAlign

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 4, 16, 20, generator=g)
    rois = _rois(30, 16, g)
    layer = RoIAlign((7, 7), spatial_scale=0.5, sampling_ratio=sampling_ratio, aligned=aligned)

    def step():
        x = feats.clone().requires_grad_(True)
        out = layer(x, rois)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        return out.detach(), x.grad

    (ref_out, ref_grad), (out, grad) = routed(step)
    assert torch.equal(out, ref_out)
    assert torch.allclose(grad, ref_grad, atol=1e-5, rtol=1e-5)


def test_roi_align_function_of_the_mask_targets_matches(routed):
    # mmdet's BitmapMasks.crop_and_resize calls mmcv.ops.roi_align(...) directly, on the proposals' device
    from mmdet.core import BitmapMasks

    g = torch.Generator().manual_seed(1)
    masks = BitmapMasks((torch.rand(5, 40, 40, generator=g) > 0.5).numpy().astype("uint8"), 40, 40)
    boxes = _rois(5, 40, g)[:, 1:].numpy()
    inds = torch.arange(5).numpy()
    ref, got = routed(lambda: torch.from_numpy(masks.crop_and_resize(boxes, (28, 28), inds).to_ndarray()))
    assert torch.equal(ref, got)


def test_roi_align_max_mode_is_refused_with_a_hint(monkeypatch):
    from mmcv.ops import RoIAlign

    monkeypatch.setattr(cuda_ops, "ROUTE_CPU", True)
    with pytest.raises(RuntimeError, match="pool_mode='max'.*LOCE_CUDA=1"):
        RoIAlign((2, 2), pool_mode="max")(torch.ones(1, 1, 4, 4), torch.tensor([[0.0, 0, 0, 3, 3]]))


@pytest.mark.parametrize("offset", [0, 1])
def test_nms_and_batched_nms_match_mmcv(routed, offset):
    from mmcv.ops import batched_nms, nms

    g = torch.Generator().manual_seed(2)
    boxes = _rois(300, 100, g)[:, 1:]
    scores = torch.rand(300, generator=g)
    classes = torch.randint(0, 7, (300,), generator=g)
    ref, got = routed(lambda: nms(boxes, scores, 0.5, offset=offset))
    assert torch.equal(ref[1], got[1]) and torch.equal(ref[0], got[0])
    ref, got = routed(lambda: nms(boxes, scores, 0.3, offset=offset, score_threshold=0.4, max_num=20))
    assert torch.equal(ref[1], got[1]) and got[1].numel() == 20
    ref, got = routed(lambda: batched_nms(boxes, scores, classes, dict(type="nms", iou_threshold=0.6)))
    assert torch.equal(ref[1], got[1]) and torch.equal(ref[0], got[0])


def test_mask_rcnn_train_and_test_steps_match(routed):
    """The whole LOCE Mask R-CNN on the routed ops: same losses, same detections."""
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    imgs, metas, boxes, labels, masks = tiny.batch()

    def step():
        model.load_state_dict(state)
        model.train()
        torch.manual_seed(1)
        losses = model.forward_train(imgs, metas, boxes, labels, gt_masks=masks)
        total, _ = model._parse_losses(losses)
        total.backward()
        grad = model.neck.fpn_convs[0].conv.weight.grad.clone()
        model.zero_grad()
        model.eval()
        with torch.no_grad():
            dets = model.simple_test(imgs[:1], metas[:1], rescale=True)[0]
        return total.detach(), grad, dets

    (ref_total, ref_grad, ref_dets), (total, grad, dets) = routed(step)
    assert torch.allclose(total, ref_total, atol=1e-5)
    assert torch.allclose(grad, ref_grad, atol=1e-5, rtol=1e-4)
    ref_boxes, boxes_ = ref_dets[0], dets[0]
    assert [len(b) for b in boxes_] == [len(b) for b in ref_boxes]
    assert all((abs(a - b) < 1e-4).all() for a, b in zip(boxes_, ref_boxes) if len(a))


@pytest.mark.gpu
def test_on_cuda_roi_align_and_nms_match_mmcv_on_the_cpu():
    """On a GPU: whichever path runs there (mmcv's CUDA kernels or torchvision's), the results are mmcv's."""
    from mmcv.ops import RoIAlign, batched_nms

    g = torch.Generator().manual_seed(3)
    feats = torch.randn(2, 8, 32, 40, generator=g)
    rois = _rois(64, 32, g)
    layer = RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0, aligned=True)
    x_cpu = feats.clone().requires_grad_(True)
    ref = layer(x_cpu, rois)
    ref.square().sum().backward()
    x_gpu = feats.cuda().requires_grad_(True)
    out = layer(x_gpu, rois.cuda())
    out.square().sum().backward()
    assert torch.allclose(out.cpu(), ref.detach(), atol=1e-5)
    assert torch.allclose(x_gpu.grad.cpu(), x_cpu.grad, atol=1e-4, rtol=1e-4)
    boxes = _rois(500, 200, g)[:, 1:]
    scores = torch.rand(500, generator=g)
    classes = torch.randint(0, 9, (500,), generator=g)
    cfg = dict(type="nms", iou_threshold=0.5)
    _, keep = batched_nms(boxes, scores, classes, cfg)
    _, keep_gpu = batched_nms(boxes.cuda(), scores.cuda(), classes.cuda(), cfg)
    assert torch.equal(keep_gpu.cpu(), keep)
