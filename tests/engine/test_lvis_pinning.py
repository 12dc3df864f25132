"""Every ``configs/lvis`` config, resolved, pinned to the paper's recipe (LOCE, ICCV 2021, and the authors' code).

A change to a shipped config that leaves the recipe must fail here; the numbers are the paper's, written out
once below, not read back from the configs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LVIS = ROOT / "configs" / "lvis"
CONFIGS = sorted(p.name for p in LVIS.glob("*.py"))

RECIPE = dict(
    rcnn_sampler=dict(type="RandomSampler", num=512, pos_fraction=0.25),
    test_rcnn=dict(score_thr=1e-4, nms=dict(type="nms", iou_threshold=0.5), max_per_img=300, mask_thr_binary=0.5),
    train_scales=[(1333, s) for s in range(640, 801, 32)],  # (1333, 640), (1333, 672), ... (1333, 800)
    flip_ratio=0.5,
    test_scale=(1333, 800),
    samples_per_gpu=2,
    optimizer=dict(type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4),
    warmup=dict(warmup="linear", warmup_iters=500, warmup_ratio=0.001),
    base=dict(max_epochs=24, step=[16, 22]),
    loce=dict(max_epochs=6, step=[3, 5]),
    memory=dict(queue_size=80, sample_classes=8, sample_features=4),
    tracker=dict(alpha=0.9, init_score=0.01, bg_score=0.01),
    trainable=["fc_cls", "fc_reg", "rpn", "mask_head"],
    trainable_box_only=["fc_cls", "fc_reg", "rpn"],
    mask_scale=20.0,
)
# the baselines (issue 20): each method's own settings, from its paper (and mmdet's model zoo for Seesaw)
BASELINE_LOSS = {
    "seesaw": dict(type="SeesawLoss", p=0.8, q=2.0),
    "eqlv2": dict(type="EQLv2Loss", gamma=12.0, mu=0.8, alpha=4.0),
    "federated": dict(type="FederatedLoss", num_classes_sampled=50, freq_power=0.5),
    "crt": dict(type="CrossEntropyLoss", use_sigmoid=False),
    "base": dict(type="CrossEntropyLoss", use_sigmoid=False),
}


def _method(name: str) -> str:
    """``loce``, a baseline's name, or ``base`` (the plain softmax-CE recipe)."""
    if name.startswith("loce_"):
        return "loce"
    return next((m for m in ("seesaw", "eqlv2", "federated", "crt") if m in name), "base")


def _finetune(name: str) -> bool:
    """A decoupled stage 2 (LOCE or a baseline fine-tune: 6 epochs from a base checkpoint)."""
    return "_6e_" in name


def _load(name: str):
    from mmcv import Config

    return Config.fromfile(str(LVIS / name))


def _version(name: str) -> str:
    return "v0.5" if "lvis_v0.5" in name else "v1"


def _train_set(cfg):
    ds = cfg.data.train
    while "dataset" in ds and "ann_file" not in ds:
        ds = ds.dataset
    return ds


def _pipeline_step(pipeline, type_name):
    steps = [p for p in pipeline if p["type"] == type_name]
    assert len(steps) == 1, f"{type_name} appears {len(steps)} times"
    return steps[0]


def test_every_lvis_config_is_pinned():
    assert len(CONFIGS) == 16, CONFIGS  # a new config must be added to the recipe tests on purpose


@pytest.mark.parametrize("name", CONFIGS)
def test_config_follows_the_paper_recipe(name):
    check_recipe(_load(name), name)


