"""``loce inspect scores CKPT --measure CONFIG``: the per-class mean classification scores of any checkpoint (base,
baseline, LOCE, the authors' files) measured on the config's training data (:mod:`loce_cli.mmdet_ext.score_measure`),
as a :class:`~loce_cli.engine.inspect.state.ScoresReport` so that stored and measured scores print alike."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from loce_cli.core.frequency import GROUP_NAMES, GROUPS
from loce_cli.engine.checkpoints import check_same_classes, check_unnamed_checkpoint, meta, read_checkpoint
from loce_cli.engine.config.loading import load_config, train_dataset_cfg
from loce_cli.engine.inspect.state import ClassScore, ScoresReport
from loce_cli.errors import DataError, LoceUsageError
from loce_cli.mmdet_ext.score_measure import build_training_dataset, measure_list, measure_scores, measuring_model


def _with_data(cfg, data: Optional[Path]):
    """``data.train`` pointed at ``data`` (a dataset root holding ``annotations/<the config's file name>``)."""
    if data is None:
        return cfg
    train = train_dataset_cfg(cfg)
    ann = Path(data) / "annotations" / Path(train.ann_file).name
    if not ann.is_file():
        raise DataError(f"--data {data}: no {ann}", f"the config's training file is {train.ann_file}")
    train.ann_file, train.img_prefix = str(ann), f"{data}/"
    return cfg


def measure_checkpoint_scores(checkpoint: Path, config: Path, data: Optional[Path] = None,
                              images_per_class: Optional[int] = None, cfg_options: Sequence[str] = (),
                              device: str = "cpu", lowest: int = 10, seed: int = 0,
                              max_images: Optional[int] = None,
                              progress: Optional[Callable[[int, int], None]] = None) -> ScoresReport:
    """Measured per-class scores of ``checkpoint`` over ``config``'s training data; classes with no measured
    box have score None. Prints the list size and, after the third image, the time it will take (stderr).
    ``max_images``: only the first images of the list (benchmarks); ``progress(done, total)`` after each image."""
    cfg = _with_data(load_config(Path(config), cfg_options), data)
    memory = (cfg.model.get("roi_head") or {}).get("memory") or {}
    per_class = images_per_class or max(1, int(memory.get("queue_size", 80)) // 16)
    if per_class < 1:
        raise LoceUsageError("--images-per-class must be >= 1", "e.g. --images-per-class 5")
    dataset = build_training_dataset(train_dataset_cfg(cfg))
    _check_classes(Path(checkpoint), cfg, tuple(dataset.CLASSES))
    model, missing, unexpected = measuring_model(cfg, Path(checkpoint), device)
    if missing:
        raise DataError(f"{checkpoint} does not fit {config}'s model: {len(missing)} weights missing, first "
                        f"{missing[0]}", "measure with the config the checkpoint was trained with")
    indices = measure_list(dataset, per_class, seed=seed)
    names = tuple(dataset.CLASSES)
    shown = "" if max_images is None or max_images >= len(indices) else f", the first {max_images} measured"
    print(f"measuring {checkpoint}: {len(indices)} images ({per_class} per class, {len(names)} classes{shown}) of "
          f"{train_dataset_cfg(cfg).ann_file}", file=sys.stderr, flush=True)
    indices = indices[:max_images] if max_images is not None else indices
    result = measure_scores(model, dataset, indices, seed=seed, progress=_estimating(progress))
    sums, counts = result["sums"].tolist(), result["counts"].tolist()
    scores = [s / n if n else None for s, n in zip(sums, counts)]
    return scores_report(str(checkpoint), scores, dataset, lowest)


def _estimating(then: Optional[Callable[[int, int], None]]) -> Callable[[int, int], None]:
    """A progress callback that prints (stderr) how long the rest will take: after the third image (from the
    second and third: the first one's time holds the start-up), then every tenth of the list; then calls
    ``then``."""
    first_done: list = []

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if done == 1:
            first_done.append(now)
        elif done < total and (done == 3 or (done > 3 and done % max(10, total // 10) == 0)):
            per = (now - first_done[0]) / (done - 1)
            print(f"  {done} / {total} images: about {_duration(per * (total - done))} to go ({per:.2f} s per "
                  f"image)", file=sys.stderr, flush=True)
        if then is not None:
            then(done, total)

    return progress


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _check_classes(checkpoint: Path, cfg, names: tuple) -> None:
    """The checkpoint's class names against the training data's (LVIS's spelling variants noted); without names in
    its meta, its classifier's class count against the data's (and a note that the names could not be checked)."""
    ckpt = read_checkpoint(checkpoint)
    source = train_dataset_cfg(cfg).ann_file
    have = meta(ckpt).get("CLASSES")
    if have:
        check_same_classes(tuple(have), names, checkpoint, f"the training data's ({source})",
                           "measure with the config (and --data) of the dataset it was trained on")
    else:
        check_unnamed_checkpoint(ckpt, checkpoint, len(names), f"the training data {source}", "measure with the "
                                 "config (and --data) of the dataset it was trained on", cfg)


def scores_report(name: str, scores, dataset, lowest: int) -> ScoresReport:
    freq = tuple(getattr(dataset, "class_frequency", None) or ["f"] * len(scores))
    images = tuple(getattr(dataset, "class_image_count", None) or [None] * len(scores))
    instances = tuple(getattr(dataset, "class_instance_count", None) or [None] * len(scores))
    classes = [ClassScore(str(dataset.CLASSES[i]), freq[i], scores[i], images[i], instances[i])
               for i in range(len(scores))]
    groups = {}
    for g in GROUPS:
        vals = [c.score for c in classes if c.group == g and c.score is not None]
        groups[GROUP_NAMES[g]] = dict(classes=len(vals), mean=statistics.fmean(vals) if vals else None,
                                      median=statistics.median(vals) if vals else None,
                                      min=min(vals) if vals else None)
    measured = [c for c in classes if c.score is not None]
    weakest = sorted(measured, key=lambda c: (c.score, c.name))[:lowest]
    return ScoresReport(name, len(scores), float("nan"), groups, weakest, classes)
