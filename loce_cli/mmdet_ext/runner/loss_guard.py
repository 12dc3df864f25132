"""The non-finite-loss stop: the first NaN / inf loss ends the run, naming the iteration, and the last checkpoint
written stays the last good one."""

from __future__ import annotations

import math

from mmcv.runner import HOOKS, Hook


class NonFiniteLossError(RuntimeError):
    def __init__(self, iteration: int, epoch: int, losses: dict):
        self.iteration, self.epoch, self.losses = iteration, epoch, losses
        bad = ", ".join(f"{k}={v}" for k, v in losses.items())
        super().__init__(f"non-finite loss at iteration {iteration} (epoch {epoch}): {bad}")


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop at the first NaN/inf loss, naming the iteration; the last checkpoint written stays the last good one."""

    def after_train_iter(self, runner) -> None:
        out = runner.outputs or {}
        loss = out.get("loss")
        if loss is not None and not math.isfinite(float(loss.detach() if hasattr(loss, "detach") else loss)):
            values = {k: float(v) for k, v in out.get("log_vars", {}).items()}
            raise NonFiniteLossError(runner.iter + 1, runner.epoch + 1, values)
