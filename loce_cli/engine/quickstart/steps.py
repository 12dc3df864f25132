"""``loce quickstart``: the main job on the built-in synthetic data, each step skipped when already done."""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

from loce_cli.engine.analysis import analyze, compare, headline
from loce_cli.engine.config.loading import load_config
from loce_cli.engine.config.names import configs_root
from loce_cli.engine.data.synth import SynthOptions, synthesize
from loce_cli.engine.evaluation import EvalRequest, evaluate_model
from loce_cli.engine.quickstart.pictures import pictures_done, write_quickstart_predictions
from loce_cli.engine.runtime.locks import locked
from loce_cli.engine.training import TrainingStopped
from loce_cli.engine.training.run import TrainRequest, train
from loce_cli.errors import DataError
from loce_cli.mmdet_ext.runner import newest_checkpoint

CONFIG_DIR = configs_root() / "synthetic"  # the shipped configs (an installed package has them too)
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
    metrics: Dict[str, Dict[str, Dict[str, float]]] = field(default_factory=dict)  # run -> metric -> AP keys
    gain: List[str] = field(default_factory=list)  # where LOCE's gain came from (loce analyze --compare)

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


def _train_stage(req: TrainRequest, work_dir: Path):
    """``train(req)``; a stop (signal, Ctrl-C) is told to rerun the quickstart, not the stage's own command."""
    try:
        return train(req)
    except TrainingStopped as e:
        again = f"loce quickstart --work-dir {shlex.quote(str(work_dir))}"
        raise TrainingStopped(e.message, f"rerun {again}: it skips the finished steps and resumes {req.stage} from "
                                         "its last checkpoint" if e.checkpoint else f"rerun {again}",
                              e.exit_code, e.checkpoint) from None


def _gain(work_dir: Path) -> List[str]:
    """The two lines of ``loce analyze eval/loce --compare eval/base`` that say where LOCE's gain came from."""
    try:
        return headline(compare(analyze(work_dir / "eval" / "loce"), analyze(work_dir / "eval" / "base")))
    except DataError as e:  # e.g. a model too weak to leave a detection: the quickstart's figures still stand
        return [f"where LOCE's gain came from: not analysed ({e.message})"]


def _predictions_step(work_dir: Path, data: Path, checkpoints: Dict[str, Path], extra, say) -> StepResult:
    """``loce predict`` of both models on the val images with rare classes, a few drawn side by side."""
    t = time.perf_counter()
    where = work_dir / "predictions"
    if pictures_done(work_dir):
        say(f"[5/5] predictions: {where} exists, skipped")
        return StepResult("predictions", "skipped", 0.0, str(where))
    say(f"[5/5] predictions: base and LOCE on the val images with rare classes -> {where}")
    runs = [(run, title, str(config), str(checkpoints[stage]), _data_options(data) + list(extra.get(stage, [])))
            for stage, config, run, title in (("base", BASE_CONFIG, "base", "base"),
                                              ("finetune", LOCE_CONFIG, "loce", "LOCE"))]
    m = write_quickstart_predictions(work_dir, data, runs)
    say(f"      rare val objects found at score >= {m['score_thr']:g}: base {m['rare_found']['base']}, LOCE "
        f"{m['rare_found']['loce']} of {m['rare_objects']}; {len(m['pictures'])} side-by-side pictures in {where}")
    return StepResult("predictions", "done", time.perf_counter() - t, str(where))


def run_quickstart(work_dir: Path, echo: Optional[Callable[[str], None]] = None,
                   cfg_options: Dict[str, List[str]] | None = None, synth_options=None,
                   verbose: bool = False) -> QuickstartResult:
    """:func:`_run_quickstart` holding ``work_dir``'s lock (two quickstarts in one folder: the second is refused)."""
    with locked(Path(work_dir), "--work-dir"):
        return _run_quickstart(work_dir, echo, cfg_options, synth_options, verbose)


