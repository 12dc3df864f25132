import pytest

from loce_cli.core.sampling import class_balanced_indices


def test_every_class_covered_up_to_per_class():
    images = [[0], [0], [0], [0, 1], [2], [0], [1]]
    idx = class_balanced_indices(images, per_class=2, seed=1)
    assert len(idx) == len(set(idx))
    for c in (0, 1, 2):
        holders = [i for i in idx if c in images[i]]
        assert min(2, sum(c in im for im in images)) <= len(holders)
    assert len([i for i in idx if images[i] == [0]]) <= 2


def test_shards_partition_the_list():
    images = [[i % 5] for i in range(40)]
    full = class_balanced_indices(images, per_class=3)
    shards = [class_balanced_indices(images, per_class=3, num_replicas=3, rank=r) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(full)


def test_bad_arguments():
    with pytest.raises(ValueError):
        class_balanced_indices([[0]], per_class=0)
    with pytest.raises(ValueError):
        class_balanced_indices([[0]], per_class=1, num_replicas=2, rank=2)
