"""The training entry point: :func:`run_training` builds a run from its config, loads or resumes, trains, and
returns what the engine reports, with the log records in the run's log file and a progress bar on the terminal
(:mod:`loce_cli.mmdet_ext.run_output`)."""

from __future__ import annotations

import os
import time
from typing import Optional

from mmdet.apis import set_random_seed
from mmdet.datasets import build_dataset
from mmdet.utils import get_root_logger

from loce_cli.errors import LoceError
from loce_cli.mmdet_ext.authors_config import authors_translation_lines
from loce_cli.mmdet_ext.run_output import Terminal, routed_logs
from loce_cli.mmdet_ext.runner.build import (build_loce_runner, build_train_loader, build_train_model,
                                             checkpoint_meta, wrap_for_training)
from loce_cli.mmdet_ext.runner.loss_guard import NonFiniteLossError
from loce_cli.mmdet_ext.runner.preemption import StopPolicy
from loce_cli.mmdet_ext.runner.training_hooks import register_training_hooks


def run_training(cfg, *, distributed: bool, rank: int, world: int, device: str, stage: str, config_name: str,
                 seed: int, deterministic: bool, evaluation: Optional[tuple] = None, checkpoint_every: int = 0,
                 meta_extra: Optional[dict] = None, verbose: bool = False) -> dict:
    """Build the dataset, model, data loader, wrapper, optimizer, runner and hooks from ``cfg``, load or resume
    (``cfg.load_from`` / ``cfg.resume_from``) and train. ``evaluation``: ``(interval, evaluate)`` to evaluate every
    ``interval`` epochs on rank 0 (:class:`~loce_cli.mmdet_ext.runner.eval_hook.LoceEvalHook`; ``evaluate(
    checkpoint, epoch)`` comes from the engine), None for none. Returns epochs, iterations, the memory-init summary
    and the evaluations' summaries by epoch. ``checkpoint_every``: a mid-epoch checkpoint every N iterations (0:
    none); SIGTERM / SIGUSR1 stop the run at the next iteration boundary with a mid-epoch checkpoint
    (:class:`~loce_cli.mmdet_ext.runner.preemption.Preempted` is raised). ``meta_extra``: more checkpoint metadata.
    The log records go to ``WORK_DIR/<timestamp>.log``, and to the terminal only with ``verbose``
    (:func:`~loce_cli.mmdet_ext.run_output.routed_logs`)."""
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
            return _train(cfg, distributed=distributed, rank=rank, world=world, device=device, stage=stage,
                          config_name=config_name, seed=seed, deterministic=deterministic, evaluation=evaluation,
                          policy=policy, meta_extra=meta_extra, timestamp=timestamp, terminal=terminal)
    finally:
        policy.restore()


def _train(cfg, *, distributed, rank, world, device, stage, config_name, seed, deterministic, evaluation, policy,
           meta_extra, timestamp, terminal) -> dict:
    logger = get_root_logger(log_file=os.path.join(cfg.work_dir, f"{timestamp}.log"), log_level=cfg.log_level)
    logger.propagate = False  # mmdet's handlers print once; no second copy through the root logger
    if rank == 0:
        cfg.dump(os.path.join(cfg.work_dir, config_name))
        logger.info(f"loce {stage}: {cfg.filename} -> {cfg.work_dir} ({world} process(es), {device})")
        for line in authors_translation_lines(cfg):
            logger.info(line)
    set_random_seed(seed, deterministic=deterministic)

    config_text = cfg.pretty_text  # as given: building the model fills defaults into cfg.model in place
    dataset = build_dataset(cfg.data.train)
    model = build_train_model(cfg, dataset, rank, logger)
    loader, resumable, class_aware = build_train_loader(cfg, dataset, distributed=distributed, world=world,
                                                        rank=rank, seed=seed, logger=logger)
    model = wrap_for_training(model, cfg, distributed=distributed, device=device, rank=rank, logger=logger)
    meta = checkpoint_meta(cfg, dataset)
    meta.update(seed=seed, stage=stage, exp_name=config_name, config=config_text, **(meta_extra or {}))
    runner = build_loce_runner(cfg, model, meta, device=device, rank=rank, timestamp=timestamp, policy=policy,
                               resumable=resumable, logger=logger)
    progress, eval_hook = register_training_hooks(runner, cfg, terminal=terminal, evaluation=evaluation,
                                                  seed_sampler=distributed or class_aware, rank=rank, logger=logger)
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
