"""``loce report``: AP / APr / APc / APf of evaluated runs side by side, deltas against the first run, per-class
views of one frequency group, and plots. A run is one ``loce eval`` output or several (fine-tune seeds), which
are averaged with their spread."""

from __future__ import annotations

import csv
import glob
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from loce_cli.core.frequency import GROUP_NAMES, parse_split
from loce_cli.engine.evaluation import METRICS, PROTOCOLS, EvalReport, read_report
from loce_cli.engine.report.definitions import PROTOCOL_TITLES, protocol_of, seed_definitions, unlike_notes
from loce_cli.engine.report.same_data import check_same_data
from loce_cli.errors import DataError, LoceUsageError

KEYS = ("AP", "APr", "APc", "APf")
SPLIT_KEY = {"r": "APr", "c": "APc", "f": "APf"}
FORMATS = ("table", "md", "json", "csv")


@dataclass
class Stat:
    mean: Optional[float]  # None where no run has the value (e.g. a group without classes: LVIS's -1)
    sd: Optional[float]  # sample standard deviation over the run's seeds; None for one seed
    values: List[float]


@dataclass
class ClassRow:
    id: int
    name: str
    frequency: str
    image_count: Optional[int]
    instance_count: Optional[int]
    ap: List[Optional[float]]  # per run (mean over its seeds)


@dataclass
class RunSummary:
    label: str
    sources: List[str]
    evaluator: str
    metrics: Dict[str, Dict[str, Stat]]  # metric -> key -> stat
    definitions: Dict[str, Optional[str]] = field(default_factory=dict)  # metric -> what it is (None: no row)


@dataclass
class Report:
    runs: List[RunSummary]
    metrics: List[str]
    split: str
    deltas: Dict[str, Dict[str, Dict[str, Optional[float]]]] = field(default_factory=dict)  # label -> metric -> key
    classes: Dict[str, List[ClassRow]] = field(default_factory=dict)  # metric -> rows of the split's classes
    notes: List[str] = field(default_factory=list)

    def keys(self) -> List[str]:
        groups = parse_split(self.split)
        return list(KEYS) if len(groups) == 3 else ["AP"] + [SPLIT_KEY[g] for g in groups]

    def to_dict(self) -> dict:
        return asdict(self)


def _resolve(arg: str) -> tuple:
    """``LABEL=PATTERN`` or ``PATTERN`` -> (label, [metrics.json paths]); PATTERN is a metrics.json, an eval
    directory, or a glob of either (several matches = seeds of one run)."""
    label, _, pattern = arg.rpartition("=") if "=" in arg else ("", "", arg)
    matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    files = []
    for m in matches:
        p = Path(m)
        p = p / "metrics.json" if p.is_dir() else p
        if glob.has_magic(pattern) and not p.is_file():
            continue  # a glob may also match folders without results
        files.append(p)
    if not files:
        raise DataError(f"{pattern!r} matches no metrics.json", "pass an eval --out directory, a metrics.json or a "
                                                                 "glob of them (quote it)")
    if not label:
        first = files[0].parent
        label = first.parent.name if first.name == "eval" else first.name
    return label, files


def _same_classes(reference: EvalReport, ref_src: Path, other: EvalReport, src: Path) -> None:
    for metric in set(reference.metrics) & set(other.metrics):
        a = [(c.id, c.name) for c in reference.metrics[metric].per_class]
        b = [(c.id, c.name) for c in other.metrics[metric].per_class]
        if a != b:
            diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise DataError(f"{src} and {ref_src} were evaluated on different class sets ({len(b)} vs {len(a)} "
                            f"classes, first difference at position {diff})",
                            "report runs evaluated on the same annotation file")


def _key(metric: str, protocol: str) -> str:
    return metric if protocol == "standard" else f"{metric} {PROTOCOL_TITLES[protocol]}"


def view(rep: EvalReport, key: str):
    """The ``MetricResult`` of a row key: ``bbox`` (standard) or ``bbox AP-fixed`` / ``bbox AP-pool``."""
    metric, name = protocol_of(key)
    if name == "standard":
        return rep.metrics[metric]
    return rep.protocols[name].metrics[metric]


def _has(rep: EvalReport, key: str) -> bool:
    try:
        view(rep, key)
        return True
    except KeyError:
        return False


def _protocols(loaded, protocols: Optional[Sequence[str]]) -> List[str]:
    """The protocols to show: those asked for (each must be in every run), else every one any run carries
    (rows a run lacks are shown as '-' with a note)."""
    reps = [(src, rep) for _l, items in loaded for src, rep in items]
    if not protocols:
        return ["standard"] + [p for p in PROTOCOL_TITLES if any(p in rep.protocols for _s, rep in reps)]
    for p in protocols:
        if p not in PROTOCOLS:
            raise LoceUsageError(f"--protocol {p!r} is not supported", "use standard, fixed and/or pooled")
        missing = [src for src, rep in reps if p != "standard" and p not in rep.protocols]
        if missing:
            raise DataError(f"{missing[0]} has no {PROTOCOL_TITLES[p]} results (--protocol {p})",
                            f"evaluate it with loce eval ... --protocol {p}")
    return list(dict.fromkeys(protocols))


