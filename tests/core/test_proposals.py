import torch

from loce_cli.core.proposals import MAX_OFFSET, NUM_JITTERS, jitter_boxes


def test_sixteen_boxes_per_gt_within_offsets_and_image():
    gt = torch.tensor([[10.0, 20.0, 70.0, 50.0], [0.0, 0.0, 30.0, 30.0], [90.0, 80.0, 100.0, 100.0]])
    g = torch.Generator().manual_seed(0)
    boxes, idx = jitter_boxes(gt, (100, 100, 3), generator=g)
    assert boxes.shape == (48, 4) and idx.tolist() == [i for i in range(3) for _ in range(NUM_JITTERS)]
    assert (boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= 100).all()
    assert (boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= 100).all()
    wh = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)[idx]
    off = (boxes - gt[idx]).abs()
    assert (off <= MAX_OFFSET * wh + 1e-5).all()
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()


def test_all_sign_patterns_are_used():
    gt = torch.tensor([[40.0, 40.0, 60.0, 60.0]])
    boxes, _ = jitter_boxes(gt, (100, 100))
    signs = torch.sign(boxes - gt)
    assert len({tuple(s.tolist()) for s in signs}) == 16


def test_empty_ground_truth():
    boxes, idx = jitter_boxes(torch.zeros((0, 4)), (10, 10))
    assert boxes.shape == (0, 4) and idx.shape == (0,)
