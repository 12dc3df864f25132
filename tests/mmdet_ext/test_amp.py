"""Mixed precision on the CPU: what stays fp32 under bf16 autocast (EBL's input, the tracker update, the mask
loss), the memory's dtypes, the half-safe normalisation, mmcv's ops under autocast, and the GradScaler hook
(a real ``torch.amp.GradScaler`` on the CPU) against ``NonFiniteLossHook``."""

import logging

import pytest
import torch
import torch.nn.functional as F

from tests.mmdet_ext import tiny


def _train_step(model, data):
    imgs, metas, boxes, labels, masks = data
    model.train()
    losses = model.forward_train(imgs, metas, boxes, labels, gt_masks=masks)
    return model._parse_losses(losses)[0]


def test_under_bf16_autocast_ebl_tracker_and_mask_loss_see_fp32_and_memory_keeps_its_dtype(monkeypatch):
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(memory=dict(dtype="float16")))  # stored fp16, batch bf16: both must hold
    roi = model.roi_head
    seen = {}

    def pre(name):
        def hook(module, args, kwargs=None):
            seen[name] = (args[0].dtype, torch.is_autocast_enabled("cpu"))
        return hook

    roi.bbox_head.loss_cls.register_forward_pre_hook(pre("ebl"))
    real_update = roi.score_tracker.update

    def update(labels, means, weights=None, **kw):
        seen["tracker"] = (means.dtype, torch.is_autocast_enabled("cpu"), roi.score_tracker.scores.dtype)
        return real_update(labels, means, weights, **kw)

    monkeypatch.setattr(roi.score_tracker, "update", update)
    real_pairs = roi._score_pairs

    def pairs(cls_score, *a):
        seen["softmax_in"] = cls_score.dtype
        return real_pairs(cls_score, *a)

    monkeypatch.setattr(roi, "_score_pairs", pairs)
    real_mask_loss = type(roi.mask_head).loss

    def mask_loss(self, mask_pred, mask_targets, labels):
        out = real_mask_loss(self, mask_pred, mask_targets, labels)
        seen["mask_loss"] = out["loss_mask"].dtype
        return out

    monkeypatch.setattr(type(roi.mask_head), "loss", mask_loss)
    real_head = roi.bbox_head.forward

    def head(x):
        seen["head_in"] = (x.dtype, x.shape[0])
        return real_head(x)

    monkeypatch.setattr(roi.bbox_head, "forward", head)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        first = _train_step(model, tiny.batch())  # fills the memory
        total = _train_step(model, tiny.batch(seed=1))  # draws 8 x 4 stored features into the batch
    assert torch.isfinite(first) and torch.isfinite(total)
    total.backward()
    # the box head ran in bf16 (autocast is on) ...
    assert seen["head_in"] == (torch.bfloat16, 2 * 64 + 32)  # memory rows cast to the batch's dtype on append
    # ... but EBL, the softmax feeding the tracker and the tracker update are fp32, outside autocast
    assert seen["ebl"] == (torch.float32, False)
    assert seen["softmax_in"] == torch.float32
    assert seen["tracker"] == (torch.float32, False, torch.float32)
    assert seen["mask_loss"] == torch.float32
    assert roi.memory.flat_feats.dtype == torch.float16 and int(roi.memory.counts.sum()) > 0
    assert torch.isfinite(roi.score_tracker.scores).all()


def test_safe_normalize_in_half_precision_with_tiny_norms():
    from loce_cli.mmdet_ext.heads import safe_normalize

    torch.manual_seed(0)
    x = torch.randn(2, 64, 5, 5) * 1e-5  # fp16: squares underflow to 0 and eps=1e-12 is 0 in fp16
    x[0, :, 0, 0] = 0.0  # an all-zero position: 0, not NaN
    ref = 20.0 * F.normalize(x.double(), dim=1)
    naive = 20.0 * F.normalize(x.half(), dim=1)
    assert not torch.isfinite(naive).all()  # what the head did before: NaN in fp16
    for dtype, tol in ((torch.float16, 2e-2), (torch.bfloat16, 2e-1)):
        out = safe_normalize(x.to(dtype), dim=1, scale=20.0)
        assert out.dtype == dtype and torch.isfinite(out).all()
        assert torch.allclose(out.double(), ref, atol=tol), dtype
        assert float(out[0, :, 0, 0].abs().max()) == 0.0
    # fp32 inputs: exactly the former arithmetic (checkpoints' outputs unchanged)
    assert torch.equal(safe_normalize(x, dim=1, scale=20.0), 20.0 * F.normalize(x, dim=1))


