"""EQLv2 and the federated loss against the papers' formulas; the class-aware sampler's balance."""

import math
import os
from collections import Counter

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from loce_cli.core.losses import (EQLv2State, eqlv2_gradient_stats, eqlv2_loss, eqlv2_weights, federated_class_mask,
                                  federated_loss, federated_weights, image_counts_from_labels)
from loce_cli.core.sampling import ClassAwareSampler, class_aware_indices


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def _bce(z, y):
    return -(y * math.log(_sig(z)) + (1 - y) * math.log(1 - _sig(z)))


# -- EQLv2 ----------------------------------------------------------------------------------------------------------
def test_eqlv2_mapping_and_weights_by_hand():
    pos, neg = eqlv2_weights(torch.tensor([100.0, 0.8, 0.0, 0.5]), gamma=12.0, mu=0.8, alpha=4.0)
    want_neg = [_sig(12 * (100 - 0.8)), 0.5, _sig(12 * (0 - 0.8)), _sig(12 * (0.5 - 0.8)), 1.0]
    assert neg.tolist() == pytest.approx(want_neg, rel=1e-6)
    assert pos.tolist() == pytest.approx([1 + 4 * (1 - n) for n in want_neg], rel=1e-6)
    assert neg[-1] == 1.0 and pos[-1] == 1.0  # objectness channel: always 1
    assert pos[1] == pytest.approx(3.0)  # f(mu) = 1/2: positives x 3, negatives x 1/2


def test_eqlv2_loss_hand_computed_case():
    # 2 classes + objectness; sample 0 is class 1, sample 1 background
    z = torch.tensor([[0.3, -1.2, 0.5], [1.0, 0.2, -0.4]])
    labels = torch.tensor([1, 2])
    ratio = torch.tensor([0.9, 0.1])
    pos_w, neg_w = eqlv2_weights(ratio)
    loss, weight = eqlv2_loss(z, labels, pos_w, neg_w)
    f = [_sig(12 * (0.9 - 0.8)), _sig(12 * (0.1 - 0.8)), 1.0]
    p = [1 + 4 * (1 - v) for v in f]
    y = [[0, 1, 0], [0, 0, 1]]
    total = sum((p[j] if y[i][j] else f[j]) * _bce(float(z[i, j]), y[i][j]) for i in range(2) for j in range(3))
    assert float(loss) == pytest.approx(total / 2, rel=1e-6)
    assert weight[0].tolist() == pytest.approx([f[0], p[1], 1.0], rel=1e-6)


def test_eqlv2_first_step_is_plain_sigmoid_bce():
    torch.manual_seed(0)
    z, labels = torch.randn(7, 5), torch.tensor([0, 1, 4, 4, 2, 3, 4])
    state = EQLv2State(4)
    loss, _ = eqlv2_loss(z, labels, *eqlv2_weights(state.ratio))
    target = torch.nn.functional.one_hot(labels, 5).float()
    plain = torch.nn.functional.binary_cross_entropy_with_logits(z, target, reduction="sum") / 7
    assert float(loss) == pytest.approx(float(plain), rel=1e-6)


def test_eqlv2_statistics_are_the_gradients_autograd_gives():
    torch.manual_seed(1)
    n = 9
    z = torch.randn(n, 4, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3, 3, 0, 3, 3, 1])
    pos_w, neg_w = eqlv2_weights(torch.tensor([0.3, 1.1, 0.7]))
    loss, weight = eqlv2_loss(z, labels, pos_w, neg_w)
    loss.backward()
    stats = eqlv2_gradient_stats(z.detach(), labels, weight)
    g = (z.grad * n).abs()  # |w (p - y)| per element
    y = torch.nn.functional.one_hot(labels, 4).bool()
    assert torch.allclose(stats[0], torch.where(y, g, 0).sum(0)[:-1], atol=1e-6)
    assert torch.allclose(stats[1], torch.where(~y, g, 0).sum(0)[:-1], atol=1e-6)


def test_eqlv2_state_accumulates_and_the_ratio_follows():
    state = EQLv2State(3)
    assert state.ratio.tolist() == [100.0] * 3
    state.update(torch.tensor([[1.0, 0.0, 2.0], [4.0, 1.0, 2.0]]))
    state.update(torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 2.0]]))
    assert state.pos_grad.tolist() == [2.0, 0.5, 2.0] and state.neg_grad.tolist() == [4.0, 2.0, 4.0]
    assert state.ratio.tolist() == pytest.approx([0.5, 0.25, 0.5])
    # a base checkpoint has no such buffers: loading it keeps the state
    holder = torch.nn.Module()
    holder.state = EQLv2State(3)
    result = holder.load_state_dict({}, strict=False)
    assert not result.missing_keys and holder.state.ratio.tolist() == [100.0] * 3


STEPS = [  # per rank: logits seed, labels
    ((0, [0, 1, 3]), (1, [2, 3])),
    ((2, [1, 1]), (3, [0, 3, 3, 2])),
]


