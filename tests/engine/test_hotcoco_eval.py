"""``--evaluator hotcoco`` equals the official lvis API on every rule the streaming evaluator's test sets cover
(score ties, zero areas, negative and not-exhaustive categories, per-image caps, repeated boxes, polygons,
mask-only results) and under AP-fixed and AP-pool; an annotation file with ``ignore`` flags, a rule hotcoco 1.3.0
does not follow, is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.evaluation import evaluate_results
from loce_cli.errors import DataError
from tests.engine.test_streaming_eval import _assert_equal, make_set

pytest.importorskip("hotcoco")


def _without_ignore(ann: Path) -> Path:
    data = json.loads(ann.read_text())
    flagged = sum(1 for a in data["annotations"] if a.pop("ignore", 0))
    assert flagged  # the generator sets some: the set without them is a real change
    ann.write_text(json.dumps(data))
    return ann


@pytest.mark.parametrize("seed,max_dets,ties", [(0, 300, True), (1, 6, True), (2, 3, False), (7, 5, True)])
def test_equals_lvis_api_on_every_rule(tmp_path, seed, max_dets, ties):
    ann, res, dets = make_set(tmp_path, seed, ties=ties)
    _without_ignore(ann)
    report = evaluate_results(res, ann, ["bbox", "segm"], max_dets=max_dets, evaluator="hotcoco")
    assert report.evaluator == "hotcoco" and report.metrics["bbox"].summary["AP"] > 0.02
    _assert_equal(report, ann, dets, ["bbox", "segm"], max_dets)


def test_masks_without_boxes_and_polygon_results(tmp_path):
    ann, res, dets = make_set(tmp_path, seed=4)
    _without_ignore(ann)
    no_box = [{k: v for k, v in d.items() if k != "bbox"} for d in dets]
    res.write_text(json.dumps(no_box))
    _assert_equal(evaluate_results(res, ann, ["segm"], evaluator="hotcoco"), ann, no_box, ["segm"], 300)
    poly = []
    for d in dets:
        x, y, w, h = d["bbox"]
        poly.append(dict(d, segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    res.write_text(json.dumps(poly))
    _assert_equal(evaluate_results(res, ann, ["segm"], evaluator="hotcoco"), ann, poly, ["segm"], 300)


def test_fixed_and_pooled_equal_the_official_api(tmp_path):
    ann, res, _ = make_set(tmp_path, seed=5, images=50)
    _without_ignore(ann)
    reports = {ev: evaluate_results(res, ann, ["bbox", "segm"], evaluator=ev, protocols=["fixed", "pooled"],
                                    dets_per_class=12, workers=1) for ev in ("lvis", "hotcoco")}
    for name in ("fixed", "pooled"):
        ref, got = reports["lvis"].protocols[name], reports["hotcoco"].protocols[name]
        for metric in ("bbox", "segm"):
            for key, value in ref.metrics[metric].summary.items():
                assert got.metrics[metric].summary[key] == pytest.approx(value, abs=1e-12), (name, metric, key)
            for a, b in zip(ref.metrics[metric].per_class, got.metrics[metric].per_class):
                assert a.id == b.id and (a.ap is None) == (b.ap is None)
                assert a.ap is None or b.ap == pytest.approx(a.ap, abs=1e-12), (name, metric, a.name)


def test_ignore_flags_refused_in_one_line(tmp_path):
    ann, res, _ = make_set(tmp_path, seed=0)
    with pytest.raises(DataError, match="ignore"):
        evaluate_results(res, ann, ["bbox"], evaluator="hotcoco")
    r = CliRunner().invoke(app, ["eval", "--results", str(res), "--ann", str(ann), "--evaluator", "hotcoco",
                                 "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")][0].count("ignore") >= 1
    assert "Traceback" not in r.output and not (tmp_path / "out" / "metrics.json").exists()
