"""The ablation variants in configs/synthetic are deltas of the LOCE recipe that differ only where they say."""

from pathlib import Path

import pytest

from loce_cli.engine.config.loading import dataset_paths, load_config

SYNTH = Path(__file__).resolve().parents[2] / "configs" / "synthetic"
# name -> (memory on, loss type, repeat-factor sampling)
VARIANTS = {
    "ablation_plain_ft_synth.py": (False, "CrossEntropyLoss", False),
    "ablation_ebl_synth.py": (False, "EquilibriumLoss", False),
    "ablation_mfs_synth.py": (True, "CrossEntropyLoss", False),
    "loce_mask_rcnn_r18_fpn_normed_synth.py": (True, "EquilibriumLoss", False),
    "ablation_rfs_synth.py": (False, "CrossEntropyLoss", True),
    "ablation_rfs_loce_synth.py": (True, "EquilibriumLoss", True),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_differs_only_where_it_says(name):
    memory, loss, rfs = VARIANTS[name]
    cfg = load_config(SYNTH / name)
    ref = load_config(SYNTH / "loce_mask_rcnn_r18_fpn_normed_synth.py")
    head = cfg.model.roi_head
    assert head.memory.enabled is memory and head.bbox_head.loss_cls.type == loss
    assert [h.type for h in cfg.custom_hooks] == (["LoceMemoryInitHook"] if memory else [])
    # same schedule, seed-independent recipe, trainable parts and data as the LOCE config
    for key in ("optimizer", "lr_config", "runner"):
        assert cfg[key] == ref[key], key
    assert cfg.model.trainable == ref.model.trainable
    train = cfg.data.train
    if rfs:
        assert train.type == "ClassBalancedDataset" and train.oversample_thr == 0.1
        train = train.dataset
    assert train == ref.data.train
    assert dataset_paths(cfg) == dataset_paths(ref)


@pytest.mark.parametrize("name, ref", [
    ("mask_rcnn_r50_fpn_normed_2x_rfs_lvis_v1.py", "mask_rcnn_r50_fpn_normed_2x_lvis_v1.py"),
    ("loce_mask_rcnn_r50_fpn_normed_6e_rfs_lvis_v1.py", "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py")])
def test_lvis_rfs_configs_wrap_the_same_data(name, ref):
    lvis = SYNTH.parent / "lvis"
    cfg, base = load_config(lvis / name), load_config(lvis / ref)
    assert cfg.data.train.type == "ClassBalancedDataset" and cfg.data.train.oversample_thr == 1e-3
    assert cfg.data.train.dataset == base.data.train and cfg.model == base.model
    assert dataset_paths(cfg) == dataset_paths(base)
