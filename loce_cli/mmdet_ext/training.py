"""Training plumbing over mmcv 1.x runners: atomic checkpoints with loce metadata, a non-finite-loss stop, a
rich progress bar, and the model wrapper: torch DDP on CPUs (gloo) and GPUs (NCCL) through one code path
(mmdet 2.28's ``build_ddp`` asserts a GPU device; :mod:`loce_cli.mmdet_ext.parallel_compat` adds what mmcv's DDP
wrapper lacks on the CPU and on torch 2.x).
"""

from __future__ import annotations

import math
import os
import os.path as osp
import sys
import tempfile
from typing import Optional

import torch
import random

import numpy as np
from mmcv.runner import HOOKS, RUNNERS, EpochBasedRunner, Hook, OptimizerHook
from mmcv.runner.checkpoint import save_checkpoint


class NonFiniteLossError(RuntimeError):
    def __init__(self, iteration: int, epoch: int, losses: dict):
        self.iteration, self.epoch, self.losses = iteration, epoch, losses
        bad = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(f"non-finite loss at iteration {iteration} (epoch {epoch}): {bad}")


@RUNNERS.register_module()
class LoceEpochBasedRunner(EpochBasedRunner):
    """``EpochBasedRunner`` whose checkpoints are written to a temporary name and renamed (an interrupted
    write never leaves a half-written file), with ``latest.pth`` switched atomically to the newest one."""

    def save_checkpoint(self, out_dir, filename_tmpl="epoch_{}.pth", save_optimizer=True, meta=None,
                        create_symlink=True):
        meta = dict(meta or {})
        meta.update(epoch=self.epoch + 1, iter=self.iter, rng=rng_state())
        if self.meta is not None:
            meta = {**self.meta, **meta}
        filename = filename_tmpl.format(self.epoch + 1)
        filepath = osp.join(out_dir, filename)
        optimizer = self.optimizer if save_optimizer else None
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".tmp", dir=out_dir)
        os.close(fd)
        try:
            save_checkpoint(self.model, tmp, optimizer=optimizer, meta=meta)
            os.replace(tmp, filepath)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
        if create_symlink:
            link = osp.join(out_dir, "latest.pth")
            tmp_link = osp.join(out_dir, f".latest.pth.{os.getpid()}.tmp")
            if osp.lexists(tmp_link):
                os.remove(tmp_link)
            os.symlink(filename, tmp_link)
            os.replace(tmp_link, link)


    def load_checkpoint(self, filename, map_location="cpu", strict=False, revise_keys=[(r"^module.", "")]):
        checkpoint = super().load_checkpoint(filename, map_location, strict, revise_keys)
        self._loaded_meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
        return checkpoint

    def resume(self, checkpoint, resume_optimizer=True, map_location="default"):
        super().resume(checkpoint, resume_optimizer, map_location)
        state = getattr(self, "_loaded_meta", {}).get("rng")
        if isinstance(self.meta, dict):
            self.meta.pop("rng", None)  # holds tensors, and the runner's meta is dumped to the JSON log
        if state is not None:  # continue the random streams (data order, jitter, memory draws) exactly
            set_rng_state(state)


def rng_state() -> dict:
    """torch (CPU, and this process's GPU once CUDA is in use) / numpy / python RNG states as tensors and tuples
    (loadable with ``torch.load(weights_only=True)``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), numpy_keys=torch.from_numpy(keys.astype(np.int64)),
                 numpy_rest=(int(pos), int(has_gauss), float(cached)), python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # jitter and memory draws run on the GPU there
    return state


def set_rng_state(state: dict) -> None:
    # a GPU resume loads the checkpoint onto the GPU (mmcv's map_location="default"): the states come back as CUDA
    # tensors, and torch / numpy take host tensors only
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
    pos, has_gauss, cached = state["numpy_rest"]
    np.random.set_state(("MT19937", state["numpy_keys"].cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at the first NaN/inf loss, naming the iteration; the last checkpoint written stays the last good one."""

    def after_train_iter(self, runner) -> None:
        out = runner.outputs or {}
        loss = out.get("loss")
        if loss is not None and not math.isfinite(float(loss.detach() if hasattr(loss, "detach") else loss)):
            values = {k: float(v) for k, v in out.get("log_vars", {}).items()}
            raise NonFiniteLossError(runner.iter + 1, runner.epoch + 1, values)


