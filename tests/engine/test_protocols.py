"""AP-fixed and AP-pool (Dave et al. 2021): the streaming per-group top-k, each evaluator against a direct
computation with the official lvis API, the evaluators against each other, metrics.json / report / CLI, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.evaluation import SUMMARY_KEYS, evaluate_results, read_report, write_report
from loce_cli.engine.evaluation.protocols import TopKPerGroup, top_k_per_group
from loce_cli.errors import LoceUsageError
from tests.engine.test_evaluate import _results, _with_false_positives
from tests.engine.test_streaming_eval import make_set

K = 20  # top detections per class: below the per-class counts of the generated sets, so the cap bites


def _lvis():
    import logging

    from loce_cli import compat

    compat.apply()
    import lvis

    logging.getLogger("lvis").setLevel(logging.ERROR)
    return lvis


def _top_k_per_class(dets, k):
    """The paper's selection, written out: per category the k highest scores (stable sort)."""
    by_cat = {}
    for d in dets:
        by_cat.setdefault(d["category_id"], []).append(d)
    out = []
    for anns in by_cat.values():
        out.extend(sorted(anns, key=lambda d: d["score"], reverse=True)[:k])
    return out


def _direct_fixed(ann, dets, metric, k):
    """AP-fixed directly: LVISEval on LVISResults(top-k-per-class results, max_dets=-1)."""
    lvis = _lvis()
    gt = lvis.LVIS(str(ann))
    ev = lvis.LVISEval(gt, lvis.LVISResults(gt, copy.deepcopy(_top_k_per_class(dets, k)), max_dets=-1), metric)
    ev.params.max_dets = -1
    ev.run()
    prec = ev.eval["precision"]
    per_class = []
    for j in range(prec.shape[2]):
        p = prec[:, :, j, 0]
        p = p[p > -1]
        per_class.append(float(p.mean()) if p.size else None)
    return {key: float(ev.results[key]) for key in SUMMARY_KEYS}, per_class


def _direct_pooled(ann, dets, metric, k):
    """AP-pool as the paper computes it: LVISEval's per-(category, image) matching, then per pool the
    detections of all its categories concatenated image by image (categories in id order), stably sorted by
    score, one precision / recall curve (area all)."""
    lvis = _lvis()
    gt = lvis.LVIS(str(ann))
    ev = lvis.LVISEval(gt, lvis.LVISResults(gt, copy.deepcopy(_top_k_per_class(dets, k)), max_dets=-1), metric)
    ev.params.max_dets = -1
    ev.evaluate()
    p = ev.params
    n_img, n_area = len(p.img_ids), len(p.area_rng)
    freq = [gt.cats[c]["frequency"] for c in p.cat_ids]
    pools = {"AP": range(len(p.cat_ids))}
    for g in "rcf":
        pools[f"AP{g}"] = [j for j, f in enumerate(freq) if f == g]
    out = {}
    for key, cats in pools.items():
        blocks = [ev.eval_imgs[c * n_area * n_img + i] for i in range(n_img) for c in cats]
        blocks = [b for b in blocks if b is not None]
        num_gt = sum(int(np.count_nonzero(b["gt_ignore"] == 0)) for b in blocks)
        if not blocks or num_gt == 0:
            out[key] = -1.0
            continue
        scores = np.concatenate([b["dt_scores"] for b in blocks])
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([b["dt_matches"] for b in blocks], axis=1)[:, order]
        ignored = np.concatenate([b["dt_ignore"] for b in blocks], axis=1)[:, order]
        tps = np.cumsum(np.logical_and(matched, ~ignored.astype(bool)), axis=1)
        fps = np.cumsum(np.logical_and(~matched.astype(bool), ~ignored.astype(bool)), axis=1)
        values = []
        for tp, fp in zip(tps, fps):
            rc = tp / num_gt
            pr = list(tp / (tp + fp + np.spacing(1)))
            for i in range(len(pr) - 1, 0, -1):
                pr[i - 1] = max(pr[i - 1], pr[i])
            at = np.searchsorted(rc, p.rec_thrs, side="left")
            values.append([pr[j] if j < len(pr) else 0.0 for j in at])
        out[key] = float(np.mean(values))
    return out


@pytest.fixture(scope="module")
def every_rule(tmp_path_factory):
    return make_set(tmp_path_factory.mktemp("protocols"), seed=4)


