"""A run's checkpoint files: pruning of mid-epoch checkpoints, stale temporary files, atomic writes."""

import os
import time

import pytest

from loce_cli.mmdet_ext.runner.checkpoint_files import (newest_checkpoint, point_latest, prune_mid_epoch, rank_file,
                                                 remove_stale_tmp, write_atomic)


def _touch(path, when):
    path.write_bytes(b"x")
    os.utime(path, (when, when))


def test_mid_epoch_checkpoints_pruned_never_the_newest(tmp_path):
    now = time.time()
    for i, n in enumerate((3, 6, 9)):
        _touch(tmp_path / f"iter_{n}.pth", now + i)
        _touch(tmp_path / f"iter_{n}.rank1.pth", now + i - 0.5)
    point_latest(str(tmp_path), "iter_9.pth")
    removed = prune_mid_epoch(str(tmp_path), keep=2)  # within an epoch: the newest two stay
    assert sorted(os.path.basename(p) for p in removed) == ["iter_3.pth", "iter_3.rank1.pth"]
    _touch(tmp_path / "epoch_1.rank1.pth", now + 3)
    _touch(tmp_path / "epoch_1.pth", now + 4)
    point_latest(str(tmp_path), "epoch_1.pth")
    removed = prune_mid_epoch(str(tmp_path), keep=2, epoch_end_iter=10)  # the epoch end supersedes them all
    assert sorted(os.path.basename(p) for p in removed) == ["iter_6.pth", "iter_6.rank1.pth", "iter_9.pth",
                                                            "iter_9.rank1.pth"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth", "epoch_1.rank1.pth", "latest.pth"]
    # the checkpoint latest.pth points to is never removed, even when "superseded"
    _touch(tmp_path / "iter_12.pth", now + 5)
    point_latest(str(tmp_path), "iter_12.pth")
    assert prune_mid_epoch(str(tmp_path), keep=1, epoch_end_iter=20) == []
    assert newest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_12.pth")
    assert rank_file(str(tmp_path / "iter_12.pth"), 3) == str(tmp_path / "iter_12.rank3.pth")


def test_only_loce_temporaries_are_removed(tmp_path):
    ours = [".epoch_3.pth.k2j_9x0a.tmp", ".iter_40.pth.abcdefgh.tmp", ".latest.pth.12345.tmp",
            ".loce_train_result.json.0a1b2c3d.tmp", ".iter_4.rank1.pth.zz_zz_zz.tmp"]
    theirs = ["notes.tmp", ".bashrc", "epoch_3.pth", ".cache.tmp", ".epoch_3.pth.tmp", "data.json.abcdefgh.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    assert remove_stale_tmp(str(tmp_path)) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)


def test_write_atomic_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "iter_5.pth"
    target.write_bytes(b"previous")

    def crash(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(str(target), crash)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["iter_5.pth"]
    write_atomic(str(target), lambda tmp: open(tmp, "wb").write(b"new"))
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["iter_5.pth"]
