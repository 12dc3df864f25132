"""Two gloo processes with different local data end each step with identical mean scores."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from loce_cli.core.score_tracker import MeanScoreTracker

STEPS = [
    # (rank 0 labels, rank 0 means, rank 1 labels, rank 1 means)
    ([0, 1, 1], [0.2, 0.5, 0.7], [1, 3], [0.1, 0.9]),
    ([2], [0.4], [], []),
    ([], [], [0, 0, 0], [0.3, 0.6, 0.9]),
]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        t = MeanScoreTracker(4)
        for step in STEPS:
            labels, means = (step[0], step[1]) if rank == 0 else (step[2], step[3])
            t.update(torch.tensor(labels, dtype=torch.long), torch.tensor(means, dtype=torch.float32))
        torch.save(t.scores, os.path.join(out_dir, f"scores{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ranks_hold_identical_scores_equal_to_gathering_all_pairs(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    s0 = torch.load(tmp_path / "scores0.pt")
    s1 = torch.load(tmp_path / "scores1.pt")
    assert torch.equal(s0, s1)
    single = MeanScoreTracker(4)
    for l0, m0, l1, m1 in STEPS:
        single.update(torch.tensor(l0 + l1, dtype=torch.long), torch.tensor(m0 + m1, dtype=torch.float32))
    assert torch.allclose(s0, single.scores, atol=1e-7)
    assert not torch.allclose(s0, MeanScoreTracker(4).scores)
