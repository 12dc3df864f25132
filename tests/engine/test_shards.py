"""Per-rank result shards: the merge is byte-identical to the single-process file; incomplete or foreign shards
are never merged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loce_cli.engine.evaluation.shards import ShardWriter, merge_shards, new_token, remove_stale
from loce_cli.errors import DataError


def _per_image(seed=0, images=30):
    """Detections per image in a model's order (labels, then boxes), with tied scores."""
    rng = np.random.default_rng(seed)
    ids = rng.choice(1000, size=images, replace=False).tolist()  # dataset order is not id order
    out = []
    for img in ids:
        dets = [dict(image_id=img, category_id=int(c), bbox=[float(v) for v in rng.uniform(0, 50, 4)],
                     score=float(np.round(rng.random(), 1)),
                     segmentation=dict(size=[48, 64], counts="PY1" + "\\" * int(rng.integers(0, 3))))
                for c in sorted(rng.integers(1, 9, int(rng.integers(0, 12))))]
        out.append((img, dets))
    return out


@pytest.mark.parametrize("world", [1, 3])
def test_merge_is_byte_identical_to_one_process(tmp_path, world):
    images = _per_image()
    token = new_token()
    writers = [ShardWriter(tmp_path, r, world, token) for r in range(world)]
    for n, (img, dets) in enumerate(images):  # rank r takes images r, r + world, ... like inference
        writers[n % world].add(img, dets)
    for w in writers:
        w.close()
    count = merge_shards(tmp_path, world, token, tmp_path / "results.json")
    everything = [d for _img, dets in images for d in dets]
    expected = json.dumps(sorted(everything, key=lambda d: (d["image_id"], -d["score"])))
    assert (tmp_path / "results.json").read_text() == expected
    assert count == len(everything)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # shards removed


def test_incomplete_or_foreign_shards_are_never_merged(tmp_path):
    images = _per_image(1)
    token = new_token()
    done = ShardWriter(tmp_path, 0, 2, token)
    crashed = ShardWriter(tmp_path, 1, 2, token)
    for n, (img, dets) in enumerate(images):
        (done if n % 2 == 0 else crashed).add(img, dets)
    done.close()  # rank 1 "crashed": its data was never closed, it has no index
    with pytest.raises(DataError, match="rank 1 is incomplete"):
        merge_shards(tmp_path, 2, token, tmp_path / "results.json")
    assert not (tmp_path / "results.json").exists()
    crashed.close()
    with pytest.raises(DataError, match="rank 0 is incomplete"):  # another run's token: not this run's shards
        merge_shards(tmp_path, 2, new_token(), tmp_path / "results.json")
    with pytest.raises(DataError, match="does not belong"):  # world size of another run
        merge_shards(tmp_path, 1, token, tmp_path / "results.json")
    with open(tmp_path / f".results.rank1.{token}.json.part", "ab") as f:  # damaged after closing
        f.write(b"x")
    with pytest.raises(DataError, match="damaged"):
        merge_shards(tmp_path, 2, token, tmp_path / "results.json")
    assert not (tmp_path / "results.json").exists()
    assert len(remove_stale(tmp_path)) == 4 and not list(tmp_path.iterdir())
