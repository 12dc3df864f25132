"""On CUDA, LOCE's per-step core work must not synchronise with the host.

The ``gpu`` tests check that on a GPU under ``torch.cuda.set_sync_debug_mode("error")``. Without one, the same
step runs on the ``meta`` device, where any read of tensor values on the host (``.item()``, ``.tolist()``,
``bool(t)``, ``.cpu()``) and any op whose output shape depends on the data (``nonzero``, boolean-mask indexing,
``unique``) raises: these are the ops that synchronise a CUDA stream, so this catches them on every CI run.
A dispatch-mode watcher adds the host-to-device copies meta lets through: a tensor made on the host inside the step
and a Python number written by indexing (``t[i] = 0.5``, which on CUDA copies a host scalar: a sync the H200 run
caught in the tracker)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from loce_cli.core.memory_bank import FeatureMemory
from loce_cli.core.proposals import jitter_boxes
from loce_cli.core.score_tracker import MeanScoreTracker


class _NoHostCopies(TorchDispatchMode):
    """Raise on ops that would copy host data to the GPU: CPU tensor inputs, scalars turned into tensors."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.scalar_tensor.default, torch.ops.aten.lift_fresh.default):
            raise RuntimeError(f"host value copied to the device in the step ({func})")
        cpu = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor) and t.device.type == "cpu"]
        if cpu:
            raise RuntimeError(f"host tensor used in the step ({func}, shape {tuple(cpu[0].shape)})")
        return func(*args, **(kwargs or {}))


def _step(dev, dtype, steps=3):
    tracker = MeanScoreTracker(50).to(dev)
    memory = FeatureMemory(50, queue_size=16, feat_shape=(8, 7, 7), dtype=dtype, device=dev)
    gts = torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 12.0, 60.0, 62.0]]).to(dev)
    feats = torch.randn(32, 8, 7, 7, device=dev)
    labels = torch.randint(0, 50, (32,), device=dev)
    with _NoHostCopies():
        for _ in range(steps):
            boxes, idx = jitter_boxes(gts, (64, 64, 3))
            memory.push(feats, labels, torch.randn(32, 4, device=dev))
            f, l, r = memory.sample(tracker.scores)
            tracker.update(*tracker.class_pairs(l, torch.rand(32, device=dev)))  # one pair per drawn class
    return f, l, r, boxes, idx


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_tracker_memory_and_jitter_have_no_host_reads_or_data_dependent_shapes(dtype):
    f, l, r, boxes, idx = _step(torch.device("meta"), dtype)
    assert f.shape == (32, 8, 7, 7) and l.shape == (32,) and r.shape == (32, 4)
    assert boxes.shape == (32, 4) and idx.shape == (32,)


def test_meta_step_catches_a_host_read(monkeypatch):
    # the check above is only worth something if a value read in the step fails on meta
    push = FeatureMemory.push

    def push_then_read(self, *args, **kwargs):
        push(self, *args, **kwargs)
        int(self.counts.sum())  # a `.item()` as an edit might add

    monkeypatch.setattr(FeatureMemory, "push", push_then_read)
    with pytest.raises(RuntimeError, match="meta"):
        _step(torch.device("meta"), torch.float32, steps=1)


def test_meta_step_catches_a_host_scalar_write(monkeypatch):
    # the form of the sync the H200 run found: a Python number assigned by indexing a device tensor
    apply_stats = MeanScoreTracker.apply_stats

    def apply_then_assign(self, stats):
        apply_stats(self, stats)
        self.scores[self.num_classes] = self.bg_score

    monkeypatch.setattr(MeanScoreTracker, "apply_stats", apply_then_assign)
    with pytest.raises(RuntimeError, match="host value copied"):
        _step(torch.device("meta"), torch.float32, steps=1)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_tracker_memory_and_jitter_do_not_sync(dtype):
    dev = torch.device("cuda")
    tracker = MeanScoreTracker(50).to(dev)
    memory = FeatureMemory(50, queue_size=16, feat_shape=(8, 7, 7), dtype=dtype, device=dev)
    gts = torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 12.0, 60.0, 62.0]], device=dev)
    feats = torch.randn(32, 8, 7, 7, device=dev)
    labels = torch.randint(0, 50, (32,), device=dev)
    memory.push(feats, labels)  # first push (warms the caching allocator) outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            boxes, idx = jitter_boxes(gts, (64, 64, 3))
            memory.push(feats, labels, torch.randn(32, 4, device=dev))
            f, l, r = memory.sample(tracker.scores)
            tracker.update(*tracker.class_pairs(l, torch.rand(32, device=dev)))  # one pair per drawn class
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert f.shape[0] == 32 and boxes.shape == (32, 4)


@pytest.mark.gpu
def test_host_memory_serves_a_cuda_model():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.mmdet_ext import tiny

    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(memory=dict(device="cpu"))).cuda()
    assert model.roi_head.memory.flat_feats.device.type == "cpu"
    imgs, metas, boxes, labels, masks = tiny.batch()
    dev = torch.device("cuda")
    model.train()
    for seed in range(2):
        imgs, metas, boxes, labels, masks = tiny.batch(seed=seed)
        losses = model.forward_train(imgs.to(dev), metas, [b.to(dev) for b in boxes], [l.to(dev) for l in labels],
                                     gt_masks=masks)
        total, _ = model._parse_losses(losses)
        total.backward()
    assert torch.isfinite(total) and int(model.roi_head.memory.counts.sum()) > 0
