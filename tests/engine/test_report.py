"""loce report: summaries, deltas, seed averaging, split tables, formats, plots, bad input."""

import json

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.evaluation import evaluate_results, write_report
from loce_cli.engine.report.runs import build_report, render_csv, render_markdown
from loce_cli.errors import DataError, LoceUsageError
from tests.engine.test_evaluate import _results


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """Three evaluated 'runs' of noisy detections: base (seed 0) and two seeds of a second variant."""
    root = tmp_path_factory.mktemp("runs")
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    dirs = {}
    for name, seed in (("base", 0), ("loce_seed0", 1), ("loce_seed1", 2)):
        res = root / f"{name}.json"
        res.write_text(json.dumps(_results(tiny_dataset, seed=seed)))
        write_report(evaluate_results(res, ann), root / name / "eval")
        dirs[name] = root / name / "eval"
    return root, dirs


def _summary(path):
    return json.loads((path / "metrics.json").read_text())["metrics"]


def test_deltas_and_seed_average(runs):
    root, dirs = runs
    report = build_report([str(dirs["base"]), f"loce={root}/loce_seed*/eval"])
    assert [r.label for r in report.runs] == ["base", "loce"] and len(report.runs[1].sources) == 2
    for metric in ("bbox", "segm"):
        base = _summary(dirs["base"])[metric]["summary"]
        seeds = [_summary(dirs[f"loce_seed{s}"])[metric]["summary"] for s in (0, 1)]
        for key in ("AP", "APr", "APc", "APf"):
            stat = report.runs[1].metrics[metric][key]
            if base[key] < 0:  # LVIS's -1: the group has no class here
                assert stat.mean is None and report.deltas["loce"][metric][key] is None
                continue
            mean = (seeds[0][key] + seeds[1][key]) / 2
            assert stat.mean == pytest.approx(mean) and stat.values == [seeds[0][key], seeds[1][key]]
            assert stat.sd == pytest.approx(abs(seeds[0][key] - seeds[1][key]) / 2 ** 0.5)
            assert report.deltas["loce"][metric][key] == pytest.approx(mean - base[key])
            assert report.runs[0].metrics[metric][key].sd is None  # one seed: no spread
    md = render_markdown(report)
    assert md.startswith("| run | metric | seeds | AP | APr | APc | APf | ΔAP |") and "±" in md
    csv_rows = render_csv(report).strip().splitlines()
    assert csv_rows[0] == ("run,metric,key,mean,sd,seeds,delta_vs_first,definition,class,group,train_images,"
                           "train_instances") and len(csv_rows) == 1 + 2 * 2 * 4


def test_split_table_restricted_to_group(runs):
    _, dirs = runs
    report = build_report([str(dirs["base"]), str(dirs["loce_seed0"])], ["bbox"], "rare")
    assert report.keys() == ["AP", "APr"] and report.metrics == ["bbox"]
    rows = report.classes["bbox"]
    per_class = {c["name"]: c for c in _summary(dirs["loce_seed0"])["bbox"]["per_class"]}
    assert rows and all(r.frequency == "r" for r in rows)
    assert [r.image_count for r in rows] == sorted(r.image_count for r in rows)
    assert all(r.ap[1] == per_class[r.name]["ap"] for r in rows)
    assert all(r.instance_count == per_class[r.name]["instance_count"] is not None for r in rows)