def _run_quickstart(work_dir: Path, echo: Optional[Callable[[str], None]] = None,
                    cfg_options: Dict[str, List[str]] | None = None, synth_options=None,
                    verbose: bool = False) -> QuickstartResult:
    """synthetic data -> base training -> LOCE fine-tune -> evaluation of both -> pictures of both models'
    predictions (``predictions/``) under ``work_dir``.

    ``cfg_options`` may add ``--cfg-options`` per stage (``{"base": [...], "finetune": [...], "eval": [...]}``)
    and ``synth_options`` replace the dataset's ``SynthOptions``; tests use both to make it small. ``verbose``:
    mmcv's log records on the terminal too (they are always in each run's log file).
    """
    say = echo or (lambda _msg: None)
    extra = cfg_options or {}
    work_dir = Path(work_dir)
    result = QuickstartResult(work_dir=str(work_dir))
    start = time.perf_counter()

    data = work_dir / "data"
    t = time.perf_counter()
    if (data / "annotations" / "lvis_v1_train.json").is_file() and (data / "annotations" / "lvis_v1_val.json").is_file():
        result.steps.append(StepResult("data", "skipped", 0.0, str(data)))
        say(f"[1/5] data: {data} exists, skipped")
    else:
        say(f"[1/5] data: generating the synthetic long-tailed dataset in {data}")
        synthesize(data, synth_options or SynthOptions(), force=True)
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
            say(f"[{n}/5] {stage}: {final} exists, skipped")
            checkpoints[stage] = final
            continue
        resume = "auto" if newest_checkpoint(str(run)) else None
        say(f"[{n}/5] {stage}: {'resuming' if resume else 'training'} {config.name} in {run}")
        req = TrainRequest(config=str(config), stage=stage, work_dir=str(run), cfg_options=options, resume=resume,
                           base_checkpoint=str(checkpoints["base"]) if stage == "finetune" else None,
                           verbose=verbose)
        out = _train_stage(req, work_dir)
        checkpoints[stage] = Path(out.checkpoint)
        result.steps.append(StepResult(stage, "resumed" if resume else "done", time.perf_counter() - t,
                                       out.checkpoint))
        loss = f", final loss {out.final_loss:.3f}" if out.final_loss is not None else ""
        say(f"      {out.iterations} iterations in {out.seconds:.0f} s{loss} -> {out.checkpoint}")
    t = time.perf_counter()
    done = []
    for stage, config, run_name in (("base", BASE_CONFIG, "base"), ("finetune", LOCE_CONFIG, "loce")):
        out = work_dir / "eval" / run_name
        metrics_file = out / "metrics.json"
        if metrics_file.is_file():
            saved = json.loads(metrics_file.read_text())
            result.metrics[run_name] = {m: r["summary"] for m, r in saved["metrics"].items()}
            for m, r in (saved.get("protocols") or {}).get("fixed", {}).get("metrics", {}).items():
                result.metrics[run_name][f"{m} AP-fixed"] = r["summary"]
            say(f"[4/5] eval: {run_name}: {metrics_file} exists, skipped")
            continue
        say(f"[4/5] eval: {run_name} ({checkpoints[stage].name}) on the val split")
        options = _data_options(data) + list(extra.get(stage, [])) + list(extra.get("eval", []))
        report = evaluate_model(EvalRequest(str(config), str(checkpoints[stage]), str(out), force=True,
                                            cfg_options=options, protocols=["standard", "fixed"],
                                            verbose=verbose))
        result.metrics[run_name] = {m: r.summary for m, r in report.metrics.items()}
        result.metrics[run_name].update({f"{m} AP-fixed": r.summary for m, r in report.protocols["fixed"].metrics.items()})
        done.append(run_name)
    result.steps.append(StepResult("eval", "done" if done else "skipped", time.perf_counter() - t,
                                   str(work_dir / "eval")))
    result.steps.append(_predictions_step(work_dir, data, checkpoints, extra, say))
    result.gain = _gain(work_dir)
    for line in result.gain:
        say(line)
    result.seconds = time.perf_counter() - start
    say(f"quickstart finished in {result.seconds:.0f} s; metrics in {work_dir / 'eval'}/*/metrics.json")
    return result
