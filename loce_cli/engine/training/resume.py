"""Resuming a training run: which checkpoint (the newest readable one, mid-epoch ones included), with which
settings (the run's own, saved in its checkpoint), and what a run stopped by a signal or Ctrl-C prints.

A resume continues the run that was started. Its config is rebuilt from the checkpoint's ``meta['config']``;
``--cfg-options`` on the resume command line must agree with it, except :data:`CHANGEABLE_ON_RESUME`, which are
applied with a warning (e.g. ``runner.max_epochs`` to extend a run).
"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from loce_cli.engine.checkpoints import read_checkpoint
from loce_cli.engine.config.loading import load_config
from loce_cli.engine.json_files import write_json_atomic
from loce_cli.errors import DataError, LoceError, LoceUsageError
from loce_cli.mmdet_ext.config import load_config_text, parse_cfg_options
from loce_cli.mmdet_ext.runner import checkpoints, newest_checkpoint, stop_exit_code

CHANGEABLE_ON_RESUME = ("runner.max_epochs", "log_config.interval", "checkpoint_config.interval",
                        "checkpoint_config.max_keep_ckpts", "evaluation.interval")
RUNTIME_KEYS = ("work_dir", "device", "gpu_ids", "seed", "load_from", "resume_from", "log_config",
                "amp", "fp16")  # set per run (amp: the resolved --amp / fp16 setting, engine/amp.py)
STOPPED_FILE = "loce_stopped.json"  # written by rank 0 when a signal stopped the run; read by the launcher
AUTO = "auto"  # --resume-from auto: the newest checkpoint when there is one, else a fresh start
IF_ANY = "auto-if-any"  # TrainRequest.resume for it ("auto" there is --resume: the newest, which must exist)


class TrainingStopped(LoceError):
    """The run stopped before its end on purpose (a signal: exit 75; Ctrl-C: 130); the message names the last
    checkpoint, the hint the command that continues."""

    prefix = "stopped"

    def __init__(self, message: str, hint: Optional[str] = None, exit_code: int = 75, checkpoint: str = ""):
        super().__init__(message, hint)
        self.exit_code = int(exit_code)
        self.checkpoint = checkpoint


@dataclass
class ResumePlan:
    checkpoint: str
    epoch: int  # epochs finished
    iteration: int
    mid_epoch: bool
    max_epochs: int
    seed: int
    warnings: List[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.mid_epoch and self.epoch >= self.max_epochs


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _meta(ckpt: dict, path) -> dict:
    meta = ckpt.get("meta")
    if not isinstance(meta, dict) or "epoch" not in meta or "iter" not in meta:
        raise DataError(f"{path} holds no training position (meta epoch/iter): not a checkpoint of a loce or mmdet "
                        "run", "--resume-from a checkpoint that a run in this --work-dir wrote")
    return meta


def newest_readable(work_dir: Path, strict: bool = True):
    """``(path, checkpoint dict)`` of the newest checkpoint in ``work_dir`` that reads; an unreadable newer one
    (truncated, damaged) is named in a warning and skipped. None when there is none (``strict``: an error)."""
    order = []
    for p in [newest_checkpoint(str(work_dir))] + checkpoints(str(work_dir)):
        if p and p not in order:
            order.append(p)
    best, skipped = None, []
    for p in order:
        try:
            ckpt = read_checkpoint(Path(p))
            meta = _meta(ckpt, p)
        except DataError as e:
            skipped.append((p, e.message))
            continue
        key = (int(meta["iter"]), "mid_epoch" not in meta or meta.get("mid_epoch") is None)
        if best is None or key > best[0]:
            best = (key, p, ckpt)
    if best is None:
        if skipped:
            raise DataError(f"--resume: no readable checkpoint in {work_dir} ({skipped[0][1]})",
                            "start over with --force, or --resume-from a good copy")
        if strict:
            raise DataError(f"--resume: no checkpoint in {work_dir}",
                            "start without --resume (or use --resume-from auto, which starts when there is none)")
        return None
    _, path, ckpt = best
    for p, why in skipped:
        warn(f"{why}; resuming from the previous good checkpoint {path}")
    return path, ckpt


def _get(cfg, key: str):
    node: Any = cfg
    for part in key.split("."):
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, "keys") and part in node:
            node = node[part]
        else:
            raise KeyError(key)
    return node


def _norm(value):
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def saved_config(ckpt: dict, cfg_options=(), path="the checkpoint", filename=None):
    """The run's config as its checkpoint recorded it, with ``cfg_options`` merged; ``filename``: what its
    ``.filename`` says (the run's CONFIG; default the temporary file it was read from)."""
    text = (ckpt.get("meta") or {}).get("config")
    if not text:
        raise DataError(f"{path} does not record its config", "resume a checkpoint written by loce")
    return load_config_text(text, cfg_options, source=f"the config saved in {path}", filename=filename)


def plan_resume(req, work_dir: Path) -> Optional[ResumePlan]:
    """Check a ``--resume`` / ``--resume-from`` request against the checkpoint it continues; None for
    ``--resume-from auto`` in a work dir without a checkpoint (a fresh start)."""
    if req.resume in ("auto", IF_ANY):
        found = newest_readable(work_dir, strict=req.resume == "auto")
        if found is None:
            return None
        path, ckpt = found
    else:
        path = req.resume
        ckpt = read_checkpoint(Path(path))
    meta = _meta(ckpt, path)
    notes: List[str] = []
    stage = meta.get("stage")
    if stage and stage != req.stage:
        cmd = "loce train base" if stage == "base" else "loce finetune"
        raise LoceUsageError(f"{path} is a {stage} run; it cannot be resumed as {req.stage}", f"resume it with {cmd}")
    saved = saved_config(ckpt, (), path)
    given = parse_cfg_options(req.cfg_options)
    for key, (_text, value) in given.items():
        try:
            old = _norm(_get(saved, key))
        except KeyError:
            raise LoceUsageError(f"--cfg-options {key} is not in the run's config (from {path})",
                                 "resume without it: a resume continues the run as it was started") from None
        if _norm(value) == old:
            continue
        if key not in CHANGEABLE_ON_RESUME:
            raise LoceUsageError(f"--cfg-options {key}={value!r} differs from the run's {old!r}: a resume continues "
                                 "the run as it was started",
                                 f"drop the option (the run's settings come from {Path(path).name}), or start a new "
                                 f"run in another --work-dir; changeable on resume: {', '.join(CHANGEABLE_ON_RESUME)}")
        notes.append(f"--cfg-options {key}={value!r} changes the run's {old!r} (applied on resume)")
    cfg = saved_config(ckpt, list(req.cfg_options), path)
    max_epochs = int(cfg.runner.max_epochs)
    done = int(meta["epoch"])
    if max_epochs < done:
        raise LoceUsageError(f"runner.max_epochs={max_epochs} is below the {done} epochs the run has done",
                             f"pass runner.max_epochs >= {done}, or nothing to keep the run's own")
    started_with = meta.get("cfg_options")
    if started_with is not None:  # the config file edited since the run started?
        try:
            now = load_config(Path(req.config), list(started_with))
        except LoceError:  # gone or broken: the run's own config is what resumes
            now = None
        if now is not None:
            a, b = _norm(saved_config(dict(meta=dict(config=now.pretty_text)))._cfg_dict), _norm(saved._cfg_dict)
            changed = sorted(k for k in set(a) | set(b) if k not in RUNTIME_KEYS and a.get(k) != b.get(k))
            if changed:
                notes.append(f"{req.config} differs from the config the run started with ({', '.join(changed)}); "
                             f"resuming with the run's own, saved in {Path(path).name}")
    seed = int(meta.get("seed", req.seed))
    if req.seed not in (0, seed):
        raise LoceUsageError(f"--seed {req.seed} differs from the run's seed {seed}", "drop --seed when resuming")
    mid = meta.get("mid_epoch") is not None
    return ResumePlan(checkpoint=str(path), epoch=done, iteration=int(meta["iter"]), mid_epoch=mid,
                      max_epochs=max_epochs, seed=seed, warnings=notes)


def resume_command(req) -> str:
    """The command line that continues ``req``'s run."""
    words = ["loce", "train", "base"] if req.stage == "base" else ["loce", "finetune"]
    words.append(req.config)
    if req.stage == "finetune" and req.base_checkpoint:
        words += ["--from", req.base_checkpoint]
    words += ["--work-dir", req.work_dir, "--resume"]
    launch = req.launch
    if launch.gpus:
        words += ["--gpus", str(launch.gpus)]
    elif launch.nproc > 1:
        words += ["--nproc", str(launch.nproc)]
    started_by_loce = launch.launcher == "pytorch" and (launch.gpus or launch.nproc > 1)  # see engine.worker
    if launch.launcher != "none" and not started_by_loce:
        words += ["--launcher", launch.launcher]
    return " ".join(shlex.quote(str(w)) for w in words)


def stopped_by_signal(req, stop, requeued: str = "") -> TrainingStopped:
    """The error a run stopped by a signal ends with (``stop``: the runner's ``Preempted``): exit 75, or 130 for
    Ctrl-C (SIGINT)."""
    name = f"{stop.signame} (Ctrl-C)" if stop.signame == "SIGINT" else stop.signame
    message = (f"{name} after iteration {stop.iteration} (epoch {stop.epoch}, {stop.inner_iter}/"
               f"{stop.epoch_len}): checkpoint {stop.checkpoint}")
    if requeued:
        message += f"; {requeued}"
    return TrainingStopped(message, f"continue with: {resume_command(req)}", stop_exit_code(stop.signame),
                           stop.checkpoint)


def interrupted(req) -> TrainingStopped:
    """Ctrl-C twice (or before training started): no checkpoint is written; name the last one."""
    last = newest_checkpoint(req.work_dir)
    where = f"the last checkpoint is {last}" if last else "no checkpoint was written yet"
    hint = f"continue with: {resume_command(req)}" if last else "run the same command again"
    return TrainingStopped(f"interrupted (Ctrl-C); {where}", hint, 130, last or "")


def write_stopped(work_dir: str, stop: TrainingStopped) -> None:
    write_json_atomic(Path(work_dir) / STOPPED_FILE, dict(message=stop.message, hint=stop.hint,
                                                          exit_code=stop.exit_code, checkpoint=stop.checkpoint))


def read_stopped(work_dir: Path) -> Optional[TrainingStopped]:
    path = Path(work_dir) / STOPPED_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return TrainingStopped(data["message"], data.get("hint"), int(data.get("exit_code", 75)),
                           data.get("checkpoint", ""))
