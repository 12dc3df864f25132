"""The command a finished training run suggests next: a base run's LOCE fine-tune, a fine-tune's evaluation."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional, Sequence

from loce_cli.engine.config.names import resolve_config
from loce_cli.errors import DataError


def loce_config_for(base_config: str) -> Optional[str]:
    """The LOCE fine-tune config shipped next to a base config, if there is one: ``X.py`` -> ``loce_X.py``, the
    LVIS configs' 2x base schedule -> the 6-epoch fine-tune (``..._2x_lvis_v1.py`` -> ``loce_..._6e_lvis_v1.py``).
    A base config given by name (``lvis/mask_rcnn_...``) gets a name back, a path a path."""
    try:
        path = resolve_config(base_config)
    except DataError:
        return None
    if path.suffix != ".py":
        return None
    by_name = not Path(base_config).expanduser().is_file()
    for name in (path.name, path.name.replace("_2x_", "_6e_")):
        candidate = path.with_name(f"loce_{name}")
        if candidate.is_file():
            return f"{candidate.parent.name}/{candidate.stem}" if by_name else str(candidate)
    return None


SCHEDULE_KEYS = ("runner", "lr_config", "optimizer", "optimizer_config", "momentum_config", "checkpoint_config",
                 "log_config", "evaluation", "workflow", "custom_hooks", "total_epochs", "load_from", "resume_from",
                 "auto_scale_lr", "fp16", "amp")


def carried_options(cfg_options: Sequence[str]) -> list:
    """The options the next step needs too: every option but those of the run's own schedule, optimizer, hooks and
    logging (:data:`SCHEDULE_KEYS`), which the next step's config sets for itself. The model's and the data's
    options (``model.*``, ``data.*``, ``num_classes``...) are kept: a model made by ``--cfg-options`` stays that
    model."""
    keys = [(o, o.split("=", 1)[0].strip()) for o in cfg_options]
    return [o for o, key in keys if key.split(".", 1)[0] not in SCHEDULE_KEYS]


def next_command(stage: str, config: str, checkpoint: str, work_dir: str, cfg_options: Sequence[str] = (),
                 data_dir: Optional[str] = None) -> str:
    """``loce finetune LOCE_CONFIG --from CKPT`` after a base run, ``loce eval CONFIG CKPT --out WORK_DIR/eval``
    after a fine-tune; with the run's ``--data`` and, of its ``--cfg-options`` (given without ``--data``'s own),
    those the next step needs too (:func:`carried_options`)."""
    if not checkpoint:
        return ""
    kept = carried_options(cfg_options)
    options = (f" --data {shlex.quote(str(data_dir))}" if data_dir else "") + \
        ((" --cfg-options " + " ".join(shlex.quote(o) for o in kept)) if kept else "")
    if stage == "base":
        loce = loce_config_for(config)
        target = shlex.quote(loce) if loce is not None else "LOCE_CONFIG"
        return f"loce finetune {target} --from {shlex.quote(checkpoint)}{options}"
    out = shlex.quote(str(Path(work_dir) / "eval"))
    return f"loce eval {shlex.quote(config)} {shlex.quote(checkpoint)} --out {out}{options}"
