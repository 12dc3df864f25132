"""mmcv's GPU scatter on torch 2.x (``MMDataParallel`` / ``MMDistributedDataParallel`` copy each batch to the GPU on
a side stream that mmcv asks for by an ``int`` index; torch 2.x's helper wants a ``torch.device``), and loce's DDP
wrapper in one process (the two-process runs are in test_ddp_cpu.py)."""

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


def _syncs_buffers(ddp) -> bool:
    # torch 2.14 keeps the flag as forward_sync_buffers, older versions as broadcast_buffers
    return bool(getattr(ddp, "forward_sync_buffers", getattr(ddp, "broadcast_buffers", True)))


@pytest.fixture
def gloo_world_of_one(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class _Stepper(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.frozen = torch.nn.Linear(3, 1).requires_grad_(False)
        self.register_buffer("big_state", torch.arange(4.0))

    def forward(self, x, scale=1.0):
        return self.lin(x) * scale

    def train_step(self, data, optimizer):
        loss = self.lin(data["img"]).sum() + 0 * self.frozen(data["img"]).sum()
        self.seen = data
        return dict(loss=loss, log_vars=dict(loss=float(loss.detach())), num_samples=len(data["img_metas"]))


def test_ddp_wrapper_opens_datacontainers_on_the_cpu(gloo_world_of_one):
    """mmcv's MMDistributedDataParallel without device ids hands DataContainers to the model unopened; loce's
    wrapper scatters them to the CPU as MMDataParallel does, through torch's whole DDP forward."""
    from mmcv.parallel import DataContainer as DC, MMDistributedDataParallel

    from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel

    x = torch.randn(2, 3)
    data = dict(img=DC([x], stack=True), img_metas=DC([[{"a": 1}, {"a": 2}]], cpu_only=True))
    ddp = LoceDistributedDataParallel(_Stepper())
    assert ddp.device_ids is None and not _syncs_buffers(ddp)  # broadcast_buffers=False by default
    out = ddp.train_step(data, None)
    seen = ddp.module.seen
    assert torch.equal(seen["img"], x) and seen["img_metas"] == [{"a": 1}, {"a": 2}]
    torch.testing.assert_close(out["loss"], ddp.module.lin(x).sum())  # the anchor adds an exact zero
    out["loss"].backward()
    assert ddp.module.lin.weight.grad is not None and ddp.module.frozen.weight.grad is None
    # a plain forward: mmcv 1.7's _run_ddp_forward reads an attribute torch 2.x removed
    with pytest.raises(AttributeError):
        MMDistributedDataParallel(_Stepper())(x)
    torch.testing.assert_close(ddp(DC([x]), scale=2.0), ddp.module.lin(x) * 2.0)
    assert ddp.val_step is not None and ddp._method is None


def test_ddp_wrapper_anchor_covers_trainable_params_only(gloo_world_of_one):
    from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel

    model = _Stepper()
    ddp = LoceDistributedDataParallel(model)
    assert {id(p) for p in ddp._anchored} == {id(model.lin.weight), id(model.lin.bias)}
    a = ddp.anchor()
    assert float(a.detach()) == 0.0
    a.backward()
    assert torch.equal(model.lin.weight.grad, torch.zeros_like(model.lin.weight))  # a zero gradient, not None


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
    """One NCCL process (all a single lent GPU allows: NCCL refuses two ranks on one device): loce's DDP wrapper
    (the one CPU runs use, as training builds it) scatters a CPU batch to the GPU and runs LOCE's train_step; the
    tracker statistics go through an NCCL all_reduce as in a multi-GPU run."""
    import torch.distributed as dist
    from mmcv.parallel import DataContainer as DC

    from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel
    from loce_cli.mmdet_ext.runner.build import wrap_model
    from tests.mmdet_ext import tiny

    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        torch.cuda.set_device(0)
        model = tiny.build(tiny.model_cfg(trainable=["fc_cls", "fc_reg", "rpn", "mask_head"]))
        ddp = wrap_model(model, distributed=True, device="cuda")
        assert isinstance(ddp, LoceDistributedDataParallel) and ddp.device_ids == [0]
        assert ddp.find_unused_parameters is False and not _syncs_buffers(ddp)
        opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.01)
        ddp.train()
        for seed, gts in enumerate([(3, 2), (0, 0)]):  # the second batch has no ground truth
            imgs, metas, boxes, labels, masks = tiny.batch(gts=gts, seed=seed)
            out = ddp.train_step(dict(img=DC([imgs], stack=True), img_metas=DC([metas], cpu_only=True),
                                      gt_bboxes=DC([boxes]), gt_labels=DC([labels]),
                                      gt_masks=DC([masks], cpu_only=True)), opt)
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
