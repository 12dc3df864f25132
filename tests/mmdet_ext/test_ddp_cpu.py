"""torch DDP on CPUs (gloo) through loce's one wrapper, in real processes: the same code path GPU runs take.

What a rank's batch can leave without gradient, and what DDP (``find_unused_parameters=False``, mmdet's default)
does about it, is tested here: an image without ground truth, a step with an empty memory, a head branch used
only on one rank.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.mmdet_ext import tiny

# the LOCE fine-tune's trainable list (backbone, FPN and shared FCs frozen)
TRAINABLE = ["fc_cls", "fc_reg", "rpn", "mask_head"]
STEPS = 3


def _spawn(fn, args, timeout: float = 240.0) -> None:
    """Run ``fn(rank, *args)`` in two spawned processes; fail (and stop them) if they have not ended in time."""
    ctx = mp.start_processes(fn, args=args, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
            pytest.fail(f"the two ranks did not finish within {timeout:.0f} s (hung)")


def _init(rank: int, init_file: str, seconds: int = 120) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=seconds))


def _loce_data(rank: int, step: int):
    """Collated like mmdet's loader (one chunk per device): rank 0 has ground truth, rank 1 none at all."""
    from mmcv.parallel import DataContainer as DC

    gts = (3, 2) if rank == 0 else (0, 0)
    imgs, metas, boxes, labels, masks = tiny.batch(gts=gts, seed=10 * step + rank)
    return dict(img=DC([imgs], stack=True), img_metas=DC([metas], cpu_only=True), gt_bboxes=DC([boxes]),
                gt_labels=DC([labels]), gt_masks=DC([masks], cpu_only=True))


def _loce_worker(rank: int, init_file: str, out_dir: str, anchor: bool) -> None:
    _init(rank, init_file)
    try:
        import loce_cli.mmdet_ext  # noqa: F401
        from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel

        torch.manual_seed(100 + rank)  # different weights on each rank: DDP must start both from rank 0's
        model = tiny.build(tiny.model_cfg(trainable=TRAINABLE, memory=dict(sample_classes=4, sample_features=2)))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        model.train()
        ddp = LoceDistributedDataParallel(model, device_ids=None, broadcast_buffers=False,
                                          find_unused_parameters=False, anchor_params=anchor)
        opt = torch.optim.SGD([p for p in ddp.parameters() if p.requires_grad], lr=0.02, momentum=0.9,
                              weight_decay=1e-4)
        memory_rows = []
        for step in range(STEPS):
            memory_rows.append(int(model.roi_head.memory.counts.sum()))
            out = ddp.train_step(_loce_data(rank, step), opt)
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        torch.save(dict(state={k: v.detach().clone() for k, v in model.state_dict().items()}, before=before,
                        params=[n for n, _ in model.named_parameters()],
                        memory_rows=memory_rows, loss=float(out["loss"].detach())), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[pytest.param(True, id="anchor"),
                                        pytest.param(False, id="no-anchor", marks=pytest.mark.slow)])
def loce_ranks(request, tmp_path_factory):
    """Both ranks' states after the run. ``no-anchor``: what mmdet's Mask R-CNN with LOCE's heads does under DDP
    (``find_unused_parameters=False``) on its own; observed: it trains in step, as its graph reaches every
    trainable parameter even here (see the single-process test below)."""
    out = tmp_path_factory.mktemp("ddp_loce")
    _spawn(_loce_worker, (str(out / "init"), str(out), request.param))
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_no_gt_rank_with_empty_memory_trains_in_step_with_the_other(loce_ranks):
    """Rank 1 sees only images without ground truth and its memory stays empty (no positives, no memory rows),
    rank 0 has ground truth and samples its memory from step 2: after 3 DDP steps every parameter is identical
    on both ranks, the trainable ones moved, the frozen ones did not."""
    r0, r1 = loce_ranks
    assert r0["memory_rows"][0] == 0 and r0["memory_rows"][1] > 0  # rank 0 pushed at step 1, drew from step 2 on
    assert r1["memory_rows"] == [0] * STEPS
    names = r0["params"]
    trained = [k for k in names if any(t in k for t in TRAINABLE)]
    assert trained and len(trained) < len(names)
    for k in names:
        assert torch.equal(r0["state"][k], r1["state"][k]), k  # bit-identical: same reduced gradients
    # DDP started both ranks from rank 0's weights (rank 1 had its own before the wrap)
    assert not torch.equal(r0["before"]["roi_head.bbox_head.fc_cls.weight"],
                           r1["before"]["roi_head.bbox_head.fc_cls.weight"])
    for k in names:
        moved = not torch.equal(r0["state"][k], r0["before"][k])
        assert moved == (k in trained), k
    assert all(torch.isfinite(torch.tensor([r0["loss"], r1["loss"]])))