@pytest.fixture(scope="module")
def every_rule_reports(every_rule):
    ann, res, _dets = every_rule
    return {ev: evaluate_results(res, ann, ["bbox", "segm"], evaluator=ev, workers=2,
                                 protocols=["standard", "fixed", "pooled"], dets_per_class=K)
            for ev in ("streaming", "lvis")}


def test_top_k_per_group_streaming_equals_one_sort():
    rng = np.random.default_rng(0)
    n, groups, k = 60_000, 37, 150
    group = rng.integers(0, groups, n)
    score = np.round(rng.random(n), 2)  # many ties: position order decides
    top = TopKPerGroup(groups, k, min_buffer=500)
    first = 0
    for size in rng.integers(1, 3000, 200):
        top.add(group[first:first + size], score[first:first + size], first)
        first += size
        if first >= n:
            break
    seen = first
    expected = top_k_per_group(group[:seen], score[:seen], k)
    assert np.array_equal(top.positions(), expected)
    assert (top.counts() == np.minimum(np.bincount(group[:seen], minlength=groups), k)).all()
    assert top.peak_entries < 3 * groups * k  # bounded by the survivors, not by the stream
    # the top scores themselves, checked without the implementation's sort
    g0 = np.flatnonzero(group[:seen] == 0)
    best = g0[np.argsort(-score[g0], kind="stable")[:k]]
    assert np.array_equal(np.sort(best), expected[group[expected] == 0])


@pytest.mark.parametrize("evaluator", ["streaming", "lvis"])
def test_fixed_equals_lvis_api_on_top_k_per_class(every_rule, every_rule_reports, evaluator):
    ann, _res, dets = every_rule
    report = every_rule_reports[evaluator]
    assert report.protocols["fixed"].dets_per_class == K
    for metric in ("bbox", "segm"):
        summary, per_class = _direct_fixed(ann, dets, metric, K)
        got = report.protocols["fixed"].metrics[metric]
        for key in SUMMARY_KEYS:
            assert got.summary[key] == pytest.approx(summary[key], abs=1e-9), (metric, key)
        assert [c.ap is None for c in got.per_class] == [a is None for a in per_class]
        for c, a in zip(got.per_class, per_class):
            assert c.ap is None or c.ap == pytest.approx(a, abs=1e-9), (metric, c.name)
        # the cap bites and the protocol differs from the standard one on this set
        assert got.summary["AP"] != pytest.approx(report.metrics[metric].summary["AP"], abs=1e-3)


@pytest.mark.parametrize("evaluator", ["streaming", "lvis"])
def test_pooled_equals_the_papers_computation(every_rule, every_rule_reports, evaluator):
    ann, _res, dets = every_rule
    report = every_rule_reports[evaluator]
    for metric in ("bbox", "segm"):
        expected = _direct_pooled(ann, dets, metric, K)
        got = report.protocols["pooled"].metrics[metric]
        for key, value in expected.items():
            assert got.summary[key] == pytest.approx(value, abs=1e-9), (metric, key)
        assert all(c.ap is None for c in got.per_class)
        assert got.summary["AP"] != pytest.approx(report.protocols["fixed"].metrics[metric].summary["AP"], abs=1e-3)


def test_standard_through_the_protocol_path_is_unchanged(every_rule, every_rule_reports):
    ann, res, _dets = every_rule
    alone = evaluate_results(res, ann, ["bbox", "segm"], workers=1)
    both = every_rule_reports["streaming"]
    assert not alone.protocols
    for metric in ("bbox", "segm"):
        assert both.metrics[metric].summary == alone.metrics[metric].summary
        assert [c.ap for c in both.metrics[metric].per_class] == [c.ap for c in alone.metrics[metric].per_class]


def test_pooled_rewards_calibration_fixed_does_not(tiny_dataset, tmp_path):
    """Scaling one class's scores down changes no per-class ranking (AP-fixed equal) but the cross-class one."""
    dets = _with_false_positives(_results(tiny_dataset, seed=2, with_masks=False), tiny_dataset)
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    worse = [dict(d, score=d["score"] * 0.01) if d["category_id"] == dets[0]["category_id"] else dict(d)
             for d in dets]
    out = {}
    for name, rows in (("a", dets), ("b", worse)):
        (tmp_path / f"{name}.json").write_text(json.dumps(rows))
        out[name] = evaluate_results(tmp_path / f"{name}.json", ann, ["bbox"], protocols=["fixed", "pooled"],
                                     dets_per_class=10)
    fa, fb = (out[n].protocols["fixed"].metrics["bbox"].summary["AP"] for n in "ab")
    pa, pb = (out[n].protocols["pooled"].metrics["bbox"].summary["AP"] for n in "ab")
    assert fa == pytest.approx(fb, abs=1e-12) and fa > 0.05
    assert abs(pa - pb) > 1e-3
    assert not out["a"].metrics  # standard not asked for


