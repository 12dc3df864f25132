"""Reading a checkpoint to check it (class names, class count) maps it instead of loading it: a LOCE checkpoint
at LVIS v1 size carries a 4.8 GB feature memory that the launching process never needs."""

from __future__ import annotations

import torch

from loce_cli.engine.training.run import read_checkpoint


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_meta_is_read_without_loading_the_tensors(tmp_path):
    path = tmp_path / "big.pth"
    torch.save({"meta": {"CLASSES": ["a", "b"]},
                "state_dict": {"roi_head.memory.features": torch.ones(64, 1024, 1024)}}, path)  # 256 MB
    before = _rss_mb()
    ckpt = read_checkpoint(path)
    mapped = _rss_mb() - before
    assert ckpt["meta"]["CLASSES"] == ["a", "b"]
    assert mapped < 64, f"reading the meta took {mapped:.0f} MB"
    whole = torch.load(str(path), map_location="cpu", weights_only=True)  # what a full load costs
    assert _rss_mb() - before > 200
    assert torch.equal(ckpt["state_dict"]["roi_head.memory.features"][:2], whole["state_dict"][
        "roi_head.memory.features"][:2])


def test_legacy_format_still_reads(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"meta": {"CLASSES": ["x"]}, "state_dict": {"w": torch.zeros(3)}}, path,
               _use_new_zipfile_serialization=False)
    assert read_checkpoint(path)["meta"]["CLASSES"] == ["x"]
