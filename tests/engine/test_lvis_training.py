"""One training iteration of each model shape of ``configs/lvis`` at the config's own resolution, as shipped (only
the data root is ours), with the LOCE memory at full size and its initialisation run over a capped image list;
``loce eval`` on a few val images with a checkpoint of the config's model. Slow (seconds to a minute each on
two CPU cores); run by ``make test``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.engine.test_lvis_configs import CLASSES, LVIS, cls_outputs, load_shipped, version_of

MEMORY_INIT_IMAGES = 1  # cap of the class-balanced list (the paper's is queue_size // 16 = 5 per class)


def one_iteration(cfg, config, work_dir: Path, iterate: bool = True):
    """Dataset, model, loader, optimizer and hooks built from ``cfg`` as ``loce train`` builds them, then the
    first epoch's hooks (memory init) and one iteration (warm-up lr, forward, backward, SGD step); without
    ``iterate``, the first batch is drawn but not trained on."""
    import torch
    from mmcv.parallel import MMDataParallel
    from mmcv.runner import OptimizerHook, build_optimizer, build_runner
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector
    from mmdet.utils import get_root_logger

    import loce_cli.mmdet_ext  # noqa: F401
    import loce_cli.mmdet_ext.runner  # noqa: F401  (registers LoceEpochBasedRunner)
    from loce_cli.mmdet_ext.class_aware import class_aware_config, class_aware_loader

    torch.manual_seed(0)
    dataset = build_dataset(cfg.data.train)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    model.CLASSES = dataset.CLASSES
    loader = build_dataloader(dataset, cfg.data.samples_per_gpu, 0, num_gpus=1, dist=False, seed=0,
                              runner_type="EpochBasedRunner", persistent_workers=False)
    if class_aware_config(cfg) is not None:  # cRT: as run_training does
        loader = class_aware_loader(loader, cfg.data.samples_per_gpu, 1, 0, 0)
    wrapped = MMDataParallel(model, device_ids=None)
    optimizer = build_optimizer(wrapped, cfg.optimizer)
    runner = build_runner(dict(type="LoceEpochBasedRunner", max_epochs=cfg.runner.max_epochs),
                          default_args=dict(model=wrapped, optimizer=optimizer, work_dir=str(work_dir),
                                            logger=get_root_logger(), meta={}))
    hooks = [dict(h, max_images=MEMORY_INIT_IMAGES) if h["type"] == "LoceMemoryInitHook" else dict(h)
             for h in cfg.get("custom_hooks", [])]
    runner.register_training_hooks(cfg.lr_config, OptimizerHook(**dict(cfg.optimizer_config)), None, None,
                                   custom_hooks_config=hooks)
    wrapped.train()
    runner.mode, runner.data_loader = "train", loader
    runner._max_iters = runner._max_epochs * len(loader)
    runner.call_hook("before_run")
    runner.call_hook("before_train_epoch")  # LoceMemoryInitHook fills the memory (and warms the scores) here
    filled = model.roi_head.memory.fill_summary() if hasattr(model.roi_head, "memory") else None
    batch = next(iter(loader))
    runner._inner_iter = 0
    runner.call_hook("before_train_iter")  # linear warm-up: lr = 0.02 * 0.001 at iteration 0
    if iterate:
        runner.run_iter(batch, train_mode=True)
        runner.call_hook("after_train_iter")  # backward + SGD step
    init = next((h.summary for h in runner.hooks if type(h).__name__ == "LoceMemoryInitHook"), None)
    return SimpleNamespace(model=model, dataset=dataset, outputs=getattr(runner, "outputs", None),
                           lr=runner.current_lr()[0], batch=batch, memory_init=init, filled_after_init=filled)


def check_iteration(run, cfg, config):
    import torch

    n = CLASSES[version_of(config)]
    loce = Path(config).name.startswith("loce_")
    finetune = cfg.model.get("trainable") is not None  # LOCE and the baselines' decoupled fine-tunes
    out = run.outputs
    assert math.isfinite(float(out["loss"].detach()))
    # Seesaw reports its classification loss in two parts (loss_cls_objectness, loss_cls_classes)
    cls_keys = [k for k in out["log_vars"] if k.startswith("loss_cls")]
    assert cls_keys == (["loss_cls_objectness", "loss_cls_classes"] if "seesaw" in config else ["loss_cls"])
    box_only = "faster_rcnn" in Path(config).name  # Faster R-CNN: no mask loss, no mask head
    assert ("loss_mask" in out["log_vars"]) != box_only
    for key in ("loss_rpn_cls", "loss_rpn_bbox", "loss_bbox", *([] if box_only else ["loss_mask"]), *cls_keys):
        assert math.isfinite(out["log_vars"][key]), key
    assert out["num_samples"] == cfg.data.samples_per_gpu == 2
    assert run.lr == pytest.approx(0.02 * 0.001)  # the warm-up's first step
    metas = run.batch["img_metas"].data[0]
    for meta in metas:  # the config's scale: (1333, 640..800)
        h, w = meta["img_shape"][:2]
        assert min(h, w) in range(640, 801, 32) or max(h, w) == 1333
    grads = {name: p.grad for name, p in run.model.named_parameters()}
    trained = {name for name, g in grads.items() if g is not None and bool(torch.isfinite(g).all())
               and bool(g.abs().sum() > 0)}
    assert "roi_head.bbox_head.fc_cls.weight" in trained
    assert box_only or "roi_head.mask_head.conv_logits.weight" in trained
    assert run.model.roi_head.bbox_head.fc_cls.weight.shape[0] == cls_outputs(config, n)
    if finetune:  # only the paper's trainable parts got gradients
        assert not any(name.startswith(("backbone.", "neck.", "roi_head.bbox_head.shared_fcs.")) for name in trained)
        assert any(name.startswith("rpn_head.") for name in trained)
    if loce:
        memory = run.model.roi_head.memory
        assert tuple(memory.feats.shape) == (n, 80, 256, 7, 7)  # full size: v1 4.8 GB (fp32)
        init = run.memory_init
        assert init is not None and init["images"] == MEMORY_INIT_IMAGES and init["features"] > 0
        assert run.filled_after_init["empty"] < n  # the init pushed features
        # the iteration pushed its own ground truths' features on top
        assert int(memory.counts.sum()) > init["features"] or int(memory.counts.sum()) == n * 80
    if not finetune:
        assert any(name.startswith("backbone.layer4.") for name in trained)
        assert any(name.startswith("roi_head.bbox_head.shared_fcs.") for name in trained)


# One iteration of every shipped config's model: the base model (every layer but the stem trains, plain CE) and
# the LOCE stage (frozen backbone/FPN/shared FCs, EBL, full-size memory, memory init), at LVIS v1's 1203 and
# v0.5's 1230 classes, with R50 and R101 backbones. A repeat-factor-sampling (RFS) config trains its twin's model
# on its twin's data wrapped in ClassBalancedDataset: its twin's iteration covers the model, and the RFS test
# below checks the wrapper (and LOCE's memory init reading the class-balanced list through it).
# Likewise a v0.5 config is its v1 twin with v0.5's files and 1230 classes, and an R101 config its R50 twin with
# depth 101 (stock mmdet ResNet): the twin's iteration covers the code; the twin test below proves the configs
# differ only there and builds the config's own model, data and (LOCE) full-size memory and its initialisation.
CONFIGS = sorted(p.name for p in LVIS.glob("*.py"))
RFS = [n for n in CONFIGS if "_rfs_" in n]
_DATA_KEYS = {f"data.{split}.{key}" for split in ("train", "val", "test") for key in ("ann_file", "img_prefix")}
TWINS = {  # config -> (twin whose iteration runs, the only flattened config keys allowed to differ)
    **{n: (n.replace("v0.5", "v1"), _DATA_KEYS | {"data_root", "model.roi_head.bbox_head.num_classes",
                                                 "model.roi_head.mask_head.num_classes"})
       for n in CONFIGS if n.endswith("_lvis_v0.5.py")},
    **{n: (n.replace("r101", "r50"), {"model.backbone.depth"}) for n in CONFIGS if "_r101_" in n},
}
SHAPES = [n for n in CONFIGS if n not in RFS and n not in TWINS]


def _flat(d, prefix: str = "") -> dict:
    if isinstance(d, (dict, list)):
        items = d.items() if isinstance(d, dict) else enumerate(d)
        return {k: v for key, value in items for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: d}


def check_rfs_run(run, cfg, config):
    n = CLASSES[version_of(config)]
    assert type(run.dataset).__name__ == "ClassBalancedDataset"
    ds, base = run.dataset, run.dataset.dataset
    assert len(ds) >= len(base) and set(ds.repeat_indices) == set(range(len(base)))  # repeats only
    metas = run.batch["img_metas"].data[0]
    assert len(metas) == cfg.data.samples_per_gpu == 2
    for meta in metas:  # the config's scale: (1333, 640..800)
        h, w = meta["img_shape"][:2]
        assert min(h, w) in range(640, 801, 32) or max(h, w) == 1333
    assert run.lr == pytest.approx(0.02 * 0.001)
    if Path(config).name.startswith("loce_"):
        memory = run.model.roi_head.memory
        assert tuple(memory.feats.shape) == (n, 80, 256, 7, 7)
        init = run.memory_init
        assert init is not None and init["images"] == MEMORY_INIT_IMAGES and init["features"] > 0
        assert run.filled_after_init["empty"] < n and 0 < int(memory.counts.sum()) <= init["features"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SHAPES)
def test_one_training_iteration_of_the_configs_model(in_lvis_workdir, tmp_path, name):
    cfg = load_shipped(LVIS / name)
    run = one_iteration(cfg, name, tmp_path)
    check_iteration(run, cfg, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", RFS)
def test_rfs_config_is_its_twin_over_class_balanced_data(in_lvis_workdir, tmp_path, name):
    """The RFS config equals its twin (the same name without ``_rfs``) but for ``data.train``, which wraps the
    twin's in ClassBalancedDataset (t = 0.001); built as ``loce train`` builds it, its loader draws a batch at the
    config's scale and, for LOCE, the memory init fills the full-size memory through the wrapper."""
    twin_name = name.replace("_rfs", "")
    assert twin_name in SHAPES
    cfg, twin = load_shipped(LVIS / name), load_shipped(LVIS / twin_name)
    a, b = cfg._cfg_dict.to_dict(), twin._cfg_dict.to_dict()
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == {"data"}
    assert {k for k in a["data"].keys() | b["data"].keys() if a["data"].get(k) != b["data"].get(k)} == {"train"}
    assert a["data"]["train"] == dict(type="ClassBalancedDataset", oversample_thr=1e-3, dataset=b["data"]["train"])
    check_rfs_run(one_iteration(cfg, name, tmp_path, iterate=False), cfg, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TWINS))
