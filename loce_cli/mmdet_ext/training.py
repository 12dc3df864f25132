"""Training plumbing over mmcv 1.x runners: atomic checkpoints with loce metadata, a non-finite-loss stop,
the run's terminal output (:mod:`loce_cli.mmdet_ext.run_output`), and the model wrapper: torch DDP on CPUs (gloo) and GPUs (NCCL) through one code path
(mmdet 2.28's ``build_ddp`` asserts a GPU device; :mod:`loce_cli.mmdet_ext.parallel_compat` adds what mmcv's DDP
wrapper lacks on the CPU and on torch 2.x).
"""

from __future__ import annotations

import math
import os
import os.path as osp
from typing import Optional

import torch
import random

import numpy as np
from mmcv.runner import HOOKS, RUNNERS, EpochBasedRunner, Hook, OptimizerHook
from mmcv.runner.checkpoint import save_checkpoint

from loce_cli.mmdet_ext.checkpoint_files import (load_state_file, newest_checkpoint, point_latest, prune_mid_epoch,
                                                 rank_file, write_atomic)
from loce_cli.mmdet_ext.loader_workers import shutdown_workers
from loce_cli.mmdet_ext.preemption import Preempted


class NonFiniteLossError(RuntimeError):
    def __init__(self, iteration: int, epoch: int, losses: dict):
        self.iteration, self.epoch, self.losses = iteration, epoch, losses
        bad = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(f"non-finite loss at iteration {iteration} (epoch {epoch}): {bad}")


