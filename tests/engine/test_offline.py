"""Without network: fine-tunes, resumes, eval and predict never fetch backbone weights; `train base` names the URL,
the file and the folder when the download fails; --backbone-weights loads a local file and refuses one that does not
fit; `loce doctor` says whether the shipped configs' backbone weights are cached. The network is made unreachable
for real (name resolution fails, as on a compute node without DNS): torch's hub download itself fails."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torchvision

from loce_cli.engine.training.run import TrainRequest, train
from loce_cli.errors import DataError, LoceUsageError
from tests.conftest import tiny_train_options

ROOT = Path(__file__).resolve().parents[2]
SYNTH = ROOT / "configs" / "synthetic"
URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No name resolution (urllib's download raises URLError, as without DNS) and an empty torch hub cache."""
    def no_dns(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # resolved from TORCH_HOME, as a fresh process would
    return home


def _pretrained_config(tmp_path: Path, stem: str, **backbone) -> Path:
    """The synthetic config with its backbone initialised from torchvision://resnet18 (the shipped LVIS configs
    name torchvision://resnet50 the same way)."""
    extra = "".join(f", {k}={v!r}" for k, v in backbone.items())
    path = tmp_path / f"{stem}.py"
    path.write_text(f"_base_ = {str(SYNTH / (stem + '.py'))!r}\n"
                    f"model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
                    f"checkpoint='torchvision://resnet18'){extra}))\n")
    return path


@pytest.mark.slow
def test_finetune_from_checkpoint_runs_offline(offline, tiny_dataset, tmp_path):
    """A fine-tune from the LOCE authors' layout of base checkpoint (legacy serialisation, mmdet 2.8 meta), then
    a resume of it, with no network: neither fetches the backbone."""
    from tests.engine.test_foreign_checkpoints import authors_checkpoint, tiny_model_parts

    base_ckpt = authors_checkpoint(tmp_path / "authors_base.pth", tiny_model_parts(tiny_dataset))
    config = _pretrained_config(tmp_path, "loce_mask_rcnn_r18_fpn_normed_synth")
    options = tiny_train_options(tiny_dataset)
    result = train(TrainRequest(config=str(config), stage="finetune", work_dir=str(tmp_path / "ft"),
                                base_checkpoint=str(base_ckpt), cfg_options=options, no_validate=True))
    assert result.epochs == 1 and Path(result.checkpoint).is_file()
    resumed = train(TrainRequest(config=str(config), stage="finetune", work_dir=str(tmp_path / "ft"),
                                 base_checkpoint=str(base_ckpt), resume=str(tmp_path / "ft" / "epoch_1.pth"),
                                 cfg_options=["runner.max_epochs=2"], no_validate=True))
    assert resumed.epochs == 2
    assert not offline.exists() or not any(offline.rglob("*.pth"))  # nothing was fetched


def test_train_base_offline_names_url_file_and_folder(offline, tiny_dataset, tmp_path):
    config = _pretrained_config(tmp_path, "mask_rcnn_r18_fpn_normed_synth")
    with pytest.raises(DataError) as e:
        train(TrainRequest(config=str(config), work_dir=str(tmp_path / "b"),
                           cfg_options=tiny_train_options(tiny_dataset), no_validate=True))
    text = str(e.value) + " " + e.value.hint
    assert URL in text and "resnet18-f37072fd.pth" in e.value.hint
    assert str(offline / "hub" / "checkpoints") in e.value.hint and "--backbone-weights" in e.value.hint


def _torchvision_resnet18(path: Path) -> Path:
    """A torchvision ResNet-18 state_dict with random weights, saved as torch's hub saves its files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_backbone_weights_refuses_a_file_that_does_not_fit(tiny_dataset, tmp_path):
    weights = _torchvision_resnet18(tmp_path / "resnet18.pth")  # 64 base channels; the synthetic backbone has 16
    with pytest.raises(DataError, match=r"conv1.weight has shape \[64, 3, 7, 7\], the backbone needs \[16, 3, 7, 7\]"):
        train(TrainRequest(config=str(SYNTH / "mask_rcnn_r18_fpn_normed_synth.py"), work_dir=str(tmp_path / "b"),
                           cfg_options=tiny_train_options(tiny_dataset), backbone_weights=str(weights)))
    state = torch.load(weights, weights_only=True)
    del state["layer4.1.bn2.running_var"]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(DataError, match=r"has no layer4.1.bn2.running_var"):
        train(TrainRequest(config=str(SYNTH / "mask_rcnn_r18_fpn_normed_synth.py"), work_dir=str(tmp_path / "b"),
                           cfg_options=tiny_train_options(tiny_dataset) + ["model.backbone.base_channels=64"],
                           backbone_weights=str(tmp_path / "partial.pth")))
    with pytest.raises(LoceUsageError, match="--backbone-weights is for a new base run"):
        train(TrainRequest(config=str(SYNTH / "loce_mask_rcnn_r18_fpn_normed_synth.py"), stage="finetune",
                           work_dir=str(tmp_path / "f"), base_checkpoint=str(weights),
                           cfg_options=tiny_train_options(tiny_dataset), backbone_weights=str(weights)))


def test_backbone_weights_file_initialises_the_backbone_offline(offline, tiny_dataset, tmp_path):
    from mmdet.models import build_detector

    from loce_cli.engine.training.run import run_config, validate
    from loce_cli.mmdet_ext.backbone_weights import init_weights

    weights = _torchvision_resnet18(tmp_path / "elsewhere" / "my_resnet18.pth")
    config = _pretrained_config(tmp_path, "mask_rcnn_r18_fpn_normed_synth", base_channels=64)
    req = TrainRequest(config=str(config), work_dir=str(tmp_path / "b"), backbone_weights=str(weights),
                       cfg_options=tiny_train_options(tiny_dataset) + ["model.neck.in_channels=[64,128,256,512]"])
    validate(req)
    cfg = run_config(req)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    init_weights(model, cfg.model)  # offline: a download would raise
    state = torch.load(weights, weights_only=True)
    assert torch.equal(model.backbone.conv1.weight.detach(), state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].conv2.weight.detach(), state["layer4.1.conv2.weight"])


def test_cached_weights_are_used_offline_and_doctor_sees_them(offline, tmp_path):
    from mmcv import Config
    from mmdet.models import build_detector

    from loce_cli.engine.doctor import check_backbone_weights
    from loce_cli.mmdet_ext.backbone_weights import init_weights, resolve

    check = check_backbone_weights()
    assert not check.ok and not check.required and "torchvision://resnet50: not cached" in check.detail
    assert "resnet50-0676ba61.pth" in check.hint and str(offline / "hub" / "checkpoints") in check.hint
    weights = resolve("torchvision://resnet18")
    assert weights.url == URL and weights.path == offline / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert not weights.cached
    _torchvision_resnet18(weights.path)  # where torch's hub keeps its downloads
    assert resolve("torchvision://resnet18").cached
    cfg = Config.fromfile(str(_pretrained_config(tmp_path, "mask_rcnn_r18_fpn_normed_synth", base_channels=64)))
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    model = build_detector(cfg.model)
    init_weights(model, cfg.model)
    assert torch.equal(model.backbone.conv1.weight.detach(),
                       torch.load(weights.path, weights_only=True)["conv1.weight"])
    for name in ("resnet50-0676ba61.pth", "resnet101-63fe2227.pth"):
        torch.save({}, offline / "hub" / "checkpoints" / name)
    check = check_backbone_weights()
    assert check.ok and "torchvision://resnet50: cached" in check.detail
