"""``loce quickstart``: the main job on the built-in synthetic data, each step skipped when already done."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import loce_cli

CONFIG_DIR = Path(loce_cli.__file__).resolve().parent.parent / "configs" / "synthetic"
BASE_CONFIG = CONFIG_DIR / "mask_rcnn_r18_fpn_normed_synth.py"
LOCE_CONFIG = CONFIG_DIR / "loce_mask_rcnn_r18_fpn_normed_synth.py"


@dataclass
class StepResult:
    name: str
    status: str  # "done", "skipped" or "resumed"
    seconds: float
    output: str


@dataclass
class QuickstartResult:
    work_dir: str
    steps: List[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _data_options(data: Path) -> List[str]:
    ann = data / "annotations"
    opts = []
    for split, name in (("train", "train"), ("val", "val"), ("test", "val")):
        opts += [f"data.{split}.ann_file={ann / f'lvis_v1_{name}.json'}", f"data.{split}.img_prefix={data}/"]
    return opts


def _final_checkpoint(run: Path, epochs: int) -> Optional[Path]:
    path = run / f"epoch_{epochs}.pth"
    return path if path.is_file() else None


def run_quickstart(work_dir: Path, echo: Optional[Callable[[str], None]] = None,
                   cfg_options: Dict[str, List[str]] | None = None) -> QuickstartResult:
    """synthetic data -> base training -> LOCE fine-tune under ``work_dir``.

    ``cfg_options`` may add ``--cfg-options`` per stage (``{"base": [...], "finetune": [...]}``; tests use it to
    shorten the schedules).
    """
    from loce_cli.engine.config import load_config
    from loce_cli.engine.synth import SynthOptions, synthesize
    from loce_cli.engine.train import TrainRequest, train

    say = echo or (lambda _msg: None)
    extra = cfg_options or {}
    work_dir = Path(work_dir)
    result = QuickstartResult(work_dir=str(work_dir))
    start = time.perf_counter()

    data = work_dir / "data"
    t = time.perf_counter()
    if (data / "annotations" / "lvis_v1_train.json").is_file() and (data / "annotations" / "lvis_v1_val.json").is_file():
        result.steps.append(StepResult("data", "skipped", 0.0, str(data)))
        say(f"[1/3] data: {data} exists, skipped")
    else:
        say(f"[1/3] data: generating the synthetic long-tailed dataset in {data}")
        synthesize(data, SynthOptions(), force=True)
        result.steps.append(StepResult("data", "done", time.perf_counter() - t, str(data)))

    checkpoints = {}
    for n, (stage, config, run_name) in enumerate((("base", BASE_CONFIG, "base"), ("finetune", LOCE_CONFIG, "loce")),
                                                  start=2):
        run = work_dir / run_name
        options = _data_options(data) + list(extra.get(stage, []))
        epochs = int(load_config(config, options).runner.max_epochs)
        t = time.perf_counter()
        final = _final_checkpoint(run, epochs)
        if final is not None:
            result.steps.append(StepResult(stage, "skipped", 0.0, str(final)))
            say(f"[{n}/3] {stage}: {final} exists, skipped")
            checkpoints[stage] = final
            continue
        from loce_cli.mmdet_ext.training import latest_checkpoint

        resume = "auto" if latest_checkpoint(str(run)) else None
        say(f"[{n}/3] {stage}: {'resuming' if resume else 'training'} {config.name} in {run}")
        req = TrainRequest(config=str(config), stage=stage, work_dir=str(run), cfg_options=options, resume=resume,
                           base_checkpoint=str(checkpoints["base"]) if stage == "finetune" else None)
        out = train(req)
        checkpoints[stage] = Path(out.checkpoint)
        result.steps.append(StepResult(stage, "resumed" if resume else "done", time.perf_counter() - t,
                                       out.checkpoint))
        say(f"      {out.iterations} iterations in {out.seconds:.0f} s -> {out.checkpoint}")
    result.seconds = time.perf_counter() - start
    say(f"quickstart finished in {result.seconds:.0f} s (evaluation arrives with `loce eval`)")
    return result