@RUNNERS.register_module()
class LoceEpochBasedRunner(EpochBasedRunner):
    """``EpochBasedRunner`` whose checkpoints are written to a temporary name and renamed (an interrupted
    write never leaves a half-written file), with ``latest.pth`` switched atomically to the newest one; which
    can also write mid-epoch checkpoints (``stop_policy``: every N iterations, or on a stop signal) and resume
    from one exactly: the rest of that epoch's batches in the same order, every random stream where it was.

    Set by :func:`run_training`: ``stop_policy`` (:class:`~loce_cli.mmdet_ext.preemption.StopPolicy`) and
    ``resumable`` (the loader's :class:`~loce_cli.mmdet_ext.resumable_sampler.ResumableSampler`)."""

    stop_policy = None
    resumable = None
    amp = None  # mixed precision (:class:`~loce_cli.mmdet_ext.amp.AmpState`), set by :func:`run_training`
    mid_epoch_keep = 2  # mid-epoch checkpoints kept within an epoch: checkpoint_config.max_keep_ckpts, else 2
    _resume_consumed = 0
    _pending_rng = None

    # -- writing ----------------------------------------------------------------------------------------------
    def save_checkpoint(self, out_dir, filename_tmpl="epoch_{}.pth", save_optimizer=True, meta=None,
                        create_symlink=True):
        """The epoch-end checkpoint (mmcv's ``CheckpointHook`` calls it on rank 0)."""
        filename = filename_tmpl.format(self.epoch + 1)
        meta = dict(meta or {}, epoch=self.epoch + 1, iter=self.iter, rng=rng_state())
        self._write(out_dir, filename, meta, save_optimizer, create_symlink)
        prune_mid_epoch(out_dir, self.mid_epoch_keep, epoch_end_iter=self.iter)

    def _write(self, out_dir, filename, meta, save_optimizer=True, create_symlink=True) -> str:
        if self.meta is not None:
            meta = {**self.meta, **meta}
        if self.amp is not None:
            meta["amp"] = self.amp.state_dict()  # the GradScaler's scale and growth tracker: a resume continues it
        filepath = osp.join(out_dir, filename)
        optimizer = self.optimizer if save_optimizer else None
        write_atomic(filepath, lambda tmp: save_checkpoint(self.model, tmp, optimizer=optimizer, meta=meta))
        if create_symlink:
            point_latest(out_dir, filename)
        return filepath

    def _write_rank_state(self, checkpoint: str, sampler_state=None) -> None:
        """Rank > 0: this rank's own state beside ``checkpoint`` (its buffers: the LOCE memory above all; its
        random streams; its data order), before rank 0 writes ``checkpoint`` itself."""
        from mmcv.parallel import is_module_wrapper

        module = self.model.module if is_module_wrapper(self.model) else self.model
        state = dict(buffers={k: v.detach().cpu() for k, v in module.named_buffers()}, rng=rng_state(),
                     rank=self.rank, iter=self.iter)
        if sampler_state is not None:
            state["sampler"] = sampler_state
        write_atomic(rank_file(checkpoint, self.rank), lambda tmp: torch.save(state, tmp))

    def save_mid_epoch(self, consumed: int) -> str:
        """Every rank, at an iteration boundary: ``iter_N.pth`` (rank 0) and ``iter_N.rankR.pth`` (the others);
        returns once the checkpoint is complete on every rank."""
        filename = f"iter_{self.iter}.pth"
        path = osp.join(self.work_dir, filename)
        sampler_state = self.resumable.state(consumed) if self.resumable is not None else None
        distributed = self.world_size > 1
        if distributed:
            import torch.distributed as dist

            if self.rank != 0:
                self._write_rank_state(path, sampler_state)
            dist.barrier()  # rank files first: a rank-0 file on disk means a complete checkpoint
        if self.rank == 0:
            meta = dict(epoch=self.epoch, iter=self.iter, rng=rng_state(), mid_epoch=sampler_state)
            self._write(self.work_dir, filename, meta)
            prune_mid_epoch(self.work_dir, self.mid_epoch_keep)
            self.logger.info(f"mid-epoch checkpoint {path} (epoch {self.epoch + 1}, {consumed}/"
                             f"{len(self.data_loader)} batches)")
        if distributed:
            dist.barrier()
        return path

    def _epoch_end_rank_state(self) -> None:
        """Several processes: ranks > 0 write their state for the epoch-end checkpoint rank 0 is about to write."""
        if self.world_size <= 1:
            return
        from mmcv.runner import CheckpointHook

        hook = next((h for h in self.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None or not hook.by_epoch or not (
                hook.every_n_epochs(self, hook.interval) or (hook.save_last and hook.is_last_epoch(self))):
            return
        import torch.distributed as dist

        if self.rank != 0:
            self._write_rank_state(osp.join(hook.out_dir or self.work_dir, f"epoch_{self.epoch + 1}.pth"))
        dist.barrier()

    # -- the loop ---------------------------------------------------------------------------------------------
    def run_iter(self, data_batch, train_mode, **kwargs):
        """mmcv's iteration with the forward (and losses) under the run's autocast; backward runs outside it,
        in the optimizer hook."""
        from loce_cli.mmdet_ext.amp import autocast_of

        with autocast_of(self.amp):
            super().run_iter(data_batch, train_mode, **kwargs)

    def train(self, data_loader, **kwargs):
        """mmcv's epoch loop, starting part-way through the epoch after a mid-epoch resume, with the stop policy's
        decision at each iteration boundary; the loader's workers are shut down when it ends early."""
        import time

        self.model.train()
        self.mode = "train"
        self.data_loader = data_loader
        self._max_iters = self._max_epochs * len(data_loader)
        self.call_hook("before_train_epoch")
        time.sleep(2)  # as mmcv: keeps epoch transitions clear of worker start-up races
        start, self._resume_consumed = self._resume_consumed, 0
        if self.resumable is not None:
            self.resumable.epoch = self.epoch
        batches = iter(data_loader)  # draws the workers' base seed: after it, the streams continue as saved
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)
            self._pending_rng = None
        try:
            for i, data_batch in enumerate(batches, start):
                self.data_batch = data_batch
                self._inner_iter = i
                self.call_hook("before_train_iter")
                self.run_iter(data_batch, train_mode=True, **kwargs)
                self.call_hook("after_train_iter")
                del self.data_batch
                self._iter += 1
                self._at_boundary(i + 1)
        except BaseException:
            shutdown_workers(batches)
            raise
        self._epoch_end_rank_state()
        self.call_hook("after_train_epoch")
        self._epoch += 1

    def _at_boundary(self, consumed: int) -> None:
        policy = self.stop_policy
        if policy is None:
            return
        signame = policy.stop_now()
        if signame is None and not policy.checkpoint_due(self.iter):
            return
        path = self.save_mid_epoch(consumed)
        if signame is not None:
            raise Preempted(signame, path, self.epoch + 1, consumed, len(self.data_loader), self.iter)

    # -- reading ----------------------------------------------------------------------------------------------
    def load_checkpoint(self, filename, map_location="cpu", strict=False, revise_keys=[(r"^module.", "")]):
        checkpoint = super().load_checkpoint(filename, map_location, strict, revise_keys)
        self._loaded_meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
        return checkpoint

    def resume(self, checkpoint, resume_optimizer=True, map_location="default"):
        super().resume(checkpoint, resume_optimizer, map_location)
        loaded = getattr(self, "_loaded_meta", {})
        # mmcv rescales the iteration count when the saved gpu_ids count differs from the world size; loce's
        # gpu_ids is always this process's one device, so that would halve the count of every 2-process resume
        self._epoch, self._iter = int(loaded["epoch"]), int(loaded["iter"])
        state, mid = loaded.get("rng"), loaded.get("mid_epoch")
        if isinstance(self.meta, dict):  # tensors; the runner's meta is dumped to the JSON log
            for key in ("rng", "mid_epoch", "amp"):
                self.meta.pop(key, None)
        if self.amp is not None and loaded.get("amp"):
            self.amp.load_state_dict(loaded["amp"])
        if self.world_size > 1 and self.rank != 0:
            own = rank_file(checkpoint, self.rank)
            if osp.exists(own):
                state, mid = self._load_rank_state(own, mid)
            else:
                self.logger.warning(f"{own} is missing: rank {self.rank} continues from rank 0's memory and "
                                    "random streams (the run goes on, not bit-exactly)")
        if mid is not None and self.resumable is not None:
            self._resume_consumed = self.resumable.resume_from(mid)
            self._pending_rng = state  # set once the epoch's data iterator exists (it draws a seed)
            self.logger.info(f"resuming inside epoch {self.epoch + 1} after {self._resume_consumed} batches")
        elif state is not None:  # continue the random streams (data order, jitter, memory draws) exactly
            set_rng_state(state)

    def _load_rank_state(self, path: str, mid):
        from mmcv.parallel import is_module_wrapper

        own = load_state_file(path)
        module = self.model.module if is_module_wrapper(self.model) else self.model
        device = next(iter(module.parameters())).device
        module.load_state_dict({k: v.to(device) for k, v in own["buffers"].items()}, strict=False)
        return own.get("rng"), own.get("sampler", mid)


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
    """The newest checkpoint in ``work_dir`` (``latest.pth`` when it resolves; else the newest ``epoch_N.pth`` or
    mid-epoch ``iter_N.pth``), or None."""
    return newest_checkpoint(work_dir)


def run_training(cfg, *, distributed: bool, rank: int, world: int, device: str, stage: str, config_name: str,
                 seed: int, deterministic: bool, evaluation: Optional[tuple] = None, checkpoint_every: int = 0,
                 meta_extra: Optional[dict] = None, verbose: bool = False) -> dict:
    """Build the dataset, model, data loader, wrapper, optimizer, runner and hooks from ``cfg``, load or resume
    (``cfg.load_from`` / ``cfg.resume_from``) and train. ``evaluation``: ``(interval, evaluate)`` to evaluate every
    ``interval`` epochs on rank 0 (:class:`~loce_cli.mmdet_ext.eval_hook.LoceEvalHook`; ``evaluate(checkpoint,
    epoch)`` comes from the engine), None for none. Returns epochs, iterations, the memory-init summary and the
    evaluations' summaries by epoch. ``checkpoint_every``: a mid-epoch checkpoint every N iterations (0: none);
    SIGTERM / SIGUSR1 stop the run at the next iteration boundary with a mid-epoch checkpoint
    (:class:`~loce_cli.mmdet_ext.preemption.Preempted` is raised). ``meta_extra``: more checkpoint metadata.
    The log records go to ``WORK_DIR/<timestamp>.log``, and to the terminal only with ``verbose``
    (:func:`~loce_cli.mmdet_ext.run_output.routed_logs`)."""
    import time

    from loce_cli.mmdet_ext.preemption import StopPolicy
    from loce_cli.mmdet_ext.run_output import Terminal, routed_logs

    timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime())
    log_file = os.path.join(cfg.work_dir, f"{timestamp}.log")
    terminal = Terminal()
    policy = StopPolicy(checkpoint_every, distributed=distributed, device=device)
    policy.install()  # from the start: a signal during start-up stops the run at its first iteration boundary
    try:
        with routed_logs(log_file, rank, terminal, verbose):
            if rank == 0:
                terminal.line(f"training ({stage}): {cfg.filename} on {world} process(es) ({device}); writes "
                              f"{cfg.work_dir} (log: {log_file})")
            return _run_training(cfg, distributed=distributed, rank=rank, world=world, device=device, stage=stage,
                                 config_name=config_name, seed=seed, deterministic=deterministic,
                                 evaluation=evaluation, policy=policy, meta_extra=meta_extra, timestamp=timestamp,
                                 terminal=terminal)
    finally:
        policy.restore()