def test_the_evaluators_agree_per_class(tiny_dataset, tmp_path):
    dets = _with_false_positives(_results(tiny_dataset, seed=5), tiny_dataset, per_image=12)
    res = tmp_path / "r.json"
    res.write_text(json.dumps(dets))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    reports = {ev: evaluate_results(res, ann, evaluator=ev, protocols=["fixed", "pooled"], dets_per_class=10,
                                    workers=1) for ev in ("streaming", "lvis")}
    for name in ("fixed", "pooled"):
        ref, got = reports["lvis"].protocols[name], reports["streaming"].protocols[name]
        for metric in ("bbox", "segm"):
            for key in ("AP", "AP50", "AP75", "APr", "APc", "APf"):
                a, b = ref.metrics[metric].summary[key], got.metrics[metric].summary[key]
                assert abs(a - b) <= 1e-4, (name, metric, key, a, b)
            for a, b in zip(ref.metrics[metric].per_class, got.metrics[metric].per_class):
                assert a.id == b.id and (a.ap is None) == (b.ap is None)
                assert a.ap is None or abs(a.ap - b.ap) <= 1e-4, (name, metric, a.name)
    assert reports["lvis"].protocols["fixed"].metrics["bbox"].summary["AP"] > 0.05


def test_metrics_json_round_trip_and_report(every_rule_reports, tmp_path):
    report = every_rule_reports["streaming"]
    write_report(report, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(data["protocols"]) == {"fixed", "pooled"} and "bbox" in data["metrics"]
    back = read_report(tmp_path / "run")
    assert back.to_dict() == report.to_dict()
    assert "fixed" in (tmp_path / "run" / "metrics.txt").read_text()
    old = dict(data)  # a metrics.json from before the protocols
    del old["protocols"], old["warnings"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps(old))
    assert read_report(tmp_path / "old").protocols == {}
    runner = CliRunner()
    r = runner.invoke(app, ["report", str(tmp_path / "run"), "--format", "csv"])
    assert r.exit_code == 0, r.output
    fixed_ap = report.protocols["fixed"].metrics["bbox"].summary["AP"]
    pooled_ap = report.protocols["pooled"].metrics["bbox"].summary["AP"]
    lines = r.stdout.splitlines()
    assert any(line.startswith("run,bbox AP-fixed,AP,") and f"{fixed_ap:.6f}" in line for line in lines), lines
    assert any(line.startswith("run,bbox AP-pool,AP,") and f"{pooled_ap:.6f}" in line for line in lines)
    r = runner.invoke(app, ["report", str(tmp_path / "run"), "--protocol", "fixed", "--format", "csv"])
    assert r.exit_code == 0 and "AP-fixed" in r.stdout and "AP-pool" not in r.stdout
    assert not any(line.startswith("run,bbox,") for line in r.stdout.splitlines())
    r = runner.invoke(app, ["report", str(tmp_path / "run"), str(tmp_path / "old"), "--protocol", "fixed"])
    assert r.exit_code == 1 and "fixed" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["report", str(tmp_path / "run"), str(tmp_path / "old")])  # old: '-' rows, a note
    assert r.exit_code == 0 and "'old' has no bbox AP-fixed, segm AP-fixed" in r.stdout
    assert any(line.split("│")[1:3] == [" old ", " bbox AP-fixed "] and line.count(" - ") == 8
               for line in r.stdout.splitlines()), r.stdout
    r = runner.invoke(app, ["report", str(tmp_path / "run"), "--protocol", "fixed", "--split", "rare"])
    assert r.exit_code == 0 and "bbox AP-fixed: rare classes" in r.stdout


