"""loce eval on results files: equal to the official lvis API, split views, bad input."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from loce_cli.cli import app
from loce_cli.engine.evaluation import evaluate_results, write_report
from loce_cli.errors import DataError, LoceUsageError


def _results(root, seed=0, with_masks=True):
    """Noisy detections made from the ground truth (plus false positives), with RLE masks."""
    from pycocotools import mask as mask_utils

    data = json.loads((root / "annotations" / "lvis_v1_val.json").read_text())
    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in data["images"]}
    cats = [c["id"] for c in data["categories"]]
    dets = []
    for a in data["annotations"]:
        im = images[a["image_id"]]
        x, y, w, h = a["bbox"]
        jit = rng.normal(0, 1.5, 4)
        box = [x + jit[0], y + jit[1], max(1.0, w + jit[2]), max(1.0, h + jit[3])]
        cat = a["category_id"] if rng.random() < 0.8 else int(rng.choice(cats))
        det = dict(image_id=a["image_id"], category_id=cat, bbox=box, score=float(rng.random()))
        if with_masks:
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"]))
            rle["counts"] = rle["counts"].decode()
            det["segmentation"] = rle
        dets.append(det)
    return dets


def test_equals_direct_lvis_api(tiny_dataset, tmp_path):
    from loce_cli import compat

    compat.apply()
    from lvis import LVIS, LVISEval, LVISResults

    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset)))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    report = evaluate_results(res, ann)
    for metric in ("bbox", "segm"):
        gt = LVIS(str(ann))
        ev = LVISEval(gt, LVISResults(gt, str(res)), iou_type=metric)
        ev.run()
        for key in ("AP", "AP50", "APr", "APc", "APf"):
            assert report.metrics[metric].summary[key] == pytest.approx(ev.results[key], abs=1e-9), (metric, key)
        aps = [c.ap for c in report.metrics[metric].per_class if c.ap is not None]
        assert len(aps) == 6 and 0 < np.mean(aps) <= 1
    out = write_report(report, tmp_path / "eval")
    assert json.loads(out.read_text())["metrics"]["bbox"]["summary"]["AP"] == report.metrics["bbox"].summary["AP"]
    assert (tmp_path / "eval" / "metrics.txt").read_text().startswith("metric")


def test_split_view_sorted_by_ap(tiny_dataset, tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset, with_masks=False)))
    report = evaluate_results(res, tiny_dataset / "annotations" / "lvis_v1_val.json", ["bbox"], split="rare")
    rows = report.split_view("bbox")
    assert rows and all(c.frequency == "r" for c in rows)
    aps = [c.ap for c in rows if c.ap is not None]
    assert aps == sorted(aps)


def test_bad_results(tiny_dataset, tmp_path):
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    dets = _results(tiny_dataset)
    other = [dict(d, image_id=10 ** 9) for d in dets[:3]] + dets[3:]
    cases = [(other, "unknown images"), ([], "no detections")]
    for content, match in cases:
        p = tmp_path / "x.json"
        p.write_text(json.dumps(content))
        with pytest.raises(DataError, match=match):
            evaluate_results(p, ann)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(dets)[:100])
    with pytest.raises(DataError, match="not valid JSON"):
        evaluate_results(p, ann)
    p.write_text(json.dumps(_results(tiny_dataset, with_masks=False)))
    with pytest.raises(DataError, match="without 'segmentation'"):
        evaluate_results(p, ann)
    with pytest.raises(LoceUsageError, match="unknown split"):
        evaluate_results(p, ann, ["bbox"], split="medium")


def test_cli_eval_results_mode(tiny_dataset, tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset)))
    ann = str(tiny_dataset / "annotations" / "lvis_v1_val.json")
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, "--json", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert set(json.loads(r.stdout)["metrics"]) == {"bbox", "segm"}
    assert (tmp_path / "o" / "metrics.json").is_file()
    assert runner.invoke(app, ["eval", "--results", str(res)]).exit_code == 2
    assert runner.invoke(app, ["eval"]).exit_code == 2
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, "--split", "medium"])
    assert r.exit_code == 2 and "'medium' is not one of" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _with_false_positives(dets, root, per_image=8, seed=1):
    """Extra low-scored boxes of random classes on every image, so per-image top-k and negatives matter."""
    data = json.loads((root / "annotations" / "lvis_v1_val.json").read_text())
    rng = np.random.default_rng(seed)
    cats = [c["id"] for c in data["categories"]]
    extra = []
    for im in data["images"]:
        for _ in range(per_image):
            x, y = rng.uniform(0, im["width"] - 8), rng.uniform(0, im["height"] - 8)
            w, h = rng.uniform(4, im["width"] - x), rng.uniform(4, im["height"] - y)
            det = dict(image_id=im["id"], category_id=int(rng.choice(cats)), bbox=[x, y, w, h],
                       score=float(rng.random() * 0.5))
            if "segmentation" in dets[0]:
                from pycocotools import mask as mask_utils

                rle = mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], im["height"], im["width"])[0]
                rle["counts"] = rle["counts"].decode()
                det["segmentation"] = rle
            extra.append(det)
    return dets + extra


def test_unknown_evaluator_and_report_round_trip(tiny_dataset, tmp_path):
    from loce_cli.engine.evaluation import read_report

    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset, with_masks=False)))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    with pytest.raises(LoceUsageError, match="evaluator"):
        evaluate_results(res, ann, ["bbox"], evaluator="coco")
    report = evaluate_results(res, ann, ["bbox"])
    write_report(report, tmp_path / "eval")
    back = read_report(tmp_path / "eval")
    assert back.to_dict() == report.to_dict()
    (tmp_path / "bad.json").write_text('{"metrics": 1}')
    with pytest.raises(DataError, match="not a loce metrics.json"):
        read_report(tmp_path / "bad.json")


def test_cli_eval_lvis_and_usage_errors(tiny_dataset, tmp_path):
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset)))
    ann = str(tiny_dataset / "annotations" / "lvis_v1_val.json")
    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, "--evaluator", "lvis", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["evaluator"] == "lvis"
    r = runner.invoke(app, ["eval", "--results", str(res), "--ann", ann, "--evaluator", "coco"])
    assert r.exit_code == 2 and "evaluator" in r.stderr and "Traceback" not in r.output
    r = runner.invoke(app, ["eval", "cfg.py", "ckpt.pth", "--gpus", "1", "--nproc", "2"])
    assert r.exit_code == 2 and "exclude each other" in r.stderr
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("name", ["fast", "hotcoco"])
def test_a_removed_evaluator_is_a_usage_error_saying_what_to_use(tiny_dataset, tmp_path, name):
    """A name loce had (issue 30 removed it): one line, exit 2, why and what to use, nothing written; through the
    engine too."""
    res = tmp_path / "r.json"
    res.write_text(json.dumps(_results(tiny_dataset)))
    ann = tiny_dataset / "annotations" / "lvis_v1_val.json"
    r = CliRunner().invoke(app, ["eval", "--results", str(res), "--ann", str(ann), "--evaluator", name])
    assert r.exit_code == 2 and "Traceback" not in r.output
    line, = r.stderr.strip().splitlines()
    assert f"{name} was removed" in line and "use streaming (the default) or lvis" in line, line
    assert not (tmp_path / "metrics.json").exists()
    with pytest.raises(LoceUsageError) as info:
        evaluate_results(res, ann, ["bbox"], evaluator=name)
    assert f"{name} was removed" in info.value.one_line() and "use streaming" in info.value.one_line()


def test_one_registry_of_evaluators():
    """Each --evaluator name maps to one backend (an Evaluator) that carries that name; the face's EVALUATORS is
    the registry's names, the default first."""
    from loce_cli.engine.evaluation import BACKENDS, DEFAULT_EVALUATOR, EVALUATORS, Evaluator, make_evaluator

    assert EVALUATORS == tuple(BACKENDS) and EVALUATORS[0] == DEFAULT_EVALUATOR
    for name, backend in BACKENDS.items():
        assert issubclass(backend, Evaluator) and backend.name == name
        assert isinstance(make_evaluator(name), backend)
    with pytest.raises(LoceUsageError, match="--workers"):
        make_evaluator("streaming", workers=0)