def test_buffers_are_never_broadcast(loce_ranks):
    """broadcast_buffers=False: each rank keeps its own memory (rank 0 filled, rank 1 empty), while the mean scores
    agree through the tracker's own all-gather."""
    r0, r1 = loce_ranks
    assert int(r0["state"]["roi_head.memory.counts"].sum()) > 0
    assert int(r1["state"]["roi_head.memory.counts"].sum()) == 0
    s0, s1 = r0["state"]["roi_head.bbox_head.score_tracker.scores"], r1["state"]["roi_head.bbox_head.score_tracker.scores"]
    assert torch.equal(s0, s1) and not torch.allclose(s0[:-1], torch.full_like(s0[:-1], 0.01))


def test_mask_rcnn_graph_reaches_every_trainable_param_without_gt_or_memory():
    """What DDP would meet without the anchor: mmdet's Mask R-CNN losses keep every head in the graph even when a
    batch has no ground truth (``pred[empty].sum()`` losses, convolutions over zero RoIs) and LOCE's memory rows only
    add to a box batch that always exists, so no trainable parameter is left without a gradient here."""
    import loce_cli.mmdet_ext  # noqa: F401

    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(trainable=TRAINABLE))
    model.train()
    imgs, metas, boxes, labels, masks = tiny.batch(gts=(0, 0), seed=1)
    losses = model.forward_train(imgs, metas, boxes, labels, gt_masks=masks)
    loss, _ = model._parse_losses(losses)
    loss.backward()
    assert int(model.roi_head.memory.counts.sum()) == 0
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert trainable and missing == []
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)  # frozen: no gradient at all


class Branchy(torch.nn.Module):
    """A model whose second head is used only when the batch says so (like a head a rank's data skips)."""

    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Linear(4, 4)
        self.head_a = torch.nn.Linear(4, 1)
        self.head_b = torch.nn.Linear(4, 1)

    def losses(self, x, use_b):
        h = self.trunk(x)
        loss = self.head_a(h).pow(2).mean()
        if use_b:
            loss = loss + self.head_b(h).pow(2).mean()
        return loss

    def train_step(self, data, optimizer):
        loss = self.losses(data["x"], data["use_b"])
        return dict(loss=loss, log_vars=dict(loss=float(loss.detach())), num_samples=data["x"].shape[0])


def _branchy_x(rank: int, step: int):
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(7 * step + rank))


def _branchy_run(rank: int, anchor: bool, out: str) -> None:
    from mmcv.parallel import DataContainer as DC

    from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel

    torch.manual_seed(0)
    ddp = LoceDistributedDataParallel(Branchy(), device_ids=None, find_unused_parameters=False,
                                      anchor_params=anchor)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    for step in range(STEPS):
        res = ddp.train_step(dict(x=DC([_branchy_x(rank, step)]), use_b=rank == 0), opt)
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
    torch.save(ddp.module.state_dict(), out)


def _branchy_worker(rank: int, init_file: str, out_dir: str) -> None:
    """The run with the anchor, then (same processes, same group) the control without it, which must fail."""
    _init(rank, init_file, seconds=20)
    try:
        import loce_cli.mmdet_ext  # noqa: F401

        _branchy_run(rank, True, os.path.join(out_dir, f"anchor{rank}.pt"))
        dist.barrier()  # both ranks done with the first run before the control starts
        _branchy_run(rank, False, os.path.join(out_dir, f"plain{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_branch_unused_on_one_rank_stays_in_step_through_the_anchor_and_fails_without(tmp_path):
    """head_b gets no gradient on rank 1: the anchor gives it a zero there, DDP averages, and both ranks end equal to
    one process minimising the mean of the two ranks' losses. The control, in the same two processes: the same
    run with the anchor off. DDP's reduction on rank 1 never completes (head_b's bucket never becomes ready), so
    the run errors out; it must not end with two different models."""
    with pytest.raises(mp.ProcessRaisedException) as info:
        _spawn(_branchy_worker, (str(tmp_path / "init"), str(tmp_path)), timeout=180)
    r0, r1 = (torch.load(tmp_path / f"anchor{r}.pt", weights_only=True) for r in (0, 1))
    torch.manual_seed(0)
    ref = Branchy()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for step in range(STEPS):
        opt.zero_grad()
        ((ref.losses(_branchy_x(0, step), True) + ref.losses(_branchy_x(1, step), False)) / 2).backward()
        opt.step()
    for k, v in ref.state_dict().items():
        assert torch.equal(r0[k], r1[k]), k
        torch.testing.assert_close(r0[k], v, rtol=1e-5, atol=1e-6)
    # the control: observed, rank 1 raises at its next forward; rank 0, waiting for head_b's bucket, is stopped by
    # the launcher
    assert "Expected to have finished reduction in the prior iteration" in str(info.value)
    assert "did not receive grad for rank 1: 4 5" in str(info.value)  # head_b.weight, head_b.bias
    assert not (tmp_path / "plain0.pt").exists() or not (tmp_path / "plain1.pt").exists()
