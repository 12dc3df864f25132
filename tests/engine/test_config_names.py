"""Shipped configs by name (``loce_cli.engine.config.names``): every shipped config describes itself truly, names
resolve to the shipped files from any folder, a real path wins, and a wrong name gets the nearest names.
The installed-wheel side is in tests/test_wheel_install.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from loce_cli.engine.config.names import (GROUPS, config_file_name, configs_root, nearest_names, read_header,
                                          resolve_config, shipped_configs, shipped_file)
from loce_cli.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
COMPLETE = sorted(p for group in GROUPS for p in (ROOT / "configs" / group).glob("*.py"))
DATASETS = {"LVIS v1": (1203, "lvis_v1_"), "LVIS v0.5": (1230, "lvis_v0.5_"), "synthetic": (40, "work/quickstart/")}


def test_the_package_tree_is_the_checkout_tree():
    # loce_cli/configs links to configs/: one copy, listed in full
    assert configs_root() == (ROOT / "configs").resolve()
    assert (ROOT / "loce_cli" / "configs").is_symlink()
    assert [Path(c.path) for c in shipped_configs()] == [p.resolve() for p in COMPLETE]
    assert len(COMPLETE) >= 20


@pytest.mark.parametrize("path", COMPLETE, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_describes_itself_truly(path):
    """The first line's stage, dataset and backbone agree with what the config, loaded, holds."""
    from loce_cli.engine.config.loading import load_config, train_dataset_cfg

    header = read_header(path)
    assert header is not None, f"{path} lacks its '# Stage N | DATASET | BACKBONE | what it is' line"
    stage, dataset, backbone, summary = header
    assert summary and len(f"      {dataset}, {backbone}: {summary}") <= 80  # one line of `loce configs`
    cfg = load_config(path)
    assert (stage == 2) == bool(cfg.model.get("trainable")), "stage 2 configs freeze all but their trainable parts"
    classes, ann = DATASETS[dataset]
    assert cfg.model.roi_head.bbox_head.num_classes == classes
    assert ann in train_dataset_cfg(cfg).ann_file
    depth = cfg.model.backbone.depth
    assert backbone == f"R{depth}-FPN" + (", 1/4 width" if cfg.model.backbone.get("base_channels") == 16 else "")


def test_a_name_resolves_to_the_shipped_file_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    want = (ROOT / "configs" / "lvis" / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py").resolve()
    for given in ("lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1", "lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py",
                  "configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py", "./configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1",
                  "mask_rcnn_r50_fpn_normed_2x_lvis_v1"):  # the file name alone: one shipped config has it
        assert resolve_config(given) == want, given
    # a `_base_` piece resolves too (it is shipped), and loading a name inherits from the installed tree
    assert resolve_config("_base_/models/mask_rcnn_r50_fpn_normed").name == "mask_rcnn_r50_fpn_normed.py"
    from loce_cli.engine.config.loading import load_config

    cfg = load_config(Path("lvis/loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5"))
    assert Path(cfg.filename).resolve() == want.with_name("loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5.py")
    assert cfg.model.type == "LoceMaskRCNN" and cfg.model.roi_head.bbox_head.num_classes == 1230  # 3 levels of _base_
    assert cfg.runner.max_epochs == 6 and cfg.data_root == "data/lvis_v0.5/"


def test_a_real_path_wins_over_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "lvis" / "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"
    own.parent.mkdir()
    own.write_text("x = 1\n")
    assert resolve_config("lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py") == Path("lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py")
    # without .py it is not that file: the shipped config of the name
    assert resolve_config("lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1").parent == (ROOT / "configs" / "lvis").resolve()
    with pytest.raises(DataError, match="is a directory"):
        resolve_config("lvis")


def test_an_unknown_name_names_the_nearest_and_loce_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        resolve_config("lvis/mask_rcnn_r50_fpn_2x_lvis_v1")
    line = e.value.one_line()
    assert "\n" not in line and "no shipped config of that name" in line and "loce configs" in line
    assert e.value.hint.split(": ", 1)[1].startswith("lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1,")  # nearest first
    assert nearest_names("loce_mask_rcnn_r18_synth")[0] == "synthetic/loce_mask_rcnn_r18_fpn_normed_synth"
    with pytest.raises(DataError) as e:
        resolve_config("zzzz")
    assert "nearest" not in e.value.hint and "loce configs" in e.value.hint


def test_names_stay_inside_the_tree_and_ambiguous_file_names_need_their_folder(tmp_path):
    root = tmp_path / "configs"
    for group in GROUPS:
        (root / group).mkdir(parents=True)
        (root / group / "same.py").write_text("# Stage 1 | synthetic | R18-FPN | x\n")
    (tmp_path / "outside.py").write_text("x = 1\n")
    assert shipped_file("same", root) is None  # two groups have it
    assert shipped_file("lvis/same", root) == root / "lvis" / "same.py"
    assert shipped_file("../outside", root) is None and shipped_file("lvis/../../outside", root) is None
    assert shipped_file("/etc/passwd", root) is None
    assert [c.name for c in shipped_configs(root)] == ["lvis/same", "synthetic/same"]


def test_the_config_copy_a_run_writes_is_named_after_the_file():
    assert config_file_name("synthetic/mask_rcnn_r18_fpn_normed_synth") == "mask_rcnn_r18_fpn_normed_synth.py"
    assert config_file_name("configs/lvis/mask_rcnn_r50_fpn_normed_2x_lvis_v1.py") == \
        "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"
    assert config_file_name("gone/my_config") == "my_config.py"  # a resume whose config file has gone


def test_a_run_started_by_name_keeps_its_config_copy(tiny_base_model):
    """The session's base run is trained by name (tests/conftest.py): its work dir holds the config's copy under
    the file's name, and its checkpoint the config text and the name."""
    import torch

    _, ckpt, _ = tiny_base_model
    copy = ckpt.parent / "mask_rcnn_r18_fpn_normed_synth.py"
    assert copy.is_file() and "LoceMaskRCNN" in copy.read_text()
    meta = torch.load(str(ckpt), map_location="cpu", weights_only=False)["meta"]
    assert meta["exp_name"] == copy.name and "LoceMaskRCNN" in meta["config"]
