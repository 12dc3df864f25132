"""mmcv's GPU scatter on torch 2.x (``MMDataParallel`` / ``MMDistributedDataParallel`` copy each batch to the GPU on
a side stream that mmcv asks for by an ``int`` index; torch 2.x's helper wants a ``torch.device``)."""

import pytest
import torch

import loce_cli.mmdet_ext  # noqa: F401  (installs the fix)
from loce_cli.mmdet_ext import parallel_compat


def test_mmcv_scatter_uses_the_int_friendly_stream_helper():
    from mmcv.parallel import _functions

    assert _functions._get_stream is parallel_compat.copy_stream
    # what mmcv passes (an int) must not raise; without CUDA there is no side stream
    if not torch.cuda.is_available():
        assert _functions._get_stream(0) is None
    assert _functions._get_stream(-1) is None
    assert _functions._get_stream(torch.device("cpu")) is None


def test_copy_stream_caches_one_stream_per_gpu(monkeypatch):
    made = []

    class FakeStream:
        def __init__(self, index):
            made.append(index)
            self.index = index

    monkeypatch.setattr(parallel_compat, "_STREAMS", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    s1 = parallel_compat.copy_stream(1)
    assert s1.index == 1
    assert parallel_compat.copy_stream(torch.device("cuda", 1)) is s1
    assert parallel_compat.copy_stream("cuda:1") is s1
    assert parallel_compat.copy_stream(torch.device("cuda")).index == 0  # no index: the current GPU
    assert parallel_compat.copy_stream("cpu") is None and parallel_compat.copy_stream(-1) is None
    assert made == [1, 0]


def test_cpu_scatter_still_passes_tensors_through():
    from mmcv.parallel import scatter_kwargs

    x = torch.randn(2, 3)
    inputs, kwargs = scatter_kwargs((x,), {"y": x}, [-1])
    assert torch.equal(inputs[0][0], x) and torch.equal(kwargs[0]["y"], x)


@pytest.mark.gpu
def test_mmdataparallel_runs_a_step_on_cuda():
    from mmcv.parallel import MMDataParallel, scatter_kwargs

    model = MMDataParallel(torch.nn.Linear(4, 2).cuda(), device_ids=[0])
    out = model(torch.randn(3, 4))  # CPU input: scattered to GPU 0 on the side stream
    assert out.device.type == "cuda" and out.shape == (3, 2)
    inputs, _ = scatter_kwargs((torch.randn(2, 2),), {}, [0])
    assert inputs[0][0].is_cuda
    assert isinstance(parallel_compat.copy_stream(0), torch.cuda.Stream)


@pytest.mark.gpu
def test_nccl_ddp_train_step_of_a_loce_model(tmp_path):
    """One NCCL process (all a single lent GPU allows: NCCL refuses two ranks on one device): mmcv's
    MMDistributedDataParallel scatters a CPU batch and runs LOCE's train_step; the tracker statistics go
    through an NCCL all_reduce as in a multi-GPU run."""
    import torch.distributed as dist
    from mmcv.parallel import MMDistributedDataParallel

    from tests.mmdet_ext import tiny

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        model = tiny.build(tiny.model_cfg()).cuda()
        ddp = MMDistributedDataParallel(model, device_ids=[0], broadcast_buffers=False, find_unused_parameters=True)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
        ddp.train()
        for seed in range(2):
            imgs, metas, boxes, labels, masks = tiny.batch(seed=seed)
            out = ddp.train_step(dict(img=imgs, img_metas=metas, gt_bboxes=boxes, gt_labels=labels, gt_masks=masks),
                                 opt)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        assert torch.isfinite(out["loss"]) and out["loss"].is_cuda
        tracker = model.roi_head.bbox_head.score_tracker
        stats = tracker.reduce_pairs(torch.tensor([1, 2], device="cuda"), torch.tensor([0.5, 0.25], device="cuda"))
        reduced = stats.clone()
        dist.all_reduce(reduced)
        torch.testing.assert_close(reduced, stats)
    finally:
        dist.destroy_process_group()
