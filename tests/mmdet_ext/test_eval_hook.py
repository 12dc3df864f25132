"""The evaluation hook: which epochs, which checkpoint file, rank 0 alone, others waiting and told of a failure."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from loce_cli.mmdet_ext.runner.eval_hook import EvalFailedError, LoceEvalHook


class FakeRunner:
    """What the hook reads of mmcv's runner: epoch, rank, work_dir, hooks, save_checkpoint."""

    def __init__(self, work_dir: Path, rank: int = 0):
        self.work_dir, self.rank, self.epoch, self.hooks, self.saved = str(work_dir), rank, 0, [], []

    def save_checkpoint(self, out_dir, filename_tmpl="epoch_{}.pth", save_optimizer=True):
        path = Path(out_dir) / filename_tmpl.format(self.epoch + 1)
        path.write_bytes(b"ckpt")
        self.saved.append(path.name)


def _epochs(hook, runner, n, checkpoint_every=1):
    """Run the hook over n epochs; a 'checkpoint hook' writes epoch_N.pth every checkpoint_every epochs."""
    for epoch in range(n):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        if (epoch + 1) % checkpoint_every == 0:
            (Path(runner.work_dir) / f"epoch_{epoch + 1}.pth").write_bytes(b"from the checkpoint hook")
        hook.after_train_epoch(runner)


def test_evaluates_every_interval_epochs_the_checkpoint_of_that_epoch(tmp_path):
    calls = []
    hook = LoceEvalHook(lambda ckpt, epoch: calls.append((Path(ckpt).name, epoch)) or {"AP": epoch}, interval=2)
    runner = FakeRunner(tmp_path)
    hook.before_run(runner)
    _epochs(hook, runner, 5)
    assert calls == [("epoch_2.pth", 2), ("epoch_4.pth", 4)]
    assert hook.results == {2: {"AP": 2}, 4: {"AP": 4}} and runner.saved == []  # the checkpoint hook's files


def test_writes_the_checkpoint_when_the_checkpoint_interval_skipped_the_epoch(tmp_path):
    seen = []
    hook = LoceEvalHook(lambda ckpt, epoch: seen.append(Path(ckpt).read_bytes()), interval=1)
    runner = FakeRunner(tmp_path)
    old = tmp_path / "epoch_1.pth"  # left by an earlier run (e.g. resumed from before it): stale
    old.write_bytes(b"stale")
    past = time.time() - 3600
    os.utime(old, (past, past))
    _epochs(hook, runner, 2, checkpoint_every=2)
    assert runner.saved == ["epoch_1.pth"] and seen == [b"ckpt", b"from the checkpoint hook"]


def test_rank_0_only_and_random_streams_untouched(tmp_path):
    def evaluate(ckpt, epoch):
        torch.randn(100)  # building a model draws random numbers
        return {}

    hook = LoceEvalHook(evaluate, interval=1)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    _epochs(hook, FakeRunner(tmp_path), 1)
    assert torch.equal(torch.get_rng_state(), before)
    other = LoceEvalHook(lambda c, e: pytest.fail("rank 1 evaluated"), interval=1)
    _epochs(other, FakeRunner(tmp_path, rank=1), 2)  # one process: no group, nothing to wait for


def test_one_process_failure_raises_the_error_itself(tmp_path):
    def evaluate(ckpt, epoch):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _epochs(LoceEvalHook(evaluate, interval=1), FakeRunner(tmp_path), 1)
    with pytest.raises(ValueError):
        LoceEvalHook(evaluate, interval=0)


SLOW_EVAL_S = 6.0  # longer than the default group's timeout in the worker below


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=3))
    try:
        lines = []
        for fail in (False, True):
            def evaluate(ckpt, epoch, fail=fail):
                time.sleep(SLOW_EVAL_S)
                if fail:
                    raise RuntimeError("no test annotations")
                return {"epoch": epoch}

            hook = LoceEvalHook(evaluate, interval=1, wait_s=60)
            runner = FakeRunner(Path(out_dir) / f"w{rank}{fail}", rank=rank)
            os.makedirs(runner.work_dir)
            hook.before_run(runner)
            try:
                _epochs(hook, runner, 1)
                outcome = "ok"
            except (EvalFailedError, RuntimeError) as e:
                outcome = f"{type(e).__name__}: {e}"
            dist.barrier()  # the default group still works afterwards
            lines.append(f"{outcome}|{hook.results}")
        Path(out_dir, f"rank{rank}.txt").write_text("\n".join(lines))
    finally:
        dist.destroy_process_group()


def test_two_ranks_wait_past_the_default_timeout_and_share_a_failure(tmp_path):
    """Rank 0 evaluates for longer than the default group's 3 s timeout; rank 1 waits on the hook's own gloo group.
    When rank 0's evaluation fails, rank 1 fails too (with rank 0's message) instead of waiting forever."""
    ctx = mp.start_processes(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("hung")
    r0, r1 = ((tmp_path / f"rank{r}.txt").read_text().splitlines() for r in (0, 1))
    assert r0[0] == "ok|{1: {'epoch': 1}}" and r1[0] == "ok|{}"
    assert r0[1] == "RuntimeError: no test annotations|{}"
    assert r1[1] == "EvalFailedError: evaluation after epoch 1 failed on rank 0: RuntimeError: no test annotations|{}"
