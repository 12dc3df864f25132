"""A crafted pickle checkpoint with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (a setting copied from forum answers)
through every way loce loads a checkpoint: ``--from``, ``--resume``, ``eval``, ``inspect`` (real processes), and
mmcv's ``load_checkpoint`` / mmdet's ``init_detector`` in-process. Its payload would create a marker file; the
marker must never exist and each refusal is one line."""

import os
import subprocess
import sys

import pytest

from tests.core.test_checkpoint_io import stock_mmdet_layout, write_evil
from tests.engine.test_train import BASE, LOCE, opts


def _loce(*args, cwd=None):
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "loce_cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=cwd)


def _refused(r, marker):
    assert not marker.exists(), "the checkpoint's payload ran"
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-2000:]
    assert "needs Python pickle" in lines[0] and "\x1b" not in r.stderr and "truncated" not in lines[0]
    assert "Traceback" not in r.stderr


@pytest.mark.slow
def test_pickle_checkpoint_refused_everywhere(tiny_dataset, tmp_path):
    marker = tmp_path / "pwned"
    evil = write_evil(tmp_path / "evil.pth", marker)
    val = tiny_dataset / "annotations" / "lvis_v1_val.json"  # eval's data too: not the config's default folder
    options = ["--cfg-options", *opts(tiny_dataset), f"data.test.ann_file={val}",
               f"data.test.img_prefix={tiny_dataset}/"]
    work = tmp_path / "run"  # --resume: the newest checkpoint of the work dir is the crafted one
    work.mkdir()
    os.link(evil, work / "epoch_1.pth")
    (work / "latest.pth").symlink_to("epoch_1.pth")
    checks = {
        "--resume": ("train", "base", BASE, "--work-dir", work, "--resume", *options),
        "--from": ("finetune", LOCE, "--from", evil, "--work-dir", tmp_path / "ft", *options),
        "eval": ("eval", BASE, evil, "--out", tmp_path / "ev", *options),
        "inspect": ("inspect", "scores", evil),
    }
    for name, args in checks.items():
        _refused(_loce(*args), marker)
    assert not (tmp_path / "ft").exists() and not (tmp_path / "ev").exists()


def test_mmcv_and_mmdet_loads_go_through_the_loader(tmp_path, monkeypatch):
    import torch
    from mmcv.runner import load_checkpoint

    import loce_cli.mmdet_ext  # noqa: F401  (installs the loader into mmcv)
    from loce_cli.core.checkpoint_io import UnsafeCheckpointError

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    evil = write_evil(tmp_path / "evil.pth", marker)
    model = torch.nn.Linear(3, 4)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(model, str(evil), map_location="cpu")
    assert not marker.exists()
    import mmcv.runner.checkpoint as ck

    # http(s), torchvision://, open-mmlab:// and mmcls:// download through `load_url`: loce's loader after it
    cache = tmp_path / "hub"
    cache.mkdir()
    os.link(evil, cache / "evil.pth")  # already in the download cache: no network needed
    with pytest.raises(UnsafeCheckpointError):
        ck.load_from_http("https://example.invalid/evil.pth", map_location="cpu", model_dir=str(cache))
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        ck.torch.load(str(evil), map_location="cpu")  # what pavi / s3 / local open-mmlab files call
    assert not marker.exists()
    # the layouts of stock mmdet 2.x and the authors' 2.8 code load into a model through mmcv
    path = tmp_path / "stock.pth"
    want = stock_mmdet_layout(path, legacy=True)
    net = torch.nn.Module()
    net.backbone = torch.nn.Module()
    net.backbone.conv1 = torch.nn.Conv2d(3, 4, 3, bias=False)
    got = load_checkpoint(net, str(path), map_location="cpu")
    assert torch.equal(net.backbone.conv1.weight, want["state_dict"]["backbone.conv1.weight"])
    assert got["meta"]["CLASSES"] == ("a", "b", "c")


def test_init_detector_is_weights_only(tmp_path, monkeypatch):
    from mmdet.apis import init_detector

    import loce_cli.mmdet_ext  # noqa: F401
    from loce_cli.core.checkpoint_io import UnsafeCheckpointError
    from loce_cli.engine.config.loading import load_config

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    evil = write_evil(tmp_path / "evil.pth", marker)
    with pytest.raises(UnsafeCheckpointError):
        init_detector(load_config(BASE), str(evil), device="cpu")
    assert not marker.exists()