def _eqlv2_worker(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        state = EQLv2State(3)
        for step in STEPS:
            seed, labels = step[rank]
            z = torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(seed))
            labels = torch.tensor(labels)
            _, w = eqlv2_loss(z, labels, *eqlv2_weights(state.ratio))
            state.update(eqlv2_gradient_stats(z, labels, w))
        torch.save(state.state_dict(), os.path.join(out_dir, f"eqlv2_{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_eqlv2_state_is_equal_on_two_ranks_and_equals_one_process_over_all_data(tmp_path):
    mp.spawn(_eqlv2_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    s0, s1 = (torch.load(tmp_path / f"eqlv2_{r}.pt") for r in (0, 1))
    for key in s0:
        assert torch.equal(s0[key], s1[key]), key
    single = EQLv2State(3)
    for step in STEPS:  # weights come from the state before the step, as on each rank
        pos_w, neg_w = eqlv2_weights(single.ratio)
        total = torch.zeros(2, 3)
        for seed, labels in step:
            z = torch.randn(len(labels), 4, generator=torch.Generator().manual_seed(seed))
            labels = torch.tensor(labels)
            _, w = eqlv2_loss(z, labels, pos_w, neg_w)
            total += eqlv2_gradient_stats(z, labels, w)
        single.update(total)
    assert torch.allclose(s0["pos_grad"], single.pos_grad, atol=1e-6)
    assert torch.allclose(s0["ratio"], single.ratio, rtol=1e-5)
    assert not torch.allclose(s0["ratio"], torch.full((3,), 100.0))


# -- federated loss -------------------------------------------------------------------------------------------------
def test_federated_weights_are_square_roots_of_image_counts():
    counts = image_counts_from_labels([[0, 2], [2], [2, 2], []], 4)
    assert counts.tolist() == [1, 0, 3, 0]
    assert federated_weights(counts).tolist() == pytest.approx([1.0, 0.0, math.sqrt(3), 0.0])


def test_federated_subset_keeps_present_classes_and_draws_the_rest_by_weight():
    weights = torch.tensor([1.0, 4.0, 0.0, 9.0, 1.0, 1.0])
    labels = torch.tensor([0, 0, 6, 5, 6])  # 6 = background
    g = torch.Generator().manual_seed(0)
    drawn = Counter()
    for _ in range(4000):
        mask = federated_class_mask(labels, weights, num_sampled=3, generator=g)
        assert mask[0] and mask[5] and int(mask.sum()) == 3 and not mask[2]  # present kept; weight 0 never drawn
        drawn.update(mask.nonzero().flatten().tolist())
    # one negative per step among classes 1, 3, 4 with probabilities 4/14, 9/14, 1/14
    for c, p in ((1, 4 / 14), (3, 9 / 14), (4, 1 / 14)):
        assert drawn[c] / 4000 == pytest.approx(p, abs=0.03)
    # more present classes than the subset size: all present, nothing drawn
    many = federated_class_mask(torch.tensor([0, 1, 3, 4]), weights, num_sampled=2)
    assert many.nonzero().flatten().tolist() == [0, 1, 3, 4]


def test_federated_loss_only_touches_the_chosen_classes():
    torch.manual_seed(2)
    z = torch.randn(5, 5, requires_grad=True)  # 4 classes + background column
    labels = torch.tensor([1, 4, 3, 4, 1])
    mask = torch.tensor([False, True, False, True])
    loss = federated_loss(z, labels, mask)
    want = sum(_bce(float(z.detach()[i, j]), 1.0 if int(labels[i]) == j else 0.0) for i in range(5) for j in (1, 3)) / 5
    assert float(loss) == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert torch.all(z.grad[:, [0, 2, 4]] == 0) and torch.all(z.grad[:, [1, 3]] != 0)


# -- class-aware sampling (cRT) -------------------------------------------------------------------------------------
def test_class_aware_sampling_draws_every_class_equally_often():
    images = [[0]] * 90 + [[1]] * 8 + [[2]] * 2  # class 0 in 90 images, class 1 in 8, class 2 in 2
    draws = class_aware_indices(images, 3000, seed=0)
    # each draw picks a class first: 1000 draws each, whatever the class's frequency
    assert sum(1 for i in draws if i < 90) == 1000
    assert sum(1 for i in draws if 90 <= i < 98) == 1000
    assert sum(1 for i in draws if i >= 98) == 1000
    # within a class, its images in turn: each of class 2's two images 500 times
    assert Counter(i for i in draws if i >= 98) == {98: 500, 99: 500}
    assert class_aware_indices(images, 50, seed=0) == draws[:50]
    assert class_aware_indices(images, 50, seed=1) != draws[:50]


def test_class_aware_sampler_splits_one_order_across_ranks_and_reseeds_per_epoch():
    images = [[i % 5] for i in range(23)]
    s0, s1 = (ClassAwareSampler(images, samples_per_gpu=2, num_replicas=2, rank=r, seed=7) for r in (0, 1))
    assert len(s0) == len(s1) == 12  # ceil(23 / (2 x 2)) = 6 batches of 2 per rank
    assert list(s0) + list(s1) == class_aware_indices(images, 24, seed=7)
    first = list(s0)
    s0.set_epoch(1)
    assert list(s0) != first and list(s0) == class_aware_indices(images, 24, seed=8)[:12]