@HOOKS.register_module()
class RichProgressHook(Hook):
    """A rich progress bar per epoch (iteration, ETA, loss, lr) on rank 0 when stderr is a terminal."""

    def __init__(self, console=None):
        self.progress = None
        self.task = None
        self.console = console  # tests pass one; default: rich's stderr console

    def before_train_epoch(self, runner) -> None:
        if runner.rank != 0 or not sys.stderr.isatty():
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn(f"epoch {runner.epoch + 1}/{runner.max_epochs}"), BarColumn(),
                                 MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 transient=False, **({"console": self.console} if self.console else {}))
        self.progress.start()
        self.task = self.progress.add_task("train", total=len(runner.data_loader), info="")

    def after_train_iter(self, runner) -> None:
        if self.progress is None:
            return
        log_vars = (runner.outputs or {}).get("log_vars", {})
        lr = runner.current_lr()
        lr = lr[0] if isinstance(lr, list) else next(iter(lr.values()))[0] if isinstance(lr, dict) else lr
        info = f"loss {log_vars.get('loss', float('nan')):.3f}  lr {lr:.2e}"
        self.progress.update(self.task, advance=1, info=info)

    def after_train_epoch(self, runner) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def wrap_model(model: torch.nn.Module, *, distributed: bool, device: str, find_unused_parameters: bool = False):
    """The one wrapper every run trains through. Several processes: torch DDP
    (:class:`~loce_cli.mmdet_ext.parallel_compat.LoceDistributedDataParallel`) on CPUs (gloo) and GPUs (NCCL) alike,
    ``broadcast_buffers=False`` (the LOCE memory stays per-rank); one process: mmcv's ``MMDataParallel``."""
    from mmcv.parallel import MMDataParallel

    from loce_cli.mmdet_ext.parallel_compat import LoceDistributedDataParallel

    if device == "cuda":
        model = model.cuda()
    if distributed:
        device_ids = [torch.cuda.current_device()] if device == "cuda" else None
        return LoceDistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False,
                                           find_unused_parameters=bool(find_unused_parameters))
    return MMDataParallel(model, device_ids=[0] if device == "cuda" else None)


def checkpoint_meta(cfg, dataset) -> dict:
    """What every loce checkpoint records besides weights, optimizer and LOCE state."""
    import mmcv
    import mmdet

    from loce_cli import __version__
    from loce_cli.mmdet_ext.hooks import unwrap_dataset

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


def latest_checkpoint(work_dir: str) -> Optional[str]:
    """The newest ``epoch_N.pth`` in ``work_dir`` (``latest.pth`` when it resolves), or None."""
    link = osp.join(work_dir, "latest.pth")
    if osp.exists(link):
        return osp.realpath(link)
    best, best_n = None, -1
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            if name.startswith("epoch_") and name.endswith(".pth"):
                try:
                    n = int(name[len("epoch_"):-len(".pth")])
                except ValueError:
                    continue
                if n > best_n:
                    best, best_n = osp.join(work_dir, name), n
    return best