def test_cli_protocols_and_bad_input(tiny_dataset, tmp_path):
    ann = str(tiny_dataset / "annotations" / "lvis_v1_val.json")
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_with_false_positives(_results(tiny_dataset, with_masks=False), tiny_dataset)))
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, "--metric", "bbox", "--protocol", "fixed",
                            "--protocol", "standard", "--dets-per-class", "10", "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert set(out["protocols"]) == {"fixed"} and out["protocols"]["fixed"]["dets_per_class"] == 10
    assert "bbox" in out["metrics"] and "warning" not in r.stderr
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["protocols"]["fixed"]["metrics"]
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, "--metric", "bbox", "--protocol", "pooled",
                            "--force"])
    assert r.exit_code == 0 and "AP-pool" in r.stdout
    title = " ".join(r.stdout.split("┏")[0].split())  # pooled alone: no per-image cap is applied, the title must not claim one
    assert "dets/image" not in title and "AP-pool: top 10000 dets/class, no per-image cap" in title, r.stdout
    for bad, what in ((["--protocol", "coco"], "--protocol"), (["--dets-per-class", "0"], "--dets-per-class")):
        r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, *bad])
        assert r.exit_code == 2 and what in r.stderr and "Traceback" not in r.output, r.output
    with pytest.raises(LoceUsageError):
        evaluate_results(res, ann, protocols=["fixed"], dets_per_class=0)


def test_capped_results_get_a_warning(tmp_path):
    """Every image with exactly 300 detections: what a standard inference writes; AP-fixed of it is flagged."""
    rng = np.random.default_rng(0)
    images = [dict(id=i + 1, width=50, height=40, neg_category_ids=[], not_exhaustive_category_ids=[])
              for i in range(3)]
    cats = [dict(id=c + 1, name=f"c{c}", frequency="rcf"[c % 3], image_count=1) for c in range(4)]
    anns = [dict(id=i + 1, image_id=i + 1, category_id=1, bbox=[5, 5, 20, 20], area=400.0,
                 segmentation=[[5, 5, 25, 5, 25, 25, 5, 25]]) for i in range(3)]
    (tmp_path / "a.json").write_text(json.dumps(dict(images=images, annotations=anns, categories=cats)))
    dets = [dict(image_id=im["id"], category_id=int(rng.integers(1, 5)), bbox=[float(rng.uniform(0, 20)), 5.0, 20.0,
                                                                                 20.0], score=float(rng.random()))
            for im in images for _ in range(300)]
    (tmp_path / "r.json").write_text(json.dumps(dets))
    runner = CliRunner()
    args = ["eval", "--results", str(tmp_path / "r.json"), "--ann", str(tmp_path / "a.json"), "--metric", "bbox",
            "--force"]
    r = runner.invoke(app, args + ["--protocol", "fixed"])
    assert r.exit_code == 0, r.output
    assert "warning:" in r.stderr and "capped at 300" in r.stderr and "not AP-fixed" in r.stderr
    for ev in ("streaming", "lvis"):
        rep = evaluate_results(tmp_path / "r.json", tmp_path / "a.json", ["bbox"], evaluator=ev, protocols=["fixed"])
        assert rep.warnings and "capped at 300" in rep.warnings[0]
    r = runner.invoke(app, args)  # standard alone: nothing to warn about
    assert r.exit_code == 0 and "warning" not in r.stderr
    json.loads((tmp_path / "r.json").read_text())  # the input is untouched
    assert Path(tmp_path / "r.json").stat().st_size > 0


def test_detections_not_chosen_are_still_validated(tiny_dataset, tmp_path):
    """The second pass keeps only the chosen detections; every detection passes the per-block checks (unknown
    ids: a never-chosen one still fails), the column checks (box sizes, ...) see the chosen ones."""
    from loce_cli.errors import DataError

    dets = _with_false_positives(_results(tiny_dataset, with_masks=False), tiny_dataset)
    bad = dict(dets[0], score=1.0, bbox=[1.0, 1.0, -3.0, 2.0])  # the highest score: chosen
    (tmp_path / "r.json").write_text(json.dumps(dets + [bad]))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    with pytest.raises(DataError, match="negative"):
        evaluate_results(tmp_path / "r.json", ann, ["bbox"], protocols=["fixed"], dets_per_class=3)
    unknown = dict(dets[0], score=0.0, image_id=10 ** 9)
    (tmp_path / "u.json").write_text(json.dumps(dets + [unknown]))
    with pytest.raises(DataError, match="unknown images"):
        evaluate_results(tmp_path / "u.json", ann, ["bbox"], protocols=["pooled"], dets_per_class=3)
