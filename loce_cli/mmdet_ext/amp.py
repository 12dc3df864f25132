"""Mixed-precision training at run time: autocast around each iteration's forward, a GradScaler for fp16, and
the scaler's state in every checkpoint.

Why not mmcv 1.7's ``Fp16OptimizerHook`` / ``@auto_fp16`` / ``@force_fp32``: they are CUDA fp16 only (the
decorators enter ``torch.cuda.amp.autocast`` and cast inputs to ``torch.half``, gated on ``fp16_enabled``), so bf16
and the CPU would be left out. loce never sets ``fp16_enabled``; instead

- :class:`AmpState` (``runner.amp``) holds the dtype, the device type and, for fp16, a ``torch.amp.GradScaler``;
  the runner enters :meth:`AmpState.autocast` around ``train_step`` (forward and losses), not around backward;
- :class:`AmpOptimizerHook` does backward and the step: through the scaler for fp16 (unscale before gradient
  clipping; a step the scaler skips for inf/NaN gradients is counted in ``AmpState.skipped`` and logged, not a
  failure), plainly for bf16;
- the parts that must stay in fp32 (the equilibrium loss, the mean-score softmax and the tracker update, the mask
  loss) leave autocast through :func:`fp32`; mmcv's compiled ops get fp32 inputs (:mod:`loce_cli.mmdet_ext.amp_ops`).

A non-finite loss *value* still stops the run (``NonFiniteLossHook`` reads the loss before this hook runs).
"""

from __future__ import annotations

import contextlib
from typing import Optional

import torch
from mmcv.runner import HOOKS, OptimizerHook

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class AmpState:
    """One run's mixed precision: ``dtype`` name (``fp16`` / ``bf16``), device type, the GradScaler (fp16) and
    the count of steps the scaler skipped."""

    def __init__(self, dtype: str, device: str, loss_scale=None, scaler: Optional[object] = None):
        if dtype not in DTYPES:
            raise ValueError(f"amp dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.name = dtype
        self.dtype = DTYPES[dtype]
        self.device_type = "cuda" if str(device).startswith("cuda") else "cpu"
        self.static_scale = float(loss_scale) if isinstance(loss_scale, float) else None
        if scaler is None and dtype == "fp16":
            scaler = torch.amp.GradScaler(self.device_type, **_scaler_args(loss_scale))
        self.scaler = scaler
        self.skipped = 0  # optimizer steps the scaler skipped (inf/NaN gradients) in this process

    def autocast(self):
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def state_dict(self) -> dict:
        """Plain numbers only (checkpoints load with ``weights_only=True``)."""
        return dict(dtype=self.name, scaler=self.scaler.state_dict() if self.scaler is not None else None,
                    skipped=int(self.skipped))

    def load_state_dict(self, state: dict) -> None:
        if state.get("dtype") != self.name:
            raise ValueError(f"the checkpoint trained with amp {state.get('dtype')!r}, this run with {self.name!r}")
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.skipped = int(state.get("skipped", 0))


def _scaler_args(loss_scale) -> dict:
    if loss_scale in (None, "dynamic"):
        return {}
    if isinstance(loss_scale, float):  # static: mmcv's meaning; the scale is put back after each update
        return dict(init_scale=loss_scale)
    return dict(loss_scale)


def build_amp(setting: Optional[dict], device: str) -> Optional[AmpState]:
    """The run's :class:`AmpState` from its config's resolved ``amp`` setting (None: fp32)."""
    if not setting:
        return None
    return AmpState(setting["dtype"], device, setting.get("loss_scale"))


def autocast_of(amp: Optional[AmpState]):
    """``amp``'s autocast context, or one that does nothing."""
    return amp.autocast() if amp is not None else contextlib.nullcontext()


@contextlib.contextmanager
def fp32(*tensors):
    """Leave any autocast for a block and get ``tensors`` as fp32 (half-precision ones cast, others as they are):
    ``with fp32(a, b) as (a, b): ...``. A no-op outside autocast on fp32 tensors."""
    device_types = {t.device.type for t in tensors if torch.is_tensor(t)} or {"cpu"}
    with contextlib.ExitStack() as stack:
        for dt in device_types | {"cpu"}:
            if torch.is_autocast_enabled(dt):
                stack.enter_context(torch.autocast(device_type=dt, enabled=False))
        yield tuple(t.float() if torch.is_tensor(t) and t.dtype in (torch.float16, torch.bfloat16) else t
                    for t in tensors)


@HOOKS.register_module()
class AmpOptimizerHook(OptimizerHook):
    """mmcv's ``OptimizerHook`` (zero grad, backward, optional gradient clipping, step) through ``runner.amp``'s
    GradScaler when it has one. Logs ``loss_scale`` for fp16."""

    def after_train_iter(self, runner) -> None:
        amp = getattr(runner, "amp", None)
        scaler = amp.scaler if amp is not None else None
        if scaler is None:
            return super().after_train_iter(runner)
        optimizer = runner.optimizer
        optimizer.zero_grad()
        scaler.scale(runner.outputs["loss"]).backward()
        if self.grad_clip is not None:
            scaler.unscale_(optimizer)  # clip the true gradients
            grad_norm = self.clip_grads(runner.model.parameters())
            if grad_norm is not None:
                runner.log_buffer.update({"grad_norm": float(grad_norm)}, runner.outputs["num_samples"])
        scaler.step(optimizer)
        found = scaler._found_inf_per_device(optimizer) if hasattr(scaler, "_found_inf_per_device") else {}
        skipped = bool(sum(float(v) for v in found.values()))
        scaler.update(amp.static_scale)  # a static scale is set back; dynamic: backoff / growth
        if skipped:
            amp.skipped += 1
            runner.logger.info(f"iteration {runner.iter + 1}: the GradScaler skipped the step (inf/NaN gradients); "
                               f"loss scale now {scaler.get_scale():g}")
        runner.log_buffer.update({"loss_scale": float(scaler.get_scale())})


FP32_OUTPUT_HEADS = ("rpn_head", "roi_head.bbox_head", "roi_head.mask_head")


def _to_fp32(value):
    if torch.is_tensor(value):
        return value.float() if value.dtype in (torch.float16, torch.bfloat16) else value
    if isinstance(value, (list, tuple)):
        return type(value)(_to_fp32(v) for v in value)
    return value


def _fp32_output(module, inputs, output):
    return _to_fp32(output)


def fp32_head_outputs(detector) -> list:
    """Forward hooks that hand the RPN's, the box head's and the mask head's outputs on in fp32 (their layers still
    run in the autocast dtype). Box decoding, proposals, NMS, the losses and mask pasting then work in fp32: in
    bf16 a box coordinate near 1000 px has a step of 4 px, in fp16 0.5 px. Returns the hook handles; a no-op on
    fp32 outputs."""
    handles = []
    for name in FP32_OUTPUT_HEADS:
        try:
            module = detector.get_submodule(name)
        except AttributeError:
            continue
        handles.append(module.register_forward_hook(_fp32_output))
    return handles


def inference_autocast(dtype: Optional[str], device: str):
    """Autocast for inference (``loce eval --amp``): ``dtype`` ``bf16`` / ``fp16``, or None for none."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if str(device).startswith("cuda") else "cpu", dtype=DTYPES[dtype])