def _stat(values: List[float]) -> Stat:
    vals = [v for v in values if v is not None and v >= 0]
    if not vals:
        return Stat(None, None, [])
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return Stat(mean, sd, vals)


def _load(runs: Sequence[str]) -> list:
    """``[(label, [(path, EvalReport)])]`` of the arguments; a label given twice (``A=x A=y``) is refused."""
    loaded, given = [], {}
    for arg in runs:
        label, files = _resolve(arg)
        if "=" in arg and label in given:
            raise LoceUsageError(f"the label {label!r} repeats ({given[label]} and {arg})",
                                 "give each run its own LABEL (LABEL=PATH)")
        given.setdefault(label, arg)
        loaded.append((label, [(f, read_report(f)) for f in files]))
    return loaded


def _class_tables(report: Report, loaded: list, groups) -> None:
    """The per-class rows of the split's classes, per metric (runs without the metric: None)."""
    for m in report.metrics:
        ref = next(rep for _l, items in loaded for _s, rep in items if _has(rep, m))
        rows = []
        for k, c in enumerate(view(ref, m).per_class):
            if c.frequency not in groups:
                continue
            aps = [_stat([view(rep, m).per_class[k].ap for _s, rep in items if _has(rep, m)]).mean
                   for _l, items in loaded]
            rows.append(ClassRow(c.id, c.name, c.frequency, c.image_count, c.instance_count, aps))
        rows.sort(key=lambda r: (r.image_count if r.image_count is not None else 0, r.name))
        report.classes[m] = rows
    if report.classes and not any(report.classes.values()):
        names = "/".join(GROUP_NAMES[g] for g in groups)
        report.notes.append(f"the data has no {names} classes: the per-class tables are empty")


def build_report(runs: Sequence[str], metrics: Sequence[str] = (), split: str = "all",
                 allow_different_data: bool = False, protocols: Optional[Sequence[str]] = None) -> Report:
    """Load, check and summarise the runs named by ``runs`` (see ``_resolve``). Runs evaluated on different
    annotation files are refused, or with ``allow_different_data`` reported with a warning note.
    ``protocols``: which of standard / fixed / pooled (default: each one any run carries). Seeds of unlike
    definitions (``definitions.py``) are refused; runs of unlike definitions get no delta and a note."""
    if not runs:
        raise LoceUsageError("no runs given", "loce report RUN_OR_METRICS... (eval --out directories)")
    try:
        groups = parse_split(split)
    except ValueError as e:
        raise LoceUsageError(str(e), "--split all|rare|common|frequent") from None
    for m in metrics:
        if m not in METRICS:
            raise LoceUsageError(f"--metric {m!r} is not supported", "use bbox and/or segm")
    loaded = _load(runs)
    ref_src, ref = loaded[0][1][0]
    for _label, items in loaded:
        for src, rep in items:
            _same_classes(ref, ref_src, rep, src)
    data_notes = check_same_data([item for _l, items in loaded for item in items], allow_different_data)
    keys = [_key(m, p) for p in _protocols(loaded, protocols) for m in METRICS]
    available = [k for k in keys if any(_has(rep, k) for _l, items in loaded for _s, rep in items)]
    chosen = [k for k in available if k.partition(" ")[0] in (metrics or METRICS)]
    if not chosen:
        raise DataError(f"no metric ({', '.join(metrics or METRICS)}) is present in any run",
                        "evaluate the runs with the --metric asked for")
    report = Report([], chosen, split, notes=list(data_notes))
    labels = [label for label, _ in loaded]
    if len(set(labels)) != len(labels):
        report.notes.append("several runs share a label; name them with LABEL=PATH")
    evaluators = {rep.evaluator for _l, items in loaded for _s, rep in items}
    if len(evaluators) > 1:
        report.notes.append(f"runs were evaluated with different evaluators ({', '.join(sorted(evaluators))})")
    for label, items in loaded:
        defs = {m: seed_definitions(label, items, m, _has) for m in chosen}
        stats = {m: {k: _stat([view(rep, m).summary.get(k) for _s, rep in items if _has(rep, m)]) for k in KEYS}
                 for m in chosen}
        report.runs.append(RunSummary(label, [str(s) for s, _ in items], items[0][1].evaluator, stats, defs))
        missing = [m for m in chosen if defs[m] is None]
        if missing:
            report.notes.append(f"{label!r} has no {', '.join(missing)} results: shown as '-'")
    report.notes += unlike_notes(labels, {m: [r.definitions[m] for r in report.runs] for m in chosen})
    first = report.runs[0]
    for run in report.runs[1:]:
        report.deltas[run.label] = {
            m: {k: (run.metrics[m][k].mean - first.metrics[m][k].mean)
                if run.metrics[m][k].mean is not None and first.metrics[m][k].mean is not None
                and run.definitions[m] == first.definitions[m] else None
                for k in KEYS} for m in chosen}
    if len(groups) < 3:
        _class_tables(report, loaded, groups)
    return report