def test_bad_input(runs, tmp_path):
    _, dirs = runs
    data = json.loads((dirs["base"] / "metrics.json").read_text())
    for m in data["metrics"].values():
        m["per_class"] = m["per_class"][1:]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(DataError, match="different class sets"):
        build_report([str(dirs["base"]), str(other)])
    with pytest.raises(DataError, match="matches no metrics.json"):
        build_report([str(tmp_path / "nowhere_*")])
    with pytest.raises(LoceUsageError, match="unknown split"):
        build_report([str(dirs["base"])], split="medium")
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(dirs["base"]), str(other)])
    assert r.exit_code == 1 and "different class sets" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["report", str(dirs["base"]), "--format", "xml"])
    assert r.exit_code == 2 and "--format" in r.stderr
    r = runner.invoke(app, ["report", str(dirs["base"]), "--plot", str(tmp_path / "p.txt")])
    assert r.exit_code == 2 and not (tmp_path / "p.txt").exists()
    truncated = tmp_path / "t" / "metrics.json"
    truncated.parent.mkdir()
    truncated.write_text((dirs["base"] / "metrics.json").read_text()[:200])
    r = runner.invoke(app, ["report", str(truncated.parent)])
    assert r.exit_code == 1 and "not a loce metrics.json" in r.stderr


