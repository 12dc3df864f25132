"""``loce analyze``: the labelling equals the official lvis API's at IoU 0.5 on sets built to hit LVIS's rules, the
error decomposition equals tidecv's on exhaustively annotated data, and confusion, errors and calibration equal a
direct computation (a hand-built image with every error type, and brute force over generated sets)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from loce_cli.engine.analysis import analyze
from loce_cli.engine.analysis import errors as errors_module
from loce_cli.engine.analysis.calibration import BINS
from tests.engine.analysis_sets import make_confused_set
from tests.engine.test_streaming_eval import make_set

GROUPS = ("r", "c", "f")


def _lvis_eval(ann_file: Path, dets, metric: str, max_dets: int):
    from loce_cli import compat

    compat.quiet_known_noise()
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(str(ann_file))
    ev = LVISEval(gt, LVISResults(gt, [dict(d) for d in dets], max_dets=max_dets), metric)
    ev.params.max_dets = max_dets
    ev.run()
    return gt, ev


@pytest.mark.parametrize("seed,metric,ties", [(0, "bbox", True), (1, "segm", False), (2, "bbox", False)])
def test_labels_equal_lvis_api_at_iou_half(tmp_path, seed, metric, ties):
    """AP50 per group, and the true / false positives behind the calibration, equal lvis-api's at IoU 0.5 on a set
    with ties, zero areas, ignore flags, negative and not-exhaustive categories and a per-image cap."""
    ann, res, dets = make_set(tmp_path, seed=seed, ties=ties)
    a = analyze(res, ann, metric, max_dets=20)
    gt, ev = _lvis_eval(ann, dets, metric, 20)
    prec = ev.eval["precision"][0, :, :, 0]  # [R, K] at IoU 0.5, area all
    ap = np.where((prec > -1).any(axis=0), np.where(prec > -1, prec, 0).mean(axis=0), np.nan)
    freq = np.array([gt.cats[c]["frequency"] for c in ev.params.cat_ids])
    assert a.errors["all"]["ap50"] == pytest.approx(ev.results["AP50"], abs=1e-12)
    for g in GROUPS:
        assert a.errors[g]["ap50"] == pytest.approx(np.nanmean(ap[freq == g]), abs=1e-12)
    # the reference's labels at IoU 0.5: every evaluated (image, category), detections not ignored
    scores = {g: ([], []) for g in GROUPS}
    for e in ev.eval_imgs:
        if e is None or e["area_rng"] != [0, 10000000000.0]:
            continue
        g = gt.cats[e["category_id"]]["frequency"]
        keep = ~np.asarray(e["dt_ignore"][0], bool)
        scores[g][0].extend(np.asarray(e["dt_scores"])[keep].tolist())
        scores[g][1].extend((np.asarray(e["dt_matches"][0]) > 0)[keep].tolist())
    for g in GROUPS:
        s, right = np.array(scores[g][0]), np.array(scores[g][1], bool)
        cal = a.calibration[g]
        assert (cal["tp"], cal["fp"]) == (int(right.sum()), int((~right).sum()))
        assert cal["tp_mean_score"] == pytest.approx(s[right].mean(), abs=1e-12)
        assert cal["fp_mean_score"] == pytest.approx(s[~right].mean(), abs=1e-12)
        ece = 0.0
        for b in range(BINS):  # the direct definition, bin by bin
            inside = [(x, r) for x, r in zip(s, right) if b / BINS <= x < (b + 1) / BINS or (b == BINS - 1 and x == 1)]
            if inside:
                ece += len(inside) / len(s) * abs(np.mean([r for _, r in inside]) - np.mean([x for x, _ in inside]))
        assert cal["ece"] == pytest.approx(ece, abs=1e-12)


def _tidecv(ann: Path, res: Path, metric: str):
    tidecv = pytest.importorskip("tidecv")
    from tidecv import datasets

    tide = tidecv.TIDE(mode=tidecv.TIDE.BOX if metric == "bbox" else tidecv.TIDE.MASK)
    tide.evaluate(datasets.COCO(str(ann)), datasets.COCOResult(str(res)), name="run")
    return tide.runs["run"].ap, tide.get_main_errors()["run"], tide.runs["run"]


@pytest.mark.parametrize("seed,metric", [(0, "bbox"), (1, "bbox"), (2, "segm")])
def test_errors_equal_tidecv_on_exhaustive_data(tmp_path, seed, metric, monkeypatch):
    """Every image lists every absent class as negative (COCO's exhaustive annotation): the overall AP50, each
    error type's AP50 gain and each type's count equal tidecv's (which reports points, x100).

    The one difference: tidecv's 101 recall points are k / 100, LVIS's (and pycocotools') np.linspace(0, 1, 101),
    which differ in the last bit (0.7 vs 0.7000000000000001): a class whose recall lands exactly on a point (7 of 10
    objects) reads the next point's precision. With tidecv's points the figures are equal; with LVIS's (what
    ``loce analyze`` uses, equal to lvis-api) they stay within a point."""
    ann, res, _ = make_confused_set(tmp_path, seed=seed, exhaustive=True)
    lvis_grid = analyze(res, ann, metric)
    monkeypatch.setattr(errors_module, "RECALLS", np.arange(101) / 100)
    a = analyze(res, ann, metric)
    ap, errors, run = _tidecv(ann, res, metric)
    for t in lvis_grid.errors["all"]["gain"]:
        assert abs(lvis_grid.errors["all"]["gain"][t] - a.errors["all"]["gain"][t]) < 0.01
    assert 100 * a.errors["all"]["ap50"] == pytest.approx(ap, abs=1e-9)
    names = {"cls": "Cls", "loc": "Loc", "both": "Both", "dupe": "Dupe", "bkg": "Bkg", "miss": "Miss"}
    for ours, theirs in names.items():
        assert 100 * a.errors["all"]["gain"][ours] == pytest.approx(errors[theirs], abs=1e-9), ours
    counts = {type(e).short_name: 0 for e in run.errors}
    for e in run.errors:
        counts[type(e).short_name] += 1
    assert {k: a.errors["all"]["count"][k] for k in names} == {k: counts.get(v, 0) for k, v in names.items()}
    assert a.errors["all"]["count"]["cls"] > 0 and a.errors["all"]["count"]["dupe"] > 0


def _confusion_brute_force(ann: Path, dets: list, max_dets: int = 300):
    data = json.loads(ann.read_text())
    group = {c["id"]: c["frequency"] for c in data["categories"]}
    name = {c["id"]: c["name"] for c in data["categories"]}
    out = {g: dict(own=0, r=0, c=0, f=0, none=0) for g in GROUPS}
    pairs = {}
    for im in data["images"]:
        objs = [o for o in data["annotations"] if o["image_id"] == im["id"] and o["area"] > 0 and not o.get("ignore")]
        verified = {o["category_id"] for o in data["annotations"] if o["image_id"] == im["id"] and o["area"] > 0}
        verified |= set(im.get("neg_category_ids", []))
        mine = sorted((d for d in dets if d["image_id"] == im["id"]), key=lambda d: -d["score"])[:max_dets]
        mine = [d for d in mine if d["category_id"] in verified and d["bbox"][2] * d["bbox"][3] > 0]
        for o in objs:
            hits = [d for d in mine if mask_utils.iou([d["bbox"]], [o["bbox"]], [0])[0][0] >= 0.5]
            g = group[o["category_id"]]
            if not hits:
                out[g]["none"] += 1
                continue
            best = max(hits, key=lambda d: d["score"])  # ties: the first in score order
            if best["category_id"] == o["category_id"]:
                out[g]["own"] += 1
            else:
                out[g][group[best["category_id"]]] += 1
                key = (name[o["category_id"]], name[best["category_id"]])
                pairs[key] = pairs.get(key, 0) + 1
    return out, pairs


@pytest.mark.parametrize("seed,exhaustive", [(0, False), (3, True)])
def test_confusion_equals_brute_force(tmp_path, seed, exhaustive):
    ann, res, dets = make_confused_set(tmp_path, seed=seed, exhaustive=exhaustive)
    a = analyze(res, ann, "bbox")
    expected, pairs = _confusion_brute_force(ann, dets)
    assert a.confusion == expected
    assert expected["r"]["f"] > 0  # the set has rare objects taken by frequent classes
    top = sorted(pairs.items(), key=lambda kv: -kv[1])
    assert [p["count"] for p in a.top_confusions] == [c for _, c in top][:20]
    assert all(pairs[(p["gt"], p["det"])] == p["count"] for p in a.top_confusions)