@pytest.mark.parametrize("edit", [
    "model = dict(train_cfg=dict(rcnn=dict(sampler=dict(num=256))))",
    "model = dict(test_cfg=dict(rcnn=dict(max_per_img=100)))",
    "optimizer = dict(lr=0.01)",
    "lr_config = dict(step=[4, 5])",
    "model = dict(roi_head=dict(memory=dict(queue_size=40)))",
    "model = dict(trainable=['fc_cls', 'fc_reg', 'rpn', 'mask_head', 'shared_fcs'])",
    "data = dict(train=dict(img_prefix='data/lvis_v0.5/train2017/'))",
], ids=["sampler", "max_per_img", "lr", "steps", "queue", "trainable", "old_v05_prefix"])
def test_a_deviation_fails_the_pin(tmp_path, edit):
    """The pin is not vacuous: one changed setting on top of the v0.5 LOCE config fails it (the last one is the
    v0.5 LOCE config as it was before the fix)."""
    name = "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v0.5.py"
    changed = tmp_path / name
    changed.write_text(f"_base_ = '{LVIS / name}'\n{edit}\n")
    from mmcv import Config

    with pytest.raises(AssertionError):
        check_recipe(Config.fromfile(str(changed)), name)


def check_recipe(cfg, name):
    method = _method(name)
    loce = method == "loce"
    version = _version(name)
    n_classes = {"v1": 1203, "v0.5": 1230}[version]
    model = cfg.model
    box_only = "faster_rcnn" in name  # Faster R-CNN: the same recipe without the mask head
    # model: Mask R-CNN R50/R101-FPN, normed mask head (the zoo's standard one where the name says no "normed"),
    # the class count of the LVIS version
    assert model.type == ("LoceFasterRCNN" if box_only else "LoceMaskRCNN")
    assert model.backbone.depth == (101 if "r101" in name else 50)
    assert model.backbone.init_cfg.checkpoint == f"torchvision://resnet{model.backbone.depth}"
    assert model.neck.type == "FPN" and model.neck.out_channels == 256
    roi = model.roi_head
    assert roi.bbox_head.num_classes == n_classes
    if box_only:
        assert roi.get("mask_head") is None and roi.get("mask_roi_extractor") is None
    elif "normed" in name:
        assert roi.mask_head.num_classes == n_classes
        assert roi.mask_head.type == "NormedMaskHead" and roi.mask_head.scale == RECIPE["mask_scale"]
    else:
        assert roi.mask_head.num_classes == n_classes and roi.mask_head.type == "FCNMaskHead"
        assert "scale" not in roi.mask_head and not roi.mask_head.get("class_agnostic")
    assert roi.bbox_roi_extractor.roi_layer.output_size == 7 and roi.bbox_roi_extractor.out_channels == 256
    # sampler, test settings
    sampler = model.train_cfg.rcnn.sampler
    assert {k: sampler[k] for k in RECIPE["rcnn_sampler"]} == RECIPE["rcnn_sampler"]
    test = model.test_cfg.rcnn
    assert test.score_thr == RECIPE["test_rcnn"]["score_thr"]
    assert dict(test.nms) == RECIPE["test_rcnn"]["nms"]
    assert test.max_per_img == 300 and (box_only or test.mask_thr_binary == 0.5)
    # data: multi-scale train with flip, 2 images per GPU, single-scale test, the version's files at data_root
    train = _train_set(cfg)
    resize = _pipeline_step(train.pipeline, "Resize")
    assert [tuple(s) for s in resize.img_scale] == RECIPE["train_scales"]
    assert resize.multiscale_mode == "value" and resize.keep_ratio is True
    assert _pipeline_step(train.pipeline, "RandomFlip").flip_ratio == RECIPE["flip_ratio"]
    assert bool(_pipeline_step(train.pipeline, "LoadAnnotations").get("with_mask")) is not box_only
    assert cfg.data.samples_per_gpu == RECIPE["samples_per_gpu"]
    flip_aug = _pipeline_step(cfg.data.test.pipeline, "MultiScaleFlipAug")
    assert tuple(flip_aug.img_scale) == RECIPE["test_scale"] and flip_aug.flip is False
    root = f"data/lvis_{version}/"
    for split, ds in (("train", train), ("val", cfg.data.val), ("test", cfg.data.test)):
        file = "train" if split == "train" else "val"
        assert ds.type == "LoceLVISDataset" and ds.loce_meta == "required", split
        assert ds.ann_file == f"{root}annotations/lvis_{version}_{file}.json", split
        # images resolve from coco_url (train2017/..., val2017/...): the prefix is the data root itself
        assert ds.img_prefix == root, split
    if "_rfs_" in name:
        assert cfg.data.train.type == "ClassBalancedDataset" and cfg.data.train.oversample_thr == 1e-3
    else:
        assert cfg.data.train.type == "LoceLVISDataset"
    # schedule
    assert {k: cfg.optimizer[k] for k in RECIPE["optimizer"]} == RECIPE["optimizer"]
    assert cfg.lr_config.policy == "step"
    assert {k: cfg.lr_config[k] for k in RECIPE["warmup"]} == RECIPE["warmup"]
    stage = RECIPE["loce" if _finetune(name) else "base"]
    assert cfg.runner.max_epochs == stage["max_epochs"] and list(cfg.lr_config.step) == stage["step"]
    assert not cfg.get("fp16")
    # losses and LOCE parts
    if _finetune(name):
        assert model.trainable == RECIPE["trainable_box_only" if box_only else "trainable"]
    else:
        assert model.get("trainable") is None
    if loce:
        assert roi.type == "LoceRoIHead" and roi.bbox_head.type == "LoceBBoxHead"
        assert roi.bbox_head.loss_cls.type == "EquilibriumLoss"
        assert roi.memory.enabled is True
        assert {k: roi.memory[k] for k in RECIPE["memory"]} == RECIPE["memory"]
        assert roi.memory.dtype == "float32"  # the paper's precision; float16 is the documented option
        assert dict(roi.bbox_head.score_tracker) == RECIPE["tracker"]
        hooks = [h for h in cfg.custom_hooks if h["type"] == "LoceMemoryInitHook"]
        assert len(hooks) == 1 and hooks[0].get("images_per_class") is None  # queue_size // 16 = 5 per class
    else:
        assert roi.type == "StandardRoIHead" and roi.bbox_head.type == "Shared2FCBBoxHead"
        want = BASELINE_LOSS[method]
        assert {k: roi.bbox_head.loss_cls.get(k) for k in want} == want
        assert not [h for h in cfg.get("custom_hooks", []) if h["type"] == "LoceMemoryInitHook"]
        predictor = roi.bbox_head.get("cls_predictor_cfg")
        if method == "seesaw":  # mmdet's normalised-linear classifier (its spelling of "temperature")
            assert dict(predictor) == dict(type="NormedLinear", tempearture=20)
        else:
            assert predictor is None
        hooks = [h["type"] for h in cfg.get("custom_hooks", [])]
        assert ("ClassFrequencyHook" in hooks) == (method == "federated")
        sampler = (cfg.data.get("train_dataloader") or {}).get("class_aware_sampler")
        assert sampler == (dict(num_sample_class=1) if method == "crt" else None)


