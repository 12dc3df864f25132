"""Mixed precision of a training run: ``--amp fp16|bf16`` and mmdet's config key ``fp16 = dict(loss_scale=...)``
resolved into one setting, ``amp = dict(dtype=..., loss_scale=...)``, written into the run's config (the work
dir's copy and every checkpoint's ``meta['config']``), so that a resume trains exactly as the run started.

Rules (checked before any process starts):

- ``--amp bf16``: bf16 autocast, no loss scaling (bf16 has fp32's range), on CPUs and GPUs.
- ``--amp fp16`` or ``fp16 = dict(loss_scale='dynamic' | <float> | dict(GradScaler arguments))``: fp16 autocast
  with a ``GradScaler`` (dynamic by default; a float is a static scale); CUDA only.
- An int ``loss_scale`` (``512``) is refused here with one line: mmcv 1.7's hook would raise ``ValueError`` from
  deep inside the run. A config with both keys must agree; ``--amp`` on a fresh run overrides the config's key
  (with a warning), on a resume it must match the run's own setting.

The runtime side (autocast around each iteration, the scaler, its state in checkpoints) is
:mod:`loce_cli.mmdet_ext.amp`.
"""

from __future__ import annotations

from typing import Optional

import torch

from loce_cli.errors import DataError, LoceUsageError

CHOICES = ("fp16", "bf16")
KEY = "amp"  # the resolved setting in a run's config
SCALER_ARGS = ("init_scale", "growth_factor", "backoff_factor", "growth_interval")


def _check_loss_scale(value, where: str):
    """``'dynamic'``, a positive float or a dict of GradScaler arguments; anything else one clear line."""
    if value == "dynamic":
        return value
    if isinstance(value, bool) or isinstance(value, int):
        raise DataError(f"{where}: loss_scale={value!r} is an int; mmcv 1.7 accepts a float, 'dynamic' or a dict "
                        "(an int raises ValueError inside its optimizer hook)",
                        f"write loss_scale={float(value)!r} (a static scale) or loss_scale='dynamic'")
    if isinstance(value, float):
        if not value > 0:
            raise DataError(f"{where}: loss_scale must be > 0, got {value!r}", "e.g. loss_scale=512.0 or 'dynamic'")
        return value
    if hasattr(value, "keys"):
        value = dict(value)
        unknown = sorted(set(value) - set(SCALER_ARGS))
        if unknown:
            raise DataError(f"{where}: loss_scale dict has unknown key(s) {', '.join(unknown)}",
                            f"GradScaler takes {', '.join(SCALER_ARGS)}")
        return value
    raise DataError(f"{where}: loss_scale must be 'dynamic', a float or a dict of GradScaler arguments, got "
                    f"{value!r}", "e.g. fp16 = dict(loss_scale='dynamic')")


def config_setting(cfg, source: str) -> Optional[dict]:
    """The config's own mixed-precision setting (``amp`` or mmdet's ``fp16``), checked; None for fp32."""
    amp, fp16 = cfg.get(KEY), cfg.get("fp16")
    from_fp16 = None
    if fp16 is not None:
        if not hasattr(fp16, "keys"):
            raise DataError(f"{source}: fp16 must be a dict, e.g. fp16 = dict(loss_scale='dynamic'), got {fp16!r}",
                            "mmdet's form: fp16 = dict(loss_scale=512.0) or dict(loss_scale='dynamic')")
        unknown = sorted(set(fp16) - {"loss_scale"})
        if unknown:
            raise DataError(f"{source}: fp16 = dict(...) sets {', '.join(unknown)}; loce reads loss_scale only",
                            "fp16 = dict(loss_scale='dynamic')")
        from_fp16 = dict(dtype="fp16", loss_scale=_check_loss_scale(fp16.get("loss_scale", 512.0),
                                                                    f"{source} fp16"))
    setting = None
    if amp is not None:
        if not hasattr(amp, "keys") or amp.get("dtype") not in CHOICES or set(amp) - {"dtype", "loss_scale"}:
            raise DataError(f"{source}: amp must be dict(dtype='fp16' | 'bf16', loss_scale=...), got {amp!r}",
                            "or drop it and pass --amp fp16|bf16")
        scale = amp.get("loss_scale")
        if amp["dtype"] == "bf16":
            if scale is not None:
                raise DataError(f"{source}: amp dtype bf16 takes no loss_scale (got {scale!r})",
                                "bf16 has fp32's range: drop loss_scale")
        else:
            scale = _check_loss_scale("dynamic" if scale is None else scale, f"{source} amp")
        setting = dict(dtype=amp["dtype"], loss_scale=scale)
    if setting is not None and from_fp16 is not None and setting != from_fp16:
        raise DataError(f"{source} sets both amp = {setting} and fp16 = {dict(fp16)}, which disagree",
                        "keep one of them")
    return setting or from_fp16


