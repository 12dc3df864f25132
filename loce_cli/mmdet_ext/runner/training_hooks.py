"""The hooks of a loce training run, in mmcv's priority order: mmcv's own (lr, optimizer, checkpoint, log,
momentum, the config's custom hooks), the sampler seed hook, the non-finite-loss stop, the evaluation every N
epochs and the terminal's progress."""

from __future__ import annotations

from typing import Optional, Tuple

from mmcv.runner import DistSamplerSeedHook, OptimizerHook

from loce_cli.mmdet_ext.amp import AmpOptimizerHook
from loce_cli.mmdet_ext.run_output import Terminal, TrainProgressHook
from loce_cli.mmdet_ext.runner.eval_hook import LoceEvalHook
from loce_cli.mmdet_ext.runner.loss_guard import NonFiniteLossHook


def register_training_hooks(runner, cfg, *, terminal: Terminal, evaluation: Optional[tuple], seed_sampler: bool,
                            rank: int, logger) -> Tuple[TrainProgressHook, Optional[LoceEvalHook]]:
    """Register every hook of the run on ``runner``. ``seed_sampler``: the sampler is reseeded each epoch
    (distributed or class-aware sampling). ``evaluation``: ``(interval, evaluate)`` or None. Returns the progress
    hook (it keeps the final loss) and the evaluation hook (its results), if any."""
    opt_cfg = dict(cfg.get("optimizer_config") or {})
    opt_cfg.pop("type", None)
    # DDP averages the gradients during backward, on CPUs and GPUs; under fp16 through the GradScaler
    optimizer_hook = (AmpOptimizerHook if runner.amp is not None else OptimizerHook)(**opt_cfg)
    runner.register_training_hooks(cfg.lr_config, optimizer_hook, cfg.checkpoint_config, cfg.log_config,
                                   cfg.get("momentum_config"), custom_hooks_config=cfg.get("custom_hooks"))
    if seed_sampler:
        runner.register_hook(DistSamplerSeedHook())
    runner.register_hook(NonFiniteLossHook(), priority="VERY_HIGH")
    progress = TrainProgressHook(terminal, log_interval=int((cfg.get("log_config") or {}).get("interval", 0) or 0))
    runner.register_hook(progress, priority="VERY_LOW")
    eval_hook = None
    if evaluation is not None:
        interval, evaluate = evaluation
        eval_hook = LoceEvalHook(evaluate, interval=interval)
        runner.register_hook(eval_hook, priority="LOW")  # after the checkpoint hook (NORMAL): evaluates its file
        if rank == 0:
            logger.info(f"evaluation every {interval} epoch(s) on rank 0 (work_dir/eval_epoch_N/metrics.json)")
    return progress, eval_hook