def _run_training(cfg, *, distributed, rank, world, device, stage, config_name, seed, deterministic, evaluation,
                  policy, meta_extra, timestamp, terminal) -> dict:
    from loce_cli.errors import LoceError
    from loce_cli.mmdet_ext.class_aware import class_aware_config, class_aware_loader
    from mmcv.runner import DistSamplerSeedHook, build_optimizer, build_runner
    from mmdet.apis import set_random_seed
    from mmdet.datasets import build_dataloader, build_dataset
    from mmdet.models import build_detector
    from mmdet.utils import get_root_logger

    logger = get_root_logger(log_file=os.path.join(cfg.work_dir, f"{timestamp}.log"), log_level=cfg.log_level)
    logger.propagate = False  # mmdet's handlers print once; no second copy through the root logger
    if rank == 0:
        cfg.dump(os.path.join(cfg.work_dir, config_name))
        logger.info(f"loce {stage}: {cfg.filename} -> {cfg.work_dir} ({world} process(es), {device})")
    set_random_seed(seed, deterministic=deterministic)

    config_text = cfg.pretty_text  # as given: building the model fills defaults into cfg.model in place
    dataset = build_dataset(cfg.data.train)
    model = build_detector(cfg.model, train_cfg=cfg.get("train_cfg"), test_cfg=cfg.get("test_cfg"))
    model.init_weights()
    model.CLASSES = dataset.CLASSES
    if rank == 0 and getattr(model, "trainable", None) is not None:  # the fine-tune's freeze (not at eval)
        logger.info(model.freeze_summary())
    if cfg.get("amp"):
        from loce_cli.mmdet_ext.amp import fp32_head_outputs

        fp32_head_outputs(model)  # boxes, proposals, losses and masks in fp32 (the heads' layers under autocast)
    from loce_cli.mmdet_ext.resumable_sampler import PositionSeeded, make_resumable

    workers = int(cfg.data.workers_per_gpu)
    loader = build_dataloader(PositionSeeded(dataset) if workers else dataset, cfg.data.samples_per_gpu, workers,
                              num_gpus=1, dist=distributed, seed=seed, runner_type="EpochBasedRunner",
                              persistent_workers=False)
    class_aware = class_aware_config(cfg)
    if class_aware is not None:  # cRT: class-balanced image sampling (its epoch is reseeded by the seed hook)
        loader = class_aware_loader(loader, cfg.data.samples_per_gpu, world, rank, seed)
        logger.info(f"class-aware sampling: {len(loader.sampler)} images per epoch per process, each drawn class "
                    f"first (cRT)")
    from loce_cli.mmdet_ext.loader_workers import guard_workers

    guard_workers(loader)  # workers die with this process, even on kill -9
    resumable = make_resumable(loader, seed if workers else None)  # workers: augmentation seeded per position
    find_unused = bool(cfg.get("find_unused_parameters", False))
    model = wrap_model(model, distributed=distributed, device=device, find_unused_parameters=find_unused)
    if distributed and rank == 0:
        import torch.distributed as dist

        logger.info(f"model wrapper: {type(model).__name__} (torch DDP, "
                    f"{dist.get_backend()}, find_unused_parameters={find_unused}, broadcast_buffers=False)")

    optimizer = build_optimizer(model, cfg.optimizer)
    meta = checkpoint_meta(cfg, dataset)
    meta.update(seed=seed, stage=stage, exp_name=config_name, config=config_text, **(meta_extra or {}))
    from loce_cli.mmdet_ext.amp import AmpOptimizerHook, build_amp

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
    opt_cfg = dict(cfg.get("optimizer_config") or {})
    opt_cfg.pop("type", None)
    # DDP averages the gradients during backward, on CPUs and GPUs; under fp16 through the GradScaler
    optimizer_hook = (AmpOptimizerHook if amp is not None else OptimizerHook)(**opt_cfg)
    runner.register_training_hooks(cfg.lr_config, optimizer_hook, cfg.checkpoint_config, cfg.log_config,
                                   cfg.get("momentum_config"), custom_hooks_config=cfg.get("custom_hooks"))
    if distributed or class_aware is not None:
        runner.register_hook(DistSamplerSeedHook())
    runner.register_hook(NonFiniteLossHook(), priority="VERY_HIGH")
    from loce_cli.mmdet_ext.run_output import TrainProgressHook

    progress = TrainProgressHook(terminal, log_interval=int((cfg.get("log_config") or {}).get("interval", 0) or 0))
    runner.register_hook(progress, priority="VERY_LOW")
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
        runner.meta.update(config=config_text, **(meta_extra or {}))  # later checkpoints: this run's settings
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
                evaluations=evaluations or None, final_loss=progress.final_loss)
