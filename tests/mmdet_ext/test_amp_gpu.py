"""Mixed precision on CUDA (``gpu`` marker; skipped without a GPU, run by scripts/dev/gpu_check.sh): fp16 and bf16
training steps of the base and the LOCE model, the tracker / memory path free of host syncs under autocast, the
GradScaler's state through a real checkpoint and resume, and 2 ranks sharing one GPU over gloo
(``LOCE_SHARE_GPU=1``) for base training, LOCE fine-tune and ``loce eval``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.mmdet_ext import tiny

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "configs" / "synthetic" / "mask_rcnn_r18_fpn_normed_synth.py"
LOCE = ROOT / "configs" / "synthetic" / "loce_mask_rcnn_r18_fpn_normed_synth.py"
DEV = os.environ.get("LOCE_AMP_TEST_DEVICE", "cuda")  # "cpu": a rehearsal of the step tests' code without a GPU


class _Runner:
    def __init__(self, model, amp, optimizer):
        import logging

        from mmcv.runner import LogBuffer

        self.model, self.amp, self.optimizer = model, amp, optimizer
        self.log_buffer, self.logger = LogBuffer(), logging.getLogger("amp_gpu")
        self.iter, self.epoch, self.outputs = 0, 0, None


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
@pytest.mark.parametrize("loce", [False, True])
def test_amp_training_steps_on_cuda(dtype, loce):
    from mmcv.parallel import DataContainer as DC
    from mmcv.parallel import MMDataParallel

    from loce_cli.mmdet_ext.amp import AmpOptimizerHook, AmpState, fp32_head_outputs

    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(loce=loce))
    fp32_head_outputs(model)
    seen = {}

    def note(key, value):
        seen.setdefault(key, value)  # returns None: the hooks change nothing

    model.roi_head.bbox_head.loss_cls.register_forward_pre_hook(lambda m, args: note("cls_in", args[0].dtype))
    model.backbone.register_forward_hook(lambda m, i, out: note("backbone_out", out[0].dtype))
    wrapped = MMDataParallel(model.to(DEV), device_ids=[0] if DEV == "cuda" else None)
    optimizer = torch.optim.SGD(wrapped.parameters(), lr=0.01, momentum=0.9)
    amp = AmpState(dtype, DEV)
    assert (amp.scaler is not None) == (dtype == "fp16")
    runner = _Runner(wrapped, amp, optimizer)
    hook = AmpOptimizerHook(grad_clip=dict(max_norm=35, norm_type=2))
    wrapped.train()
    for step, gts in enumerate([(3, 2), (2, 1), (0, 0), (1, 3)]):
        imgs, metas, boxes, labels, masks = tiny.batch(gts=gts, seed=step)
        data = dict(img=DC([imgs], stack=True), img_metas=DC([metas], cpu_only=True), gt_bboxes=DC([boxes]),
                    gt_labels=DC([labels]), gt_masks=DC([masks], cpu_only=True))
        with amp.autocast():
            runner.outputs = wrapped.train_step(data, optimizer)
        assert torch.isfinite(runner.outputs["loss"]), (step, runner.outputs["log_vars"])
        hook.after_train_iter(runner)
        runner.iter += 1
    assert seen["backbone_out"] == amp.dtype and seen["cls_in"] == torch.float32
    if loce:
        assert int(model.roi_head.memory.counts.sum()) > 0 and model.roi_head.memory.flat_feats.dtype == torch.float32
        assert torch.isfinite(model.roi_head.score_tracker.scores).all()
    if amp.scaler is not None:
        assert amp.scaler.get_scale() > 0 and amp.skipped < 4


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_tracker_and_memory_path_do_not_sync_under_autocast(dtype):
    from loce_cli.core.memory_bank import FeatureMemory
    from loce_cli.core.proposals import jitter_boxes
    from loce_cli.core.score_tracker import MeanScoreTracker
    from loce_cli.mmdet_ext.amp import fp32

    dev = torch.device(DEV)
    tracker = MeanScoreTracker(50).to(dev)
    memory = FeatureMemory(50, queue_size=16, feat_shape=(8, 7, 7), dtype=torch.float32, device=dev)
    gts = torch.tensor([[4.0, 4.0, 40.0, 30.0], [10.0, 12.0, 60.0, 62.0]], device=dev)
    lin = torch.nn.Linear(8 * 49, 51).to(dev)
    labels = torch.randint(0, 50, (32,), device=dev)
    with torch.autocast(DEV, dtype=dtype):
        feats = torch.randn(32, 8, 7, 7, device=dev).to(dtype)
        memory.push(feats, labels)  # first push (allocates the staging buffer) outside the check
    sync_check = DEV == "cuda"
    if sync_check:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast(DEV, dtype=dtype):
            for _ in range(3):
                boxes, idx = jitter_boxes(gts, (64, 64, 3))
                memory.push(feats, labels, torch.randn(32, 4, device=dev))
                f, lab, r = memory.sample(tracker.scores, out_dtype=dtype)
                logits = lin(f.flatten(1))  # the box head's matmul in the autocast dtype
                with fp32(logits) as (logits,):
                    probs = torch.softmax(logits, dim=1).gather(1, lab.view(-1, 1)).squeeze(1)
                    tracker.update(*tracker.class_pairs(lab, probs))
    finally:
        if sync_check:
            torch.cuda.set_sync_debug_mode(0)
            torch.cuda.synchronize()
    assert f.dtype == dtype and logits.dtype == torch.float32 and tracker.scores.dtype == torch.float32
    assert memory.flat_feats.dtype == torch.float32 and torch.isfinite(tracker.scores).all()


def _tiny_options(data: Path, epochs: int) -> list:
    from tests.conftest import tiny_train_options

    return [x for o in tiny_train_options(data, epochs) for x in ("--cfg-options", o)]


def _loce(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "loce_cli", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout, cwd=ROOT)


def _load(path):
    return torch.load(str(path), map_location="cpu", weights_only=True)


@pytest.mark.gpu
def test_grad_scaler_state_round_trips_through_checkpoint_and_resume(tiny_dataset, tmp_path):
    work = tmp_path / "fp16"
    r = _loce("train", "base", BASE, "--device", "cuda", "--amp", "fp16", "--work-dir", work,
              *_tiny_options(tiny_dataset, 1), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    first = _load(work / "epoch_1.pth")["meta"]["amp"]
    assert first["dtype"] == "fp16" and first["scaler"]["scale"] > 0
    assert "amp = dict(dtype='fp16', loss_scale='dynamic')" in _load(work / "epoch_1.pth")["meta"]["config"]
    r = _loce("train", "base", BASE, "--device", "cuda", "--work-dir", work, "--resume",
              *_tiny_options(tiny_dataset, 2), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    second = _load(work / "epoch_2.pth")["meta"]["amp"]
    assert second["skipped"] >= first["skipped"]
    if second["skipped"] == first["skipped"]:  # no skip in epoch 2: the growth tracker went on from epoch 1's
        assert second["scaler"]["_growth_tracker"] == first["scaler"]["_growth_tracker"] + 10
        assert second["scaler"]["scale"] == first["scaler"]["scale"]
    r = _loce("train", "base", BASE, "--device", "cuda", "--work-dir", work, "--resume", "--amp", "bf16",
              *_tiny_options(tiny_dataset, 3))
    assert r.returncode == 2 and "differs from the run's precision (fp16)" in r.stderr


@pytest.mark.gpu
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_two_ranks_share_one_gpu_over_gloo(tiny_dataset, tmp_path, amp):
    """``LOCE_SHARE_GPU=1 loce ... --gpus 2`` on one GPU: base training, LOCE fine-tune and eval, 2 ranks over gloo
    on CUDA tensors; after the fine-tune both ranks hold the same mean scores (the tracker's all-reduce)."""
    port = "29611" if amp is None else "29623"
    env = dict(LOCE_SHARE_GPU="1")
    flags = ["--gpus", "2", "--master-port", port] + (["--amp", amp] if amp else [])
    base, ft = tmp_path / "base", tmp_path / "loce"
    r = _loce("train", "base", BASE, *flags, "--work-dir", base, *_tiny_options(tiny_dataset, 1), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _loce("finetune", LOCE, "--from", base / "epoch_1.pth", *flags, "--work-dir", ft,
              *_tiny_options(tiny_dataset, 1), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rank0 = _load(ft / "epoch_1.pth")["state_dict"]["roi_head.bbox_head.score_tracker.scores"]
    rank1 = _load(next(ft.glob("epoch_1.rank1*.pth")))["buffers"]["roi_head.bbox_head.score_tracker.scores"]
    assert torch.equal(rank0, rank1) and not torch.equal(rank0[:-1], torch.full_like(rank0[:-1], 0.01))
    r = _loce("eval", LOCE, ft / "epoch_1.pth", *flags, "--out", tmp_path / "eval",
              *_tiny_options(tiny_dataset, 1), "--json", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert report["metrics"]["bbox"]["summary"]["AP"] >= 0
