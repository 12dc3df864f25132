"""loce inspect scores|memory on checkpoints written the way loce writes them."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.core.memory_bank import FeatureMemory
from loce_cli.engine.inspect.state import inspect_memory, inspect_scores
from loce_cli.engine.pictures.inspect_plots import plot_scores
from loce_cli.errors import DataError, LoceUsageError

NAMES = ("a", "b", "c", "d", "e")
FREQ = ("f", "c", "r", "r", "c")


def _write(path, scores=True, memory=True, meta=True):
    state = {"backbone.conv1.weight": torch.zeros(2, 3, 1, 1)}
    if scores:
        state["roi_head.bbox_head.score_tracker.scores"] = torch.tensor([0.6, 0.3, 0.05, 0.1, 0.2, 0.01])
    if memory:
        mem = FeatureMemory(5, queue_size=4, feat_shape=(2, 1, 1), dtype=torch.float16)
        mem.push(torch.ones(7, 2, 1, 1), torch.tensor([0, 0, 0, 0, 1, 1, 2]))
        state.update({f"roi_head.memory.{k}": v for k, v in mem.state_dict().items()})
    ckpt = {"state_dict": state}
    if meta:
        ckpt["meta"] = {"CLASSES": NAMES, "class_frequency": FREQ, "class_image_count": (500, 40, 3, 1, 20),
                        "class_instance_count": (900, 60, 3, 1, 25)}
    torch.save(ckpt, path)
    return path


def test_scores_summary_and_weakest(tmp_path):
    r = inspect_scores(_write(tmp_path / "x.pth"), lowest=2)
    assert r.num_classes == 5 and r.background == pytest.approx(0.01)
    assert r.groups["rare"]["classes"] == 2 and r.groups["rare"]["mean"] == pytest.approx(0.075)
    assert r.groups["common"]["min"] == pytest.approx(0.2)
    assert [c.name for c in r.lowest] == ["c", "d"] and r.lowest[0].train_instances == 3
    r = inspect_scores(tmp_path / "x.pth", split="common", lowest=5)
    assert [c.name for c in r.lowest] == ["e", "b"]
    png = plot_scores(r, tmp_path / "s.png")
    assert png.stat().st_size > 5000


def test_memory_fill_per_group(tmp_path):
    r = inspect_memory(_write(tmp_path / "x.pth"))
    assert (r.queue_size, r.dtype, r.feature_shape, r.stored_features) == (4, "float16", [2, 1, 1], 7)
    assert r.fill["frequent"] == {"full": 1, "partial": 0, "empty": 0}
    assert r.fill["common"] == {"full": 0, "partial": 1, "empty": 1}
    assert r.fill["rare"] == {"full": 0, "partial": 1, "empty": 1}
    assert r.empty_classes == ["d", "e"]


def test_base_checkpoint_and_bad_input(tmp_path):
    base = _write(tmp_path / "base.pth", scores=False, memory=False)
    with pytest.raises(DataError, match="no mean classification scores"):
        inspect_scores(base)
    with pytest.raises(DataError, match="no feature memory"):
        inspect_memory(base)
    with pytest.raises(DataError, match="no class names"):
        inspect_scores(_write(tmp_path / "nometa.pth", meta=False))
    with pytest.raises(LoceUsageError, match="unknown split"):
        inspect_scores(_write(tmp_path / "x.pth"), split="medium")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 10)
    with pytest.raises(DataError, match="not a readable checkpoint"):
        inspect_memory(junk)


def test_cli_inspect(tmp_path):
    ck = str(_write(tmp_path / "x.pth"))
    runner = CliRunner()
    r = runner.invoke(app, ["inspect", "scores", ck, "--lowest", "1"])
    assert r.exit_code == 0 and "rare" in r.stdout and "c" in r.stdout
    r = runner.invoke(app, ["inspect", "memory", ck, "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["empty_classes"] == ["d", "e"]
    base = str(_write(tmp_path / "b.pth", scores=False, memory=False))
    r = runner.invoke(app, ["inspect", "scores", base])
    assert r.exit_code == 1 and "base model" in r.stderr
    r = runner.invoke(app, ["inspect", "scores", ck, "--split", "medium"])
    assert r.exit_code == 2


def test_memory_plot_per_class_fill(tmp_path):
    """``inspect memory --plot``: each class's queue fill against its training instances, by group."""
    from loce_cli.engine.pictures.inspect_plots import plot_memory

    r = inspect_memory(_write(tmp_path / "x.pth"))
    assert [(c.name, c.group, c.stored, c.train_instances) for c in r.classes] == [
        ("a", "f", 4, 900), ("b", "c", 2, 60), ("c", "r", 1, 3), ("d", "r", 0, 1), ("e", "c", 0, 25)]
    png = plot_memory(r, tmp_path / "m.png")
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (960, 540)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    for colour in ("#d62728", "#ff7f0e", "#1f77b4"):  # a marker of every group is drawn in its colour
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels.astype(int) - rgb).sum(axis=1) < 40).sum() > 10, colour
    with pytest.raises(LoceUsageError, match="unsupported file type"):
        plot_memory(r, tmp_path / "m.jpg")
    runner = CliRunner()
    res = runner.invoke(app, ["inspect", "memory", str(tmp_path / "x.pth"), "--plot", str(tmp_path / "cli.png")])
    assert res.exit_code == 0 and "plot written" in res.stdout and (tmp_path / "cli.png").stat().st_size > 5000
    res = runner.invoke(app, ["inspect", "memory", str(tmp_path / "x.pth"), "--plot", str(tmp_path / "m.txt")])
    assert res.exit_code == 2 and not (tmp_path / "m.txt").exists()
