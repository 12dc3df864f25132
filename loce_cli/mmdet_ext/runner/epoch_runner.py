"""``LoceEpochBasedRunner``: mmcv's epoch runner with atomic checkpoints carrying loce's metadata and every random
stream, mid-epoch checkpoints (every N iterations or on a stop signal), and an exact resume from either, on one
process or several (each rank's own state in a file beside rank 0's checkpoint)."""

from __future__ import annotations

import os.path as osp
import time

import torch
import torch.distributed as dist
from mmcv.runner import RUNNERS, CheckpointHook, EpochBasedRunner
from mmcv.runner.checkpoint import save_checkpoint

from loce_cli.mmdet_ext.amp import autocast_of
from loce_cli.mmdet_ext.runner.checkpoint_files import (load_state_file, point_latest, prune_mid_epoch,
                                                        prune_orphan_rank_files, rank_file, write_atomic)
from loce_cli.mmdet_ext.runner.loader_workers import shutdown_workers, stop_signals_blocked
from loce_cli.mmdet_ext.runner.preemption import Preempted
from loce_cli.mmdet_ext.runner.rng_state import rng_state, set_rng_state
from loce_cli.mmdet_ext.unwrap import unwrap_model


@RUNNERS.register_module()
class LoceEpochBasedRunner(EpochBasedRunner):
    """``EpochBasedRunner`` whose checkpoints are written to a temporary name and renamed (an interrupted
    write never leaves a half-written file), with ``latest.pth`` switched atomically to the newest one; which
    can also write mid-epoch checkpoints (``stop_policy``: every N iterations, or on a stop signal) and resume
    from one exactly: the rest of that epoch's batches in the same order, every random stream where it was.

    Set by :func:`~loce_cli.mmdet_ext.runner.run.run_training`: ``stop_policy``
    (:class:`~loce_cli.mmdet_ext.runner.preemption.StopPolicy`) and ``resumable`` (the loader's
    :class:`~loce_cli.mmdet_ext.runner.resumable_sampler.ResumableSampler`)."""

    stop_policy = None
    resumable = None
    amp = None  # mixed precision (:class:`~loce_cli.mmdet_ext.amp.AmpState`), set by ``run_training``
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
        module = unwrap_model(self.model)
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

    def _epoch_end_rank_state(self):
        """Several processes: ranks > 0 write their state for the epoch-end checkpoint rank 0 is about to write.
        Returns the ``CheckpointHook`` that writes it (None: one process, or no checkpoint at this epoch end)."""
        if self.world_size <= 1:
            return None
        hook = next((h for h in self.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None or not hook.by_epoch or not (
                hook.every_n_epochs(self, hook.interval) or (hook.save_last and hook.is_last_epoch(self))):
            return None
        if self.rank != 0:
            self._write_rank_state(osp.join(hook.out_dir or self.work_dir, f"epoch_{self.epoch + 1}.pth"))
        dist.barrier()
        return hook

    # -- the loop ---------------------------------------------------------------------------------------------
    def run_iter(self, data_batch, train_mode, **kwargs):
        """mmcv's iteration with the forward (and losses) under the run's autocast; backward runs outside it,
        in the optimizer hook."""
        with autocast_of(self.amp):
            super().run_iter(data_batch, train_mode, **kwargs)

    def train(self, data_loader, **kwargs):
        """mmcv's epoch loop, starting part-way through the epoch after a mid-epoch resume, with the stop policy's
        decision at each iteration boundary; the loader's workers are shut down when it ends early."""
        self.model.train()
        self.mode = "train"
        self.data_loader = data_loader
        self._max_iters = self._max_epochs * len(data_loader)
        self.call_hook("before_train_epoch")
        time.sleep(2)  # as mmcv: keeps epoch transitions clear of worker start-up races
        start, self._resume_consumed = self._resume_consumed, 0
        if self.resumable is not None:
            self.resumable.epoch = self.epoch
        with stop_signals_blocked():  # the workers start ignoring stop signals: the group's reach this process
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
        hook = self._epoch_end_rank_state()
        self.call_hook("after_train_epoch")
        if hook is not None and self.rank == 0:  # max_keep_ckpts removed old epoch_N.pth: their rank files go too
            prune_orphan_rank_files(hook.out_dir or self.work_dir)
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
        own = load_state_file(path)
        module = unwrap_model(self.model)
        device = next(iter(module.parameters())).device
        module.load_state_dict({k: v.to(device) for k, v in own["buffers"].items()}, strict=False)
        return own.get("rng"), own.get("sampler", mid)