def run_training(cfg, *, distributed: bool, rank: int, world: int, device: str, stage: str, config_name: str,
                 seed: int, deterministic: bool, evaluation: Optional[tuple] = None) -> dict:
    """Build the dataset, model, data loader, wrapper, optimizer, runner and hooks from ``cfg``, load or resume
    (``cfg.load_from`` / ``cfg.resume_from``) and train. ``evaluation``: ``(interval, evaluate)`` to evaluate every
    ``interval`` epochs on rank 0 (:class:`~loce_cli.mmdet_ext.eval_hook.LoceEvalHook`; ``evaluate(checkpoint,
    epoch)`` comes from the engine), None for none. Returns epochs, iterations, the memory-init summary and the
    evaluations' summaries by epoch."""
    import time

    from loce_cli.errors import LoceError
    from loce_cli.mmdet_ext.class_aware import class_aware_config, class_aware_loader
    from mmcv.runner import DistSamplerSeedHook, build_optimizer, build_runner
    from mmdet.apis import set_random_seed
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector
    from mmdet.utils import get_root_logger

    timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
    logger = get_root_logger(log_file=os.path.join(cfg.work_dir, f"{timestamp}.log"), log_level=cfg.log_level)
    logger.propagate = False  # mmdet's handlers print once; no second copy through the root logger
    if rank == 0:
        cfg.dump(os.path.join(cfg.work_dir, config_name))
        logger.info(f"loce {stage}: {cfg.filename} -> {cfg.work_dir} ({world} process(es), {device})")
    set_random_seed(seed, deterministic=deterministic)

    dataset = build_dataset(cfg.data.train)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    model.CLASSES = dataset.CLASSES
    loader = build_dataloader(dataset, cfg.data.samples_per_gpu, cfg.data.workers_per_gpu, num_gpus=1,
                              dist=distributed, seed=seed, runner_type="EpochBasedRunner",
                              persistent_workers=False)
    class_aware = class_aware_config(cfg)
    if class_aware is not None:  # cRT: class-balanced image sampling (its epoch is reseeded by the seed hook)
        loader = class_aware_loader(loader, cfg.data.samples_per_gpu, world, rank, seed)
        logger.info(f"class-aware sampling: {len(loader.sampler)} images per epoch per process, each drawn class "
                    f"first (cRT)")
    find_unused = bool(cfg.get("find_unused_parameters", False))
    model = wrap_model(model, distributed=distributed, device=device, find_unused_parameters=find_unused)
    if distributed and rank == 0:
        import torch.distributed as dist

        logger.info(f"model wrapper: {type(model).__name__} (torch DDP, "
                    f"{dist.get_backend()}, find_unused_parameters={find_unused}, broadcast_buffers=False)")

    optimizer = build_optimizer(model, cfg.optimizer)
    meta = checkpoint_meta(cfg, dataset)
    meta.update(seed=seed, stage=stage, exp_name=config_name)
    runner = build_runner(dict(type="LoceEpochBasedRunner", max_epochs=cfg.runner.max_epochs),
                          default_args=dict(model=model, optimizer=optimizer, work_dir=cfg.work_dir, logger=logger,
                                            meta=meta))
    runner.timestamp = timestamp
    opt_cfg = dict(cfg.get("optimizer_config") or {})
    opt_cfg.pop("type", None)
    optimizer_hook = OptimizerHook(**opt_cfg)  # DDP averages the gradients during backward, on CPUs and GPUs
    runner.register_training_hooks(cfg.lr_config, optimizer_hook, cfg.checkpoint_config, cfg.log_config,
                                   cfg.get("momentum_config"), custom_hooks_config=cfg.get("custom_hooks"))
    if distributed or class_aware is not None:
        runner.register_hook(DistSamplerSeedHook())
    runner.register_hook(NonFiniteLossHook(), priority="VERY_HIGH")
    runner.register_hook(RichProgressHook(), priority="VERY_LOW")
    eval_hook = None
    if evaluation is not None:
        from loce_cli.mmdet_ext.eval_hook import LoceEvalHook

        interval, evaluate = evaluation
        eval_hook = LoceEvalHook(evaluate, interval=interval)
        runner.register_hook(eval_hook, priority="LOW")  # after the checkpoint hook (NORMAL): evaluates its file
        if rank == 0:
            logger.info(f"evaluation every {interval} epoch(s) on rank 0 (work_dir/eval_epoch_N/metrics.json)")
    if cfg.resume_from:
        runner.resume(cfg.resume_from)
    elif cfg.load_from:
        runner.load_checkpoint(cfg.load_from)
    try:
        runner.run([loader], [("train", 1)])
    except NonFiniteLossError as e:
        raise LoceError(f"training stopped: {e}", "lower the learning rate (--cfg-options optimizer.lr=...); the last "
                        f"good checkpoint is {os.path.join(cfg.work_dir, 'latest.pth')}") from None
    memory_init = None
    for hook in runner.hooks:
        if type(hook).__name__ == "LoceMemoryInitHook":
            memory_init = hook.summary
    evaluations = {str(e): r for e, r in sorted(eval_hook.results.items())} if eval_hook is not None else None
    return dict(epochs=runner.epoch, iterations=runner.iter, memory_init=memory_init,
                evaluations=evaluations or None)
