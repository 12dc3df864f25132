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
    assert csv_rows[0] == "run,metric,key,mean,sd,seeds,delta_vs_first" and len(csv_rows) == 1 + 2 * 2 * 4


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
