import torch

from loce_cli.core.score_tracker import MeanScoreTracker


def test_a_pow_n_rule_against_hand_computation():
    t = MeanScoreTracker(3, alpha=0.9, init_score=0.01, bg_score=0.01)
    # step 1: class 0 gets pairs 0.5 and 0.7 (n=2), class 2 gets 0.2 (n=1), class 1 nothing
    t.update(torch.tensor([0, 2, 0]), torch.tensor([0.5, 0.2, 0.7]))
    s0 = 0.81 * 0.01 + 0.19 * 0.6
    s2 = 0.9 * 0.01 + 0.1 * 0.2
    expected = torch.tensor([s0, 0.01, s2, 0.01])
    assert torch.allclose(t.scores, expected, atol=1e-7)
    # step 2: class 1 gets 0.4 three times
    t.update(torch.tensor([1, 1, 1]), torch.tensor([0.4, 0.4, 0.4]))
    s1 = 0.9 ** 3 * 0.01 + (1 - 0.9 ** 3) * 0.4
    assert torch.allclose(t.scores, torch.tensor([s0, s1, s2, 0.01]), atol=1e-7)


def test_background_is_held_and_empty_update_is_a_no_op():
    t = MeanScoreTracker(2, bg_score=0.05)
    before = t.scores.clone()
    t.update(torch.zeros(0, dtype=torch.long), torch.zeros(0))
    assert torch.equal(t.scores, before)
    t.update(torch.tensor([0, 1]), torch.tensor([0.9, 0.9]))
    assert t.scores[-1].item() == torch.tensor(0.05).item()


def test_scores_are_state_dict_buffers():
    t = MeanScoreTracker(4)
    t.update(torch.tensor([1]), torch.tensor([0.8]))
    u = MeanScoreTracker(4)
    u.load_state_dict(t.state_dict())
    assert torch.equal(u.scores, t.scores)
    assert "scores" in t.state_dict()


def test_zero_weight_pairs_are_ignored():
    t = MeanScoreTracker(2)
    t.update(torch.tensor([0, 1]), torch.tensor([0.5, 0.9]), weights=torch.tensor([1.0, 0.0]))
    assert torch.allclose(t.scores, torch.tensor([0.9 * 0.01 + 0.1 * 0.5, 0.01, 0.01]))


def test_base_checkpoint_without_scores_keeps_current_scores():
    t = MeanScoreTracker(3)
    t.update(torch.tensor([0]), torch.tensor([1.0]))
    before = t.scores.clone()
    assert t.load_state_dict({}, strict=True).missing_keys == []
    assert torch.equal(t.scores, before)


def test_class_pairs_give_one_pair_per_distinct_class_with_the_mean_over_all_its_items():
    t = MeanScoreTracker(4)
    # class 2 drawn twice (8 items: 0.1 x 4, 0.5 x 4), class 0 once (0.3 x 4), classes 1 and 3 not drawn
    labels = torch.tensor([2] * 4 + [0] * 4 + [2] * 4)
    values = torch.tensor([0.1] * 4 + [0.3] * 4 + [0.5] * 4)
    classes, means, weights = t.class_pairs(labels, values)
    assert classes.tolist() == [0, 1, 2, 3] and weights.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert torch.allclose(means[[0, 2]], torch.tensor([0.3, 0.3]))
    t.update(classes, means, weights)
    # n = 1 for class 2 (one pair), not 2 (one pair per draw): a, not a^2
    expected = torch.tensor([0.9 * 0.01 + 0.1 * 0.3, 0.01, 0.9 * 0.01 + 0.1 * 0.3, 0.01, 0.01])
    assert torch.allclose(t.scores, expected, atol=1e-7)


def test_class_pairs_of_unequal_groups_average_every_item():
    t = MeanScoreTracker(2)
    classes, means, weights = t.class_pairs(torch.tensor([1, 1, 1, 0]), torch.tensor([0.2, 0.2, 0.8, 0.6]))
    assert torch.allclose(means, torch.tensor([0.6, 0.4])) and weights.tolist() == [1.0, 1.0]
