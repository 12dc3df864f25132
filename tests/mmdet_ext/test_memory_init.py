"""LoceMemoryInitHook / fill_memory over the synthetic data through mmdet's training pipeline."""

import torch

from tests.mmdet_ext import tiny
from tests.mmdet_ext.test_dataset import PIPELINE

TRAIN_PIPELINE = [p for p in PIPELINE if p["type"] != "Collect"] + [
    dict(type="Collect", keys=["img", "gt_bboxes", "gt_labels", "gt_masks"])]


def _dataset(root):
    from mmdet.datasets import build_dataset

    return build_dataset(dict(type="LoceLVISDataset", ann_file=str(root / "annotations" / "lvis_v1_train.json"),
                              img_prefix=str(root), pipeline=TRAIN_PIPELINE))


def test_fill_memory_covers_every_class_in_eval_mode(tiny_dataset):
    from loce_cli.mmdet_ext import fill_memory

    torch.manual_seed(0)
    ds = _dataset(tiny_dataset)
    model = tiny.build(tiny.model_cfg(num_classes=len(ds.CLASSES)))
    model.train()
    summary = fill_memory(model, ds)
    counts = model.roi_head.memory.counts
    assert (counts > 0).all(), counts  # every class has a stored feature
    assert summary["features"] > 0 and summary["features"] % 16 == 0
    assert model.training  # mode restored
    # per_class = queue_size // 16 = 1 image per class
    assert summary["images"] <= len(ds.CLASSES)


def test_hook_skips_when_memory_was_restored(tiny_dataset):
    from loce_cli.mmdet_ext import LoceMemoryInitHook

    ds = _dataset(tiny_dataset)
    model = tiny.build(tiny.model_cfg(num_classes=len(ds.CLASSES)))
    model.roi_head.memory.push(torch.zeros(1, 32, 7, 7), torch.tensor([0]))
    logs = []

    class Runner:
        rank, world_size = 0, 1
        data_loader = type("L", (), {"dataset": ds})()
        logger = type("Log", (), {"info": staticmethod(logs.append)})()

    Runner.model = model
    hook = LoceMemoryInitHook()
    hook.before_train_epoch(Runner)
    assert hook.summary is None and "skipped" in logs[0]
    assert int(model.roi_head.memory.counts.sum()) == 1


def test_repeat_factor_sampling_wrapper_keeps_memory_init_and_meta(tiny_dataset):
    """RFS (mmdet's ClassBalancedDataset) forwards get_ann_info but holds no class statistics: the memory init
    and the checkpoint meta must look through it to the LVIS dataset."""
    import mmcv
    from mmdet.datasets import build_dataset

    from loce_cli.mmdet_ext import fill_memory
    from loce_cli.mmdet_ext.runner import checkpoint_meta
    from loce_cli.mmdet_ext.unwrap import unwrap_dataset

    inner = dict(type="LoceLVISDataset", ann_file=str(tiny_dataset / "annotations" / "lvis_v1_train.json"),
                 img_prefix=str(tiny_dataset), pipeline=TRAIN_PIPELINE)
    wrapped = build_dataset(dict(type="ClassBalancedDataset", oversample_thr=0.3, dataset=inner))
    base = unwrap_dataset(wrapped)
    assert type(base).__name__ == "LoceLVISDataset" and len(wrapped) > len(base)  # rare images repeated
    meta = checkpoint_meta(mmcv.Config(dict(model=dict())), wrapped)
    assert meta["class_frequency"] == tuple(base.class_frequency) and len(meta["class_image_count"]) == 6
    torch.manual_seed(0)
    model = tiny.build(tiny.model_cfg(num_classes=len(base.CLASSES)))
    summary = fill_memory(model, wrapped)
    assert (model.roi_head.memory.counts > 0).all() and summary["images"] <= len(base)
