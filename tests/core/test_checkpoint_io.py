"""The one checkpoint loader: weights only whatever TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD says, one-line refusals,
no check-then-load gap, and the checkpoint layouts people have (loce, stock mmdet 2.x, the authors' mmdet 2.8
code, a bare state_dict, legacy pre-zip files)."""

import os
from collections import OrderedDict

import pytest
import torch

from loce_cli.core.checkpoint_io import UnsafeCheckpointError, load_checkpoint_file
from loce_cli.errors import DataError


class _Payload:
    """Unpickling this object creates ``path`` (what a malicious checkpoint would do, harmlessly)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def write_evil(path, marker):
    torch.save({"meta": {"epoch": 1, "iter": 1, "x": _Payload(marker)},
                "state_dict": {"w": torch.zeros(2)}}, str(path))
    return path


def stock_mmdet_layout(path, legacy=False):
    """What mmcv 1.x's save_checkpoint writes for mmdet 2.x (and the authors' mmdet 2.8 code: the same keys,
    older torch: ``legacy`` writes the pre-1.6 format)."""
    state = OrderedDict([("backbone.conv1.weight", torch.randn(4, 3, 3, 3)), ("roi_head.bbox_head.fc_cls.weight",
                                                                             torch.randn(4, 8))])
    state._metadata = OrderedDict([("", {"version": 1})])
    ckpt = {"meta": {"mmcv_version": "1.2.4", "time": "Mon Mar  1 10:00:00 2021", "mmdet_version": "2.8.0",
                     "config": "model = dict(type='MaskRCNN')\n", "CLASSES": ("a", "b", "c"), "epoch": 24,
                     "iter": 120000, "env_info": "sys.platform: linux", "seed": None, "exp_name": "x.py",
                     "hook_msgs": {"last_ckpt": "/work/epoch_24.pth"}},
            "state_dict": state,
            "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(4, 3, 3, 3)}},
                          "param_groups": [{"lr": 0.02, "momentum": 0.9, "dampening": 0, "weight_decay": 0.0001,
                                            "nesterov": False, "initial_lr": 0.02, "params": [0, 1]}]}}
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    return ckpt


@pytest.fixture
def no_weights_only_env(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


@pytest.mark.parametrize("mmap", [False, True])
def test_pickle_payload_never_runs(tmp_path, no_weights_only_env, mmap):
    marker = tmp_path / "pwned"
    evil = write_evil(tmp_path / "evil.pth", marker)
    with pytest.raises(UnsafeCheckpointError) as e:
        load_checkpoint_file(evil, mmap=mmap)
    assert not marker.exists()
    text = e.value.one_line()
    assert "needs Python pickle" in text and ("builtins.open" in text or "io.open" in text)
    assert "\x1b" not in text and "\n" not in text and "truncated" not in text
    torch.load(str(evil), weights_only=False)  # the file really does run its payload when pickled
    assert marker.exists()


@pytest.mark.parametrize("legacy", [False, True])
def test_stock_and_authors_layouts_load(tmp_path, no_weights_only_env, legacy):
    path = tmp_path / "mmdet.pth"
    want = stock_mmdet_layout(path, legacy=legacy)
    got = load_checkpoint_file(path, mmap=True)
    assert got["meta"] == want["meta"]
    assert got["optimizer"]["param_groups"] == want["optimizer"]["param_groups"]
    for k, v in want["state_dict"].items():
        assert torch.equal(got["state_dict"][k], v)
    torch.save(want["state_dict"], str(tmp_path / "bare.pth"))  # a state_dict alone
    assert set(load_checkpoint_file(tmp_path / "bare.pth")) == set(want["state_dict"])


def test_loads_the_file_it_opened_not_what_the_path_names_later(tmp_path, monkeypatch):
    """Swapping the file under the path while loading (after the open) changes nothing: torch reads the
    open file's inode, not the path."""
    marker = tmp_path / "pwned"
    good, evil = tmp_path / "ckpt.pth", write_evil(tmp_path / "evil.pth", marker)
    torch.save({"state_dict": {"w": torch.ones(3)}}, str(good))
    real_load = torch.load

    def swap_then_load(f, *args, **kwargs):
        os.replace(evil, good)  # the attacker wins the race right before torch opens the file
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", swap_then_load)
    got = load_checkpoint_file(good, mmap=True)
    assert torch.equal(got["state_dict"]["w"], torch.ones(3)) and not marker.exists()


def test_broken_files_are_one_line(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.ones(1000)}}, str(good))
    (tmp_path / "trunc.pth").write_bytes(good.read_bytes()[:500])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello")
    (tmp_path / "zeros.pth").write_bytes(b"\x00" * 10)  # the weights-only unpickler: "unsupported operand"
    cases = {"trunc.pth": "not a readable checkpoint", "empty.pth": "is empty", "text.pth": "not a readable",
             "zeros.pth": "not a readable checkpoint", "missing.pth": "does not exist"}
    for name, text in cases.items():
        with pytest.raises(DataError, match=text) as e:
            load_checkpoint_file(tmp_path / name)
        assert not isinstance(e.value, UnsafeCheckpointError) and "\n" not in e.value.one_line()
    with pytest.raises(DataError, match="is a directory without latest.pth; it holds empty.pth, good.pth"):
        load_checkpoint_file(tmp_path)  # a directory: its latest.pth, else the .pth files it holds
