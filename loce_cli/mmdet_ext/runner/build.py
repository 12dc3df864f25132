"""Building a training run from its config: the model, the data loader (resumable mid-epoch, class-aware when the
config asks, its workers guarded), the wrapper every run trains through, the checkpoint metadata, and the runner
with its optimizer and mixed precision."""

from __future__ import annotations

from typing import Tuple

import mmcv
import mmdet
import torch
import torch.distributed as dist
from mmcv.parallel import MMDataParallel
from mmcv.runner import build_optimizer, build_runner
from mmdet.datasets import build_dataloader
from mmdet.models import build_detector

from loce_cli import __version__
from loce_cli.mmdet_ext.amp import build_amp, fp32_head_outputs
from loce_cli.mmdet_ext.backbone_weights import drop_pretrained, init_weights
from loce_cli.mmdet_ext.class_aware import class_aware_config, class_aware_loader
from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel
from loce_cli.mmdet_ext.runner.epoch_runner import LoceEpochBasedRunner
from loce_cli.mmdet_ext.runner.loader_workers import guard_workers
from loce_cli.mmdet_ext.runner.resumable_sampler import PositionSeeded, ResumableSampler, make_resumable
from loce_cli.mmdet_ext.unwrap import unwrap_dataset


def build_train_model(cfg, dataset, rank: int, logger) -> torch.nn.Module:
    """The detector of ``cfg`` with its initial weights and ``dataset``'s classes (not wrapped yet); under amp its
    heads hand their outputs on in fp32. A run that loads or resumes a checkpoint never fetches the backbone's
    pretrained weights (the checkpoint replaces them)."""
    if cfg.get("load_from") or cfg.get("resume_from"):
        drop_pretrained(cfg.model)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    init_weights(model, cfg.model)  # a failed download: one line naming the URL, the file and its folder
    model.CLASSES = dataset.CLASSES
    if rank == 0 and getattr(model, "trainable", None) is not None:  # the fine-tune's freeze (not at eval)
        logger.info(model.freeze_summary())
    if cfg.get("amp"):
        fp32_head_outputs(model)  # boxes, proposals, losses and masks in fp32 (the heads' layers under autocast)
    return model


def build_train_loader(cfg, dataset, *, distributed: bool, world: int, rank: int, seed: int,
                       logger) -> Tuple[torch.utils.data.DataLoader, ResumableSampler, bool]:
    """mmdet's training loader over ``dataset`` (class-aware sampling when the config asks for it), its workers
    dying with this process, and the :class:`ResumableSampler` inside it. Returns ``(loader, resumable sampler,
    whether class-aware)``."""
    workers = int(cfg.data.workers_per_gpu)
    loader = build_dataloader(PositionSeeded(dataset) if workers else dataset, cfg.data.samples_per_gpu, workers,
                              num_gpus=1, dist=distributed, seed=seed, runner_type="EpochBasedRunner",
                              persistent_workers=False)
    class_aware = class_aware_config(cfg) is not None
    if class_aware:  # cRT: class-balanced image sampling (its epoch is reseeded by the seed hook)
        loader = class_aware_loader(loader, cfg.data.samples_per_gpu, world, rank, seed)
        logger.info(f"class-aware sampling: {len(loader.sampler)} images per epoch per process, each drawn class "
                    f"first (cRT)")
    guard_workers(loader)  # workers die with this process, even on kill -9
    resumable = make_resumable(loader, seed if workers else None)  # workers: augmentation seeded per position
    return loader, resumable, class_aware


def wrap_model(model: torch.nn.Module, *, distributed: bool, device: str, find_unused_parameters: bool = False):
    """The one wrapper every run trains through. Several processes: torch DDP
    (:class:`~loce_cli.mmdet_ext.parallel_compat.LoceDistributedDataParallel`) on CPUs (gloo) and GPUs (NCCL) alike,
    ``broadcast_buffers=False`` (the LOCE memory stays per-rank); one process: mmcv's ``MMDataParallel``."""
    if device == "cuda":
        model = model.cuda()
    if distributed:
        device_ids = [torch.cuda.current_device()] if device == "cuda" else None
        return LoceDistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False,
                                           find_unused_parameters=bool(find_unused_parameters))
    return MMDataParallel(model, device_ids=[0] if device == "cuda" else None)


def wrap_for_training(model: torch.nn.Module, cfg, *, distributed: bool, device: str, rank: int, logger):
    """:func:`wrap_model` with the config's ``find_unused_parameters``, the wrapper logged on rank 0 of a
    distributed run."""
    find_unused = bool(cfg.get("find_unused_parameters", False))
    model = wrap_model(model, distributed=distributed, device=device, find_unused_parameters=find_unused)
    if distributed and rank == 0:
        logger.info(f"model wrapper: {type(model).__name__} (torch DDP, "
                    f"{dist.get_backend()}, find_unused_parameters={find_unused}, broadcast_buffers=False)")
    return model


def checkpoint_meta(cfg, dataset) -> dict:
    """What every loce checkpoint records besides weights, optimizer and LOCE state."""
    dataset = unwrap_dataset(dataset)
    return dict(
        CLASSES=tuple(dataset.CLASSES),
        class_frequency=tuple(getattr(dataset, "class_frequency", ()) or ()),
        class_image_count=tuple(getattr(dataset, "class_image_count", ()) or ()),
        class_instance_count=tuple(getattr(dataset, "class_instance_count", ()) or ()),
        class_ids=tuple(int(i) for i in getattr(dataset, "cat_ids", ()) or ()),
        config=cfg.pretty_text,
        loce_version=__version__,
        mmdet_version=str(mmdet.__version__),
        mmcv_version=str(mmcv.__version__),
        torch_version=str(torch.__version__),
    )


def build_loce_runner(cfg, model, meta: dict, *, device: str, rank: int, timestamp: str, policy, resumable,
                      logger) -> LoceEpochBasedRunner:
    """The optimizer, the run's mixed precision (None: fp32) and the :class:`LoceEpochBasedRunner` over the
    wrapped ``model``, with the stop ``policy``, the ``resumable`` sampler and the mid-epoch checkpoints to keep
    (the config's ``checkpoint_config.max_keep_ckpts``, else 2)."""
    optimizer = build_optimizer(model, cfg.optimizer)
    amp = build_amp(cfg.get("amp"), device)  # None: fp32
    runner = build_runner(dict(type="LoceEpochBasedRunner", max_epochs=cfg.runner.max_epochs),
                          default_args=dict(model=model, optimizer=optimizer, work_dir=cfg.work_dir, logger=logger,
                                            meta=meta))
    runner.timestamp = timestamp
    runner.stop_policy, runner.resumable, runner.amp = policy, resumable, amp
    if amp is not None and rank == 0:
        logger.info(f"mixed precision: {amp.name} autocast on {amp.device_type}"
                    + (f", GradScaler ({cfg.amp.get('loss_scale')})" if amp.scaler is not None else ""))
    keep = int((cfg.get("checkpoint_config") or {}).get("max_keep_ckpts", -1) or -1)
    runner.mid_epoch_keep = keep if keep > 0 else LoceEpochBasedRunner.mid_epoch_keep  # mmcv's -1: keep all
    return runner