def resolve(cfg, flag: Optional[str], device: str, source: str, resumed: bool = False,
            warn=None) -> Optional[dict]:
    """The run's one setting from ``--amp`` (``flag``) and the config; checks it against ``device``."""
    if flag is not None and flag not in CHOICES:
        raise LoceUsageError(f"--amp {flag!r} is not one of {', '.join(CHOICES)}",
                             "--amp bf16 (CPUs and GPUs) or --amp fp16 (CUDA)")
    own = config_setting(cfg, source)
    setting = own
    if flag is not None and (own is None or own["dtype"] != flag):
        if resumed:
            raise LoceUsageError(f"--amp {flag} differs from the run's precision ({own['dtype'] if own else 'fp32'}):"
                                 " a resume continues the run as it was started",
                                 "drop --amp when resuming (the run's own setting is used)")
        if own is not None and warn is not None:
            warn(f"--amp {flag} overrides {source}'s {own['dtype']} setting")
        setting = dict(dtype=flag, loss_scale="dynamic" if flag == "fp16" else None)
    if setting is None:
        return None
    if setting["dtype"] == "fp16" and device != "cuda":
        where = "--amp fp16" if flag == "fp16" else f"{source} asks for fp16 mixed precision, which"
        message = f"{where} needs a CUDA GPU (autocast fp16 with a GradScaler); this run is on {device}"
        hint = "on the CPU use --amp bf16; on a GPU pass --gpus N or --device cuda"
        if flag == "fp16":
            raise LoceUsageError(message, hint)
        raise DataError(message, hint + " (--amp bf16 overrides the config's fp16)")
    if setting["dtype"] == "bf16" and device == "cuda":
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            raise LoceUsageError(f"this GPU ({torch.cuda.get_device_name(0)}) has no bf16 support",
                                 "use --amp fp16 (Volta, Turing) or an Ampere or newer GPU for bf16")
    return setting


def apply(cfg, flag: Optional[str], device: str, source: str, resumed: bool = False, warn=None):
    """Resolve and write the setting into ``cfg`` as ``amp = dict(...)`` (mmdet's ``fp16`` key removed: the
    run's config holds one setting); returns ``cfg``."""
    setting = resolve(cfg, flag, device, source, resumed, warn)
    for key in (KEY, "fp16"):
        if key in cfg:
            cfg.pop(key)
    if setting is not None:
        cfg[KEY] = setting
    return cfg


def check_inference(flag: Optional[str], device: str) -> None:
    """``loce eval --amp`` / ``loce predict --amp``: bf16 anywhere, fp16 on CUDA only (usage errors)."""
    if flag is None:
        return
    if flag not in CHOICES:
        raise LoceUsageError(f"--amp {flag!r} is not one of {', '.join(CHOICES)}",
                             "--amp bf16 (CPUs and GPUs) or --amp fp16 (CUDA)")
    if flag == "fp16" and device != "cuda":
        raise LoceUsageError(f"--amp fp16 needs a CUDA GPU; this run is on {device}",
                             "on the CPU use --amp bf16; on a GPU pass --gpus N or --device cuda")
