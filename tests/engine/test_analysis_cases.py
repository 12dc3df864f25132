"""``loce analyze`` on a hand-built set whose every figure is known (each TIDE error type once, a negative and a
not-exhaustive category, a detection of a class the image does not verify), and the command's output: the --json
shape, --compare's deltas, the picture, and one-line errors for input that does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.analysis import analyze
from tests.engine.analysis_sets import make_confused_set

CATS = [dict(id=1, name="r1", frequency="r"), dict(id=2, name="c1", frequency="c"),
        dict(id=3, name="f1", frequency="f"), dict(id=4, name="f2", frequency="f")]


def _hand_built(root: Path):
    images = [dict(id=1, width=100, height=100, neg_category_ids=[4], not_exhaustive_category_ids=[]),
              dict(id=2, width=100, height=100, neg_category_ids=[], not_exhaustive_category_ids=[2])]
    objects = [(1, 1, [10, 10, 30, 30]), (1, 3, [50, 50, 30, 30]), (1, 2, [10, 60, 20, 20]),
               (2, 1, [20, 20, 20, 20]), (2, 2, [60, 60, 20, 20])]
    anns = [dict(id=n + 1, image_id=i, category_id=c, bbox=b, area=b[2] * b[3]) for n, (i, c, b) in enumerate(objects)]
    dets = [(1, 3, [10, 10, 30, 30], .9),  # f1 on the rare object: classification error, fixable
            (1, 3, [50, 50, 30, 30], .8),  # f1 on its object: true positive
            (1, 3, [51, 50, 30, 30], .7),  # again: duplicate
            (1, 1, [70, 5, 10, 10], .5),  # r1 on nothing: background
            (1, 2, [20, 60, 20, 20], .45),  # c1 at IoU 1/3 with its object: localisation, fixable
            (1, 4, [0, 0, 5, 5], .4),  # f2, a negative category of the image: background
            (1, 2, [55, 55, 30, 30], .35),  # c1 on the taken f1 object: classification error, not fixable
            (1, 1, [45, 45, 20, 20], .3),  # r1 at IoU 0.21 with the f1 object: both
            (2, 2, [0, 70, 10, 10], .6),  # c1 is not exhaustive in image 2: ignored
            (2, 3, [20, 20, 20, 20], .95)]  # f1 is not verified in image 2: not evaluated
    root.mkdir(parents=True, exist_ok=True)
    ann_file, res_file = root / "val.json", root / "results.json"
    ann_file.write_text(json.dumps(dict(images=images, annotations=anns, categories=CATS)))
    res_file.write_text(json.dumps([dict(image_id=i, category_id=c, bbox=b, score=s) for i, c, b, s in dets]))
    return ann_file, res_file


def test_hand_built_figures(tmp_path):
    ann, res = _hand_built(tmp_path)
    a = analyze(res, ann, "bbox")
    count = {g: a.errors[g]["count"] for g in ("r", "c", "f", "all")}
    assert count["r"] == dict(cls=0, loc=0, both=1, dupe=0, bkg=1, miss=1)
    assert count["c"] == dict(cls=1, loc=1, both=0, dupe=0, bkg=0, miss=1)
    assert count["f"] == dict(cls=1, loc=0, both=0, dupe=1, bkg=1, miss=0)
    assert count["all"] == dict(cls=2, loc=1, both=1, dupe=1, bkg=2, miss=2)
    # r1: 2 objects, only false positives: AP50 0; the f1 detection fixed as r1 (score 0.9, first): recall 1/2 at
    # precision 1, i.e. 51 of the 101 recall points
    assert a.errors["r"]["ap50"] == 0.0
    assert a.errors["r"]["gain"]["cls"] == pytest.approx(51 / 101)
    # f1: the false positive at 0.9 before its true positive: AP50 1/2; the fix moves it away: AP50 1
    assert a.errors["f"]["ap50"] == pytest.approx(0.5)
    assert a.errors["f"]["gain"]["cls"] == pytest.approx(0.5)
    assert a.errors["f"]["gain"]["dupe"] == 0.0 and a.errors["f"]["gain"]["bkg"] == 0.0  # after the TP already
    assert a.errors["c"]["gain"]["loc"] == pytest.approx(51 / 101)  # c1: 1 of 2 objects found, at precision 1
    assert a.confusion == {"r": dict(own=0, r=0, c=0, f=1, none=1), "c": dict(own=0, r=0, c=0, f=0, none=2),
                           "f": dict(own=1, r=0, c=0, f=0, none=0)}
    assert a.top_confusions == [dict(gt="r1", gt_group="r", det="f1", det_group="f", count=1)]
    cal = a.calibration
    assert (cal["r"]["tp"], cal["r"]["fp"], cal["r"]["fp_mean_score"], cal["r"]["tp_mean_score"]) == (0, 2, .4, None)
    assert cal["f"]["tp"] == 1 and cal["f"]["fp"] == 3 and cal["f"]["ece"] == pytest.approx(
        (abs(0 - .9) + abs(1 - .8) + abs(0 - .7) + abs(0 - .4)) / 4)
    assert a.detections == 9  # the unverified f1 detection is not evaluated


def _eval_dir(root: Path, ann: Path, res: Path) -> Path:
    """An eval --out directory as loce eval writes it (metrics.json naming the files, with the sha256)."""
    from loce_cli.engine.data.identity import annotation_sha256
    from loce_cli.engine.evaluation import EvalReport, write_report

    root.mkdir(parents=True, exist_ok=True)
    write_report(EvalReport(annotation_file=str(ann), results_file=str(res), evaluator="streaming", max_dets=300,
                            split="all", metrics={}, seconds=0.0, annotation_sha256=annotation_sha256(ann)), root)
    return root


def test_cli_json_compare_and_plot(tmp_path):
    ann, res_a, _ = make_confused_set(tmp_path / "a", seed=0, exhaustive=False)
    _, res_b, _ = make_confused_set(tmp_path / "b", seed=0, exhaustive=False)
    res_b.write_text(json.dumps([d for d in json.loads(res_b.read_text()) if d["score"] > 0.3]))
    run_a, run_b = _eval_dir(tmp_path / "loce", ann, res_a), _eval_dir(tmp_path / "base", ann, res_b)
    runner = CliRunner()
    r = runner.invoke(app, ["analyze", str(run_a), "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert set(data["confusion"]) == {"r", "c", "f"}
    assert all(set(v) == {"own", "r", "c", "f", "none"} and all(isinstance(n, int) for n in v.values())
               for v in data["confusion"].values())
    plot = tmp_path / "analysis.png"
    r = runner.invoke(app, ["analyze", str(run_a), "--compare", str(run_b), "--json", "--plot", str(plot)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["delta"]["confusion"]["r"]["own"] == data["run"]["confusion"]["r"]["own"] - \
        data["other"]["confusion"]["r"]["own"]
    assert data["delta"]["errors"]["all"]["ap50"] == pytest.approx(data["run"]["errors"]["all"]["ap50"]
                                                                   - data["other"]["errors"]["all"]["ap50"])
    assert plot.stat().st_size > 10_000
    r = runner.invoke(app, ["analyze", str(run_a), "--compare", str(run_b)])
    assert r.exit_code == 0 and "rare objects taken by their own class" in r.stdout


def _one_line_error(args) -> str:
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]  # the rest: progress lines
    assert len(lines) == 1 and "Traceback" not in r.output and not r.stdout.strip(), r.output
    return lines[0]


def test_bad_input_one_line(tmp_path):
    ann, res, _ = make_confused_set(tmp_path / "a", seed=0)
    other_ann, other_res = _hand_built(tmp_path / "other")
    assert "no annotation file" in _one_line_error(["analyze", str(res)])
    assert "does not exist" in _one_line_error(["analyze", str(tmp_path / "missing.json"), "--ann", str(ann)])
    line = _one_line_error(["analyze", str(other_res), "--ann", str(ann)])  # results of another dataset
    assert "unknown" in line or "not in" in line
    run_a = _eval_dir(tmp_path / "run_a", ann, res)
    run_b = _eval_dir(tmp_path / "run_b", other_ann, other_res)
    assert "different val sets" in _one_line_error(["analyze", str(run_a), "--compare", str(run_b)])