@pytest.mark.parametrize("name", [n for n in CONFIGS if _finetune(n)])
def test_loce_stage_trains_exactly_the_papers_parameters(name):
    """Built from the config: fc_cls, fc_reg, the RPN and the mask head train; backbone, FPN and the shared FCs
    are frozen (so stored RoI features stay valid)."""
    import torch

    import loce_cli.mmdet_ext  # noqa: F401
    from mmdet.models import build_detector

    cfg = _load(name)
    cfg.model.backbone.init_cfg = None
    if "memory" in cfg.model.roi_head:
        cfg.model.roi_head.memory.enabled = False  # same parameters; no 4.8 GB buffer for a freezing check
        cfg.model.roi_head.memory.queue_size = 1
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    prefixes = ("roi_head.bbox_head.fc_cls.", "roi_head.bbox_head.fc_reg.", "rpn_head.", "roi_head.mask_head.")
    assert trains == {n for n, _ in model.named_parameters() if n.startswith(prefixes)}
    assert any(n.startswith("backbone.") for n in frozen) and any(n.startswith("neck.") for n in frozen)
    assert any(n.startswith("roi_head.bbox_head.shared_fcs.") for n in frozen)
    assert not any(n.startswith(("backbone.", "neck.", "roi_head.bbox_head.shared_fcs.")) for n in trains)
    model.train()  # BatchNorm stays in eval mode while frozen
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and not any(m.training for m in bns)