def test_cli_formats_and_plots(runs, tmp_path):
    root, dirs = runs
    runner = CliRunner()
    args = ["report", f"base={dirs['base']}", f"loce={root}/loce_seed*/eval"]
    r = runner.invoke(app, args + ["--format", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert [run["label"] for run in data["runs"]] == ["base", "loce"] and "loce" in data["deltas"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "ΔAPr" in r.stdout and "\x1b[" not in r.stdout  # plain when not a terminal
    r = runner.invoke(app, args + ["--split", "rare", "--metric", "segm", "--plot", str(tmp_path / "r.png")])
    assert r.exit_code == 0, r.output
    assert "segm: rare classes" in r.stdout
    for name in ("r.png", "r_groups.png"):
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_plot_uses_instance_counts_of_any_run(runs, tmp_path):
    """A metrics.json from an older loce without instance counts still gets its points (same class list)."""
    from loce_cli.engine.report.runs import per_class_by_run
    from loce_cli.engine.pictures.report_plots import plot_report

    root, dirs = runs
    old = tmp_path / "old" / "metrics.json"
    old.parent.mkdir()
    data = json.loads((dirs["base"] / "metrics.json").read_text())
    for m in data["metrics"].values():
        for c in m["per_class"]:
            c.pop("instance_count")
    old.write_text(json.dumps(data))
    report = build_report([f"old={old}", str(dirs["loce_seed0"])], ["bbox"])
    assert all(c["instance_count"] is None for c in per_class_by_run(report, "bbox")[0])
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    created = []
    real = plt.subplots

    def spy(*a, **k):
        fig, axes = real(*a, **k)
        created.append(axes)
        return fig, axes

    import unittest.mock as mock

    with mock.patch.object(plt, "subplots", spy):
        plot_report(report, tmp_path / "p.png")
    panels = created[0][0]
    assert all(len(ax.collections) > 0 for ax in panels)  # both runs have points


def test_plot_draws_every_metric_of_the_table(runs, tmp_path):
    """A table with bbox and segm gets both in the figures: a row of run panels per metric, a bar panel each."""
    import unittest.mock as mock

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from loce_cli.engine.pictures.report_plots import plot_report

    root, dirs = runs
    report = build_report([f"base={dirs['base']}", f"loce={root}/loce_seed*/eval"])
    assert report.metrics == ["bbox", "segm"]
    created = []
    real = plt.subplots

    def spy(*a, **k):
        fig, axes = real(*a, **k)
        created.append(axes)
        return fig, axes

    with mock.patch.object(plt, "subplots", spy):
        written = plot_report(report, tmp_path / "p.png")
    scatter, bars = created
    assert scatter.shape == (2, 2) and bars.shape == (1, 2)
    assert [ax.get_title().split(": ")[1].split(" AP")[0] for ax in scatter[:, 0]] == ["bbox", "segm"]
    assert all(len(ax.collections) > 0 for ax in scatter.ravel())  # points in every panel
    assert [ax.get_title().split(" AP")[0] for ax in bars[0]] == ["bbox", "segm"]
    assert [p.name for p in written] == ["p.png", "p_groups.png"]


# --- numbers of different definitions, rows some runs lack, the same tables in every format (issue 31) ---

def _capped(data, seed=0, cap=300):
    """``_results`` padded with random boxes to exactly ``cap`` detections in every image: results as an
    inference with a 300-per-image limit leaves them."""
    import numpy as np

    ann = json.loads((data / "annotations" / "lvis_v1_val.json").read_text())
    dets = _results(data, seed=seed, with_masks=False)
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in ann["categories"]]
    for im in ann["images"]:
        have = sum(1 for d in dets if d["image_id"] == im["id"])
        for _ in range(cap - have):
            x, y = rng.uniform(0, im["width"] - 4), rng.uniform(0, im["height"] - 4)
            dets.append(dict(image_id=im["id"], category_id=int(rng.choice(cats)), bbox=[x, y, 4.0, 4.0],
                             score=float(rng.random() * 0.01)))
    return dets


@pytest.fixture(scope="module")
def unlike(tiny_dataset, tmp_path_factory):
    """Evaluated runs that differ in what their numbers are: capped results under AP-fixed, --max-dets 5, a
    bbox-only run, a fixed+pooled run (no standard rows)."""
    root = tmp_path_factory.mktemp("unlike")
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    (root / "true.json").write_text(json.dumps(_results(tiny_dataset, seed=0, with_masks=False)))
    (root / "capped.json").write_text(json.dumps(_capped(tiny_dataset, seed=0)))
    runs = {"true": ("true.json", dict(protocols=["standard", "fixed"])),
            "capped": ("capped.json", dict(protocols=["standard", "fixed"])),
            "dets5": ("true.json", dict(max_dets=5)),
            "fp": ("true.json", dict(protocols=["fixed", "pooled"]))}
    for name, (res, kw) in runs.items():
        write_report(evaluate_results(root / res, ann, metrics=["bbox"], **kw), root / name / "eval")
    return root


def test_capped_beside_true_ap_fixed_gets_no_delta(unlike):
    capped = json.loads((unlike / "capped" / "eval" / "metrics.json").read_text())
    assert any("look capped at 300" in w for w in capped["warnings"])  # as loce eval writes it
    report = build_report([str(unlike / "true" / "eval"), str(unlike / "capped" / "eval")])
    assert report.metrics == ["bbox", "bbox AP-fixed"]
    assert report.deltas["capped"]["bbox AP-fixed"] == {k: None for k in ("AP", "APr", "APc", "APf")}
    assert report.deltas["capped"]["bbox"]["AP"] is not None  # standard: the same definition, a delta
    assert any("not AP-fixed as defined" in n and "no delta" in n for n in report.notes)
    md = render_markdown(report)
    row = next(line for line in md.splitlines() if line.startswith("| capped | bbox AP-fixed"))
    assert "capped at 300 dets/image" in row and row.rstrip(" |").endswith("| - | - | - | -")
    assert "capped at 300 dets/image" in render_csv(report)


def test_different_max_dets_never_averaged_nor_subtracted(unlike):
    with pytest.raises(DataError, match=r"averages unlike bbox numbers: .*dets5.* \(max 5 dets/image\) and .*true.* \(max 300 dets/image\)"):
        build_report([f"mixed={unlike}/[dt]*/eval"])  # a seed glob over --max-dets 5 and 300
    report = build_report([str(unlike / "true" / "eval"), str(unlike / "dets5" / "eval")], protocols=["standard"])
    assert report.deltas["dets5"]["bbox"]["AP"] is None
    rows = {r[0]: r for r in __import__("loce_cli.engine.report.runs", fromlist=["x"]).summary_rows(report)[1:]}
    assert rows["true"][1] == "bbox [max 300 dets/image]" and rows["dets5"][1] == "bbox [max 5 dets/image]"
    r = CliRunner().invoke(app, ["report", f"mixed={unlike}/[dt]*/eval"])
    assert r.exit_code == 1 and "averages unlike" in r.stderr and "Traceback" not in r.output


def test_rows_some_runs_lack_are_dashes_with_a_note(runs, unlike):
    _, dirs = runs
    report = build_report([str(dirs["base"]), str(unlike / "true" / "eval")], protocols=["standard"])
    assert report.metrics == ["bbox", "segm"]  # bbox+segm beside bbox-only
    assert all(s.mean is None for s in report.runs[1].metrics["segm"].values())
    assert any("'true' has no segm results" in n for n in report.notes)
    report = build_report([str(unlike / "true" / "eval"), str(unlike / "fp" / "eval")])  # standard+fixed, fixed+pooled
    assert report.metrics == ["bbox", "bbox AP-fixed", "bbox AP-pool"]
    assert report.runs[1].metrics["bbox"]["AP"].mean is None and report.runs[0].metrics["bbox AP-pool"]["AP"].mean \
        is None
    assert report.deltas["fp"]["bbox AP-fixed"]["AP"] is not None
    assert any("'fp' has no bbox results" in n for n in report.notes)
    assert any("'true' has no bbox AP-pool results" in n for n in report.notes)
    r = CliRunner().invoke(app, ["report", str(unlike / "true" / "eval"), str(unlike / "fp" / "eval")])
    assert r.exit_code == 0 and "AP-pool" in r.stdout and "has no bbox results" in r.stdout


def test_every_format_carries_the_per_class_table(runs):
    root, dirs = runs
    args = ["report", f"base={dirs['base']}", f"loce={root}/loce_seed*/eval", "--split", "rare", "--metric", "bbox"]
    report = build_report(args[1:3], ["bbox"], "rare")
    names = [c.name for c in report.classes["bbox"]]
    assert names
    r = CliRunner().invoke(app, args + ["--format", "csv"])
    assert r.exit_code == 0, r.output
    import csv as csv_module
    import io

    rows = list(csv_module.DictReader(io.StringIO(r.stdout)))
    class_rows_ = [row for row in rows if row["key"] == "class"]
    assert sorted({row["class"] for row in class_rows_}) == sorted(names)
    assert len(class_rows_) == 2 * len(names)  # a row per run and class
    for row in class_rows_:
        c = next(c for c in report.classes["bbox"] if c.name == row["class"])
        ap = c.ap[0 if row["run"] == "base" else 1]
        assert (row["mean"] == "" if ap is None else float(row["mean"]) == pytest.approx(ap, abs=1e-6))
    for fmt_ in ("md", "table", "json"):
        r = CliRunner().invoke(app, args + ["--format", fmt_])
        assert r.exit_code == 0 and all(n in r.stdout for n in names)


def test_split_without_such_classes_says_so(tiny_dataset, tmp_path):
    ann = json.loads((tiny_dataset / "annotations" / "lvis_v1_val.json").read_text())
    for c in ann["categories"]:
        c["frequency"] = "f" if c["frequency"] == "r" else c["frequency"]
    path = tmp_path / "no_rare.json"
    path.write_text(json.dumps(ann))
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset, with_masks=False)))
    write_report(evaluate_results(res, path, metrics=["bbox"]), tmp_path / "run")
    report = build_report([str(tmp_path / "run")], split="rare")
    assert report.classes == {"bbox": []} and any("no rare classes" in n for n in report.notes)
    r = CliRunner().invoke(app, ["report", str(tmp_path / "run"), "--split", "rare"])
    assert r.exit_code == 0 and "no rare classes" in r.stdout


def test_repeated_labels_are_told_they_repeat(runs):
    _, dirs = runs
    r = CliRunner().invoke(app, ["report", f"A={dirs['base']}", f"A={dirs['loce_seed0']}"])
    assert r.exit_code == 2 and "the label 'A' repeats" in r.stderr and "LABEL=PATH" in r.stderr


def test_csv_notes_go_to_stderr(unlike):
    r = CliRunner().invoke(app, ["report", str(unlike / "true" / "eval"), str(unlike / "fp" / "eval"), "--format",
                                 "csv"])
    assert r.exit_code == 0 and "note: 'fp' has no bbox results" in r.stderr and "note" not in r.stdout