def test_normed_mask_head_forward_is_finite_in_fp16_with_tiny_features():
    model = tiny.build(tiny.model_cfg())
    head = model.roi_head.mask_head.half()
    x = torch.full((3, tiny.FPN, 14, 14), 1e-4, dtype=torch.float16)
    with torch.no_grad():
        out = head(x)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_mmcv_roi_align_and_nms_take_half_inputs_as_fp32():
    import loce_cli.mmdet_ext  # noqa: F401  (installs the wrappers)
    from mmcv.ops import RoIAlign, nms

    torch.manual_seed(0)
    feats = torch.randn(1, 8, 32, 32).bfloat16()
    rois = torch.tensor([[0, 1.5, 2.0, 20.0, 25.5], [0, 0.0, 0.0, 31.0, 31.0]])
    layer = RoIAlign(7, spatial_scale=1.0, sampling_ratio=2)
    f = feats.float().requires_grad_()
    ref = layer(f, rois)
    ref.sum().backward()
    h = feats.clone().requires_grad_()
    out = layer(h, rois)  # mmcv's CPU kernel alone raises "expected scalar type Float but found BFloat16"
    out.sum().backward()
    assert out.dtype == torch.bfloat16 and torch.equal(out, ref.bfloat16())
    assert h.grad.dtype == torch.bfloat16 and torch.equal(h.grad, f.grad.bfloat16())
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep_ref = nms(boxes, scores, 0.5)
    _, keep = nms(boxes.bfloat16(), scores.bfloat16(), 0.5)
    assert keep.tolist() == keep_ref.tolist() == [0, 2]


class _Runner:
    """What the two hooks read of mmcv's runner: a real optimizer, model, log buffer and logger."""

    def __init__(self, model, amp, loss):
        from mmcv.runner import LogBuffer

        self.model, self.amp = model, amp
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        self.outputs = dict(loss=loss, log_vars=dict(loss=float(loss.detach())), num_samples=1)
        self.log_buffer = LogBuffer()
        self.logger = logging.getLogger("test_amp")
        self.iter, self.epoch = 6, 0


def test_scaler_skip_is_not_a_failure_but_a_non_finite_loss_stops_naming_the_iteration():
    from loce_cli.mmdet_ext.amp import AmpOptimizerHook, AmpState
    from loce_cli.mmdet_ext.runner.loss_guard import NonFiniteLossError, NonFiniteLossHook

    model = torch.nn.Linear(4, 1)
    before = model.weight.detach().clone()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127)  # a real scaler: scaled grads overflow to inf
    amp = AmpState("fp16", "cpu", "dynamic", scaler=scaler)
    loss = (model(torch.full((1, 4), 1e3)) ** 2).sum() + 1e3
    runner = _Runner(model, amp, loss)
    NonFiniteLossHook().after_train_iter(runner)  # the loss value is finite: no stop
    AmpOptimizerHook(grad_clip=dict(max_norm=10.0)).after_train_iter(runner)
    assert torch.equal(model.weight, before)  # the step was skipped ...
    assert amp.skipped == 1 and scaler.get_scale() == 2.0 ** 126  # ... counted, the scale backed off
    # a normal step: the weights move, nothing counted
    scaler.update(1.0)
    runner.outputs = dict(loss=(model(torch.ones(1, 4)) ** 2).sum(), log_vars={}, num_samples=1)
    AmpOptimizerHook().after_train_iter(runner)
    assert not torch.equal(model.weight, before) and amp.skipped == 1
    # the scaler's state survives a checkpoint (weights-only load)
    import io

    buf = io.BytesIO()
    torch.save(amp.state_dict(), buf)
    buf.seek(0)
    again = AmpState("fp16", "cpu", "dynamic", scaler=torch.amp.GradScaler("cpu"))
    again.load_state_dict(torch.load(buf, weights_only=True))
    assert again.scaler.get_scale() == scaler.get_scale() == 1.0 and again.skipped == 1
    # a non-finite loss value still stops the run, naming the iteration
    runner.outputs = dict(loss=torch.tensor(float("nan")), log_vars=dict(loss_cls=float("nan")), num_samples=1)
    with pytest.raises(NonFiniteLossError, match="iteration 7"):
        NonFiniteLossHook().after_train_iter(runner)


def test_static_loss_scale_stays_put_after_a_skip():
    from loce_cli.mmdet_ext.amp import AmpOptimizerHook, AmpState

    model = torch.nn.Linear(4, 1)
    amp = AmpState("fp16", "cpu", 512.0, scaler=torch.amp.GradScaler("cpu", init_scale=512.0))
    runner = _Runner(model, amp, (model(torch.full((1, 4), 1e30)) ** 2).sum())  # inf gradients
    AmpOptimizerHook().after_train_iter(runner)
    assert amp.skipped == 1 and amp.scaler.get_scale() == 512.0  # mmcv's meaning of a float: static
