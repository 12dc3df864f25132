"""``loce analyze``: where each group's AP goes, for one evaluated run (an eval directory or a results file with
its annotation file): the error decomposition (``errors``), the cross-group confusion (``confusion``) and the
calibration by group (``calibration``), all from one labelling of the kept detections (``matching``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from loce_cli.engine.analysis.calibration import calibration
from loce_cli.engine.analysis.confusion import confusion, top_pairs
from loce_cli.engine.analysis.errors import decompose
from loce_cli.engine.analysis.matching import groups_of, match_all
from loce_cli.engine.data.identity import annotation_sha256
from loce_cli.engine.evaluation import read_report
from loce_cli.engine.evaluation.ground_truth import load_ground_truth
from loce_cli.engine.evaluation.results_reader import read_results
from loce_cli.errors import DataError, LoceUsageError

ANALYSIS_METRICS = ("bbox", "segm")


@dataclass
class Analysis:
    label: str
    results_file: str
    annotation_file: str
    annotation_sha256: Optional[str]
    metric: str
    images: int
    detections: int  # kept and evaluated (the per-image cap, classes the image verifies)
    errors: dict = field(default_factory=dict)  # {"all"|"r"|"c"|"f": {"ap50", "gain": {type}, "count": {type}}}
    confusion: dict = field(default_factory=dict)  # {"r"|"c"|"f": {"own", "r", "c", "f", "none"}}
    top_confusions: List[dict] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _label(path: Path) -> str:
    path = path.resolve()
    if path.is_file():
        path = path.parent if path.name in ("metrics.json", "results.json") else path.with_suffix("")
    return f"{path.parent.name}/{path.name}" if path.name == "eval" else path.name


def _from_metrics(metrics_json: Path) -> Tuple[Path, Path, Optional[str]]:
    rep = read_report(metrics_json)
    results = Path(rep.results_file)
    if not results.is_file() and (metrics_json.parent / results.name).is_file():
        results = metrics_json.parent / results.name
    return results, Path(rep.annotation_file), getattr(rep, "annotation_sha256", None)


def resolve(source: Path, ann: Optional[Path]) -> Tuple[Path, Path, Optional[str]]:
    """(results file, annotation file, recorded sha256) of an eval directory, a metrics.json or a results file
    (its annotation file: ``ann``, else the metrics.json beside it that names it)."""
    source = Path(source)
    if not source.exists():
        raise DataError(f"{source} does not exist", "pass an eval --out directory or an LVIS results JSON")
    metrics = source / "metrics.json" if source.is_dir() else source if source.name == "metrics.json" else None
    if metrics is not None:
        if not metrics.is_file():
            raise DataError(f"{source} holds no metrics.json", "pass an eval --out directory or a results JSON")
        results, ann_rec, sha = _from_metrics(metrics)
        return results, Path(ann) if ann else ann_rec, None if ann else sha
    if ann is None:
        beside = source.parent / "metrics.json"
        if beside.is_file():
            results, ann_rec, sha = _from_metrics(beside)
            if results.resolve() == source.resolve():
                return source, ann_rec, sha
        raise DataError(f"no annotation file is known for {source}",
                        "pass --ann VAL.json (the file the results were made for), or the eval directory")
    return source, Path(ann), None


def analyze(source: Path, ann: Optional[Path] = None, metric: str = "bbox", max_dets: int = 300,
            say: Optional[Callable[[str], None]] = None) -> Analysis:
    """The analysis of one run (``DataError`` for input that does not fit, before anything is computed)."""
    if metric not in ANALYSIS_METRICS:
        raise LoceUsageError(f"--metric {metric!r} is not supported", "use bbox or segm")
    say = say or (lambda _m: None)
    results, ann_file, sha = resolve(Path(source), ann)
    if not ann_file.is_file():
        raise DataError(f"annotation file {ann_file} does not exist", "pass --ann with the val annotation file")
    gt = load_ground_truth(ann_file, metric == "segm")
    dets = read_results(results, gt, metric == "segm", say=say)
    try:
        if dets.box is None and metric == "bbox":
            raise DataError(f"{results} has no boxes", "pass --metric segm for mask-only results")
        say(f"matching {dets.size:,} detections over {gt.num_images:,} images ({metric})")
        m = match_all(gt, dets, metric, max_dets)
    finally:
        dets.close()
    groups = groups_of(gt)
    return Analysis(_label(Path(source)), str(results), str(ann_file), sha or annotation_sha256(ann_file), metric,
                    gt.num_images, int(m.kept.size), decompose(m, groups), confusion(m, groups),
                    top_pairs(m, gt.categories, groups), calibration(m, groups, gt.categories))
