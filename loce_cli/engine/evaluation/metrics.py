"""What an evaluation returns and ``metrics.json``: the result dataclasses (``EvalReport`` of ``MetricResult`` of
``ClassAP`` rows, ``ProtocolResult`` for AP-fixed / AP-pool), the one builder of per-class rows, the AP text the
table shows, and ``metrics.json`` + ``metrics.txt`` written as a set and read back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from loce_cli.atomic import atomic_paths
from loce_cli.core.frequency import parse_split
from loce_cli.errors import DataError

METRICS = ("bbox", "segm")
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


@dataclass
class ClassAP:
    id: int
    name: str
    frequency: str
    image_count: Optional[int]  # training images with the class (the annotation file's category field)
    ap: Optional[float]  # None when the class has no ground truth in the evaluated set
    instance_count: Optional[int] = None  # training instances of the class


@dataclass
class MetricResult:
    summary: Dict[str, float]
    per_class: List[ClassAP] = field(default_factory=list)


@dataclass
class ProtocolResult:
    """AP-fixed or AP-pool results (``evaluation/protocols.py``); pooled rows carry no per-class AP."""

    name: str
    dets_per_class: int
    metrics: Dict[str, MetricResult]


@dataclass
class EvalReport:
    annotation_file: str
    results_file: str
    evaluator: str
    max_dets: int
    split: str
    metrics: Dict[str, MetricResult]
    seconds: float
    checkpoint: Optional[str] = None
    config: Optional[str] = None
    annotation_sha256: Optional[str] = None  # what `loce report` compares (engine/data/identity.py)
    protocols: Dict[str, "ProtocolResult"] = field(default_factory=dict)  # fixed / pooled (standard: metrics)
    warnings: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def split_view(self, metric: str) -> List[ClassAP]:
        """The per-class rows of the selected split, sorted by AP (lowest first; classes without AP last)."""
        groups = parse_split(self.split)
        rows = [c for c in self.metrics[metric].per_class if c.frequency in groups]
        return sorted(rows, key=lambda c: (c.ap is None, c.ap if c.ap is not None else 0.0, c.name))


def class_rows(categories: Sequence[dict], aps: Sequence[Optional[float]]) -> List[ClassAP]:
    """The per-class rows of a metric: each category record (id, name, frequency, image_count, instance_count)
    with its AP (None where the class has no ground truth), in the order given."""
    return [ClassAP(int(c["id"]), str(c["name"]), str(c.get("frequency", "")), c.get("image_count"), ap,
                    c.get("instance_count")) for c, ap in zip(categories, aps)]


def ap_text(value: float) -> str:
    """An AP summary value as the table and metrics.txt show it: percent with one decimal; ``-`` where LVIS has
    no value (its -1: no ground truth of that size or group)."""
    return f"{100 * value:.1f}" if value >= 0 else "-"


def _table(report: EvalReport) -> str:
    lines = [f"{'metric':<6} " + " ".join(f"{k:>6}" for k in SUMMARY_KEYS)]
    for metric, r in report.metrics.items():
        lines.append(f"{metric:<6} " + " ".join(f"{ap_text(r.summary[k]):>6}" for k in SUMMARY_KEYS))
    for name, p in report.protocols.items():  # AP-fixed / AP-pool rows
        for metric, r in p.metrics.items():
            lines.append(f"{metric:<6} " + " ".join(f"{ap_text(r.summary[k]):>6}" for k in SUMMARY_KEYS)
                         + f"  {name}")
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out: Path) -> Path:
    """metrics.json and a plain-text table in ``out``, written as a set: both or neither (metrics.json, the file
    the next eval tests for, is renamed last)."""
    out.mkdir(parents=True, exist_ok=True)
    payloads = [_table(report).encode(), (json.dumps(report.to_dict(), indent=2) + "\n").encode()]
    with atomic_paths([out / "metrics.txt", out / "metrics.json"], sum(map(len, payloads))) as temps:
        for tmp, payload in zip(temps, payloads):
            tmp.write_bytes(payload)
    return out / "metrics.json"


def _metric_results(data: dict) -> Dict[str, MetricResult]:
    return {m: MetricResult(r["summary"], [ClassAP(**c) for c in r["per_class"]]) for m, r in data.items()}


def read_report(path: Path) -> EvalReport:
    """An ``EvalReport`` from a ``metrics.json`` written by ``write_report``, with one-line errors."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist", "pass an eval --out directory or its metrics.json")
    try:
        data = json.loads(path.read_text())
        data["metrics"] = _metric_results(data["metrics"])
        data["protocols"] = {name: ProtocolResult(name, r["dets_per_class"], _metric_results(r["metrics"]))
                             for name, r in (data.get("protocols") or {}).items()}
        return EvalReport(**data)
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"{path} is not a loce metrics.json ({type(e).__name__}: {str(e)[:80]})",
                        "pass the metrics.json that loce eval wrote") from None