def fmt(value: Optional[float], sd: Optional[float] = None) -> str:
    if value is None:
        return "-"
    text = f"{100 * value:.1f}"
    return text + (f" ± {100 * sd:.1f}" if sd is not None else "")


def _fmt_delta(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:+.1f}"


def metric_label(report: Report, run: RunSummary, metric: str) -> str:
    """The row's metric, with its definition where the runs' definitions of it differ (a row of its own)."""
    defs = {r.definitions.get(metric) for r in report.runs} - {None}
    d = run.definitions.get(metric)
    return f"{metric} [{d}]" if len(defs) > 1 and d is not None else metric


def summary_rows(report: Report) -> List[List[str]]:
    """Header + one row per run and metric: AP columns (mean ± sd over seeds) and, from the second run on, the
    delta of each against the first run (none where the two are defined differently)."""
    keys = report.keys()
    header = ["run", "metric", "seeds"] + keys + [f"Δ{k}" for k in keys]
    rows = [header]
    for m in report.metrics:
        for i, run in enumerate(report.runs):
            stats = run.metrics[m]
            deltas = report.deltas.get(run.label, {}).get(m, {}) if i else {}
            rows.append([run.label, metric_label(report, run, m), str(len(run.sources))]
                        + [fmt(stats[k].mean, stats[k].sd) for k in keys]
                        + [_fmt_delta(deltas.get(k)) if i else "" for k in keys])
    return rows


def class_rows(report: Report, metric: str) -> List[List[str]]:
    labels = [r.label for r in report.runs]
    header = ["class", "group", "train images", "train instances"] + [f"AP {lbl}" for lbl in labels]
    if len(labels) > 1:
        header += [f"Δ {lbl}" for lbl in labels[1:]]
    rows = [header]
    labels_def = report.runs[0].definitions.get(metric)
    for c in report.classes.get(metric, []):
        row = [c.name, GROUP_NAMES.get(c.frequency, c.frequency), "-" if c.image_count is None else str(c.image_count),
               "-" if c.instance_count is None else str(c.instance_count)] + [fmt(a) for a in c.ap]
        first, same = c.ap[0], [r.definitions.get(metric) == labels_def for r in report.runs[1:]]
        row += [_fmt_delta(a - first if a is not None and first is not None and ok else None)
                for a, ok in zip(c.ap[1:], same)]
        rows.append(row)
    return rows


def render_markdown(report: Report) -> str:
    def table(rows):
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" if i < 2 else "---:"
                                                                    for i in range(len(rows[0]))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)

    parts = [table(summary_rows(report))]
    for m in report.classes:
        parts.append(f"**{m}: {report.split} classes by training images**\n\n" + table(class_rows(report, m)))
    parts += [f"> note: {n}" for n in report.notes]
    return "\n\n".join(parts) + "\n"


def render_csv(report: Report) -> str:
    """One table in long form: a row per run, metric and summary key, then (with a --split) a row per run,
    metric and class of the per-class tables (key ``class``; the class columns filled). ``definition``: what
    the number is (rows of unlike definitions carry no delta)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "metric", "key", "mean", "sd", "seeds", "delta_vs_first", "definition", "class", "group",
                "train_images", "train_instances"])

    def num(v):
        return "" if v is None else f"{v:.6f}"

    for m in report.metrics:
        for i, run in enumerate(report.runs):
            for k in report.keys():
                s = run.metrics[m][k]
                d = report.deltas.get(run.label, {}).get(m, {}).get(k) if i else None
                w.writerow([run.label, m, k, num(s.mean), num(s.sd), len(run.sources), num(d),
                            run.definitions.get(m) or "", "", "", "", ""])
    for m, rows in report.classes.items():
        first_def = report.runs[0].definitions.get(m)
        for c in rows:
            for i, run in enumerate(report.runs):
                a, first = c.ap[i], c.ap[0]
                d = a - first if i and a is not None and first is not None and \
                    run.definitions.get(m) == first_def else None
                w.writerow([run.label, m, "class", num(a), "", len(run.sources), num(d), run.definitions.get(m) or "",
                            c.name, GROUP_NAMES.get(c.frequency, c.frequency),
                            "" if c.image_count is None else c.image_count,
                            "" if c.instance_count is None else c.instance_count])
    return buf.getvalue()


def per_class_by_run(report: Report, metric: str) -> List[List[dict]]:
    """Per-class AP of each run (mean over its seeds) with the class's group and training counts."""
    out = []
    for run in report.runs:
        reps = [r for r in (read_report(Path(s)) for s in run.sources) if _has(r, metric)]
        rows = []
        if not reps:  # a run without this metric: no points
            out.append(rows)
            continue
        for k, c in enumerate(view(reps[0], metric).per_class):
            rows.append(dict(frequency=c.frequency, image_count=c.image_count, instance_count=c.instance_count,
                             ap=_stat([view(r, metric).per_class[k].ap for r in reps]).mean))
        out.append(rows)
    return out