def test_twin_config_differs_only_in_classes_data_or_depth(in_lvis_workdir, tmp_path, name):
    """A v0.5 / R101 config equals its twin (whose full-shape iteration runs above) but for the keys listed in
    TWINS; built as ``loce train`` builds it, its own model has the version's class count (and depth), its loader
    draws a batch at the config's scale from its own data and, for LOCE, the memory init fills its full-size
    memory."""
    import torch

    twin_name, allowed = TWINS[name]
    assert twin_name in SHAPES
    cfg, twin = load_shipped(LVIS / name), load_shipped(LVIS / twin_name)
    a, b = _flat(cfg._cfg_dict.to_dict()), _flat(twin._cfg_dict.to_dict())
    assert {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)} == allowed
    run = one_iteration(cfg, name, tmp_path, iterate=False)
    n = CLASSES[version_of(name)]
    assert len(run.dataset.CLASSES) == n
    assert run.model.roi_head.bbox_head.fc_cls.weight.shape[0] == cls_outputs(name, n)
    assert run.model.roi_head.mask_head.conv_logits.weight.shape[0] == n
    assert len(run.model.backbone.layer3) == (23 if "_r101_" in name else 6)  # R101: 23 blocks in layer3
    for meta in run.batch["img_metas"].data[0]:  # the config's scale: (1333, 640..800)
        h, w = meta["img_shape"][:2]
        assert min(h, w) in range(640, 801, 32) or max(h, w) == 1333
    if name.startswith("loce_"):
        memory = run.model.roi_head.memory
        assert tuple(memory.feats.shape) == (n, 80, 256, 7, 7)
        assert run.memory_init["images"] == MEMORY_INIT_IMAGES and run.memory_init["features"] > 0
        assert 0 < int(memory.counts.sum()) <= run.memory_init["features"]
    with torch.no_grad():  # the built model runs forward on its own batch (train mode: losses)
        losses = run.model(img=run.batch["img"].data[0], img_metas=run.batch["img_metas"].data[0],
                           gt_bboxes=run.batch["gt_bboxes"].data[0], gt_labels=run.batch["gt_labels"].data[0],
                           gt_masks=run.batch["gt_masks"].data[0])
    assert all(math.isfinite(float(sum(v) if isinstance(v, list) else v)) for v in losses.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mask_rcnn_r50_fpn_normed_2x_lvis_v1.py", "loce_mask_rcnn_r50_fpn_normed_6e_lvis_v1.py"])
def test_loce_eval_on_a_few_val_images(in_lvis_workdir, lvis_v1_root, tmp_path, name):
    """A checkpoint of the config's model (random weights, class names from the data; for LOCE with its full-size
    feature memory in the checkpoint), evaluated by ``loce eval`` through the config's test pipeline on 2 val
    images (one from each COCO folder)."""
    import torch
    from mmcv.runner import save_checkpoint
    from mmdet.datasets import build_dataset
    from mmdet.models import build_detector
    from typer.testing import CliRunner

    import loce_cli.mmdet_ext  # noqa: F401
    from loce_cli.cli import app
    from loce_cli.engine.data.prep import prep_dataset
    from loce_cli.mmdet_ext.runner import checkpoint_meta

    # a prepared dataset root whose val file holds 2 images, one in train2017/ and one in val2017/
    small = tmp_path / "small"
    (small / "annotations").mkdir(parents=True)
    val = json.loads((lvis_v1_root / "annotations" / "lvis_v1_val.json").read_text())
    keep = [next(im for im in val["images"] if f"/{folder}/" in im["coco_url"]) for folder in ("train2017", "val2017")]
    ids = {im["id"] for im in keep}
    val.update(images=keep, annotations=[a for a in val["annotations"] if a["image_id"] in ids])
    (small / "annotations" / "lvis_v1_val.json").write_text(json.dumps(val))
    (small / "annotations" / "lvis_v1_train.json").symlink_to(lvis_v1_root / "annotations" / "lvis_v1_train.json")
    for folder in ("train2017", "val2017"):
        (small / folder).symlink_to(lvis_v1_root / folder, target_is_directory=True)
    assert prep_dataset(small, check_images="none").ok
    option = f"data.test.ann_file={small}/annotations/lvis_v1_val.json"

    cfg = load_shipped(LVIS / name)
    torch.manual_seed(0)
    model = build_detector(cfg.model)
    model.init_weights()
    dataset = build_dataset(cfg.data.train)
    ckpt = tmp_path / "base.pth"
    save_checkpoint(model, str(ckpt), meta=checkpoint_meta(cfg, dataset))

    out = tmp_path / "eval"
    r = CliRunner().invoke(app, ["eval", str(LVIS / name), str(ckpt), "--out", str(out), "--cfg-options", option,
                                 "--json"])
    assert r.exit_code == 0, r.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["metrics"]) == {"bbox", "segm"}
    for m in metrics["metrics"].values():
        assert len(m["per_class"]) == 1203
        assert all(0.0 <= m["summary"][k] <= 1.0 or m["summary"][k] == -1.0 for k in ("AP", "APr", "APc", "APf"))
    dets = json.loads((out / "results.json").read_text())
    assert {d["image_id"] for d in dets} == ids
    per_image = {i: sum(d["image_id"] == i for d in dets) for i in ids}
    assert all(0 < n <= 300 for n in per_image.values())  # test_cfg: at most 300 per image
    assert min(d["score"] for d in dets) >= 1e-4  # score_thr
